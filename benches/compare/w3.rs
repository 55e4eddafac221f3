//! W3: latency with delay=0 and real rsync: one file every 200 ms, time until it is in the
//! target, and the daemon's part of it (write → spawn).
//! Owns: this workload's rows and runs. Must not touch: other workloads' rows.

use crate::kit::recorder::Stamp;
use crate::*;
use std::fs;
use std::time::{Duration, Instant};

/// Latencies of one W3 run, in ms: write → in target, and write → rsync spawned.
pub(crate) struct W3Res {
    pub(crate) lat: Vec<f64>,
    pub(crate) react: Vec<f64>,
    /// From the spawn to the end of the include list on its stdin.
    pub(crate) eof: Vec<f64>,
}

pub(crate) fn w3_daemon(cx: &Ctx, side: Side, round: usize) -> Res<W3Res> {
    let run = cx.tmp("w3")?;
    let src = run.path().join("src");
    let dst = run.path().join("dst");
    mkdir(&src)?;
    mkdir(&dst)?;
    let m = marker(run.path(), true)?;
    let conf = write_config(run.path(), &src, &dst, &m, "  delay = 0,\n")?;
    let mut d = Daemon::start(cx.bin(side), &conf, &run.path().join("daemon.log"))?;
    let r = (|| {
        wait_first_call(&mut d, &m, Duration::from_secs(60))?;
        wait_quiescent(
            &mut d,
            Some(&m),
            Duration::from_millis(500),
            Duration::from_millis(500),
            Duration::from_secs(60),
        )?;
        let (mut lat, mut written) = (vec![], vec![]);
        for i in 0..cx.o.sizes.w3_samples {
            let t0 = Instant::now();
            written.push(now_epoch());
            let rel = format!("s{i:03}.txt");
            write_file(&src.join(&rel), format!("sample {i}\n").as_bytes())?;
            let target = dst.join(&rel);
            loop {
                if target.exists() {
                    lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                if t0.elapsed() > Duration::from_secs(10) {
                    d.check_alive()?;
                    return Err(format!("{rel} not in the target after 10 s"));
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            let next = t0 + Duration::from_millis(200);
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        // The daemon's part: from the write to the spawn whose include list names the file.
        let calls = m.stamps();
        let lists: Vec<(&Stamp, Vec<u8>)> = calls
            .iter()
            .map(|c| (c, fs::read(m.stdin_path(c)).unwrap_or_default()))
            .collect();
        let (mut react, mut eof) = (vec![], vec![]);
        for (i, w) in written.iter().enumerate() {
            let name = format!("/s{i:03}.txt");
            let hit = lists.iter().find(|(c, l)| {
                c.t >= w - 0.001 && l.split(|b| *b == 0).any(|p| p == name.as_bytes())
            });
            if let Some((c, _)) = hit {
                react.push((c.t - w).max(0.0) * 1000.0);
                eof.push((c.eof - c.t).max(0.0) * 1000.0);
            }
        }
        Ok(W3Res { lat, react, eof })
    })();
    if r.is_err() {
        cx.keep_log(&d, &format!("w3-{}-r{round}", name(side)));
    }
    d.stop();
    r
}

pub(crate) fn run(cx: &Ctx, rep: &mut Report) -> Res<()> {
    let wl = format!(
        "W3 latency, delay=0, real rsync, {} samples",
        cx.o.sizes.w3_samples
    );
    rep.row(
        &wl,
        "median write → in target (ms)",
        "",
        "≤ 1.0× upstream",
        Some(|o, u, _| o <= u),
        true,
        1,
    );
    rep.row(&wl, "p95 write → in target (ms)", "", "", None, true, 1);
    let m_react = "median write → rsync spawned (ms)";
    rep.row(&wl, m_react, "", "", None, true, 1);
    let m_eof = "median spawned → its stdin closed (ms)";
    rep.row(&wl, m_eof, "", "", None, true, 1);
    for round in 0..cx.o.rounds {
        for side in [Side::Ours, Side::Upstream] {
            match w3_daemon(cx, side, round) {
                Ok(r) => {
                    let (md, p95) = (median(&r.lat), percentile(&r.lat, 95.0));
                    let react = median(&r.react);
                    eprintln!(
                        "bench: W3 r{round} {}: median {md:.1} ms, p95 {p95:.1} ms, spawned after {react:.1} ms, \
                         stdin closed {:.1} ms later ({} of {} matched)",
                        name(side),
                        median(&r.eof),
                        r.react.len(),
                        r.lat.len()
                    );
                    rep.add(&wl, "median write → in target (ms)", side, M::V(md));
                    rep.add(&wl, "p95 write → in target (ms)", side, M::V(p95));
                    if !r.react.is_empty() {
                        rep.add(&wl, m_react, side, M::V(react));
                        rep.add(&wl, m_eof, side, M::V(median(&r.eof)));
                    }
                }
                Err(e) => {
                    rep.add(
                        &wl,
                        "median write → in target (ms)",
                        side,
                        M::Fail("error".into()),
                    );
                    rep.problem(format!("W3 round {round} {}: {e}", name(side)));
                }
            }
        }
    }
    Ok(())
}
