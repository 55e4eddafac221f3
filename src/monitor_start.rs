//! Choosing and starting each sync's monitor (`monitor` key, `-monitor`): fanotify where asked
//! for (or where `auto` finds it usable), inotify otherwise; the log lines that name the choice
//! or the reason against fanotify; the poll registration of the monitor fds.
//!
//! Must not touch: the kernel interfaces themselves (`watch/`), the event loop's cycle.

use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};

use crate::config::Settings;
use crate::exit::ExitCode;
use crate::log;
use crate::sync::{Core, SyncJob};
use crate::watch::{Monitor, MonitorChoice, Monitors};

/// Decides each sync's monitor (SPEC §3.2; `monitor` key, `-monitor`) and sets it up: a
/// fanotify mark (nothing walked), or the inotify watches of the tree. `auto` falls back to
/// inotify with one log line naming the reason; an explicit `fanotify` that cannot work is a
/// startup error naming it.
pub(crate) fn start_monitors(
    core: &mut Core,
    monitors: &mut Monitors,
    settings: &Settings,
    on_dir: &mut dyn FnMut(),
) -> Result<(), ExitCode> {
    decide_monitors(core, monitors, settings)?;
    // One walk per distinct inotify source (nested sources share it); a source away since
    // before a restart is looked for instead.
    let (away, sources): (Vec<&SyncJob>, Vec<&SyncJob>) = core
        .syncs
        .iter()
        .filter(|s| s.monitor == Monitor::Inotify)
        .partition(|s| s.paused.source_gone);
    let away: Vec<Vec<u8>> = away.iter().map(|s| s.source.clone()).collect();
    let sources: Vec<Vec<u8>> = sources.iter().map(|s| s.source.clone()).collect();
    if sources.is_empty() && away.is_empty() {
        return Ok(());
    }
    let watcher = match monitors.inotify() {
        Ok(w) => w,
        Err(e) => {
            log::error(format!(
                "Cannot access inotify monitor! ( {} : {} )",
                e.raw_os_error().unwrap_or(0),
                e
            ));
            return Err(ExitCode::Fatal);
        }
    };
    let ifd = watcher.as_raw_fd();
    log::with(b"Inotify", || format!("inotify fd = {ifd}").into_bytes());
    for source in &away {
        watcher.add_absent_root(source, std::time::Instant::now());
    }
    let roots: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
    let added = watcher.add_trees(&roots, &mut |dir| {
        let yes = core.concerns(Monitor::Inotify, dir);
        if yes {
            on_dir();
        }
        yes
    });
    if let Err(e) = added {
        return Err(crate::event_loop::watch_error(e));
    }
    Ok(())
}

/// Sets each sync's monitor, placing the fanotify marks (also for `-t`, which then reports
/// what a run would use).
pub(crate) fn decide_monitors(
    core: &mut Core,
    monitors: &mut Monitors,
    settings: &Settings,
) -> Result<(), ExitCode> {
    for sid in 0..core.syncs.len() {
        let (source, name, choice, away) = {
            let s = &core.syncs[sid];
            let mut choice = s.conf.monitor.or(settings.monitor);
            let away = s.paused.source_gone;
            if away && choice == Some(MonitorChoice::Auto) {
                // Nothing to check `auto` on: the monitor of the run before.
                choice = Some(match s.monitor {
                    Monitor::Inotify => MonitorChoice::Inotify,
                    Monitor::Fanotify => MonitorChoice::Fanotify,
                });
            }
            (s.source.clone(), s.name.clone(), choice, away)
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        let added = |monitors: &mut Monitors| {
            if away {
                monitors.add_absent_fanotify_root(&source)
            } else {
                monitors.add_fanotify_root(&source)
            }
        };
        let monitor = match choice.unwrap_or(MonitorChoice::Inotify) {
            MonitorChoice::Inotify => Monitor::Inotify,
            choice => match added(monitors) {
                Ok(()) => Monitor::Fanotify,
                Err(reason) if choice == MonitorChoice::Auto => {
                    log::normal(format!(
                        "{name}: monitor auto uses inotify: fanotify is not usable: {reason}"
                    ));
                    Monitor::Inotify
                }
                Err(reason) => {
                    log::error(format!("{name}: cannot use the fanotify monitor: {reason}"));
                    return Err(ExitCode::Fatal);
                }
            },
        };
        core.syncs[sid].monitor = monitor;
        log::normal(format!(
            "{name}: watching {} with {}",
            String::from_utf8_lossy(&source),
            monitor.name()
        ));
    }
    Ok(())
}

pub(crate) fn register_monitors(
    poll: &Poll,
    monitors: &Monitors,
    token: Token,
) -> std::io::Result<()> {
    for fd in monitors.fds() {
        // A config may have observed this fd number (observefd): it is the monitor's again.
        poll.registry()
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    poll.registry()
                        .reregister(&mut SourceFd(&fd), token, Interest::READABLE)
                }
                _ => Err(e),
            })?;
    }
    Ok(())
}

pub(crate) fn deregister_monitors(poll: &Poll, monitors: &Monitors) {
    for fd in monitors.fds() {
        let _ = poll.registry().deregister(&mut SourceFd(&fd));
    }
}
