//! The status file (SPEC §12.1 layout, §12.2 timing), written atomically: a temp file beside it
//! renamed over it, so a reader never sees half a report.
//!
//! Owns: when to write and what. Reads the syncs and the watch registry, never changes them.
//! Must not touch: Lua, the poll loop.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use crate::log;
use crate::sync::{describe_delay, Core};
use crate::sys;
use crate::watch::Watcher;

/// Decides when the status file is rewritten and writes it.
#[derive(Debug)]
pub(crate) struct StatusWriter {
    path: Option<OsString>,
    interval: Duration,
    last: Option<Instant>,
    deferred: Option<Instant>,
}

impl StatusWriter {
    pub(crate) fn new(path: Option<OsString>, interval_secs: f64) -> StatusWriter {
        StatusWriter {
            path,
            interval: Duration::from_secs_f64(interval_secs.clamp(0.0, 1e9)),
            last: None,
            deferred: None,
        }
    }

    /// A deferred write the main loop must wake up for.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.deferred
    }

    /// Called at the end of every cycle (SPEC §12.2).
    pub(crate) fn maybe_write(
        &mut self,
        core: &Core,
        watcher: &Watcher,
        tunnels: &mut dyn FnMut() -> Vec<u8>,
    ) {
        if self.path.is_none() {
            return;
        }
        let now = Instant::now();
        if !self.interval.is_zero() {
            if let Some(t) = self.deferred {
                if t > now {
                    return;
                }
            } else if let Some(last) = self.last {
                if now.duration_since(last) < self.interval {
                    self.deferred = Some(last + self.interval);
                    return;
                }
            }
        }
        self.deferred = None;
        self.last = Some(now);
        let tunnel_section = tunnels();
        self.write(core, watcher, &tunnel_section);
    }

    fn write(&self, core: &Core, watcher: &Watcher, tunnel_section: &[u8]) {
        let Some(path) = &self.path else { return };
        let text = render(core, watcher, tunnel_section);
        let mut tmp = path.as_bytes().to_vec();
        tmp.extend_from_slice(format!(".{}.tmp", sys::getpid()).as_bytes());
        let tmp = OsString::from(std::ffi::OsStr::from_bytes(&tmp));
        let result = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&text))
            .and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            log::error(format!(
                "Cannot open status file \"{}\" :{e}",
                path.to_string_lossy()
            ));
        }
    }
}

/// The report, in upstream's layout.
pub(crate) fn render(core: &Core, watcher: &Watcher, tunnel_section: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let now = sys::local_time_now();
    out.extend_from_slice(format!("Lsyncd status report at {}\n\n", now.ctime()).as_bytes());
    for s in &core.syncs {
        out.extend_from_slice(&s.name);
        out.extend_from_slice(b" source=");
        out.extend_from_slice(&s.source);
        out.push(b'\n');
        out.extend_from_slice(format!("There are {} delays\n", s.delays.len()).as_bytes());
        for (_, d) in s.delays.iter() {
            out.extend_from_slice(format!("{:<7}", d.status.as_str()).as_bytes());
            out.extend_from_slice(&describe_delay(d));
            out.push(b'\n');
        }
        out.extend_from_slice(b"Filtering:\n");
        let filters = s.excludes.filter_rules();
        if filters.is_empty() {
            out.extend_from_slice(b"  nothing.\n");
        }
        for f in filters {
            out.extend_from_slice(&f);
            out.push(b'\n');
        }
        out.extend_from_slice(b"\n\n");
    }
    out.extend_from_slice(tunnel_section);
    out.extend_from_slice(format!("Inotify watching {} directories\n", watcher.len()).as_bytes());
    watcher.for_each(&mut |wd, path| {
        out.extend_from_slice(format!("  {wd}: ").as_bytes());
        out.extend_from_slice(path);
        out.push(b'\n');
    });
    out
}
