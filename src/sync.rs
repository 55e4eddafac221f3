//! The syncs: one [`SyncJob`] per `sync{}` of the config, and [`Core`], the state every sync and
//! the Lua API share (the process table, the spawner handle, the global process count).
//!
//! Owns: turning file-system events into delays for each sync (SPEC §3.5, §4.2: exclusion,
//! move splitting, alarms, directory recursion §3.6), the per-sync process table, what is due
//! (SPEC §4.6), and what happens to delays when a child is collected (SPEC §6.5).
//!
//! Must not touch: Lua (it is called by `lua_rt` and by the event loop, never the other way),
//! the poll loop, fork/exec (that is `spawn.rs`, reached through [`Spawner`]).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::delay::{Delay, DelayId, DelayKind, DelayList, Pushed, Status};
use crate::exclude::Excludes;
use crate::exit::ExitCode;
use crate::health::{self, SyncHealth};
use crate::log;
use crate::retry::{Backoff, Failure, State};
use crate::spawn::{self, PipeState, SpawnRequest, Spawner};
use crate::watch::{FsEvent, FsKind, Monitor, MonitorChoice};

/// What a running child was spawned for.
#[derive(Debug)]
pub(crate) struct Agent {
    pub(crate) dids: Vec<DelayId>,
    pub(crate) is_list: bool,
    /// argv[0], for failure reports.
    pub(crate) command: Vec<u8>,
}

/// How a child of a sync ended, as the event loop hands it to [`Core::finish`].
#[derive(Debug)]
pub(crate) enum Ended<'a> {
    /// It exited with `code`; the layer's `collect` said `rc`.
    Exited { rc: Option<&'a [u8]>, code: i32 },
    /// A signal killed it: retried, its `collect` is not asked.
    Signalled(i32),
    /// fork/exec failed before the command ran.
    SpawnFailed(String),
}

/// One `sync{}`.
#[derive(Debug)]
pub(crate) struct SyncJob {
    pub(crate) name: Vec<u8>,
    /// Absolute, with a trailing `/`.
    pub(crate) source: Vec<u8>,
    /// Seconds to hold an event; `None` acts at once.
    pub(crate) delay: Option<f64>,
    pub(crate) max_delays: usize,
    pub(crate) max_processes: usize,
    pub(crate) on_move: bool,
    pub(crate) subdirs: bool,
    pub(crate) has_init: bool,
    pub(crate) excludes: Excludes,
    pub(crate) delays: DelayList,
    pub(crate) processes: HashMap<libc::pid_t, Agent>,
    /// A first event (normally the startup transfer) finished well (SPEC §13.7).
    pub(crate) init_done: bool,
    /// onepass: no more actions for this sync.
    pub(crate) disabled: bool,
    /// Its tunnel is not up: events are queued, no action runs (SPEC §14.2).
    pub(crate) held: bool,
    /// Its source directory was moved away or deleted: events are kept, no action runs
    /// until it is back (`source_root.rs`).
    pub(crate) source_gone: bool,
    /// `crontab` rules (SPEC §14.3): a due one queues a Full event.
    pub(crate) crontab: Vec<crate::crontab::CronRule>,
    /// When the next crontab rule is due.
    pub(crate) cron_next: Option<Instant>,
    /// The `monitor` key of this `sync{}` (or `-monitor`), if given; else `settings{}`'s.
    pub(crate) monitor_choice: Option<MonitorChoice>,
    /// The monitor its events come from, decided at startup.
    pub(crate) monitor: Monitor,
    /// What reports show about this sync.
    pub(crate) health: SyncHealth,
    /// Failed attempts and the wait before the next one.
    pub(crate) backoff: Backoff,
    /// The config takes a Full event (a `full` function, or layer 2/3's `onFull` through
    /// `default.action`): pending changes can collapse into one.
    pub(crate) has_full: bool,
    /// Above `maxPending` without a way to collapse: logged once, until the queue is back
    /// under the limit.
    pub(crate) over_limit_logged: bool,
    /// The Full event pending changes collapsed into; while it waits, new changes are part of
    /// it already.
    pub(crate) collapsed: Option<DelayId>,
}

impl SyncJob {
    /// Holds the sync (its tunnel is not up: events queue, no action runs) or releases it.
    pub(crate) fn hold(&mut self, held: bool) {
        self.held = held;
        self.health.set_held(held);
    }

    /// The next instant any crontab rule fires, from the wall-clock local time now.
    pub(crate) fn schedule_cron(&mut self, now: Instant) {
        let t = crate::sys::local_time_now();
        let civil = crate::crontab::CivilTime {
            year: t.year,
            month: (t.mon + 1) as u32,
            day: t.mday as u32,
            hour: t.hour as u32,
            minute: t.min as u32,
            second: t.sec.clamp(0, 60) as u32,
        };
        self.cron_next = self
            .crontab
            .iter()
            .filter_map(|r| r.next_after(civil))
            .map(|n| crate::crontab::seconds_between(civil, n))
            .min()
            .map(|secs| now + Duration::from_secs(secs.max(0) as u64));
    }
}

/// State shared between the event loop and the Lua API.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) syncs: Vec<SyncJob>,
    pub(crate) spawner: Spawner,
    pub(crate) registry: Option<mio::Registry>,
    /// Processes of all syncs.
    pub(crate) running: usize,
    /// `settings{ maxProcesses }`: the global cap.
    pub(crate) max_processes: Option<usize>,
    /// TERM/INT/HUP or overflow pending: no new processes.
    pub(crate) fading: bool,
    pub(crate) pid_owner: HashMap<libc::pid_t, usize>,
    /// Delays removed since the last cycle; Lua forgets their event tables.
    pub(crate) removed: Vec<(usize, DelayId)>,
    /// When daemonized with a logfile, children write to it (SPEC §6.1).
    pub(crate) child_logfile: Option<std::ffi::OsString>,
    /// The time base of Lua timestamps.
    pub(crate) origin: Instant,
    /// The earliest user `alarm()`, kept here so the loop need not ask Lua every pass.
    pub(crate) user_alarm: Option<Instant>,
    /// File descriptors configs observe (`observefd`): fd → (readable wanted, writable wanted).
    pub(crate) observed: std::collections::BTreeMap<std::os::fd::RawFd, (bool, bool)>,
    /// The config created tunnels: the loop ticks them at least once a second.
    pub(crate) tunnels: bool,
    /// Init delays not finished yet: the startup transfers still to do.
    pub(crate) init_pending: usize,
    /// A startup transfer failed temporarily and is being retried (insist).
    pub(crate) init_retried: bool,
    /// `settings{ maxBackoff }` in seconds.
    pub(crate) max_backoff: f64,
    /// Spawns that failed before exec, as (sync, stand-in pid, error): finished as failed
    /// attempts by the event loop after the actions of this cycle.
    pub(crate) spawn_failures: Vec<(usize, libc::pid_t, String)>,
    /// The next stand-in pid of a failed spawn (negative: never a real process).
    next_failed_pid: libc::pid_t,
    /// `settings{ maxPending }`: a sync holding more delays collapses them into one Full.
    pub(crate) max_pending: usize,
}

/// Default of `settings{ maxPending }`.
pub(crate) const DEFAULT_MAX_PENDING: usize = 100_000;

impl Core {
    pub(crate) fn new(origin: Instant) -> Core {
        Core {
            syncs: Vec::new(),
            spawner: Spawner::new(),
            registry: None,
            running: 0,
            max_processes: None,
            fading: false,
            pid_owner: HashMap::new(),
            removed: Vec::new(),
            child_logfile: None,
            origin,
            user_alarm: None,
            observed: Default::default(),
            tunnels: false,
            init_pending: 0,
            init_retried: false,
            max_backoff: crate::retry::DEFAULT_MAX_BACKOFF,
            spawn_failures: Vec::new(),
            next_failed_pid: -1,
            max_pending: DEFAULT_MAX_PENDING,
        }
    }

    /// The index of sync id `sid` as Lua passes it, if such a sync exists.
    pub(crate) fn sync_index(&self, sid: i64) -> Option<usize> {
        usize::try_from(sid).ok().filter(|s| *s < self.syncs.len())
    }

    /// Sync `sid` (an index from [`Core::sync_index`]).
    pub(crate) fn sync(&self, sid: usize) -> &SyncJob {
        &self.syncs[sid]
    }

    /// Sync `sid` (an index from [`Core::sync_index`]), to change.
    pub(crate) fn sync_mut(&mut self, sid: usize) -> &mut SyncJob {
        &mut self.syncs[sid]
    }

    /// Adds a sync read from the config; returns its index.
    pub(crate) fn add_sync(&mut self, job: SyncJob) -> usize {
        self.syncs.push(job);
        self.syncs.len() - 1
    }

    /// Whether the run is fading (TERM/INT/HUP or overflow): no new processes.
    pub(crate) fn is_fading(&self) -> bool {
        self.fading
    }

    /// The time base of Lua timestamps.
    pub(crate) fn origin(&self) -> Instant {
        self.origin
    }

    /// The earliest user `alarm()`, or none.
    pub(crate) fn set_user_alarm(&mut self, at: Option<Instant>) {
        self.user_alarm = at;
    }

    /// The config created tunnels: the loop ticks them from now on.
    pub(crate) fn note_tunnels(&mut self) {
        self.tunnels = true;
    }

    /// Processes running in all syncs, and the global cap.
    pub(crate) fn process_counts(&self) -> (usize, Option<usize>) {
        (self.running, self.max_processes)
    }

    /// `observefd`: watch `fd` for reading and/or writing; neither stops observing it.
    pub(crate) fn observe_fd(&mut self, fd: std::os::fd::RawFd, readable: bool, writable: bool) {
        if readable || writable {
            self.observed.insert(fd, (readable, writable));
        } else {
            self.observed.remove(&fd);
        }
    }

    /// The delays removed since the last call, for Lua to forget their event tables.
    pub(crate) fn take_removed(&mut self) -> Vec<(usize, DelayId)> {
        std::mem::take(&mut self.removed)
    }

    /// The relative path of `abs` in sync `s`, if inside its source (SPEC §3.5 step 4).
    fn relative<'a>(s: &SyncJob, abs: &'a [u8]) -> Option<&'a [u8]> {
        let root = &s.source[..s.source.len() - 1];
        if abs.len() > root.len() && abs.starts_with(root) && abs[root.len()] == b'/' {
            Some(&abs[root.len()..])
        } else {
            None
        }
    }

    /// Whether some sync using `monitor` wants a watch on this absolute directory path (SPEC
    /// §3.2 step 1).
    pub(crate) fn concerns(&self, monitor: Monitor, abs_dir: &[u8]) -> bool {
        self.syncs
            .iter()
            .filter(|s| s.monitor == monitor)
            .any(|s| Self::sync_concerns(s, abs_dir))
    }

    /// Whether sync `s` wants a watch on this absolute directory path.
    pub(crate) fn sync_concerns(s: &SyncJob, abs_dir: &[u8]) -> bool {
        if abs_dir == s.source.as_slice() {
            return true;
        }
        match Self::relative(s, abs_dir) {
            Some(rel) => s.subdirs && !s.excludes.is_excluded(rel),
            None => false,
        }
    }

    /// Hands one file-system event to every sync it concerns (SPEC §3.5). Syncs on the same
    /// source share one copy of the relative paths (their delays keep it).
    pub(crate) fn dispatch(&mut self, ev: &FsEvent, now: Instant) {
        type Rel = Option<Rc<[u8]>>;
        let mut built: Vec<(usize, Rel, Rel)> = Vec::new();
        for sid in 0..self.syncs.len() {
            let s = &self.syncs[sid];
            if s.monitor != ev.monitor {
                continue;
            }
            let same = built
                .iter()
                .find(|(j, ..)| self.syncs[*j].source == s.source);
            let (rel, rel2) = match same {
                Some((_, r, r2)) => (r.clone(), r2.clone()),
                None => {
                    let rel: Rel = Self::relative(s, &ev.path).map(Rc::from);
                    let rel2: Rel = ev
                        .path2
                        .as_deref()
                        .and_then(|p| Self::relative(s, p))
                        .map(Rc::from);
                    built.push((sid, rel.clone(), rel2.clone()));
                    (rel, rel2)
                }
            };
            let kind = match ev.kind {
                FsKind::Attrib => DelayKind::Attrib,
                FsKind::Modify => DelayKind::Modify,
                FsKind::Create => DelayKind::Create,
                FsKind::Delete => DelayKind::Delete,
                FsKind::Move => DelayKind::Move,
            };
            if rel.is_some() || rel2.is_some() {
                self.syncs[sid].health.event_received();
            }
            let s = &self.syncs[sid];
            match (kind, rel, rel2) {
                (DelayKind::Move, Some(from), Some(to)) => {
                    self.delay(sid, DelayKind::Move, from, Some(to), now)
                }
                (DelayKind::Move, Some(from), None) => {
                    log::normal([b"Transformed Move to Delete for ".as_slice(), &s.name].concat());
                    self.delay(sid, DelayKind::Delete, from, None, now)
                }
                (DelayKind::Move, None, Some(to)) => {
                    log::normal([b"Transformed Move to Create for ".as_slice(), &s.name].concat());
                    self.delay(sid, DelayKind::Create, to, None, now)
                }
                (DelayKind::Move, None, None) | (_, None, _) => {}
                (kind, Some(path), _) => self.delay(sid, kind, path, None, now),
            }
        }
    }

    /// `Sync:delay` (SPEC §4.2): exclusion, move splitting, alarm, combining, and for a
    /// directory Create the delays of what the directory already holds (SPEC §3.6).
    pub(crate) fn delay(
        &mut self,
        sid: usize,
        kind: DelayKind,
        path: Rc<[u8]>,
        path2: Option<Rc<[u8]>>,
        now: Instant,
    ) {
        if self.covered_by_full(sid) {
            return;
        }
        let mut dirs: Vec<Rc<[u8]>> = Vec::new();
        self.delay_one(sid, kind, path, path2, now, &mut dirs);
        // Directory recursion with an explicit stack: deep trees do not grow the call stack.
        while let Some(dir) = dirs.pop() {
            let s = &self.syncs[sid];
            let mut abs = s.source[..s.source.len() - 1].to_vec();
            abs.extend_from_slice(&dir);
            let entries = match std::fs::read_dir(OsStr::from_bytes(&abs)) {
                Ok(e) => e,
                Err(_) => continue,
            };
            for entry in entries.flatten() {
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                let mut p = dir.to_vec();
                p.extend_from_slice(entry.file_name().as_bytes());
                if is_dir {
                    p.push(b'/');
                }
                log::with(b"Delay", || {
                    [b"Create creates Create on ".as_slice(), &p].concat()
                });
                self.delay_one(sid, DelayKind::Create, p.into(), None, now, &mut dirs);
            }
        }
        let s = &mut self.syncs[sid];
        if s.delays.len() <= self.max_pending {
            s.over_limit_logged = false;
        } else if s.has_full {
            self.collapse(sid, now);
        } else if !s.over_limit_logged {
            s.over_limit_logged = true;
            log::with(b"Warn", || {
                [
                    s.name.as_slice(),
                    format!(
                        ": more than {} pending changes (maxPending), but no full or onFull \
                         action to collapse them into: every change is kept",
                        self.max_pending
                    )
                    .as_bytes(),
                ]
                .concat()
            });
        }
    }

    /// Whether a Full event that pending changes collapsed into still waits: it will transfer
    /// whatever changes now, so nothing needs queueing.
    fn covered_by_full(&mut self, sid: usize) -> bool {
        let s = &mut self.syncs[sid];
        let Some(id) = s.collapsed else { return false };
        if s.delays.get(id).is_some_and(|d| d.status == Status::Wait) {
            return true;
        }
        s.collapsed = None;
        false
    }

    /// Bounded memory (`maxPending`): every pending change of the sync that is not running
    /// is replaced by one Full event of the whole source.
    fn collapse(&mut self, sid: usize, now: Instant) {
        let gone = self.replace_pending_with_full(sid, now);
        log::normal(
            [
                self.syncs[sid].name.as_slice(),
                format!(
                    ": {gone} pending changes (maxPending {}) collapsed into one full transfer",
                    self.max_pending
                )
                .as_bytes(),
            ]
            .concat(),
        );
    }

    /// Replaces every pending change of the sync that is not running (Init excepted) by one
    /// Full event of the whole source, after the sync's delay; returns how many it replaced.
    pub(crate) fn replace_pending_with_full(&mut self, sid: usize, now: Instant) -> usize {
        let s = &mut self.syncs[sid];
        let gone: Vec<DelayId> = s
            .delays
            .iter()
            .filter(|(_, d)| d.status != Status::Active && d.kind != DelayKind::Init)
            .map(|(id, _)| id)
            .collect();
        for id in &gone {
            s.delays.remove(*id);
            self.removed.push((sid, *id));
        }
        let alarm = Some(now + secs(s.delay.unwrap_or(0.0)));
        let id = s
            .delays
            .push_unblocked(DelayKind::Full, b"/".to_vec().into(), alarm);
        s.collapsed = Some(id);
        gone.len()
    }

    fn delay_one(
        &mut self,
        sid: usize,
        kind: DelayKind,
        path: Rc<[u8]>,
        path2: Option<Rc<[u8]>>,
        now: Instant,
        dirs: &mut Vec<Rc<[u8]>>,
    ) {
        let s = &mut self.syncs[sid];
        log::trace_delay(&s.name, kind.as_lua_str(), &path, path2.as_deref());
        if kind == DelayKind::Move {
            let Some(path2) = path2 else { return };
            let ex1 = s.excludes.is_excluded(&path);
            let ex2 = s.excludes.is_excluded(&path2);
            if ex1 && ex2 {
                s.health.event_excluded();
                log::with(b"Filter", || {
                    [b"filtered out move ".as_slice(), &path[..]].concat()
                });
                return;
            }
            if ex2 {
                return self.delay_one(sid, DelayKind::Delete, path, None, now, dirs);
            }
            if ex1 {
                return self.delay_one(sid, DelayKind::Create, path2, None, now, dirs);
            }
            if !s.on_move {
                log::with(b"Delay", || b"splitting Move into Delete & Create".to_vec());
                self.delay_one(sid, DelayKind::Delete, path, None, now, dirs);
                self.delay_one(sid, DelayKind::Create, path2, None, now, dirs);
                return;
            }
            let alarm = Some(now + secs(s.delay.unwrap_or(0.0)));
            let p1 = path.clone();
            let p2 = path2.clone();
            match s.delays.push(kind, path, Some(path2), alarm) {
                Pushed::Split => {
                    log::with(b"Delay", || b"splitting Move into Delete & Create".to_vec());
                    self.delay_one(sid, DelayKind::Delete, p1, None, now, dirs);
                    self.delay_one(sid, DelayKind::Create, p2, None, now, dirs);
                }
                outcome => {
                    log_pushed(&s.delays, kind, &p1, Some(&p2), &outcome);
                    Self::note_replaced(&mut self.removed, sid, &outcome);
                }
            }
            return;
        }
        if s.excludes.is_excluded(&path) {
            s.health.event_excluded();
            log::with(b"Filter", || {
                [b"filtered out ".as_slice(), &path[..]].concat()
            });
            return;
        }
        let alarm = Some(now + secs(s.delay.unwrap_or(0.0)));
        let is_dir_create = kind == DelayKind::Create && path.ends_with(b"/");
        let recurse = if is_dir_create {
            Some(path.clone())
        } else {
            None
        };
        let outcome = s.delays.push(kind, path.clone(), None, alarm);
        log_pushed(&s.delays, kind, &path, None, &outcome);
        Self::note_replaced(&mut self.removed, sid, &outcome);
        if let Some(dir) = recurse {
            if s.subdirs {
                dirs.push(dir);
            }
        }
    }

    /// A delay that a combine replaced is gone: Lua forgets its event tables too.
    fn note_replaced(removed: &mut Vec<(usize, DelayId)>, sid: usize, outcome: &Pushed) {
        match outcome {
            Pushed::Replaced { old, .. } => removed.push((sid, *old)),
            Pushed::ToDeleteStacked { on_move, .. } => removed.push((sid, *on_move)),
            _ => {}
        }
    }

    /// Appends the Init delay of a sync (SPEC §4.7).
    pub(crate) fn push_init(&mut self, sid: usize) {
        let s = &mut self.syncs[sid];
        s.delays
            .push_unblocked(DelayKind::Init, Default::default(), None);
        self.init_pending += 1;
    }

    /// When the main loop must wake up for this sync: `None` never, else the instant
    /// (SPEC §4.6 "Sync alarm"): the crontab's next rule, or when [`Core::next_due`] will answer,
    /// from the delay list's alarm index.
    pub(crate) fn sync_alarm(&self, sid: usize, now: Instant) -> Option<Instant> {
        let s = &self.syncs[sid];
        if s.disabled || s.held || s.source_gone || s.processes.len() >= s.max_processes {
            return None;
        }
        let cron = s.cron_next.map(|t| t.max(now));
        // A sync backing off after a failure wakes up when its backoff ends.
        let delays = s
            .delays
            .alarm(now, s.max_delays)
            .map(|t| s.backoff.holds_until(now).unwrap_or(t));
        match (delays, cron) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        }
    }

    /// SPEC §4.6 step 3: a due crontab rule queues a `Full` event for the root (only while the
    /// sync can start processes).
    pub(crate) fn crontab_due(&mut self, sid: usize, now: Instant) {
        let s = &mut self.syncs[sid];
        if s.disabled || s.held || s.source_gone || s.processes.len() >= s.max_processes {
            return;
        }
        if s.cron_next.is_some_and(|t| t <= now) {
            log::log(b"Info", b"Crontab triggered full sync");
            s.delays
                .push_unblocked(DelayKind::Full, b"/".to_vec().into(), None);
            s.schedule_cron(now);
        }
    }

    /// Whether the global process cap is reached.
    pub(crate) fn at_global_limit(&self) -> bool {
        matches!(self.max_processes, Some(m) if self.running >= m)
    }

    /// The next delay of `sid` the scheduler should act on, scanning from `after` (SPEC §4.6
    /// invokeActions step 4). `None` ends this sync's turn.
    pub(crate) fn next_due(
        &self,
        sid: usize,
        after: Option<crate::delay::QueuePos>,
        now: Instant,
    ) -> Option<(crate::delay::QueuePos, DelayId, DelayKind)> {
        let s = &self.syncs[sid];
        if s.disabled
            || s.held
            || s.source_gone
            || s.processes.len() >= s.max_processes
            || self.at_global_limit()
            || s.backoff.holds_until(now).is_some()
        {
            return None;
        }
        let (pos, id) = s.delays.next_wait_after(after, now, s.max_delays)?;
        Some((pos, id, s.delays.get(id)?.kind))
    }

    /// Removes a waiting delay (`inlet.discardEvent`).
    pub(crate) fn discard(&mut self, sid: usize, id: DelayId) {
        let s = &mut self.syncs[sid];
        match s.delays.get(id) {
            Some(d) if d.status == Status::Wait => {
                if let Some(d) = s.delays.remove(id) {
                    if d.kind == DelayKind::Init {
                        self.init_pending = self.init_pending.saturating_sub(1);
                    }
                }
                self.removed.push((sid, id));
            }
            Some(d) => log::error(format!(
                "Ignored cancel of a non-waiting event of type {}",
                d.kind.as_lua_str()
            )),
            None => {}
        }
    }

    /// `spawn()` for an agent (SPEC §6.1). Returns the pid, or `None` when nothing started.
    pub(crate) fn spawn(
        &mut self,
        sid: usize,
        dids: Vec<DelayId>,
        is_list: bool,
        argv: Vec<Vec<u8>>,
        stdin: Option<Vec<u8>>,
    ) -> Result<Option<libc::pid_t>, String> {
        {
            let s = &self.syncs[sid];
            for id in &dids {
                let status = s.delays.get(*id).map(|d| d.status);
                let ok = matches!(
                    (is_list, status),
                    (false, Some(Status::Wait)) | (true, Some(Status::Wait | Status::Block))
                );
                if !ok {
                    return Err(if is_list {
                        "spawn() called on an non-waiting event list".to_string()
                    } else {
                        "spawn() called on an non-waiting event".to_string()
                    });
                }
            }
        }
        let stdin = stdin.filter(|t| !t.is_empty());
        log::with(b"Exec", || spawn::exec_log_line(&argv, stdin.as_deref()));
        let Some(registry) = self.registry.as_ref() else {
            return Err("spawn() called before the daemon runs".to_string());
        };
        let command = health::command_line(&argv);
        let program = argv.first().cloned().unwrap_or_default();
        let req = SpawnRequest {
            argv,
            stdin,
            output: self.child_output(),
        };
        let (pid, pipe) = match self.spawner.spawn(registry, req) {
            Ok(r) => r,
            Err(e) => {
                // Counted as a process that failed at once, so that the layer keeps its
                // events (they are active, not waiting) and the sync backs off.
                let pid = self.next_failed_pid;
                self.next_failed_pid = if pid <= -1_000_000 { -1 } else { pid - 1 };
                self.spawn_failures.push((sid, pid, e.to_string()));
                self.start_process(sid, pid, dids, is_list, (program, command));
                return Ok(Some(pid));
            }
        };
        if matches!(pipe, PipeState::OneSweep) {
            log::with(b"Exec", || b"one-sweeped pipe".to_vec());
        }
        self.start_process(sid, pid, dids, is_list, (program, command));
        self.pid_owner.insert(pid, sid);
        Ok(Some(pid))
    }

    fn start_process(
        &mut self,
        sid: usize,
        pid: libc::pid_t,
        dids: Vec<DelayId>,
        is_list: bool,
        (program, command): (Vec<u8>, Vec<u8>),
    ) {
        self.running += 1;
        let s = &mut self.syncs[sid];
        s.health.transfer_started(pid, command);
        for id in &dids {
            s.delays.set_active(*id);
        }
        s.processes.insert(
            pid,
            Agent {
                dids,
                is_list,
                command: program,
            },
        );
    }

    /// The stdout/stderr a child gets: the logfile when daemonized with one, else inherited.
    fn child_output(&self) -> Option<std::os::fd::OwnedFd> {
        let path = self.child_logfile.as_ref()?;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .ok()
            .map(std::os::fd::OwnedFd::from)
    }

    /// `lsyncd.exec`: a child bound to no event; its exit is ignored when reaped.
    pub(crate) fn exec_unbound(&mut self, argv: Vec<Vec<u8>>) -> Option<libc::pid_t> {
        log::with(b"Exec", || spawn::exec_log_line(&argv, None));
        let registry = self.registry.as_ref()?;
        let req = SpawnRequest {
            argv,
            stdin: None,
            output: self.child_output(),
        };
        match self.spawner.spawn(registry, req) {
            Ok((pid, _)) => Some(pid),
            Err(e) => {
                log::error(format!("cannot spawn: {e}"));
                None
            }
        }
    }

    /// The delays of a collected child: removed, retried or fatal (SPEC §6.5).
    ///
    /// A failure (`again`, a signal, a failed spawn, and while running `die` or an unknown
    /// code) keeps the child's delays and holds the sync for its backoff; `die` of a startup
    /// transfer ends the daemon as upstream. `Err` also when every sync has failed.
    pub(crate) fn finish(
        &mut self,
        sid: usize,
        pid: libc::pid_t,
        outcome: Ended<'_>,
        now: Instant,
    ) -> Result<(), ExitCode> {
        let s = &mut self.syncs[sid];
        let Some(agent) = s.processes.remove(&pid) else {
            return Ok(());
        };
        self.running = self.running.saturating_sub(1);
        let is_init = agent
            .dids
            .iter()
            .any(|id| s.delays.get(*id).is_some_and(|d| d.kind == DelayKind::Init));
        let command = agent.command.clone();
        let (failure, exitcode) = match outcome {
            Ended::Exited {
                rc: Some(b"die"),
                code,
            } => {
                if is_init {
                    log::error("Critical exitcode.");
                    return Err(ExitCode::Fatal);
                }
                (Some(Failure::Fatal { command, code }), code)
            }
            Ended::Exited {
                rc: Some(b"again"),
                code,
            } => (Some(Failure::Exit { command, code }), code),
            Ended::Exited { code, .. } => (None, code),
            Ended::Signalled(signal) => (Some(Failure::Signal { command, signal }), 128 + signal),
            Ended::SpawnFailed(error) => (Some(Failure::Spawn { command, error }), -1),
        };
        let judged = match &failure {
            None => health::Outcome::Succeeded,
            Some(f) if f.is_fatal() => health::Outcome::Failed,
            Some(_) => health::Outcome::Retry,
        };
        s.health.transfer_finished(pid, judged, exitcode);
        if let Some(failure) = failure {
            let pending = s.delays.len();
            let until = s
                .backoff
                .failure(&s.name, &failure, pending, self.max_backoff, now);
            for id in &agent.dids {
                s.delays.set_wait(*id, Some(until));
            }
            if is_init {
                self.init_retried = true;
            }
            if failure.is_fatal()
                && self
                    .syncs
                    .iter()
                    .all(|s| s.backoff.state() == State::Failed)
            {
                log::error("Critical exitcode.");
                log::error("Every sync has failed; exiting.");
                return Err(ExitCode::Fatal);
            }
            return Ok(());
        }
        s.backoff.success(&s.name);
        for id in &agent.dids {
            if let Some(d) = s.delays.remove(*id) {
                if d.kind == DelayKind::Init {
                    self.init_pending = self.init_pending.saturating_sub(1);
                }
                if !agent.is_list {
                    log::with(b"Delay", || {
                        format!("Finish of {} on ", d.kind.as_lua_str())
                            .into_bytes()
                            .into_iter()
                            .chain(s.source.iter().copied())
                            .chain(d.path.iter().copied())
                            .chain(format!(" = {exitcode}").into_bytes())
                            .collect()
                    });
                }
                self.removed.push((sid, *id));
            }
        }
        if agent.is_list {
            log::with(b"Delay", || {
                format!("Finished list = {exitcode}").into_bytes()
            });
        } else {
            s.init_done = true;
        }
        Ok(())
    }
}

/// An rsync include pattern matching exactly `path` (SPEC §9.5 step 2 with the fix of §15
/// item 22): a path without `*`, `?` or `[` is used as it is (rsync reads it literally);
/// otherwise every `\ * ? [ ]` is escaped. A directory Delete also matches its content (`***`).
fn include_pattern(path: &[u8], dir_delete: bool, out: &mut Vec<u8>) {
    out.clear();
    if !dir_delete && !path.iter().any(|b| matches!(b, b'*' | b'?' | b'[')) {
        out.extend_from_slice(path);
        return;
    }
    for &b in path {
        if matches!(b, b'\\' | b'*' | b'?' | b'[' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
    if dir_delete {
        out.extend_from_slice(b"***");
    }
}

/// The parent directory of a relative path: `/a/b/c` → `/a/b/`, `/a/b/` → `/a/`, `/a` → `/`,
/// `/` → none.
fn parent_dir(path: &[u8]) -> Option<&[u8]> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    if trimmed.is_empty() {
        return None;
    }
    let cut = trimmed.iter().rposition(|b| *b == b'/')?;
    Some(&path[..=cut])
}

/// The running-mode include list of an event list (SPEC §9.5 step 3): every path in queue
/// order (a move's origin and destination), each followed by its parent directories, without
/// duplicates; a parent already listed brought its own parents with it.
pub(crate) fn include_list(delays: &DelayList, dids: &[DelayId]) -> Vec<Vec<u8>> {
    let mut list: Vec<Vec<u8>> = Vec::new();
    let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    let mut pattern = Vec::new();
    let mut push = |path: &[u8], dir_delete: bool, list: &mut Vec<Vec<u8>>| {
        if path.is_empty() {
            return;
        }
        include_pattern(path, dir_delete, &mut pattern);
        if !seen.contains(&pattern) {
            seen.insert(pattern.clone());
            list.push(pattern.clone());
        }
        let mut parent = if dir_delete {
            Some(path)
        } else {
            parent_dir(path)
        };
        while let Some(p) = parent {
            include_pattern(p, false, &mut pattern);
            if seen.contains(&pattern) {
                break;
            }
            seen.insert(pattern.clone());
            list.push(pattern.clone());
            parent = parent_dir(p);
        }
    };
    for id in dids {
        let Some(d) = delays.get(*id) else { continue };
        let dir_delete = d.kind == DelayKind::Delete && d.path.ends_with(b"/");
        push(d.path, dir_delete, &mut list);
        if let Some(p2) = &d.path2 {
            push(p2, false, &mut list);
        }
    }
    list
}

fn secs(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::from_secs_f64(s.min(1e9))
    } else {
        Duration::ZERO
    }
}

fn log_pushed(
    list: &DelayList,
    kind: DelayKind,
    path: &[u8],
    path2: Option<&[u8]>,
    outcome: &Pushed,
) {
    if !log::enabled(b"Delay") {
        return;
    }
    // The Delay log names other delays as `ETYPE: PATH` (the status file as `ETYPE PATH`).
    let describe = |id: &DelayId| -> Vec<u8> {
        match list.get(*id) {
            Some(d) => [format!("{}: ", d.kind.as_lua_str()).as_bytes(), d.path].concat(),
            None => Vec::new(),
        }
    };
    let mut new = format!("{}: ", kind.as_lua_str()).into_bytes();
    new.extend_from_slice(path);
    if let Some(p2) = path2 {
        new.extend_from_slice(b" -> ");
        new.extend_from_slice(p2);
    }
    let msg = match outcome {
        Pushed::Appended(_) => [b"New ".as_slice(), &new].concat(),
        Pushed::Stacked { on, .. } => [new.as_slice(), b" blocked by ", &describe(on)].concat(),
        Pushed::Replaced { .. } => [new.as_slice(), b" replaces an older event"].concat(),
        Pushed::ToDeleteStacked { delete, .. } => {
            [new.as_slice(), b" turns a Move into ", &describe(delete)].concat()
        }
        Pushed::Split => return,
    };
    log::log(b"Delay", &msg);
}

/// `ETYPE PATH[ -> PATH2]`, as in the Delay log and the status file.
pub(crate) fn describe_delay(d: &Delay) -> Vec<u8> {
    let mut v = format!("{} ", d.kind.as_lua_str()).into_bytes();
    v.extend_from_slice(d.path);
    if let Some(p2) = &d.path2 {
        v.extend_from_slice(b" -> ");
        v.extend_from_slice(p2);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(source: &str) -> SyncJob {
        SyncJob {
            name: source.into(),
            source: source.into(),
            delay: Some(1.0),
            max_delays: 1000,
            max_processes: 1,
            on_move: false,
            subdirs: true,
            has_init: false,
            excludes: Default::default(),
            delays: DelayList::new(),
            processes: Default::default(),
            init_done: false,
            disabled: false,
            held: false,
            source_gone: false,
            crontab: Vec::new(),
            cron_next: None,
            health: Default::default(),
            backoff: Default::default(),
            monitor_choice: None,
            monitor: Monitor::Inotify,
            has_full: true,
            over_limit_logged: false,
            collapsed: None,
        }
    }

    #[test]
    fn pending_changes_collapse_into_one_full_that_covers_later_ones() {
        let now = Instant::now();
        let mut core = Core::new(now);
        core.max_pending = 10;
        core.syncs = vec![job("/src/")];
        for i in 0..11 {
            let p: Rc<[u8]> = format!("/f{i}").into_bytes().into();
            core.delay(0, DelayKind::Modify, p, None, now);
        }
        let kinds: Vec<DelayKind> = core.syncs[0].delays.iter().map(|(_, d)| d.kind).collect();
        assert_eq!(kinds, [DelayKind::Full]);
        assert_eq!(core.removed.len(), 11);
        core.delay(0, DelayKind::Create, b"/later".to_vec().into(), None, now);
        assert_eq!(core.syncs[0].delays.len(), 1);
    }

    #[test]
    fn without_a_full_action_every_pending_change_is_kept() {
        let now = Instant::now();
        let mut core = Core::new(now);
        core.max_pending = 10;
        core.syncs = vec![job("/src/")];
        core.syncs[0].has_full = false;
        for i in 0..25 {
            let p: Rc<[u8]> = format!("/f{i}").into_bytes().into();
            core.delay(0, DelayKind::Modify, p, None, now);
        }
        let s = &core.syncs[0];
        assert_eq!(s.delays.len(), 25);
        assert!(s.delays.iter().all(|(_, d)| d.kind == DelayKind::Modify));
        assert!(s.over_limit_logged);
        assert!(core.removed.is_empty());
    }

    #[test]
    fn syncs_on_one_source_share_the_paths_of_an_event() {
        let now = Instant::now();
        let mut core = Core::new(now);
        core.syncs = vec![job("/src/"), job("/other/"), job("/src/")];
        let ev = FsEvent {
            kind: FsKind::Create,
            path: b"/src/d/f".to_vec(),
            path2: None,
            monitor: Monitor::Inotify,
        };
        core.dispatch(&ev, now);
        let path = |sid: usize| {
            let (_, d) = core.syncs[sid].delays.iter().next().expect("a delay");
            d.path.clone()
        };
        assert_eq!(&path(0)[..], b"/d/f");
        assert!(Rc::ptr_eq(&path(0), &path(2)), "one copy for both syncs");
        assert_eq!(core.syncs[1].delays.len(), 0);
    }

    fn list_of(events: &[(DelayKind, &str, Option<&str>)]) -> Vec<String> {
        let mut delays = DelayList::new();
        let mut ids = Vec::new();
        for (kind, path, path2) in events {
            let p2 = path2.map(|p| std::rc::Rc::<[u8]>::from(p.as_bytes()));
            ids.push(delays.push_unblocked(*kind, path.as_bytes().to_vec().into(), None));
            if let Some(p2) = p2 {
                // a move: give the last delay its destination through a fresh Move delay
                delays.remove(*ids.last().expect("id"));
                ids.pop();
                match delays.push(*kind, path.as_bytes().to_vec().into(), Some(p2), None) {
                    Pushed::Appended(id) => ids.push(id),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        include_list(&delays, &ids)
            .into_iter()
            .map(|p| String::from_utf8(p).expect("utf8"))
            .collect()
    }

    #[test]
    fn include_list_matches_the_verified_upstream_example() {
        use DelayKind::*;
        let got = list_of(&[
            (Create, "/a/new.txt", None),
            (Modify, "/a/new.txt", None),
            (Create, "/newdir/", None),
            (Create, "/newdir/z", None),
            (Delete, "/top", None),
            (Create, "/top2", None),
            (Delete, "/a/b/f", None),
        ]);
        let want = [
            "/a/new.txt",
            "/a/",
            "/",
            "/newdir/",
            "/newdir/z",
            "/top",
            "/top2",
            "/a/b/f",
            "/a/b/",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn include_list_escapes_only_wildcard_patterns_and_expands_dir_deletes() {
        use DelayKind::*;
        let got = list_of(&[
            (Create, "/w*x?[y]", None),
            (Create, "/p]q", None),
            (Delete, "/d/", None),
        ]);
        assert_eq!(got, ["/w\\*x\\?\\[y\\]", "/", "/p]q", "/d/***", "/d/"]);
    }

    #[test]
    fn include_list_lists_both_paths_of_a_move() {
        use DelayKind::*;
        let got = list_of(&[(Move, "/a/x", Some("/b/y"))]);
        assert_eq!(got, ["/a/x", "/a/", "/", "/b/y", "/b/"]);
    }

    #[test]
    fn parent_dir_walks_up_to_the_root() {
        assert_eq!(parent_dir(b"/a/b/c"), Some(&b"/a/b/"[..]));
        assert_eq!(parent_dir(b"/a/b/"), Some(&b"/a/"[..]));
        assert_eq!(parent_dir(b"/a"), Some(&b"/"[..]));
        assert_eq!(parent_dir(b"/"), None);
        assert_eq!(parent_dir(b""), None);
    }
}
