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
//! Must not touch: Lua, syncs, the poll loop; it logs nothing (a failing log may be why it runs).

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
