//! One run's main loop as a small state machine, [`Run`]: each pass computes the next timeout
//! ([`next_timeout`], pure: the clock is a parameter), polls, dispatches the ready sources,
//! reads inotify, reaps, then either fades or cycles (SPEC §13.1; the steps are listed in the
//! parent module's doc).
//!
//! Owns: the state that lives for one run of the loop (the fade reason, the inotify rest, the
//! observed-fd registrations, the status writer, the round-robin start).
//! Must not touch: startup and restarts (the parent module), Lua beyond the `Runtime` hooks,
//! fork/exec (through the core's spawner only).

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use mio::Events;

use super::{
    fatal, finish_failed_spawns, invoke_actions, notify, onepass_check, sync_observed, watch_error,
    Process, RunEnd, INOTIFY, INOTIFY_REST, METRICS, OBSERVED, SIGNALS, TUNNEL_TICK,
};
use crate::config::Settings;
use crate::exit::ExitCode;
use crate::health::Snapshot;
use crate::log::{self, Trace};
use crate::lua_rt::Runtime;
use crate::metrics;
use crate::monitor_start::{deregister_monitors, register_monitors};
use crate::shutdown;
use crate::spawn::{self, Spawner};
use crate::status::StatusWriter;
use crate::sync::{Core, Ended};
use crate::sys;
use crate::watch::{Monitors, ReadOutcome};

/// Why the run is fading.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fade {
    Restart,
    Exit(ExitCode),
}

/// What the next timeout depends on, read once per pass.
#[derive(Clone, Copy, Debug, Default)]
struct Wakeups {
    /// Fading: only the notifier's watchdog and the stop clock still need waking up.
    fading: bool,
    /// The next step of the stop clock (`stopGrace`).
    stop: Option<Instant>,
    /// The notifier's next WATCHDOG=1 or held-back STATUS= line.
    notifier: Option<Instant>,
    /// The earliest Sync alarm (none while the global process cap is reached).
    syncs: Option<Instant>,
    /// The earliest user `alarm()`.
    user_alarm: Option<Instant>,
    /// The next status or metrics file write.
    status: Option<Instant>,
    /// Work is waiting already: an inotify read cut short, or an observed fd still ready.
    ready_now: bool,
    /// The inotify fd rests until then.
    inotify_rest: Option<Instant>,
    /// Tunnels are looked after at least every [`TUNNEL_TICK`].
    tunnels: bool,
    /// The next look for a source root that is away.
    roots: Option<Instant>,
}

/// How long `poll` may sleep at `now`: until the earliest wake-up, `None` for ever.
fn next_timeout(w: &Wakeups, now: Instant) -> Option<Duration> {
    let next = if w.fading {
        w.notifier.into_iter().chain(w.stop).min()
    } else {
        let soon = [
            w.syncs,
            w.user_alarm,
            w.status,
            w.notifier,
            w.inotify_rest,
            w.roots,
            w.ready_now.then_some(now),
            w.tunnels.then(|| now + TUNNEL_TICK),
        ];
        soon.into_iter().flatten().min()
    };
    next.map(|t| t.saturating_duration_since(now))
}

/// One run of the main loop.
pub(super) struct Run<'a> {
    rt: &'a Runtime,
    core: &'a mut Core,
    watcher: &'a mut Monitors,
    p: &'a mut Process,
    settings: &'a Settings,
    events: Events,
    fs_events: Vec<crate::watch::FsEvent>,
    fade: Option<Fade>,
    last_waiting_log: Option<Instant>,
    round_robin: usize,
    /// The inotify queue still holds events from a read cut short (`ReadOutcome::More`).
    inotify_more: bool,
    /// The inotify fd rests (deregistered) until then.
    inotify_rest: Option<Instant>,
    /// observefd registrations made with the poll: fd → (readable, writable).
    registered: BTreeMap<RawFd, (bool, bool)>,
    status: StatusWriter,
    /// Fading: when the children still running get signalled (`stopGrace`).
    stop: Option<shutdown::StopClock>,
}

/// A pass step ends the run with this.
type Step<T = ()> = Result<T, RunEnd>;

fn exit(code: ExitCode) -> RunEnd {
    RunEnd::Exit(code)
}

impl<'a> Run<'a> {
    pub(super) fn new(
        rt: &'a Runtime,
        core: &'a mut Core,
        watcher: &'a mut Monitors,
        p: &'a mut Process,
        settings: &'a Settings,
    ) -> Run<'a> {
        let fade = p.term.map(|sig| Fade::Exit(ExitCode::Signal(sig)));
        if fade.is_some() {
            core.run.fading = true;
        }
        let status = StatusWriter::new(
            settings.status_file.clone(),
            settings.status_format,
            settings.metrics_file.clone(),
            settings.status_interval,
        );
        Run {
            rt,
            core,
            watcher,
            p,
            settings,
            events: Events::with_capacity(256),
            fs_events: Vec::new(),
            fade,
            last_waiting_log: None,
            round_robin: 0,
            inotify_more: false,
            inotify_rest: None,
            registered: BTreeMap::new(),
            status,
            stop: None,
        }
    }

    /// Passes until the run ends.
    pub(super) fn run(mut self) -> RunEnd {
        loop {
            if let Err(end) = self.pass() {
                return end;
            }
        }
    }

    fn pass(&mut self) -> Step {
        let observed = self.core.lua.observed();
        sync_observed(&self.p.poll, &mut self.registered, &observed);
        let now = Instant::now();
        let wakeups = self.wakeups(&observed, now);
        let timeout = next_timeout(&wakeups, now);
        self.trace_wakeups(&wakeups, now, timeout);
        if let Err(e) = self.p.poll.poll(&mut self.events, timeout) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(exit(fatal(format!("poll failed: {e}"))));
        }
        let (inotify_ready, child_exited) = self.dispatch();
        self.read_inotify(inotify_ready)?;
        self.source_roots()?;
        if self.fade.is_some() {
            self.core.run.fading = true;
            let grace = self.settings.stop_grace;
            self.stop
                .get_or_insert_with(|| shutdown::StopClock::new(Instant::now(), grace));
        }
        if child_exited {
            self.reap()?;
        }
        self.publish_metrics();
        if self.fade.is_none() && !observed.is_empty() {
            for (fd, r, w) in sys::poll_now(&observed) {
                self.rt.fd_ready(self.core, fd, r, w).map_err(exit)?;
            }
        }
        log::call("cycle");
        log::trace(Trace::Function, || {
            format!("cycle( {} )", log::timestamp(self.p.origin, Instant::now())).into_bytes()
        });
        match self.fade {
            Some(f) => self.fading(f),
            None => self.cycle(),
        }
    }

    /// Upstream's trace of the wake-up: `getAlarm` (the earliest wake-up and what asked for
    /// it; nothing while fading) and how long the loop sleeps.
    fn trace_wakeups(&self, w: &Wakeups, now: Instant, timeout: Option<Duration>) {
        log::call("getAlarm");
        log::trace(Trace::Function, || b"getAlarm( )".to_vec());
        if !w.fading && log::traced(Trace::Alarm) {
            let c = &*self.core;
            if c.at_global_limit() {
                log::log(b"Alarm", b"at global process limit.");
            }
            let sync = (0..c.syncs.len())
                .filter_map(|sid| Some((c.sync_alarm(sid, now)?, sid)))
                .min()
                .map(|(_, sid)| String::from_utf8_lossy(&c.syncs[sid].name).into_owned());
            let named = [
                (w.syncs, sync.as_deref().unwrap_or("")),
                (w.user_alarm, "UserAlarms"),
                (w.status, "StatusFile"),
                (w.notifier, "Notifier"),
                (w.inotify_rest, "Inotify"),
                (w.ready_now.then_some(now), "ReadyFds"),
                (w.tunnels.then(|| now + TUNNEL_TICK), "Tunnels"),
            ];
            let first = named.iter().filter_map(|(t, n)| Some(((*t)?, *n))).min();
            let (value, source) = match (timeout, first) {
                (None, _) | (_, None) => ("(false)".to_string(), ""),
                (Some(d), Some((_, n))) if d.is_zero() => ("(true)".to_string(), n),
                (Some(_), Some((t, n))) => (log::timestamp(self.p.origin, t), n),
            };
            log::log(
                b"Alarm",
                format!("runner.getAlarm returns: {value} Source:{source}").as_bytes(),
            );
        }
        log::trace(Trace::Masterloop, || match timeout {
            Some(d) if d.is_zero() => b"immediately handling delays.".to_vec(),
            Some(d) => {
                let secs = d.as_millis() as f64 / 1000.0;
                format!("going into select ( timeout {secs:?} seconds )").into_bytes()
            }
            None => b"going into select ( no timeout )".to_vec(),
        });
    }

    fn wakeups(&self, observed: &[(RawFd, bool, bool)], now: Instant) -> Wakeups {
        let c = &*self.core;
        let syncs = if c.at_global_limit() {
            None
        } else {
            (0..c.syncs.len())
                .filter_map(|sid| c.sync_alarm(sid, now))
                .min()
        };
        Wakeups {
            fading: self.fade.is_some(),
            stop: self.stop.and_then(|c| c.next_wake()),
            notifier: self.p.notifier.next_due(),
            syncs,
            user_alarm: c.lua.user_alarm(),
            status: self.status.next_due(),
            // Observed fds behave level-triggered, as upstream's select: one still ready
            // after its callback means no sleep.
            ready_now: self.inotify_more
                || (!observed.is_empty() && !sys::poll_now(observed).is_empty()),
            inotify_rest: self.inotify_rest,
            tunnels: c.lua.has_tunnels(),
            roots: self.watcher.next_root_check(),
        }
    }

    /// Acts on the ready tokens; signals first, so a pending HUP/TERM drops the inotify burst
    /// (SPEC §3.3). Returns whether inotify is readable and whether a child exited.
    fn dispatch(&mut self) -> (bool, bool) {
        let mut inotify_ready = false;
        let mut child_exited = false;
        let tokens: Vec<mio::Token> = self.events.iter().map(|e| e.token()).collect();
        for token in tokens {
            match token {
                SIGNALS => child_exited |= self.signals(),
                INOTIFY => inotify_ready = true,
                METRICS => {}              // answered after the events are in
                t if t.0 >= OBSERVED => {} // handled level-triggered
                t if Spawner::is_spawn_token(t) => self.feed_pipe(t),
                _ => {}
            }
        }
        (inotify_ready, child_exited)
    }

    /// Empties the signal pipe: TERM/INT fade to an exit, HUP to a restart. Returns whether a
    /// child exited.
    fn signals(&mut self) -> bool {
        let p = &mut *self.p;
        let pending = p.signals.drain();
        if let Some(sig) = pending.term {
            // The first TERM/INT decides the exit code.
            let first = *p.term.get_or_insert(sig);
            let name = if sig == libc::SIGINT { "INT" } else { "TERM" };
            log::call("term");
            log::normal(format!("--- {name} signal, fading ---"));
            p.notifier.stopping();
            shutdown::stopping_sent();
            self.fade = Some(Fade::Exit(ExitCode::Signal(first)));
        }
        if pending.hup && self.fade.is_none() {
            log::call("hup");
            log::normal("--- HUP signal, resetting ---");
            p.notifier.reloading();
            self.fade = Some(Fade::Restart);
        }
        pending.chld
    }

    fn feed_pipe(&mut self, token: mio::Token) {
        self.core.procs.feed_pipe(token);
    }

    /// Reads inotify when it is ready and not resting; events go into the syncs' delay lists.
    /// After a read that found events the fd rests for [`INOTIFY_REST`].
    fn read_inotify(&mut self, mut ready: bool) -> Step {
        let now = Instant::now();
        if self.inotify_rest.is_some_and(|t| t <= now) && self.fade.is_none() {
            self.inotify_rest = None;
            register_monitors(&self.p.poll, self.watcher, INOTIFY)
                .map_err(|e| exit(fatal(format!("cannot watch the monitor fds: {e}"))))?;
            ready = true;
        }
        if !(ready || self.inotify_more) || self.fade.is_some() || self.inotify_rest.is_some() {
            return Ok(());
        }
        self.inotify_more = false;
        self.fs_events.clear();
        let core = &*self.core;
        let outcome = self
            .watcher
            .read(&mut self.fs_events, &mut |m, dir| core.concerns(m, dir));
        match outcome.map_err(|e| exit(watch_error(e)))? {
            ReadOutcome::Overflow => {
                log::call("overflow");
                log::normal("--- OVERFLOW in event queue ---");
                self.p.health.overflows += 1;
                self.p.notifier.reloading();
                self.fade = Some(Fade::Restart);
            }
            outcome @ (ReadOutcome::Ok | ReadOutcome::More) => {
                self.inotify_more = outcome == ReadOutcome::More;
                if !self.fs_events.is_empty() && !self.inotify_more {
                    deregister_monitors(&self.p.poll, self.watcher);
                    self.inotify_rest = Some(now + INOTIFY_REST);
                }
                for ev in &self.fs_events {
                    self.core.dispatch(ev, now);
                }
            }
        }
        Ok(())
    }

    /// Looks for the source roots that are away when due, and hands the syncs every root
    /// that went away or came back.
    fn source_roots(&mut self) -> Step {
        let now = Instant::now();
        if self.fade.is_none() && self.watcher.next_root_check().is_some_and(|t| t <= now) {
            let core = &*self.core;
            self.watcher
                .check_roots(now, &mut |m, dir| core.concerns(m, dir))
                .map_err(|e| exit(watch_error(e)))?;
        }
        for ev in self.watcher.take_root_events() {
            self.core.root_event(&ev, now);
        }
        Ok(())
    }

    /// Reaps every exited child (after a SIGCHLD: the signal pipe was emptied first, so none
    /// is lost) and hands it to its sync, or to Lua for a child no sync owns.
    fn reap(&mut self) -> Step {
        let mut reaped = Vec::new();
        spawn::reap(&mut reaped);
        for (pid, code, signal) in reaped {
            log::call("collectProcess");
            let owner = self.core.procs.take_owner(pid);
            let Some(sid) = owner else {
                log::with(b"Exec", || {
                    format!("collected an unknown child {pid} = {code}").into_bytes()
                });
                self.rt.child_exit(self.core, pid, code).map_err(exit)?;
                continue;
            };
            self.collect(sid, pid, code, signal).map_err(exit)?;
        }
        Ok(())
    }

    fn collect(
        &mut self,
        sid: usize,
        pid: libc::pid_t,
        code: i32,
        signal: Option<i32>,
    ) -> Result<(), ExitCode> {
        if let Some(sig) = signal {
            self.rt.drop_agent(self.core, pid)?;
            return self
                .core
                .finish(sid, pid, Ended::Signalled(sig), Instant::now());
        }
        let rc = self.rt.collect(self.core, sid, pid, code)?;
        let outcome = Ended::Exited {
            rc: rc.as_deref(),
            code,
        };
        self.core.finish(sid, pid, outcome, Instant::now())
    }

    fn publish_metrics(&self) {
        if let Some(m) = self.p.metrics.as_ref().filter(|m| m.wanted()) {
            let snapshot = Snapshot::take(self.core, &self.p.health, self.watcher.len());
            m.publish(metrics::render(&snapshot));
        }
    }

    /// Fading: the run ends once no child runs; meanwhile the watchdog is kept and the wait is
    /// logged once a minute. Children still running after `stopGrace` get TERM, then KILL; an
    /// exit stops waiting for a child that survives even that.
    fn fading(&mut self, f: Fade) -> Step {
        let running = self.core.procs.running();
        let end = match f {
            Fade::Restart => RunEnd::Restart,
            Fade::Exit(code) => RunEnd::Exit(code),
        };
        if running == 0 {
            return Err(end);
        }
        let due = self.stop.as_mut().and_then(|c| c.due(Instant::now()));
        if let Some(step) = due {
            let grace = self.settings.stop_grace;
            if shutdown::take_step(step, running, grace) && matches!(f, Fade::Exit(_)) {
                return Err(end);
            }
        }
        self.p.notifier.watchdog(Instant::now());
        if self
            .last_waiting_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            log::normal(format!("waiting for {running} more child processes."));
            self.last_waiting_log = Some(Instant::now());
        }
        Ok(())
    }

    /// A cycle: onepass, tunnels, actions of every sync, user alarms, forgotten delays, then
    /// the status file and systemd.
    fn cycle(&mut self) -> Step {
        let rt = self.rt;
        if self.settings.onepass {
            if let Some(code) = onepass_check(self.core) {
                return Err(exit(code));
            }
        }
        let tunnels = self.core.lua.has_tunnels();
        if tunnels {
            rt.tunnel_tick(self.core).map_err(exit)?;
        }
        invoke_actions(rt, self.core, &mut self.round_robin).map_err(exit)?;
        finish_failed_spawns(rt, self.core).map_err(exit)?;
        if self
            .core
            .lua
            .user_alarm()
            .is_some_and(|t| t <= Instant::now())
        {
            rt.run_alarms(self.core).map_err(exit)?;
        }
        rt.forget_removed(self.core).map_err(exit)?;
        if self.status.due(Instant::now(), self.p.origin) {
            // Lua writes the tunnel section with the core lent, before the report reads it.
            let section = if tunnels && self.status.shows_tunnels() {
                rt.tunnel_status(self.core)
            } else {
                Vec::new()
            };
            self.status
                .write(self.core, self.watcher, &self.p.health, &section);
        }
        notify(
            &mut self.p.notifier,
            self.core,
            self.watcher,
            self.settings,
            &self.p.health,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Option<Instant> {
        Some(base + Duration::from_millis(ms))
    }

    #[test]
    fn next_timeout_cases() {
        let now = Instant::now() + Duration::from_secs(10);
        let ms = |ms| Some(Duration::from_millis(ms));
        let none = Wakeups::default();
        let alarms = Wakeups {
            syncs: at(now, 500),
            user_alarm: at(now, 300),
            status: at(now, 900),
            notifier: at(now, 700),
            inotify_rest: at(now, 400),
            ..none
        };
        let mut resting = alarms;
        resting.inotify_rest = at(now, 1);
        let mut passed = none;
        passed.syncs = Some(now - Duration::from_secs(3));
        let mut ready = none;
        ready.ready_now = true;
        ready.status = at(now, 5000);
        let mut tunnels = none;
        tunnels.tunnels = true;
        tunnels.syncs = at(now, 60_000);
        let fading = Wakeups {
            fading: true,
            syncs: at(now, 10),
            user_alarm: at(now, 10),
            ready_now: true,
            tunnels: true,
            ..none
        };
        let mut fading_notifier = fading;
        fading_notifier.notifier = at(now, 2500);
        let mut fading_stop = fading_notifier;
        fading_stop.stop = at(now, 900);
        let cases = [
            ("nothing pending sleeps for ever", none, None),
            ("the earliest wake-up wins", alarms, ms(300)),
            ("a resting inotify fd is a wake-up too", resting, ms(1)),
            (
                "a passed alarm means no sleep",
                passed,
                Some(Duration::ZERO),
            ),
            ("ready work means no sleep", ready, Some(Duration::ZERO)),
            (
                "tunnels wake the loop every tick",
                tunnels,
                Some(TUNNEL_TICK),
            ),
            (
                "fading ignores alarms, ready work and tunnels",
                fading,
                None,
            ),
            ("fading wakes for the notifier", fading_notifier, ms(2500)),
            (
                "fading wakes for the stop clock if sooner",
                fading_stop,
                ms(900),
            ),
        ];
        for (what, w, want) in cases {
            assert_eq!(next_timeout(&w, now), want, "{what}");
        }
    }
}
