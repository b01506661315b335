//! `--mode echo`: every byte goes back to its sender as received, in order. (`Echo`, the bytes
//! owed to a client, also holds an `--exec` command's output on its way.) A read is written
//! back at once; what the client's socket does not take is kept and the client is not read
//! again until it has gone out, so a client that sends without reading holds at most one read.
//! When the client shuts its sending side, what it is still owed is sent and the server closes.

use std::io;
use std::task::{Context, Poll};

use super::transcript::End;
use super::wire::Wire;

/// Bytes an echo client has not taken back yet.
#[derive(Debug, Default)]
pub(super) struct Echo {
    unsent: Vec<u8>,
    /// How much of `unsent` is already written.
    written: usize,
}

impl Echo {
    /// Writes `data` as far as the socket takes it without waiting; returns the rest.
    pub fn write_now<'a>(wire: &mut Wire<'_>, data: &'a [u8]) -> Result<&'a [u8], End> {
        match wire.try_write(data) {
            Ok(n) => Ok(&data[n..]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(data),
            Err(err) => Err(End::from_io(err)),
        }
    }

    /// Echoes `data` behind whatever is still unsent.
    pub fn received(&mut self, wire: &mut Wire<'_>, data: &[u8]) -> Result<(), End> {
        let rest = if self.has_unsent() { data } else { Echo::write_now(wire, data)? };
        self.queue(rest);
        Ok(())
    }

    /// Keeps `data` to send after what is already unsent.
    pub fn queue(&mut self, data: &[u8]) {
        self.unsent.extend_from_slice(data);
    }

    /// True while the client is owed bytes.
    pub fn has_unsent(&self) -> bool {
        self.written < self.unsent.len()
    }

    /// Writes what is unsent as far as the socket takes it; registers for write readiness when
    /// it takes no more.
    pub fn poll_write(&mut self, wire: &mut Wire<'_>, cx: &mut Context<'_>) -> Result<(), End> {
        while self.has_unsent() {
            match wire.poll_write_ready(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Err(err)) => return Err(End::from_io(err)),
                Poll::Ready(Ok(())) => {}
            }
            match wire.try_write(&self.unsent[self.written..]) {
                Ok(n) => self.written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(End::from_io(err)),
            }
        }
        // All out: give the buffer back, an idle client keeps none.
        self.unsent = Vec::new();
        self.written = 0;
        Ok(())
    }
}
