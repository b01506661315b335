//! Command-line arguments (clap derive) and their conversion into the library's config types.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use hubcat::access::{Access, AccessRules};
use hubcat::client::proxy::ProxyUrl;
use hubcat::client::tls::Verify;
use hubcat::config::{
    DEFAULT_BUSY_MESSAGE, DEFAULT_CHUNK_BYTES, DEFAULT_DIAL_TIMEOUT, DEFAULT_EXEC_MAX_CONNS, DEFAULT_GRACE,
    DEFAULT_HOST, DEFAULT_MAX_LINE, DEFAULT_PARK_AFTER, DEFAULT_PORT, DEFAULT_RELAY_QUEUE_BYTES,
    DEFAULT_SLOW_TIMEOUT, DEFAULT_UDP_WAIT, ExecCommand, Mode, SlowClient, default_max_conns,
};
use hubcat::tls::{ServerTls, TlsSetupError, parse_fingerprint};
use hubcat::unix::UnixAddr;
use hubcat::{ConnectConfig, Format, ServerConfig, ServerSettings, Style};

/// A multi-client TCP server and client: see, record or relay what many clients send.
#[derive(Debug, Parser)]
#[command(name = "hubcat", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Only print warnings and errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print debug messages on stderr.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Listen, accept many clients at once, and print what each one sends (data on stdout,
    /// events on stderr).
    Serve(Box<ServeArgs>),
    /// Dial a server over TCP or UDP; send typed lines as `NAME says: ...` or piped input as is.
    Connect(ConnectArgs),
    /// Load a TCP server on this machine (hubcat or any other) and measure it.
    Bench(crate::bench::BenchArgs),
}

/// Record formats, as named on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    /// One line per line received, prefixed with the sender's address.
    Lines,
    /// Each read as <N:bytes>, like the textbook's improved server.
    Chunks,
    /// Each read as an xxd-style hex dump.
    Hex,
    /// One JSON object per line of data and per connection event.
    Json,
    /// The bytes as received, no prefix or escaping (for files and pipes).
    Raw,
}

impl From<FormatArg> for Format {
    fn from(arg: FormatArg) -> Format {
        match arg {
            FormatArg::Lines => Format::Lines,
            FormatArg::Chunks => Format::Chunks,
            FormatArg::Hex => Format::Hex,
            FormatArg::Json => Format::Json,
            FormatArg::Raw => Format::Raw,
        }
    }
}

/// Server modes, as named on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// Print what clients send (the textbook server).
    Print,
    /// Send every byte back to its sender.
    Echo,
    /// A chat room: the first line is a nickname, each later line goes to the others.
    Chat,
    /// Relay each client's raw bytes to all the others.
    Broker,
}

/// Slow-client policies, as named on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SlowClientArg {
    /// Disconnect a client whose queue is full, telling the others.
    Disconnect,
    /// Drop what a slow client cannot take, and tell it how much once it catches up.
    Drop,
}

/// Arguments of `hubcat serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Host to listen on: a name (every address it resolves to), an IPv4 or IPv6 address
    /// (`::` = every interface, IPv4 too), or HOST:PORT; a lone number is taken as the port.
    /// `unix:/path/sock` listens on a Unix socket, `unix:@name` on a Linux abstract name.
    #[arg(default_value = DEFAULT_HOST)]
    pub host: String,
    /// Port to listen on, 50000 when not given; 0 picks a free one (printed at start).
    pub port: Option<u16>,
    /// What the server does with what clients send; it always prints it too.
    #[arg(long, value_enum, default_value_t = ModeArg::Print)]
    pub mode: ModeArg,
    /// Chat and broker: what happens to a reader found too slow (see --slow-timeout); only
    /// that reader is affected, the room moves on.
    #[arg(long, value_enum, default_value_t = SlowClientArg::Disconnect)]
    pub slow_client: SlowClientArg,
    /// Chat and broker: most bytes queued per reader. Past half of it, senders are read no
    /// faster than that reader drains; a full queue makes the reader slow at once.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RELAY_QUEUE_BYTES)]
    pub queue_bytes: usize,
    /// Chat and broker: how long a reader may stay over half its queue without draining
    /// below it (holding the senders back) before it counts as slow and --slow-client applies.
    #[arg(long, value_name = "DURATION", default_value_t = DEFAULT_SLOW_TIMEOUT.into())]
    pub slow_timeout: humantime::Duration,
    /// How received data is printed.
    #[arg(long, value_enum, default_value_t = FormatArg::Lines)]
    pub format: FormatArg,
    /// Put an RFC 3339 time in front of every record.
    #[arg(long)]
    pub timestamps: bool,
    /// Bytes per read in the chunks and hex formats (the textbook uses 512 and 25).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_CHUNK_BYTES)]
    pub read_size: usize,
    /// Longest line printed whole; longer lines come in pieces, each but the last ending in `\`.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE)]
    pub max_line: usize,
    /// Send TEXT and a newline to each client when it connects.
    #[arg(long, value_name = "TEXT")]
    pub greeting: Option<String>,
    /// Receive UDP datagrams instead of TCP connections.
    #[arg(long, conflicts_with = "greeting")]
    pub udp: bool,
    /// After Ctrl-C or SIGTERM, how long clients may keep sending before they are closed.
    #[arg(long, value_name = "DURATION", default_value_t = DEFAULT_GRACE.into())]
    pub grace: humantime::Duration,
    /// Append the data to FILE instead of stdout (flushed and fsync'd before exit).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Sent to each connected client when shutdown starts [default: "server shutting down;
    /// closing in GRACE"]; an empty TEXT sends nothing.
    #[arg(long, value_name = "TEXT")]
    pub shutdown_notice: Option<String>,
    /// Most connections at once; more clients get --busy-message and are closed
    /// [default: the open-files limit, less a few descriptors for the server itself].
    #[arg(long, value_name = "N")]
    pub max_conns: Option<usize>,
    /// Most connections at once from one client address, refused the same way [default: no cap].
    #[arg(long, value_name = "N")]
    pub max_conns_per_ip: Option<usize>,
    /// Most new connections per second from one client address (a burst of as many is
    /// allowed), checked before anything else; more are turned away like --max-conns-per-ip.
    #[arg(long, value_name = "N[/s]", value_parser = parse_rate)]
    pub max_conn_rate_per_ip: Option<u32>,
    /// The line sent to a client turned away at a cap.
    #[arg(long, value_name = "TEXT", default_value = DEFAULT_BUSY_MESSAGE)]
    pub busy_message: String,
    /// Close a connection that sends nothing for this long [default: never].
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<humantime::Duration>,
    /// Close a connection this long after it opened, whatever it does [default: never].
    #[arg(long, value_name = "DURATION")]
    pub max_duration: Option<humantime::Duration>,
    /// Close a connection that sends nothing this long after it opened [default: never].
    #[arg(long, value_name = "DURATION")]
    pub first_byte_timeout: Option<humantime::Duration>,
    /// In print mode, move a connection idle this long out of the runtime until it is readable
    /// again: about a quarter of the memory, a little longer to wake (0: never; else at least
    /// 100ms). Not with TLS or --web.
    #[arg(long, value_name = "DURATION", default_value_t = DEFAULT_PARK_AFTER.into())]
    pub park_after: humantime::Duration,
    /// Accept clients only from CIDR (v4 or v6, or one address; repeatable). Precedence: deny
    /// wins over allow; with any allow rule, only allowed addresses may connect.
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<String>,
    /// Refuse clients from CIDR before any greeting (repeatable; wins over --allow).
    #[arg(long, value_name = "CIDR")]
    pub deny: Vec<String>,
    /// --allow rules from FILE, one a line, `#` comments; re-read on SIGHUP (repeatable).
    #[arg(long, value_name = "FILE")]
    pub allow_file: Vec<PathBuf>,
    /// --deny rules from FILE, one a line, `#` comments; re-read on SIGHUP (repeatable).
    #[arg(long, value_name = "FILE")]
    pub deny_file: Vec<PathBuf>,
    /// Only receive: close each connection's sending side at once (no greeting, no notice).
    #[arg(long)]
    pub recv_only: bool,
    /// Only send: ignore what clients send (not recorded). In print mode each client gets the
    /// greeting and is closed; with --exec the command's stdin is empty.
    #[arg(long, conflicts_with = "recv_only")]
    pub send_only: bool,
    /// Run CMD (with `sh -c`) for each connection, the client on its stdin and stdout, its
    /// stderr in the event log. Environment as tcpserver sets it: PROTO, TCPREMOTEIP,
    /// TCPREMOTEPORT, TCPLOCALIP, TCPLOCALPORT; and HUBCAT_CONN_ID. When the client goes,
    /// the command gets SIGHUP, then SIGKILL after --grace.
    #[arg(long, value_name = "CMD", conflicts_with_all = ["mode", "udp", "recv_only", "exec_argv"])]
    pub exec: Option<String>,
    /// Like --exec, without a shell: CMD is split at spaces (like ncat --exec).
    #[arg(long, value_name = "CMD", conflicts_with_all = ["mode", "udp", "recv_only"])]
    pub exec_argv: Option<String>,
    /// Behind a load balancer: every connection starts with a PROXY protocol header (v1 or v2,
    /// HAProxy's send-proxy / send-proxy-v2), and the client's own address it gives is used in
    /// records, events, access rules and per-address limits. Needs --proxy-from.
    #[arg(long, requires = "proxy_from", conflicts_with = "udp")]
    pub proxy_protocol: bool,
    /// With --proxy-protocol: the load balancers to believe (CIDR, repeatable); connections
    /// from anywhere else are refused.
    #[arg(long, value_name = "CIDR", requires = "proxy_protocol")]
    pub proxy_from: Vec<String>,
    /// Chat and broker: share the room with other hubcat instances through Redis pub/sub
    /// (redis://HOST:PORT/ROOM); nicknames stay unique across them. While Redis is away, each
    /// instance relays among its own clients, and the link comes back by itself.
    #[arg(long, value_name = "URL", value_parser = hubcat::server::ClusterUrl::parse)]
    pub cluster: Option<hubcat::server::ClusterUrl>,
    /// Let other processes listen on the same port (SO_REUSEPORT): run several `hubcat serve
    /// --reuse-port` and the kernel spreads new connections among them. With one --output
    /// file, they append to it whole records at a time.
    #[arg(long)]
    pub reuse_port: bool,
    /// Serve the web console on ADDR (HOST:PORT): live connections, the transcript, a form to
    /// answer clients, /metrics (Prometheus) and /api/connections. Loopback unless
    /// --web-token is given.
    #[arg(long, value_name = "ADDR", conflicts_with = "udp")]
    pub web: Option<String>,
    /// The secret the console asks for (`Authorization: Bearer TOKEN`, or `?token=TOKEN` in
    /// the browser); needed to serve the console on any address but loopback.
    #[arg(long, value_name = "TOKEN", requires = "web", env = "HUBCAT_WEB_TOKEN", hide_env_values = true)]
    pub web_token: Option<String>,
    /// After binding (as root, for ports below 1024), run as USER (a name or uid) before
    /// accepting anyone; if that fails, do not serve. Commands of --exec run as USER too.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// With --user: the group to run as [default: USER's primary group].
    #[arg(long, value_name = "GROUP", requires = "user")]
    pub group: Option<String>,
    /// Unix socket: the socket file's permissions, in octal (660: owner and group may connect)
    /// [default: as the umask leaves them].
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    pub unix_mode: Option<u32>,
    /// Speak TLS with this certificate chain (PEM; re-read on SIGHUP); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key", conflicts_with_all = ["udp", "tls_self_signed"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by a CA in FILE (PEM): mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Speak TLS with a key and certificate made now for HOST, localhost, 127.0.0.1 and ::1;
    /// its SHA-256 fingerprint is printed for clients to pin (hubcat connect --tls-fingerprint).
    #[arg(long, conflicts_with = "udp")]
    pub tls_self_signed: bool,
}

impl ServeArgs {
    /// The TLS settings from --tls-cert/--tls-key (files read now), and for
    /// --tls-self-signed the fingerprint of the certificate made.
    pub fn server_tls(&self) -> Result<Option<(ServerTls, Option<String>)>, TlsSetupError> {
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let tls = ServerTls::from_files(cert, key, self.tls_client_ca.as_deref())?;
            return Ok(Some((tls, None)));
        }
        if !self.tls_self_signed {
            return Ok(None);
        }
        let (host, _) = self.host_and_port();
        let mut names = match UnixAddr::parse(&self.host) {
            Some(_) => Vec::new(),
            None => vec![host.trim_matches(|c| c == '[' || c == ']').to_string()],
        };
        for name in ["localhost", "127.0.0.1", "::1"] {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        let (tls, fingerprint) = ServerTls::self_signed(&names)?;
        Ok(Some((tls, Some(fingerprint))))
    }

    /// The --allow/--deny rules, files read now.
    pub fn access_rules(&self) -> Result<AccessRules, hubcat::access::RuleError> {
        AccessRules::load(&self.allow, &self.deny, &self.allow_file, &self.deny_file)
    }

    /// The Unix socket to listen on, when HOST is `unix:...`.
    pub fn unix_addr(&self) -> Result<Option<UnixAddr>, clap::Error> {
        let Some(parsed) = UnixAddr::parse(&self.host) else {
            if self.unix_mode.is_some() {
                return Err(usage_error("--unix-mode is for Unix sockets: serve unix:/path/sock"));
            }
            return Ok(None);
        };
        let addr = parsed.map_err(usage_error)?;
        if let Some(port) = self.port {
            return Err(usage_error(format!("{addr} is a Unix socket; it takes no port (drop {port})")));
        }
        if self.udp {
            return Err(usage_error("--udp needs a host and port, not a Unix socket"));
        }
        let address_rules = self.proxy_protocol
            || !self.allow.is_empty()
            || !self.deny.is_empty()
            || !self.allow_file.is_empty()
            || !self.deny_file.is_empty()
            || self.max_conns_per_ip.is_some()
            || self.max_conn_rate_per_ip.is_some();
        if address_rules {
            return Err(usage_error(
                "--allow, --deny, the per-address limits and --proxy-protocol are for network clients; \
                 on a Unix socket, the file's permissions (--unix-mode) decide who may connect",
            ));
        }
        if self.unix_mode.is_some() && matches!(addr, UnixAddr::Abstract(_)) {
            return Err(usage_error("--unix-mode needs a socket file; an abstract name has no permissions"));
        }
        Ok(Some(addr))
    }

    /// What to listen on: HOST and PORT, or a HOST:PORT or a lone PORT in HOST's place.
    pub fn host_and_port(&self) -> (String, u16) {
        if let Some(port) = self.port {
            return (self.host.clone(), port);
        }
        if let Ok(port) = self.host.parse::<u16>() {
            return (DEFAULT_HOST.to_string(), port);
        }
        split_host_port(&self.host).unwrap_or_else(|| (self.host.clone(), DEFAULT_PORT))
    }

    /// The validated server settings; `open_files` is the process's descriptor limit.
    pub fn config(&self, open_files: usize, tls: Option<ServerTls>) -> Result<ServerConfig, clap::Error> {
        let line = |text: &str| format!("{text}\n").into_bytes();
        let grace: std::time::Duration = self.grace.into();
        let notice = match &self.shutdown_notice {
            Some(text) if text.is_empty() => None,
            Some(text) => Some(line(text)),
            None => {
                Some(line(&format!("server shutting down; closing in {}", humantime::format_duration(grace))))
            }
        };
        let exec = match (&self.exec, &self.exec_argv) {
            (Some(command), _) if command.trim().is_empty() => {
                return Err(usage_error("--exec needs a command"));
            }
            (Some(command), _) => Some(ExecCommand::shell(command)),
            (None, Some(command)) => {
                Some(ExecCommand::argv(command).ok_or_else(|| usage_error("--exec-argv needs a command"))?)
            }
            (None, None) => None,
        };
        if let Some(ExecCommand { program, .. }) = &exec {
            if !is_runnable(program) {
                return Err(usage_error(format!(
                    "--exec: cannot run {program:?}: not an executable file here or in PATH"
                )));
            }
        }
        let settings = ServerSettings {
            mode: match self.mode {
                _ if exec.is_some() => Mode::Exec,
                ModeArg::Print => Mode::Print,
                ModeArg::Echo => Mode::Echo,
                ModeArg::Chat => Mode::Chat,
                ModeArg::Broker => Mode::Broker,
            },
            slow_client: match self.slow_client {
                SlowClientArg::Disconnect => SlowClient::Disconnect,
                SlowClientArg::Drop => SlowClient::Drop,
            },
            relay_queue_bytes: self.queue_bytes,
            slow_timeout: self.slow_timeout.into(),
            style: Style { format: self.format.into(), timestamps: self.timestamps },
            read_size: self.read_size,
            max_line: self.max_line,
            greeting: self.greeting.as_deref().map(line),
            grace,
            shutdown_notice: notice,
            max_conns: self.max_conns.unwrap_or_else(|| match exec {
                Some(_) => DEFAULT_EXEC_MAX_CONNS.min(default_max_conns(open_files)),
                None => default_max_conns(open_files),
            }),
            max_conns_per_ip: self.max_conns_per_ip,
            max_conn_rate_per_ip: self.max_conn_rate_per_ip,
            busy_message: line(&self.busy_message),
            idle_timeout: self.idle_timeout.map(Into::into),
            max_duration: self.max_duration.map(Into::into),
            first_byte_timeout: self.first_byte_timeout.map(Into::into),
            park_after: self.park_after.into(),
            access: Access::new(self.access_rules().map_err(usage_error)?),
            tls,
            recv_only: self.recv_only,
            send_only: self.send_only,
            exec,
            console: self.web.is_some().then(hubcat::server::Console::new),
            cluster: self.cluster.clone(),
            proxy_from: match self.proxy_protocol {
                true => Some(
                    self.proxy_from
                        .iter()
                        .map(|cidr| hubcat::access::parse_rule(cidr, || "--proxy-from".into()))
                        .collect::<Result<_, _>>()
                        .map_err(usage_error)?,
                ),
                false => None,
            },
        };
        let config = ServerConfig::new(settings).map_err(usage_error)?;
        if self.udp && matches!(config.mode, Mode::Chat | Mode::Broker) {
            return Err(usage_error("--udp works with --mode print or echo; chat and broker need TCP"));
        }
        Ok(config)
    }
}

/// True when `program` names an executable file, as given (with a `/`) or found in PATH.
fn is_runnable(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |path: &std::path::Path| {
        std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}

/// File permissions in octal, as chmod takes them (660, 0660).
fn parse_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!("{text:?} is not a file mode like 660 (octal, at most 777)")),
    }
}

/// `N` or `N/s`: connections per second.
fn parse_rate(text: &str) -> Result<u32, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    number.parse().map_err(|_| format!("{text:?} is not a rate like 20/s"))
}

/// Arguments of `hubcat connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Server host: a name (each address tried in turn), an IPv4 or IPv6 address, or HOST:PORT;
    /// `unix:/path/sock` or `unix:@name` for a Unix socket.
    pub host: String,
    /// Server port.
    pub port: Option<u16>,
    /// Use UDP: one datagram per line.
    #[arg(long)]
    pub udp: bool,
    /// Join a `hubcat serve --mode chat` room: the name is sent first, then lines as typed.
    #[arg(long, conflicts_with = "udp")]
    pub chat: bool,
    /// Send lines as `NAME says: LINE` (asked for when typing at a terminal); `Q` quits.
    #[arg(long)]
    pub name: Option<String>,
    /// Give up a dial attempt after this long.
    #[arg(long, value_name = "DURATION", default_value_t = DEFAULT_DIAL_TIMEOUT.into())]
    pub timeout: humantime::Duration,
    /// Retry a refused, timed-out or unreachable dial up to N times, with exponential backoff.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retry: u32,
    /// UDP: once the input has ended, wait this long for more replies.
    #[arg(long, value_name = "DURATION", default_value_t = DEFAULT_UDP_WAIT.into())]
    pub wait: humantime::Duration,
    /// Speak TLS; the server's certificate is verified against the system's roots, name
    /// included, unless --tls-ca, --tls-fingerprint or --tls-insecure says otherwise.
    #[arg(long, conflicts_with = "udp")]
    pub tls: bool,
    /// Verify the server against the CA certificates in FILE (PEM) instead of the system's.
    #[arg(long, value_name = "FILE", requires = "tls", conflicts_with_all = ["tls_fingerprint", "tls_insecure"])]
    pub tls_ca: Option<PathBuf>,
    /// Accept only the server certificate with this SHA-256 fingerprint (as printed by
    /// `hubcat serve --tls-self-signed` or `openssl x509 -fingerprint -sha256`); the name is not checked.
    #[arg(long, value_name = "SHA256", requires = "tls", conflicts_with = "tls_insecure", value_parser = parse_fingerprint)]
    pub tls_fingerprint: Option<[u8; 32]>,
    /// End each line sent with `\r\n` (raw input: each `\n` without a `\r` before it).
    #[arg(long, conflicts_with = "udp")]
    pub crlf: bool,
    /// Only send: never read what the server sends; done when the input ends.
    #[arg(long, conflicts_with_all = ["udp", "recv_only"])]
    pub send_only: bool,
    /// Only receive (like `nc -d`): send nothing, close the sending side at once, and show
    /// what the server sends until it closes.
    #[arg(long, conflicts_with_all = ["udp", "chat", "name"])]
    pub recv_only: bool,
    /// Check nothing about the server's certificate: anyone on the path can read and change the
    /// session. For tests only; never the default.
    #[arg(long, requires = "tls")]
    pub tls_insecure: bool,
    /// Reach the server through a proxy: socks5://, socks5h:// (the proxy resolves HOST) or
    /// http:// (CONNECT), as SCHEME://[USER:PASS@]PROXYHOST:PORT.
    #[arg(long, value_name = "URL", conflicts_with = "udp", value_parser = parse_proxy)]
    pub proxy: Option<ProxyUrl>,
}

/// A `--proxy` URL, checked.
fn parse_proxy(text: &str) -> Result<ProxyUrl, String> {
    text.parse().map_err(|e: hubcat::client::proxy::ProxyUrlError| e.to_string())
}

impl ConnectArgs {
    /// The Unix socket to dial, when HOST is `unix:...`.
    pub fn unix_addr(&self) -> Result<Option<UnixAddr>, clap::Error> {
        let Some(parsed) = UnixAddr::parse(&self.host) else { return Ok(None) };
        let addr = parsed.map_err(usage_error)?;
        if let Some(port) = self.port {
            return Err(usage_error(format!("{addr} is a Unix socket; it takes no port (drop {port})")));
        }
        if self.udp || self.tls || self.proxy.is_some() {
            return Err(usage_error("--udp, --tls and --proxy need a host and port, not a Unix socket"));
        }
        Ok(Some(addr))
    }

    /// The target: HOST and PORT, or HOST:PORT in HOST's place.
    pub fn target(&self) -> Result<(String, u16), clap::Error> {
        match self.port {
            Some(port) => Ok((self.host.clone(), port)),
            None => split_host_port(&self.host)
                .ok_or_else(|| usage_error(format!("missing PORT: give `{} PORT` or HOST:PORT", self.host))),
        }
    }

    /// How the server's certificate is checked, when --tls is given.
    pub fn tls(&self) -> Option<Verify> {
        self.tls.then(|| match (&self.tls_ca, self.tls_fingerprint, self.tls_insecure) {
            (Some(path), _, _) => Verify::Ca(path.clone()),
            (_, Some(digest), _) => Verify::Fingerprint(digest),
            (_, _, true) => Verify::Insecure,
            _ => Verify::SystemRoots,
        })
    }

    /// The client settings.
    pub fn config(&self) -> ConnectConfig {
        ConnectConfig {
            name: self.name.clone(),
            dial_timeout: self.timeout.into(),
            retries: self.retry,
            udp_wait: self.wait.into(),
            proxy: self.proxy.clone(),
        }
    }
}

/// Splits `host:port`, `[v6]:port` or `v4:port`; `None` when there is no port.
pub fn split_host_port(text: &str) -> Option<(String, u16)> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some((addr.ip().to_string(), addr.port()));
    }
    let (host, port) = text.rsplit_once(':')?;
    if host.contains(':') {
        return None; // a bare IPv6 address, not host:port
    }
    Some((host.to_string(), port.parse().ok()?))
}

pub fn usage_error(message: impl std::fmt::Display) -> clap::Error {
    Cli::command().error(clap::error::ErrorKind::ValueValidation, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("localhost:80"), Some(("localhost".into(), 80)));
        assert_eq!(split_host_port("[::1]:3001"), Some(("::1".into(), 3001)));
        assert_eq!(split_host_port("127.0.0.1:0"), Some(("127.0.0.1".into(), 0)));
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("example.org"), None);
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
