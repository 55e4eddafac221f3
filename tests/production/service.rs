//! The systemd units (`init/lsyncd.service`, the template `init/lsyncd@.service`) and how the
//! daemon behaves under a service manager: both units pass `systemd-analyze verify`, the
//! template matches the main unit setting for setting, the hardening keeps the exposure score
//! low without the options a tree-reading daemon cannot live with, and a stop that signals the
//! whole process group during the startup transfer still ends with exit 143 (what
//! `KillMode=control-group` or a System V shutdown does).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::{have, lua_path, manifest_dir, script, sh_word};
use crate::util::{lsyncd_bin, rsync_path, Daemon, TestDir, TIMEOUT};

/// The unit's directives (`Key=value` lines and section headers), comments dropped.
fn directives(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn unit_text(name: &str) -> String {
    let p = manifest_dir().join("init").join(name);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {p:?}: {e}"))
}

/// Copies both units into `dir` with the binary's real path, as `make install` does.
fn installed_units(dir: &TestDir) -> std::path::PathBuf {
    let units = dir.mkdir("units");
    for name in ["lsyncd.service", "lsyncd@.service"] {
        let text = unit_text(name).replace("/usr/bin/lsyncd", &lsyncd_bin().to_string_lossy());
        fs::write(units.join(name), text).expect("write unit");
    }
    units
}

fn systemd_analyze(args: &[&str], unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn units_pass_systemd_analyze_verify() {
    assert!(
        have("systemd-analyze"),
        "systemd-analyze not found (apt-get install systemd; make deps installs it)"
    );
    let dir = TestDir::new();
    let units = installed_units(&dir);
    for name in ["lsyncd.service", "lsyncd@.service", "lsyncd@web.service"] {
        let (ok, text) = systemd_analyze(&["verify"], &units.join(name));
        // verify prints nothing for a clean unit; any line is a warning about ours.
        assert!(
            ok && text.trim().is_empty(),
            "systemd-analyze verify {name}:\n{text}"
        );
    }
}

#[test]
fn units_are_hardened_without_breaking_a_tree_reading_daemon() {
    let main = directives(&unit_text("lsyncd.service"));
    let template = directives(&unit_text("lsyncd@.service"));
    for d in [&main, &template] {
        for must in [
            "EnvironmentFile=-/etc/default/lsyncd",
            "KillMode=mixed",
            "SuccessExitStatus=143",
            "Restart=on-abnormal",
            "RestartForceExitStatus=255",
            "NoNewPrivileges=yes",
            "ProtectKernelModules=yes",
        ] {
            assert!(d.iter().any(|l| l == must), "{must} missing:\n{d:#?}");
        }
        for never in [
            "ProtectSystem=strict",
            "ProtectHome",
            "PrivateTmp",
            "PrivateDevices",
            "RestrictSUIDSGID",
            "Restart=on-failure",
            "Restart=always",
        ] {
            assert!(
                !d.iter().any(|l| l.starts_with(never)),
                "{never} does not fit a daemon reading any tree or must not be set:\n{d:#?}"
            );
        }
        let pre = d
            .iter()
            .find(|l| l.starts_with("ExecStartPre="))
            .expect("ExecStartPre= checks the config");
        assert!(pre.contains(" -t "), "{pre}");
        let start = d
            .iter()
            .find(|l| l.starts_with("ExecStart="))
            .expect("ExecStart");
        assert!(start.contains("$LSYNCD_OPTS"), "{start}");
    }
    // The template is the main unit with the instance's config, pidfile and defaults.
    let instance: Vec<String> = main
        .iter()
        .filter(|l| !l.starts_with("ConditionPathExists=") && !l.starts_with("Description="))
        .map(|l| {
            l.replace("/etc/lsyncd/lsyncd.conf.lua", "/etc/lsyncd/%i.conf.lua")
                .replace("/run/lsyncd.pid", "/run/lsyncd-%i.pid")
        })
        .collect();
    let template_rest: Vec<String> = template
        .iter()
        .filter(|l| {
            *l != "EnvironmentFile=-/etc/default/lsyncd-%i" && !l.starts_with("Description=")
        })
        .cloned()
        .collect();
    assert_eq!(
        template_rest, instance,
        "lsyncd@.service drifted from lsyncd.service"
    );

    if have("systemd-analyze") {
        let dir = TestDir::new();
        let units = installed_units(&dir);
        let (_, text) = systemd_analyze(
            &["security", "--offline=yes"],
            &units.join("lsyncd.service"),
        );
        let score: f64 = text
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for lsyncd.service: "))
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
        assert!(score <= 5.0, "exposure {score} (want at most 5.0):\n{text}");
    }
}

/// Sends `sig` to every process of the group `pgid`.
fn signal_group(pgid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} -{pgid} failed");
}

/// Starts lsyncd as the leader of its own process group with a startup transfer that runs
/// until the group is signalled (`rsync` through `wrapper`), and waits until it runs.
fn startup_in_flight(dir: &TestDir, wrapper_body: &str) -> Daemon {
    rsync_path();
    dir.write("src/f", "f\n");
    let started = dir.path("started");
    let wrapper = script(
        dir,
        "rsync-wrapper.sh",
        &format!("echo x > {}\n{wrapper_body}", sh_word(&started)),
    );
    let cfg = dir.config(
        "group.lua",
        &format!(
            "sync{{ default.rsync, source = {}, target = {}, delay = 1, rsync = {{ binary = {} }} }}\n",
            lua_path(&dir.src()),
            lua_path(&dir.dst()),
            lua_path(&wrapper),
        ),
    );
    let mut d = Daemon::start_with(dir, &[cfg.as_os_str()], |cmd| {
        cmd.process_group(0);
    });
    d.wait_for("the startup transfer to run", || started.exists());
    d
}

#[test]
fn group_sigterm_during_startup_transfer_exits_143_when_rsync_exits_20() {
    let dir = TestDir::new();
    // rsync catches SIGTERM and exits 20; the wrapper execs it, slowed down on a big file.
    dir.write("src/big", vec![b'x'; 4 << 20]);
    let mut d = startup_in_flight(
        &dir,
        &format!("exec {} --bwlimit=1 \"$@\"\n", sh_word(&rsync_path())),
    );
    d.wait_for("rsync to write its temp file", || {
        fs::read_dir(dir.dst()).is_ok_and(|mut es| {
            es.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".big")))
        })
    });
    signal_group(d.pid(), "TERM");
    let code = d.wait_exit(TIMEOUT);
    assert_eq!(code, Some(143), "{}", d.log());
    assert_eq!(d.status().and_then(|s| s.code()), Some(143), "{}", d.log());
}

#[test]
fn group_sigterm_during_startup_transfer_exits_143_when_rsync_dies_of_it() {
    let dir = TestDir::new();
    // The transfer process does not catch SIGTERM: it dies of the signal.
    let mut d = startup_in_flight(&dir, "exec sleep 60\n");
    signal_group(d.pid(), "TERM");
    let code = d.wait_exit(TIMEOUT);
    assert_eq!(d.status().and_then(|s| s.code()), Some(143), "{}", d.log());
    assert_eq!(code, Some(143));
}
