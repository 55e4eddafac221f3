//! `make install` and `make uninstall`: which files land where, with which modes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::{have, manifest_dir};
use crate::util::{lsyncd_bin, TestDir};

#[test]
fn make_install_puts_every_file_where_a_distribution_expects_it() {
    assert!(have("make"), "make not found");
    let dir = TestDir::new();
    let bin = lsyncd_bin();
    let make = |dest: &Path, prefix: &str, target: &str| {
        let out = Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(manifest_dir())
            .arg(target)
            .arg(format!("DESTDIR={}", dest.display()))
            .arg(format!("PREFIX={prefix}"))
            .arg(format!("BIN={}", bin.display()))
            .output()
            .expect("run make");
        assert!(
            out.status.success(),
            "make {target} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mode = |p: &Path| {
        fs::metadata(p)
            .unwrap_or_else(|e| panic!("{p:?} not installed: {e}"))
            .permissions()
            .mode()
            & 0o7777
    };

    let dest = dir.path("pkg");
    // An administrator's config is never touched.
    let own_cfg = dir.write("pkg/etc/lsyncd/lsyncd.conf.lua", "-- mine\n");
    make(&dest, "/usr", "install");
    let p = |rel: &str| dest.join(rel);
    let expected: &[(&str, u32)] = &[
        ("usr/bin/lsyncd", 0o755),
        ("usr/share/man/man1/lsyncd.1", 0o644),
        ("lib/systemd/system/lsyncd.service", 0o644),
        ("etc/init.d/lsyncd", 0o755),
        ("etc/logrotate.d/lsyncd", 0o644),
        ("etc/sysctl.d/90-lsyncd-inotify.conf", 0o644),
        ("usr/share/doc/lsyncd/examples/lsyncd.conf.lua", 0o644),
    ];
    for (rel, want) in expected {
        assert_eq!(mode(&p(rel)), *want, "mode of {rel}");
    }
    assert_eq!(
        fs::read(p("usr/bin/lsyncd")).expect("installed binary"),
        fs::read(&bin).expect("built binary"),
        "installed binary differs from {bin:?}"
    );
    assert_eq!(
        fs::read(p("usr/share/man/man1/lsyncd.1")).ok(),
        fs::read(manifest_dir().join("man/lsyncd.1")).ok()
    );
    let unit = fs::read_to_string(p("lib/systemd/system/lsyncd.service")).expect("unit");
    assert!(
        unit.lines()
            .any(|l| l.starts_with("ExecStart=/usr/bin/lsyncd ")),
        "unit's ExecStart should run /usr/bin/lsyncd:\n{unit}"
    );
    assert!(unit.lines().any(|l| l == "Type=notify"), "{unit}");
    let sysctl = fs::read_to_string(p("etc/sysctl.d/90-lsyncd-inotify.conf")).expect("sysctl");
    assert!(
        sysctl
            .lines()
            .any(|l| l.trim_start().starts_with("fs.inotify.max_user_watches")),
        "{sysctl}"
    );
    let initd = p("etc/init.d/lsyncd");
    let syntax = Command::new("sh")
        .arg("-n")
        .arg(&initd)
        .output()
        .expect("sh -n");
    assert!(
        syntax.status.success(),
        "init script has shell syntax errors:\n{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    assert!(
        fs::read_to_string(&initd)
            .expect("init script")
            .contains("/usr/bin/lsyncd"),
        "init script should run the installed binary"
    );
    assert_eq!(fs::read(&own_cfg).ok().as_deref(), Some(&b"-- mine\n"[..]));

    // Another prefix moves the binary, and the unit follows it; /etc stays /etc.
    let dest2 = dir.path("pkg2");
    make(&dest2, "/usr/local", "install");
    assert_eq!(mode(&dest2.join("usr/local/bin/lsyncd")), 0o755);
    assert_eq!(
        mode(&dest2.join("usr/local/share/man/man1/lsyncd.1")),
        0o644
    );
    let unit2 = fs::read_to_string(dest2.join("lib/systemd/system/lsyncd.service")).expect("unit");
    assert!(
        unit2
            .lines()
            .any(|l| l.starts_with("ExecStart=/usr/local/bin/lsyncd ")),
        "{unit2}"
    );
    assert!(
        !dest2.join("etc/lsyncd/lsyncd.conf.lua").exists(),
        "install created a live config"
    );

    // uninstall removes what install put there, and nothing else.
    make(&dest, "/usr", "uninstall");
    for (rel, _) in expected {
        assert!(!p(rel).exists(), "{rel} left behind by uninstall");
    }
    assert_eq!(fs::read(&own_cfg).ok().as_deref(), Some(&b"-- mine\n"[..]));
}
