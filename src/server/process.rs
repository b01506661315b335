//! The process group of one `--exec` command: its exit seen without reaping it, the signals
//! that end it, and the reaping. The leader is reaped last, after every signal: while it is an
//! unreaped zombie its pid cannot be reused, so a signal to its group can never reach a
//! stranger's processes. Groups not yet reaped are remembered, so a server that stops kills
//! what is left rather than leave it running.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, WaitIdStatus, kill_process_group, waitid};
use tokio::process::Child;

/// How often a leaving command is checked for having exited, during its grace period.
const EXIT_POLL: Duration = Duration::from_millis(50);

/// Groups of commands started and not yet reaped.
static RUNNING: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// A command started in a process group of its own.
pub(super) struct Group {
    child: Child,
    /// Its pid, which is its group's id.
    pid: Pid,
}

impl Group {
    /// Takes charge of `child`, started with `process_group(0)`.
    pub fn new(child: Child) -> Option<Group> {
        let pid = child.id().and_then(|pid| i32::try_from(pid).ok()).and_then(Pid::from_raw)?;
        running().insert(pid.as_raw_nonzero().get());
        Some(Group { child, pid })
    }

    /// The leader's exit, if it has exited, without reaping it.
    pub fn exited(&self) -> Option<String> {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        waitid(WaitId::Pid(self.pid), options).ok().flatten().map(|status| describe(&status))
    }

    /// Ends the group: a leader that exited already leaves nothing that may stay (its
    /// leftovers are killed); a running one is told (SIGHUP), then killed with its group once
    /// it exits or after `grace`. At shutdown, killed at once. Reaped in every case.
    pub fn end(mut self, grace: Duration, at_shutdown: bool) {
        if at_shutdown || self.exited().is_some() {
            self.signal(Signal::KILL);
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return self.forget();
            }
        } else {
            self.signal(Signal::HUP);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to wait in (the process is ending): make sure it does not outlive us.
            return self.signal(Signal::KILL);
        };
        runtime.spawn(async move {
            let mut waited = Duration::ZERO;
            while waited < grace && self.exited().is_none() {
                tokio::time::sleep(EXIT_POLL).await;
                waited += EXIT_POLL;
            }
            self.signal(Signal::KILL);
            let _ = self.child.wait().await;
            self.forget();
        });
    }

    fn signal(&self, signal: Signal) {
        let _ = kill_process_group(self.pid, signal);
    }

    fn forget(self) {
        running().remove(&self.pid.as_raw_nonzero().get());
    }
}

fn running() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    RUNNING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Kills every command still running (the server is stopping, or stopping at once).
pub fn kill_all_commands() {
    for &pid in running().iter() {
        if let Some(pid) = Pid::from_raw(pid) {
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

fn describe(status: &WaitIdStatus) -> String {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) if status.exited() => format!("status {code}"),
        (_, Some(signal)) => format!("killed by signal {signal}"),
        _ => "exited".into(),
    }
}
