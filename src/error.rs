//! Network errors: classified as transient or permanent (the idea behind Go's `net.Error`
//! Timeout/Temporary), and worded for a user in one line: what failed, where, why, what to do.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// A failure to set up networking, worded for the user.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A host name could not be turned into addresses.
    #[error("cannot resolve {host:?}: {} (check the host name)", reason(source))]
    Resolve {
        /// The name as given.
        host: String,
        /// Why resolution failed.
        #[source]
        source: io::Error,
    },
    /// A listening socket could not be set up.
    #[error("cannot listen on {addr}: {}{}", reason(source), listen_hint(*addr, source))]
    Listen {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: io::Error,
    },
    /// A Unix listening socket could not be set up.
    #[error("cannot listen on {addr}: {}", unix_listen_reason(source))]
    ListenUnix {
        /// The address as given (`unix:/path` or `unix:@name`).
        addr: String,
        /// Why binding failed.
        #[source]
        source: io::Error,
    },
    /// A listening socket stopped working for a reason that retrying cannot fix.
    #[error("stopped accepting on {addr}: {}", reason(source))]
    Accept {
        /// The listening address.
        addr: String,
        /// The accept error.
        #[source]
        source: io::Error,
    },
    /// A dial failed (after any retries).
    #[error("cannot connect to {addr}: {}{}", reason(source), connect_hint(source))]
    Connect {
        /// The address dialled last.
        addr: SocketAddr,
        /// Why the dial failed.
        #[source]
        source: io::Error,
    },
    /// A dial to a Unix socket failed.
    #[error("cannot connect to {addr}: {}{}", reason(source), unix_connect_hint(source))]
    ConnectUnix {
        /// The address as given.
        addr: String,
        /// Why the dial failed.
        #[source]
        source: io::Error,
    },
    /// A dial through `--proxy` failed.
    #[error(transparent)]
    Proxy(#[from] crate::client::proxy::ProxyError),
}

/// True for accept errors that say nothing about the listener itself: a client gave up during
/// the handshake, or the process or system is out of descriptors or memory for a moment.
pub(crate) fn is_transient_accept(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::OutOfMemory
            | io::ErrorKind::WouldBlock
    ) || matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EPROTO | libc::EPERM)
    )
}

/// True when out of file descriptors, the accept error worth a specific warning.
pub(crate) fn is_out_of_descriptors(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// True for dial failures that may succeed if tried again: nobody listening yet, no answer in
/// time, a network briefly unreachable, a connection reset during the handshake.
pub(crate) fn is_transient_dial(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::TimedOut
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::Interrupted
    )
}

/// A dial that took longer than allowed, as an `io::Error` so it is classified like the others.
pub(crate) fn dial_timed_out(limit: Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {}", humantime::format_duration(limit)))
}

/// The short, lower-case reason for an error, without Rust's `(os error N)` suffix.
pub fn reason(err: &io::Error) -> String {
    let text = match err.kind() {
        io::ErrorKind::AddrInUse => "address already in use".to_string(),
        io::ErrorKind::AddrNotAvailable => "address not available on this machine".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".to_string(),
        io::ErrorKind::HostUnreachable => "host unreachable".to_string(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".to_string(),
        _ => {
            let full = err.to_string();
            match full.find(" (os error") {
                Some(cut) => full[..cut].to_string(),
                None => full,
            }
        }
    };
    lower_first(&text)
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn listen_hint(addr: SocketAddr, err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::AddrInUse => {
            " (another program is listening there; pick another port, or run every server with --reuse-port)"
        }
        io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE; pick a port above 1023)"
        }
        io::ErrorKind::AddrNotAvailable => " (use an address of this machine, 0.0.0.0 or ::)",
        _ => "",
    }
}

fn unix_listen_reason(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::AddrInUse => {
            "another server is listening there (stop it first, or pick another path)".into()
        }
        io::ErrorKind::AlreadyExists => {
            format!("{} (remove it if it is not needed, or pick another path)", reason(err))
        }
        io::ErrorKind::PermissionDenied => {
            format!("{} (pick a directory this user may write to)", reason(err))
        }
        io::ErrorKind::NotFound => format!("{} (its directory does not exist)", reason(err)),
        _ => reason(err),
    }
}

fn unix_connect_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => " (the socket file is there but no server answers on it)",
        io::ErrorKind::NotFound => " (no socket there: is the server running?)",
        io::ErrorKind::PermissionDenied => " (this user may not use the socket; see --unix-mode)",
        _ => "",
    }
}

fn connect_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => " (is the server running?)",
        io::ErrorKind::TimedOut => " (is the host up and the port open? raise --timeout to wait longer)",
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            " (check the address and the network)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn accept_errors_are_classified() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ECONNABORTED, libc::ENOBUFS, libc::ENOMEM, libc::EINTR]
        {
            assert!(is_transient_accept(&os(code)), "errno {code} should be transient");
        }
        for code in [libc::EBADF, libc::EINVAL, libc::ENOTSOCK] {
            assert!(!is_transient_accept(&os(code)), "errno {code} should be fatal");
        }
    }

    #[test]
    fn dial_errors_are_classified() {
        assert!(is_transient_dial(&os(libc::ECONNREFUSED)));
        assert!(is_transient_dial(&dial_timed_out(Duration::from_secs(1))));
        assert!(!is_transient_dial(&os(libc::EACCES)));
    }

    #[test]
    fn messages_say_what_where_why_and_what_to_do() {
        let addr: SocketAddr = "127.0.0.1:50000".parse().expect("valid address");
        let listen = NetError::Listen { addr, source: os(libc::EADDRINUSE) };
        assert_eq!(
            listen.to_string(),
            "cannot listen on 127.0.0.1:50000: address already in use \
             (another program is listening there; pick another port, or run every server with --reuse-port)"
        );
        let addr: SocketAddr = "127.0.0.1:3001".parse().expect("valid address");
        let dial = NetError::Connect { addr, source: os(libc::ECONNREFUSED) };
        assert_eq!(
            dial.to_string(),
            "cannot connect to 127.0.0.1:3001: connection refused (is the server running?)"
        );
        let low: SocketAddr = "0.0.0.0:80".parse().expect("valid address");
        let denied = NetError::Listen { addr: low, source: os(libc::EACCES) };
        assert!(denied.to_string().contains("ports below 1024"), "{denied}");
    }
}
