//! systemd: listeners passed by socket activation (`LISTEN_FDS`), and the readiness and
//! stopping notices of a `Type=notify` service (`NOTIFY_SOCKET`). Without systemd, nothing.

use hubcat::server::Listener;
use listenfd::ListenFd;
use sd_notify::NotifyState;

/// The stream listeners systemd passed, if it passed any; an inherited socket that is not a
/// stream listener is an error (it would be served wrongly).
pub fn inherited_listeners() -> Result<Option<Vec<Listener>>, String> {
    let mut fds = ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let mut listeners = Vec::with_capacity(fds.len());
    for index in 0..fds.len() {
        let what = |err: std::io::Error| format!("socket {} passed by systemd: {err}", index + 3);
        if let Ok(Some(listener)) = fds.take_tcp_listener(index) {
            check_listening(&listener, index)?;
            listener.set_nonblocking(true).map_err(what)?;
            listeners.push(Listener::Tcp(tokio::net::TcpListener::from_std(listener).map_err(what)?));
        } else if let Ok(Some(listener)) = fds.take_unix_listener(index) {
            check_listening(&listener, index)?;
            listener.set_nonblocking(true).map_err(what)?;
            let label = match listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            {
                Some(path) => format!("unix:{path}"),
                None => "unix socket".to_string(),
            };
            // systemd made the socket file and removes it; the server leaves it alone.
            listeners.push(Listener::Unix(
                tokio::net::UnixListener::from_std(listener).map_err(what)?,
                label,
                None,
            ));
        } else {
            return Err(format!(
                "socket {} passed by systemd is not a TCP or Unix stream listener (use ListenStream=)",
                index + 3
            ));
        }
    }
    Ok(Some(listeners))
}

/// An `Accept=yes` unit passes a connection, not a listener: refused, rather than failing at the
/// first accept.
fn check_listening(socket: &impl std::os::fd::AsFd, index: usize) -> Result<(), String> {
    match socket2::SockRef::from(socket).is_listener() {
        Ok(true) => Ok(()),
        _ => Err(format!(
            "socket {} passed by systemd is a connection, not a listener: use Accept=no (the default)",
            index + 3
        )),
    }
}

/// True when systemd passed sockets (which `--udp` cannot serve: it binds its own).
pub fn passed_sockets() -> bool {
    ListenFd::from_env().len() > 0
}

/// Tells systemd the server is up (a `Type=notify` unit starts its dependents now).
pub fn ready() {
    let _ = sd_notify::notify(false, &[NotifyState::Ready]);
}

/// Tells systemd the server is draining.
pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}
