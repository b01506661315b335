//! `--exec CMD`: a command per connection with the client on its stdin and stdout, as inetd
//! and tcpserver run them (tcpserver's environment variables, so its scripts run unchanged).
//!
//! The command gets pipes, never the socket: the server stays in the middle, so the transcript
//! still records what the client sent, limits and timeouts still apply, and when the client
//! goes the command is told (SIGHUP to its process group, SIGKILL after `--grace`) rather than
//! left holding the socket (ncat's old bug). Each direction holds at most one read: the client
//! is not read while the command has not taken the last read, and the command is not read
//! while the client has not taken its last output.

use std::future::Future;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, BufReader, ReadBuf};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc::error::SendError;
use tokio::time::Sleep;

use super::Shared;
use super::echo::Echo;
use super::process::Group;
use super::transcript::End;
use super::wire::Wire;
use crate::config::ExecCommand;
use crate::output::{Event, Format, Origin, OwnedReservation, Peer, escape_into, json_event};

/// Bytes of the command's output read at once.
const OUTPUT_READ_BYTES: usize = 16 * 1024;
/// Longest line of the command's stderr logged whole; the rest of it is logged as more lines.
const STDERR_LINE_BYTES: u64 = 4096;
/// How long a command that closed its output may take to exit before the connection closes
/// without its exit status.
const EXIT_WAIT: Duration = Duration::from_secs(1);
/// How often such a command is looked at.
const EXIT_CHECK: Duration = Duration::from_millis(5);
/// The server's own values of these are not passed on: a command sees only its connection's.
const INHERITED_NOT: [&str; 9] = [
    // systemd's: a command is not the service.
    "NOTIFY_SOCKET",
    "TCPREMOTEIP",
    "TCPREMOTEPORT",
    "TCPLOCALIP",
    "TCPLOCALPORT",
    "TCPREMOTEHOST",
    "TCPREMOTEINFO",
    "UNIXREMOTEPID",
    "UNIXREMOTEEUID",
];

/// A wait for room in the sink's queue for a record of the command's output.
type CapacityWait = Pin<Box<dyn Future<Output = Result<OwnedReservation, SendError<()>>> + Send>>;

/// A connection's command and the bytes on their way between it and the client.
pub(super) struct Exec {
    /// `None` once it has been handed to the reaper.
    group: Option<Group>,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    /// Client bytes the command has not read yet.
    to_child: Vec<u8>,
    to_child_taken: usize,
    /// Command output (and console text) the client has not taken yet.
    to_client: Echo,
    /// The client closed its sending side.
    input_ended: bool,
    /// Checks for the exit of a command that closed its output.
    exit_check: Option<Pin<Box<Sleep>>>,
    /// The command closed its output; the connection ends once it has exited.
    exit_wait: Option<Pin<Box<Sleep>>>,
    /// Labels the records of its output.
    origin: Origin,
    /// With `--format json`: the record of the last output read, until the sink has room for
    /// it; the command is not read again meanwhile. (Room is asked for only then: a command
    /// that is silent holds none of the sink's queue.)
    unrecorded: Option<Vec<u8>>,
    capacity: Option<CapacityWait>,
    grace: Duration,
}

impl Exec {
    /// Starts the command for the connection `origin`, accepted on the listener at `local`.
    pub fn spawn(shared: &Shared, origin: Origin, local: Option<SocketAddr>) -> Result<Exec, End> {
        let (id, peer) = (origin.conn.unwrap_or(0), origin.peer);
        let Some(ExecCommand { program, args }) = &shared.config.exec else {
            return Err(End::Command("no command configured".into()));
        };
        let mut command = Command::new(program);
        command.args(args).env("HUBCAT_CONN_ID", id.to_string());
        // Only this connection's values: none inherited from the server's own environment.
        for name in INHERITED_NOT {
            command.env_remove(name);
        }
        match peer {
            Peer::Ip(remote) => {
                command.env("PROTO", "TCP");
                // On a dual-stack listener IPv4 clients come as ::ffff:a.b.c.d; scripts expect a.b.c.d.
                command
                    .env("TCPREMOTEIP", remote.ip().to_canonical().to_string())
                    .env("TCPREMOTEPORT", remote.port().to_string());
                if let Some(local) = local {
                    command
                        .env("TCPLOCALIP", local.ip().to_canonical().to_string())
                        .env("TCPLOCALPORT", local.port().to_string());
                }
            }
            // ucspi-unix's names.
            Peer::Local { pid, uid } => {
                command.env("PROTO", "UNIX");
                if let Some(pid) = pid {
                    command.env("UNIXREMOTEPID", pid.to_string());
                }
                if let Some(uid) = uid {
                    command.env("UNIXREMOTEEUID", uid.to_string());
                }
            }
        }
        let stdin = if shared.config.send_only { Stdio::null() } else { Stdio::piped() };
        command.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        // Its own process group: signals reach whatever it starts, and a Ctrl-C meant for the
        // server does not reach it before the server decides.
        command.process_group(0).kill_on_drop(false);
        let mut child = command
            .spawn()
            .map_err(|err| End::Command(format!("cannot run {program}: {}", crate::error::reason(&err))))?;
        if let Some(stderr) = child.stderr.take() {
            forward_stderr(stderr, format!("#{id} {peer}"));
        }
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let group = Group::new(child).ok_or_else(|| End::Command(format!("{program} exited at once")))?;
        Ok(Exec {
            group: Some(group),
            stdin,
            stdout,
            to_child: Vec::new(),
            to_child_taken: 0,
            to_client: Echo::default(),
            input_ended: false,
            origin,
            exit_wait: None,
            exit_check: None,
            unrecorded: None,
            capacity: None,
            grace: shared.config.grace,
        })
    }

    /// Passes what the client sent to the command (from `poll_write`, which may wait).
    pub fn received(&mut self, data: &[u8]) {
        if self.stdin.is_some() {
            self.to_child.extend_from_slice(data);
        }
    }

    /// The client closed its sending side: the command's input ends once it has taken the rest.
    pub fn input_ended(&mut self) {
        self.input_ended = true;
    }

    /// Queues `text` for the client, after the output it is owed (a line from the web console).
    pub fn queue(&mut self, text: &[u8]) {
        self.to_client.queue(text);
    }

    /// True while the client is owed some of the command's output.
    pub fn has_unsent(&self) -> bool {
        self.to_client.has_unsent()
    }

    /// Ready when the client may be read: the command took the last read, and the client's
    /// input has not ended.
    pub fn ready_for_input(&self) -> bool {
        !self.input_ended && self.to_child.is_empty()
    }

    /// Moves bytes both ways as far as they go without waiting; ends the connection once the
    /// command's output is done and sent (or when the client cannot be written to).
    pub fn poll_write(
        &mut self,
        wire: &mut Wire<'_>,
        shared: &Shared,
        cx: &mut Context<'_>,
    ) -> Result<(), End> {
        self.feed_command(cx);
        loop {
            // The same bookkeeping as an echo client's: bytes owed, written as the socket takes them.
            self.to_client.poll_write(wire, cx)?;
            if self.to_client.has_unsent() {
                return Ok(());
            }
            if self.unrecorded.is_some() {
                match self.poll_permit(shared, cx) {
                    Poll::Pending => return Ok(()),
                    Poll::Ready(Err(())) => return Err(End::OutputClosed),
                    Poll::Ready(Ok(permit)) => permit.send(self.unrecorded.take().unwrap_or_default()),
                }
            }
            if self.stdout.is_none() {
                return self.poll_exit(cx);
            }
            let mut buffer = [MaybeUninit::uninit(); OUTPUT_READ_BYTES];
            let mut read = ReadBuf::uninit(&mut buffer);
            let Some(stdout) = self.stdout.as_mut() else { continue };
            match Pin::new(stdout).poll_read(cx, &mut read) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                    let data = read.filled();
                    if shared.config.style.format == Format::Json {
                        let mut out = Vec::new();
                        json_event(&mut out, self.origin, Event::Sent { data });
                        self.unrecorded = Some(out);
                    }
                    let rest = Echo::write_now(wire, data)?;
                    self.to_client.queue(rest);
                }
                // The end of its output (or a failed pipe, which means the same).
                Poll::Ready(_) => self.stdout = None,
            }
        }
    }

    /// Hands the command what the client sent; closes its input once the client's has ended.
    fn feed_command(&mut self, cx: &mut Context<'_>) {
        let Some(stdin) = self.stdin.as_mut() else {
            self.to_child = Vec::new();
            return;
        };
        while self.to_child_taken < self.to_child.len() {
            match Pin::new(&mut *stdin).poll_write(cx, &self.to_child[self.to_child_taken..]) {
                Poll::Ready(Ok(n)) if n > 0 => self.to_child_taken += n,
                Poll::Pending => return,
                // It stopped reading (closed its input, or exited): what the client sends
                // from now on has nowhere to go but the transcript.
                Poll::Ready(_) => {
                    self.stdin = None;
                    break;
                }
            }
        }
        (self.to_child, self.to_child_taken) = (Vec::new(), 0);
        if self.input_ended {
            self.stdin = None;
        }
    }

    /// After the command's output ended: waits a moment for it to exit (without reaping it:
    /// see `process`), then ends the connection.
    fn poll_exit(&mut self, cx: &mut Context<'_>) -> Result<(), End> {
        let Some(group) = self.group.as_ref() else { return Err(End::CommandDone(None)) };
        loop {
            if let Some(status) = group.exited() {
                return Err(End::CommandDone(Some(status)));
            }
            let limit = self.exit_wait.get_or_insert_with(|| Box::pin(tokio::time::sleep(EXIT_WAIT)));
            if limit.as_mut().poll(cx).is_ready() {
                return Err(End::CommandDone(None));
            }
            // Looked at again shortly: an exit that is not reaped wakes nobody.
            let check = self.exit_check.get_or_insert_with(|| Box::pin(tokio::time::sleep(EXIT_CHECK)));
            if check.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            self.exit_check = None;
        }
    }

    fn poll_permit(&mut self, shared: &Shared, cx: &mut Context<'_>) -> Poll<Result<OwnedReservation, ()>> {
        // Owned, as the permit may be held across polls; with room in the queue it is ready at once.
        let wait = self.capacity.get_or_insert_with(|| Box::pin(shared.records.clone().reserve_owned()));
        let permit = std::task::ready!(wait.as_mut().poll(cx));
        self.capacity = None;
        Poll::Ready(permit.map_err(|_| ()))
    }

    /// The connection ended: the command's pipes close and its group is ended (see
    /// `process::Group::end`).
    pub fn leave(&mut self, end: &End) {
        self.stdin = None;
        self.stdout = None;
        if let Some(group) = self.group.take() {
            group.end(self.grace, matches!(end, End::Shutdown));
        }
    }
}

/// Logs the command's stderr, a line at a time, escaped and labelled with its connection.
fn forward_stderr(stderr: ChildStderr, label: String) {
    tokio::spawn(async move {
        let mut stderr = BufReader::new(stderr);
        let mut line = Vec::new();
        let mut text = Vec::new();
        loop {
            line.clear();
            match (&mut stderr).take(STDERR_LINE_BYTES).read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            text.clear();
            escape_into(&mut text, line.strip_suffix(b"\n").unwrap_or(&line));
            tracing::info!("{label} stderr: {}", String::from_utf8_lossy(&text));
        }
    });
}
