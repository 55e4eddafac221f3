//! Signals the daemon reacts to: SIGHUP, SIGTERM, SIGINT and SIGCHLD (SPEC §13.4), delivered
//! through signal-hook's self-pipe and read in the poll loop (signal-hook-mio), so no signal
//! handler of our own exists.
//!
//! Owns: the registration of those four signals and the translation of what arrived into a
//! [`Pending`] set. Must not touch: anything that *acts* on a signal (fading, restarting,
//! reaping: that is `event_loop.rs`, and reaping is `spawn::reap`).
//!
//! SIGCHLD is registered only so that a child's exit wakes `poll`; which children exited is
//! learnt from `waitpid`, never from the signal (several SIGCHLDs may collapse into one).
//! SIGPIPE is not handled here: it is ignored (`sys::ignore_sigpipe`).
//!
//! TERM and INT are also recorded in a process-wide flag as they arrive, so that a fatal exit
//! decided while the process is being stopped ends as the stop would ([`stop_wins`]).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use mio::{Interest, Registry, Token};

use crate::exit::ExitCode;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals as HookSignals;

/// The signals noticed by one [`Signals::drain`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    /// SIGHUP: fade, then restart (SPEC §13.5).
    pub(crate) hup: bool,
    /// SIGTERM or SIGINT, the signal number: fade, then exit with 128 + it (SPEC §13.4). When
    /// both arrived since the last drain, the lower number (SIGINT) is reported.
    pub(crate) term: Option<i32>,
    /// SIGCHLD: some child may have exited; reap.
    pub(crate) chld: bool,
}

/// The last TERM or INT received (its number), 0 before any; set by signal-hook's handler.
static STOP: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// The exit for a failing `code` decided after a TERM or INT arrived: that signal's. A service
/// manager or a shutdown that signals the whole process group kills the running transfers
/// too; their failure must not turn the requested stop into a fatal exit.
pub(crate) fn stop_wins(code: ExitCode) -> ExitCode {
    let sig = STOP.get().map_or(0, |s| s.load(Ordering::SeqCst));
    if code != ExitCode::Success && sig != 0 {
        ExitCode::Signal(sig as i32)
    } else {
        code
    }
}

/// The self-pipe of HUP, TERM, INT and CHLD, registered readable in the loop's poll.
///
/// Keep one instance for the life of the process (across HUP restarts): while none exists,
/// signal-hook's handler stays installed but does nothing, so a TERM in that window would be
/// lost instead of either handled or fatal.
pub(crate) struct Signals {
    signals: HookSignals,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals").finish_non_exhaustive()
    }
}

impl Signals {
    /// Installs the handlers (replacing the default "terminate" of HUP, TERM and INT) and
    /// registers the pipe's read end under `token` (`SIGNALS = Token(1)` in the loop).
    pub(crate) fn register(registry: &Registry, token: Token) -> io::Result<Self> {
        let stop = STOP.get_or_init(|| Arc::new(AtomicUsize::new(0)));
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register_usize(sig, Arc::clone(stop), sig as usize)?;
        }
        let mut signals = HookSignals::new([SIGHUP, SIGTERM, SIGINT, SIGCHLD])?;
        registry.register(&mut signals, token, Interest::READABLE)?;
        Ok(Self { signals })
    }

    /// Empties the self-pipe, then reports which signals arrived since the last call.
    ///
    /// The order is signal-hook's rule: `pending()` reads the pipe *before* looking at the
    /// flags, so a signal arriving meanwhile either sets a flag we still see or writes a new
    /// byte that wakes the next poll; the reverse order could lose it.
    pub(crate) fn drain(&mut self) -> Pending {
        let mut pending = Pending::default();
        for sig in self.signals.pending() {
            match sig {
                SIGHUP => pending.hup = true,
                SIGTERM | SIGINT => {
                    pending.term.get_or_insert(sig);
                }
                SIGCHLD => pending.chld = true,
                _ => {}
            }
        }
        pending
    }

    /// Re-arms the registration; with edge-triggered epoll this reports the pipe again if it
    /// still holds bytes. Used by tests to check that [`Signals::drain`] emptied it.
    #[cfg(test)]
    fn reregister(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.reregister(&mut self.signals, token, Interest::READABLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spawn::{reap, SpawnRequest, Spawner};
    use crate::sys::{self, test_lock};
    use mio::{Events, Poll};
    use std::time::{Duration, Instant};

    const SIGNALS: Token = Token(1);

    /// Polls until the signal pipe is readable (delivery to another thread of the test harness
    /// is asynchronous), then drains it and merges drains until `want` is satisfied.
    fn wait_for(
        poll: &mut Poll,
        signals: &mut Signals,
        want: impl Fn(&Pending) -> bool,
    ) -> Pending {
        let start = Instant::now();
        let mut events = Events::with_capacity(4);
        let mut seen = Pending::default();
        while !want(&seen) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "saw only {seen:?}"
            );
            match poll.poll(&mut events, Some(Duration::from_millis(100))) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other.expect("poll"),
            }
            if events.iter().any(|e| e.token() == SIGNALS) {
                let got = signals.drain();
                seen.hup |= got.hup;
                seen.chld |= got.chld;
                seen.term = seen.term.or(got.term);
            }
        }
        seen
    }

    /// After a drain the pipe holds nothing of what was drained: a re-armed registration
    /// reports no HUP/TERM/INT again. (A SIGCHLD may still come in: the test process has other
    /// tests' children, whose exits the lock cannot order.)
    fn assert_pipe_empty(poll: &mut Poll, signals: &mut Signals) {
        signals
            .reregister(poll.registry(), SIGNALS)
            .expect("reregister");
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .expect("poll");
        let again = signals.drain();
        let readable = events.iter().any(|e| e.token() == SIGNALS);
        assert!(
            !again.hup && again.term.is_none(),
            "drained signals reported again: {again:?}"
        );
        assert!(
            !readable || again.chld,
            "signal pipe readable with nothing in it"
        );
    }

    #[test]
    fn raised_signals_are_reported_and_the_pipe_emptied() {
        let _guard = test_lock();
        let mut poll = Poll::new().expect("poll");
        let mut signals = Signals::register(poll.registry(), SIGNALS).expect("register");
        type Want = fn(&Pending) -> bool;
        let cases: &[(&[i32], Want)] = &[
            (&[SIGHUP], |p| p.hup && p.term.is_none()),
            (&[SIGTERM], |p| p.term == Some(SIGTERM) && !p.hup),
            (&[SIGINT], |p| p.term == Some(SIGINT)),
            (&[SIGHUP, SIGTERM], |p| p.hup && p.term == Some(SIGTERM)),
        ];
        for (raised, want) in cases {
            for &sig in *raised {
                sys::kill(sys::getpid(), sig).expect("raise");
            }
            let seen = wait_for(&mut poll, &mut signals, want);
            assert!(want(&seen), "{raised:?}: {seen:?}");
            assert_pipe_empty(&mut poll, &mut signals);
        }
    }

    #[test]
    fn child_exit_wakes_the_loop_with_chld() {
        let _guard = test_lock();
        let mut poll = Poll::new().expect("poll");
        let mut signals = Signals::register(poll.registry(), SIGNALS).expect("register");
        let mut spawner = Spawner::new();
        let request = SpawnRequest {
            argv: vec![b"true".to_vec()],
            stdin: None,
            output: None,
        };
        let (pid, _) = spawner.spawn(poll.registry(), request).expect("spawn");
        wait_for(&mut poll, &mut signals, |p| p.chld);
        let mut out = Vec::new();
        reap(&mut out);
        assert!(out.contains(&(pid, 0, None)), "{out:?}");
        assert_pipe_empty(&mut poll, &mut signals);
    }
}
