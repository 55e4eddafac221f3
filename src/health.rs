//! Health: what each sync and the daemon as a whole are doing, kept by the core as things happen
//! and read by every report (status file, metrics file, `/metrics`, systemd `STATUS=`).
//!
//! Owns: [`SyncState`], the per-sync record [`SyncHealth`] (one on each `SyncJob`, updated where
//! events arrive, processes spawn and are collected), the daemon-wide record [`DaemonHealth`]
//! (kept across HUP restarts) and [`Snapshot`], the owned copy of both that reports render.
//! The coarse clock [`clock`] stamps pending delays so the age of the oldest one (the lag) is
//! known without a scan.
//!
//! Must not touch: Lua, the poll loop, the file system; it decides nothing about scheduling.
//!
//! How the state moves: a sync starts in [`SyncState::Starting`]; a transfer that ends well
//! makes it [`SyncState::Ok`] (so does the end of the startup walk of a sync without a startup
//! transfer); a transfer whose outcome is "again" makes it [`SyncState::Retrying`], one whose
//! outcome is fatal [`SyncState::Failed`]. Two pauses show over that state while they last:
//! [`SyncHealth::set_source_gone`] ([`SyncState::SourceGone`], its source directory is away)
//! and [`SyncHealth::set_held`] ([`SyncState::WaitingForTunnel`], its tunnel is down);
//! afterwards the state its transfers made of it shows again, whatever happened meanwhile.
//! Code that decides on retries and failures by itself calls [`SyncHealth::set_state`].

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What a sync is doing, as reports show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SyncState {
    /// Watches are being set up or the startup transfer has not finished yet.
    #[default]
    Starting,
    /// The last transfer ended well.
    Ok,
    /// The last transfer failed temporarily; its changes wait for the next attempt.
    Retrying,
    /// The last transfer failed for good.
    Failed,
    /// The sync's tunnel is not up: changes are queued, nothing is transferred.
    WaitingForTunnel,
    /// The sync's source directory was moved away or deleted: changes are kept, nothing is
    /// transferred until it is back.
    SourceGone,
}

impl SyncState {
    /// Every state, in the order reports list them.
    pub(crate) const ALL: [SyncState; 6] = [
        SyncState::Starting,
        SyncState::Ok,
        SyncState::Retrying,
        SyncState::Failed,
        SyncState::WaitingForTunnel,
        SyncState::SourceGone,
    ];

    /// The name in reports: `starting`, `ok`, `retrying`, `failed`, `waiting_for_tunnel`,
    /// `source_gone`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SyncState::Starting => "starting",
            SyncState::Ok => "ok",
            SyncState::Retrying => "retrying",
            SyncState::Failed => "failed",
            SyncState::WaitingForTunnel => "waiting_for_tunnel",
            SyncState::SourceGone => "source_gone",
        }
    }
}

/// How a collected transfer ended, as `sync.rs` judges it (see `retry.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    /// To be tried again.
    Retry,
    /// Given up.
    Failed,
}

/// The last failed transfer of a sync.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) at: SystemTime,
    pub(crate) exit_code: i32,
    /// The command line, arguments separated by spaces.
    pub(crate) command: Vec<u8>,
}

/// Longest command line kept for the last failure.
const COMMAND_MAX: usize = 512;

/// The health record of one sync. Counters only grow during a run.
#[derive(Clone, Debug, Default)]
pub(crate) struct SyncHealth {
    /// What its transfers made of it (shown unless a pause is).
    state: SyncState,
    /// Its tunnel is down.
    held: bool,
    /// Its source directory is away.
    source_gone: bool,
    pub(crate) events_received: u64,
    pub(crate) events_excluded: u64,
    pub(crate) transfers_started: u64,
    pub(crate) transfers_succeeded: u64,
    pub(crate) transfers_failed: u64,
    pub(crate) consecutive_failures: u64,
    pub(crate) last_success: Option<SystemTime>,
    pub(crate) last_failure: Option<Failure>,
    /// Command lines of the running transfers, by pid.
    commands: Commands,
}

/// Command lines by pid; a report's copy leaves them out.
#[derive(Debug, Default)]
struct Commands(HashMap<libc::pid_t, Vec<u8>>);

impl Clone for Commands {
    fn clone(&self) -> Commands {
        Commands::default()
    }
}

impl SyncHealth {
    /// What reports show: a pause while it lasts (the source being away first), else what its
    /// transfers made of it.
    pub(crate) fn state(&self) -> SyncState {
        if self.source_gone {
            SyncState::SourceGone
        } else if self.held {
            SyncState::WaitingForTunnel
        } else {
            self.state
        }
    }

    /// Sets the state directly (for code that decides retries and failures itself). During a
    /// pause it is kept for when the pause ends.
    pub(crate) fn set_state(&mut self, state: SyncState) {
        self.state = state;
    }

    /// The tunnel of the sync went down (`true`) or came up (`false`).
    pub(crate) fn set_held(&mut self, held: bool) {
        self.held = held;
    }

    /// The source directory of the sync went away (`true`) or is back (`false`).
    pub(crate) fn set_source_gone(&mut self, gone: bool) {
        self.source_gone = gone;
    }

    /// The startup walk ended for a sync that has no startup transfer: it is in sync.
    pub(crate) fn started_without_transfer(&mut self) {
        if self.state == SyncState::Starting {
            self.state = SyncState::Ok;
        }
    }

    /// A file-system event reached the sync (before its excludes are applied).
    pub(crate) fn event_received(&mut self) {
        self.events_received += 1;
    }

    /// An event was dropped by the sync's excludes or filters.
    pub(crate) fn event_excluded(&mut self) {
        self.events_excluded += 1;
    }

    /// A transfer process started for the sync; `command` from [`command_line`].
    pub(crate) fn transfer_started(&mut self, pid: libc::pid_t, command: Vec<u8>) {
        self.transfers_started += 1;
        self.commands.0.insert(pid, command);
    }

    /// A transfer process of the sync was collected.
    pub(crate) fn transfer_finished(&mut self, pid: libc::pid_t, outcome: Outcome, exit_code: i32) {
        let command = self.commands.0.remove(&pid).unwrap_or_default();
        let now = SystemTime::now();
        match outcome {
            Outcome::Succeeded => {
                self.transfers_succeeded += 1;
                self.consecutive_failures = 0;
                self.last_success = Some(now);
                self.set_state(SyncState::Ok);
            }
            Outcome::Retry | Outcome::Failed => {
                self.transfers_failed += 1;
                self.consecutive_failures += 1;
                self.last_failure = Some(Failure {
                    at: now,
                    exit_code,
                    command,
                });
                self.set_state(if outcome == Outcome::Retry {
                    SyncState::Retrying
                } else {
                    SyncState::Failed
                });
            }
        }
    }
}

/// A command line for reports: arguments separated by spaces, at most [`COMMAND_MAX`] bytes.
pub(crate) fn command_line(argv: &[Vec<u8>]) -> Vec<u8> {
    let mut command = Vec::new();
    for (i, a) in argv.iter().enumerate() {
        if command.len() >= COMMAND_MAX {
            break;
        }
        if i > 0 {
            command.push(b' ');
        }
        command.extend_from_slice(a);
    }
    command.truncate(COMMAND_MAX);
    command
}

/// Daemon-wide health, kept across HUP restarts.
#[derive(Clone, Debug)]
pub(crate) struct DaemonHealth {
    pub(crate) started: SystemTime,
    pub(crate) started_mono: Instant,
    /// Event queue overflows seen.
    pub(crate) overflows: u64,
    /// Restarts (HUP or overflow).
    pub(crate) restarts: u64,
    /// The file-system monitor in use (`inotify`, ...).
    pub(crate) monitor: &'static str,
}

impl DaemonHealth {
    pub(crate) fn new() -> DaemonHealth {
        DaemonHealth {
            started: SystemTime::now(),
            started_mono: Instant::now(),
            overflows: 0,
            restarts: 0,
            monitor: "inotify",
        }
    }
}

/// Seconds since the process started, for stamping pending delays (4 bytes each).
pub(crate) fn clock() -> u32 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_secs().min(u32::MAX as u64) as u32
}

/// Seconds since the Unix epoch, for reports.
pub(crate) fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One sync in a [`Snapshot`].
#[derive(Clone, Debug)]
pub(crate) struct SyncView {
    pub(crate) name: Vec<u8>,
    pub(crate) source: Vec<u8>,
    /// `inotify` or `fanotify`.
    pub(crate) monitor: &'static str,
    pub(crate) state: SyncState,
    /// Delays queued (waiting, blocked or being transferred).
    pub(crate) pending: usize,
    /// Age of the oldest pending change, 0 when nothing is pending.
    pub(crate) lag_secs: u64,
    pub(crate) running: usize,
    pub(crate) health: SyncHealth,
}

/// What reports render: an owned copy, taken at one instant.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) at: SystemTime,
    pub(crate) uptime_secs: f64,
    pub(crate) daemon: DaemonHealth,
    /// Directories watched.
    pub(crate) watches: usize,
    pub(crate) syncs: Vec<SyncView>,
}

impl Snapshot {
    /// A snapshot of `core`'s syncs with the daemon's record and watch count.
    pub(crate) fn take(
        core: &crate::sync::Core,
        daemon: &DaemonHealth,
        watches: usize,
    ) -> Snapshot {
        let now = clock();
        let syncs = core
            .syncs
            .iter()
            .map(|s| SyncView {
                name: s.name.clone(),
                source: s.source.clone(),
                monitor: s.monitor.name(),
                state: s.health.state(),
                pending: s.delays.len(),
                lag_secs: s
                    .delays
                    .oldest_since()
                    .map_or(0, |since| u64::from(now.saturating_sub(since))),
                running: s.processes.len(),
                health: s.health.clone(),
            })
            .collect();
        Snapshot {
            at: SystemTime::now(),
            uptime_secs: daemon.started_mono.elapsed().as_secs_f64(),
            daemon: daemon.clone(),
            watches,
            syncs,
        }
    }

    /// systemd's `STATUS=` summary, e.g.
    /// `3 syncs: 2 ok, 1 retrying (exit 10); 1234 pending, lag 5 s`.
    pub(crate) fn summary(&self) -> String {
        let n = self.syncs.len();
        let mut parts = Vec::new();
        for state in SyncState::ALL {
            let of: Vec<&SyncView> = self.syncs.iter().filter(|s| s.state == state).collect();
            if of.is_empty() {
                continue;
            }
            let mut part = format!("{} {}", of.len(), state.as_str().replace('_', " "));
            if matches!(state, SyncState::Retrying | SyncState::Failed) {
                let mut codes: Vec<i32> = of
                    .iter()
                    .filter_map(|s| s.health.last_failure.as_ref().map(|f| f.exit_code))
                    .collect();
                codes.sort_unstable();
                codes.dedup();
                if !codes.is_empty() {
                    let codes: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
                    part.push_str(&format!(" (exit {})", codes.join(", ")));
                }
            }
            parts.push(part);
        }
        let pending: usize = self.syncs.iter().map(|s| s.pending).sum();
        let lag = self.syncs.iter().map(|s| s.lag_secs).max().unwrap_or(0);
        format!(
            "{n} sync{}: {}; {pending} pending, lag {lag} s",
            if n == 1 { "" } else { "s" },
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_move_the_state_and_the_counters() {
        let mut h = SyncHealth::default();
        assert_eq!(h.state(), SyncState::Starting);
        h.transfer_started(10, command_line(&[b"rsync".to_vec(), b"-a".to_vec()]));
        h.transfer_finished(10, Outcome::Retry, 23);
        assert_eq!(h.state(), SyncState::Retrying);
        let f = h.last_failure.clone().expect("failure");
        assert_eq!((f.exit_code, f.command.as_slice()), (23, &b"rsync -a"[..]));
        h.transfer_started(11, b"rsync".to_vec());
        h.transfer_finished(11, Outcome::Retry, 23);
        assert_eq!(h.consecutive_failures, 2);
        h.transfer_started(12, b"rsync".to_vec());
        h.transfer_finished(12, Outcome::Succeeded, 0);
        assert_eq!(h.state(), SyncState::Ok);
        assert_eq!(h.consecutive_failures, 0);
        assert_eq!(
            (
                h.transfers_started,
                h.transfers_succeeded,
                h.transfers_failed
            ),
            (3, 1, 2)
        );
        assert!(h.last_success.is_some());
    }

    #[test]
    fn a_held_sync_waits_for_its_tunnel_and_keeps_what_happened_meanwhile() {
        let mut h = SyncHealth::default();
        h.started_without_transfer();
        h.set_held(true);
        assert_eq!(h.state(), SyncState::WaitingForTunnel);
        h.set_held(true);
        h.set_state(SyncState::Failed);
        assert_eq!(h.state(), SyncState::WaitingForTunnel);
        h.set_held(false);
        assert_eq!(h.state(), SyncState::Failed);
        h.set_held(false);
        assert_eq!(h.state(), SyncState::Failed);
    }

    #[test]
    fn a_sync_whose_source_is_away_shows_it_over_every_other_state() {
        let mut h = SyncHealth::default();
        h.started_without_transfer();
        h.set_source_gone(true);
        h.set_held(true);
        // What a transfer made of it during the pauses shows once they are over.
        h.set_state(SyncState::Retrying);
        for (gone, held, shown) in [
            (true, true, SyncState::SourceGone),
            (true, false, SyncState::SourceGone),
            (false, true, SyncState::WaitingForTunnel),
            (false, false, SyncState::Retrying),
        ] {
            h.set_source_gone(gone);
            h.set_held(held);
            assert_eq!(h.state(), shown, "source gone {gone}, held {held}");
        }
        assert_eq!(SyncState::SourceGone.as_str(), "source_gone");
    }

    #[test]
    fn the_summary_counts_states_and_names_exit_codes() {
        let view = |state, code: Option<i32>, pending, lag| SyncView {
            name: b"s".to_vec(),
            source: b"/s/".to_vec(),
            monitor: "inotify",
            state,
            pending,
            lag_secs: lag,
            running: 0,
            health: SyncHealth {
                last_failure: code.map(|exit_code| Failure {
                    at: SystemTime::now(),
                    exit_code,
                    command: Vec::new(),
                }),
                ..SyncHealth::default()
            },
        };
        let snap = Snapshot {
            at: SystemTime::now(),
            uptime_secs: 1.0,
            daemon: DaemonHealth::new(),
            watches: 3,
            syncs: vec![
                view(SyncState::Ok, None, 0, 0),
                view(SyncState::Retrying, Some(10), 1200, 5),
                view(SyncState::Ok, Some(23), 34, 2),
            ],
        };
        assert_eq!(
            snap.summary(),
            "3 syncs: 2 ok, 1 retrying (exit 10); 1234 pending, lag 5 s"
        );
    }
}
