//! systemd's readiness protocol (sd_notify(3)), spoken directly over the datagram socket named
//! by `NOTIFY_SOCKET`, so `Type=notify` units know when the startup transfers are done.
//!
//! Owns: the socket, what is sent and when it was last sent (STATUS= lines are rate-limited,
//! WATCHDOG=1 keeps to half of `WATCHDOG_USEC`). Without `NOTIFY_SOCKET` every call is a no-op.
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
}

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
            self.send("READY=1");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_and_path_addresses_are_understood() {
        assert!(address(std::ffi::OsStr::new("@lsyncd-test")).is_some());
        assert!(address(std::ffi::OsStr::new("/run/systemd/notify")).is_some());
    }
}
