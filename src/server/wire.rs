//! A connection's bytes on its socket: as they are, or through TLS. rustls is driven without
//! waiting (sans-IO), from the same readiness as the plain path: TLS records are read when the
//! socket is readable and written when it is writable, and rustls holds at most
//! `TLS_BUFFER_LIMIT` each way, so a TLS client is bounded like any other.

use std::io::{self, IoSlice, Read, Write};
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use rustls::ServerConnection;

use super::console::LiveConn;
use super::socket::Socket;

/// The line a plaintext client gets on a TLS port, instead of a binary alert it cannot read.
const PLAINTEXT_ON_TLS: &[u8] = b"error: this port speaks TLS; connect with TLS (hubcat connect --tls)\n";

/// Where a connection's writes go.
pub(super) struct Wire<'a> {
    /// The socket.
    pub stream: &'a dyn Socket,
    /// The TLS session, on a TLS listener.
    pub tls: Option<&'a mut ServerConnection>,
    /// Counts what is sent, for the web console.
    pub sent: Option<&'a LiveConn>,
}

/// The socket as `std::io` sees it, never waiting (`WouldBlock` when it would).
struct NonBlocking<'a>(&'a dyn Socket);

impl Read for NonBlocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for NonBlocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

/// Sends what rustls holds for the socket, as far as the socket takes it now.
fn flush_tls(stream: &dyn Socket, tls: &mut ServerConnection) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(&mut NonBlocking(stream)) {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Why reading a TLS session failed.
pub(super) enum TlsReadError {
    /// The socket failed.
    Io(io::Error),
    /// The TLS session failed; rustls has sent its alert.
    Tls(rustls::Error),
    /// The client spoke plaintext; it was told so in plaintext.
    Plaintext,
}

impl From<io::Error> for TlsReadError {
    fn from(err: io::Error) -> Self {
        TlsReadError::Io(err)
    }
}

/// Reads plaintext from a TLS session without waiting: `Some(0)` at the client's end,
/// `None` when the socket has nothing more now (its readiness is then cleared).
pub(super) fn read_tls(
    stream: &dyn Socket,
    tls: &mut ServerConnection,
    buf: &mut [u8],
) -> Result<Option<usize>, TlsReadError> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            // The client closed without close_notify: for a line tool, still the end of its data.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(0)),
            Err(err) => return Err(err.into()),
        }
        // Records already read may wait undecrypted while rustls's plaintext buffer was full.
        match tls.process_new_packets() {
            Ok(state) if state.plaintext_bytes_to_read() > 0 => continue,
            _ => {}
        }
        match tls.read_tls(&mut NonBlocking(stream)) {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(err) => return Err(err.into()),
        }
        if let Err(err) = tls.process_new_packets() {
            let plaintext_client = tls.is_handshaking()
                && matches!(err, rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType));
            if plaintext_client {
                let _ = stream.try_write(PLAINTEXT_ON_TLS);
                return Err(TlsReadError::Plaintext);
            }
            // The alert rustls queued tells a TLS client why.
            let _ = flush_tls(stream, tls);
            return Err(TlsReadError::Tls(err));
        }
        // Handshake replies go out at once; what the socket does not take now waits for
        // `poll_write_ready`.
        flush_tls(stream, tls)?;
    }
}

impl Wire<'_> {
    /// Ready when a write may make progress: the socket is writable, or (TLS) rustls has sent
    /// what it held. During a TLS handshake with nothing to send, writes wait for the client.
    pub fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(tls) = self.tls.as_deref_mut() else { return self.stream.poll_write_ready(cx) };
        loop {
            flush_tls(self.stream, tls)?;
            if !tls.wants_write() {
                // Plaintext waits in rustls until the handshake is done; the read side is what
                // moves it on, and wakes this task.
                return if tls.is_handshaking() { Poll::Pending } else { Poll::Ready(Ok(())) };
            }
            ready!(self.stream.poll_write_ready(cx))?;
        }
    }

    /// Writes as much of `data` as can go now; `WouldBlock` when nothing can.
    pub fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        let written = match self.tls {
            None => self.stream.try_write(data),
            Some(_) => self.write_tls(&[IoSlice::new(data)]),
        };
        self.count(written, &[IoSlice::new(data)])
    }

    /// Writes as much of `slices` as can go now, in order; `WouldBlock` when nothing can.
    pub fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        let written = match self.tls {
            None => self.stream.try_write_vectored(slices),
            Some(_) => self.write_tls(slices),
        };
        self.count(written, slices)
    }

    fn count(&self, written: io::Result<usize>, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        if let (Some(live), Ok(n)) = (self.sent, &written) {
            let (mut rest, mut lines) = (*n, 0);
            for slice in slices {
                let taken = &slice[..rest.min(slice.len())];
                lines += memchr::memchr_iter(b'\n', taken).count() as u64;
                rest -= taken.len();
            }
            live.bytes_out.fetch_add(*n as u64, Ordering::Relaxed);
            live.lines_out.fetch_add(lines, Ordering::Relaxed);
        }
        written
    }

    fn write_tls(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else { return self.stream.try_write_vectored(slices) };
        flush_tls(self.stream, tls)?;
        if tls.wants_write() && !tls.is_handshaking() {
            return Err(would_block());
        }
        let mut taken = 0;
        for slice in slices {
            let n = tls.writer().write(slice)?;
            taken += n;
            if n < slice.len() {
                break;
            }
        }
        flush_tls(self.stream, tls)?;
        if taken == 0 && slices.iter().any(|s| !s.is_empty()) { Err(would_block()) } else { Ok(taken) }
    }

    /// True while TLS holds bytes the socket has not taken.
    pub fn has_unsent(&self) -> bool {
        self.tls.as_deref().is_some_and(|tls| tls.wants_write())
    }

    /// At the end of a TLS session: tells the client (close_notify), as far as the socket
    /// takes it now.
    pub fn close(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            let _ = flush_tls(self.stream, tls);
        }
    }
}
