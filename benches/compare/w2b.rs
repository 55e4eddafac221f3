//! W2b: held events (delay=600, maxDelays=1000000): CPU per event while 0 → N1 and N1 → N2
//! events are pending, and the peak RSS at N2.
//! Owns: this workload's rows and runs. Must not touch: other workloads' rows.

use crate::w2::{w2_tree, writer};
use crate::*;
use std::time::Duration;

pub(crate) struct W2bRes {
    pub(crate) a: f64,
    pub(crate) b: Option<f64>,
    pub(crate) rss: f64,
    pub(crate) spawns: usize,
    pub(crate) note: Option<String>,
}

pub(crate) fn w2b_daemon(
    cx: &Ctx,
    side: Side,
    (n1, n2): (usize, usize),
    round: usize,
) -> Res<W2bRes> {
    let dirs = cx.o.sizes.w2_dirs;
    let run = cx.tmp("w2b")?;
    let src = w2_tree(run.path(), dirs)?;
    let m = marker(run.path(), false)?;
    let conf = write_config(
        run.path(),
        &src,
        &run.path().join("dst"),
        &m,
        "  delay = 600,\n  maxDelays = 1000000,\n",
    )?;
    if side == Side::Ours {
        // Ours collapses more than `maxPending` (default 100 000) pending changes into one
        // Full transfer; this workload measures them held.
        let text = std::fs::read_to_string(&conf).map_err(|e| format!("read config: {e}"))?;
        write_file(
            &conf,
            format!("settings {{ maxPending = 10000000 }}\n{text}").as_bytes(),
        )?;
    }
    let mut d = Daemon::start(cx.bin(side), &conf, &run.path().join("daemon.log"))?;
    let timeout = cx.o.sizes.busy_timeout;
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
        writer(&src, 0, n1, dirs)?;
        if !wait_quiescent(
            &mut d,
            None,
            Duration::ZERO,
            Duration::from_secs(1),
            timeout,
        )? {
            return Err(format!(
                "still busy {} s after {n1} creates",
                timeout.as_secs()
            ));
        }
        let cpu1 = d.cpu();
        writer(&src, n1, n2, dirs)?;
        let done = wait_quiescent(
            &mut d,
            None,
            Duration::ZERO,
            Duration::from_secs(1),
            timeout,
        )?;
        let cpu2 = d.cpu();
        let a = (cpu1 - cpu0) / n1 as f64 * 1e6;
        let (b, note) = if done {
            (Some((cpu2 - cpu1) / (n2 - n1) as f64 * 1e6), None)
        } else {
            (
                None,
                Some(format!(
                    "> {} s (still busy; {:.1} s CPU so far)",
                    timeout.as_secs(),
                    cpu2 - cpu1
                )),
            )
        };
        Ok(W2bRes {
            a,
            b,
            rss: hwm_mib(d.pid),
            spawns: m.stamps().len() - startup_calls,
            note,
        })
    })();
    if r.is_err() {
        cx.keep_log(&d, &format!("w2b-{}-r{round}", name(side)));
    }
    d.stop();
    r
}

pub(crate) fn run(cx: &Ctx, rep: &mut Report) -> Res<()> {
    let s = &cx.o.sizes;
    let same = s.w2b == s.w2b_up;
    let f = |n: usize| fmt_num(n as f64, 0);
    let wl = if same {
        format!(
            "W2b held events (delay=600), N1={} N2={}",
            f(s.w2b.0),
            f(s.w2b.1)
        )
    } else {
        format!(
            "W2b held events (delay=600); ours N1={} N2={}, upstream N1={} N2={}",
            f(s.w2b.0),
            f(s.w2b.1),
            f(s.w2b_up.0),
            f(s.w2b_up.1)
        )
    };
    let ma = "CPU per event, 0 → N1 pending (µs)";
    let mb = "CPU per event, N1 → N2 pending (µs)";
    let mg = "growth: (N1 → N2) / (0 → N1)";
    rep.row(&wl, ma, "", "", None, same, 2);
    rep.row(&wl, mb, "", "", None, same, 2);
    rep.row(&wl, mg, "", "≤ 1.2", Some(|o, _, _| o <= 1.2), false, 2);
    rep.row(&wl, "peak RSS at N2 (MiB)", "", "", None, same, 1);
    for round in 0..cx.o.rounds {
        for side in [Side::Ours, Side::Upstream] {
            let sz = if side == Side::Ours { s.w2b } else { s.w2b_up };
            match w2b_daemon(cx, side, sz, round) {
                Ok(r) => {
                    eprintln!(
                        "bench: W2b r{round} {}: {:.2} µs/event to {}, {} µs/event to {}, rss {:.1} MiB, {} spawns",
                        name(side),
                        r.a,
                        sz.0,
                        r.b.map(|b| format!("{b:.2}")).unwrap_or_else(|| r.note.clone().unwrap_or_default()),
                        sz.1,
                        r.rss,
                        r.spawns
                    );
                    rep.add(&wl, ma, side, M::V(r.a));
                    match r.b {
                        Some(b) => {
                            rep.add(&wl, mb, side, M::V(b));
                            rep.add(&wl, mg, side, M::V(b / r.a));
                        }
                        None => {
                            let n = r.note.clone().unwrap_or_default();
                            rep.add(&wl, mb, side, M::Fail(n.clone()));
                            rep.add(&wl, mg, side, M::Fail("n/a".into()));
                            rep.problem(format!("W2b round {round} {}: {n}", name(side)));
                        }
                    }
                    rep.add(&wl, "peak RSS at N2 (MiB)", side, M::V(r.rss));
                    if r.spawns > 0 {
                        rep.problem(format!(
                            "W2b round {round} {}: {} spawns while events should be held (delay=600, maxDelays=1000000)",
                            name(side),
                            r.spawns
                        ));
                    }
                }
                Err(e) => {
                    rep.add(&wl, ma, side, M::Fail("error".into()));
                    rep.problem(format!("W2b round {round} {}: {e}", name(side)));
                }
            }
        }
    }
    if !same {
        rep.notes.push(format!(
            "W2b: upstream's cost per held event grows with the number pending (about quadratic in total), so it ran \
             N1={}, N2={} instead of {}, {}; ratios across different sizes are not shown.",
            f(s.w2b_up.0),
            f(s.w2b_up.1),
            f(s.w2b.0),
            f(s.w2b.1)
        ));
    }
    Ok(())
}
