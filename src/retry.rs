//! Per-sync failure handling: what a finished transfer means for its sync (ok, retry, failed)
//! and when the sync may try again (exponential backoff with jitter, capped by
//! `settings{ maxBackoff }`).
//!
//! Owns: the [`Backoff`] record of one sync (consecutive failed attempts, the instant before
//! which the sync starts nothing, whether it has failed fatally), the wording of the failure,
//! retry and recovery log lines, and the names of signals. A sync in backoff keeps every
//! pending change; it only waits.
//!
//! Must not touch: the delay list, Lua, the poll loop (`sync.rs` applies the outcome to the
//! delays, the event loop decides about exiting).

use std::time::{Duration, Instant};

use crate::log;

/// Default of `settings{ maxBackoff }`: the longest wait between two attempts, in seconds.
pub(crate) const DEFAULT_MAX_BACKOFF: f64 = 300.0;
/// The wait before the first retry, doubled on every further failure.
const FIRST_STEP: f64 = 1.0;

/// Why a transfer did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The layer's table said `again` for this exit code.
    Exit { command: Vec<u8>, code: i32 },
    /// The layer's table said `die`, or the code is not in the table.
    Fatal { command: Vec<u8>, code: i32 },
    /// The child was killed by this signal.
    Signal { command: Vec<u8>, signal: i32 },
    /// fork/exec failed before the command ran.
    Spawn { command: Vec<u8>, error: String },
}

impl Failure {
    fn describe(&self) -> String {
        let cmd = |c: &[u8]| String::from_utf8_lossy(c).into_owned();
        match self {
            Failure::Exit { command, code } => {
                format!(
                    "{} exited with {code}{}",
                    cmd(command),
                    exit_meaning(command, *code)
                )
            }
            Failure::Fatal { command, code } => format!(
                "{} exited with {code}{}, a fatal code",
                cmd(command),
                exit_meaning(command, *code)
            ),
            Failure::Signal { command, signal } => {
                format!("{} was killed by {}", cmd(command), signal_name(*signal))
            }
            Failure::Spawn { command, error } => format!("cannot spawn {}: {error}", cmd(command)),
        }
    }

    pub(crate) fn is_fatal(&self) -> bool {
        matches!(self, Failure::Fatal { .. })
    }
}

/// ` (meaning)` of a well-known rsync exit status, else nothing.
fn exit_meaning(command: &[u8], code: i32) -> String {
    let base = command.rsplit(|b| *b == b'/').next().unwrap_or(command);
    if base != b"rsync" {
        return String::new();
    }
    crate::exit::rsync_status_meaning(code)
        .map(|meaning| format!(" ({meaning})"))
        .unwrap_or_default()
}

/// `SIGKILL`, `SIGTERM`, ... or `signal N`.
pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// The health of a sync as its failures see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Ok,
    Retrying,
    Failed,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Retrying => "retrying",
            State::Failed => "failed",
        }
    }
}

/// Backoff record of one sync.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// Consecutive failed attempts since the last success.
    attempts: u32,
    /// No transfer starts before this instant.
    until: Option<Instant>,
    /// The last failure was fatal for this sync.
    failed: bool,
    /// The last failure, as logged.
    last: Option<String>,
    /// Attempts whose failure was logged; a failure of the same step is not logged again.
    logged_attempt: u32,
    /// Jitter state.
    seed: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Backoff {
            attempts: 0,
            until: None,
            failed: false,
            last: None,
            logged_attempt: 0,
            seed: t ^ ((std::process::id() as u64) << 32) | 1,
        }
    }

    pub(crate) fn state(&self) -> State {
        if self.failed {
            State::Failed
        } else if self.attempts > 0 {
            State::Retrying
        } else {
            State::Ok
        }
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last failure, as logged.
    pub(crate) fn last_failure(&self) -> Option<&str> {
        self.last.as_deref()
    }

    /// The instant before which the sync must start nothing, while it lies ahead.
    pub(crate) fn holds_until(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|t| *t > now)
    }

    /// A number in [0, 1).
    fn random(&mut self) -> f64 {
        // xorshift64*
        let mut x = self.seed;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.seed = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The wait before attempt `attempts + 1`: 1 s doubling up to `cap`, jittered to between
    /// 100 % and 125 % of that (never above the cap, never below upstream's 1 s); a fatal
    /// failure waits the cap.
    fn wait(&mut self, cap: f64, fatal: bool) -> Duration {
        // (a year at most: the validated range, and far from Duration's and Instant's limits)
        let cap = if cap.is_finite() && cap >= FIRST_STEP {
            cap.min(31_536_000.0)
        } else {
            DEFAULT_MAX_BACKOFF
        };
        let step = if fatal {
            cap
        } else {
            let exp = self.attempts.saturating_sub(1).min(62);
            (FIRST_STEP * 2f64.powi(exp as i32)).min(cap)
        };
        Duration::from_secs_f64((step * (1.0 + 0.25 * self.random())).min(cap).max(step))
    }

    /// Records a failed attempt of sync `name` with `pending` changes kept; returns the instant
    /// of the next attempt. Logs one line per attempt (the layer may log its own as well).
    pub(crate) fn failure(
        &mut self,
        name: &[u8],
        failure: &Failure,
        pending: usize,
        cap: f64,
        now: Instant,
    ) -> Instant {
        // Several processes of one sync failing in the same step count as one attempt.
        if self.until.is_none_or(|t| t <= now) {
            self.attempts = self.attempts.saturating_add(1);
            let fatal = failure.is_fatal();
            self.failed = fatal;
            let wait = self.wait(cap, fatal);
            self.until = Some(now + wait);
        } else if failure.is_fatal() {
            self.failed = true;
        }
        let what = failure.describe();
        if self.logged_attempt != self.attempts || self.last.as_deref() != Some(what.as_str()) {
            self.logged_attempt = self.attempts;
            let wait = self
                .until
                .map_or(0.0, |t| t.duration_since(now).as_secs_f64());
            let head = if self.failed {
                "failed"
            } else {
                "transfer failed"
            };
            log::error(
                [
                    String::from_utf8_lossy(name).as_bytes(),
                    format!(
                        ": {head}: {what}; attempt {}, {pending} pending changes kept, \
                         next try in {wait:.1} s",
                        self.attempts
                    )
                    .as_bytes(),
                ]
                .concat(),
            );
        }
        self.last = Some(what);
        self.until.unwrap_or(now)
    }

    /// A transfer of the sync succeeded: the backoff is reset, a recovery logged.
    pub(crate) fn success(&mut self, name: &[u8]) {
        if self.attempts > 0 {
            log::normal(
                [
                    String::from_utf8_lossy(name).as_bytes(),
                    format!(" recovered after {} attempts", self.attempts).as_bytes(),
                ]
                .concat(),
            );
        }
        self.attempts = 0;
        self.until = None;
        self.failed = false;
        self.last = None;
        self.logged_attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit23() -> Failure {
        Failure::Exit {
            command: b"rsync".to_vec(),
            code: 23,
        }
    }

    #[test]
    fn waits_double_from_one_second_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new();
        let now = Instant::now();
        let mut t = now;
        let mut waits = Vec::new();
        for _ in 0..12 {
            let next = b.failure(b"S", &exit23(), 1, 60.0, t);
            waits.push(next.duration_since(t).as_secs_f64());
            t = next;
        }
        for (i, w) in waits.iter().enumerate() {
            let step = (2f64.powi(i as i32)).min(60.0);
            assert!(
                *w >= step - 1e-9 && *w <= (step * 1.25).min(60.0) + 1e-9,
                "{i}: {w} {waits:?}"
            );
        }
        assert_eq!(b.attempts(), 12);
        assert_eq!(b.state(), State::Retrying);
        b.success(b"S");
        assert_eq!(b.state(), State::Ok);
        assert!(b.holds_until(t).is_none());
    }

    #[test]
    fn failures_within_one_step_count_once_and_fatal_waits_the_cap() {
        let mut b = Backoff::new();
        let now = Instant::now();
        b.failure(b"S", &exit23(), 1, 60.0, now);
        b.failure(b"S", &exit23(), 1, 60.0, now);
        assert_eq!(b.attempts(), 1);
        let fatal = Failure::Fatal {
            command: b"rsync".to_vec(),
            code: 2,
        };
        let later = now + Duration::from_secs(2);
        let next = b.failure(b"S", &fatal, 1, 60.0, later);
        assert!(next.duration_since(later) >= Duration::from_secs(60));
        assert_eq!(b.state(), State::Failed);
    }

    #[test]
    fn signals_have_names() {
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(64), "signal 64");
    }

    #[test]
    fn rsync_exit_statuses_are_explained_only_for_rsync() {
        let exit = |command: &[u8], code| Failure::Exit {
            command: command.to_vec(),
            code,
        };
        assert_eq!(
            exit(b"/usr/bin/rsync", 24).describe(),
            "/usr/bin/rsync exited with 24 (source files vanished)"
        );
        assert_eq!(
            exit(b"rsync", 23).describe(),
            "rsync exited with 23 (partial transfer)"
        );
        assert_eq!(exit(b"rsync", 1).describe(), "rsync exited with 1");
        assert_eq!(exit(b"/bin/cp", 23).describe(), "/bin/cp exited with 23");
    }
}
