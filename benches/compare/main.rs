//! `make bench`: this lsyncd side by side with upstream lsyncd 2.2.3 (issue 7).
//!
//! Each daemon is a black box run with `-nodaemon -log scarce` on an upstream-syntax config
//! generated per run: `sync{ default.rsync, ..., rsync = { binary = "<marker script>" } }`. The
//! marker script records when it was spawned (`date +%s.%N`), its arguments and its stdin (the
//! NUL-separated include list), then exits 0 or execs the real rsync (W3, W4). Daemon CPU is read
//! from /proc (`se.sum_exec_runtime` of every thread when the kernel shows it, else utime+stime of
//! /proc/PID/stat), peak memory is VmHWM. Workloads, rounds interleaved ours/upstream:
//!
//! - W1 startup on a tree of 100 x 1 000 directories, with `inotifywait -m -r` as the floor;
//! - W2 100 000 small files created into 100 directories (delay=1, six excludes), with
//!   `inotifywait -m -r -q` reading the same writer's events, and the writer alone as baseline;
//! - W2b events held (delay=600, maxDelays=1000000): CPU per event while 0 -> N1 and N1 -> N2
//!   events are pending;
//! - W3 latency with delay=0 and real rsync: one file every 200 ms, time until it is in the target;
//! - W4 churn: seeded random creates, modifies, deletes and renames of files and directories with
//!   real rsync, delay=1; time from the last operation until the trees compare equal;
//! - fan: the fanotify monitor against our inotify mode: W1 startup, W2 CPU per file and for
//!   creates outside the source, W4 churn converging;
//! - W5 fan-out: 1 and 10 syncs on one 100 x 1 000-directory source: startup time and CPU, peak
//!   RSS, CPU per created file per sync, and the 10 / 1 ratios.
//!
//! The table goes to target/bench/report.md and stdout. `--quick` runs one round of small sizes.
//! `--help` lists the options.
//!
//! Layout: this file runs the workloads and owns `Ctx`; `opts` parses the command line, `host`
//! reads /proc and the machine, `daemon` starts a daemon with its marker and waits on it,
//! `report` collects the rows and renders the table, and one module per workload (`w1` ...)
//! declares its rows and runs its rounds. The temp dirs, the process handle, the spawn
//! recorder, the seeded generator and the tree comparison come from the test kit shared with
//! the integration tests (`tests/util/kit/`).
//! Must not touch: the system beyond the scratch trees, the processes it starts and the two
//! inotify limits it raises and restores.

#[path = "../../tests/util/kit/mod.rs"]
mod kit;

mod daemon;
mod host;
mod opts;
mod report;
mod w1;
mod w2;
mod w2b;
mod w3;
mod w4;
mod w5;
mod wfan;

pub(crate) use daemon::*;
pub(crate) use host::*;
pub(crate) use opts::*;
pub(crate) use report::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub(crate) type Res<T> = Result<T, String>;

// ---------------------------------------------------------------------------------------------
// Workloads

pub(crate) struct Ctx<'a> {
    pub(crate) o: &'a Opts,
    pub(crate) scratch: PathBuf,
    pub(crate) logs: PathBuf,
}

impl Ctx<'_> {
    pub(crate) fn bin(&self, side: Side) -> &Path {
        if side == Side::Ours {
            &self.o.ours
        } else {
            &self.o.upstream
        }
    }
    pub(crate) fn tmp(&self, name: &str) -> Res<tempfile::TempDir> {
        kit::temp_dir(&format!("lsyncd-bench-{name}-"), Some(&self.scratch))
            .map_err(|e| format!("tempdir in {}: {e}", self.scratch.display()))
    }
    /// Keeps a daemon log of a failed run under target/bench for later reading.
    pub(crate) fn keep_log(&self, d: &Daemon, tag: &str) -> String {
        let dst = self.logs.join(format!("{tag}.log"));
        let _ = fs::copy(&d.proc.log, &dst);
        dst.display().to_string()
    }
}

pub(crate) fn name(side: Side) -> &'static str {
    match side {
        Side::Ours => "ours",
        Side::Upstream => "upstream",
        Side::Reference => "reference",
    }
}

// ---------------------------------------------------------------------------------------------

fn run() -> Res<()> {
    let o = parse_opts()?;
    ensure_tools(&o)?;
    if !o.ours.exists() {
        return Err(format!(
            "{} not found: build it first (make build) or pass --ours",
            o.ours.display()
        ));
    }
    let scratch = match &o.scratch {
        Some(s) => s.clone(),
        None => {
            let shm = PathBuf::from("/dev/shm");
            let writable = tempfile::tempdir_in(&shm).is_ok();
            if writable {
                shm
            } else {
                std::env::temp_dir()
            }
        }
    };
    let rsync = kit::which("rsync").ok_or("rsync not found")?;
    let out_dir = o
        .out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let logs = out_dir.join("logs");
    mkdir(&logs)?;
    // 100 000 watches per daemon and a deep event queue for the slow reader (both restored).
    let _limits = if is_root() {
        vec![
            Sysctl::raise("/proc/sys/fs/inotify/max_user_watches", 1_048_576),
            Sysctl::raise("/proc/sys/fs/inotify/max_queued_events", 4_194_304),
        ]
    } else {
        eprintln!("bench: not root: inotify limits left as they are");
        vec![]
    };
    let machine = machine_description(&scratch);
    let versions = format!(
        "Ours: `{}` ({}, modified {}). Upstream: `{}` ({}). inotifywait from inotify-tools; \
         rsync `{}`.",
        o.ours.display(),
        version_of(&o.ours),
        mtime(&o.ours),
        o.upstream.display(),
        version_of(&o.upstream),
        rsync.display()
    );
    eprintln!("bench: {machine}\nbench: {versions}");
    let cx = Ctx {
        o: &o,
        scratch,
        logs,
    };
    let mut rep = Report {
        rows: vec![],
        notes: vec![],
        problems: vec![],
    };
    let t = Instant::now();
    let mut loads = vec![];
    type Workload = fn(&Ctx, &mut Report) -> Res<()>;
    let workloads: [(&str, Workload); 7] = [
        ("w1", w1::run),
        ("w2", w2::run),
        ("w2b", w2b::run),
        ("w3", w3::run),
        ("w4", w4::run),
        ("w5", w5::run),
        ("fan", wfan::run),
    ];
    for (n, f) in workloads {
        if o.runs(n) {
            let tw = Instant::now();
            loads.push(format!("{n} {}", loadavg()));
            if let Err(e) = f(&cx, &mut rep) {
                rep.problem(format!("{n}: {e}"));
            }
            eprintln!("bench: {n} done in {:.0} s", tw.elapsed().as_secs_f64());
        }
    }
    if o.quick {
        rep.notes.push(
            "Quick mode: the targets are set for the full sizes, so the Met column is only \
             indicative here (at 10 000 directories, for one, both daemons' RSS is mostly their \
             fixed size)."
                .into(),
        );
    }
    rep.notes.push(format!(
        "1-minute load average when each workload started (the machine is shared; a load above \
         about 1 means other work competed for the 2 cores): {}.",
        loads.join(", ")
    ));
    rep.notes.push(format!(
        "Total bench time {:.0} s.",
        t.elapsed().as_secs_f64()
    ));
    let text = render(&o, &rep, &machine, &versions);
    mkdir(&out_dir)?;
    write_file(&o.out, text.as_bytes())?;
    println!("{text}");
    eprintln!("bench: report written to {}", o.out.display());
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench: error: {e}");
        std::process::exit(1);
    }
}
