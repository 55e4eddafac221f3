//! The status file (SPEC §12.1 layout, §12.2 timing; `statusFormat = "json"` for the health
//! record as JSON) and the metrics file (`metricsFile`, Prometheus text), each written
//! atomically: a temp file beside it renamed over it, so a reader never sees half a report.
//! Both are rewritten at least every `statusInterval` while idle, so their age tells whether
//! the daemon is alive.
//!
//! Owns: when to write and what. Reads the syncs and the watch registry, never changes them.
//! Must not touch: Lua, the poll loop.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use crate::health::{unix_secs, DaemonHealth, Snapshot};
use crate::log;
use crate::metrics;
use crate::sync::{describe_delay, Core};
use crate::sys;
use crate::watch::Monitors;

/// `settings{ statusFormat }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum StatusFormat {
    /// Upstream's report.
    #[default]
    Text,
    Json,
}

impl StatusFormat {
    /// Parses the setting; the error names the key and the accepted values.
    pub(crate) fn parse(v: &[u8]) -> Result<StatusFormat, String> {
        match v {
            b"text" => Ok(StatusFormat::Text),
            b"json" => Ok(StatusFormat::Json),
            other => Err(format!(
                "settings.statusFormat: expected \"text\" or \"json\", got \"{}\"",
                String::from_utf8_lossy(other)
            )),
        }
    }
}

/// While idle the files are rewritten this often when `statusInterval` is 0.
const IDLE_MIN: Duration = Duration::from_secs(1);

/// Decides when the status and metrics files are rewritten and writes them.
#[derive(Debug)]
pub(crate) struct StatusWriter {
    path: Option<OsString>,
    format: StatusFormat,
    metrics: Option<OsString>,
    interval: Duration,
    last: Option<Instant>,
    deferred: Option<Instant>,
    /// The last write of the status file (`.0`) or metrics file (`.1`) failed: the error was
    /// logged and is not repeated until a write succeeds again.
    failing: (bool, bool),
}

impl StatusWriter {
    pub(crate) fn new(
        path: Option<OsString>,
        format: StatusFormat,
        metrics: Option<OsString>,
        interval_secs: f64,
    ) -> StatusWriter {
        StatusWriter {
            path,
            format,
            metrics,
            interval: Duration::from_secs_f64(interval_secs.clamp(0.0, 1e9)),
            last: None,
            deferred: None,
            failing: (false, false),
        }
    }

    /// When the main loop must wake up: a deferred write, or the idle rewrite.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        if self.path.is_none() && self.metrics.is_none() {
            return None;
        }
        let idle = self.last.map(|t| t + self.interval.max(IDLE_MIN));
        match (self.deferred, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Asked at the end of every cycle (SPEC §12.2): whether the files are to be written now.
    /// `true` counts as the write: call [`StatusWriter::write`] next. `origin` is the daemon's
    /// start, for the `Function` trace's timestamp.
    pub(crate) fn due(&mut self, now: Instant, origin: Instant) -> bool {
        if self.path.is_none() && self.metrics.is_none() {
            return false;
        }
        if self.path.is_some() {
            crate::log::trace(crate::log::Trace::Function, || {
                format!("write( {} )", crate::log::timestamp(origin, now)).into_bytes()
            });
        }
        if !self.interval.is_zero() {
            if let Some(t) = self.deferred {
                if t > now {
                    return false;
                }
            } else if let Some(last) = self.last {
                if now.duration_since(last) < self.interval {
                    self.deferred = Some(last + self.interval);
                    return false;
                }
            }
        }
        self.deferred = None;
        self.last = Some(now);
        true
    }

    /// Whether the next write shows the tunnels' part of the text status.
    pub(crate) fn shows_tunnels(&self) -> bool {
        self.path.is_some() && self.format == StatusFormat::Text
    }

    /// Writes the status and metrics files; `tunnel_section` is the tunnels' part of the text
    /// status (empty without tunnels).
    pub(crate) fn write(
        &mut self,
        core: &Core,
        watcher: &Monitors,
        daemon: &DaemonHealth,
        tunnel_section: &[u8],
    ) {
        let snapshot = Snapshot::take(core, daemon, watcher.len());
        if let Some(path) = &self.path {
            let text = match self.format {
                StatusFormat::Text => render(core, watcher, tunnel_section),
                StatusFormat::Json => render_json(&snapshot),
            };
            self.failing.0 = !write_atomically(path, &text, "status", self.failing.0);
        }
        if let Some(path) = &self.metrics {
            let text = metrics::render(&snapshot);
            self.failing.1 = !write_atomically(path, text.as_bytes(), "metrics", self.failing.1);
        }
    }
}

/// Writes a temp file beside `path` and renames it over `path`; `false` on failure, which is
/// logged unless `quiet` (the previous write failed too).
fn write_atomically(path: &OsString, text: &[u8], what: &str, quiet: bool) -> bool {
    let mut tmp = path.as_bytes().to_vec();
    tmp.extend_from_slice(format!(".{}.tmp", sys::getpid()).as_bytes());
    let tmp = OsString::from(std::ffi::OsStr::from_bytes(&tmp));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text))
        .and_then(|_| std::fs::rename(&tmp, path));
    match result {
        Ok(()) => true,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            if !quiet {
                log::error(format!(
                    "Cannot open {what} file \"{}\" :{e}",
                    path.to_string_lossy()
                ));
            }
            false
        }
    }
}

/// Appends a JSON string: bytes as UTF-8 (lossy), escaped.
fn json_str(out: &mut String, v: &[u8]) {
    out.push('"');
    for c in String::from_utf8_lossy(v).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The health record as one JSON object (`statusFormat = "json"`).
pub(crate) fn render_json(snap: &Snapshot) -> Vec<u8> {
    use std::fmt::Write as _;
    let d = &snap.daemon;
    let mut o = String::with_capacity(512 + snap.syncs.len() * 512);
    let _ = write!(
        o,
        "{{\"version\":\"2.3.1\",\"time\":{},\"start_time\":{},\"uptime_seconds\":{},\
         \"monitor\":\"{}\",\"watches\":{},\"overflows\":{},\"restarts\":{},\"syncs\":[",
        unix_secs(snap.at),
        unix_secs(d.started),
        snap.uptime_secs,
        d.monitor,
        snap.watches,
        d.overflows,
        d.restarts
    );
    for (i, s) in snap.syncs.iter().enumerate() {
        let h = &s.health;
        if i > 0 {
            o.push(',');
        }
        o.push_str("{\"name\":");
        json_str(&mut o, &s.name);
        o.push_str(",\"source\":");
        json_str(&mut o, &s.source);
        let _ = write!(o, ",\"monitor\":\"{}\"", s.monitor);
        let _ = write!(
            o,
            ",\"state\":\"{}\",\"pending\":{},\"lag_seconds\":{},\"running\":{},\
             \"transfers_started\":{},\"transfers_succeeded\":{},\"transfers_failed\":{},\
             \"consecutive_failures\":{},\"events_received\":{},\"events_excluded\":{},\
             \"last_success\":",
            s.state.as_str(),
            s.pending,
            s.lag_secs,
            s.running,
            h.transfers_started,
            h.transfers_succeeded,
            h.transfers_failed,
            h.consecutive_failures,
            h.events_received,
            h.events_excluded
        );
        match h.last_success {
            Some(t) => {
                let _ = write!(o, "{}", unix_secs(t));
            }
            None => o.push_str("null"),
        }
        o.push_str(",\"last_failure\":");
        match &h.last_failure {
            Some(f) => {
                let _ = write!(
                    o,
                    "{{\"time\":{},\"exit_code\":{},\"command\":",
                    unix_secs(f.at),
                    f.exit_code
                );
                json_str(&mut o, &f.command);
                o.push('}');
            }
            None => o.push_str("null"),
        }
        o.push('}');
    }
    o.push_str("]}\n");
    o.into_bytes()
}

/// The report, in upstream's layout.
pub(crate) fn render(core: &Core, watcher: &Monitors, tunnel_section: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let now = sys::local_time_now();
    out.extend_from_slice(format!("Lsyncd status report at {}\n\n", now.ctime()).as_bytes());
    for s in &core.syncs {
        out.extend_from_slice(&s.name);
        out.extend_from_slice(b" source=");
        out.extend_from_slice(&s.source);
        out.push(b'\n');
        if s.paused.source_gone {
            out.extend_from_slice(b"State: source directory gone; no transfer until it is back\n");
        }
        if s.backoff.state() != crate::retry::State::Ok {
            // Only while failing, so that the layout of a healthy report stays upstream's.
            out.extend_from_slice(
                format!(
                    "State: {} after {} failed attempts: {}\n",
                    s.backoff.state().as_str(),
                    s.backoff.attempts(),
                    s.backoff.last_failure().unwrap_or("")
                )
                .as_bytes(),
            );
        }
        // Upstream's layout stays exact while every sync uses inotify.
        if watcher.fanotify().is_some_and(|f| f.roots() > 0) {
            out.extend_from_slice(format!("Monitor: {}\n", s.monitor.name()).as_bytes());
        }
        out.extend_from_slice(format!("There are {} delays\n", s.delays.len()).as_bytes());
        for (_, d) in s.delays.iter() {
            out.extend_from_slice(format!("{:<7}", d.status.as_str()).as_bytes());
            out.extend_from_slice(&describe_delay(&d));
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
    if let Some(fan) = watcher.fanotify().filter(|f| f.roots() > 0) {
        let s = fan.stats;
        out.extend_from_slice(
            format!(
                "Fanotify watching {} sources: {} records read, {} outside the sources, {} \
                 directory cache hits, {} of gone directories dropped\n",
                fan.roots(),
                s.records,
                s.outside,
                s.cache_hits,
                s.stale
            )
            .as_bytes(),
        );
        fan.for_each_mark(&mut |path, fs| {
            out.extend_from_slice(b"  filesystem of ");
            out.extend_from_slice(path);
            out.extend_from_slice(format!(" ({fs})\n").as_bytes());
        });
    }
    out.extend_from_slice(format!("Inotify watching {} directories\n", watcher.len()).as_bytes());
    watcher.for_each(&mut |wd, path| {
        out.extend_from_slice(format!("  {wd}: ").as_bytes());
        out.extend_from_slice(path);
        out.push(b'\n');
    });
    out
}
