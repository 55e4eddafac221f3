//! Config test mode (`-t` / `-configtest`): a good config is summarised, every bad fixture
//! is rejected with the message a real start gives, and nothing is started.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::{lua_path, manifest_dir};
use crate::util::{lsyncd_bin, wait_until, TestDir, EXIT_TIMEOUT};

/// Runs the binary once in `dir`'s root with `root/bin` first in `PATH` (where a test puts a
/// recorder named `rsync`); fails the test if it does not exit within `EXIT_TIMEOUT`.
fn run_with_bin_path(dir: &TestDir, args: &[&str]) -> crate::util::Run {
    let path = format!(
        "{}:{}",
        dir.path_str("bin"),
        std::env::var("PATH").unwrap_or_default()
    );
    let (out, err) = (dir.path("t.stdout"), dir.path("t.stderr"));
    let mut child = Command::new(lsyncd_bin())
        .args(args)
        .current_dir(dir.root())
        .env("PATH", path)
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&out).expect("stdout capture"))
        .stderr(fs::File::create(&err).expect("stderr capture"))
        .spawn()
        .expect("start lsyncd");
    let mut status = None;
    wait_until(EXIT_TIMEOUT, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let r = crate::util::Run {
        code: status.map(crate::util::exit_code).unwrap_or(-1),
        stdout: read(&out),
        stderr: read(&err),
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("lsyncd {args:?} did not exit within {EXIT_TIMEOUT:?}\n{r:?}");
    }
    r
}

/// The first line holding `Error: `, from `Error: ` on (so a console time prefix is dropped).
fn first_error(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.find("Error: ").map(|i| &l[i..]))
}

#[test]
fn configtest_on_good_config_prints_summary_exits_0_and_starts_nothing() {
    let dir = TestDir::new();
    dir.write("src/f", "f\n");
    dir.mkdir("src2");
    let rec = dir.recorder_at("bin/rsync", crate::util::Then::Exit(0));
    let cfg = dir.config(
        "good.lua",
        &format!(
            "settings{{ statusFile = {} }}\n\
             sync{{ default.rsync, source = {}, target = {}, delay = 1 }}\n\
             sync{{ default.direct, source = {}, target = {} }}\n",
            lua_path(&dir.path("status")),
            lua_path(&dir.src()),
            lua_path(&dir.dst()),
            lua_path(&dir.path("src2")),
            lua_path(&dir.path("dst2")),
        ),
    );
    let cfg_s = cfg.to_str().expect("UTF-8");
    for flag in ["-t", "-configtest", "--configtest"] {
        let r = run_with_bin_path(&dir, &[flag, cfg_s]);
        assert_eq!(r.code, 0, "{flag}: {r:?}");
        let all = format!("{}{}", r.stdout, r.stderr);
        for source in [dir.path_str("src"), dir.path_str("src2")] {
            assert!(
                all.contains(&source),
                "{flag}: the summary should name the sync with source {source}\n{r:?}"
            );
        }
        assert!(
            !all.contains("--- Startup"),
            "{flag} entered the running phase\n{r:?}"
        );
    }
    assert!(
        rec.calls().is_empty(),
        "-t started rsync: {:?}",
        rec.calls()
    );
    assert!(!dir.exists("status"), "-t wrote the status file");
    assert!(!dir.exists("dst/f"), "-t transferred files");
}

#[test]
fn configtest_rejects_every_bad_config_with_its_message_and_starts_nothing() {
    let fixtures = manifest_dir().join("tests/fixtures/configs");
    let mut names: Vec<String> = fs::read_dir(&fixtures)
        .expect("fixtures dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("bad_") && n.ends_with(".lua"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 20,
        "bad config fixtures not found: {names:?}"
    );
    let mut failures = Vec::new();
    for name in &names {
        let dir = TestDir::new();
        dir.write("afile", "a regular file\n");
        let rec = dir.recorder_at("bin/rsync", crate::util::Then::Exit(0));
        let cfg = fixtures.join(name);
        let cfg_s = cfg.to_str().expect("UTF-8");
        // What a real start reports for this config ...
        let normal = run_with_bin_path(&dir, &["-nodaemon", cfg_s]);
        let want = first_error(&normal.stderr)
            .unwrap_or_else(|| panic!("{name}: a normal start reports no error\n{normal:?}"))
            .to_owned();
        // ... -t must report too, without starting anything.
        let before = rec.calls().len();
        let r = run_with_bin_path(&dir, &["-t", cfg_s]);
        if r.code == 0 {
            failures.push(format!("{name}: -t exited 0\n{r:?}"));
        } else if first_error(&r.stderr) != Some(want.as_str()) {
            failures.push(format!("{name}: -t should report {want:?}\n{r:?}"));
        }
        if r.stderr.contains("stack traceback:") {
            failures.push(format!(
                "{name}: -t printed a Lua traceback after the message (upstream prints the \
                 message alone)\n{r:?}"
            ));
        }
        if rec.calls().len() != before {
            failures.push(format!("{name}: -t started rsync"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
