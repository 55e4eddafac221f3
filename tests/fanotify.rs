//! The fanotify monitor (`-monitor fanotify`, `monitor = "auto"`): bursts no per-directory
//! watch could keep up with, renames of big trees across the source's border, deletions with
//! events pending, the drop of events outside the source, queue overflow, and the preflight
//! (CAP_SYS_ADMIN or CAP_DAC_READ_SEARCH dropped, overlayfs), a mount below the source, a nested
//! source moved by a rename above it, moves read after their directory's rename, and the
//! monitor named in the JSON status and metrics. fanotify runs happen on a private tmpfs in a private
//! mount namespace (`util::privfs`), so the filesystem-wide mark sees this test's events only.
//! Tests that make sense for both monitors run twice (`both_monitors!`).

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::util::{lsyncd_bin, rsync_path, send_signal, Daemon, Mon, TestDir, TIMEOUT};

/// `lsyncd -nodaemon -delay DELAY -rsync SRC DST` on `dir`, after the startup sync.
fn mirror(dir: &TestDir, delay: &str, extra: &[&str]) -> Daemon {
    rsync_path();
    let (src, dst) = (dir.path_str("src"), dir.path_str("dst"));
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["-delay", delay, "-rsync", &src, &dst]);
    let mut d = Daemon::start(dir, &args);
    d.wait_startup();
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d
}

/// Runs a shell snippet with `cwd` as working directory; fails the test if it fails.
fn sh(cwd: &Path, script: &str) {
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .status()
        .expect("run sh");
    assert!(st.success(), "{script} failed: {st:?}");
}

fn count_files(root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => n += 1,
                Err(_) => {}
            }
        }
    }
    n
}

both_monitors! {
    fn mkdir_p_and_write_5000_times_in_a_tight_loop_reaches_the_target(mon) {
        let dir = TestDir::with_monitor(mon);
        let mut d = mirror(&dir, "1", &[]);
        sh(
            &dir.src(),
            "i=0; while [ $i -lt 5000 ]; do mkdir -p d$i/b/c && echo x > d$i/b/c/f; \
             i=$((i+1)); done",
        );
        d.wait_for("5000 files in the target", || count_files(&dir.dst()) == 5000);
        d.wait_trees_equal(&dir.src(), &dir.dst());
    }
}

both_monitors! {
    fn renames_of_a_file_and_a_10000_entry_directory_inside_out_of_and_into_the_source(mon) {
        let dir = TestDir::with_monitor(mon);
        sh(
            dir.root(),
            "mkdir -p src/big outside/incoming && echo f > src/file && \
             i=0; while [ $i -lt 10000 ]; do : > src/big/e$i; : > outside/incoming/i$i; \
             i=$((i+1)); done",
        );
        let mut d = mirror(&dir, "1", &[]);
        // Events inside both trees first, so the monitors know them under their old paths.
        dir.write("src/big/before", "b\n");
        dir.write("outside/incoming/before", "b\n");
        d.wait_trees_equal(&dir.src(), &dir.dst());
        dir.rename("src/file", "src/file-renamed");
        dir.rename("src/big", "src/big-renamed");
        d.wait_trees_equal(&dir.src(), &dir.dst());
        assert_eq!(count_files(&dir.path("dst/big-renamed")), 10001);
        // A change inside the renamed tree arrives under its new path.
        dir.write("src/big-renamed/after", "a\n");
        d.wait_trees_equal(&dir.src(), &dir.dst());
        dir.rename("src/big-renamed", "outside/big-gone");
        dir.rename("src/file-renamed", "outside/file-gone");
        d.wait_trees_equal(&dir.src(), &dir.dst());
        assert!(!dir.exists("dst/big-renamed") && !dir.exists("dst/file-renamed"));
        dir.rename("outside/incoming", "src/incoming");
        dir.rename("outside/file-gone", "src/file-back");
        d.wait_trees_equal(&dir.src(), &dir.dst());
        assert_eq!(count_files(&dir.path("dst/incoming")), 10001);
        // The moved-in tree is watched: a change deep inside it arrives.
        dir.write("src/incoming/later", "later\n");
        d.wait_trees_equal(&dir.src(), &dir.dst());
    }
}

both_monitors! {
    fn rm_rf_of_a_deep_tree_with_events_pending_converges(mon) {
        let dir = TestDir::with_monitor(mon);
        let deep: String = (0..40).map(|i| format!("l{i}/")).collect();
        dir.write(format!("src/t/{deep}old"), "old\n");
        let mut d = mirror(&dir, "2", &[]);
        // Events for the whole depth are queued (delay 2), then the tree goes away at once.
        let mut p = String::from("src/t/");
        for i in 0..40 {
            p.push_str(&format!("l{i}/"));
            dir.write(format!("{p}new{i}"), "new\n");
        }
        dir.remove("src/t");
        dir.write("src/marker", "m\n");
        d.wait_for("marker mirrored", || dir.exists("dst/marker"));
        d.wait_trees_equal(&dir.src(), &dir.dst());
        assert!(!dir.exists("dst/t"));
    }
}

/// `max_queued_events` of the monitor's kernel queue.
fn queue_limit(mon: Mon) -> usize {
    let f = match mon {
        Mon::Inotify => "/proc/sys/fs/inotify/max_queued_events",
        Mon::Fanotify => "/proc/sys/fs/fanotify/max_queued_events",
    };
    fs::read_to_string(f)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384)
}

both_monitors! {
    fn a_queue_overflow_triggers_a_full_resync(mon) {
        let dir = TestDir::with_monitor(mon);
        let mut d = mirror(&dir, "1", &[]);
        // A stopped daemon reads nothing: the kernel queue fills and overflows.
        send_signal(d.pid(), "STOP");
        let limit = queue_limit(mon);
        assert!(limit <= 200_000, "max_queued_events is {limit}: too large to fill in a test");
        let n = limit + 2000;
        sh(
            &dir.src(),
            &format!("i=0; while [ $i -lt {n} ]; do : > f$i; i=$((i+1)); done"),
        );
        send_signal(d.pid(), "CONT");
        d.wait_log("--- OVERFLOW in event queue ---");
        d.wait_log_count("recursive full rsync", 2);
        d.wait_trees_equal(&dir.src(), &dir.dst());
        assert_eq!(count_files(&dir.dst()), n);
    }
}

#[test]
fn writes_outside_the_source_are_dropped_by_the_monitor() {
    let dir = TestDir::with_monitor(Mon::Fanotify);
    let status = dir.path_str("status.txt");
    let cfg = dir.config(
        "outside.lua",
        &format!(
            "settings{{ statusFile = \"{status}\", statusInterval = 0 }}\n\
             sync{{ default.rsync, source = \"src\", target = \"dst\", delay = 1 }}\n"
        ),
    );
    rsync_path();
    let mut d = Daemon::config(&dir, &cfg, &["-log", "Delay"]);
    d.wait_startup();
    sh(
        dir.root(),
        "mkdir outside && i=0; while [ $i -lt 200 ]; do echo x > outside/o$i; i=$((i+1)); done",
    );
    dir.write("src/marker", "m\n");
    d.wait_for("marker mirrored", || dir.exists("dst/marker"));
    let outside = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("Fanotify watching 1 sources: "))
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|f| f.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    d.wait_for("the status file counting outside records", || {
        outside(&fs::read_to_string(&status).unwrap_or_default()) >= 200
    });
    let text = fs::read_to_string(&status).expect("status file");
    assert!(text.contains("Monitor: fanotify"), "{text}");
    // Startup walked nothing and placed no inotify watch.
    assert!(text.contains("Inotify watching 0 directories"), "{text}");
    // The only events that reached the sync are the marker's (its create and close may come
    // as one record or two).
    let log = d.log();
    let events: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("Delay: New ").map(|(_, e)| e))
        .collect();
    assert!(events.contains(&"Create: /marker"), "{log}");
    assert!(events.iter().all(|e| e.ends_with(": /marker")), "{log}");
}

/// `setpriv` running lsyncd inside the test dir's namespace without capability `cap` (dropped
/// from the bounding set, so root's exec cannot get it back).
fn without_cap(dir: &TestDir, cap: &str, args: &[&str]) -> Command {
    let mut cmd = dir.command("setpriv");
    let drop = format!("-{cap}");
    cmd.args(["--bounding-set", &drop, "--inh-caps", &drop, "--"])
        .arg(lsyncd_bin())
        .args(args);
    cmd
}

/// Without capability `cap`, an explicit `-monitor fanotify` is a startup error naming
/// `reason`, and `-monitor auto` uses inotify with one log line naming it, and syncs.
fn missing_capability(cap: &str, reason: &str) {
    rsync_path();
    let dir = TestDir::with_monitor(Mon::Fanotify);
    let (src, dst) = (dir.path_str("src"), dir.path_str("dst"));
    let args = |monitor| {
        [
            "-nodaemon",
            "-monitor",
            monitor,
            "-delay",
            "1",
            "-rsync",
            &src,
            &dst,
        ]
    };
    let mut d = Daemon::spawn(&dir, without_cap(&dir, cap, &args("fanotify")));
    assert_eq!(d.wait_exit(TIMEOUT), Some(255), "{}", d.log());
    let want = format!("Error: Sync1: cannot use the fanotify monitor: {reason}");
    assert!(d.log().contains(&want), "{}", d.log());
    let mut d = Daemon::spawn(&dir, without_cap(&dir, cap, &args("auto")));
    d.wait_log(&format!(
        "Sync1: monitor auto uses inotify: fanotify is not usable: {reason}"
    ));
    d.wait_log("Sync1: watching");
    assert!(d.log().contains(" with inotify"), "{}", d.log());
    assert_eq!(
        d.log().matches("fanotify is not usable").count(),
        1,
        "{}",
        d.log()
    );
    d.wait_startup();
    dir.write("src/a/b/f", "f\n");
    d.wait_trees_equal(&dir.src(), &dir.dst());
}

#[test]
fn without_cap_sys_admin_auto_falls_back_and_explicit_fanotify_fails() {
    missing_capability(
        "sys_admin",
        "fanotify monitor needs CAP_SYS_ADMIN (fanotify_mark: EPERM)",
    );
}

/// fanotify events arrive without CAP_DAC_READ_SEARCH, but their directory handles cannot
/// be opened.
#[test]
fn without_cap_dac_read_search_auto_falls_back_and_explicit_fanotify_fails() {
    missing_capability(
        "dac_read_search",
        "fanotify monitor needs CAP_DAC_READ_SEARCH (open_by_handle_at: EPERM)",
    );
}

#[test]
fn overlayfs_is_refused_for_fanotify_and_auto_uses_inotify_there() {
    let dir = TestDir::new();
    for d in ["lower", "upper", "work", "merged"] {
        dir.mkdir(d);
    }
    let root = dir.path_str("");
    let run = |monitor: &str| {
        let script = format!(
            "mount -t overlay overlay -o lowerdir={root}/lower,upperdir={root}/upper,\
             workdir={root}/work {root}/merged && exec \"$0\" -t -monitor {monitor} \
             -rsync {root}/merged {root}/dst"
        );
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .arg(lsyncd_bin())
            .output()
            .expect("run unshare")
    };
    let out = run("fanotify");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(
        err.contains("cannot use the fanotify monitor:")
            && err.contains("merged/ is on overlayfs: fanotify cannot decode its file handles"),
        "{err}"
    );
    let out = run("auto");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(o.contains("Sync1 monitor: inotify"), "{o}");
    assert!(
        e.contains("monitor auto uses inotify") && e.contains("overlayfs"),
        "{e}"
    );
}

#[test]
fn configtest_names_each_syncs_monitor() {
    let dir = TestDir::new();
    dir.mkdir("src2");
    let cfg = dir.config(
        "two.lua",
        "settings{ monitor = \"fanotify\" }\n\
         sync{ default.rsync, source = \"src\", target = \"dst\" }\n\
         sync{ default.rsync, source = \"src2\", target = \"dst\", monitor = \"inotify\" }\n",
    );
    let r = crate::util::run(&dir, &["-t", cfg.to_str().expect("utf-8")]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Sync1 monitor: fanotify"), "{r:?}");
    assert!(r.stdout.contains("Sync2 monitor: inotify"), "{r:?}");
    let bad = dir.config(
        "bad.lua",
        "sync{ default.rsync, source = \"src\", target = \"dst\", monitor = \"kqueue\" }\n",
    );
    let r = crate::util::run(&dir, &["-t", bad.to_str().expect("utf-8")]);
    assert_eq!(r.code, 255, "{r:?}");
    assert!(
        r.stderr.contains("event monitor \"kqueue\" unknown."),
        "{r:?}"
    );
}

/// Stops process `pid` and waits until the kernel shows it stopped.
fn stop(pid: u32) {
    send_signal(pid, "STOP");
    let stopped = crate::util::wait_until(TIMEOUT, || {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
            .unwrap_or(false)
    });
    assert!(stopped, "process {pid} did not stop");
}

both_monitors! {
    fn file_moves_followed_by_renames_of_their_directories_reach_the_target(mon) {
        // A monitor that names directories by what they are called when it reads the record
        // sees `mv a/f b/m; mv a a2` as a move from a2/f, a path the target never had: the
        // remote mv fails and b/m must still arrive.
        rsync_path();
        let dir = TestDir::with_monitor(mon);
        for f in ["src/a/f", "src/a/g", "src/c/h", "src/z/keep"] {
            dir.write(f, format!("{f}\n"));
        }
        dir.mkdir("src/b");
        let cfg = dir.config(
            "direct.lua",
            "sync{ default.direct, source = \"src\", target = \"dst\", delay = 1 }\n",
        );
        let mut d = Daemon::config(&dir, &cfg, &["-log", "Exec"]);
        d.wait_log("Startup of \"");
        d.wait_trees_equal(&dir.src(), &dir.dst());
        stop(d.pid());
        // A directory rename first, so no directory path is remembered from before.
        dir.rename("src/z", "src/z2");
        dir.rename("src/a/f", "src/b/m");
        dir.rename("src/a", "src/a2");
        dir.rename("src/a2/g", "src/c/n");
        dir.rename("src/c", "src/c2");
        send_signal(d.pid(), "CONT");
        d.wait_trees_equal(&dir.src(), &dir.dst());
        assert_eq!(dir.read("dst/b/m").as_deref(), Some(&b"src/a/f\n"[..]));
        assert_eq!(dir.read("dst/c2/n").as_deref(), Some(&b"src/a/g\n"[..]));
        // A move with nothing else going on reaches the target as a move.
        let moves = d.log().matches("Exec: sh [-c] [mv -- ").count();
        dir.rename("src/b/m", "src/c2/m");
        d.wait_log_count("Exec: sh [-c] [mv -- ", moves + 1);
        d.wait_trees_equal(&dir.src(), &dir.dst());
    }
}

#[test]
fn a_nested_source_moved_by_a_rename_in_the_outer_one_is_away_until_back() {
    rsync_path();
    let dir = TestDir::with_monitor(Mon::Fanotify);
    dir.write("src/mid/inner/a", "a\n");
    dir.mkdir("dst2");
    let cfg = dir.config(
        "nested.lua",
        "sync{ default.rsync, source = \"src\", target = \"dst\", delay = 0 }\n\
         sync{ default.rsync, source = \"src/mid/inner\", target = \"dst2\", delay = 0 }\n",
    );
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_log_count("finished.", 2);
    d.wait_trees_equal(&dir.path("src/mid/inner"), &dir.path("dst2"));
    // The directory above the nested source moves: no event of the source's own.
    dir.rename("src/mid", "src/elsewhere");
    d.wait_log("/src/mid/inner/ was moved away; no transfer until it is back");
    // The outer sync goes on as usual.
    d.wait_trees_equal(&dir.src(), &dir.dst());
    dir.write("src/elsewhere/inner/meanwhile", "m\n");
    dir.rename("src/elsewhere", "src/mid");
    d.wait_log("/src/mid/inner/ is back; a full transfer follows");
    d.wait_trees_equal(&dir.path("src/mid/inner"), &dir.path("dst2"));
    assert!(!d.log().contains("Sync1: source "), "{}", d.log());
}

#[test]
fn json_status_and_metrics_name_each_syncs_monitor() {
    rsync_path();
    let dir = TestDir::with_monitor(Mon::Fanotify);
    dir.mkdir("src2");
    dir.mkdir("dst2");
    let cfg = dir.config(
        "json.lua",
        "settings{ statusFile = \"status.json\", statusFormat = \"json\", \
         metricsFile = \"lsyncd.prom\", statusInterval = 1, monitor = \"fanotify\" }\n\
         sync{ default.rsync, source = \"src\", target = \"dst\", delay = 0 }\n\
         sync{ default.rsync, source = \"src2\", target = \"dst2\", delay = 0, \
         monitor = \"inotify\" }\n",
    );
    let mut cmd = dir.command(lsyncd_bin());
    cmd.args(["-nodaemon"]).arg(&cfg);
    let mut d = Daemon::spawn(&dir, cmd);
    d.wait_log_count("finished.", 2);
    let json = || -> Option<serde_json::Value> {
        serde_json::from_slice(&fs::read(dir.path("status.json")).ok()?).ok()
    };
    d.wait_for("the JSON status", || json().is_some());
    let j = json().expect("JSON status");
    assert_eq!(j["monitor"], "inotify+fanotify", "{j}");
    assert_eq!(j["syncs"][0]["monitor"], "fanotify", "{j}");
    assert_eq!(j["syncs"][1]["monitor"], "inotify", "{j}");
    d.wait_for("the metrics file", || dir.exists("lsyncd.prom"));
    let prom = String::from_utf8(dir.read("lsyncd.prom").unwrap_or_default()).unwrap_or_default();
    assert!(prom.contains("monitor=\"inotify+fanotify\""), "{prom}");
}

#[test]
fn a_mount_below_the_source_is_marked_and_its_changes_arrive() {
    let dir = TestDir::with_monitor(Mon::Fanotify);
    dir.mkdir("src/sub");
    let mounted = dir
        .command("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "below", "src/sub"])
        .status()
        .expect("run mount");
    assert!(mounted.success());
    let mut d = mirror(&dir, "1", &[]);
    // The tmpfs is another filesystem: the source's mark alone would not see this.
    dir.write("src/sub/deep/file", "below\n");
    dir.write("src/top", "top\n");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert_eq!(
        dir.read("dst/sub/deep/file").as_deref(),
        Some(&b"below\n"[..])
    );
}
