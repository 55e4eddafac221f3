//! W1: startup on a big tree (100 × 1 000 directories by default), with `inotifywait -m -r`
//! as the floor: exec → first spawn, daemon CPU, peak RSS, watches set at the first spawn.
//! Owns: this workload's rows and runs. Must not touch: other workloads' rows.

use crate::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn make_w1_tree(root: &Path, top: usize, sub: usize) -> Res<()> {
    for t in 0..top {
        for s in 0..sub {
            mkdir(&root.join(format!("t{t:03}/s{s:04}")))?;
        }
    }
    Ok(())
}

pub(crate) struct StartupRes {
    pub(crate) startup: f64,
    pub(crate) cpu: f64,
    pub(crate) rss: f64,
    pub(crate) watches: usize,
}

pub(crate) fn w1_daemon(cx: &Ctx, side: Side, src: &Path, round: usize) -> Res<StartupRes> {
    let run = cx.tmp("w1")?;
    let dst = run.path().join("dst");
    mkdir(&dst)?;
    let m = marker(run.path(), false)?;
    let conf = write_config(run.path(), src, &dst, &m, "  delay = 1,\n")?;
    let t0 = now_epoch();
    let mut d = Daemon::start(cx.bin(side), &conf, &run.path().join("daemon.log"))?;
    let r = (|| {
        let first = wait_first_call(&mut d, &m, Duration::from_secs(600))?;
        let watches = watch_count(d.pid);
        wait_quiescent(
            &mut d,
            None,
            Duration::ZERO,
            Duration::from_millis(500),
            Duration::from_secs(120),
        )?;
        Ok(StartupRes {
            startup: first.t - t0,
            cpu: d.cpu(),
            rss: hwm_mib(d.pid),
            watches,
        })
    })();
    if r.is_err() {
        cx.keep_log(&d, &format!("w1-{}-r{round}", name(side)));
    }
    d.stop();
    r
}

pub(crate) fn w1_inotifywait(src: &Path) -> Res<StartupRes> {
    let t0 = Instant::now();
    let child = Command::new("inotifywait")
        .args(["-m", "-r"])
        .arg(src)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("inotifywait: {e}"))?;
    let mut w = Watcher { child };
    let err = w.child.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(err).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("Watches established") => break,
            Some(Ok(_)) => {}
            _ => return Err("inotifywait ended before establishing its watches".into()),
        }
    }
    let startup = t0.elapsed().as_secs_f64();
    let pid = w.child.id();
    Ok(StartupRes {
        startup,
        cpu: cpu_secs(pid),
        rss: hwm_mib(pid),
        watches: watch_count(pid),
    })
}

pub(crate) fn run(cx: &Ctx, rep: &mut Report) -> Res<()> {
    let s = &cx.o.sizes;
    let n = s.w1_top * s.w1_sub;
    let wl = format!(
        "W1 startup, {} dirs ({}×{})",
        fmt_num(n as f64, 0),
        s.w1_top,
        s.w1_sub
    );
    rep.row(
        &wl,
        "exec → first spawn (s)",
        "inotifywait -m -r",
        "≤ 1.05× inotifywait",
        Some(|o, _, r| o <= 1.05 * r),
        true,
        3,
    );
    rep.row(&wl, "daemon CPU (s)", "inotifywait", "", None, true, 3);
    rep.row(
        &wl,
        "peak RSS (MiB)",
        "inotifywait",
        "≤ 0.4× upstream",
        Some(|o, u, _| o <= 0.4 * u),
        true,
        1,
    );
    rep.row(
        &wl,
        "watches at first spawn",
        "inotifywait",
        "all dirs",
        Some(|o, _, r| o >= r),
        true,
        0,
    );
    let tree = cx.tmp("w1tree")?;
    let src = tree.path().join("src");
    eprintln!("bench: W1: creating {n} directories");
    make_w1_tree(&src, s.w1_top, s.w1_sub)?;
    let expected = n + s.w1_top + 1;
    for round in 0..cx.o.rounds {
        match w1_inotifywait(&src) {
            Ok(r) => {
                eprintln!(
                    "bench: W1 r{round} inotifywait: {:.3} s, cpu {:.3} s, rss {:.1} MiB",
                    r.startup, r.cpu, r.rss
                );
                rep.add(
                    &wl,
                    "exec → first spawn (s)",
                    Side::Reference,
                    M::V(r.startup),
                );
                rep.add(&wl, "daemon CPU (s)", Side::Reference, M::V(r.cpu));
                rep.add(&wl, "peak RSS (MiB)", Side::Reference, M::V(r.rss));
                rep.add(
                    &wl,
                    "watches at first spawn",
                    Side::Reference,
                    M::V(r.watches as f64),
                );
            }
            Err(e) => rep.problem(format!("W1 round {round} inotifywait: {e}")),
        }
        for side in [Side::Ours, Side::Upstream] {
            match w1_daemon(cx, side, &src, round) {
                Ok(r) => {
                    eprintln!(
                        "bench: W1 r{round} {}: {:.3} s, cpu {:.3} s, rss {:.1} MiB, {} watches",
                        name(side),
                        r.startup,
                        r.cpu,
                        r.rss,
                        r.watches
                    );
                    rep.add(&wl, "exec → first spawn (s)", side, M::V(r.startup));
                    rep.add(&wl, "daemon CPU (s)", side, M::V(r.cpu));
                    rep.add(&wl, "peak RSS (MiB)", side, M::V(r.rss));
                    rep.add(&wl, "watches at first spawn", side, M::V(r.watches as f64));
                    if r.watches < expected {
                        rep.problem(format!(
                            "W1 round {round} {}: first spawn with {} of {expected} watches set",
                            name(side),
                            r.watches
                        ));
                    }
                }
                Err(e) => {
                    rep.add(&wl, "exec → first spawn (s)", side, M::Fail("error".into()));
                    rep.problem(format!("W1 round {round} {}: {e}", name(side)));
                }
            }
        }
    }
    Ok(())
}
