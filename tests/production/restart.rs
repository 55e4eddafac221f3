//! Restarts and run modes (SPEC §13.5–§13.7): HUP re-reads the config in place, `-insist`
//! retries a failing startup transfer, `-onepass` exits after the startup transfers.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{lua_path, read_pidfile, script, sh_word};
use crate::util::{rsync_path, tree_diff, Daemon, TestDir, TIMEOUT};

// HUP restart (SPEC §13.5)

#[test]
fn hup_rereads_config_keeps_pid_and_syncs_changes_made_during_the_restart() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/keep", "k\n");
    dir.write("src/a.skip", "skipped before HUP\n");
    let gate = dir.path("gate");
    let calls = dir.path("calls");
    // An rsync that counts its calls and blocks while the gate file exists.
    let slow = script(
        &dir,
        "slow-rsync.sh",
        &format!(
            "echo x >> {calls}\nwhile [ -e {gate} ]; do sleep 0.05; done\nexec {rsync} \"$@\"\n",
            calls = sh_word(&calls),
            gate = sh_word(&gate),
            rsync = sh_word(&rsync_path()),
        ),
    );
    let write_cfg = |pattern: &str| {
        dir.config(
            "hup.lua",
            &format!(
                "sync{{ default.rsync, source = {}, target = {}, delay = 1,\n  \
                   exclude = {{ '{pattern}' }}, rsync = {{ binary = {} }} }}\n",
                lua_path(&dir.src()),
                lua_path(&dir.dst()),
                lua_path(&slow),
            ),
        )
    };
    let cfg = write_cfg("*.skip");
    let pidfile = dir.path("hup.pid");
    let pid_s = pidfile.to_str().expect("UTF-8").to_owned();
    let mut d = Daemon::config(&dir, &cfg, &["-pidfile", &pid_s]);
    let pid = d.pid();
    d.wait_startup();
    assert_eq!(dir.read("dst/keep").as_deref(), Some(&b"k\n"[..]));
    assert!(!dir.exists("dst/a.skip"), "excluded file was synced");

    // Hold a live rsync in flight, so the HUP has to fade while it runs.
    let count = |p: &Path| fs::read_to_string(p).unwrap_or_default().lines().count();
    let before = count(&calls);
    fs::write(&gate, "").expect("close the gate");
    dir.write("src/keep", "k2\n");
    d.wait_for("the live rsync to start", || count(&calls) > before);
    write_cfg("*.tmp");
    d.signal("HUP");
    d.wait_log("--- HUP signal, resetting ---");
    // Changes made while the daemon fades are not watched by anyone; the new run's startup
    // sync must bring them over.
    dir.write("src/during.txt", "written during the restart\n");
    dir.write("src/during.tmp", "excluded by the new config\n");
    fs::remove_file(&gate).expect("open the gate");
    d.wait_log_count("--- Startup ---", 2);
    d.wait_log_count("finished", 2);
    d.wait_for("the file written during the restart", || {
        dir.read("dst/during.txt").as_deref() == Some(&b"written during the restart\n"[..])
    });
    assert_eq!(dir.read("dst/keep").as_deref(), Some(&b"k2\n"[..]));
    assert!(
        dir.exists("dst/a.skip"),
        "the new config no longer excludes *.skip, yet a.skip was not synced\n{}",
        d.log()
    );
    assert!(
        !dir.exists("dst/during.tmp"),
        "the new exclude *.tmp was not applied to the startup sync\n{}",
        d.log()
    );
    // Live events after the restart follow the new excludes too.
    dir.write("src/live.tmp", "t\n");
    dir.write("src/live.skip", "s\n");
    d.wait_for("live.skip to be synced", || dir.exists("dst/live.skip"));
    assert!(
        !dir.exists("dst/live.tmp"),
        "live.tmp synced despite the new exclude"
    );
    // Same process, same pidfile.
    assert!(d.try_exit().is_none(), "daemon exited\n{}", d.log());
    assert_eq!(d.pid(), pid);
    assert_eq!(
        read_pidfile(&pidfile),
        Some(pid),
        "pidfile changed by the restart"
    );
    assert_eq!(d.terminate(), 143);
    assert!(!pidfile.exists(), "pidfile left behind");
}

// -insist (SPEC §13.6)

/// An rsync that fails with exit 12 (`again`) the first `fails` times, then runs the real one.
fn flaky_rsync(dir: &TestDir, fails: u32) -> (PathBuf, PathBuf) {
    let counter = dir.path("flaky.count");
    let p = script(
        dir,
        "flaky-rsync.sh",
        &format!(
            "n=$(cat {c} 2>/dev/null || echo 0)\nn=$((n + 1))\necho \"$n\" > {c}\n\
             if [ \"$n\" -le {fails} ]; then exit 12; fi\nexec {rsync} \"$@\"\n",
            c = sh_word(&counter),
            rsync = sh_word(&rsync_path()),
        ),
    );
    (p, counter)
}

fn flaky_config(dir: &TestDir, rsync: &Path) -> PathBuf {
    dir.config(
        "flaky.lua",
        &format!(
            "sync{{ default.rsync, source = {}, target = {}, delay = 1, rsync = {{ binary = {} }} }}\n",
            lua_path(&dir.src()),
            lua_path(&dir.dst()),
            lua_path(rsync),
        ),
    )
}

#[test]
fn insist_retries_failing_startup_rsync_until_it_succeeds() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/a/f", "f\n");
    let (rsync, counter) = flaky_rsync(&dir, 2);
    let cfg = flaky_config(&dir, &rsync);
    let mut d = Daemon::config(&dir, &cfg, &["-insist"]);
    d.wait_log_count("Retrying startup of", 2);
    d.wait_log("finished");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert_eq!(
        fs::read_to_string(&counter).ok().as_deref(),
        Some("3\n"),
        "two failed attempts and one successful one"
    );
    // Still running and mirroring.
    dir.write("src/g", "g\n");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert_eq!(d.terminate(), 143);
}

#[test]
fn without_insist_failing_startup_rsync_exits_255() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/f", "f\n");
    let (rsync, counter) = flaky_rsync(&dir, 2);
    let cfg = flaky_config(&dir, &rsync);
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    let code = d.wait_exit(TIMEOUT);
    assert_eq!(code, Some(255), "{}", d.log());
    assert!(
        d.log().contains("Terminating since \"insist\" is not set."),
        "{}",
        d.log()
    );
    assert_eq!(fs::read_to_string(&counter).ok().as_deref(), Some("1\n"));
}

// -onepass (SPEC §13.7, §15 item 23)

#[test]
fn onepass_with_two_syncs_exits_0_after_both_startup_syncs() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/a/f", "one\n");
    dir.write("src2/b/g", "two\n");
    dir.mkdir("dst2");
    // The second sync's rsync waits for a gate, so the first one is done well before.
    let gate = dir.write("gate", "");
    let slow = script(
        &dir,
        "slow-rsync.sh",
        &format!(
            "while [ -e {gate} ]; do sleep 0.05; done\nexec {rsync} \"$@\"\n",
            gate = sh_word(&gate),
            rsync = sh_word(&rsync_path()),
        ),
    );
    let cfg = dir.config(
        "onepass.lua",
        &format!(
            "sync{{ default.rsync, source = {}, target = {}, delay = 1 }}\n\
             sync{{ default.rsync, source = {}, target = {}, delay = 1, rsync = {{ binary = {} }} }}\n",
            lua_path(&dir.src()),
            lua_path(&dir.dst()),
            lua_path(&dir.path("src2")),
            lua_path(&dir.path("dst2")),
            lua_path(&slow),
        ),
    );
    let mut d = Daemon::config(&dir, &cfg, &["-onepass"]);
    d.wait_log("finished");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert_eq!(
        d.wait_exit(Duration::from_millis(500)),
        None,
        "exited while the second startup sync was still running\n{}",
        d.log()
    );
    fs::remove_file(&gate).expect("open the gate");
    let code = d.wait_exit(TIMEOUT);
    assert_eq!(code, Some(0), "{}", d.log());
    assert_eq!(tree_diff(&dir.src(), &dir.dst()), Some(vec![]));
    assert_eq!(
        tree_diff(&dir.path("src2"), &dir.path("dst2")),
        Some(vec![]),
        "second target incomplete\n{}",
        d.log()
    );
}
