//! W2: event load. Small files created into 100 directories (delay=1, six excludes): daemon
//! CPU per created file, writer slowdown, peak RSS, coverage of the spawn lists; with
//! `inotifywait -m -r -q` and the writer alone as references.
//! Owns: this workload's rows and runs. Must not touch: other workloads' rows.

use crate::*;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn w2_tree(root: &Path, dirs: usize) -> Res<PathBuf> {
    let src = root.join("src");
    for d in 0..dirs {
        mkdir(&src.join(format!("d{d:02}")))?;
    }
    mkdir(&root.join("dst"))?;
    Ok(src)
}

pub(crate) fn file_rel(i: usize, dirs: usize) -> String {
    format!("d{:02}/f{i:06}", i % dirs)
}

/// Creates files `from..to`; returns the wall time in seconds.
pub(crate) fn writer(src: &Path, from: usize, to: usize, dirs: usize) -> Res<f64> {
    let t = Instant::now();
    for i in from..to {
        write_file(&src.join(file_rel(i, dirs)), b"x\n")?;
    }
    Ok(t.elapsed().as_secs_f64())
}

pub(crate) struct W2Res {
    pub(crate) cpu: f64,
    /// Share of the CPU spent in the kernel (stime / (utime + stime)), in percent.
    pub(crate) sys_pct: f64,
    pub(crate) writer: f64,
    pub(crate) rss: f64,
    pub(crate) spawns: usize,
    pub(crate) covered: usize,
    pub(crate) quiescent: bool,
    pub(crate) missing_sample: Vec<String>,
}

pub(crate) fn w2_daemon(cx: &Ctx, side: Side, files: usize, round: usize) -> Res<W2Res> {
    let dirs = cx.o.sizes.w2_dirs;
    let run = cx.tmp("w2")?;
    let src = w2_tree(run.path(), dirs)?;
    let m = marker(run.path(), false)?;
    let conf = write_config(
        run.path(),
        &src,
        &run.path().join("dst"),
        &m,
        &format!("  delay = 1,\n{EXCLUDES}"),
    )?;
    let mut d = Daemon::start(cx.bin(side), &conf, &run.path().join("daemon.log"))?;
    let r = (|| {
        wait_first_call(&mut d, &m, Duration::from_secs(60))?;
        wait_quiescent(
            &mut d,
            None,
            Duration::ZERO,
            Duration::from_millis(500),
            Duration::from_secs(60),
        )?;
        let startup_calls = m.stamps().len();
        let cpu0 = d.cpu();
        let (u0, s0) = stat_times(d.pid);
        let wr = writer(&src, 0, files, dirs)?;
        let quiescent = wait_quiescent(
            &mut d,
            Some(&m),
            Duration::from_secs(3),
            Duration::from_secs(1),
            cx.o.sizes.busy_timeout,
        )?;
        let cpu = d.cpu() - cpu0;
        let (u1, s1) = stat_times(d.pid);
        let sys_pct = 100.0 * (s1 - s0) / ((u1 - u0) + (s1 - s0)).max(1e-9);
        let rss = hwm_mib(d.pid);
        let calls = m.stamps();
        let mut listed: HashSet<Vec<u8>> = HashSet::new();
        for c in calls.iter().skip(startup_calls) {
            if let Ok(data) = fs::read(m.stdin_path(c)) {
                for p in data.split(|b| *b == 0) {
                    if p.len() > 1 && p[0] == b'/' {
                        listed.insert(p[1..].to_vec());
                    }
                }
            }
        }
        let mut covered = 0;
        let mut missing_sample = vec![];
        for i in 0..files {
            let rel = file_rel(i, dirs);
            if listed.contains(rel.as_bytes()) {
                covered += 1;
            } else if missing_sample.len() < 5 {
                missing_sample.push(rel);
            }
        }
        Ok(W2Res {
            cpu,
            sys_pct,
            writer: wr,
            rss,
            spawns: calls.len() - startup_calls,
            covered,
            quiescent,
            missing_sample,
        })
    })();
    if r.as_ref()
        .map(|r| !r.quiescent || r.covered < files)
        .unwrap_or(true)
    {
        let kept = cx.keep_log(&d, &format!("w2-{}-r{round}", name(side)));
        eprintln!("bench: W2 {} log kept in {kept}", name(side));
    }
    d.stop();
    r
}

pub(crate) fn w2_baseline(cx: &Ctx, files: usize) -> Res<f64> {
    let run = cx.tmp("w2base")?;
    let src = w2_tree(run.path(), cx.o.sizes.w2_dirs)?;
    writer(&src, 0, files, cx.o.sizes.w2_dirs)
}

pub(crate) fn w2_inotifywait(cx: &Ctx, files: usize) -> Res<(f64, f64, f64)> {
    let dirs = cx.o.sizes.w2_dirs;
    let run = cx.tmp("w2iw")?;
    let src = w2_tree(run.path(), dirs)?;
    let child = Command::new("inotifywait")
        .args([
            "-m",
            "-r",
            "-q",
            "-e",
            "attrib,close_write,create,delete,delete_self,moved_from,moved_to",
        ])
        .arg(&src)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("inotifywait: {e}"))?;
    let mut w = Watcher { child };
    let pid = w.child.id();
    let t = Instant::now();
    while watch_count(pid) < dirs + 1 {
        if t.elapsed() > Duration::from_secs(30) {
            return Err("inotifywait did not set its watches".into());
        }
        if let Ok(Some(st)) = w.child.try_wait() {
            return Err(format!("inotifywait exited: {st}"));
        }
        sleep_ms(5);
    }
    let cpu0 = cpu_secs(pid);
    let wr = writer(&src, 0, files, dirs)?;
    // Quiescent: CPU still over one second.
    let mut last = cpu_secs(pid);
    loop {
        sleep_ms(1000);
        let c = cpu_secs(pid);
        if c - last < 0.002 {
            break;
        }
        last = c;
    }
    Ok((cpu_secs(pid) - cpu0, wr, hwm_mib(pid)))
}

pub(crate) const SYS_ROW: &str = "share of that CPU in the kernel (%)";

pub(crate) fn run(cx: &Ctx, rep: &mut Report) -> Res<()> {
    let s = &cx.o.sizes;
    let (nf, nu) = (s.w2_files, s.w2_files_up);
    let same = nf == nu;
    let wl = if same {
        format!(
            "W2 {} files → {} dirs, delay=1",
            fmt_num(nf as f64, 0),
            s.w2_dirs
        )
    } else {
        format!(
            "W2 files → {} dirs, delay=1; ours {} files, upstream {} files",
            s.w2_dirs,
            fmt_num(nf as f64, 0),
            fmt_num(nu as f64, 0)
        )
    };
    let (m_cpu, m_per, m_wall) = (
        "daemon CPU until quiescent (s)",
        "daemon CPU per created file (µs)",
        "writer wall (s)",
    );
    let (m_slow, m_slow_iw, m_rss) = (
        "writer slowdown vs no watcher (%)",
        "writer slowdown vs inotifywait's writer (%)",
        "peak RSS (MiB)",
    );
    let (m_spawns, m_cov) = ("spawns after startup", "files covered by a spawn list (%)");
    rep.row(&wl, m_cpu, "inotifywait -m -r -q", "", None, same, 3);
    rep.row(
        &wl,
        m_per,
        "inotifywait",
        "≤ 0.05× upstream and ≤ 1.5× inotifywait",
        Some(|o, u, r| o <= 0.05 * u && o <= 1.5 * r),
        true,
        2,
    );
    rep.row(&wl, SYS_ROW, "", "", None, false, 0);
    rep.row(&wl, m_wall, "no watcher", "", None, same, 3);
    let slow_ok: fn(f64, f64, f64) -> bool = |o, _, _| o <= 5.0;
    rep.row(&wl, m_slow, "inotifywait", "≤ 5 %", Some(slow_ok), true, 1);
    rep.row(&wl, m_slow_iw, "", "", None, same, 1);
    let rss_ok: fn(f64, f64, f64) -> bool = |o, u, _| o <= 0.3 * u;
    rep.row(
        &wl,
        m_rss,
        "inotifywait",
        "≤ 0.3× upstream",
        Some(rss_ok),
        same,
        1,
    );
    rep.row(&wl, m_spawns, "", "", None, same, 0);
    let cov_ok: fn(f64, f64, f64) -> bool = |o, _, _| o >= 100.0;
    rep.row(&wl, m_cov, "", "100 %", Some(cov_ok), true, 3);
    let (mut base, mut base_up, mut iw_writer) = (vec![], vec![], vec![]);
    for round in 0..cx.o.rounds {
        let b = w2_baseline(cx, nf)?;
        eprintln!("bench: W2 r{round} writer alone: {b:.3} s");
        base.push(b);
        rep.add(&wl, m_wall, Side::Reference, M::V(b));
        if !same {
            let bu = w2_baseline(cx, nu)?;
            eprintln!("bench: W2 r{round} writer alone, {nu} files: {bu:.3} s");
            base_up.push(bu);
        }
        match w2_inotifywait(cx, nf) {
            Ok((cpu, wr, rss)) => {
                eprintln!(
                    "bench: W2 r{round} inotifywait: cpu {cpu:.3} s, writer {wr:.3} s, rss {rss:.1} MiB"
                );
                rep.add(&wl, m_cpu, Side::Reference, M::V(cpu));
                rep.add(&wl, m_per, Side::Reference, M::V(cpu / nf as f64 * 1e6));
                rep.add(&wl, m_slow, Side::Reference, M::V((wr / b - 1.0) * 100.0));
                iw_writer.push(wr);
                rep.add(&wl, m_rss, Side::Reference, M::V(rss));
            }
            Err(e) => rep.problem(format!("W2 round {round} inotifywait: {e}")),
        }
        for side in [Side::Ours, Side::Upstream] {
            let files = if side == Side::Ours { nf } else { nu };
            let r = match w2_daemon(cx, side, files, round) {
                Ok(r) => r,
                Err(e) => {
                    rep.add(&wl, m_cpu, side, M::Fail("error".into()));
                    rep.add(&wl, m_per, side, M::Fail("error".into()));
                    rep.problem(format!("W2 round {round} {}: {e}", name(side)));
                    continue;
                }
            };
            eprintln!(
                "bench: W2 r{round} {}: cpu {:.3} s ({:.0} % sys), writer {:.3} s, rss {:.1} MiB, \
                 {} spawns, {}/{} covered{}",
                name(side),
                r.cpu,
                r.sys_pct,
                r.writer,
                r.rss,
                r.spawns,
                r.covered,
                files,
                if r.quiescent { "" } else { ", NOT quiescent" }
            );
            if r.quiescent {
                rep.add(&wl, m_cpu, side, M::V(r.cpu));
                rep.add(&wl, m_per, side, M::V(r.cpu / files as f64 * 1e6));
            } else {
                let f = format!("> {} s, not quiescent", s.busy_timeout.as_secs());
                rep.add(&wl, m_cpu, side, M::Fail(f.clone()));
                rep.add(&wl, m_per, side, M::Fail(f));
                rep.problem(format!(
                    "W2 round {round} {}: not quiescent {} s after the writer (CPU {:.1} s so far)",
                    name(side),
                    s.busy_timeout.as_secs(),
                    r.cpu
                ));
            }
            rep.add(&wl, SYS_ROW, side, M::V(r.sys_pct));
            rep.add(&wl, m_wall, side, M::V(r.writer));
            let bm = median(if files == nf { &base } else { &base_up });
            rep.add(&wl, m_slow, side, M::V((r.writer / bm - 1.0) * 100.0));
            if files == nf && !iw_writer.is_empty() {
                let v = (r.writer / median(&iw_writer) - 1.0) * 100.0;
                rep.add(&wl, m_slow_iw, side, M::V(v));
            }
            rep.add(&wl, m_rss, side, M::V(r.rss));
            rep.add(&wl, m_spawns, side, M::V(r.spawns as f64));
            rep.add(
                &wl,
                m_cov,
                side,
                M::V(100.0 * r.covered as f64 / files as f64),
            );
            if r.covered < files {
                rep.problem(format!(
                    "W2 round {round} {}: {} of {files} created files in no spawn's include list, e.g. {}",
                    name(side),
                    files - r.covered,
                    r.missing_sample.join(" ")
                ));
            }
        }
    }
    if !same {
        rep.notes.push(format!(
            "W2: upstream ran {} files instead of {} to keep the run within its time budget (its CPU \
             per file was flat between 10 000 and 100 000 files when measured), so the \
             ratio and the CPU target use CPU per created file; upstream's writer slowdown is against \
             a no-watcher writer of its own size; the peak-RSS target compares ours at {} files with \
             upstream at {} (stricter than at equal sizes: upstream's RSS grows with the backlog).",
            fmt_num(nu as f64, 0),
            fmt_num(nf as f64, 0),
            fmt_num(nf as f64, 0),
            fmt_num(nu as f64, 0)
        ));
    }
    Ok(())
}
