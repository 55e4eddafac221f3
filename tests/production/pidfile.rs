//! Daemon mode and the pidfile (SPEC §13.2, §13.3): detaching, the locked pidfile, a second
//! instance, removal on exit.

use std::fs;
use std::path::PathBuf;

use super::{
    alive, logfile_line, lua_path, processes_mentioning, read_pidfile, stat_field, Detached,
};
use crate::util::{
    rsync_path, run, send_signal, wait_until, Daemon, TestDir, EXIT_TIMEOUT, TIMEOUT,
};

#[test]
fn daemon_mode_detaches_writes_locked_pidfile_and_removes_it_on_term() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/f", "f\n");
    let pidfile = dir.path("lsyncd.pid");
    let logfile = dir.path("daemon.log");
    let cfg = dir.config(
        "daemon.lua",
        &format!(
            "settings{{ logfile = {} }}\n\
             sync{{ default.rsync, source = {}, target = {}, delay = 1 }}\n",
            lua_path(&logfile),
            lua_path(&dir.src()),
            lua_path(&dir.dst()),
        ),
    );
    let cfg_s = cfg.to_str().expect("UTF-8").to_owned();
    let pid_s = pidfile.to_str().expect("UTF-8").to_owned();

    // The invoking process returns 0 at once; the daemon lives on.
    let first = run(&dir, &["-pidfile", &pid_s, &cfg_s]);
    assert_eq!(
        first.code, 0,
        "parent of the daemonizing process\n{first:?}"
    );
    assert!(
        wait_until(TIMEOUT, || read_pidfile(&pidfile).is_some()),
        "pidfile {pidfile:?} never held a pid\n--- logfile ---\n{}",
        fs::read_to_string(&logfile).unwrap_or_default()
    );
    let pid = read_pidfile(&pidfile).expect("pid");
    let _guard = Detached { pid };
    assert!(alive(pid), "pid {pid} from the pidfile is not running");
    assert_eq!(
        processes_mentioning(&cfg_s),
        vec![pid],
        "exactly one lsyncd with this config should run, the one in the pidfile"
    );
    // Detached: re-parented away from us, its own session, cwd `/`, std streams on /dev/null.
    let ppid: u32 = stat_field(pid, 4)
        .and_then(|s| s.parse().ok())
        .expect("ppid");
    assert_ne!(ppid, std::process::id(), "daemon is still our child");
    let sid = stat_field(pid, 6).expect("session id");
    let our_sid = stat_field(std::process::id(), 6).expect("our session id");
    assert_ne!(sid, our_sid, "daemon did not leave our session");
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/cwd")).ok(),
        Some(PathBuf::from("/")),
        "daemon's working directory"
    );
    for fd in 0..3 {
        assert_eq!(
            fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok(),
            Some(PathBuf::from("/dev/null")),
            "daemon's fd {fd}"
        );
    }
    // It works: the startup sync ran, and a live change arrives.
    assert!(
        wait_until(TIMEOUT, || dir.read("dst/f").is_some()),
        "startup sync did not run in the daemon"
    );
    dir.write("src/g", "g\n");
    assert!(
        wait_until(TIMEOUT, || dir.read("dst/g").as_deref() == Some(b"g\n")),
        "live change not mirrored by the daemon\n--- logfile ---\n{}",
        fs::read_to_string(&logfile).unwrap_or_default()
    );
    let log = fs::read_to_string(&logfile).expect("logfile");
    let startup = log.lines().find_map(logfile_line);
    assert!(
        matches!(startup, Some((_, "Normal", "--- Startup, daemonizing ---"))),
        "first logfile line should be `<ctime> Normal: --- Startup, daemonizing ---`\n{log}"
    );

    // HUP: a full restart inside the same process; no second fork, the pidfile stays.
    send_signal(pid, "HUP");
    let restarted = || {
        let log = fs::read_to_string(&logfile).unwrap_or_default();
        log.split_once("Normal: --- HUP signal, resetting ---")
            .is_some_and(|(_, after)| {
                after.contains("Normal: --- Startup ---") && after.contains("finished")
            })
    };
    assert!(
        wait_until(TIMEOUT, restarted),
        "no restart after HUP\n--- logfile ---\n{}",
        fs::read_to_string(&logfile).unwrap_or_default()
    );
    let log = fs::read_to_string(&logfile).expect("logfile");
    assert_eq!(
        log.matches("--- Startup, daemonizing ---").count(),
        1,
        "HUP restart daemonized again\n{log}"
    );
    assert_eq!(
        processes_mentioning(&cfg_s),
        vec![pid],
        "HUP changed the process"
    );
    assert_eq!(read_pidfile(&pidfile), Some(pid), "HUP changed the pidfile");

    // A second instance with the same pidfile: its parent still returns 0 (the lock is taken
    // after the fork, as upstream), the child logs upstream's message and exits.
    let second = run(&dir, &["-pidfile", &pid_s, &cfg_s]);
    assert_eq!(second.code, 0, "parent of the second instance\n{second:?}");
    let want = format!("Error: Cannot lock pidfile; '{pid_s}'");
    assert!(
        wait_until(TIMEOUT, || fs::read_to_string(&logfile)
            .unwrap_or_default()
            .contains(&want)),
        "second instance did not log {want:?}\n--- logfile ---\n{}",
        fs::read_to_string(&logfile).unwrap_or_default()
    );
    assert!(
        wait_until(TIMEOUT, || processes_mentioning(&cfg_s) == vec![pid]),
        "second instance still running: {:?} (first: {pid})",
        processes_mentioning(&cfg_s)
    );
    assert_eq!(
        read_pidfile(&pidfile),
        Some(pid),
        "pidfile changed by the second instance"
    );
    assert!(alive(pid), "first daemon died when the second one started");

    // TERM: fades, exits, removes the pidfile.
    send_signal(pid, "TERM");
    assert!(
        wait_until(TIMEOUT, || !alive(pid)),
        "daemon ignored SIGTERM"
    );
    assert!(
        wait_until(EXIT_TIMEOUT, || !pidfile.exists()),
        "pidfile {pidfile:?} left behind after TERM"
    );
    let log = fs::read_to_string(&logfile).expect("logfile");
    assert!(
        log.contains("Normal: --- TERM signal, fading ---"),
        "no TERM line in the logfile\n{log}"
    );
}

#[test]
fn second_nodaemon_instance_with_held_pidfile_fails_with_255() {
    rsync_path();
    let dir = TestDir::new();
    let pidfile = dir.path("run.pid");
    let pid_s = pidfile.to_str().expect("UTF-8").to_owned();
    let (src, dst) = (dir.path_str("src"), dir.path_str("dst"));
    let mut d = Daemon::start(&dir, &["-pidfile", &pid_s, "-rsync", &src, &dst]);
    d.wait_startup();
    let second = run(
        &dir,
        &["-nodaemon", "-pidfile", &pid_s, "-rsync", &src, &dst],
    );
    assert_eq!(second.code, 255, "{second:?}");
    assert!(
        second
            .stderr
            .contains(&format!("Cannot lock pidfile; '{pid_s}'")),
        "{second:?}"
    );
    assert_eq!(
        read_pidfile(&pidfile),
        Some(d.pid()),
        "pidfile was overwritten"
    );
    assert_eq!(d.terminate(), 143);
}

#[test]
fn nodaemon_with_pidfile_writes_and_removes_it() {
    rsync_path();
    let dir = TestDir::new();
    // Relative path, resolved against the working directory at startup (SPEC §15 item 10).
    let pidfile = dir.path("rel.pid");
    fs::write(&pidfile, "999999999 stale content that must be truncated\n").expect("prefill");
    let (src, dst) = (dir.path_str("src"), dir.path_str("dst"));
    let mut d = Daemon::start(&dir, &["-pidfile", "rel.pid", "-rsync", &src, &dst]);
    let pid = d.pid();
    d.wait_for("the pidfile to hold our pid", || {
        fs::read_to_string(&pidfile).ok() == Some(format!("{pid}\n"))
    });
    d.wait_startup();
    assert_eq!(d.terminate(), 143);
    assert!(!pidfile.exists(), "pidfile left behind after TERM");
}
