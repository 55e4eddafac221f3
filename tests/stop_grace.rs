//! Special files with `default.direct` and the stop grace period: a FIFO, a socket or a device
//! node in the source (at startup and created while running) never blocks the sync: it is
//! created as the same special file when the sync's rsync copies such files (`archive`), else
//! skipped with a log line; later changes still sync and TERM completes. A child that ignores
//! TERM is killed after `settings{ stopGrace }` (on TERM, INT and a HUP restart); the daemon
//! then exits with its normal code, leaving no pidfile and no child behind, or restarts.
//!
//! Device nodes need root (mknod), as the whole suite has in CI.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{lua_str, rsync_path, wait_until, Daemon, TestDir, TIMEOUT};

/// A FIFO, a socket and a character device named `NAME-fifo`, `NAME-sock`, `NAME-dev`.
fn make_specials(dir: &TestDir, name: &str) {
    let run = |program: &str, args: &[&Path], extra: &[&str]| {
        let ok = Command::new(program)
            .args(args)
            .args(extra)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{program} {args:?} failed");
    };
    run("mkfifo", &[&dir.path(format!("src/{name}-fifo"))], &[]);
    UnixListener::bind(dir.path(format!("src/{name}-sock"))).expect("bind");
    // the same device as /dev/null
    run(
        "mknod",
        &[&dir.path(format!("src/{name}-dev"))],
        &["c", "1", "3"],
    );
}

/// The kind of `path` on the target, without following links.
fn kind(path: &Path) -> &'static str {
    match fs::symlink_metadata(path).map(|m| m.file_type()) {
        Err(_) => "missing",
        Ok(t) if t.is_fifo() => "fifo",
        Ok(t) if t.is_socket() => "socket",
        Ok(t) if t.is_char_device() => "char",
        Ok(t) if t.is_file() => "file",
        Ok(_) => "other",
    }
}

fn direct_config(dir: &TestDir, rsync: &str) -> std::path::PathBuf {
    dir.config(
        "direct.lua",
        &format!(
            "sync {{ default.direct, source = 'src', target = {}, delay = 0{rsync} }}\n",
            lua_str(dir.path_str("dst"))
        ),
    )
}

#[test]
fn special_files_are_skipped_with_a_log_line_and_later_changes_still_sync() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/first", "1\n");
    make_specials(&dir, "startup");
    let cfg = direct_config(&dir, "");
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_log("Startup of \"");
    make_specials(&dir, "live");
    dir.write("src/after", "later change\n");
    d.wait_for("the later change", || dir.exists("dst/after"));
    for (suffix, what) in [("fifo", "fifo"), ("sock", "socket"), ("dev", "char")] {
        let live = format!("/live-{suffix}");
        let said = |log: &str| {
            log.lines()
                .any(|l| l.contains(&format!("not copying {what} ")) && l.contains(&live))
        };
        wait_until(TIMEOUT, || said(&d.log()));
        assert!(said(&d.log()), "no log line for {live}\n{}", d.log());
        for name in ["startup", "live"] {
            let target = dir.path(format!("dst/{name}-{suffix}"));
            assert_eq!(kind(&target), "missing", "{target:?}\n{}", d.log());
        }
    }
    assert_eq!(d.terminate(), 143, "{}", d.log());
}

#[test]
fn special_files_are_created_as_special_files_when_rsync_copies_them() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/first", "1\n");
    make_specials(&dir, "startup");
    let cfg = direct_config(&dir, ", rsync = { archive = true }");
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_log("Startup of \"");
    make_specials(&dir, "live");
    dir.write("src/after", "later change\n");
    d.wait_for("the later change", || dir.exists("dst/after"));
    for name in ["startup", "live"] {
        for (suffix, want) in [("fifo", "fifo"), ("sock", "socket"), ("dev", "char")] {
            let target = dir.path(format!("dst/{name}-{suffix}"));
            d.wait_for(&format!("{target:?} a {want}"), || kind(&target) == want);
        }
    }
    let rdev = |p: &Path| std::os::unix::fs::MetadataExt::rdev(&fs::metadata(p).expect("stat"));
    assert_eq!(
        rdev(&dir.path("dst/live-dev")),
        rdev(&dir.path("src/live-dev"))
    );
    // Written to while the target copy exists: nothing blocks, nothing changes.
    let mut w = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path("src/live-fifo"))
        .expect("open fifo");
    std::io::Write::write_all(&mut w, b"x").expect("write fifo");
    drop(w);
    dir.write("src/last", "last\n");
    d.wait_for("the last change", || dir.exists("dst/last"));
    assert_eq!(kind(&dir.path("dst/live-fifo")), "fifo");
    assert_eq!(d.terminate(), 143, "{}", d.log());
}

/// Whether process `pid` still exists (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

/// A daemon with `stopGrace = 1` and a pidfile whose rsync is a script that ignores TERM and
/// INT and never ends; returns it once the script runs, with the script's pid file.
fn daemon_with_a_stubborn_child(dir: &TestDir) -> (Daemon, std::path::PathBuf) {
    dir.mkdir("src");
    let stubborn = dir.path("stubborn");
    let pidof = dir.path("stubborn.pid");
    fs::write(
        &stubborn,
        format!(
            "#!/bin/sh\ntrap '' TERM INT\necho $$ > {}\nwhile :; do sleep 0.1; done\n",
            pidof.display()
        ),
    )
    .expect("write");
    fs::set_permissions(&stubborn, fs::Permissions::from_mode(0o755)).expect("chmod");
    let cfg = dir.config(
        "stubborn.lua",
        &format!(
            "settings {{ stopGrace = 1, pidfile = {} }}\n\
             sync {{ default.rsync, source = 'src', target = 'dst',\n\
                     rsync = {{ binary = {} }} }}\n",
            lua_str(dir.path_str("lsyncd.pid")),
            lua_str(stubborn.to_str().expect("UTF-8"))
        ),
    );
    let mut d = Daemon::config(dir, &cfg, &[] as &[&str]);
    d.wait_for("the stubborn child", || {
        fs::read_to_string(&pidof).is_ok_and(|s| s.ends_with('\n'))
    });
    (d, pidof)
}

/// The pid the stubborn script wrote.
fn stubborn_pid(pidof: &Path) -> u32 {
    fs::read_to_string(pidof)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid")
}

fn child_ignoring_term_is_killed_after_the_grace_period(signal: &str, code: i32) {
    let dir = TestDir::new();
    let (mut d, pidof) = daemon_with_a_stubborn_child(&dir);
    let child = stubborn_pid(&pidof);
    let pidfile = dir.path("lsyncd.pid");
    assert!(pidfile.exists(), "{}", d.log());
    d.signal(signal);
    // 1 s of grace, 3 s between TERM and KILL, and slack for a loaded machine.
    let exit = d.wait_exit(TIMEOUT);
    assert_eq!(exit, Some(code), "{}", d.log());
    let log = d.log();
    assert!(log.contains("stopGrace); sending SIGTERM"), "{log}");
    assert!(log.contains("sending SIGKILL"), "{log}");
    assert!(!pidfile.exists(), "{log}");
    assert!(
        wait_until(Duration::from_secs(5), || !alive(child)),
        "child {child} still alive\n{log}"
    );
}

#[test]
fn a_child_ignoring_term_does_not_keep_the_daemon_from_exiting_on_term() {
    child_ignoring_term_is_killed_after_the_grace_period("TERM", 143);
}

#[test]
fn a_child_ignoring_int_does_not_keep_the_daemon_from_exiting_on_int() {
    child_ignoring_term_is_killed_after_the_grace_period("INT", 130);
}

/// A restart (HUP) waits at most the grace period too, then the sync starts anew.
#[test]
fn a_child_ignoring_term_does_not_keep_a_hup_restart_waiting() {
    let dir = TestDir::new();
    let (mut d, pidof) = daemon_with_a_stubborn_child(&dir);
    let first = stubborn_pid(&pidof);
    fs::remove_file(&pidof).expect("rm");
    d.signal("HUP");
    d.wait_log("sending SIGKILL");
    d.wait_for("the restarted sync's child", || {
        fs::read_to_string(&pidof).is_ok_and(|s| s.ends_with('\n'))
    });
    let second = stubborn_pid(&pidof);
    assert_ne!(first, second);
    assert!(
        wait_until(Duration::from_secs(5), || !alive(first)),
        "child {first} still alive\n{}",
        d.log()
    );
    assert_eq!(d.wait_exit(Duration::ZERO), None, "{}", d.log());
    d.signal("TERM");
    assert_eq!(d.wait_exit(TIMEOUT), Some(143), "{}", d.log());
    assert!(
        wait_until(Duration::from_secs(5), || !alive(second)),
        "child {second} still alive\n{}",
        d.log()
    );
}
