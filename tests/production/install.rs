//! `make install`, `make uninstall` and `make package-deb` (what `make deb` runs after the
//! build): which files land where, with which modes; that the default install stays inside its
//! prefix; and the Debian package's control data and contents, read back with `dpkg-deb`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{have, manifest_dir};
use crate::util::{lsyncd_bin, TestDir};

/// Runs `make -C <source tree> TARGET VARS... BIN=<built binary>`; fails the test on error.
fn make(target: &str, vars: &[String]) -> String {
    assert!(have("make"), "make not found");
    let out = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(manifest_dir())
        .arg(target)
        .args(vars)
        .arg(format!("BIN={}", lsyncd_bin().display()))
        .output()
        .expect("run make");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "make {target} {vars:?} failed:\n{text}"
    );
    text
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{p:?} not installed: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

/// Every file and symlink below `root`, relative, sorted.
fn files_below(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("read {d:?}: {e}")) {
            let p = e.expect("dir entry").path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).expect("below root").to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// The variables of a distribution layout, as packagers (and `make deb`) set them.
fn distribution(dest: &Path) -> Vec<String> {
    vec![
        format!("DESTDIR={}", dest.display()),
        "PREFIX=/usr".into(),
        "SYSCONFDIR=/etc".into(),
        "UNITDIR=/lib/systemd/system".into(),
        "LOGDIR=/var/log/lsyncd".into(),
    ]
}

#[test]
fn make_install_with_the_distribution_layout_puts_every_file_where_expected() {
    let dir = TestDir::new();
    let dest = dir.path("pkg");
    // An administrator's config is never touched.
    let own_cfg = dir.write("pkg/etc/lsyncd/lsyncd.conf.lua", "-- mine\n");
    make("install", &distribution(&dest));
    let p = |rel: &str| dest.join(rel);
    let expected: &[(&str, u32)] = &[
        ("usr/bin/lsyncd", 0o755),
        ("usr/share/man/man1/lsyncd.1", 0o644),
        ("lib/systemd/system/lsyncd.service", 0o644),
        ("lib/systemd/system/lsyncd@.service", 0o644),
        ("etc/init.d/lsyncd", 0o755),
        ("etc/logrotate.d/lsyncd", 0o644),
        ("etc/sysctl.d/90-lsyncd-inotify.conf", 0o644),
        ("usr/share/doc/lsyncd/examples/lsyncd.conf.lua", 0o644),
        ("usr/share/doc/lsyncd/examples/default", 0o644),
    ];
    for (rel, want) in expected {
        assert_eq!(mode(&p(rel)), *want, "mode of {rel}");
    }
    assert!(p("var/log/lsyncd").is_dir(), "log directory not created");
    assert_eq!(
        fs::read(p("usr/bin/lsyncd")).expect("installed binary"),
        fs::read(lsyncd_bin()).expect("built binary"),
        "installed binary differs from the built one"
    );
    assert_eq!(
        fs::read(p("usr/share/man/man1/lsyncd.1")).ok(),
        fs::read(manifest_dir().join("man/lsyncd.1")).ok()
    );
    // With these paths the service files are the ones in init/, unchanged.
    for (installed, source) in [
        ("lib/systemd/system/lsyncd.service", "init/lsyncd.service"),
        ("lib/systemd/system/lsyncd@.service", "init/lsyncd@.service"),
        ("etc/init.d/lsyncd", "init/lsyncd"),
        ("etc/logrotate.d/lsyncd", "init/lsyncd.logrotate"),
    ] {
        assert_eq!(
            fs::read_to_string(p(installed)).ok(),
            fs::read_to_string(manifest_dir().join(source)).ok(),
            "{installed} differs from {source}"
        );
    }
    let syntax = Command::new("sh")
        .arg("-n")
        .arg(p("etc/init.d/lsyncd"))
        .output()
        .expect("sh -n");
    assert!(
        syntax.status.success(),
        "init script has shell syntax errors:\n{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    assert_eq!(fs::read(&own_cfg).ok().as_deref(), Some(&b"-- mine\n"[..]));

    // uninstall removes what install put there, and nothing else.
    make("uninstall", &distribution(&dest));
    for (rel, _) in expected {
        assert!(!p(rel).exists(), "{rel} left behind by uninstall");
    }
    assert_eq!(fs::read(&own_cfg).ok().as_deref(), Some(&b"-- mine\n"[..]));
}

#[test]
fn make_install_with_a_prefix_writes_nothing_outside_it() {
    let dir = TestDir::new();
    let dest = dir.path("root");
    make(
        "install",
        &[
            format!("DESTDIR={}", dest.display()),
            "PREFIX=/usr/local".into(),
        ],
    );
    let top: Vec<String> = fs::read_dir(&dest)
        .expect("DESTDIR")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, ["usr"], "install wrote outside /usr/local");
    let usr: Vec<String> = fs::read_dir(dest.join("usr"))
        .expect("usr")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(usr, ["local"], "install wrote outside /usr/local");
    let files = files_below(&dest.join("usr/local"));
    for want in [
        "bin/lsyncd",
        "share/man/man1/lsyncd.1",
        "lib/systemd/system/lsyncd.service",
        "lib/systemd/system/lsyncd@.service",
        "etc/init.d/lsyncd",
    ] {
        assert!(
            files.contains(&PathBuf::from(want)),
            "{want} not installed under /usr/local: {files:?}"
        );
    }
    // The service files follow the prefix: binary, config directory, defaults file.
    let unit =
        fs::read_to_string(dest.join("usr/local/lib/systemd/system/lsyncd.service")).expect("unit");
    assert!(
        unit.lines().any(|l| l
            == "ExecStart=/usr/local/bin/lsyncd -nodaemon -pidfile /run/lsyncd.pid $LSYNCD_OPTS \
                /usr/local/etc/lsyncd/lsyncd.conf.lua"),
        "{unit}"
    );
    assert!(
        unit.lines()
            .any(|l| l == "EnvironmentFile=-/usr/local/etc/default/lsyncd"),
        "{unit}"
    );
    let init = fs::read_to_string(dest.join("usr/local/etc/init.d/lsyncd")).expect("init");
    for want in [
        "DAEMON=/usr/local/bin/lsyncd",
        "CONFIG=/usr/local/etc/lsyncd/lsyncd.conf.lua",
        "DEFAULTS=\"${LSYNCD_DEFAULTS:-/usr/local/etc/default/lsyncd}\"",
    ] {
        assert!(init.lines().any(|l| l == want), "{want} missing:\n{init}");
    }
    assert!(
        !dest.join("usr/local/etc/lsyncd/lsyncd.conf.lua").exists(),
        "install created a live config"
    );
}

/// `dpkg-deb ARGS` on `deb`, its stdout.
fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("run dpkg-deb");
    assert!(
        out.status.success(),
        "dpkg-deb {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn make_deb_builds_a_package_replacing_debians_lsyncd() {
    assert!(
        have("dpkg-deb") && have("objdump") && have("strip"),
        "dpkg-deb, objdump and strip are needed (dpkg, binutils)"
    );
    let dir = TestDir::new();
    let out = dir.path("out");
    make("package-deb", &[format!("DEBOUT={}", out.display())]);
    let debs: Vec<PathBuf> = fs::read_dir(&out)
        .expect("DEBOUT")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one package expected: {debs:?}");
    let deb = &debs[0];

    let field = |name: &str| {
        let v = dpkg_deb(&["--field"], deb);
        v.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {name} field:\n{v}"))
    };
    assert_eq!(field("Package"), "lsyncd-rs");
    let version = field("Version");
    let newer = Command::new("dpkg")
        .args(["--compare-versions", &version, "gt", "2.2.3-1+b1"])
        .status()
        .expect("dpkg --compare-versions");
    assert!(
        newer.success(),
        "{version} is not newer than Debian's 2.2.3-1+b1"
    );
    assert!(version.starts_with("2.3.1+"), "{version}");
    let depends = field("Depends");
    assert!(
        depends.split(", ").any(|d| d == "rsync"),
        "Depends: {depends}"
    );
    assert_eq!(field("Recommends"), "openssh-client");
    assert!(field("Provides").starts_with("lsyncd (= "), "Provides");
    assert_eq!(field("Conflicts"), "lsyncd");
    assert_eq!(field("Replaces"), "lsyncd");
    let info = dpkg_deb(&["--info"], deb);
    let description: Vec<&str> = info
        .lines()
        .skip_while(|l| !l.starts_with(" Description: "))
        .collect();
    assert!(
        (2..=10).contains(&description.len()),
        "the description should be a synopsis and a short paragraph:\n{info}"
    );

    // Conffiles: exactly the files under /etc.
    let ctrl = dir.path("control");
    let st = Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb)
        .arg(&ctrl)
        .status()
        .expect("dpkg-deb --control");
    assert!(st.success());
    let conffiles = fs::read_to_string(ctrl.join("conffiles")).expect("conffiles");
    let contents = dpkg_deb(&["--contents"], deb);
    let paths: Vec<&str> = contents
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.'))
        .collect();
    let etc_files: Vec<&str> = contents
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.'))
        .filter(|p| p.starts_with("/etc/"))
        .collect();
    let mut listed: Vec<&str> = conffiles.lines().collect();
    listed.sort_unstable();
    let mut want = etc_files.clone();
    want.sort_unstable();
    assert_eq!(listed, want, "conffiles must list every file under /etc");
    assert!(listed.contains(&"/etc/init.d/lsyncd"), "{listed:?}");
    for script in ["postinst", "prerm", "postrm"] {
        assert_eq!(mode(&ctrl.join(script)), 0o755, "{script}");
    }
    for want in [
        "/usr/bin/lsyncd",
        "/usr/share/man/man1/lsyncd.1.gz",
        "/usr/share/doc/lsyncd-rs/copyright",
        "/lib/systemd/system/lsyncd.service",
        "/lib/systemd/system/lsyncd@.service",
        "/etc/init.d/lsyncd",
        "/etc/lsyncd/",
    ] {
        assert!(
            paths.contains(&want),
            "{want} not in the package:\n{contents}"
        );
    }
    assert!(
        !paths.iter().any(|p| p.starts_with("/usr/local") || *p == "/etc/default/lsyncd"),
        "the package must not ship /usr/local or the administrator's /etc/default/lsyncd:\n{contents}"
    );
    assert!(
        !paths.contains(&"/etc/lsyncd/lsyncd.conf.lua"),
        "the package must not ship a live config"
    );

    // The binary is stripped, the man page gzipped.
    let root = dir.path("x");
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&root)
        .status()
        .expect("dpkg-deb -x");
    assert!(st.success());
    let syms = Command::new("objdump")
        .arg("--syms")
        .arg(root.join("usr/bin/lsyncd"))
        .output()
        .expect("objdump");
    let syms = String::from_utf8_lossy(&syms.stdout);
    assert!(
        syms.contains("no symbols"),
        "binary not stripped:\n{}",
        &syms[..syms.len().min(400)]
    );
    let man = fs::read(root.join("usr/share/man/man1/lsyncd.1.gz")).expect("man page");
    assert_eq!(&man[..2], &[0x1f, 0x8b], "man page not gzipped");
    let version_out = Command::new(root.join("usr/bin/lsyncd"))
        .arg("-version")
        .output()
        .expect("run the packaged binary");
    assert!(
        String::from_utf8_lossy(&version_out.stdout).starts_with("Version: 2.3.1\n"),
        "the packaged binary does not run"
    );
}
