//! systemd readiness (Type=notify units): with `NOTIFY_SOCKET` set the daemon sends `READY=1`
//! only once the startup transfer finished, then `STATUS=` lines, `WATCHDOG=1` within half of
//! `WATCHDOG_USEC`, `RELOADING=1` and a new `READY=1` around a HUP, and `STOPPING=1` on TERM. The test is the listening end of the datagram socket, as systemd would be.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::util::{lua_str, rsync_path, Daemon, TestDir};

/// The listening end of `NOTIFY_SOCKET` in the test dir, polled every 50 ms, and its path.
fn notify_socket(dir: &TestDir) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.path("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    (sock, path)
}

/// Collects datagrams for up to `timeout`, stopping early once `until` matched one.
fn receive(sock: &UnixDatagram, got: &mut Vec<String>, timeout: Duration, until: &str) -> bool {
    let end = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = msg.starts_with(until);
            got.push(msg);
            if hit {
                return true;
            }
        }
    }
    false
}

#[test]
fn ready_comes_after_the_startup_transfer_then_status_and_stopping() {
    let rsync = rsync_path();
    let dir = TestDir::new();
    dir.write("src/a.txt", "a\n");
    // The startup rsync waits for a gate file, so "not ready yet" can be observed.
    let gate = dir.path("gate");
    let gated = dir.write(
        "gated-rsync.sh",
        format!(
            "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.05; done\nexec '{}' \"$@\"\n",
            gate.display(),
            rsync.display()
        ),
    );
    std::fs::set_permissions(&gated, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let config = dir.config(
        "notify.lua",
        &format!(
            "sync{{ default.rsync, source = {}, target = {}, delay = 1, rsync = {{ binary = {} }} }}\n",
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
            lua_str(gated.to_string_lossy().as_bytes())
        ),
    );
    let (sock, sock_path) = notify_socket(&dir);
    let mut d = Daemon::start_with(&dir, &[config.as_os_str()], |cmd| {
        cmd.env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "400000");
    });

    let mut got = Vec::new();
    d.wait_log("recursive full rsync");
    let early = receive(&sock, &mut got, Duration::from_millis(1500), "READY=1");
    assert!(
        !early,
        "READY=1 before the startup transfer finished: {got:?}"
    );

    // Meanwhile systemd was asked for more start time.
    assert!(
        got.iter().any(|m| m == "EXTEND_TIMEOUT_USEC=30000000"),
        "no EXTEND_TIMEOUT_USEC= while starting: {got:?}"
    );
    std::fs::write(&gate, b"").expect("open the gate");
    assert!(
        receive(&sock, &mut got, Duration::from_secs(20), "READY=1"),
        "no READY=1: {got:?}"
    );
    d.wait_startup();

    dir.write("src/b.txt", "b\n");
    assert!(
        receive(
            &sock,
            &mut got,
            Duration::from_secs(20),
            "STATUS=1 sync: 1 ok; 0 pending, lag 0 s; 1 directories watched"
        ),
        "no STATUS= line: {got:?}"
    );
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert!(
        receive(&sock, &mut got, Duration::from_secs(5), "WATCHDOG=1"),
        "no WATCHDOG=1: {got:?}"
    );

    // HUP: RELOADING=1, then READY=1 again once the new run's startup transfer is done.
    got.clear();
    d.signal("HUP");
    assert!(
        receive(&sock, &mut got, Duration::from_secs(20), "RELOADING=1"),
        "no RELOADING=1: {got:?}"
    );
    assert!(
        receive(&sock, &mut got, Duration::from_secs(20), "READY=1"),
        "no READY=1 after HUP: {got:?}"
    );

    d.signal("TERM");
    assert!(
        receive(&sock, &mut got, Duration::from_secs(20), "STOPPING=1"),
        "no STOPPING=1: {got:?}"
    );
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(143));
}

/// `src` with `n` empty sub-directories and a config syncing it to `dst`.
fn tree_of_dirs(dir: &TestDir, n: usize) -> std::path::PathBuf {
    for i in 0..n {
        dir.mkdir(format!("src/d{i}"));
    }
    dir.config(
        "dirs.lua",
        &format!(
            "sync{{ default.rsync, source = {}, target = {}, delay = 0 }}\n",
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
        ),
    )
}

#[test]
fn a_long_startup_walk_logs_progress_and_sends_it_as_status() {
    let dir = TestDir::new();
    let config = tree_of_dirs(&dir, 1100);
    let (sock, sock_path) = notify_socket(&dir);
    // Interval 0: a progress line at every check (each 256 directories).
    let mut d = Daemon::start_with(&dir, &[config.as_os_str()], |cmd| {
        cmd.env("NOTIFY_SOCKET", &sock_path)
            .env("LSYNCD_PROGRESS_INTERVAL", "0");
    });
    let mut got = Vec::new();
    assert!(
        receive(&sock, &mut got, Duration::from_secs(30), "READY=1"),
        "no READY=1: {got:?}"
    );
    d.wait_startup();
    let log = d.log();
    for n in [256, 512, 768, 1024] {
        let line = format!("Normal: Startup: watching {n} directories so far (");
        assert!(log.contains(&line), "no {line:?} in\n{log}");
        let status = format!("STATUS=Startup: watching {n} directories so far (");
        assert!(
            got.iter().any(|m| m.starts_with(&status)),
            "no {status:?} in {got:?}"
        );
    }
    assert!(
        log.contains("Normal: Startup: watching 1101 directories, took "),
        "{log}"
    );
    let extend = got.iter().position(|m| m == "EXTEND_TIMEOUT_USEC=30000000");
    let ready = got.iter().position(|m| m == "READY=1");
    assert!(extend.is_some() && extend < ready, "{got:?}");
}

#[test]
fn a_short_startup_walk_prints_no_progress() {
    let dir = TestDir::new();
    let config = tree_of_dirs(&dir, 300);
    let mut d = Daemon::start_with(&dir, &[config.as_os_str()], |cmd| {
        cmd.env_remove("LSYNCD_PROGRESS_INTERVAL");
    });
    d.wait_startup();
    assert!(!d.log().contains("Startup: watching"), "{}", d.log());
}
