//! The main loop: one `mio::Poll` over the inotify fd, the signal self-pipe and the stdin pipes
//! of children; the only module that knows the order of steps (SPEC §13.1).
//!
//! One pass:
//! 1. timeout = the earliest alarm of any sync (SPEC §4.6), of user `alarm()`s and of the status
//!    file; none while fading or when nothing is pending;
//! 2. `poll`; `Interrupted` starts the next pass (mio hands EINTR back);
//! 3. dispatch by token: `SIGNALS` (the pipe is emptied first, then acted on), `INOTIFY` (read to
//!    `WouldBlock`, events into the syncs' delay lists), child stdin pipes (fed until
//!    `WouldBlock`); an unknown token is skipped;
//! 4. reap every exited child and hand it to its sync's `collect`;
//! 5. HUP or an inotify overflow → fade, then restart; TERM/INT → fade, then exit 128+signal;
//! 6. cycle: invoke actions of all syncs round-robin, user alarms, onepass.
//!
//! Only `poll` blocks: no blocking pipe writes, no waiting on a child, no `sleep`.
//!
//! A run is one Lua state, one inotify instance and one set of syncs; a HUP or overflow ends the
//! run and [`run`] starts a new one (SPEC §13.5), keeping the process, the signal pipe and the
//! daemon status. The loop of one run is [`pass::Run`].

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};

mod pass;

use crate::cli::Cli;
use crate::config::Settings;
use crate::daemon;
use crate::delay::DelayKind;
use crate::exit::ExitCode;
use crate::health::{DaemonHealth, Snapshot};
use crate::log;
use crate::lua_rt::Runtime;
use crate::metrics::MetricsServer;
use crate::monitor_start::{deregister_monitors, register_monitors, start_monitors};
use crate::notify::{Notifier, Progress};
use crate::shutdown;
use crate::signals::Signals;
use crate::sync::{Core, Ended, KnownSource};
use crate::sys;
use crate::watch::{InotifyMode, Monitors, WatchError};

const INOTIFY: Token = Token(0);
const SIGNALS: Token = Token(1);
/// A `/metrics` scrape wants a fresh page.
const METRICS: Token = Token(2);
/// Fds observed by configs (`observefd`) use `OBSERVED + fd`; far above the spawner's tokens.
const OBSERVED: usize = 1 << 30;
/// After a read that found events the inotify fd rests this long, out of the poll, so that a
/// burst is read in a few large reads instead of one wake-up per event. Events are never
/// lost (the kernel queues them); they are seen at most this much later.
const INOTIFY_REST: Duration = Duration::from_millis(1);
/// Tunnels are looked after at least this often (SPEC §14.2).
const TUNNEL_TICK: Duration = Duration::from_secs(1);

/// How a run ended.
enum RunEnd {
    Exit(ExitCode),
    Restart,
}

/// State that outlives a run: kept across HUP restarts (SPEC §13.5). The pidfile is kept by
/// `shutdown`, which removes it at exit.
struct Process {
    poll: Poll,
    signals: Signals,
    origin: Instant,
    daemonized: bool,
    /// A TERM/INT noticed while restarting is not lost.
    term: Option<i32>,
    notifier: Notifier,
    health: DaemonHealth,
    /// The `metricsListen` listener, kept across restarts while the address stays.
    metrics: Option<MetricsServer>,
    /// Wakes the loop for a scrape; one per poll, made with the first listener.
    waker: Option<Arc<mio::Waker>>,
    /// The sources of the last run, for the next one (a source away is waited for).
    sources: Vec<KnownSource>,
}

/// Logs a fatal error; the daemon exits.
fn fatal(message: impl AsRef<[u8]>) -> ExitCode {
    log::error(message);
    ExitCode::Fatal
}

/// Runs the daemon for a parsed command line until it exits; returns why.
pub(crate) fn run(cli: &Cli) -> ExitCode {
    match start_process(cli) {
        Ok((config_abs, mut process)) => {
            let mut first = true;
            loop {
                match run_once(cli, config_abs.as_deref(), &mut process, first) {
                    Ok(RunEnd::Exit(code)) | Err(code) => return code,
                    Ok(RunEnd::Restart) => {
                        first = false;
                        process.health.restarts += 1;
                        log::stop_running();
                    }
                }
            }
        }
        Err(code) => code,
    }
}

/// What the whole process keeps: the config's absolute path, the poll, the signal pipe.
fn start_process(cli: &Cli) -> Result<(Option<OsString>, Process), ExitCode> {
    let config_abs = match &cli.config {
        Some(path) => match sys::realpath(path.as_bytes()) {
            Ok(p) => Some(OsString::from_vec(p)),
            Err(_) => {
                return Err(fatal(format!(
                    "Cannot find config file at '{}'.",
                    path.to_string_lossy()
                )))
            }
        },
        None => None,
    };
    let poll = Poll::new().map_err(|e| fatal(format!("cannot create the poll instance: {e}")))?;
    let signals = Signals::register(poll.registry(), SIGNALS)
        .map_err(|e| fatal(format!("cannot install signal handling: {e}")))?;
    let process = Process {
        poll,
        signals,
        origin: Instant::now(),
        daemonized: false,
        term: None,
        notifier: Notifier::from_env(),
        health: DaemonHealth::new(),
        metrics: None,
        waker: None,
        sources: Vec::new(),
    };
    Ok((config_abs, process))
}

/// Loads the config into a fresh runtime: scripts, config file, initialization (SPEC §2.1).
fn load(
    cli: &Cli,
    config: Option<&std::ffi::OsStr>,
    core: &mut Core,
    first: bool,
) -> Result<(Runtime, Settings), ExitCode> {
    let rt = Runtime::new(core.lua.origin()).map_err(|e| fatal(format!("{e:#}")))?;
    log::call("configure");
    rt.set_cli(core, cli, first)?;
    for script in &cli.scripts {
        rt.run_script(core, script)?;
    }
    if config.is_none() && cli.shortcuts.is_empty() {
        // `-script FILE` without a config: the scripts ran, now the usage text (upstream).
        print!("{}", crate::cli::help_text(env!("CARGO_PKG_VERSION")));
        return Err(ExitCode::Fatal);
    }
    if let Some(config) = config {
        rt.run_config(core, config)?;
    }
    log::call("initialize");
    let settings = rt.initialize(core, &cli.shortcuts)?;
    if core.syncs.is_empty() {
        return Err(fatal("Nothing to watch!"));
    }
    if let Some(f) = &settings.logfile {
        log::check_logfile(f).map_err(fatal)?;
    }
    Ok((rt, settings))
}

/// The running phase begins (SPEC §2.1 step 8i): daemonize or write the pidfile, open the log.
fn enter_running(p: &mut Process, settings: &Settings, first: bool) -> Result<(), ExitCode> {
    let daemonize = first && !settings.nodaemon;
    if daemonize {
        log::start_running(
            settings.logfile.clone(),
            false,
            &settings.logident,
            settings.logfacility,
        );
        log::normal("--- Startup, daemonizing ---");
        let pidfile = daemon::daemonize(settings.pidfile.as_deref()).map_err(fatal)?;
        p.daemonized = true;
        if let Some(pf) = pidfile {
            shutdown::keep_pidfile(pf);
        }
    } else if first {
        if let Some(path) = &settings.pidfile {
            shutdown::keep_pidfile(daemon::Pidfile::write(path).map_err(fatal)?);
        }
    }
    log::start_running(
        settings.logfile.clone(),
        p.daemonized,
        &settings.logident,
        settings.logfacility,
    );
    if !daemonize {
        log::normal(format!(
            "--- Startup --- (implementation {})",
            env!("CARGO_PKG_VERSION")
        ));
    }
    start_metrics(p, settings.metrics_listen).map_err(fatal)?;
    Ok(())
}

/// Startup through the end of one run.
fn run_once(
    cli: &Cli,
    config: Option<&std::ffi::OsStr>,
    p: &mut Process,
    first: bool,
) -> Result<RunEnd, ExitCode> {
    let mut core = Core::new(p.origin);
    let registry = p
        .poll
        .registry()
        .try_clone()
        .map_err(|e| fatal(format!("cannot clone the poll registry: {e}")))?;
    core.procs.set_registry(registry);
    core.run.sources_before = std::mem::take(&mut p.sources);
    let (rt, settings) = load(cli, config, &mut core, first)?;
    if let Some(path) = &cli.explain {
        let text = crate::explain::explain(&core, path.as_bytes());
        let _ = std::io::Write::write_all(&mut std::io::stdout(), &text);
        return Ok(RunEnd::Exit(ExitCode::Success));
    }
    if cli.configtest {
        return config_test(&rt, &mut core, &settings);
    }
    enter_running(p, &settings, first)?;
    let child_logfile = settings.logfile.clone().filter(|_| p.daemonized);
    core.procs.configure(settings.max_processes, child_logfile);
    core.limits.max_backoff = settings.max_backoff;
    core.limits.max_pending = settings.max_pending;
    let ended = start_syncs(&rt, &mut core, p, &settings);
    p.sources = core.known_sources();
    if core.lua.has_tunnels() {
        rt.kill_tunnels(&mut core);
    }
    ended
}

/// Translation, watches, startup transfers, then the main loop of the run.
fn start_syncs(
    rt: &Runtime,
    core: &mut Core,
    p: &mut Process,
    settings: &Settings,
) -> Result<RunEnd, ExitCode> {
    rt.translate(core)?;
    let mode = InotifyMode::parse(settings.inotify_mode.as_deref().unwrap_or(b"CloseWrite"))
        .map_err(fatal)?;
    let mut watcher = Monitors::new(mode);
    let mut progress = Progress::new(Instant::now());
    p.notifier.extend_startup(Instant::now());
    {
        let notifier = &mut p.notifier;
        start_monitors(core, &mut watcher, settings, &mut || progress.dir(notifier))?;
    }
    progress.done(&mut p.notifier);
    p.health.monitor = watcher.kind_name();
    register_monitors(&p.poll, &watcher, INOTIFY)
        .map_err(|e| fatal(format!("cannot watch the monitor fds: {e}")))?;
    for sid in 0..core.syncs.len() {
        let s = &core.syncs[sid];
        // A source away since before a restart gets one full transfer on its return instead.
        if s.conf.takes.init && !s.paused.source_gone {
            core.push_init(sid);
        } else {
            core.syncs[sid].health.started_without_transfer();
        }
        core.syncs[sid].cron.schedule(Instant::now());
    }
    let end = pass::Run::new(rt, core, &mut watcher, p, settings).run();
    deregister_monitors(&p.poll, &watcher);
    Ok(end)
}

/// `-t`: everything is loaded and checked (prepare and gauges ran, sources resolved, exclude
/// and filter files read); the settings checked at startup are checked too. Prints a summary
/// and exits 0, watching and spawning nothing.
fn config_test(rt: &Runtime, core: &mut Core, settings: &Settings) -> Result<RunEnd, ExitCode> {
    InotifyMode::parse(settings.inotify_mode.as_deref().unwrap_or(b"CloseWrite")).map_err(fatal)?;
    let summary = rt.summary(core)?;
    let mode = InotifyMode::parse(settings.inotify_mode.as_deref().unwrap_or(b"CloseWrite"));
    let mut monitors = Monitors::new(mode.unwrap_or_default());
    crate::monitor_start::decide_monitors(core, &mut monitors, settings)?;
    let n = core.syncs.len();
    let mut out = format!(
        "Configuration OK: {n} sync{}\n",
        if n == 1 { "" } else { "s" }
    )
    .into_bytes();
    for line in summary.split(|b| *b == b'\n') {
        out.extend_from_slice(b"  ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    for s in &core.syncs {
        out.extend_from_slice(b"  ");
        out.extend_from_slice(&s.name);
        out.extend_from_slice(format!(" monitor: {}\n", s.monitor.name()).as_bytes());
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout(), &out);
    Ok(RunEnd::Exit(ExitCode::Success))
}

/// Starts, keeps, moves or stops the `/metrics` listener to match `metricsListen`. Runs after
/// daemonizing: the listener thread would not survive the fork.
fn start_metrics(p: &mut Process, listen: Option<std::net::SocketAddr>) -> Result<(), String> {
    if p.metrics.as_ref().map(|m| m.addr()) == listen {
        return Ok(());
    }
    p.metrics = None;
    let Some(addr) = listen else { return Ok(()) };
    let waker = match &p.waker {
        Some(w) => w.clone(),
        None => {
            let w = mio::Waker::new(p.poll.registry(), METRICS)
                .map_err(|e| format!("cannot create the metrics waker: {e}"))?;
            let w = Arc::new(w);
            p.waker = Some(w.clone());
            w
        }
    };
    p.metrics = Some(MetricsServer::start(addr, waker)?);
    log::normal(format!("Serving metrics at http://{addr}/metrics"));
    Ok(())
}

pub(crate) fn watch_error(e: WatchError) -> ExitCode {
    match e {
        WatchError::Limit { .. } => fatal(e.to_string()),
        // The path as bytes: a non-UTF-8 name is shown as it is.
        WatchError::Root { dir, err } => fatal(
            [
                b"Cannot watch source directory ".as_slice(),
                &dir,
                b": ",
                err.to_string().as_bytes(),
            ]
            .concat(),
        ),
        WatchError::Io(e) => fatal(format!("Read fail on inotify: {e}")),
    }
}

/// Spawns of this cycle that failed before exec become failed attempts of their syncs.
fn finish_failed_spawns(rt: &Runtime, core: &mut Core) -> Result<(), ExitCode> {
    let failed = core.procs.take_failures();
    for (sid, pid, error) in failed {
        rt.drop_agent(core, pid)?;
        let outcome = Ended::SpawnFailed(error);
        core.finish(sid, pid, outcome, Instant::now())?;
    }
    Ok(())
}

/// systemd: READY=1 once every startup transfer is done (or is being retried with insist),
/// STATUS= with what the daemon is doing, WATCHDOG=1.
fn notify(
    n: &mut Notifier,
    core: &Core,
    watcher: &Monitors,
    settings: &Settings,
    daemon: &DaemonHealth,
) {
    let now = Instant::now();
    if core.run.init_pending == 0 || (settings.insist && core.run.init_retried) {
        n.ready();
    }
    n.extend_startup(now);
    if n.active() {
        let snapshot = Snapshot::take(core, daemon, watcher.len());
        n.status(
            format!(
                "{}; {} directories watched",
                snapshot.summary(),
                watcher.len()
            ),
            now,
        );
    }
    n.watchdog(now);
}

/// Registers, changes and removes the poll registrations of observed fds.
fn sync_observed(
    poll: &Poll,
    registered: &mut std::collections::BTreeMap<std::os::fd::RawFd, (bool, bool)>,
    wanted: &[(std::os::fd::RawFd, bool, bool)],
) {
    let interest = |r: bool, w: bool| match (r, w) {
        (true, true) => Interest::READABLE | Interest::WRITABLE,
        (false, true) => Interest::WRITABLE,
        _ => Interest::READABLE,
    };
    let gone: Vec<_> = registered
        .keys()
        .filter(|fd| !wanted.iter().any(|(w, _, _)| w == *fd))
        .copied()
        .collect();
    for fd in gone {
        let _ = poll.registry().deregister(&mut SourceFd(&fd));
        registered.remove(&fd);
    }
    for &(fd, r, w) in wanted {
        let token = Token(OBSERVED + fd as usize);
        match registered.get(&fd) {
            Some(&(rr, ww)) if (rr, ww) == (r, w) => {}
            Some(_) => {
                let _ = poll
                    .registry()
                    .reregister(&mut SourceFd(&fd), token, interest(r, w));
                registered.insert(fd, (r, w));
            }
            None => {
                if poll
                    .registry()
                    .register(&mut SourceFd(&fd), token, interest(r, w))
                    .is_ok()
                {
                    registered.insert(fd, (r, w));
                }
            }
        }
    }
}

/// onepass (SPEC §13.7, with the fix of §15 item 23): syncs whose first transfer finished are
/// disabled; once all are and nothing runs, exit 0.
fn onepass_check(c: &mut Core) -> Option<ExitCode> {
    for s in c.syncs.iter_mut() {
        if s.init_done {
            s.paused.disabled = true;
        }
    }
    if c.procs.running() == 0 && c.syncs.iter().all(|s| s.paused.disabled) {
        log::log(
            b"Info",
            b"onepass active and all syncs finished. Exiting successfully",
        );
        return Some(ExitCode::Success);
    }
    None
}

/// SPEC §4.6 invokeActions for every sync, starting one position later each cycle (§6.3).
fn invoke_actions(rt: &Runtime, core: &mut Core, round_robin: &mut usize) -> Result<(), ExitCode> {
    let n = core.syncs.len();
    if n == 0 {
        return Ok(());
    }
    let now = Instant::now();
    for i in 0..n {
        let sid = (*round_robin + i) % n;
        log::trace(log::Trace::Function, || {
            let at = log::timestamp(core.lua.origin(), now);
            let name = &core.syncs[sid].name;
            [
                b"invokeActions( \"",
                &name[..],
                b"\", ",
                at.as_bytes(),
                b" )",
            ]
            .concat()
        });
        core.crontab_due(sid, now);
        let mut cursor = None;
        loop {
            let next = core.next_due(sid, cursor, now);
            let Some((pos, did, kind)) = next else { break };
            cursor = Some(pos);
            match kind {
                DelayKind::Init => rt.call_init(core, sid, did)?,
                DelayKind::Full if rt.has_full(core, sid)? => {
                    let collapsed = core.syncs[sid].pending_limit.collapsed == Some(did);
                    rt.call_full(core, sid, did, collapsed)?
                }
                _ => rt.call_action(core, sid)?,
            }
            if core.is_fading() {
                break;
            }
        }
    }
    *round_robin = (*round_robin + 1) % n;
    Ok(())
}
