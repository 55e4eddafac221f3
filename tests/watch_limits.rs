//! The kernel's limits (SPEC §3.2, §3.3, §13.5): an event queue overflow leads to a full
//! resync, never to silence, and running out of inotify watches is a clear fatal error naming
//! the sysctl and the directory.

use std::process::Command;

use crate::util::{lsyncd_bin, rsync_path, Daemon, TestDir};

/// Stops the daemon, floods its inotify queue past `max_queued_events`, changes a file no event
/// will ever report, and lets it run again: the overflow restarts the run, whose startup rsync
/// carries the unreported change.
#[test]
fn queue_overflow_restarts_and_the_full_resync_carries_lost_changes() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/keep.txt", "before\n");
    let (src, dst) = (dir.path_str("src"), dir.path_str("dst"));
    // The limit is read when an inotify instance is created. A machine that raised it far
    // above the default (a benchmark does) gets the default back (as root) for the moment the
    // daemon starts; the default is used as it is.
    let limit_file = "/proc/sys/fs/inotify/max_queued_events";
    let saved: usize = std::fs::read_to_string(limit_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    let lowered = saved > 16384 && std::fs::write(limit_file, "16384").is_ok();
    let max_events = if lowered { 16384 } else { saved };
    assert!(
        max_events <= 1 << 17,
        "fs.inotify.max_queued_events is {max_events}: too large to overflow in a test"
    );
    let mut d = Daemon::start(&dir, &["-delay", "1", "-rsync", &src, &dst]);
    d.wait_startup();
    if lowered {
        std::fs::write(limit_file, saved.to_string()).expect("restore max_queued_events");
    }
    d.wait_trees_equal(&dir.src(), &dir.dst());

    d.signal("STOP");
    // Each new file queues a Create and a close-write: twice the limit's worth of files
    // overflows the queue of the stopped daemon.
    for i in 0..max_events {
        std::fs::write(dir.path(format!("src/flood-{i}")), b"").expect("flood");
    }
    dir.write("src/keep.txt", "changed while the queue overflowed\n");
    dir.write("src/new-during-overflow.txt", "new\n");
    d.signal("CONT");

    d.wait_log("--- OVERFLOW in event queue ---");
    d.wait_log_count("--- Startup ---", 2);
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert_eq!(
        dir.read("dst/keep.txt").as_deref(),
        Some(&b"changed while the queue overflowed\n"[..])
    );
}

/// In a user namespace whose inotify watch limit is 3, a tree of 6 directories cannot be
/// watched: exit 255 with a message naming the limit and the directory it failed at.
#[test]
fn running_out_of_watches_is_fatal_and_names_the_sysctl() {
    let dir = TestDir::new();
    dir.mkdir("src/a/b/c/d/e");
    dir.mkdir("dst");
    let (src, dst) = (dir.path_str("src"), dir.path_str("dst"));
    let script = "echo 3 > /proc/sys/user/max_inotify_watches \
                  && exec \"$0\" -nodaemon -rsync \"$1\" \"$2\"";
    let out = Command::new("unshare")
        .args(["-U", "-r", "sh", "-c", script])
        .arg(lsyncd_bin())
        .arg(&src)
        .arg(&dst)
        .output()
        .expect("run unshare");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "stderr: {stderr}");
    assert!(
        stderr.contains("Error: Terminating since out of inotify watches."),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("fs.inotify.max_user_watches"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{src}/a/b/")),
        "stderr names the directory: {stderr}"
    );
}
