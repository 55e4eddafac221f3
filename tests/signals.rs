//! Signals (SPEC §13.4, §13.8): TERM and INT make the daemon fade and exit with 128 + signal;
//! a running rsync is waited for, not killed (§6.8).

use crate::util::{lua_str, rsync_path, Daemon, TestDir, Then};

fn running_mirror(dir: &TestDir) -> Daemon {
    rsync_path();
    dir.write("src/f", "f\n");
    let (src, dst) = (dir.path_str("src"), dir.path_str("dst"));
    let mut d = Daemon::start(dir, &["-delay", "1", "-rsync", &src, &dst]);
    d.wait_startup();
    d
}

#[test]
fn sigterm_fades_and_exits_143() {
    let dir = TestDir::new();
    let mut d = running_mirror(&dir);
    d.signal("TERM");
    d.wait_exit(crate::util::TIMEOUT);
    assert_clean_exit(&d, 143);
    assert!(
        d.log().contains("--- TERM signal, fading ---"),
        "{}",
        d.log()
    );
}

#[test]
fn sigint_fades_and_exits_130() {
    let dir = TestDir::new();
    let mut d = running_mirror(&dir);
    d.signal("INT");
    d.wait_exit(crate::util::TIMEOUT);
    assert_clean_exit(&d, 130);
    assert!(
        d.log().contains("--- INT signal, fading ---"),
        "{}",
        d.log()
    );
}

#[test]
fn sigterm_waits_for_running_rsync_before_exiting() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/f", "f\n");
    // An rsync that blocks until the test removes the gate file, then syncs for real.
    let rec = dir.recorder(Then::ExecRsync);
    let gate = dir.write("gate", "");
    let slow = dir.write(
        "slow-rsync.sh",
        format!(
            "#!/bin/sh\nwhile [ -e {gate} ]; do sleep 0.05; done\nexec {rec} \"$@\"\n",
            gate = sh_word(&gate),
            rec = sh_word(rec.path()),
        ),
    );
    make_executable(&slow);
    let cfg = dir.config(
        "slow.lua",
        &format!(
            "sync{{ default.rsync, source = \"src\", target = \"dst\", delay = 1,\n\
             rsync = {{ binary = {} }} }}\n",
            lua_str(slow.to_str().expect("UTF-8 temp path"))
        ),
    );
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_log("recursive");
    d.signal("TERM");
    d.wait_log("--- TERM signal, fading ---");
    assert_eq!(
        d.wait_exit(std::time::Duration::from_millis(500)),
        None,
        "exited while rsync ran\n{}",
        d.log()
    );
    std::fs::remove_file(&gate).expect("open the gate");
    d.wait_exit(crate::util::TIMEOUT);
    assert_clean_exit(&d, 143);
    // The startup rsync completed its work.
    assert_eq!(dir.read("dst/f").as_deref(), Some(&b"f\n"[..]));
}

/// The daemon called exit(code) itself (it was not killed by the signal's default action).
fn assert_clean_exit(d: &Daemon, code: i32) {
    let status = d.status();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(code),
        "want exit({code}), got {status:?}\n--- log ---\n{}",
        d.log()
    );
}

fn sh_word(p: &std::path::Path) -> String {
    format!(
        "'{}'",
        p.to_str().expect("UTF-8 temp path").replace('\'', "'\\''")
    )
}

fn make_executable(p: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}
