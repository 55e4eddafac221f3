//! Prometheus metrics: the text exposition (format 0.0.4) of a [`Snapshot`], and the
//! `settings{ metricsListen }` HTTP listener that serves it at `GET /metrics`.
//!
//! Owns: metric names and help texts, label escaping, the listener thread. The thread never
//! touches the daemon's state: for each scrape it asks the main loop (through a `mio::Waker`)
//! for a fresh page and waits for it briefly, falling back to the last page published while
//! the loop is busy.
//!
//! Must not touch: the syncs, Lua, the file system (the metrics file is written by `status`).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::health::{unix_secs, Snapshot, SyncState, SyncView};

/// How long a scrape waits for the main loop to render a fresh page.
const FRESH_WAIT: Duration = Duration::from_secs(2);

/// Appends a label value: UTF-8 (lossy for other bytes), with `\`, `"` and newlines escaped.
fn label_value(out: &mut String, v: &[u8]) {
    for c in String::from_utf8_lossy(v).chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// One metric family: HELP and TYPE, then a sample per sync or a single sample.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn per_sync(&mut self, syncs: &[SyncView], m: &Metric<SyncView, Option<f64>>) {
        self.head(m.name, m.kind, m.help);
        for s in syncs {
            if let Some(v) = (m.value)(s) {
                self.out.push_str(m.name);
                self.out.push_str("{sync=\"");
                label_value(self.out, &s.name);
                let _ = writeln!(self.out, "\"}} {v}");
            }
        }
    }
}

/// One metric family over a `T`: its name, type and help, and its value `V` (per sync an
/// `Option`, `None`: no sample).
struct Metric<T, V> {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&T) -> V,
}

/// A table of [`Metric`]s from `T` to `V`, one row a metric: `type name |x| value, "help";`.
macro_rules! metrics {
    ($t:ty => $v:ty: $($kind:ident $name:ident $value:expr, $help:literal;)*) => {
        &[$(Metric::<$t, $v> {
            name: stringify!($name),
            kind: stringify!($kind),
            help: $help,
            value: $value,
        }),*]
    };
}

/// The daemon-wide metrics after `lsyncd_info`, in exposition order.
const DAEMON_METRICS: &[Metric<Snapshot, f64>] = metrics! { Snapshot => f64:
    gauge lsyncd_start_time_seconds |s| unix_secs(s.daemon.started),
        "Start time of the daemon since the Unix epoch.";
    gauge lsyncd_uptime_seconds |s| s.uptime_secs,
        "Seconds since the daemon started.";
    gauge lsyncd_watches |s| s.watches as f64,
        "Directories watched.";
    counter lsyncd_overflows_total |s| s.daemon.overflows as f64,
        "Event queue overflows (each one restarts the daemon).";
    counter lsyncd_restarts_total |s| s.daemon.restarts as f64,
        "Restarts after a HUP or an overflow.";
};

/// The per-sync metrics after `lsyncd_sync_state`, in exposition order.
const SYNC_METRICS: &[Metric<SyncView, Option<f64>>] = metrics! { SyncView => Option<f64>:
    gauge lsyncd_sync_pending_events |s| Some(s.pending as f64),
        "Changes queued and not yet transferred.";
    gauge lsyncd_sync_lag_seconds |s| Some(s.lag_secs as f64),
        "Age of the oldest change not yet transferred; 0 when none is pending.";
    gauge lsyncd_sync_running_processes |s| Some(s.running as f64),
        "Transfer processes running.";
    counter lsyncd_sync_transfers_started_total |s| Some(s.health.transfers_started as f64),
        "Transfer processes started.";
    counter lsyncd_sync_transfers_succeeded_total |s| Some(s.health.transfers_succeeded as f64),
        "Transfer processes that ended well.";
    counter lsyncd_sync_transfers_failed_total |s| Some(s.health.transfers_failed as f64),
        "Transfer processes that failed (retried or given up).";
    gauge lsyncd_sync_consecutive_failures |s| Some(s.health.consecutive_failures as f64),
        "Transfers failed since the last one that ended well.";
    gauge lsyncd_sync_last_success_timestamp_seconds
        |s| Some(s.health.last_success.map_or(0.0, unix_secs)),
        "When a transfer last ended well, since the Unix epoch; 0 if none did yet.";
    gauge lsyncd_sync_last_failure_timestamp_seconds
        |s| Some(s.health.last_failure.as_ref().map_or(0.0, |x| unix_secs(x.at))),
        "When a transfer last failed, since the Unix epoch; 0 if none did.";
    gauge lsyncd_sync_last_failure_exit_code
        |s| s.health.last_failure.as_ref().map(|x| x.exit_code as f64),
        "Exit code of the last failed transfer (absent if none failed).";
    counter lsyncd_sync_events_total |s| Some(s.health.events_received as f64),
        "File-system events that reached the sync.";
    counter lsyncd_sync_events_excluded_total |s| Some(s.health.events_excluded as f64),
        "Events dropped by the sync's excludes or filters.";
};

/// The exposition text of a snapshot.
pub(crate) fn render(snap: &Snapshot) -> String {
    let mut out = String::with_capacity(2048 + snap.syncs.len() * 1024);
    let mut f = Family { out: &mut out };
    f.head(
        "lsyncd_info",
        "gauge",
        "Version and file-system monitor of the daemon.",
    );
    let _ = writeln!(
        f.out,
        "lsyncd_info{{version=\"2.3.1\",monitor=\"{}\"}} 1",
        snap.daemon.monitor
    );
    for m in DAEMON_METRICS {
        f.head(m.name, m.kind, m.help);
        let _ = writeln!(f.out, "{} {}", m.name, (m.value)(snap));
    }
    f.head(
        "lsyncd_sync_state",
        "gauge",
        "1 for the state the sync is in (starting, ok, retrying, failed, waiting_for_tunnel, \
         source_gone).",
    );
    for s in &snap.syncs {
        for state in SyncState::ALL {
            f.out.push_str("lsyncd_sync_state{sync=\"");
            label_value(f.out, &s.name);
            let _ = writeln!(
                f.out,
                "\",state=\"{}\"}} {}",
                state.as_str(),
                u8::from(s.state == state)
            );
        }
    }
    for m in SYNC_METRICS {
        f.per_sync(&snap.syncs, m);
    }
    out
}

/// What the listener thread and the main loop share.
#[derive(Debug, Default)]
struct Page {
    text: String,
    /// Pages published so far.
    generation: u64,
    /// A scrape waits for the generation after this one.
    wanted: u64,
}

#[derive(Debug, Default)]
struct Shared {
    page: Mutex<Page>,
    fresh: Condvar,
}

/// The `GET /metrics` listener: a thread blocked in `accept`, answering from pages the main
/// loop publishes.
pub(crate) struct MetricsServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MetricsServer {
    /// Listens on `addr`; `waker` wakes the main loop when a scrape wants a fresh page.
    pub(crate) fn start(addr: SocketAddr, waker: Arc<mio::Waker>) -> Result<MetricsServer, String> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| format!("cannot listen on {addr} (settings.metricsListen): {e}"))?;
        let server = Arc::new(server);
        let shared = Arc::new(Shared::default());
        let thread = {
            let server = server.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || serve(&server, &shared, &waker))
                .map_err(|e| format!("cannot start the metrics listener: {e}"))?
        };
        Ok(MetricsServer {
            addr,
            server,
            shared,
            thread: Some(thread),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether a scrape waits for a fresh page.
    pub(crate) fn wanted(&self) -> bool {
        let page = self.shared.page.lock().unwrap_or_else(|e| e.into_inner());
        page.wanted > page.generation
    }

    /// Publishes a page and wakes the scrapes waiting for it.
    pub(crate) fn publish(&self, text: String) {
        let mut page = self.shared.page.lock().unwrap_or_else(|e| e.into_inner());
        page.text = text;
        page.generation += 1;
        self.shared.fresh.notify_all();
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, shared: &Shared, waker: &mio::Waker) {
    while let Ok(request) = server.recv() {
        let path = request.url().split('?').next().unwrap_or("");
        let response = match (request.method(), path) {
            (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => {
                let text = fresh_page(shared, waker);
                let ctype = tiny_http::Header::from_bytes(
                    &b"Content-Type"[..],
                    &b"text/plain; version=0.0.4; charset=utf-8"[..],
                )
                .expect("static header");
                tiny_http::Response::from_string(text).with_header(ctype)
            }
            (_, "/metrics") => tiny_http::Response::from_string("only GET\n").with_status_code(405),
            _ => {
                tiny_http::Response::from_string("not found; try /metrics\n").with_status_code(404)
            }
        };
        let _ = request.respond(response);
    }
}

/// Asks the main loop for a page rendered now; the last one if it does not answer in time.
fn fresh_page(shared: &Shared, waker: &mio::Waker) -> String {
    let mut page = shared.page.lock().unwrap_or_else(|e| e.into_inner());
    let target = page.generation + 1;
    page.wanted = page.wanted.max(target);
    let _ = waker.wake();
    let (page, _) = shared
        .fresh
        .wait_timeout_while(page, FRESH_WAIT, |p| p.generation < target)
        .unwrap_or_else(|e| e.into_inner());
    page.text.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{DaemonHealth, SyncHealth};

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        label_value(&mut s, b"a\\b\"c\nd\xff");
        assert_eq!(s, "a\\\\b\\\"c\\nd\u{fffd}");
    }

    #[test]
    fn every_sync_gets_one_sample_per_family_and_one_per_state() {
        let view = SyncView {
            name: b"x".to_vec(),
            source: b"/x/".to_vec(),
            monitor: "inotify",
            state: SyncState::Retrying,
            pending: 3,
            lag_secs: 7,
            running: 1,
            health: SyncHealth::default(),
        };
        let snap = Snapshot {
            at: std::time::SystemTime::now(),
            uptime_secs: 1.5,
            daemon: DaemonHealth::new(),
            watches: 4,
            syncs: vec![view],
        };
        let text = render(&snap);
        assert!(text.contains("lsyncd_sync_state{sync=\"x\",state=\"retrying\"} 1\n"));
        assert!(text.contains("lsyncd_sync_state{sync=\"x\",state=\"ok\"} 0\n"));
        assert!(text.contains("lsyncd_sync_lag_seconds{sync=\"x\"} 7\n"));
        assert!(text.contains("lsyncd_sync_pending_events{sync=\"x\"} 3\n"));
        assert!(text.contains("lsyncd_watches 4\n"));
        assert!(!text.contains("lsyncd_sync_last_failure_exit_code{"));
    }
}
