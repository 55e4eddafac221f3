//! The daemon side of a workload: the marker (the kit's spawn recorder used as rsync), the
//! generated config, the daemon process with its CPU reading, and the waits for its first spawn
//! and for quiescence.
//! Owns: `marker`, `write_config`, `EXCLUDES`, `Daemon`, `wait_first_call`, `wait_quiescent`,
//! `Watcher`. Must not touch: the report (workloads record what these return).

use crate::kit::lua_path;
use crate::kit::proc::{send_signal, Proc};
use crate::kit::recorder::Then;
use crate::kit::recorder::{Recorder, Stamp};
use crate::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The spawn recorder used as rsync: with `exec`, it then execs the real rsync (W3, W4),
/// otherwise it exits 0 at once.
pub(crate) fn marker(root: &Path, exec: bool) -> Res<Recorder> {
    let then = if exec { Then::ExecRsync } else { Then::Exit(0) };
    Recorder::install(&root.join("marker.sh"), then).map_err(|e| format!("marker script: {e}"))
}

pub(crate) fn write_config(
    root: &Path,
    src: &Path,
    dst: &Path,
    marker: &Recorder,
    extra: &str,
) -> Res<PathBuf> {
    let conf = root.join("bench.conf.lua");
    let text = format!(
        "sync {{\n  default.rsync,\n  source = {},\n  target = {},\n{extra}  rsync = {{ binary = {} }},\n}}\n",
        lua_path(src),
        lua_path(dst),
        marker.lua()
    );
    write_file(&conf, text.as_bytes())?;
    Ok(conf)
}

pub(crate) const EXCLUDES: &str =
    "  exclude = { '*.tmp', '*.swp', '*~', '/cache/', '.git/', '**/build/*.o' },\n";

/// A daemon under test, in its own process group (so the stop also ends its children).
pub(crate) struct Daemon {
    pub(crate) proc: Proc,
    pub(crate) pid: u32,
    pub(crate) what: String,
}

/// `-monitor NAME` for the daemons started from now on (ours only: the fanotify rows).
static MONITOR: std::sync::Mutex<Option<&'static str>> = std::sync::Mutex::new(None);

pub(crate) fn set_monitor(m: Option<&'static str>) {
    *MONITOR.lock().unwrap_or_else(|e| e.into_inner()) = m;
}

impl Daemon {
    pub(crate) fn start(bin: &Path, conf: &Path, log: &Path) -> Res<Daemon> {
        let mut cmd = Command::new(bin);
        if let Some(m) = *MONITOR.lock().unwrap_or_else(|e| e.into_inner()) {
            cmd.args(["-monitor", m]);
        }
        cmd.args(["-nodaemon", "-log", "scarce"])
            .arg(conf)
            .process_group(0);
        let proc = Proc::spawn(cmd, log).map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        Ok(Daemon {
            pid: proc.pid(),
            proc,
            what: bin.display().to_string(),
        })
    }

    pub(crate) fn cpu(&self) -> f64 {
        cpu_secs(self.pid)
    }

    /// Err with the exit status and the log's tail when the daemon has exited.
    pub(crate) fn check_alive(&mut self) -> Res<()> {
        match self.proc.try_exit() {
            Some(st) => Err(format!(
                "{} exited unexpectedly ({st}); log tail:\n{}",
                self.what,
                tail(&self.proc.log, 20)
            )),
            None => Ok(()),
        }
    }

    /// TERM, then KILL after 10 s; the whole process group is killed afterwards.
    pub(crate) fn stop(mut self) {
        self.proc.stop(Duration::from_secs(10));
        send_signal(format!("-{}", self.pid), "KILL");
    }
}

/// Waits for the first marker call (the startup transfer); returns it.
pub(crate) fn wait_first_call(d: &mut Daemon, m: &Recorder, timeout: Duration) -> Res<Stamp> {
    let t = Instant::now();
    loop {
        if let Some(c) = m.stamps().into_iter().next() {
            return Ok(c);
        }
        d.check_alive()?;
        if t.elapsed() > timeout {
            return Err(format!("{}: no startup spawn within {timeout:?}", d.what));
        }
        sleep_ms(2);
    }
}

/// Quiescent: no new marker call for `spawn_quiet` and CPU moved less than 2 ms per second over the
/// last `cpu_window`. Ok(false) on timeout.
pub(crate) fn wait_quiescent(
    d: &mut Daemon,
    m: Option<&Recorder>,
    spawn_quiet: Duration,
    cpu_window: Duration,
    timeout: Duration,
) -> Res<bool> {
    let start = Instant::now();
    let mut last_stamp = m.map(|m| m.index_len()).unwrap_or(0);
    let mut last_spawn = Instant::now();
    let mut hist: Vec<(Instant, f64)> = vec![];
    loop {
        d.check_alive()?;
        let now = Instant::now();
        if let Some(m) = m {
            let s = m.index_len();
            if s != last_stamp {
                last_stamp = s;
                last_spawn = now;
            }
        }
        hist.push((now, d.cpu()));
        let cpu_still = hist
            .iter()
            .rev()
            .find(|(t, _)| now.duration_since(*t) >= cpu_window)
            .is_some_and(|(_, c)| {
                hist[hist.len() - 1].1 - c < 0.002 * cpu_window.as_secs_f64().max(0.5)
            });
        if cpu_still && now.duration_since(last_spawn) >= spawn_quiet {
            return Ok(true);
        }
        if start.elapsed() > timeout {
            return Ok(false);
        }
        if hist.len() > 4096 {
            hist.drain(..2048);
        }
        sleep_ms(100);
    }
}

/// `inotifywait` under test, killed on drop.
pub(crate) struct Watcher {
    pub(crate) child: Child,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
