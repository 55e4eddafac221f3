//! systemd's readiness protocol (sd_notify(3)), spoken directly over the datagram socket named
//! by `NOTIFY_SOCKET`, so `Type=notify` units know when the startup transfers are done.
//!
//! Owns: the socket, what is sent and when it was last sent (STATUS= lines are rate-limited,
//! WATCHDOG=1 keeps to half of `WATCHDOG_USEC`, `EXTEND_TIMEOUT_USEC=` repeats until READY=1 so
//! a long startup is not killed by `TimeoutStartSec`). Without `NOTIFY_SOCKET` every call is a
//! no-op. Also [`Progress`]: the startup walk's progress lines, logged and sent as `STATUS=`.
//! Must not touch: syncs, Lua, the poll loop (the loop asks [`Notifier::next_due`] for its
//! timeout and calls in).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// The notification socket and its bookkeeping.
#[derive(Debug)]
pub(crate) struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    last_watchdog: Instant,
    last_status: Option<(String, Instant)>,
    /// A STATUS= text held back by the rate limit.
    pending_status: Option<String>,
    ready_sent: bool,
    /// When `EXTEND_TIMEOUT_USEC=` was last sent during this startup.
    last_extend: Option<Instant>,
}

/// While starting, `EXTEND_TIMEOUT_USEC=` asks systemd for this much more time ...
const EXTEND_BY: Duration = Duration::from_secs(30);
/// ... and is repeated this often, well before the extension runs out.
const EXTEND_EVERY: Duration = Duration::from_secs(10);

/// STATUS= lines are sent at most this often.
const STATUS_EVERY: Duration = Duration::from_secs(1);

fn address(name: &std::ffi::OsStr) -> Option<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        return SocketAddr::from_abstract_name(abstract_name).ok();
    }
    SocketAddr::from_pathname(name).ok()
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` (honouring `WATCHDOG_PID`).
    pub(crate) fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let addr = address(&name)?;
            let sock = UnixDatagram::unbound().ok()?;
            Some((sock, addr))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us && target.is_some())
            .map(|u| Duration::from_micros(u / 2));
        Notifier {
            target,
            watchdog,
            last_watchdog: Instant::now(),
            last_status: None,
            pending_status: None,
            ready_sent: false,
            last_extend: None,
        }
    }

    fn send(&self, message: &str) {
        if let Some((sock, addr)) = &self.target {
            let _ = sock.send_to_addr(message.as_bytes(), addr);
        }
    }

    /// Whether there is a socket to notify: callers skip building messages otherwise.
    pub(crate) fn active(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`, once per run (a restart re-arms it).
    pub(crate) fn ready(&mut self) {
        if !self.ready_sent {
            self.ready_sent = true;
            self.last_extend = None;
            self.send("READY=1");
        }
    }

    /// Before READY=1: `EXTEND_TIMEOUT_USEC=` every [`EXTEND_EVERY`], so the start timeout
    /// never runs out while the startup walk or transfers make progress.
    pub(crate) fn extend_startup(&mut self, now: Instant) {
        if self.ready_sent || self.target.is_none() {
            return;
        }
        if self
            .last_extend
            .is_none_or(|t| now.duration_since(t) >= EXTEND_EVERY)
        {
            self.last_extend = Some(now);
            self.send(&format!("EXTEND_TIMEOUT_USEC={}", EXTEND_BY.as_micros()));
        }
    }

    /// `STATUS=` at once, outside the rate limit (startup progress is already spaced out).
    pub(crate) fn status_now(&mut self, text: String, now: Instant) {
        if self.target.is_none() {
            return;
        }
        self.send(&format!("STATUS={text}"));
        self.pending_status = None;
        self.last_status = Some((text, now));
    }

    /// `RELOADING=1` for a HUP; the next run sends READY=1 again.
    pub(crate) fn reloading(&mut self) {
        self.ready_sent = false;
        self.send("RELOADING=1");
    }

    /// `STOPPING=1` for TERM/INT.
    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// `STATUS=...`, sent when it changed and at most once a second.
    pub(crate) fn status(&mut self, text: String, now: Instant) {
        if self.target.is_none() {
            return;
        }
        if let Some((last, when)) = &self.last_status {
            if *last == text {
                self.pending_status = None;
                return;
            }
            if now.duration_since(*when) < STATUS_EVERY {
                self.pending_status = Some(text);
                return;
            }
        }
        self.send(&format!("STATUS={text}"));
        self.pending_status = None;
        self.last_status = Some((text, now));
    }

    /// Sends `WATCHDOG=1` when half the watchdog interval passed.
    pub(crate) fn watchdog(&mut self, now: Instant) {
        if let Some(every) = self.watchdog {
            if now.duration_since(self.last_watchdog) >= every {
                self.last_watchdog = now;
                self.send("WATCHDOG=1");
            }
        }
    }

    /// When the loop must wake up for the watchdog or a held-back STATUS= line.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let dog = self.watchdog.map(|every| self.last_watchdog + every);
        let extend = self.last_extend.map(|t| t + EXTEND_EVERY);
        let dog = match (dog, extend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let status = match (&self.pending_status, &self.last_status) {
            (Some(_), Some((_, when))) => Some(*when + STATUS_EVERY),
            _ => None,
        };
        match (dog, status) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Progress of the startup walk: every [`Progress::every`] a line with the directories
/// watched so far and the rate, also sent as `STATUS=`, with `EXTEND_TIMEOUT_USEC=`.
#[derive(Debug)]
pub(crate) struct Progress {
    start: Instant,
    last: Instant,
    every: Duration,
    dirs: u64,
    /// A progress line was shown: the end of the walk gets one too.
    shown: bool,
}

/// Default spacing of progress lines; `LSYNCD_PROGRESS_INTERVAL` (seconds) changes it.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The clock is read once per this many directories.
const PROGRESS_STRIDE: u64 = 256;

impl Progress {
    pub(crate) fn new(now: Instant) -> Progress {
        let every = std::env::var("LSYNCD_PROGRESS_INTERVAL")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map_or(PROGRESS_EVERY, |v| Duration::from_secs_f64(v.min(1e6)));
        Progress {
            start: now,
            last: now,
            every,
            dirs: 0,
            shown: false,
        }
    }

    fn line(&self, now: Instant, done: bool) -> String {
        let secs = now.duration_since(self.start).as_secs_f64();
        let rate = if secs > 0.0 {
            (self.dirs as f64 / secs) as u64
        } else {
            0
        };
        if done {
            format!(
                "Startup: watching {} directories, took {secs:.1} s ({rate}/s)",
                self.dirs
            )
        } else {
            format!(
                "Startup: watching {} directories so far ({rate}/s)",
                self.dirs
            )
        }
    }

    /// One more directory watched.
    pub(crate) fn dir(&mut self, n: &mut Notifier) {
        self.dirs += 1;
        if !self.dirs.is_multiple_of(PROGRESS_STRIDE) {
            return;
        }
        let now = Instant::now();
        n.extend_startup(now);
        if now.duration_since(self.last) < self.every {
            return;
        }
        self.last = now;
        self.shown = true;
        let line = self.line(now, false);
        crate::log::normal(&line);
        n.status_now(line, now);
    }

    /// The walk ended.
    pub(crate) fn done(&self, n: &mut Notifier) {
        if self.shown {
            let now = Instant::now();
            let line = self.line(now, true);
            crate::log::normal(&line);
            n.status_now(line, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_and_path_addresses_are_understood() {
        assert!(address(std::ffi::OsStr::new("@lsyncd-test")).is_some());
        assert!(address(std::ffi::OsStr::new("/run/systemd/notify")).is_some());
    }
}
