//! Faults while running (issue "never die, never lose"): a transfer killed by a signal, a full
//! or read-only target, a sync whose target breaks next to one that keeps working, the last
//! sync failing, sshd down for several backoff steps, fork failing with EAGAIN. Every test uses
//! the real fault (real rsync, real mounts in a private mount namespace, real sshd, a real
//! process limit) and waits by polling.
//!
//! Tests that mount need root and `unshare`; they run the daemon as
//! `unshare -m sh -c 'mount ...; exec lsyncd ...'` and look at its target through
//! `/proc/PID/root`, so nothing is mounted outside the test's own namespace.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::sshd::{Sshd, HOST};
use crate::util::{
    is_root, lua_str, rsync_path, send_signal, tree_diff, wait_until, Daemon, TestDir, TIMEOUT,
};

/// The direct children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// User + system CPU time of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields after the command: state is [0], utime [11], stime [12]
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// A daemon started in a private mount namespace after `setup` (shell commands) ran there.
struct NsDaemon {
    child: Child,
    log: PathBuf,
}

impl NsDaemon {
    fn start(dir: &TestDir, setup: &str, config: &Path) -> NsDaemon {
        let log = dir.path("ns-lsyncd.log");
        let out = fs::File::create(&log).expect("log");
        let err = out.try_clone().expect("dup log");
        let script = format!("set -e; {setup}; exec \"$0\" -nodaemon \"$1\"",);
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .arg(crate::util::lsyncd_bin())
            .arg(config)
            .current_dir(dir.root())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("unshare");
        NsDaemon { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// `path` as the daemon sees it (through its mount namespace).
    fn seen(&self, path: &Path) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.pid()))
            .join(path.strip_prefix("/").unwrap_or(path))
    }

    /// Runs a shell command in the daemon's mount namespace.
    fn nsenter(&self, cmd: &str) {
        let st = Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-m", "sh", "-c", cmd])
            .status()
            .expect("nsenter");
        assert!(st.success(), "{cmd} failed\n{}", self.log());
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    fn wait_log(&mut self, needle: &str) {
        let ok = wait_until(TIMEOUT, || self.log().contains(needle) || !self.alive());
        assert!(
            ok && self.log().contains(needle),
            "no {needle:?} in\n{}",
            self.log()
        );
    }

    fn wait_trees_equal(&mut self, a: &Path, b: &Path) {
        let b = self.seen(b);
        let ok = wait_until(TIMEOUT, || {
            tree_diff(a, &b).is_some_and(|d| d.is_empty()) || !self.alive()
        });
        assert!(
            ok && self.alive(),
            "{a:?} and {b:?} differ: {:?}\n{}",
            tree_diff(a, &b),
            self.log()
        );
    }
}

impl Drop for NsDaemon {
    fn drop(&mut self) {
        send_signal(self.child.id(), "TERM");
        if !wait_until(Duration::from_secs(5), || !self.alive()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- lsyncd log ---\n{}", self.log());
        }
    }
}

fn rsync_config(dir: &TestDir, extra_settings: &str, extra_sync: &str) -> PathBuf {
    dir.config(
        "faults.lua",
        &format!(
            "settings {{ maxBackoff = 2, {extra_settings} }}\n\
             sync {{ default.rsync, source = {}, target = {}, delay = 0, {extra_sync} }}\n",
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
        ),
    )
}

#[test]
fn killed_transfer_is_retried_and_the_target_converges() {
    rsync_path();
    let dir = TestDir::new();
    dir.mkdir("src");
    let cfg = rsync_config(&dir, "", "rsync = { _extra = { '--bwlimit=1000' } }");
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_startup();
    dir.write("src/big", vec![7u8; 4_000_000]);
    let pid = d.pid();
    let mut rsync = Vec::new();
    d.wait_for("a running rsync", || {
        rsync = children(pid);
        !rsync.is_empty()
    });
    for p in &rsync {
        send_signal(*p, "KILL");
    }
    d.wait_log("was killed by SIGKILL");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_log("recovered after 1 attempts");
    assert!(d.try_exit().is_none(), "{}", d.log());
    assert!(!d.log().contains("Unknown exitcode"), "{}", d.log());
}

#[test]
fn a_broken_target_fails_its_sync_only_and_recovers() {
    rsync_path();
    let dir = TestDir::new();
    dir.mkdir("src");
    dir.mkdir("dst");
    dir.mkdir("dst2");
    let status = dir.path("status");
    // Sync "broken" knows only exit code 0: anything else is fatal for it.
    let cfg = dir.config(
        "two.lua",
        &format!(
            "settings {{ maxBackoff = 2, statusFile = {}, statusInterval = 0 }}\n\
             sync {{ default.rsync, source = 'src', target = 'dst', delay = 0,\n\
                     exitcodes = {{ [0] = 'ok' }} }}\n\
             sync {{ default.rsync, source = 'src', target = 'dst2', delay = 0 }}\n",
            lua_str(status.to_str().expect("utf8"))
        ),
    );
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_log_count("finished.", 2);
    // The target of "broken" becomes a file: rsync exits 3, unknown to its table.
    fs::remove_dir(dir.dst()).expect("rmdir dst");
    dir.write("dst", "not a directory\n");
    dir.write("src/one", "1\n");
    d.wait_log("Sync1: failed: rsync exited with 3, a fatal code");
    d.wait_for("healthy to sync", || dir.exists("dst2/one"));
    dir.write("src/two", "2\n");
    d.wait_for("healthy to go on", || dir.exists("dst2/two"));
    d.wait_for("the status file to show the failure", || {
        fs::read_to_string(&status).is_ok_and(|s| s.contains("State: failed"))
    });
    assert!(d.try_exit().is_none(), "{}", d.log());
    // Fixed: the failed sync recovers at its next attempt and catches up.
    fs::remove_file(dir.dst()).expect("rm dst");
    dir.mkdir("dst");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_log("Sync1 recovered after");
    d.wait_for("the status file to show recovery", || {
        fs::read_to_string(&status).is_ok_and(|s| !s.contains("State:"))
    });
    let log = d.log();
    assert!(
        !log.contains("Sync2: failed") && !log.contains("Sync2: transfer failed"),
        "{log}"
    );
}

#[test]
fn the_last_sync_failing_ends_the_daemon_with_255_and_no_pidfile() {
    rsync_path();
    let dir = TestDir::new();
    dir.mkdir("src");
    let pidfile = dir.path("lsyncd.pid");
    let cfg = dir.config(
        "last.lua",
        &format!(
            "settings {{ pidfile = {} }}\n\
             sync {{ default.rsync, source = 'src', target = 'dst', delay = 0,\n\
                     exitcodes = {{ [0] = 'ok' }} }}\n",
            lua_str(pidfile.to_str().expect("utf8"))
        ),
    );
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_startup();
    assert!(pidfile.exists());
    fs::remove_dir(dir.dst()).expect("rmdir dst");
    dir.write("dst", "not a directory\n");
    dir.write("src/one", "1\n");
    assert_eq!(d.wait_exit(TIMEOUT), Some(255), "{}", d.log());
    assert!(d.log().contains("Every sync has failed"), "{}", d.log());
    assert!(!pidfile.exists(), "pidfile left behind");
    assert!(children(d.pid()).is_empty());
}

#[test]
fn read_only_target_for_a_few_seconds_converges_while_running() {
    if !is_root() {
        eprintln!("needs root for mount namespaces: not run");
        return;
    }
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/first", "1\n");
    dir.mkdir("dst");
    let cfg = rsync_config(&dir, "", "");
    let dst = fs::canonicalize(dir.dst()).expect("dst");
    let setup = format!("mount --bind {0} {0}", dst.display());
    let mut d = NsDaemon::start(&dir, &setup, &cfg);
    d.wait_trees_equal(&dir.src(), &dst);
    d.nsenter(&format!("mount -o remount,bind,ro {}", dst.display()));
    dir.write("src/while-ro", "written while the target was read-only\n");
    d.wait_log("exited with 23 (partial transfer)");
    assert!(!d.seen(&dst).join("while-ro").exists());
    d.nsenter(&format!("mount -o remount,bind,rw {}", dst.display()));
    d.wait_trees_equal(&dir.src(), &dst);
    d.wait_log("recovered after");
}

#[test]
fn full_tmpfs_target_converges_once_space_is_freed() {
    if !is_root() {
        eprintln!("needs root for mount namespaces: not run");
        return;
    }
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/small", "s\n");
    dir.mkdir("dst");
    let cfg = rsync_config(&dir, "", "");
    let dst = fs::canonicalize(dir.dst()).expect("dst");
    let setup = format!("mount -t tmpfs -o size=512k tmpfs {}", dst.display());
    let mut d = NsDaemon::start(&dir, &setup, &cfg);
    d.wait_trees_equal(&dir.src(), &dst);
    dir.write("src/big", vec![1u8; 2_000_000]);
    d.wait_log("transfer failed: rsync exited with");
    assert!(d.alive());
    d.nsenter(&format!("mount -o remount,size=8m {}", dst.display()));
    d.wait_trees_equal(&dir.src(), &dst);
    d.wait_log("recovered after");
}

#[test]
fn sshd_down_for_several_backoff_steps_bounded_attempts_then_convergence() {
    rsync_path();
    let mut sshd = Sshd::started();
    let dir = TestDir::new();
    dir.write("src/f", "f\n");
    let cfg = dir.config(
        "ssh.lua",
        &format!(
            "settings {{ maxBackoff = 4 }}\n\
             sync {{ default.rsyncssh, source = 'src', host = '{HOST}', targetdir = {},\n\
                     delay = 0, {} }}\n",
            lua_str(dir.path_str("dst")),
            sshd.lua_ssh()
        ),
    );
    let mut d = Daemon::config(&dir, &cfg, &["-log", "Exec"]);
    d.wait_log("finished: 0");
    sshd.stop();
    let down = Instant::now();
    // Changes keep coming during the outage.
    let mut n = 0;
    while down.elapsed() < Duration::from_secs(12) {
        dir.write(format!("src/during-{n}"), format!("{n}\n"));
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = d.log();
    let attempts = log.matches("Exec: rsync").count() - 1;
    let failures = log.matches(": transfer failed: ").count();
    // 12 s with waits of 1-1.25, 2-2.5, 4, 4, ... s: at most 6 attempts (plus the startup).
    assert!(
        (3..=7).contains(&failures),
        "{failures} failure lines\n{log}"
    );
    assert!((3..=7).contains(&attempts), "{attempts} execs\n{log}");
    sshd.start();
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_log("recovered after");
    eprintln!("sshd outage of 12 s: {failures} failure lines, {attempts} execs, {n} changes");
}

/// Processes of uid `nobody`.
fn nobody_processes() -> usize {
    let out = Command::new("pgrep")
        .args(["-c", "-u", "nobody"])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A user without privileges whose process limit is full: fork fails with EAGAIN until
/// other processes of that user end.
#[test]
fn fork_eagain_backs_off_then_converges_when_processes_are_freed() {
    if !is_root() {
        eprintln!("needs root to switch users: not run");
        return;
    }
    rsync_path();
    let dir = TestDir::new();
    dir.mkdir("src");
    dir.mkdir("dst");
    let cfg = rsync_config(&dir, "", "");
    dir.give_to_nobody();
    let log_path = dir.path("eagain.log");
    let out = fs::File::create(&log_path).expect("log");
    let err = out.try_clone().expect("dup");
    let as_nobody = |cmd: &mut Command| {
        cmd.arg("setpriv").args(crate::util::SETPRIV_NOBODY);
    };
    // Room for the daemon and an rsync pair (sender and receiver) of uid nobody.
    let limit = nobody_processes() + 4;
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nproc={limit}:{limit}"));
    as_nobody(&mut cmd);
    let mut child = cmd
        .arg(crate::util::lsyncd_bin())
        .arg("-nodaemon")
        .arg(&cfg)
        .current_dir(dir.root())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start");
    let pid = child.id();
    let log = || String::from_utf8_lossy(&fs::read(&log_path).unwrap_or_default()).into_owned();
    assert!(
        wait_until(TIMEOUT, || log().contains("finished.")),
        "{}",
        log()
    );
    // Fill the limit with sleepers of the same user.
    let mut sleepers = Vec::new();
    while nobody_processes() < limit {
        let mut s = Command::new("env");
        as_nobody(&mut s);
        sleepers.push(s.args(["sleep", "600"]).spawn().expect("sleeper"));
        assert!(wait_until(TIMEOUT, || fs::metadata(format!(
            "/proc/{}",
            sleepers.last().map_or(0, |c| c.id())
        ))
        .is_ok()));
    }
    dir.write("src/f", "f\n");
    assert!(
        wait_until(TIMEOUT, || log().contains("cannot spawn")),
        "{}",
        log()
    );
    let t0 = Instant::now();
    let cpu0 = cpu_ticks(pid);
    let lines0 = log().matches("cannot spawn").count();
    std::thread::sleep(Duration::from_secs(6));
    let cpu = cpu_ticks(pid) - cpu0;
    let lines = log().matches("cannot spawn").count() - lines0 + 1;
    let elapsed = t0.elapsed().as_secs_f64();
    for mut s in sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
    // No busy loop: well under a tenth of a core, and a handful of lines.
    assert!(
        (cpu as f64) < elapsed * 100.0 * 0.1,
        "{cpu} ticks in {elapsed} s\n{}",
        log()
    );
    assert!(lines <= 6, "{lines} lines\n{}", log());
    let ok = wait_until(TIMEOUT, || {
        tree_diff(&dir.src(), &dir.dst()).is_some_and(|d| d.is_empty())
    });
    send_signal(pid, "TERM");
    let _ = child.wait();
    assert!(ok, "not converged\n{}", log());
    assert!(log().contains("recovered after"), "{}", log());
    eprintln!("fork EAGAIN for 6 s: {lines} log lines, {cpu} CPU ticks");
}

#[test]
fn failing_tunnel_with_parallel_2_restarts_at_most_a_few_times_per_retry_delay() {
    rsync_path();
    let dir = TestDir::new();
    dir.mkdir("src");
    let starts = dir.path("starts");
    let cfg = dir.config(
        "tunnel.lua",
        &format!(
            "local t = tunnel {{ command = {{ 'sh', '-c', 'echo x >> {}; exit 1' }},\n\
                                  parallel = 2, retryDelay = 2, readyDelay = 1 }}\n\
             sync {{ default.rsync, source = 'src', target = 'dst', tunnel = t, delay = 0 }}\n",
            starts.display()
        ),
    );
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    let count = || {
        fs::read_to_string(&starts)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    d.wait_for("the first tunnel starts", || count() >= 2);
    let t0 = Instant::now();
    let c0 = count();
    std::thread::sleep(Duration::from_secs(6));
    let n = count() - c0;
    let secs = t0.elapsed().as_secs_f64();
    // Two processes per retryDelay of 2 s: about 6 in 6 s.
    assert!(n <= 10, "{n} tunnel starts in {secs:.1} s\n{}", d.log());
    assert!(n >= 2, "the tunnel is not retried: {n} starts\n{}", d.log());
    assert!(d.try_exit().is_none(), "{}", d.log());
    eprintln!("failing tunnel, parallel = 2, retryDelay = 2: {n} starts in {secs:.1} s");
}

/// Peak resident memory of `pid` in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn two_hundred_thousand_changes_during_an_outage_stay_bounded_then_converge() {
    rsync_path();
    let dir = TestDir::new();
    dir.mkdir("src");
    dir.mkdir("dst");
    // The target's parent is missing while "down": rsync cannot create dst/down/inner.
    let cfg = dir.config(
        "pending.lua",
        &format!(
            "settings {{ maxBackoff = 2, maxPending = 1000 }}\n\
             sync {{ default.rsync, source = 'src', target = {}, delay = 0 }}\n",
            lua_str(dir.path_str("dst/down/inner"))
        ),
    );
    for d in 0..20 {
        dir.mkdir(format!("src/d{d}"));
    }
    let mut d = Daemon::config(&dir, &cfg, &["-insist"]);
    d.wait_log("transfer failed");
    let before = peak_rss_kib(d.pid());
    // 200 000 changes: forty writes to each of 5 000 files.
    let t0 = Instant::now();
    for round in 0..40 {
        for i in 0..5_000 {
            dir.write(format!("src/d{}/f{i}", i % 20), format!("{round}"));
        }
    }
    let written = t0.elapsed();
    d.wait_log("collapsed into one full transfer");
    // Let the daemon read everything still queued in the kernel.
    std::thread::sleep(Duration::from_secs(2));
    let peak = peak_rss_kib(d.pid());
    dir.mkdir("dst/down");
    let converged = wait_until(Duration::from_secs(180), || {
        tree_diff(&dir.src(), &dir.path("dst/down/inner")).is_some_and(|d| d.is_empty())
            || d.try_exit().is_some()
    });
    assert!(converged, "no convergence\n{}", d.log());
    assert!(d.try_exit().is_none(), "{}", d.log());
    eprintln!("200 000 changes (5 000 files, written in {written:?}) with maxPending 1000: peak RSS {peak} KiB (before: {before} KiB)");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}
