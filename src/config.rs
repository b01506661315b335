//! Validated settings for each subcommand; every limit, size and timeout is named here once.

use std::time::Duration;

use crate::access::Access;
use crate::client::proxy::ProxyUrl;
use crate::output::Style;
use crate::tls::ServerTls;

/// Host `hubcat serve` listens on when none is given: loopback, so nothing is exposed by default.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Port `hubcat serve` listens on when none is given (the textbook's local port).
pub const DEFAULT_PORT: u16 = 50000;

/// Size of each worker's read buffer. Bounds one read, hence one record batch, hence the sink
/// queue's memory: worst case about 40 output bytes per input byte (1-byte lines, IPv6 peers and
/// timestamps), so one batch can reach 2.5 MiB; a typical one is about 80 KiB. The queue's
/// byte budget bounds them all together.
/// 64 KiB reads measured 10-20% faster than 16 KiB ones in `hubcat bench ingest`.
pub(crate) const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Read size of the `chunks` and `hex` formats when `--read-size` is not given (the textbook's 512).
pub const DEFAULT_CHUNK_BYTES: usize = 512;
/// Largest `--read-size` accepted.
pub const MAX_READ_SIZE: usize = READ_BUFFER_BYTES;
/// Longest line kept whole; longer ones are emitted in marked pieces.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// Largest datagram hubcat receives (the UDP maximum).
pub(crate) const MAX_DATAGRAM_BYTES: usize = 65_536;

/// Record batches (one per read) queued for the sink's writer before connection tasks must wait.
pub(crate) const SINK_QUEUE_DEPTH: usize = 1024;
/// Bytes of records queued for the sink's writer before connection tasks must wait (checked
/// before each read, so at most one batch per worker thread goes past it).
pub(crate) const SINK_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// How long the writer waits for more records after a write before sleeping on the queue.
pub(crate) const SINK_WRITER_LINGER: Duration = Duration::from_micros(100);
/// The writer gathers queued batches up to this size into one write.
pub(crate) const SINK_BATCH_BYTES: usize = 256 * 1024;

/// Listen backlog requested (the kernel caps it at `net.core.somaxconn`).
pub(crate) const LISTEN_BACKLOG: i32 = 4096;
/// First pause after a transient accept error; doubles on each further error.
pub(crate) const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(5);
/// Longest pause between accept attempts while the error lasts.
pub(crate) const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long after a shutdown request connections may still send before they are closed.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// How long a print-mode connection stays idle before it is parked (`--park-after`).
pub const DEFAULT_PARK_AFTER: Duration = Duration::from_secs(1);
/// Shortest `--park-after` other than 0: the idle clock wakes every unparked connection twice
/// per period, which must stay rare next to their own work.
pub const MIN_PARK_AFTER: Duration = Duration::from_millis(100);
/// Descriptors held back from the default connection cap (listeners, output, logs, the reserve
/// descriptor, runtime internals), and never more than a quarter of the limit.
pub(crate) const RESERVED_DESCRIPTORS: usize = 32;
/// The line sent to a client turned away at a connection cap.
pub const DEFAULT_BUSY_MESSAGE: &str = "server busy: too many connections; try again later";

/// The default connection cap for a process allowed `open_files` descriptors.
pub fn default_max_conns(open_files: usize) -> usize {
    open_files.saturating_sub(RESERVED_DESCRIPTORS.min(open_files / 4)).max(1)
}

/// How long a load balancer has to send its PROXY header.
pub(crate) const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The default connection cap with `--exec`: each connection is a process and five
/// descriptors, so a client must not be able to fill the process table (tcpserver's is 40).
pub const DEFAULT_EXEC_MAX_CONNS: usize = 100;

/// Largest read from a chat or broker client: each sender's read can land in a reader's queue
/// past its high-water mark, so this bounds by how much (the mark is half of `--queue-bytes`).
pub(crate) const RELAY_READ_BYTES: usize = 16 * 1024;
/// Most bytes queued for one chat or broker client; past half of it, the room's senders wait.
pub const DEFAULT_RELAY_QUEUE_BYTES: usize = 1024 * 1024;
/// How long a chat or broker reader may hold the room back before it counts as slow.
pub const DEFAULT_SLOW_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a leaving chat or broker client's queued messages may take to go out.
pub(crate) const RELAY_FLUSH_LIMIT: Duration = Duration::from_secs(1);
/// Longest chat nickname, in characters.
pub(crate) const NICK_MAX_CHARS: usize = 32;

/// What the server does with what clients send (it always writes the transcript).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Print it (the textbook server).
    #[default]
    Print,
    /// Send every byte back to its sender.
    Echo,
    /// Relay each line to the other clients as `<NICK> text`; the first line is the nickname.
    Chat,
    /// Relay the raw bytes of each client to all the others.
    Broker,
    /// Run a command per connection, the client on its stdin and stdout (`--exec`).
    Exec,
}

/// The command `--exec` runs for each connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecCommand {
    /// The program, looked up in `PATH`.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl ExecCommand {
    /// `CMD` run by `sh -c`, so shell syntax and `$TCPREMOTEIP` work.
    pub fn shell(command: &str) -> Self {
        ExecCommand { program: "sh".into(), args: vec!["-c".into(), command.into()] }
    }

    /// `CMD` split at whitespace and run without a shell (like ncat's `--exec`).
    pub fn argv(command: &str) -> Option<Self> {
        let mut words = command.split_whitespace().map(String::from);
        Some(ExecCommand { program: words.next()?, args: words.collect() })
    }
}

/// What happens to a chat or broker client whose queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SlowClient {
    /// Disconnect it, with a notice to the others.
    #[default]
    Disconnect,
    /// Drop the messages it cannot take, and tell it how many once it catches up.
    Drop,
}

/// How long `hubcat connect` waits for a dial by default (Go's `net.Dial` waits forever).
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// First pause before retrying a transient dial failure; doubles on each retry.
pub(crate) const DIAL_RETRY_FIRST: Duration = Duration::from_millis(250);
/// Longest pause between dial retries.
pub(crate) const DIAL_RETRY_MAX: Duration = Duration::from_secs(8);
/// How long a piped UDP client waits for more replies after its input has ended.
pub const DEFAULT_UDP_WAIT: Duration = Duration::from_secs(1);
/// How long an interactive client waits for the server to finish after the user quits.
pub(crate) const QUIT_LINGER: Duration = Duration::from_secs(1);
/// The line that ends an interactive session (the textbook's `Q`).
pub(crate) const QUIT_WORD: &str = "Q";

/// Longest `--max-line` accepted: a connection may hold this much of an unfinished line.
pub const MAX_MAX_LINE: usize = 16 * 1024 * 1024;
/// Largest `--queue-bytes` accepted.
pub const MAX_RELAY_QUEUE_BYTES: usize = 1024 * 1024 * 1024;
/// Longest greeting, busy message or shutdown notice accepted.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest duration accepted for any timeout, the grace period or the slow timeout (a year).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Settings of `hubcat serve` as given, unchecked; [`ServerConfig::new`] checks them.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// What the server does with what it receives.
    pub mode: Mode,
    /// What happens to a chat or broker client that cannot keep up.
    pub slow_client: SlowClient,
    /// Bytes queued per chat or broker client.
    pub relay_queue_bytes: usize,
    /// How long a chat or broker reader may stay over its high-water mark before it is slow.
    pub slow_timeout: Duration,
    /// Record format and whether records carry a time.
    pub style: Style,
    /// Bytes per read in the `chunks` and `hex` formats.
    pub read_size: usize,
    /// Longest line kept whole (`lines`, `json` and `raw` formats).
    pub max_line: usize,
    /// Sent, followed by a newline, to each client when it connects.
    pub greeting: Option<Vec<u8>>,
    /// How long clients may keep sending after a shutdown request.
    pub grace: Duration,
    /// Sent, followed by a newline, to each connected client when shutdown starts.
    pub shutdown_notice: Option<Vec<u8>>,
    /// Most connections at once; further clients get `busy_message` and are closed.
    pub max_conns: usize,
    /// Most connections at once from one address.
    pub max_conns_per_ip: Option<usize>,
    /// Most new connections per second from one address (a burst of as many is allowed).
    pub max_conn_rate_per_ip: Option<u32>,
    /// Sent, followed by a newline, to clients turned away at a cap.
    pub busy_message: Vec<u8>,
    /// Close a connection that sends nothing for this long.
    pub idle_timeout: Option<Duration>,
    /// Close a connection this long after it opened, whatever it does.
    pub max_duration: Option<Duration>,
    /// Close a connection that sends nothing this long after it opened.
    pub first_byte_timeout: Option<Duration>,
    /// Who may connect (`--allow`, `--deny`); the handle lets the rules be replaced while serving.
    pub access: Access,
    /// Speak TLS with every client (`--tls-cert`/`--tls-key` or `--tls-self-signed`); the
    /// handle lets the certificate be replaced while serving.
    pub tls: Option<ServerTls>,
    /// Only receive: each connection's sending side is closed as it is accepted (print mode).
    pub recv_only: bool,
    /// Only send: what clients send is neither recorded nor answered; a print-mode connection
    /// closes once its greeting is out, an exec one when its command is done.
    pub send_only: bool,
    /// The command of [`Mode::Exec`].
    pub exec: Option<ExecCommand>,
    /// With `--proxy-protocol`: the load balancers believed (`--proxy-from`); every connection
    /// must come from one and start with a PROXY header.
    pub proxy_from: Option<Vec<ipnet::IpNet>>,
    /// With `--cluster`: the Redis server and room shared with other instances (chat, broker).
    pub cluster: Option<crate::server::ClusterUrl>,
    /// The web console's view of the server (`--web`); connections keep counters for it.
    pub console: Option<crate::server::Console>,
    /// A print-mode connection idle this long leaves the runtime for the parking lot (zero:
    /// never), where it costs a fraction of a task until it is readable again.
    pub park_after: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            mode: Mode::default(),
            slow_client: SlowClient::default(),
            relay_queue_bytes: DEFAULT_RELAY_QUEUE_BYTES,
            slow_timeout: DEFAULT_SLOW_TIMEOUT,
            style: Style::default(),
            read_size: DEFAULT_CHUNK_BYTES,
            max_line: DEFAULT_MAX_LINE,
            greeting: None,
            grace: DEFAULT_GRACE,
            shutdown_notice: None,
            max_conns: usize::MAX,
            max_conns_per_ip: None,
            max_conn_rate_per_ip: None,
            busy_message: format!("{DEFAULT_BUSY_MESSAGE}\n").into_bytes(),
            idle_timeout: None,
            max_duration: None,
            first_byte_timeout: None,
            access: Access::default(),
            tls: None,
            recv_only: false,
            send_only: false,
            exec: None,
            proxy_from: None,
            cluster: None,
            console: None,
            park_after: DEFAULT_PARK_AFTER,
        }
    }
}

/// Settings of `hubcat serve`, checked: made only by [`ServerConfig::new`] or `default()`, so
/// the server never meets a size or duration it cannot handle. Read them through `Deref`.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig(ServerSettings);

/// A setting out of its bounds; the message names the option to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ServerConfig {
    /// Checks `settings`: sizes and durations within the bounds named in this module.
    pub fn new(settings: ServerSettings) -> Result<ServerConfig, ConfigError> {
        settings.check().map_err(ConfigError)?;
        Ok(ServerConfig(settings))
    }

    /// Largest read from a chat or broker client: small against the queue, so the reads that
    /// pass the room's gate at once cannot fill a queue that was under its mark.
    pub(crate) fn relay_read_bytes(&self) -> usize {
        (self.relay_queue_bytes / 8).clamp(1, RELAY_READ_BYTES)
    }

    /// Input bytes of a chat read handled before the room's gate is looked at again: a chat
    /// line grows on the way out (the nickname, escapes), up to about 130 times for bare
    /// newlines from a long nickname, so a read is handed out in pieces of this size.
    pub(crate) fn chat_piece_bytes(&self) -> usize {
        (self.relay_queue_bytes / 1024).clamp(1, 1024)
    }

    /// True when idle connections are parked: print mode with nothing that keeps per-connection
    /// state between reads but the deadlines (not TLS, not the console's counters).
    pub(crate) fn parks_idle(&self) -> bool {
        !self.park_after.is_zero()
            && self.mode == Mode::Print
            && !self.send_only
            && self.tls.is_none()
            && self.console.is_none()
    }

    /// True when any per-connection timer is set.
    pub(crate) fn has_timeouts(&self) -> bool {
        self.idle_timeout.is_some() || self.max_duration.is_some() || self.first_byte_timeout.is_some()
    }
}

impl std::ops::Deref for ServerConfig {
    type Target = ServerSettings;

    fn deref(&self) -> &ServerSettings {
        &self.0
    }
}

impl ServerSettings {
    fn check(&self) -> Result<(), String> {
        if self.read_size == 0 || self.read_size > MAX_READ_SIZE {
            return Err(format!("--read-size must be between 1 and {MAX_READ_SIZE} bytes"));
        }
        if self.max_line == 0 || self.max_line > MAX_MAX_LINE {
            return Err(format!("--max-line must be between 1 and {MAX_MAX_LINE} bytes"));
        }
        if self.relay_queue_bytes == 0 || self.relay_queue_bytes > MAX_RELAY_QUEUE_BYTES {
            return Err(format!("--queue-bytes must be between 1 and {MAX_RELAY_QUEUE_BYTES}"));
        }
        if self.max_conns == 0 || self.max_conns_per_ip == Some(0) || self.max_conn_rate_per_ip == Some(0) {
            return Err(
                "--max-conns, --max-conns-per-ip and --max-conn-rate-per-ip must be at least 1".into()
            );
        }
        let messages =
            [self.greeting.as_deref(), self.shutdown_notice.as_deref(), Some(&self.busy_message[..])];
        if messages.iter().flatten().any(|m| m.len() > MAX_MESSAGE_BYTES) {
            return Err(format!(
                "--greeting, --shutdown-notice and --busy-message must be at most {MAX_MESSAGE_BYTES} bytes"
            ));
        }
        if self.recv_only && (self.mode != Mode::Print || self.greeting.is_some() || self.tls.is_some()) {
            return Err("--recv-only works in --mode print, without --greeting, --exec or TLS".into());
        }
        if self.send_only && !matches!(self.mode, Mode::Print | Mode::Exec) {
            return Err("--send-only works in --mode print (the greeting, then close) or with --exec".into());
        }
        if self.send_only && self.recv_only {
            return Err("--send-only and --recv-only leave nothing to do together".into());
        }
        if self.cluster.is_some() && !matches!(self.mode, Mode::Chat | Mode::Broker) {
            return Err("--cluster joins a chat or broker room: give --mode chat or --mode broker".into());
        }
        if (self.mode == Mode::Exec) != self.exec.is_some() {
            return Err("--exec runs a command per connection in place of --mode".into());
        }
        if !self.park_after.is_zero() && self.park_after < MIN_PARK_AFTER {
            return Err("--park-after must be 0 (never) or at least 100ms".into());
        }
        let timeouts = [self.idle_timeout, self.max_duration, self.first_byte_timeout];
        if timeouts.iter().flatten().any(|d| d.is_zero()) || self.slow_timeout.is_zero() {
            return Err("timeouts must be longer than zero (leave the option out for none)".into());
        }
        let longest =
            timeouts.into_iter().flatten().chain([self.grace, self.slow_timeout, self.park_after]).max();
        if longest.is_some_and(|d| d > MAX_DURATION) {
            return Err("timeouts, --grace, --slow-timeout and --park-after must be at most a year".into());
        }
        Ok(())
    }
}

/// Settings of `hubcat connect`.
#[derive(Clone, Debug)]
pub struct ConnectConfig {
    /// Send lines as `NAME says: LINE`; asked for interactively when not given.
    pub name: Option<String>,
    /// Upper bound on one dial attempt.
    pub dial_timeout: Duration,
    /// How many times a transient dial failure is retried.
    pub retries: u32,
    /// UDP: how long to wait for replies once the input has ended.
    pub udp_wait: Duration,
    /// TCP: reach the server through this proxy (`--proxy`).
    pub proxy: Option<ProxyUrl>,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            name: None,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            retries: 0,
            udp_wait: DEFAULT_UDP_WAIT,
            proxy: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(settings: ServerSettings) -> Result<ServerConfig, String> {
        ServerConfig::new(settings).map_err(|e| e.to_string())
    }

    #[test]
    fn extreme_settings_are_refused_with_the_option_named() {
        let base = ServerSettings::default;
        let cases = [
            (ServerSettings { read_size: usize::MAX, ..base() }, "--read-size"),
            (ServerSettings { max_line: usize::MAX, ..base() }, "--max-line"),
            (ServerSettings { relay_queue_bytes: 0, ..base() }, "--queue-bytes"),
            (ServerSettings { max_conns: 0, ..base() }, "--max-conns"),
            (ServerSettings { greeting: Some(vec![b'x'; MAX_MESSAGE_BYTES + 1]), ..base() }, "--greeting"),
            (ServerSettings { idle_timeout: Some(Duration::MAX), ..base() }, "at most a year"),
            (ServerSettings { grace: Duration::MAX, ..base() }, "--grace"),
            (ServerSettings { slow_timeout: Duration::ZERO, ..base() }, "longer than zero"),
        ];
        for (settings, named) in cases {
            let err = check(settings).expect_err("refused");
            assert!(err.contains(named), "{err}");
        }
        assert!(check(base()).is_ok());
        let longest = ServerSettings {
            idle_timeout: Some(MAX_DURATION),
            max_duration: Some(MAX_DURATION),
            first_byte_timeout: Some(MAX_DURATION),
            grace: MAX_DURATION,
            slow_timeout: MAX_DURATION,
            max_line: MAX_MAX_LINE,
            relay_queue_bytes: MAX_RELAY_QUEUE_BYTES,
            ..base()
        };
        assert!(check(longest).is_ok(), "the bounds themselves are accepted");
    }
}
