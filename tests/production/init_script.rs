//! The System V init script `init/lsyncd`, run for real (`/bin/sh`, `start-stop-daemon`, the
//! LSB functions) against a defaults file in a temp dir (`LSYNCD_DEFAULTS`) that points
//! `DAEMON` at the built binary: every action's LSB exit code, the failure cases included, and
//! Debian's `/etc/default/lsyncd` variables (`DAEMON_ARGS` replacing the arguments when it names
//! a config, `NICELEVEL`, `CONFIG`, `PIDFILE`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{alive, lua_path, manifest_dir, read_pidfile, sh_word, stat_field, Detached};
use crate::util::{exit_code, lsyncd_bin, rsync_path, wait_until, TestDir, TIMEOUT};

/// A temp dir with a good config, a defaults file and the daemon's log.
struct Init {
    dir: TestDir,
    defaults: PathBuf,
    pidfile: PathBuf,
    logfile: PathBuf,
}

impl Init {
    fn new() -> Init {
        rsync_path();
        for (what, path) in [
            (
                "the LSB functions (sysvinit-utils)",
                "/lib/lsb/init-functions",
            ),
            ("start-stop-daemon (dpkg)", "/sbin/start-stop-daemon"),
        ] {
            assert!(
                Path::new(path).exists(),
                "{path} missing: the init script needs {what}; make deps installs it"
            );
        }
        let dir = TestDir::new();
        dir.write("src/f", "f\n");
        let logfile = dir.path("lsyncd.log");
        let pidfile = dir.path("lsyncd.pid");
        let init = Init {
            defaults: dir.path("defaults"),
            dir,
            pidfile,
            logfile,
        };
        init.write_config("good.lua", true);
        init.write_config("broken.lua", false);
        init.set_defaults(&[]);
        init
    }

    /// A config syncing src to dst (with a syntax error unless `good`).
    fn write_config(&self, name: &str, good: bool) -> PathBuf {
        let close = if good { "}" } else { "" };
        self.dir.config(
            name,
            &format!(
                "settings{{ logfile = {} }}\nsync{{ default.rsync, source = {}, target = {}, delay = 1 {close}\n",
                lua_path(&self.logfile),
                lua_path(&self.dir.src()),
                lua_path(&self.dir.dst()),
            ),
        )
    }

    /// Writes the defaults file: DAEMON, CONFIG (good.lua), PIDFILE, then `extra` lines.
    fn set_defaults(&self, extra: &[String]) {
        let mut text = format!(
            "DAEMON={}\nCONFIG={}\nPIDFILE={}\n",
            sh_word(&lsyncd_bin()),
            sh_word(&self.dir.path("good.lua")),
            sh_word(&self.pidfile),
        );
        for l in extra {
            text.push_str(l);
            text.push('\n');
        }
        fs::write(&self.defaults, text).expect("write defaults");
    }

    /// Runs `sh init/lsyncd ACTION` and returns its exit code and output.
    fn run(&self, action: &str) -> (i32, String) {
        let out = self.dir.path("init.out");
        let file = fs::File::create(&out).expect("capture");
        let mut child = Command::new("sh")
            .arg(manifest_dir().join("init/lsyncd"))
            .arg(action)
            .env("LSYNCD_DEFAULTS", &self.defaults)
            // Run the script itself, never a systemctl redirection of it.
            .env("SYSTEMCTL_SKIP_REDIRECT", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .expect("run the init script");
        let mut status = None;
        wait_until(TIMEOUT * 2, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        let text = String::from_utf8_lossy(&fs::read(&out).unwrap_or_default()).into_owned();
        let Some(status) = status else {
            let _ = child.kill();
            panic!("init script {action} did not exit\n{text}");
        };
        (exit_code(status), text)
    }

    /// Asserts `action` exits `want`.
    fn expect(&self, action: &str, want: i32, why: &str) -> String {
        let (code, text) = self.run(action);
        assert_eq!(
            code,
            want,
            "`init/lsyncd {action}` ({why})\n{text}\n--- defaults ---\n{}\n--- log ---\n{}",
            fs::read_to_string(&self.defaults).unwrap_or_default(),
            fs::read_to_string(&self.logfile).unwrap_or_default()
        );
        text
    }

    /// The running daemon's pid from `pidfile`, with a guard that stops it if the test fails.
    fn running(&self, pidfile: &Path) -> (u32, Detached) {
        let pid = read_pidfile(pidfile).unwrap_or_else(|| panic!("no pid in {pidfile:?}"));
        assert!(alive(pid), "pid {pid} from {pidfile:?} is not running");
        (pid, Detached { pid })
    }
}

/// The command line of `pid`, one entry per argument.
fn cmdline(pid: u32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[test]
fn init_script_actions_exit_with_lsb_codes() {
    let t = Init::new();
    // Not running.
    t.expect("status", 3, "not running");
    t.expect("reload", 7, "reload when not running");
    t.expect("force-reload", 7, "force-reload when not running");
    t.expect("stop", 0, "stop when stopped");
    t.expect("try-restart", 0, "try-restart when stopped starts nothing");
    assert!(!t.pidfile.exists(), "try-restart started the daemon");
    t.expect("bogus", 2, "unknown action");
    t.expect("", 2, "no action");
    let out = t.expect("configtest", 0, "good config");
    assert!(out.contains("Configuration OK"), "{out}");

    // Start: the daemon runs with the defaults' NICELEVEL and writes PIDFILE.
    t.set_defaults(&[
        "NICELEVEL=5".into(),
        "LSYNCD_OPTS=-insist".into(),
        "DAEMON_ARGS='-log Exec'".into(),
    ]);
    t.expect("start", 0, "start");
    let (pid, _guard) = t.running(&t.pidfile);
    let own_nice: i32 = stat_field(std::process::id(), 19)
        .and_then(|n| n.parse().ok())
        .expect("our nice value");
    let nice: i32 = stat_field(pid, 19)
        .and_then(|n| n.parse().ok())
        .expect("nice value");
    assert_eq!(nice, (own_nice + 5).min(19), "NICELEVEL=5 not applied");
    let args = cmdline(pid);
    assert_eq!(
        args[1..],
        [
            "-pidfile".to_string(),
            t.pidfile.display().to_string(),
            "-insist".into(),
            "-log".into(),
            "Exec".into(),
            t.dir.path_str("good.lua")
        ],
        "LSYNCD_OPTS and DAEMON_ARGS without a config come before CONFIG"
    );
    assert!(
        wait_until(TIMEOUT, || t.dir.read("dst/f").is_some()),
        "the started daemon did not sync"
    );
    t.expect("start", 0, "start when running");
    assert_eq!(
        read_pidfile(&t.pidfile),
        Some(pid),
        "a second daemon started"
    );
    t.expect("status", 0, "running");

    // Reload: a HUP in place.
    t.expect("reload", 0, "reload");
    assert!(
        wait_until(TIMEOUT, || fs::read_to_string(&t.logfile)
            .unwrap_or_default()
            .contains("HUP signal")),
        "reload sent no HUP\n{}",
        fs::read_to_string(&t.logfile).unwrap_or_default()
    );
    assert_eq!(
        read_pidfile(&t.pidfile),
        Some(pid),
        "reload changed the process"
    );

    // A broken config fails configtest, reload, restart and try-restart, and the running daemon
    // is left alone.
    t.set_defaults(&[format!("CONFIG={}", sh_word(&t.dir.path("broken.lua")))]);
    let out = t.expect("configtest", 1, "broken config");
    assert!(
        out.contains("broken.lua"),
        "configtest names no file\n{out}"
    );
    t.expect("reload", 1, "reload with a broken config");
    t.expect("restart", 1, "restart with a broken config");
    t.expect("try-restart", 1, "try-restart with a broken config");
    assert_eq!(
        read_pidfile(&t.pidfile),
        Some(pid),
        "the daemon was touched"
    );
    assert!(alive(pid), "the daemon was stopped");

    // Restart with the good config: a new process.
    t.set_defaults(&[]);
    t.expect("restart", 0, "restart");
    let (pid2, _guard2) = t.running(&t.pidfile);
    assert_ne!(pid2, pid, "restart kept the old process");
    assert!(!alive(pid), "old process still running after restart");
    t.expect("try-restart", 0, "try-restart when running");
    let (pid3, _guard3) = t.running(&t.pidfile);
    assert_ne!(pid3, pid2, "try-restart did not restart");

    // Stop: the process ends and the pidfile is gone.
    t.expect("stop", 0, "stop");
    assert!(!alive(pid3), "still running after stop");
    assert!(!t.pidfile.exists(), "pidfile left after stop");
    t.expect("status", 3, "stopped");

    // A pidfile left by a dead process (one we reaped: the daemon may linger as a zombie).
    let mut gone = Command::new("true").spawn().expect("spawn true");
    gone.wait().expect("reap true");
    fs::write(&t.pidfile, format!("{}\n", gone.id())).expect("stale pidfile");
    t.expect("status", 1, "dead with a pidfile");
    fs::remove_file(&t.pidfile).expect("remove stale pidfile");

    // A broken config fails start; a missing one is "not configured".
    t.set_defaults(&[format!("CONFIG={}", sh_word(&t.dir.path("broken.lua")))]);
    t.expect("start", 1, "start with a broken config");
    assert!(
        !t.pidfile.exists(),
        "start with a broken config wrote a pidfile"
    );
    t.set_defaults(&[format!("CONFIG={}", sh_word(&t.dir.path("none.lua")))]);
    t.expect("start", 6, "start without a config");
    t.expect("configtest", 6, "configtest without a config");
    t.expect("restart", 6, "restart without a config");

    // No binary: removed but not purged.
    fs::write(
        &t.defaults,
        format!("DAEMON={}\n", sh_word(&t.dir.path("no-such-lsyncd"))),
    )
    .expect("defaults");
    t.expect("start", 0, "start without the binary");
    t.expect("status", 4, "status without the binary");
}

#[test]
fn init_script_debian_daemon_args_naming_a_config_replace_the_arguments() {
    let t = Init::new();
    // Debian's common setting: the whole argument list, with its own pidfile and config.
    let own_pid = t.dir.path("debian.pid");
    let own_cfg = t.dir.path("good.lua");
    t.set_defaults(&[
        format!("CONFIG={}", sh_word(&t.dir.path("broken.lua"))),
        format!(
            "DAEMON_ARGS=\"-insist -pidfile {} {}\"",
            own_pid.display(),
            own_cfg.display()
        ),
    ]);
    t.expect("configtest", 0, "configtest checks DAEMON_ARGS's config");
    t.expect("start", 0, "start with Debian's DAEMON_ARGS");
    let (pid, _guard) = t.running(&own_pid);
    assert_eq!(
        cmdline(pid)[1..],
        [
            "-insist".to_string(),
            "-pidfile".into(),
            own_pid.display().to_string(),
            own_cfg.display().to_string()
        ],
        "DAEMON_ARGS naming a config must be the whole argument list"
    );
    assert!(
        !t.pidfile.exists(),
        "PIDFILE used although DAEMON_ARGS names one"
    );
    let nice: i32 = stat_field(pid, 19)
        .and_then(|n| n.parse().ok())
        .expect("nice");
    let own_nice: i32 = stat_field(std::process::id(), 19)
        .and_then(|n| n.parse().ok())
        .expect("our nice");
    assert_eq!(
        nice,
        (own_nice + 10).min(19),
        "Debian's default NICELEVEL is 10"
    );
    t.expect("status", 0, "status follows DAEMON_ARGS's pidfile");
    t.expect("reload", 0, "reload");
    t.expect("stop", 0, "stop");
    assert!(!alive(pid), "still running after stop");
    assert!(!own_pid.exists(), "pidfile left after stop");

    // A shortcut sync in DAEMON_ARGS names a config too; PIDFILE is added.
    t.set_defaults(&[format!(
        "DAEMON_ARGS=\"-delay 1 -rsync {} {}\"",
        t.dir.src().display(),
        t.dir.path("dst2").display()
    )]);
    t.expect("start", 0, "start with -rsync in DAEMON_ARGS");
    let (pid, _guard) = t.running(&t.pidfile);
    assert_eq!(
        cmdline(pid)[1..],
        [
            "-pidfile".to_string(),
            t.pidfile.display().to_string(),
            "-delay".into(),
            "1".into(),
            "-rsync".into(),
            t.dir.src().display().to_string(),
            t.dir.path("dst2").display().to_string()
        ]
    );
    assert!(
        wait_until(TIMEOUT, || t.dir.read("dst2/f").is_some()),
        "the -rsync daemon did not sync"
    );
    t.expect("stop", 0, "stop");
    assert!(!alive(pid), "still running after stop");
}
