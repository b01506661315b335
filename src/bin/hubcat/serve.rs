//! `hubcat serve`: bind, start the sink, wire signals to the shutdown handle, report.

use std::process::ExitCode;

use hubcat::access::Access;
use hubcat::addr::{bind_tcp, bind_tcp_with, bind_udp, resolve};
use hubcat::config::default_max_conns;
use hubcat::output::SinkError;
use hubcat::server::{self, Listener, ServeError};
use hubcat::tls::ServerTls;
use hubcat::unix::{UnixAddr, bind_unix};
use hubcat::{Shutdown, Sink, Target};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::args::ServeArgs;
use crate::fail;
use crate::privilege::Identity;

/// Runs the server until a signal, then drains and prints the summary.
pub async fn serve(args: ServeArgs) -> ExitCode {
    // Each connection is a descriptor: take the most the system allows this process.
    let open_files =
        rlimit::increase_nofile_limit(u64::MAX).map_or(1024, |n| usize::try_from(n).unwrap_or(usize::MAX));
    // Looked up first: a mistyped user fails before anything is bound.
    let identity = match args.user.as_deref().map(|user| Identity::lookup(user, args.group.as_deref())) {
        Some(Err(err)) => return fail(err),
        Some(Ok(identity)) => Some(identity),
        None => None,
    };
    let tls = match args.server_tls() {
        Ok(tls) => tls,
        Err(err) => return fail(err),
    };
    if let Some((_, Some(fingerprint))) = &tls {
        info!("TLS with a self-signed certificate; its SHA-256 fingerprint is {fingerprint}");
        info!("clients connect with: hubcat connect --tls --tls-fingerprint {fingerprint} HOST PORT");
    }
    let config = match args.config(open_files, tls.map(|(tls, _)| tls)) {
        Ok(config) => config,
        Err(err) => err.exit(),
    };
    if config.max_conns > default_max_conns(open_files) && !args.udp {
        warn!(
            "--max-conns {} is more than the open-files limit ({open_files}) can hold; past about {} \
             connections, new clients are turned away with the busy message (raise it with `ulimit -n`)",
            config.max_conns,
            default_max_conns(open_files)
        );
    }
    let unix = match args.unix_addr() {
        Ok(unix) => unix,
        Err(err) => err.exit(),
    };
    let (host, port) = args.host_and_port();
    let addrs = match &unix {
        Some(_) => Vec::new(),
        None => match resolve(&host, port).await {
            Ok(addrs) => addrs,
            Err(err) => return fail(err),
        },
    };
    let target = match &args.output {
        Some(path) => Target::File(path.clone()),
        None => Target::Stdout,
    };
    let sink = match Sink::start(target) {
        Ok(sink) => sink,
        Err(err) => {
            return fail(format_args!("cannot open {}: {}", output_name(&args), hubcat::error::reason(&err)));
        }
    };
    let web_stop = tokio_util::sync::CancellationToken::new();
    let _stop_web_on_exit = web_stop.clone().drop_guard();
    if let (Some(addr), Some(console)) = (&args.web, &config.console) {
        if let Err(err) =
            start_console(addr, args.web_token.clone(), console.clone(), &sink, web_stop.clone()).await
        {
            return fail(err);
        }
    }
    let shutdown = Shutdown::new();
    if let Err(err) = watch_signals(shutdown.clone()) {
        return fail(format_args!("cannot install signal handlers: {err}"));
    }
    if let Err(err) = reload_on_hangup(args.clone(), config.access.clone(), config.tls.clone()) {
        return fail(format_args!("cannot install the SIGHUP handler: {err}"));
    }
    if args.udp && crate::systemd::passed_sockets() {
        return fail(
            "systemd passed sockets, but --udp binds its own: use ListenStream= sockets without --udp",
        );
    }
    let result = if args.udp {
        let sockets = match bind_udp(&addrs, args.reuse_port)
            .and_then(|s| into_tokio(s, tokio::net::UdpSocket::from_std, &addrs))
        {
            Ok(sockets) => sockets,
            Err(err) => return fail(err),
        };
        if let Err(err) = become_user(identity.as_ref(), None) {
            return fail(err);
        }
        for socket in &sockets {
            if let Ok(addr) = socket.local_addr() {
                info!("listening on udp {addr}");
            }
        }
        crate::systemd::ready();
        server::run_udp(sockets, config, sink, shutdown).await
    } else {
        let inherited = match crate::systemd::inherited_listeners() {
            Ok(inherited) => inherited,
            Err(err) => return fail(err),
        };
        let listeners = match (inherited, &unix) {
            (Some(inherited), _) => {
                info!("serving the {} sockets systemd passed (HOST and PORT are not used)", inherited.len());
                Ok(inherited)
            }
            (None, Some(addr)) => bind_unix(addr, args.unix_mode)
                .and_then(|binding| {
                    Listener::unix(binding)
                        .map_err(|source| hubcat::NetError::ListenUnix { addr: addr.to_string(), source })
                })
                .map(|listener| vec![listener]),
            (None, None) => bind_tcp_with(&addrs, args.reuse_port)
                .and_then(|l| into_tokio(l, tokio::net::TcpListener::from_std, &addrs))
                .map(|listeners| listeners.into_iter().map(Listener::Tcp).collect()),
        };
        let listeners = match listeners {
            Ok(listeners) => listeners,
            Err(err) => return fail(err),
        };
        if let Err(err) = become_user(identity.as_ref(), unix.as_ref()) {
            return fail(err);
        }
        for listener in &listeners {
            info!("listening on {}", listener.label());
        }
        crate::systemd::ready();
        server::run(listeners, config, sink, shutdown).await
    };
    match result {
        Ok(summary) => {
            info!("{summary}");
            ExitCode::SUCCESS
        }
        // `hubcat serve | head`: the reader has what it wanted; stop quietly, like other tools.
        Err(ServeError::Output(SinkError::Closed)) => ExitCode::SUCCESS,
        Err(err) => fail(err),
    }
}

/// With --user: drops to that identity, once everything is bound and before anything is
/// accepted. A Unix socket file is handed over first, so the server can remove it at the end.
fn become_user(identity: Option<&Identity>, unix: Option<&UnixAddr>) -> Result<(), String> {
    let Some(identity) = identity else { return Ok(()) };
    if let Some(UnixAddr::Path(path)) = unix {
        let (uid, gid) = identity.ids();
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(|err| format!("cannot hand {} to {identity}: {err}", path.display()))?;
    }
    identity.drop_privileges()?;
    info!("running as {identity}");
    Ok(())
}

/// Binds the web console on `addr` and serves it until `stop`.
async fn start_console(
    addr: &str,
    token: Option<String>,
    console: hubcat::server::Console,
    sink: &Sink,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), String> {
    let addr: std::net::SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(_) => match crate::args::split_host_port(addr) {
            Some((host, port)) => {
                *resolve(&host, port).await.map_err(|e| e.to_string())?.first().ok_or("no address")?
            }
            None => return Err(format!("--web {addr}: expected HOST:PORT, like 127.0.0.1:8080")),
        },
    };
    hubcat::web::check_access(addr, token.as_deref()).map_err(|e| e.to_string())?;
    let listener = bind_tcp(&[addr])
        .and_then(|l| into_tokio(l, tokio::net::TcpListener::from_std, &[addr]))
        .map_err(|e| format!("web console: {e}"))?;
    let Some(listener) = listener.into_iter().next() else { return Err("web console: nothing bound".into()) };
    let bound = listener.local_addr().map_or_else(|_| addr.to_string(), |a| a.to_string());
    let hint = if token.is_some() { "?token=YOUR_TOKEN" } else { "" };
    info!("web console on http://{bound}/{hint} (metrics on /metrics)");
    let watch = sink.watch();
    tokio::spawn(async move {
        if let Err(err) = hubcat::web::serve(listener, console, watch, token, stop).await {
            warn!("the web console stopped: {err}");
        }
    });
    Ok(())
}

fn output_name(args: &ServeArgs) -> String {
    args.output.as_ref().map_or_else(|| "standard output".into(), |p| p.display().to_string())
}

/// Registers std sockets with the runtime.
fn into_tokio<S, T>(
    sockets: Vec<S>,
    convert: fn(S) -> std::io::Result<T>,
    addrs: &[std::net::SocketAddr],
) -> Result<Vec<T>, hubcat::NetError> {
    sockets
        .into_iter()
        .zip(addrs)
        .map(|(socket, &addr)| convert(socket).map_err(|source| hubcat::NetError::Listen { addr, source }))
        .collect()
}

/// SIGHUP: read the --allow/--deny rules and their files again; connections already open stay.
/// A file that no longer reads keeps the rules in force, with a warning.
fn reload_on_hangup(args: ServeArgs, access: Access, tls: Option<ServerTls>) -> std::io::Result<()> {
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            if let (Some(tls), Some(_)) = (&tls, &args.tls_cert) {
                match args.server_tls() {
                    Ok(Some((new, _))) => {
                        tls.replace(&new);
                        info!(
                            "SIGHUP: TLS certificate reloaded; new clients get it, open sessions keep theirs"
                        );
                    }
                    Ok(None) => {}
                    Err(err) => warn!("SIGHUP: keeping the TLS certificate in use: {err}"),
                }
            }
            match args.access_rules() {
                Ok(rules) => {
                    info!("SIGHUP: access rules reloaded ({rules})");
                    access.replace(rules);
                }
                Err(err) => warn!("SIGHUP: keeping the access rules in force: {err}"),
            }
        }
    });
    Ok(())
}

/// First SIGINT or SIGTERM: drain. Second: exit at once with 130.
fn watch_signals(shutdown: Shutdown) -> std::io::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        for round in 0.. {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            if round == 0 {
                info!("shutting down: no new connections; signal again to stop at once");
                crate::systemd::stopping();
                shutdown.trigger();
            } else {
                eprintln!("error: stopped at once by a second signal; data still queued is lost");
                hubcat::server::kill_all_commands();
                std::process::exit(130);
            }
        }
    });
    Ok(())
}
