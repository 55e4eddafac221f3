//! The syncs: one [`SyncJob`] per `sync{}` of the config, and [`Core`], the daemon's state of
//! one run, split by concern: the syncs, the process table (`processes.rs`), the Lua-side state
//! (`lua_side.rs`), the run's progress and the settings it applies.
//!
//! Owns: turning file-system events into delays for each sync (SPEC §3.5, §4.2: exclusion,
//! move splitting, alarms, directory recursion §3.6), collapsing them above `maxPending`, and
//! what is due (SPEC §4.6). The submodules own spawning for a sync (`processes.rs`), what
//! happens to delays when a child is collected (SPEC §6.5, `finish.rs`) and the include list
//! of an event list (SPEC §9.5, `include.rs`).
//!
//! Must not touch: Lua (the core is lent to `lua_rt` for each call into Lua, and never calls
//! Lua itself), the poll loop, fork/exec (that is `spawn.rs`, reached through the process
//! table).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::delay::{Delay, DelayId, DelayKind, DelayList, Pushed, Status};
use crate::exclude::Excludes;
use crate::health::SyncHealth;
use crate::log;
use crate::retry::Backoff;
use crate::watch::{FsEvent, FsKind, Monitor, MonitorChoice};

mod finish;
mod include;
mod lua_side;
mod processes;

pub(crate) use finish::Ended;
pub(crate) use include::include_list;
pub(crate) use lua_side::LuaSide;
pub(crate) use processes::{Agent, ProcessTable};

/// One `sync{}`.
#[derive(Debug)]
pub(crate) struct SyncJob {
    pub(crate) name: Vec<u8>,
    /// Absolute, with a trailing `/`.
    pub(crate) source: Vec<u8>,
    /// What its config asks for, read once at startup.
    pub(crate) conf: SyncConf,
    pub(crate) excludes: Excludes,
    pub(crate) delays: DelayList,
    pub(crate) processes: HashMap<libc::pid_t, Agent>,
    /// A first event (normally the startup transfer) finished well (SPEC §13.7).
    pub(crate) init_done: bool,
    /// Why it starts no action now, if it does not.
    pub(crate) paused: Paused,
    /// `crontab` rules (SPEC §14.3) and when the next one is due.
    pub(crate) cron: Cron,
    /// Where `maxPending` left it.
    pub(crate) pending_limit: PendingLimit,
    /// The monitor its events come from, decided at startup.
    pub(crate) monitor: Monitor,
    /// What reports show about this sync.
    pub(crate) health: SyncHealth,
    /// Failed attempts and the wait before the next one.
    pub(crate) backoff: Backoff,
}

/// The keys of one `sync{}` the core applies, as the config gave them.
#[derive(Debug)]
pub(crate) struct SyncConf {
    /// `source` as the config wrote it (before it was made absolute).
    pub(crate) source_as_given: Vec<u8>,
    /// Seconds to hold an event; `None` acts at once.
    pub(crate) delay: Option<f64>,
    pub(crate) max_delays: usize,
    pub(crate) max_processes: usize,
    /// The `monitor` key of this `sync{}` (or `-monitor`), if given; else `settings{}`'s.
    pub(crate) monitor: Option<MonitorChoice>,
    /// Which events and directories it takes (`onMove`, `subdirs`) and which of its own
    /// actions the core must know of (`init`, `full`).
    pub(crate) takes: Takes,
}

/// What a sync's config takes besides plain changes.
#[derive(Debug)]
pub(crate) struct Takes {
    /// `onMove`: a move is one event, not a Delete and a Create.
    pub(crate) moves: bool,
    /// `subdirs`: changes below the top directory.
    pub(crate) subdirs: bool,
    /// An `init` function: the startup event goes to it.
    pub(crate) init: bool,
    /// A Full event (a `full` function, or layer 2/3's `onFull` through `default.action`):
    /// pending changes can collapse into one.
    pub(crate) full: bool,
}

impl SyncConf {
    /// When an event arriving `now` is due.
    fn alarm(&self, now: Instant) -> Instant {
        now + secs(self.delay.unwrap_or(0.0))
    }
}

/// Why a sync starts no action; it keeps collecting changes meanwhile.
#[derive(Debug, Default)]
pub(crate) struct Paused {
    /// onepass: its startup transfer is done, no more actions.
    pub(crate) disabled: bool,
    /// Its tunnel is not up (SPEC §14.2).
    pub(crate) held: bool,
    /// Its source directory was moved away or deleted, until it is back (`source_root.rs`).
    pub(crate) source_gone: bool,
}

impl Paused {
    pub(crate) fn any(&self) -> bool {
        self.disabled || self.held || self.source_gone
    }
}

/// The `crontab` rules of a sync (SPEC §14.3): a due one queues a Full event.
#[derive(Debug, Default)]
pub(crate) struct Cron {
    pub(crate) rules: Vec<crate::crontab::CronRule>,
    /// When the next rule is due.
    pub(crate) next: Option<Instant>,
}

impl Cron {
    /// The next instant any rule fires, from the wall-clock local time now.
    pub(crate) fn schedule(&mut self, now: Instant) {
        let civil = crate::sys::local_time_now();
        self.next = self
            .rules
            .iter()
            .filter_map(|r| r.next_after(civil))
            .map(|n| crate::crontab::seconds_between(civil, n))
            .min()
            .map(|secs| now + Duration::from_secs(secs.max(0) as u64));
    }
}

/// One [`Core::delay`] call: when it happens, and the new directories whose entries still
/// get delays of their own (SPEC §3.6).
struct Walk {
    now: Instant,
    dirs: Vec<Rc<[u8]>>,
}

/// A sync above `settings{ maxPending }`.
#[derive(Debug, Default)]
pub(crate) struct PendingLimit {
    /// Above it without a way to collapse: logged once, until the queue is back under it.
    pub(crate) logged: bool,
    /// The Full event pending changes collapsed into; while it waits, new changes are part of
    /// it already.
    pub(crate) collapsed: Option<DelayId>,
}

impl SyncJob {
    /// A sync with nothing pending, nothing running and no monitor decided yet.
    pub(crate) fn new(
        name: Vec<u8>,
        source: Vec<u8>,
        conf: SyncConf,
        excludes: Excludes,
        cron_rules: Vec<crate::crontab::CronRule>,
    ) -> SyncJob {
        SyncJob {
            name,
            source,
            conf,
            excludes,
            delays: DelayList::new(),
            processes: HashMap::new(),
            init_done: false,
            paused: Paused::default(),
            cron: Cron {
                rules: cron_rules,
                next: None,
            },
            pending_limit: PendingLimit::default(),
            monitor: Monitor::default(),
            health: SyncHealth::default(),
            backoff: Backoff::default(),
        }
    }

    /// Holds the sync (its tunnel is not up: events queue, no action runs) or releases it.
    pub(crate) fn hold(&mut self, held: bool) {
        self.paused.held = held;
        self.health.set_held(held);
    }

    /// Marks its source directory away (events are kept, no action runs) or back.
    pub(crate) fn set_source_gone(&mut self, gone: bool) {
        self.paused.source_gone = gone;
        self.health.set_source_gone(gone);
    }

    /// Whether it may start a process now: not paused, under its `maxProcesses`.
    fn may_start(&self) -> bool {
        !self.paused.any() && self.processes.len() < self.conf.max_processes
    }
}

/// The daemon's state of one run, split by concern. The event loop owns it and lends it to
/// Lua for each call (`lua_rt`); nothing else keeps a handle on it.
#[derive(Debug)]
pub(crate) struct Core {
    /// The syncs, in the order of the config's `sync{}` calls.
    pub(crate) syncs: Vec<SyncJob>,
    /// The children of every sync, the spawner and the global process cap.
    pub(crate) procs: ProcessTable,
    /// What the config's Lua code asked the loop for, and the delays Lua must forget.
    pub(crate) lua: LuaSide,
    /// Startup transfers still to do, and whether the run is fading.
    pub(crate) run: RunState,
    /// `settings{}` values the syncs apply.
    pub(crate) limits: Limits,
}

/// How far the run is: startup transfers, fading.
#[derive(Debug, Default)]
pub(crate) struct RunState {
    /// The sources of the run before this one (a HUP or overflow restart), to tell a source
    /// that is away from one that never was.
    pub(crate) sources_before: Vec<KnownSource>,
    /// TERM/INT/HUP or overflow pending: no new processes.
    pub(crate) fading: bool,
    /// Init delays not finished yet: the startup transfers still to do.
    pub(crate) init_pending: usize,
    /// A startup transfer failed temporarily and is being retried (insist).
    pub(crate) init_retried: bool,
}

/// A sync's source in one run: as the config wrote it, as it was resolved, and its monitor.
#[derive(Clone, Debug)]
pub(crate) struct KnownSource {
    pub(crate) given: Vec<u8>,
    /// Absolute, with a trailing `/`.
    pub(crate) real: Vec<u8>,
    pub(crate) monitor: Monitor,
}

impl RunState {
    /// The resolved path of `given`, a source of the run before this one that is not a
    /// directory now (moved away or deleted): its sync waits for it instead of failing.
    pub(crate) fn source_away(&self, given: &[u8]) -> Option<&KnownSource> {
        self.sources_before.iter().find(|k| {
            k.given == given
                && !std::fs::metadata(OsStr::from_bytes(&k.real)).is_ok_and(|m| m.is_dir())
        })
    }
}

/// `settings{}` values the syncs apply.
#[derive(Debug)]
pub(crate) struct Limits {
    /// `settings{ maxBackoff }` in seconds.
    pub(crate) max_backoff: f64,
    /// `settings{ maxPending }`: a sync holding more delays collapses them into one Full.
    pub(crate) max_pending: usize,
}

/// Default of `settings{ maxPending }`.
pub(crate) const DEFAULT_MAX_PENDING: usize = 100_000;

impl Core {
    pub(crate) fn new(origin: Instant) -> Core {
        Core {
            syncs: Vec::new(),
            procs: ProcessTable::new(),
            lua: LuaSide::new(origin),
            run: RunState::default(),
            limits: Limits {
                max_backoff: crate::retry::DEFAULT_MAX_BACKOFF,
                max_pending: DEFAULT_MAX_PENDING,
            },
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
    /// Adds a sync. One whose source is not there (see [`RunState::source_away`]; the same
    /// path, not one its name resolves to now) waits for it, with the monitor the run before
    /// used.
    pub(crate) fn add_sync(&mut self, mut job: SyncJob) -> usize {
        let away = self
            .run
            .source_away(&job.conf.source_as_given)
            .filter(|known| known.real == job.source);
        if let Some(known) = away {
            job.monitor = known.monitor;
            job.set_source_gone(true);
            let mut line = job.name.clone();
            line.extend_from_slice(b": source ");
            line.extend_from_slice(&job.source);
            line.extend_from_slice(
                b" is still away; no transfer until it is back (the target is left as it is)",
            );
            log::log(b"Warn", &line);
        }
        self.syncs.push(job);
        self.syncs.len() - 1
    }

    /// The sources of this run, for the run after a restart.
    pub(crate) fn known_sources(&self) -> Vec<KnownSource> {
        self.syncs
            .iter()
            .map(|s| KnownSource {
                given: s.conf.source_as_given.clone(),
                real: s.source.clone(),
                monitor: s.monitor,
            })
            .collect()
    }

    /// Whether the run is fading (TERM/INT/HUP or overflow): no new processes.
    pub(crate) fn is_fading(&self) -> bool {
        self.run.fading
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
            Some(rel) => s.conf.takes.subdirs && !s.excludes.is_excluded(rel),
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
        let mut walk = Walk {
            now,
            dirs: Vec::new(),
        };
        self.delay_one(&mut walk, sid, kind, path, path2);
        // Directory recursion with an explicit stack: deep trees do not grow the call stack.
        while let Some(dir) = walk.dirs.pop() {
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
                self.delay_one(&mut walk, sid, DelayKind::Create, p.into(), None);
            }
        }
        let s = &mut self.syncs[sid];
        if s.delays.len() <= self.limits.max_pending {
            s.pending_limit.logged = false;
        } else if s.conf.takes.full {
            self.collapse(sid, now);
        } else if !s.pending_limit.logged {
            s.pending_limit.logged = true;
            log::with(b"Warn", || {
                [
                    s.name.as_slice(),
                    format!(
                        ": more than {} pending changes (maxPending), but no full or onFull \
                         action to collapse them into: every change is kept",
                        self.limits.max_pending
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
        let Some(id) = s.pending_limit.collapsed else {
            return false;
        };
        if s.delays.get(id).is_some_and(|d| d.status == Status::Wait) {
            return true;
        }
        s.pending_limit.collapsed = None;
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
                    self.limits.max_pending
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
            self.lua.forget(sid, *id);
        }
        let alarm = Some(s.conf.alarm(now));
        let id = s
            .delays
            .push_unblocked(DelayKind::Full, b"/".to_vec().into(), alarm);
        s.pending_limit.collapsed = Some(id);
        gone.len()
    }

    fn delay_one(
        &mut self,
        walk: &mut Walk,
        sid: usize,
        kind: DelayKind,
        path: Rc<[u8]>,
        path2: Option<Rc<[u8]>>,
    ) {
        let now = walk.now;
        let s = &mut self.syncs[sid];
        log::trace_delay(&s.name, kind.as_lua_str(), &path, path2.as_deref());
        if kind == DelayKind::Move {
            if let Some(to) = path2 {
                self.delay_move(walk, sid, path, to);
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
        let alarm = Some(s.conf.alarm(now));
        let is_dir_create = kind == DelayKind::Create && path.ends_with(b"/");
        let recurse = if is_dir_create {
            Some(path.clone())
        } else {
            None
        };
        let outcome = s.delays.push(kind, path.clone(), None, alarm);
        log_pushed(&s.delays, kind, &path, None, &outcome);
        Self::note_replaced(&mut self.lua, sid, &outcome);
        if let Some(dir) = recurse {
            if s.conf.takes.subdirs {
                walk.dirs.push(dir);
            }
        }
    }

    /// A Move of the sync (SPEC §4.2): one event where the config takes moves and both ends
    /// are included, else a Delete and/or a Create.
    fn delay_move(&mut self, walk: &mut Walk, sid: usize, path: Rc<[u8]>, path2: Rc<[u8]>) {
        let now = walk.now;
        let kind = DelayKind::Move;
        let s = &mut self.syncs[sid];
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
            return self.delay_one(walk, sid, DelayKind::Delete, path, None);
        }
        if ex1 {
            return self.delay_one(walk, sid, DelayKind::Create, path2, None);
        }
        if !s.conf.takes.moves {
            return self.split_move(walk, sid, path, path2);
        }
        let alarm = Some(s.conf.alarm(now));
        let p1 = path.clone();
        let p2 = path2.clone();
        match s.delays.push(kind, path, Some(path2), alarm) {
            Pushed::Split => self.split_move(walk, sid, p1, p2),
            outcome => {
                log_pushed(&s.delays, kind, &p1, Some(&p2), &outcome);
                Self::note_replaced(&mut self.lua, sid, &outcome);
            }
        }
    }

    /// A Move as a Delete of its origin and a Create of its destination.
    fn split_move(&mut self, walk: &mut Walk, sid: usize, from: Rc<[u8]>, to: Rc<[u8]>) {
        log::with(b"Delay", || b"splitting Move into Delete & Create".to_vec());
        self.delay_one(walk, sid, DelayKind::Delete, from, None);
        self.delay_one(walk, sid, DelayKind::Create, to, None);
    }

    /// A delay that a combine replaced is gone: Lua forgets its event tables too.
    fn note_replaced(lua: &mut LuaSide, sid: usize, outcome: &Pushed) {
        match outcome {
            Pushed::Replaced { old, .. } => lua.forget(sid, *old),
            Pushed::ToDeleteStacked { on_move, .. } => lua.forget(sid, *on_move),
            _ => {}
        }
    }

    /// Appends the Init delay of a sync (SPEC §4.7).
    pub(crate) fn push_init(&mut self, sid: usize) {
        let s = &mut self.syncs[sid];
        s.delays
            .push_unblocked(DelayKind::Init, Default::default(), None);
        self.run.init_pending += 1;
    }

    /// When the main loop must wake up for this sync: `None` never, else the instant
    /// (SPEC §4.6 "Sync alarm"): the crontab's next rule, or when [`Core::next_due`] will answer,
    /// from the delay list's alarm index.
    pub(crate) fn sync_alarm(&self, sid: usize, now: Instant) -> Option<Instant> {
        let s = &self.syncs[sid];
        if !s.may_start() {
            return None;
        }
        let cron = s.cron.next.map(|t| t.max(now));
        // A sync backing off after a failure wakes up when its backoff ends.
        let delays = s
            .delays
            .alarm(now, s.conf.max_delays)
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
        if !s.may_start() {
            return;
        }
        if s.cron.next.is_some_and(|t| t <= now) {
            log::log(b"Info", b"Crontab triggered full sync");
            s.delays
                .push_unblocked(DelayKind::Full, b"/".to_vec().into(), None);
            s.cron.schedule(now);
        }
    }

    /// Whether the global process cap is reached.
    pub(crate) fn at_global_limit(&self) -> bool {
        self.procs.at_limit()
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
        if !s.may_start() || self.at_global_limit() || s.backoff.holds_until(now).is_some() {
            return None;
        }
        let (pos, id) = s.delays.next_wait_after(after, now, s.conf.max_delays)?;
        Some((pos, id, s.delays.get(id)?.kind))
    }

    /// Removes a waiting delay (`inlet.discardEvent`).
    pub(crate) fn discard(&mut self, sid: usize, id: DelayId) {
        let s = &mut self.syncs[sid];
        match s.delays.get(id) {
            Some(d) if d.status == Status::Wait => {
                if let Some(d) = s.delays.remove(id) {
                    if d.kind == DelayKind::Init {
                        self.run.init_pending = self.run.init_pending.saturating_sub(1);
                    }
                }
                self.lua.forget(sid, id);
            }
            Some(d) => log::error(format!(
                "Ignored cancel of a non-waiting event of type {}",
                d.kind.as_lua_str()
            )),
            None => {}
        }
    }
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
        let conf = SyncConf {
            source_as_given: source.into(),
            delay: Some(1.0),
            max_delays: 1000,
            max_processes: 1,
            monitor: None,
            takes: Takes {
                moves: false,
                subdirs: true,
                init: false,
                full: true,
            },
        };
        let mut s = SyncJob::new(
            source.into(),
            source.into(),
            conf,
            Excludes::default(),
            vec![],
        );
        s.monitor = Monitor::Inotify;
        s
    }

    /// A core with one sync and `maxPending` 10 after `files` files were modified.
    fn modified_files(files: usize, takes_full: bool) -> (Core, Instant) {
        let now = Instant::now();
        let mut core = Core::new(now);
        core.limits.max_pending = 10;
        core.syncs = vec![job("/src/")];
        core.syncs[0].conf.takes.full = takes_full;
        for i in 0..files {
            let p: Rc<[u8]> = format!("/f{i}").into_bytes().into();
            core.delay(0, DelayKind::Modify, p, None, now);
        }
        (core, now)
    }

    #[test]
    fn pending_changes_collapse_into_one_full_that_covers_later_ones() {
        let (mut core, now) = modified_files(11, true);
        let kinds: Vec<DelayKind> = core.syncs[0].delays.iter().map(|(_, d)| d.kind).collect();
        assert_eq!(kinds, [DelayKind::Full]);
        assert_eq!(core.lua.forgotten(), 11);
        core.delay(0, DelayKind::Create, b"/later".to_vec().into(), None, now);
        assert_eq!(core.syncs[0].delays.len(), 1);
    }

    #[test]
    fn without_a_full_action_every_pending_change_is_kept() {
        let (core, _) = modified_files(25, false);
        let s = &core.syncs[0];
        assert_eq!(s.delays.len(), 25);
        assert!(s.delays.iter().all(|(_, d)| d.kind == DelayKind::Modify));
        assert!(s.pending_limit.logged);
        assert_eq!(core.lua.forgotten(), 0);
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
}
