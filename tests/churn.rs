//! Random churn: a seeded sequence of file and directory operations (create, modify, delete,
//! move, symlinks, moves onto existing files, whole subtrees moved and removed) applied to a
//! live source as fast as possible; the target must end up identical (names, types, contents,
//! symlink targets). Run for default.rsyncssh (SPEC §10) over the private sshd and for
//! default.direct (SPEC §11), each with both monitors. Seeds are fixed, so a failure
//! reproduces; the seed and the operation counts are printed. `LSYNCD_CHURN_SEED=N` runs
//! another seed (to stress a change with many).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::sshd::{Sshd, HOST};
use crate::util::{lua_str, os, rsync_path, tree_diff, wait_until, Daemon, Rng, TestDir};

/// Operations per churn run (issue 4), applied in rounds: each round's operations go in as
/// fast as possible, then the target must converge before the next round starts. A round
/// starts with `LEADING_MOVES` moves of entries the target already has: a move that touches
/// a path with a pending event is split into Delete + Create (SPEC §4.3), so in a plain
/// random burst hardly any move would reach the target as a move; leading ones do, and the
/// random operations queued behind them stack on them instead of splitting them.
const OPERATIONS: usize = 2000;
const ROUNDS: usize = 5;
const LEADING_MOVES: usize = 10;

/// Name parts mixed into generated names, so quoting is churned too.
const FLAVOURS: &[&[u8]] = &[b"", b"", b"", b" sp", b"'q", b"\"dq", b"$x", b"-", b"\xe9"];

/// The source tree's model: relative paths (no leading `/`; `""` is the root).
pub(crate) struct Churn {
    root: PathBuf,
    rng: Rng,
    dirs: Vec<Vec<u8>>,
    files: Vec<Vec<u8>>,
    links: Vec<Vec<u8>>,
    serial: u64,
    counts: [usize; 9],
}

const OP_NAMES: [&str; 9] = [
    "create",
    "modify",
    "delete",
    "mkdir",
    "rmdir",
    "move-file",
    "move-dir",
    "symlink",
    "move-over",
];

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

fn under(path: &[u8], dir: &[u8]) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

impl Churn {
    pub(crate) fn new(root: &Path, seed: u64) -> Churn {
        Churn {
            root: root.to_owned(),
            rng: Rng::new(seed | 1),
            dirs: vec![Vec::new()],
            files: Vec::new(),
            links: Vec::new(),
            serial: 0,
            counts: [0; 9],
        }
    }

    fn abs(&self, rel: &[u8]) -> PathBuf {
        self.root.join(os(rel))
    }

    fn fresh_name(&mut self, kind: &str) -> Vec<u8> {
        self.serial += 1;
        let flavour = *self.rng.pick(FLAVOURS).expect("flavours");
        [format!("{kind}{}", self.serial).as_bytes(), flavour].concat()
    }

    fn content(&mut self) -> Vec<u8> {
        let len = self.rng.below(3000);
        let seed = self.rng.next();
        (0..len)
            .map(|i| (seed.rotate_left((i % 64) as u32) as u8) ^ (i as u8))
            .collect()
    }

    /// A directory to put something new into, not deeper than four levels.
    fn parent(&mut self) -> Vec<u8> {
        loop {
            let d = self
                .rng
                .pick(&self.dirs)
                .expect("root is always there")
                .clone();
            if d.iter().filter(|&&b| b == b'/').count() < 3 {
                return d;
            }
        }
    }

    fn create_file(&mut self) {
        let parent = self.parent();
        let name = self.fresh_name("f");
        let rel = join(&parent, &name);
        let data = self.content();
        fs::write(self.abs(&rel), data).expect("create file");
        self.files.push(rel);
        self.counts[0] += 1;
    }

    /// Creates `n` entries (files and directories) without counting them as churn.
    pub(crate) fn populate(&mut self, n: usize) {
        for i in 0..n {
            if i % 4 == 0 {
                self.mkdir();
            } else {
                self.create_file();
            }
        }
        self.counts = [0; 9];
    }

    fn mkdir(&mut self) {
        let parent = self.parent();
        let name = self.fresh_name("d");
        let rel = join(&parent, &name);
        fs::create_dir(self.abs(&rel)).expect("mkdir");
        self.dirs.push(rel);
        self.counts[3] += 1;
    }

    /// Forgets every entry at or below `dir`.
    fn forget_tree(&mut self, dir: &[u8]) {
        self.dirs.retain(|d| d != dir && !under(d, dir));
        self.files.retain(|f| !under(f, dir));
        self.links.retain(|f| !under(f, dir));
    }

    fn move_file(&mut self) {
        if self.files.is_empty() {
            return self.create_file();
        }
        let i = self.rng.below(self.files.len());
        let parent = self.parent();
        let name = self.fresh_name("m");
        let to = join(&parent, &name);
        fs::rename(self.abs(&self.files[i]), self.abs(&to)).expect("move file");
        self.files[i] = to;
        self.counts[5] += 1;
    }

    fn move_dir(&mut self) {
        if self.dirs.len() < 2 {
            return self.mkdir();
        }
        let from = self
            .rng
            .pick(&self.dirs[1..])
            .expect("non-root dir")
            .clone();
        let parent = self.parent();
        if parent == from || under(&parent, &from) {
            return self.move_file();
        }
        let name = self.fresh_name("n");
        let to = join(&parent, &name);
        fs::rename(self.abs(&from), self.abs(&to)).expect("move dir");
        let rebase = |p: &mut Vec<u8>| {
            if *p == from || under(p, &from) {
                *p = [to.as_slice(), &p[from.len()..]].concat();
            }
        };
        self.dirs.iter_mut().for_each(rebase);
        self.files.iter_mut().for_each(rebase);
        self.links.iter_mut().for_each(rebase);
        self.counts[6] += 1;
    }

    fn one(&mut self) {
        match self.rng.below(100) {
            0..=21 => self.create_file(),
            22..=41 => {
                let Some(f) = self.rng.pick(&self.files).cloned() else {
                    return self.create_file();
                };
                let data = self.content();
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .append(self.rng.below(2) == 0)
                    .truncate(false)
                    .open(self.abs(&f))
                    .expect("open for modify");
                file.write_all(&data).expect("modify");
                self.counts[1] += 1;
            }
            42..=50 => {
                if self.files.is_empty() {
                    return self.create_file();
                }
                let i = self.rng.below(self.files.len());
                let f = self.files.swap_remove(i);
                fs::remove_file(self.abs(&f)).expect("delete file");
                self.counts[2] += 1;
            }
            51..=60 => self.mkdir(),
            61..=64 => {
                if self.dirs.len() < 4 {
                    return self.mkdir();
                }
                let d = self
                    .rng
                    .pick(&self.dirs[1..])
                    .expect("non-root dir")
                    .clone();
                fs::remove_dir_all(self.abs(&d)).expect("remove dir");
                self.forget_tree(&d);
                self.counts[4] += 1;
            }
            65..=77 => self.move_file(),
            78..=86 => self.move_dir(),
            87..=93 => {
                let parent = self.parent();
                let name = self.fresh_name("l");
                let rel = join(&parent, &name);
                let target: Vec<u8> = match self.rng.below(4) {
                    0 => b"../nowhere".to_vec(),
                    1 => self.rng.pick(&self.files).cloned().unwrap_or_default(),
                    2 => b"/etc".to_vec(),
                    _ => b".".to_vec(),
                };
                let target = if target.is_empty() {
                    b"x".to_vec()
                } else {
                    target
                };
                std::os::unix::fs::symlink(os(&target), self.abs(&rel)).expect("symlink");
                self.links.push(rel);
                self.counts[7] += 1;
            }
            _ => {
                // Move a file onto another existing file (rename replaces it).
                if self.files.len() < 2 {
                    return self.create_file();
                }
                let i = self.rng.below(self.files.len());
                let mut j = self.rng.below(self.files.len());
                if i == j {
                    j = (j + 1) % self.files.len();
                }
                fs::rename(self.abs(&self.files[i]), self.abs(&self.files[j]))
                    .expect("move over file");
                self.files.swap_remove(i);
                self.counts[8] += 1;
            }
        }
    }

    /// Applies `n` operations, as fast as possible: `moves` moves (two of directories, the
    /// rest of files) first, then random operations.
    pub(crate) fn run(&mut self, n: usize, moves: usize) {
        for i in 0..n {
            if i < moves {
                // Moves of two directories' subtrees would often overlap and be split
                // (SPEC §4.3); file moves never overlap each other.
                if i < 2 {
                    self.move_dir();
                } else {
                    self.move_file();
                }
            } else {
                self.one();
            }
        }
    }

    pub(crate) fn summary(&self) -> String {
        OP_NAMES
            .iter()
            .zip(self.counts)
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Polls until both trees are equal; fails with the differences, the churn summary and the
/// daemon log after `timeout`.
fn wait_converged(d: &mut Daemon, c: &Churn, a: &Path, b: &Path, timeout: Duration) {
    let ok = wait_until(timeout, || {
        tree_diff(a, b).is_some_and(|x| x.is_empty()) || d.try_exit().is_some()
    });
    let diff = tree_diff(a, b).unwrap_or_default();
    if !ok || !diff.is_empty() {
        panic!(
            "trees did not converge within {timeout:?} (daemon exit: {:?}); churn: {}\n{}\n\
             --- log ---\n{}",
            d.status(),
            c.summary(),
            diff.join("\n"),
            d.log()
        );
    }
}

/// The churn's seed: `fixed`, or `$LSYNCD_CHURN_SEED` (decimal) to try others; printed.
fn seed(fixed: u64) -> u64 {
    let seed = std::env::var("LSYNCD_CHURN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(fixed);
    eprintln!("churn seed {seed:#x}");
    seed
}

/// True while process `pid` has child processes (running, or exited and not yet reaped).
fn has_children(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks
        .flatten()
        .any(|t| fs::read_to_string(t.path().join("children")).is_ok_and(|c| !c.trim().is_empty()))
}

/// The churn: `ROUNDS` rounds of operations. Each round ends with a marker file written
/// last; the round is over when the marker has arrived, the daemon has no process left (so
/// it has acted on the whole round and collected the results, rather than merely reached an
/// equal tree while the last transfer is still running) and the trees are equal.
fn churn_and_converge(d: &mut Daemon, c: &mut Churn, src: &Path, dst: &Path, what: &str) {
    let start = Instant::now();
    for round in 0..ROUNDS {
        c.run(OPERATIONS / ROUNDS, LEADING_MOVES);
        let marker = format!("zz-marker-{round}");
        fs::write(src.join(&marker), "marker\n").expect("write marker");
        d.wait_for(&format!("{marker} mirrored"), || dst.join(&marker).exists());
        let pid = d.pid();
        d.wait_for("the daemon without child processes", || !has_children(pid));
        wait_converged(d, c, src, dst, Duration::from_secs(60));
    }
    let log = d.log();
    // Directories removed between their listing and their watch are normal churn: no warning.
    assert!(!log.contains("Warn: Cannot watch"), "{log}");
    eprintln!(
        "{what} churn ({}) converged after {:?}; processes: {} ssh, {} rsync, {} in all",
        c.summary(),
        start.elapsed(),
        log.matches("Exec: ssh ").count(),
        log.matches("Exec: rsync ").count(),
        log.matches("Exec: ").count()
    );
}

both_monitors! {
    fn churn_of_2000_random_operations_converges_with_rsyncssh(mon) {
        rsync_path();
        let dir = TestDir::with_monitor(mon);
        let sshd = Sshd::started_in(&dir);
        let mut c = Churn::new(&dir.src(), seed(0x5eed_55aa_0001));
        c.populate(40);
        let cfg = dir.config(
            "churn.lua",
            &format!(
                "sync{{ default.rsyncssh, source = \"src\", host = \"{HOST}\", targetdir = {}, \
                 delay = 1, {} }}\n",
                lua_str(dir.path_str("dst")),
                sshd.lua_ssh()
            ),
        );
        let mut d = Daemon::config(&dir, &cfg, &["-log", "Exec", "-log", "Delay", "-log", "Fanotify"]);
        d.wait_log("Startup of \"");
        churn_and_converge(&mut d, &mut c, &dir.src(), &dir.dst(), "rsyncssh");
        // Most moves meet a pending event of the same round and are split (SPEC §4.3); with
        // inotify the leading ones of each round mostly reach the target as moves. fanotify
        // resolves a record's directories when it reads it, so under churn a move into or
        // out of a directory removed moments later reads as a Create or Delete.
        let moved = d.log().matches("Finished Move ").count();
        if mon == Mon::Inotify {
            assert!(
                moved >= ROUNDS,
                "only {moved} moves were performed remotely\n{}",
                d.log()
            );
        }
        // A move with nothing else going on is performed remotely by either monitor.
        c.move_file();
        d.wait_log_count("Finished Move ", moved + 1);
        wait_converged(&mut d, &c, &dir.src(), &dir.dst(), Duration::from_secs(60));
    }
}

both_monitors! {
    fn churn_of_2000_random_operations_converges_with_direct(mon) {
        rsync_path();
        let dir = TestDir::with_monitor(mon);
        let mut c = Churn::new(&dir.src(), seed(0x5eed_d1ec_0002));
        c.populate(40);
        let cfg = dir.config(
            "churn.lua",
            "sync{ default.direct, source = \"src\", target = \"dst\", delay = 1 }\n",
        );
        let mut d = Daemon::config(&dir, &cfg, &["-log", "Exec"]);
        d.wait_log("Startup of \"");
        churn_and_converge(&mut d, &mut c, &dir.src(), &dir.dst(), "direct");
        // With fanotify, a file move whose names changed in the same read is followed by a
        // transfer of the new name, which splits the move; only inotify always shows an mv.
        if mon == Mon::Inotify {
            assert!(d.log().contains("Exec: sh [-c] [mv -- "), "{}", d.log());
        }
    }
}
