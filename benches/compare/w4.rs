//! W4: churn. Seeded random creates, modifies, deletes and renames of files and directories
//! with real rsync, delay=1; time from the last operation until the trees compare equal.
//! Owns: this workload's rows and runs. Must not touch: other workloads' rows.

use crate::kit::rng::Rng;
use crate::kit::tree::{tree_diff_max, trees_equal};
use crate::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// The source tree as the churn generator knows it (paths relative to the source, "" = root).
pub(crate) struct Churn {
    rng: Rng,
    pub(crate) dirs: Vec<String>,
    pub(crate) files: Vec<String>,
    pub(crate) next: u64,
}

pub(crate) fn under(p: &str, d: &str) -> bool {
    p == d || (p.len() > d.len() && p.starts_with(d) && p.as_bytes()[d.len()] == b'/')
}

pub(crate) fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl Churn {
    fn new(seed: u64) -> Churn {
        Churn {
            rng: Rng::new(seed),
            dirs: vec![String::new()],
            files: vec![],
            next: 0,
        }
    }

    fn fresh(&mut self, prefix: char) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn content(&mut self) -> Vec<u8> {
        let n = 1 + self.rng.below(300);
        let v = self.rng.next();
        (0..n)
            .map(|i| b'a' + ((v >> (i % 60)) as u8 % 26))
            .collect()
    }

    fn create_file(&mut self, src: &Path) -> Res<String> {
        let d = self.dirs[self.rng.below(self.dirs.len())].clone();
        let n = self.fresh('f');
        let rel = join_rel(&d, &n);
        let c = self.content();
        write_file(&src.join(&rel), &c)?;
        self.files.push(rel.clone());
        Ok(format!("create {rel}"))
    }

    fn mkdir(&mut self, src: &Path) -> Res<String> {
        let d = self.dirs[self.rng.below(self.dirs.len())].clone();
        let n = self.fresh('d');
        let rel = join_rel(&d, &n);
        mkdir(&src.join(&rel))?;
        self.dirs.push(rel.clone());
        Ok(format!("mkdir {rel}"))
    }

    /// One random operation; returns its description.
    fn op(&mut self, src: &Path) -> Res<String> {
        let k = self.rng.below(100);
        let io = |e: std::io::Error, what: &str| format!("{what}: {e}");
        if self.files.is_empty() || k < 25 {
            return self.create_file(src);
        }
        if k < 45 {
            let i = self.rng.below(self.files.len());
            let rel = self.files[i].clone();
            let c = self.content();
            write_file(&src.join(&rel), &c)?;
            return Ok(format!("modify {rel}"));
        }
        if k < 58 {
            let i = self.rng.below(self.files.len());
            let rel = self.files.swap_remove(i);
            fs::remove_file(src.join(&rel)).map_err(|e| io(e, &rel))?;
            return Ok(format!("delete {rel}"));
        }
        if k < 73 {
            let i = self.rng.below(self.files.len());
            let d = self.dirs[self.rng.below(self.dirs.len())].clone();
            let n = self.fresh('f');
            let to = join_rel(&d, &n);
            let from = std::mem::replace(&mut self.files[i], to.clone());
            fs::rename(src.join(&from), src.join(&to)).map_err(|e| io(e, &from))?;
            return Ok(format!("rename {from} {to}"));
        }
        if k < 83 || self.dirs.len() < 2 {
            return self.mkdir(src);
        }
        // A directory other than the root.
        let dir = self.dirs[1 + self.rng.below(self.dirs.len() - 1)].clone();
        if k < 95 {
            let parents: Vec<usize> = (0..self.dirs.len())
                .filter(|&j| !under(&self.dirs[j], &dir))
                .collect();
            let p = self.dirs[parents[self.rng.below(parents.len())]].clone();
            let n = self.fresh('d');
            let to = join_rel(&p, &n);
            fs::rename(src.join(&dir), src.join(&to)).map_err(|e| io(e, &dir))?;
            for x in self.dirs.iter_mut().chain(self.files.iter_mut()) {
                if under(x, &dir) {
                    *x = format!("{to}{}", &x[dir.len()..]);
                }
            }
            return Ok(format!("rename-dir {dir} {to}"));
        }
        fs::remove_dir_all(src.join(&dir)).map_err(|e| io(e, &dir))?;
        self.dirs.retain(|x| !under(x, &dir));
        self.files.retain(|x| !under(x, &dir));
        Ok(format!("rmdir-r {dir}"))
    }
}

pub(crate) struct W4Res {
    pub(crate) converge: Option<f64>,
    pub(crate) cpu: f64,
    pub(crate) ops_wall: f64,
    pub(crate) diff: Vec<String>,
}

pub(crate) fn w4_daemon(cx: &Ctx, side: Side, round: usize) -> Res<W4Res> {
    let run = cx.tmp("w4")?;
    let src = run.path().join("src");
    let dst = run.path().join("dst");
    mkdir(&src)?;
    mkdir(&dst)?;
    // The initial tree and the operations are the same for both sides of a round.
    let mut ch = Churn::new(cx.o.seed.wrapping_add(round as u64 * 1000));
    for _ in 0..20 {
        ch.mkdir(&src)?;
    }
    for _ in 0..400 {
        ch.create_file(&src)?;
    }
    let m = marker(run.path(), true)?;
    let conf = write_config(run.path(), &src, &dst, &m, "  delay = 1,\n")?;
    let mut d = Daemon::start(cx.bin(side), &conf, &run.path().join("daemon.log"))?;
    let tag = format!("w4-{}-r{round}", name(side));
    let r = (|| {
        wait_first_call(&mut d, &m, Duration::from_secs(60))?;
        let t = Instant::now();
        while !trees_equal(&src, &dst) {
            d.check_alive()?;
            if t.elapsed() > Duration::from_secs(60) {
                return Err("startup transfer did not complete in 60 s".into());
            }
            sleep_ms(50);
        }
        wait_quiescent(
            &mut d,
            Some(&m),
            Duration::from_secs(1),
            Duration::from_millis(500),
            Duration::from_secs(60),
        )?;
        let cpu0 = d.cpu();
        let mut log = String::new();
        let t_ops = Instant::now();
        for _ in 0..cx.o.sizes.w4_ops {
            let s = ch.op(&src)?;
            log.push_str(&s);
            log.push('\n');
        }
        let last = Instant::now();
        let ops_wall = last.duration_since(t_ops).as_secs_f64();
        let mut converge = None;
        while last.elapsed() < cx.o.sizes.w4_timeout {
            d.check_alive()?;
            if trees_equal(&src, &dst) {
                converge = Some(last.elapsed().as_secs_f64());
                break;
            }
            sleep_ms(50);
        }
        let mut diff = vec![];
        if converge.is_some() {
            // Stays equal once the daemon has settled?
            wait_quiescent(
                &mut d,
                Some(&m),
                Duration::from_secs(3),
                Duration::from_secs(1),
                Duration::from_secs(60),
            )?;
            diff = tree_diff_max(&src, &dst, 10)
                .unwrap_or_else(|| vec!["trees changed while read".into()]);
            if !diff.is_empty() {
                converge = None;
                diff.insert(0, "equal once, then diverged:".into());
            }
        } else {
            diff = tree_diff_max(&src, &dst, 10)
                .unwrap_or_else(|| vec!["trees changed while read".into()]);
        }
        if converge.is_none() {
            let opsfile = cx.logs.join(format!("{tag}-ops.txt"));
            let _ = fs::write(&opsfile, &log);
            diff.push(format!("operations in {}", opsfile.display()));
        }
        Ok(W4Res {
            converge,
            cpu: d.cpu() - cpu0,
            ops_wall,
            diff,
        })
    })();
    if r.as_ref().map(|r| r.converge.is_none()).unwrap_or(true) {
        let kept = cx.keep_log(&d, &tag);
        eprintln!("bench: W4 {} log kept in {kept}", name(side));
    }
    d.stop();
    r
}

pub(crate) fn run(cx: &Ctx, rep: &mut Report) -> Res<()> {
    let wl = format!(
        "W4 churn, {} random ops, delay=1, real rsync",
        fmt_num(cx.o.sizes.w4_ops as f64, 0)
    );
    let mc = "last op → trees equal (s)";
    rep.row(
        &wl,
        mc,
        "",
        "converges every run; ≤ 1.0× upstream",
        Some(|o, u, _| o <= u),
        true,
        2,
    );
    rep.row(&wl, "daemon CPU (s)", "", "", None, true, 3);
    rep.row(&wl, "ops wall (s)", "", "", None, true, 3);
    for round in 0..cx.o.rounds {
        for side in [Side::Ours, Side::Upstream] {
            match w4_daemon(cx, side, round) {
                Ok(r) => {
                    eprintln!(
                        "bench: W4 r{round} {}: {}, cpu {:.3} s, ops {:.3} s",
                        name(side),
                        r.converge
                            .map(|c| format!("converged after {c:.2} s"))
                            .unwrap_or_else(|| "did not converge".into()),
                        r.cpu,
                        r.ops_wall
                    );
                    match r.converge {
                        Some(c) => rep.add(&wl, mc, side, M::V(c)),
                        None => {
                            rep.add(&wl, mc, side, M::Fail("did not converge".into()));
                            rep.problem(format!(
                                "W4 round {round} {}: did not converge within {} s: {}",
                                name(side),
                                cx.o.sizes.w4_timeout.as_secs(),
                                r.diff.join("; ")
                            ));
                        }
                    }
                    rep.add(&wl, "daemon CPU (s)", side, M::V(r.cpu));
                    rep.add(&wl, "ops wall (s)", side, M::V(r.ops_wall));
                }
                Err(e) => {
                    rep.add(&wl, mc, side, M::Fail("error".into()));
                    rep.problem(format!("W4 round {round} {}: {e}", name(side)));
                }
            }
        }
    }
    Ok(())
}
