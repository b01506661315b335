//! Unix-domain stream sockets: `unix:/path/sock` and Linux abstract names (`unix:@name`);
//! binding that replaces a stale socket file but never steals a live one; dialing.

use std::fmt;
use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::error::NetError;

/// Where a Unix socket lives: a file, or a name in Linux's abstract namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnixAddr {
    /// `unix:/path/sock`: a socket file.
    Path(PathBuf),
    /// `unix:@name`: an abstract name (no file; gone when the last socket closes).
    Abstract(String),
}

impl UnixAddr {
    /// Parses `unix:/path` or `unix:@name`; `None` when `text` is not a `unix:` address.
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        let rest = text.strip_prefix("unix:")?;
        Some(match rest.strip_prefix('@') {
            Some("") => Err("unix:@ needs a name after the @".into()),
            Some(name) if name.len() > MAX_NAME => Err(format!("the abstract name {name:?} is too long")),
            Some(name) => Ok(UnixAddr::Abstract(name.into())),
            None if rest.is_empty() => Err("unix: needs a path, as in unix:/run/hubcat.sock".into()),
            None if rest.len() > MAX_NAME => {
                Err(format!("the socket path {rest:?} is too long (at most {MAX_NAME} bytes)"))
            }
            None => Ok(UnixAddr::Path(rest.into())),
        })
    }

    fn socket_addr(&self) -> io::Result<SocketAddr> {
        match self {
            UnixAddr::Path(path) => SocketAddr::from_pathname(path),
            UnixAddr::Abstract(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        }
    }
}

/// The most bytes of a socket path or name (`sun_path` is 108 bytes, one kept for the NUL).
const MAX_NAME: usize = 107;

impl fmt::Display for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixAddr::Path(path) => write!(f, "unix:{}", path.display()),
            UnixAddr::Abstract(name) => write!(f, "unix:@{name}"),
        }
    }
}

/// A bound Unix listener.
#[derive(Debug)]
pub struct UnixBinding {
    /// The listener, non-blocking.
    pub listener: UnixListener,
    /// The address it is bound to.
    pub addr: UnixAddr,
    /// The socket file, removed when the listener is done with it.
    pub file: Option<SocketFile>,
}

/// A socket file this process created; removed on drop, so a stopped server leaves none behind,
/// unless the file at its path is no longer the one it made (someone replaced it).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device and inode of the file made, to know it again.
    identity: Option<(u64, u64)>,
}

impl SocketFile {
    fn made_at(path: &Path) -> SocketFile {
        SocketFile { path: path.to_path_buf(), identity: identity(path) }
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path).ok().map(|meta| (meta.dev(), meta.ino()))
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.identity.is_none() || identity(&self.path) != self.identity {
            return;
        }
        match std::fs::remove_file(&self.path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => tracing::warn!(
                "cannot remove the socket file {}: {} (the next server replaces it)",
                self.path.display(),
                crate::error::reason(&err)
            ),
            _ => {}
        }
    }
}

/// Binds `addr`. A socket file nobody answers on (left by a server that died) is replaced; one
/// a server answers on is left alone and reported; any other file is never touched. `mode`
/// (such as 0o660) sets the socket file's permissions before any client is accepted.
pub fn bind_unix(addr: &UnixAddr, mode: Option<u32>) -> Result<UnixBinding, NetError> {
    let fail = |source| NetError::ListenUnix { addr: addr.to_string(), source };
    let socket_addr = addr.socket_addr().map_err(fail)?;
    // The file is made with `mode` already: a chmod after bind would leave a moment in which
    // anyone the umask lets in could connect (the listen queue takes them before any accept).
    let umask = mode.map(|mode| rustix::process::umask(rustix::fs::Mode::from_bits_truncate(!mode & 0o777)));
    let bound = match UnixListener::bind_addr(&socket_addr) {
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => match addr {
            UnixAddr::Path(path) => replace_stale(path).and_then(|()| UnixListener::bind_addr(&socket_addr)),
            UnixAddr::Abstract(_) => Err(someone_listening()),
        },
        bound => bound,
    };
    if let Some(umask) = umask {
        rustix::process::umask(umask);
    }
    let listener = bound.map_err(fail)?;
    // The file is ours from here: a failure below removes it again.
    let file = match addr {
        UnixAddr::Path(path) => Some(SocketFile::made_at(path)),
        UnixAddr::Abstract(_) => None,
    };
    let binding = UnixBinding { listener, addr: addr.clone(), file };
    if let (Some(mode), UnixAddr::Path(path)) = (mode, addr) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    }
    binding.listener.set_nonblocking(true).map_err(fail)?;
    Ok(binding)
}

/// Removes the socket file at `path` if no server answers on it.
fn replace_stale(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "a file that is not a socket is there"));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(someone_listening()),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("replacing the stale socket {} (no server answers on it)", path.display());
            std::fs::remove_file(path)
        }
        Err(err) => Err(err),
    }
}

fn someone_listening() -> io::Error {
    io::Error::new(io::ErrorKind::AddrInUse, "another server is listening there")
}

/// Dials `addr`, bounded by `limit`.
pub async fn dial_unix(
    addr: &UnixAddr,
    limit: std::time::Duration,
) -> Result<tokio::net::UnixStream, NetError> {
    let fail = |source| NetError::ConnectUnix { addr: addr.to_string(), source };
    let socket_addr = addr.socket_addr().map_err(fail)?;
    // A Unix connect completes or fails at once unless the server's queue is full.
    let dial = tokio::task::spawn_blocking(move || UnixStream::connect_addr(&socket_addr));
    let stream = match tokio::time::timeout(limit, dial).await {
        Ok(Ok(result)) => result.map_err(fail)?,
        Ok(Err(join)) => return Err(fail(io::Error::other(join))),
        Err(_) => return Err(fail(crate::error::dial_timed_out(limit))),
    };
    stream.set_nonblocking(true).map_err(fail)?;
    tokio::net::UnixStream::from_std(stream).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(UnixAddr::parse("127.0.0.1"), None);
        assert_eq!(UnixAddr::parse("unix:/tmp/s"), Some(Ok(UnixAddr::Path("/tmp/s".into()))));
        assert_eq!(UnixAddr::parse("unix:@hub"), Some(Ok(UnixAddr::Abstract("hub".into()))));
        assert!(matches!(UnixAddr::parse("unix:"), Some(Err(_))));
        assert!(matches!(UnixAddr::parse("unix:@"), Some(Err(_))));
        assert!(matches!(UnixAddr::parse(&format!("unix:/{}", "a".repeat(200))), Some(Err(_))));
    }
}
