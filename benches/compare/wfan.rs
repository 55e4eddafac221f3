//! The fanotify monitor (`monitor = "fanotify"`) next to our inotify mode: W1 startup on the W1
//! tree, W2 daemon CPU per created file, the CPU the daemon spends on events outside its
//! source (a fanotify mark sees the whole filesystem), and the W4 churn converging.
//! Ours = fanotify, reference = ours with inotify; upstream has no fanotify.
//! Owns: these rows and runs. Must not touch: other workloads' rows.

use crate::w1::{make_w1_tree, w1_daemon};
use crate::w2::{w2_daemon, w2_tree, writer};
use crate::w4::w4_daemon;
use crate::*;
use std::time::Duration;

/// CPU of a fanotify daemon on the W2 tree for `files` creates in a sibling tree outside its
/// source, on the same filesystem.
fn outside_cpu(cx: &Ctx, files: usize) -> Res<f64> {
    let dirs = cx.o.sizes.w2_dirs;
    let run = cx.tmp("wfan-out")?;
    let src = w2_tree(run.path(), dirs)?;
    let outside = w2_tree(&run.path().join("outside"), dirs)?;
    let m = marker(run.path(), false)?;
    let conf = write_config(
        run.path(),
        &src,
        &run.path().join("dst"),
        &m,
        "  delay = 1,\n",
    )?;
    let mut d = Daemon::start(cx.bin(Side::Ours), &conf, &run.path().join("daemon.log"))?;
    let r = (|| {
        wait_first_call(&mut d, &m, Duration::from_secs(60))?;
        let quiet = Duration::from_millis(500);
        wait_quiescent(&mut d, None, Duration::ZERO, quiet, Duration::from_secs(60))?;
        let calls = m.stamps().len();
        let cpu0 = d.cpu();
        writer(&outside, 0, files, dirs)?;
        wait_quiescent(
            &mut d,
            None,
            Duration::from_secs(1),
            quiet,
            Duration::from_secs(60),
        )?;
        if m.stamps().len() != calls {
            return Err("writes outside the source caused a transfer".into());
        }
        Ok(d.cpu() - cpu0)
    })();
    d.stop();
    r
}

pub(crate) fn run(cx: &Ctx, rep: &mut Report) -> Res<()> {
    let s = &cx.o.sizes;
    let n = s.w1_top * s.w1_sub;
    let w1 = format!("W1 fanotify startup, {} dirs", fmt_num(n as f64, 0));
    let (m_start, m_rss) = ("exec → first spawn (s)", "peak RSS (MiB)");
    rep.row(
        &w1,
        m_start,
        "ours, inotify",
        "≤ 0.1 s",
        Some(|o, _, _| o <= 0.1),
        false,
        3,
    );
    rep.row(&w1, "daemon CPU (s)", "ours, inotify", "", None, false, 3);
    rep.row(
        &w1,
        m_rss,
        "ours, inotify",
        "≤ 10 MiB",
        Some(|o, _, _| o <= 10.0),
        false,
        1,
    );
    let nf = s.w2_files;
    let w2 = format!(
        "W2 fanotify, {} files → {} dirs",
        fmt_num(nf as f64, 0),
        s.w2_dirs
    );
    let (m_per, m_out) = (
        "daemon CPU per created file (µs)",
        "daemon CPU for N creates outside the source (s)",
    );
    rep.row(
        &w2,
        m_per,
        "ours, inotify",
        "≤ 1.5× inotify",
        Some(|o, _, r| o <= 1.5 * r),
        true,
        2,
    );
    rep.row(&w2, m_out, "", "reported", None, false, 3);
    let w4 = format!(
        "W4 fanotify churn, {} operations",
        fmt_num(s.w4_ops as f64, 0)
    );
    let m_conv = "last operation → trees equal (s)";
    rep.row(&w4, m_conv, "ours, inotify", "converges", None, true, 2);

    let tree = cx.tmp("wfan-w1")?;
    let src = tree.path().join("src");
    eprintln!("bench: W1 fanotify: creating {n} directories");
    make_w1_tree(&src, s.w1_top, s.w1_sub)?;
    for round in 0..cx.o.rounds {
        for (side, mon) in [(Side::Ours, Some("fanotify")), (Side::Reference, None)] {
            set_monitor(mon);
            match w1_daemon(cx, Side::Ours, &src, round) {
                Ok(r) => {
                    eprintln!(
                        "bench: W1 r{round} {}: {:.3} s, cpu {:.3} s, rss {:.1} MiB",
                        mon.unwrap_or("inotify"),
                        r.startup,
                        r.cpu,
                        r.rss
                    );
                    rep.add(&w1, m_start, side, M::V(r.startup));
                    rep.add(&w1, "daemon CPU (s)", side, M::V(r.cpu));
                    rep.add(&w1, m_rss, side, M::V(r.rss));
                }
                Err(e) => rep.problem(format!("W1 fanotify round {round} {mon:?}: {e}")),
            }
        }
        for (side, mon) in [(Side::Ours, Some("fanotify")), (Side::Reference, None)] {
            set_monitor(mon);
            match w2_daemon(cx, Side::Ours, nf, round) {
                Ok(r) => {
                    eprintln!(
                        "bench: W2 r{round} {}: cpu {:.3} s, covered {}/{nf}",
                        mon.unwrap_or("inotify"),
                        r.cpu,
                        r.covered
                    );
                    rep.add(&w2, m_per, side, M::V(r.cpu / nf as f64 * 1e6));
                    if r.covered < nf {
                        rep.problem(format!(
                            "W2 fanotify round {round} {mon:?}: {} of {nf} files listed",
                            r.covered
                        ));
                    }
                }
                Err(e) => rep.problem(format!("W2 fanotify round {round} {mon:?}: {e}")),
            }
        }
        set_monitor(Some("fanotify"));
        match outside_cpu(cx, nf) {
            Ok(cpu) => {
                eprintln!("bench: W2 r{round} fanotify, {nf} creates outside: cpu {cpu:.3} s");
                rep.add(&w2, m_out, Side::Ours, M::V(cpu));
            }
            Err(e) => rep.problem(format!("W2 fanotify round {round} outside: {e}")),
        }
        for (side, mon) in [(Side::Ours, Some("fanotify")), (Side::Reference, None)] {
            set_monitor(mon);
            match w4_daemon(cx, Side::Ours, round) {
                Ok(r) => {
                    eprintln!(
                        "bench: W4 r{round} {}: converge {:?}, cpu {:.3} s",
                        mon.unwrap_or("inotify"),
                        r.converge,
                        r.cpu
                    );
                    let m = match r.converge {
                        Some(t) => M::V(t),
                        None => M::Fail("diverged".into()),
                    };
                    if r.converge.is_none() {
                        rep.problem(format!(
                            "W4 fanotify round {round} {mon:?}: {}",
                            r.diff.join("; ")
                        ));
                    }
                    rep.add(&w4, m_conv, side, m);
                }
                Err(e) => rep.problem(format!("W4 fanotify round {round} {mon:?}: {e}")),
            }
        }
        set_monitor(None);
    }
    Ok(())
}
