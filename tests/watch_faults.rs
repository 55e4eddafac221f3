//! Watch failures of the inotify monitor (issue "never die, never lose", points 6 and 12): a
//! source root moved away or deleted and later back (with both monitors), a source root that
//! cannot be watched at
//! startup, a sub-directory that cannot be watched until it is made readable. Real inotify,
//! real rsync; the unreadable cases run the daemon as `nobody` (through `setpriv`), because
//! root reads every directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{
    is_root, lsyncd_bin, lua_str, rsync_path, Daemon, TestDir, EXIT_TIMEOUT, SETPRIV_NOBODY,
};

fn config(dir: &TestDir) -> PathBuf {
    dir.config(
        "watch.lua",
        &format!(
            "settings {{ maxBackoff = 2, statusFile = {}, statusInterval = 1, \
             metricsFile = {} }}\n\
             sync {{ default.rsync, source = {}, target = {}, delay = 0 }}\n",
            lua_str(dir.path_str("status")),
            lua_str(dir.path_str("metrics.prom")),
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
        ),
    )
}

/// A daemon on `src/` (made with `dirs`) that has finished its startup transfer.
fn started(dir: &TestDir, dirs: &str) -> Daemon {
    rsync_path();
    dir.mkdir(dirs);
    dir.write(format!("{dirs}/a"), "a\n");
    let mut d = Daemon::config(dir, &config(dir), &[] as &[&str]);
    d.wait_startup();
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d
}

/// Whether the metrics file shows the (only) sync in `state`.
fn sync_state_is(dir: &TestDir, state: &str) -> bool {
    let want = format!(",state=\"{state}\"}} 1");
    dir.read("metrics.prom").is_some_and(|m| {
        String::from_utf8_lossy(&m)
            .lines()
            .any(|l| l.starts_with("lsyncd_sync_state{") && l.ends_with(&want))
    })
}

/// `lsyncd -nodaemon ARGS` as user `nobody`.
fn as_nobody(dir: &TestDir, args: &[&std::ffi::OsStr]) -> Daemon {
    let mut cmd = Command::new("setpriv");
    cmd.args(SETPRIV_NOBODY)
        .arg(lsyncd_bin())
        .arg("-nodaemon")
        .args(args)
        .current_dir(dir.root());
    Daemon::spawn(dir, cmd)
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

both_monitors! {
    fn source_moved_away_and_back_gets_a_full_transfer_and_the_target_is_kept(mon) {
        let dir = TestDir::with_monitor(mon);
        let mut d = started(&dir, "src/sub");
        dir.rename("src", "away");
        d.wait_log("source ");
        d.wait_log(" was moved away; no transfer until it is back");
        // Created while the source is away: no event can tell of it.
        dir.write("away/sub/meanwhile", "m\n");
        dir.write("away/new", "n\n");
        let gone = "State: source directory gone; no transfer until it is back";
        d.wait_for("the status file saying so", || {
            dir.read("status")
                .is_some_and(|s| String::from_utf8_lossy(&s).contains(gone))
        });
        d.wait_for("the metrics saying so", || sync_state_is(&dir, "source_gone"));
        // Nothing ran against the target meanwhile: it still holds what it had.
        assert_eq!(dir.read("dst/sub/a").as_deref(), Some(&b"a\n"[..]));
        dir.rename("away", "src");
        d.wait_log(" is back; a full transfer follows");
        d.wait_trees_equal(&dir.src(), &dir.dst());
        assert_eq!(dir.read("dst/sub/meanwhile").as_deref(), Some(&b"m\n"[..]));
        d.wait_for("the metrics saying ok again", || sync_state_is(&dir, "ok"));
        // Watched again: a later change syncs as usual.
        dir.write("src/sub/later", "l\n");
        d.wait_for("src/sub/later synced", || dir.exists("dst/sub/later"));
        assert!(d.try_exit().is_none(), "{}", d.log());
        // No transfer was tried from the moved tree under the old path.
        assert!(!d.log().contains("transfer failed"), "{}", d.log());
    }
}

both_monitors! {
    fn source_deleted_and_recreated_is_synced_once_back(mon) {
        let dir = TestDir::with_monitor(mon);
        let mut d = started(&dir, "src/d");
        fs::remove_dir_all(dir.src()).unwrap();
        d.wait_log(" was deleted; no transfer until it is back");
        // Recreated with other content (e.g. restored): mirrored once it is back.
        dir.mkdir("src/e");
        dir.write("src/e/restored", "r\n");
        d.wait_log(" is back; a full transfer follows");
        d.wait_trees_equal(&dir.src(), &dir.dst());
        dir.write("src/e/later", "l\n");
        d.wait_for("src/e/later synced", || dir.exists("dst/e/later"));
        assert!(d.try_exit().is_none(), "{}", d.log());
    }
}

both_monitors! {
    fn a_restart_while_the_source_is_away_waits_for_it(mon) {
        let dir = TestDir::with_monitor(mon);
        let mut d = started(&dir, "src/sub");
        dir.rename("src", "away");
        d.wait_log(" was moved away; no transfer until it is back");
        d.signal("HUP");
        d.wait_log(" is still away; no transfer until it is back");
        // The reports of the new run say so too (the old run's file is gone).
        fs::remove_file(dir.path("metrics.prom")).expect("rm metrics");
        d.wait_for("the new run's metrics", || sync_state_is(&dir, "source_gone"));
        assert!(d.try_exit().is_none(), "{}", d.log());
        dir.write("away/sub/meanwhile", "m\n");
        dir.rename("away", "src");
        d.wait_log(" is back; a full transfer follows");
        d.wait_trees_equal(&dir.src(), &dir.dst());
        assert_eq!(dir.read("dst/sub/meanwhile").as_deref(), Some(&b"m\n"[..]));
        dir.write("src/sub/later", "l\n");
        d.wait_for("src/sub/later synced", || dir.exists("dst/sub/later"));
        d.wait_for("the metrics saying ok again", || sync_state_is(&dir, "ok"));
        assert!(d.try_exit().is_none(), "{}", d.log());
    }
}

/// A source named through a symlink that points elsewhere after a restart is synced from where
/// it points now: it is not away, although the directory the run before used is gone.
#[test]
fn a_restart_follows_a_source_link_pointed_elsewhere() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("one/a", "1\n");
    dir.write("two/b", "2\n");
    dir.remove("src");
    dir.symlink(dir.path_str("one"), "src");
    let mut d = Daemon::config(&dir, &config(&dir), &[] as &[&str]);
    d.wait_startup();
    d.wait_trees_equal(&dir.path("one"), &dir.dst());
    dir.rename("one", "gone");
    dir.remove("src");
    dir.symlink(dir.path_str("two"), "src");
    d.signal("HUP");
    d.wait_trees_equal(&dir.path("two"), &dir.dst());
    assert!(!d.log().contains("is still away"), "{}", d.log());
    assert!(d.try_exit().is_none(), "{}", d.log());
}

/// Only a source the run before had is waited for: a config changed to name a directory that
/// is not there is still the startup error it is at the first start.
#[test]
fn a_restart_with_a_new_missing_source_stops_as_at_startup() {
    let dir = TestDir::new();
    let mut d = started(&dir, "src/sub");
    let text = String::from_utf8(dir.read("watch.lua").expect("config")).expect("utf-8");
    let missing = dir.path_str("missing");
    dir.config("watch.lua", &text.replace(&dir.path_str("src"), &missing));
    d.signal("HUP");
    assert_eq!(d.wait_exit(EXIT_TIMEOUT), Some(255), "{}", d.log());
    assert!(
        d.log()
            .contains(&format!("Cannot access source directory: {missing}")),
        "{}",
        d.log()
    );
}

#[test]
fn an_unwatchable_source_root_is_a_startup_error_naming_it() {
    if !is_root() {
        eprintln!("needs root to switch users: not run");
        return;
    }
    rsync_path();
    let dir = TestDir::new();
    dir.mkdir("src");
    dir.mkdir("dst");
    let cfg = config(&dir);
    let pidfile = dir.path("lsyncd.pid");
    dir.give_to_nobody();
    let chown = Command::new("chown")
        .arg("root:root")
        .arg(dir.src())
        .status();
    assert!(chown.expect("chown").success());
    chmod(&dir.src(), 0o700);
    let args = ["-pidfile".as_ref(), pidfile.as_os_str(), cfg.as_os_str()];
    let mut d = as_nobody(&dir, &args);
    let code = d.wait_exit(EXIT_TIMEOUT);
    let want = format!(
        "Cannot watch source directory {}/: Permission denied",
        dir.src().display()
    );
    assert!(d.log().contains(&want), "{want:?} not in\n{}", d.log());
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}\n{}", d.log());
    assert!(!pidfile.exists(), "the pidfile is left\n{}", d.log());
}

#[test]
fn an_unreadable_sub_directory_is_a_warning_and_is_synced_once_readable_and_touched() {
    if !is_root() {
        eprintln!("needs root to switch users: not run");
        return;
    }
    rsync_path();
    let dir = TestDir::new();
    dir.mkdir("src/locked dir");
    dir.write("src/locked dir/old", "o\n");
    dir.mkdir("dst");
    let cfg = config(&dir);
    let locked = dir.path("src/locked dir");
    dir.give_to_nobody();
    chmod(&locked, 0o000);
    let mut d = as_nobody(&dir, &[cfg.as_os_str()]);
    let want = format!("Cannot watch {}/: Permission denied", locked.display());
    d.wait_log(&want);
    // The rest syncs meanwhile.
    dir.write("src/other", "x\n");
    d.wait_for("src/other synced", || dir.exists("dst/other"));
    // Readable again: the chmod (IN_ATTRIB on it) makes it watched, its content synced.
    chmod(&locked, 0o755);
    d.wait_log(&format!(
        "Watching {}/ now that it can be watched",
        locked.display()
    ));
    dir.write("src/locked dir/new", "n\n");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert!(d.try_exit().is_none(), "{}", d.log());
}
