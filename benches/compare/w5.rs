//! W5: fan-out. One sync, then N syncs (default 10), on one source of 100 × 1 000 directories
//! (delay=1, marker rsync): exec → every startup spawn, daemon CPU at that point, peak RSS once
//! startup is over and after the events, and daemon CPU per created file per sync for files
//! written after startup; then the N / 1 ratios, which say what each added target costs.
//! Owns: this workload's rows and runs. Must not touch: other workloads' rows.

use crate::kit::lua_path;
use crate::w1::make_w1_tree;
use crate::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

struct FanRes {
    startup: f64,
    cpu_startup: f64,
    /// Peak RSS once startup is over, and at the end (after the created files' events).
    rss: f64,
    rss_events: f64,
    /// Daemon CPU per created file per sync (µs); `None` when it never became quiescent.
    event: Option<f64>,
}

/// The files W5 writes after startup: spread over the first 100 directories of the tree.
fn event_file(i: usize, sub: usize) -> String {
    format!("t000/s{:04}/w{i:06}", i % sub.clamp(1, 100))
}

fn w5_config(root: &Path, src: &Path, syncs: usize, m: &kit::recorder::Recorder) -> Res<PathBuf> {
    let mut text = String::new();
    for i in 0..syncs {
        let dst = root.join(format!("dst{i}"));
        text.push_str(&format!(
            "sync {{\n  default.rsync,\n  source = {},\n  target = {},\n  delay = 1,\n  \
             rsync = {{ binary = {} }},\n}}\n",
            lua_path(src),
            lua_path(&dst),
            m.lua()
        ));
    }
    let conf = root.join("bench.conf.lua");
    write_file(&conf, text.as_bytes())?;
    Ok(conf)
}

fn w5_daemon(cx: &Ctx, side: Side, src: &Path, syncs: usize, round: usize) -> Res<FanRes> {
    let s = &cx.o.sizes;
    let run = cx.tmp("w5")?;
    let m = marker(run.path(), false)?;
    let conf = w5_config(run.path(), src, syncs, &m)?;
    let t0 = now_epoch();
    let mut d = Daemon::start(cx.bin(side), &conf, &run.path().join("daemon.log"))?;
    let r = (|| {
        let t = Instant::now();
        let stamps = loop {
            let st = m.stamps();
            if st.len() >= syncs {
                break st;
            }
            d.check_alive()?;
            if t.elapsed() > Duration::from_secs(1800) {
                return Err(format!("{} of {syncs} startup spawns in 1800 s", st.len()));
            }
            sleep_ms(5);
        };
        let cpu_startup = d.cpu();
        let startup = stamps[syncs - 1].t - t0;
        wait_quiescent(
            &mut d,
            Some(&m),
            Duration::from_secs(1),
            Duration::from_millis(500),
            Duration::from_secs(300),
        )?;
        let rss = hwm_mib(d.pid);
        let cpu0 = d.cpu();
        for i in 0..s.w5_files {
            write_file(&src.join(event_file(i, s.w5_sub)), b"x\n")?;
        }
        let quiet = wait_quiescent(
            &mut d,
            Some(&m),
            Duration::from_secs(3),
            Duration::from_secs(1),
            s.busy_timeout,
        )?;
        let per = (d.cpu() - cpu0) / (s.w5_files * syncs) as f64 * 1e6;
        Ok(FanRes {
            startup,
            cpu_startup,
            rss,
            rss_events: hwm_mib(d.pid),
            event: quiet.then_some(per),
        })
    })();
    if r.as_ref().map(|r| r.event.is_none()).unwrap_or(true) {
        cx.keep_log(&d, &format!("w5-{}-{syncs}-r{round}", name(side)));
    }
    d.stop();
    for i in 0..s.w5_files {
        let _ = fs::remove_file(src.join(event_file(i, s.w5_sub)));
    }
    r
}

const M_START: &str = "exec → every startup spawn (s)";
const M_CPU: &str = "daemon CPU at the last startup spawn (s)";
const M_RSS: &str = "peak RSS after startup (MiB)";
const M_RSS_EV: &str = "peak RSS after the files' events (MiB)";
const M_EVENT: &str = "event CPU per file per sync (µs)";

/// Declares the rows of one sync count.
fn declare(rep: &mut Report, wl: &str, k: usize) {
    let label = |m: &str| format!("{k} sync{}: {m}", if k == 1 { "" } else { "s" });
    rep.row(wl, &label(M_START), "", "", None, true, 3);
    rep.row(wl, &label(M_CPU), "", "", None, true, 3);
    rep.row(wl, &label(M_RSS), "", "", None, true, 1);
    rep.row(wl, &label(M_RSS_EV), "", "", None, true, 1);
    rep.row(wl, &label(M_EVENT), "", "", None, true, 2);
}

fn record(rep: &mut Report, wl: &str, side: Side, k: usize, r: &FanRes) {
    let label = |m: &str| format!("{k} sync{}: {m}", if k == 1 { "" } else { "s" });
    rep.add(wl, &label(M_START), side, M::V(r.startup));
    rep.add(wl, &label(M_CPU), side, M::V(r.cpu_startup));
    rep.add(wl, &label(M_RSS), side, M::V(r.rss));
    rep.add(wl, &label(M_RSS_EV), side, M::V(r.rss_events));
    match r.event {
        Some(e) => rep.add(wl, &label(M_EVENT), side, M::V(e)),
        None => rep.add(wl, &label(M_EVENT), side, M::Fail("not quiescent".into())),
    }
}

pub(crate) fn run(cx: &Ctx, rep: &mut Report) -> Res<()> {
    let s = &cx.o.sizes;
    let n = s.w5_syncs;
    let dirs = s.w5_top * s.w5_sub;
    let wl = format!(
        "W5 fan-out, {} dirs ({}×{}), 1 vs {n} syncs, {} files",
        fmt_num(dirs as f64, 0),
        s.w5_top,
        s.w5_sub,
        fmt_num(s.w5_files as f64, 0)
    );
    declare(rep, &wl, 1);
    declare(rep, &wl, n);
    let ratios = [
        (format!("{n} / 1: startup time"), "≤ 2"),
        (format!("{n} / 1: startup CPU"), "≤ 2"),
        (format!("{n} / 1: peak RSS after startup"), "≤ 1.2"),
        (format!("{n} / 1: event CPU per file per sync"), "≤ 1.2"),
    ];
    let at_most_2: fn(f64, f64, f64) -> bool = |o, _, _| o <= 2.0;
    let at_most_1_2: fn(f64, f64, f64) -> bool = |o, _, _| o <= 1.2;
    for (i, (m, target)) in ratios.iter().enumerate() {
        let check = if i < 2 { at_most_2 } else { at_most_1_2 };
        rep.row(&wl, m, "", target, Some(check), true, 2);
    }
    let tree = cx.tmp("w5tree")?;
    let src = tree.path().join("src");
    eprintln!("bench: W5: creating {dirs} directories");
    make_w1_tree(&src, s.w5_top, s.w5_sub)?;
    for round in 0..cx.o.rounds {
        for side in [Side::Ours, Side::Upstream] {
            let mut got: Vec<FanRes> = vec![];
            for k in [1, n] {
                match w5_daemon(cx, side, &src, k, round) {
                    Ok(r) => {
                        eprintln!(
                            "bench: W5 r{round} {} {k} sync(s): startup {:.3} s, cpu {:.3} s, \
                             rss {:.1} MiB ({:.1} MiB after events), {} µs/file/sync",
                            name(side),
                            r.startup,
                            r.cpu_startup,
                            r.rss,
                            r.rss_events,
                            r.event.map(|e| format!("{e:.2}")).unwrap_or("–".into())
                        );
                        record(rep, &wl, side, k, &r);
                        got.push(r);
                    }
                    Err(e) => rep.problem(format!("W5 round {round} {} {k}: {e}", name(side))),
                }
            }
            if let [one, many] = &got[..] {
                let pairs = [
                    Some((many.startup, one.startup)),
                    Some((many.cpu_startup, one.cpu_startup)),
                    Some((many.rss, one.rss)),
                    many.event.zip(one.event),
                ];
                for ((m, _), pair) in ratios.iter().zip(pairs) {
                    if let Some((a, b)) = pair {
                        rep.add(&wl, m, side, M::V(a / b));
                    }
                }
            }
        }
    }
    Ok(())
}
