//! Syslog as the log destination of a daemon without a logfile (SPEC §12.4): lines reach the
//! syslog socket as `Category, message` with the configured ident and facility.
//!
//! The test is the syslog daemon: in a private mount namespace `/dev/log` is a link to a
//! datagram socket the test reads (the machine's own /dev is left alone).

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{lsyncd_bin, lua_str, rsync_path, send_signal, TestDir};

fn receive_until(sock: &UnixDatagram, got: &mut Vec<String>, needle: &str) -> bool {
    let end = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 8192];
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            let line = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = line.contains(needle);
            got.push(line);
            if hit {
                return true;
            }
        }
    }
    false
}

#[test]
fn daemon_without_logfile_logs_to_syslog_with_ident_and_facility() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/a.txt", "a\n");
    dir.mkdir("olddev");
    let sock_path = dir.path("log.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind the syslog socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let pidfile = dir.path("lsyncd.pid");
    let config = dir.config(
        "syslog.lua",
        &format!(
            "settings{{ logident = 'lsyncd-test', logfacility = 'local3', pidfile = {} }}\n\
             sync{{ default.rsync, source = {}, target = {}, delay = 1 }}\n",
            lua_str(pidfile.to_string_lossy().as_bytes()),
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
        ),
    );
    let setup = "mount --make-rprivate / && mount --bind /dev \"$1/olddev\" \
                 && mount -t tmpfs tmpfs /dev && touch /dev/null \
                 && mount --bind \"$1/olddev/null\" /dev/null \
                 && ln -s \"$1/log.sock\" /dev/log && exec \"$2\" \"$3\"";
    let status = Command::new("unshare")
        .args(["-m", "sh", "-c", setup, "sh"])
        .arg(dir.root())
        .arg(lsyncd_bin())
        .arg(&config)
        .status()
        .expect("run unshare");
    assert_eq!(status.code(), Some(0), "the daemonizing parent exits 0");

    let mut got = Vec::new();
    let startup = receive_until(&sock, &mut got, "Startup of");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .expect("pidfile");
    send_signal(pid, "TERM");
    let term = receive_until(&sock, &mut got, "TERM signal");
    assert!(startup && term, "syslog lines: {got:#?}");
    // local3 = 19, notice = 5: <157>
    let line = got
        .iter()
        .find(|l| l.contains("Startup of"))
        .expect("startup line");
    assert!(line.starts_with("<157>"), "priority and facility: {line}");
    assert!(
        line.contains(" lsyncd-test: Normal, Startup of "),
        "ident and format: {line}"
    );
}
