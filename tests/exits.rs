//! The one shutdown path: every way the daemon ends — TERM, INT, a fatal Lua error at
//! runtime, `terminate()`, a fatal startup error in the foreground and in daemon mode — leaves
//! no pidfile, no tunnel process and no child behind, and exits with upstream's code.
//!
//! Tunnel processes and children are `sleep`s with an argument no other process has (the
//! marker), so what a daemon left behind is found wherever it was reparented to.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::util::*;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Children get SIGTERM, then SIGKILL after a grace time, before the daemon exits.
const GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// A `sleep` duration no other process uses as its argument.
fn marker() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "86400.{}{:04}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Live (not zombie) processes with an argument containing `needle`.
fn holders(needle: &str) -> Vec<u32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rfind(')')
                .is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z'));
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !zombie
                && cmdline
                    .split(|b| *b == 0)
                    .any(|a| String::from_utf8_lossy(a).contains(needle))
        })
        .collect()
}

/// Kills on drop whatever still holds one of the markers, so a failing test cleans up.
struct Leftovers(Vec<String>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for m in &self.0 {
            for pid in holders(m) {
                send_signal(pid, "KILL");
            }
        }
    }
}

/// Waits until nothing holds `needle`; fails with the log otherwise.
fn assert_gone(needle: &str, what: &str, log: &str) {
    assert!(
        wait_until(GONE_TIMEOUT, || holders(needle).is_empty()),
        "{what} {:?} still running after lsyncd exited\n--- log ---\n{log}",
        holders(needle)
    );
}

/// A config with a pidfile, a tunnel (`sleep TUNNEL`) and a sync whose action starts
/// `sleep CHILD` for any event except one on `go`, for which it runs `on_go`.
fn config(dir: &TestDir, pidfile: &Path, tunnel: &str, child: &str, on_go: &str) -> PathBuf {
    dir.config(
        "exits.lua",
        &format!(
            "settings{{ pidfile = {} }}\n\
             tunnel{{ command = {{ 'sleep', {} }}, readyDelay = 1, retryDelay = 1 }}\n\
             sync{{ source = {}, delay = 0, maxProcesses = 10,\n  \
               action = function( inlet )\n    \
                 local e = inlet.getEvent( )\n    \
                 if e.path:find( 'go' ) then {on_go} end\n    \
                 spawn( e, 'sleep', {} )\n  \
               end }}\n",
            lua_str(pidfile.to_str().expect("UTF-8")),
            lua_str(tunnel),
            lua_str(dir.path_str("src")),
            lua_str(child),
        ),
    )
}

/// A running daemon with its tunnel process, its pidfile and (if `with_child`) a child.
struct Running {
    dir: TestDir,
    daemon: Daemon,
    pidfile: PathBuf,
    tunnel: String,
    child: String,
    _guard: Leftovers,
}

fn running(on_go: &str, with_child: bool) -> Running {
    let dir = TestDir::new();
    let pidfile = dir.path("lsyncd.pid");
    let (tunnel, child) = (marker(), marker());
    let cfg = config(&dir, &pidfile, &tunnel, &child, on_go);
    let guard = Leftovers(vec![tunnel.clone(), child.clone()]);
    let mut daemon = Daemon::config(&dir, &cfg, &["-log", "Exec"]);
    daemon.wait_for("the tunnel process and the pidfile", || {
        !holders(&tunnel).is_empty() && pidfile.exists()
    });
    if with_child {
        dir.write("src/a", "a");
        daemon.wait_for("the child", || !holders(&child).is_empty());
    }
    Running {
        dir,
        daemon,
        pidfile,
        tunnel,
        child,
        _guard: guard,
    }
}

impl Running {
    /// The daemon exited with `code`, and left nothing behind.
    fn assert_clean_exit(mut self, code: i32) {
        let got = self.daemon.wait_exit(TIMEOUT);
        let log = self.daemon.log();
        assert_eq!(got, Some(code), "exit code\n--- log ---\n{log}");
        assert!(
            !self.pidfile.exists(),
            "pidfile left behind\n--- log ---\n{log}"
        );
        assert_gone(&self.tunnel, "tunnel process", &log);
        assert_gone(&self.child, "child", &log);
    }
}

#[test]
fn term_removes_pidfile_and_kills_the_tunnel() {
    let r = running("", false);
    r.daemon.signal("TERM");
    r.assert_clean_exit(143);
}

#[test]
fn int_removes_pidfile_and_kills_the_tunnel() {
    let r = running("", false);
    r.daemon.signal("INT");
    r.assert_clean_exit(130);
}

#[test]
fn fatal_lua_error_at_runtime_leaves_nothing_behind() {
    let r = running("error( 'boom in the action' )", true);
    r.dir.write("src/go", "go");
    let mut r = r;
    r.daemon.wait_log("boom in the action");
    r.assert_clean_exit(255);
}

#[test]
fn terminate_from_an_action_leaves_nothing_behind() {
    let r = running("terminate( 7 )", true);
    r.dir.write("src/go", "go");
    r.assert_clean_exit(7);
}

/// `terminate()` ends the daemon even when the config catches errors with `pcall`.
#[test]
fn terminate_cannot_be_caught_by_pcall() {
    let r = running(
        "pcall( terminate, 9 ); log( 'Normal', 'still running after terminate' )",
        true,
    );
    r.dir.write("src/go", "go");
    let log_of = |r: &Running| r.daemon.log();
    let mut r = r;
    assert_eq!(r.daemon.wait_exit(TIMEOUT), Some(9), "{}", log_of(&r));
    assert!(
        !r.daemon.log().contains("still running after terminate"),
        "Lua code ran after terminate()\n{}",
        r.daemon.log()
    );
    r.assert_clean_exit(9);
}

/// The startup rsync fails (the target's parent does not exist): fatal, and the pidfile of a
/// foreground daemon is removed.
#[test]
fn fatal_startup_error_in_foreground_removes_the_pidfile() {
    let dir = TestDir::new();
    let pidfile = dir.path("fg.pid");
    let missing = dir.path_str("missing/dst");
    let out = run(
        &dir,
        &[
            "-nodaemon",
            "-pidfile",
            pidfile.to_str().expect("UTF-8"),
            "-rsync",
            &dir.path_str("src"),
            &missing,
        ],
    );
    assert_eq!(out.code, 255, "{out:?}");
    assert!(
        out.stderr
            .contains("Terminating since \"insist\" is not set"),
        "{out:?}"
    );
    assert!(!pidfile.exists(), "pidfile left behind\n{out:?}");
    assert_gone(&missing, "rsync", &format!("{out:?}"));
}

/// The same in daemon mode: the detached daemon fails after writing its pidfile, and removes it.
#[test]
fn fatal_startup_error_in_daemon_mode_removes_the_pidfile() {
    let dir = TestDir::new();
    let pidfile = dir.path("bg.pid");
    let logfile = dir.path("bg.log");
    let src = dir.path_str("src");
    let missing = dir.path_str("missing/dst");
    let out = run(
        &dir,
        &[
            "-pidfile",
            pidfile.to_str().expect("UTF-8"),
            "-logfile",
            logfile.to_str().expect("UTF-8"),
            "-rsync",
            &src,
            &missing,
        ],
    );
    assert_eq!(out.code, 0, "the parent of a daemon exits 0\n{out:?}");
    let read_log = || fs::read_to_string(&logfile).unwrap_or_default();
    assert!(
        wait_until(TIMEOUT, || read_log()
            .contains("Terminating since \"insist\" is not set")),
        "the daemon did not fail\n--- logfile ---\n{}",
        read_log()
    );
    assert_gone(&missing, "the daemon or its rsync", &read_log());
    assert!(
        !pidfile.exists(),
        "pidfile left behind\n--- logfile ---\n{}",
        read_log()
    );
}
