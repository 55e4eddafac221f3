//! The one way out of the process: every exit — a fatal error at startup or at runtime, a
//! fatal Lua error, `terminate()`, TERM/INT after fading, a finished onepass, a panic — ends in
//! [`finish`], which leaves nothing behind.
//!
//! Owns: the process-wide record of what an exit must clean up (the pidfile and which process
//! wrote it, the children still alive), and the order of the last steps:
//! 1. every child still alive (tunnel processes, `lsyncd.exec` children, transfers a fatal
//!    error interrupted) gets SIGTERM, is reaped, and gets SIGKILL if it is still there after
//!    [`CHILD_GRACE`];
//! 2. the pidfile is removed, by the process that wrote it only;
//! 3. `STOPPING=1` goes to systemd unless the loop already sent it;
//! 4. stdout and stderr are flushed and the process exits with the code; a failure after
//!    TERM/INT exits as the stop would (128 + the signal).
//!
//! The record is a `static` so that the panic hook reaches it from wherever the panic happened.
//!
//! Also owns the clock of a fading run ([`StopClock`], `settings{ stopGrace }`): children still
//! running when the grace period is over get SIGTERM, then SIGKILL, so that a stop never waits
//! for ever on a child that hangs (a `cp` blocked on a FIFO, a command ignoring TERM).
//!
//! Must not touch: Lua, syncs, the poll loop; [`finish`] logs nothing (a failing log may be why
//! it runs).

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crate::daemon::Pidfile;
use crate::exit::ExitCode;
use crate::notify::Notifier;
use crate::signals;
use crate::sys;

/// How long children may take to exit after SIGTERM before they get SIGKILL.
const CHILD_GRACE: Duration = Duration::from_secs(3);
/// How often a shutting-down process looks for exited children.
const REAP_EVERY: Duration = Duration::from_millis(5);

/// Default of `settings{ stopGrace }`: how long a fading run waits for its children before it
/// signals them, in seconds.
pub(crate) const DEFAULT_STOP_GRACE: f64 = 60.0;

/// What a fading run does when a step of its [`StopClock`] is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopStep {
    /// The grace period is over: SIGTERM to every child.
    Term,
    /// [`CHILD_GRACE`] after that: SIGKILL to every child still there.
    Kill,
    /// [`CHILD_GRACE`] after SIGKILL: stop waiting (a child stuck in the kernel).
    GiveUp,
}

/// The steps of a fading run, from the moment it began to fade.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StopClock {
    /// When the next step is due; `None`: no more steps (or a grace of for ever).
    next: Option<Instant>,
    /// The step due at `next`.
    step: StopStep,
}

impl StopClock {
    /// A run that began to fade at `now`; `grace` `None` waits for ever, as upstream.
    pub(crate) fn new(now: Instant, grace: Option<Duration>) -> StopClock {
        StopClock {
            next: grace.and_then(|g| now.checked_add(g)),
            step: StopStep::Term,
        }
    }

    /// When the loop must wake up for the next step.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.next
    }

    /// The step due at `now`, if any; each step is returned once, in order.
    pub(crate) fn due(&mut self, now: Instant) -> Option<StopStep> {
        let step = self.step;
        if self.next? > now {
            return None;
        }
        (self.next, self.step) = match step {
            StopStep::Term => (Some(now + CHILD_GRACE), StopStep::Kill),
            StopStep::Kill => (Some(now + CHILD_GRACE), StopStep::GiveUp),
            StopStep::GiveUp => (None, StopStep::GiveUp),
        };
        Some(step)
    }
}

/// Sends `sig` to every child still alive; returns their pids.
pub(crate) fn signal_children(sig: i32) -> Vec<libc::pid_t> {
    let children: Vec<libc::pid_t> = record().children.iter().copied().collect();
    children
        .into_iter()
        .filter(|&pid| sys::kill(pid, sig).is_ok())
        .collect()
}

/// Carries out a due step for a run still waiting for `running` children of syncs, logged
/// with the pids. Returns whether the run should stop waiting.
pub(crate) fn take_step(step: StopStep, running: usize, grace: Option<Duration>) -> bool {
    let signal = match step {
        StopStep::Term => libc::SIGTERM,
        StopStep::Kill => libc::SIGKILL,
        StopStep::GiveUp => {
            crate::log::error(format!(
                "{running} child processes did not end after SIGKILL; exiting without them"
            ));
            return true;
        }
    };
    let pids = signal_children(signal);
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    let why = match step {
        StopStep::Term => format!(
            "still running {:.1} s after the stop began (stopGrace)",
            grace.unwrap_or_default().as_secs_f64()
        ),
        _ => "still running after SIGTERM".to_string(),
    };
    crate::log::error(format!(
        "{} child processes {why}; sending {} to pid {}",
        pids.len(),
        crate::retry::signal_name(signal),
        list.join(", ")
    ));
    false
}

struct Cleanup {
    /// The pidfile and the pid of the process that wrote it.
    pidfile: Option<(Pidfile, libc::pid_t)>,
    children: BTreeSet<libc::pid_t>,
    stopping_sent: bool,
}

static CLEANUP: Mutex<Cleanup> = Mutex::new(Cleanup {
    pidfile: None,
    children: BTreeSet::new(),
    stopping_sent: false,
});

/// The record; a panic while it was held does not lose it.
fn record() -> MutexGuard<'static, Cleanup> {
    CLEANUP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The pidfile this process wrote: [`finish`] removes it.
pub(crate) fn keep_pidfile(pidfile: Pidfile) {
    record().pidfile = Some((pidfile, sys::getpid()));
}

/// A child was started (`spawn.rs` calls this for every fork).
pub(crate) fn child_started(pid: libc::pid_t) {
    record().children.insert(pid);
}

/// A child was reaped.
pub(crate) fn child_reaped(pid: libc::pid_t) {
    record().children.remove(&pid);
}

/// The loop told systemd `STOPPING=1` already (at TERM/INT).
pub(crate) fn stopping_sent() {
    record().stopping_sent = true;
}

/// A panic takes the same way out as every other exit, after the default report.
pub(crate) fn install_panic_hook() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        finish(ExitCode::Fatal)
    }));
}

/// Cleans up (see the module doc) and exits with `code` (with the stop's code instead, for a
/// failure after TERM/INT: [`signals::stop_wins`]).
pub(crate) fn finish(code: ExitCode) -> ! {
    let code = signals::stop_wins(code);
    // A panic raised while this thread held the record must not deadlock the exit.
    let taken = match CLEANUP.try_lock() {
        Ok(mut c) => Some(take(&mut c)),
        Err(TryLockError::Poisoned(p)) => Some(take(&mut p.into_inner())),
        Err(TryLockError::WouldBlock) => None,
    };
    if let Some((pidfile, children, stopping_sent)) = taken {
        end_children(children);
        if let Some((pidfile, writer)) = pidfile {
            if writer == sys::getpid() {
                pidfile.remove();
            }
        }
        if !stopping_sent {
            Notifier::from_env().stopping();
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code.code())
}

type Taken = (Option<(Pidfile, libc::pid_t)>, BTreeSet<libc::pid_t>, bool);

fn take(c: &mut Cleanup) -> Taken {
    (
        c.pidfile.take(),
        std::mem::take(&mut c.children),
        c.stopping_sent,
    )
}

/// SIGTERM to every child, reaped until none is left; SIGKILL after the grace time.
fn end_children(mut children: BTreeSet<libc::pid_t>) {
    for &pid in &children {
        let _ = sys::kill(pid, libc::SIGTERM);
    }
    let mut killed = false;
    let mut deadline = Instant::now() + CHILD_GRACE;
    while !children.is_empty() {
        while let Ok(Some((pid, _))) = sys::wait_any_nohang() {
            children.remove(&pid);
        }
        // A pid that no longer exists was reaped elsewhere.
        children.retain(|&pid| sys::kill(pid, 0).is_ok());
        if children.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            if killed {
                break;
            }
            for &pid in &children {
                let _ = sys::kill(pid, libc::SIGKILL);
            }
            killed = true;
            deadline = Instant::now() + CHILD_GRACE;
        }
        std::thread::sleep(REAP_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_clock_terms_then_kills_then_gives_up() {
        let t0 = Instant::now();
        let mut c = StopClock::new(t0, Some(Duration::from_secs(10)));
        assert_eq!(c.next_wake(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(c.due(t0 + Duration::from_secs(9)), None);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(c.due(t1), Some(StopStep::Term));
        assert_eq!(c.due(t1), None);
        assert_eq!(c.next_wake(), Some(t1 + CHILD_GRACE));
        let t2 = t1 + CHILD_GRACE;
        assert_eq!(c.due(t2), Some(StopStep::Kill));
        assert_eq!(c.due(t2 + CHILD_GRACE), Some(StopStep::GiveUp));
        assert_eq!(c.next_wake(), None);
        assert_eq!(c.due(t2 + CHILD_GRACE * 10), None);
    }

    #[test]
    fn a_grace_of_for_ever_never_signals() {
        let t0 = Instant::now();
        let mut c = StopClock::new(t0, None);
        assert_eq!(c.next_wake(), None);
        assert_eq!(c.due(t0 + Duration::from_secs(1_000_000)), None);
        let mut huge = StopClock::new(t0, Some(Duration::MAX));
        assert_eq!(huge.due(t0 + Duration::from_secs(1_000_000)), None);
    }
}
