//! `default.direct` (SPEC §11) and the `-direct` shortcut: local mirroring with one
//! mkdir / cp / rm / mv per event (each row of the event table checked on its `Exec:` log
//! line), the delete modes, the refusal to mirror onto `/`, symlinks created while running
//! arriving as symlinks, and renames that replace an empty directory or a symlink.
//!
//! The last three assert this layer's deliberate improvements over upstream (see the header
//! of lua/default-direct.lua) and fail against upstream (`LSYNCD_BIN`), harmlessly: the
//! refusal tests run every command through recording stand-ins, never a real rsync or rm.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::util::{lua_str, rsync_path, wait_until, Daemon, TestDir, EXIT_TIMEOUT};

/// `sync{ default.direct, source = "src", target = <abs dst>, ... }` plus `extra`.
fn config(dir: &TestDir, extra: &str) -> PathBuf {
    dir.config(
        "direct.lua",
        &format!(
            "sync{{\n    default.direct,\n    source = \"src\",\n    target = {},\n    \
             delay = 1,\n{extra}}}\n",
            lua_str(dir.path_str("dst"))
        ),
    )
}

/// `(SRC, TRG)` as they appear in spawned argv: realpath of the source and the configured
/// target, each with its trailing slash (event paths then add a second one, SPEC §7.3).
fn roots(dir: &TestDir) -> (String, String) {
    let src = fs::canonicalize(dir.src()).expect("realpath src");
    (
        format!("{}/", src.display()),
        format!("{}/", dir.path_str("dst")),
    )
}

#[test]
fn cli_direct_mirrors_startup_and_live_changes() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/top.txt", "top\n");
    dir.write("src/a/b/deep.txt", "deep\n");
    dir.write("src/gone.txt", "gone\n");
    dir.write("src/gone-dir/sub/f", "gone\n");
    dir.symlink("a/b/deep.txt", "src/startup-link");
    dir.write("dst/stray.txt", "not in source\n");
    // No -delay: default.direct's own delay is 1 s.
    let mut d = Daemon::start(&dir, &["-direct", "src", "dst"]);
    d.wait_log("Startup of \"");
    d.wait_trees_equal(&dir.src(), &dir.dst());

    dir.write("src/new.txt", "new\n");
    dir.write("src/newdir/inner/f.txt", "inner\n");
    dir.write("src/top.txt", "top, modified\n");
    dir.remove("src/gone.txt");
    dir.remove("src/gone-dir");
    dir.rename("src/a", "src/a-moved");
    dir.write("src/a-moved/b/after-move.txt", "after\n");
    d.wait_trees_equal(&dir.src(), &dir.dst());
}

#[test]
fn each_event_kind_spawns_its_command_from_the_spec_table() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/existing.txt", "v1\n");
    dir.write("src/mv-from", "moving\n");
    dir.write("src/perm.txt", "perm\n");
    // A wrapper action turns a Create of `make-full` into a Full event (2.3,
    // inlet.createFullEvent) and leaves everything else to default.direct.
    let cfg = config(
        &dir,
        "    action = function(inlet)\n\
         \x20       local e = inlet.getEvent()\n\
         \x20       if e and e.etype == 'Create' and e.basename == 'make-full' then\n\
         \x20           inlet.discardEvent(e)\n\
         \x20           inlet.createFullEvent('/')\n\
         \x20           return\n\
         \x20       end\n\
         \x20       return default.direct.action(inlet)\n\
         \x20   end,\n",
    );
    let (s, t) = roots(&dir);
    let mut d = Daemon::config(&dir, &cfg, &["-log", "Exec"]);
    d.wait_log("Startup of \"");
    d.wait_trees_equal(&dir.src(), &dir.dst());

    // Create, directory: [mkdir, --, TP] (no -p).
    dir.mkdir("src/nd");
    d.wait_log(&format!("Exec: mkdir [--] [{t}/nd/]\n"));
    // Create, file (and the Modify of its close): [cp, -p, --, SP, TPD].
    dir.write("src/nd/f2", "f2\n");
    d.wait_log(&format!("Exec: cp [-p] [--] [{s}/nd/f2] [{t}/nd/]\n"));
    // Modify, file: the same cp.
    let before = d.log().matches(&format!("[{s}/existing.txt]")).count();
    fs::OpenOptions::new()
        .append(true)
        .open(dir.path("src/existing.txt"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"v2\n"))
        .expect("append");
    d.wait_log_count(
        &format!("Exec: cp [-p] [--] [{s}/existing.txt] [{t}/]\n"),
        before + 1,
    );
    // Delete: [rm, -rf, --, TP], for a file and for a directory.
    dir.remove("src/nd/f2");
    d.wait_log(&format!("Exec: rm [-rf] [--] [{t}/nd/f2]\n"));
    dir.remove("src/nd");
    d.wait_log(&format!("Exec: rm [-rf] [--] [{t}/nd/]\n"));
    // Move: spawnShell with the mv-or-remove command, origin and destination as $1 $2.
    dir.rename("src/mv-from", "src/mv-to");
    d.wait_log(&format!(
        "Exec: sh [-c] [mv -- \"$1\" \"$2\" || rm -rf -- \"$1\"] [sh] [{t}/mv-from] [{t}/mv-to]\n"
    ));
    // Attrib: ignored with a warning.
    fs::set_permissions(dir.path("src/perm.txt"), fs::Permissions::from_mode(0o600))
        .expect("chmod");
    d.wait_log("Warn: ignored an event of type \"Attrib\"");
    // Full (2.3): the recursive rsync of default.rsync.
    let fulls = d.log().matches("recursive full rsync: ").count();
    dir.write("src/make-full", "");
    d.wait_log_count("recursive full rsync: ", fulls + 1);
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert!(d.try_exit().is_none(), "{}", d.log());
}

/// One `delete` mode: startup deletes (rsync --delete), running deletes (rm -rf) and the
/// move command (with or without the rm fallback).
fn check_delete_mode(mode: &str, at_startup: bool, while_running: bool) {
    rsync_path();
    let dir = TestDir::new();
    let cfg = config(&dir, &format!("    delete = {mode},\n"));
    dir.write("src/keep.txt", "keep\n");
    dir.write("src/gone-while-stopped.txt", "x\n");
    dir.write("src/gone-while-stopped-dir/f", "x\n");
    dir.write("src/gone-while-running.txt", "x\n");
    dir.write("src/gone-while-running-dir/sub/f", "x\n");
    dir.write("src/move-me", "m\n");

    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_log("Startup of \"");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert_eq!(d.terminate(), 143, "{}", d.log());
    drop(d);

    dir.remove("src/gone-while-stopped.txt");
    dir.remove("src/gone-while-stopped-dir");
    dir.write("dst/stray.txt", "never in source\n");
    let mut d = Daemon::config(&dir, &cfg, &["-log", "Exec"]);
    d.wait_log("Startup of \"");
    for p in [
        "gone-while-stopped.txt",
        "gone-while-stopped-dir",
        "stray.txt",
    ] {
        assert_eq!(
            dir.exists(format!("dst/{p}")),
            !at_startup,
            "delete = {mode}: dst/{p} after startup\n{}",
            d.log()
        );
    }

    dir.remove("src/gone-while-running.txt");
    dir.remove("src/gone-while-running-dir");
    dir.rename("src/move-me", "src/moved");
    dir.write("src/marker.txt", "marker\n");
    d.wait_for("marker and move mirrored", || {
        dir.exists("dst/marker.txt") && dir.exists("dst/moved")
    });
    for p in ["gone-while-running.txt", "gone-while-running-dir"] {
        assert_eq!(
            dir.exists(format!("dst/{p}")),
            !while_running,
            "delete = {mode}: dst/{p} after its live delete\n{}",
            d.log()
        );
    }
    let log = d.log();
    assert_eq!(log.contains("Exec: rm "), while_running, "{log}");
    let mv = if while_running {
        "[mv -- \"$1\" \"$2\" || rm -rf -- \"$1\"]"
    } else {
        "[mv -- \"$1\" \"$2\"]"
    };
    assert!(log.contains(&format!("Exec: sh [-c] {mv} [sh] ")), "{log}");
    assert!(!dir.exists("dst/move-me") && dir.exists("dst/keep.txt"));
}

#[test]
fn delete_true_removes_at_startup_and_while_running() {
    check_delete_mode("true", true, true);
}

#[test]
fn delete_false_never_removes_and_moves_without_fallback() {
    check_delete_mode("false", false, false);
}

#[test]
fn delete_startup_removes_only_at_startup() {
    check_delete_mode("'startup'", true, false);
}

#[test]
fn delete_running_removes_only_while_running() {
    check_delete_mode("'running'", false, true);
}

/// Stand-ins for every command default.direct may run (`rsync`, `cp`, `rm`, `mv`, `mkdir`,
/// `sh`), first in PATH, and a `fakebin/rsync` path for `rsync.binary` (upstream 2.2.3 runs
/// `/usr/bin/rsync` unless told otherwise): each only records its call. The refusal tests run
/// with these, so a binary that failed to refuse (upstream does not) still touches nothing.
fn fake_commands(dir: &TestDir) -> (String, PathBuf, PathBuf) {
    let bin = dir.mkdir("fakebin");
    let calls = dir.path("fakebin.calls");
    fs::write(&calls, "").expect("create calls file");
    for name in ["rsync", "cp", "rm", "mv", "mkdir", "sh", "ssh"] {
        let p = bin.join(name);
        fs::write(
            &p,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"{name} $*\" >> '{}'\nexit 0\n",
                calls.display()
            ),
        )
        .expect("write fake command");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, calls, bin.join("rsync"))
}

/// A direct sync onto `target` (with `delete` unless nil) is refused before anything runs.
fn check_refuses(target: &str, delete: &str) {
    let dir = TestDir::new();
    dir.write("src/f", "f\n");
    let (path, calls, rsync) = fake_commands(&dir);
    let cfg = dir.config(
        "root.lua",
        &format!(
            "sync{{ default.direct, source = \"src\", target = {}, delete = {delete}, \
             rsync = {{ binary = {} }} }}\n",
            lua_str(target),
            lua_str(rsync.to_str().expect("utf-8"))
        ),
    );
    let mut d = Daemon::start_with(&dir, &[&cfg], |cmd| {
        cmd.env("PATH", &path);
    });
    let code = d.wait_exit(EXIT_TIMEOUT);
    assert_eq!(code, Some(255), "target {target:?}\n{}", d.log());
    assert!(
        d.log().contains("Refusing to erase your harddisk!"),
        "target {target:?}\n{}",
        d.log()
    );
    assert_eq!(
        fs::read_to_string(&calls).unwrap_or_default(),
        "",
        "target {target:?}: no command may run"
    );
}

#[test]
fn root_target_is_refused_before_anything_runs() {
    check_refuses("/", "nil");
}

#[test]
fn empty_target_is_refused_before_anything_runs() {
    // default.rsync's prepare turns "" into "/".
    check_refuses("", "nil");
}

#[test]
fn root_target_spelled_differently_is_refused_in_every_delete_mode() {
    check_refuses("//./", "true");
    check_refuses("/tmp/..", "'startup'");
    check_refuses("/./", "'running'");
}

#[test]
fn symlinks_created_while_running_arrive_as_symlinks() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/f", "f\n");
    dir.write("src/sub/g", "g\n");
    dir.write("outside.txt", "must never be written\n");
    dir.write("src/will-be-file", "placeholder\n");
    let cfg = config(&dir, "");
    let mut d = Daemon::config(&dir, &cfg, &["-log", "Exec"]);
    d.wait_log("Startup of \"");
    d.wait_trees_equal(&dir.src(), &dir.dst());

    dir.symlink("f", "src/relative");
    dir.symlink("/etc/hostname", "src/absolute");
    dir.symlink("no/such/thing", "src/dangling");
    dir.symlink("sub", "src/to-dir");
    dir.symlink("/", "src/to-root");
    dir.symlink("../f", "src/sub/up");
    d.wait_trees_equal(&dir.src(), &dir.dst());

    // Links are moved and deleted as links too.
    dir.rename("src/relative", "src/sub/relative-moved");
    dir.remove("src/to-dir");
    d.wait_trees_equal(&dir.src(), &dir.dst());

    // A link replaced by a regular file of the same name (one Create after the Delete is
    // folded into it): the copy replaces the link, it is not written through it.
    dir.remove("src/will-be-file");
    dir.symlink("../outside.txt", "src/will-be-file");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    dir.remove("src/will-be-file");
    dir.write("src/will-be-file", "now a file\n");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert_eq!(
        fs::read_to_string(dir.path("outside.txt")).expect("read"),
        "must never be written\n"
    );
    // And the other way round: a file replaced by a link.
    dir.remove("src/f");
    dir.symlink("sub/g", "src/f");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert!(wait_until(EXIT_TIMEOUT, || d.try_exit().is_none()));
}

/// rename(2) in the source: a directory replaces an empty one, a file replaces a symlink (to
/// a directory outside the tree). Plain `mv` on the target would move *into* the old
/// destination, through the symlink; the layer clears the destination first (SPEC §11 argv
/// otherwise unchanged).
fn check_rename_replacing(delete: &str, clear: &str) {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/a/f", "f\n");
    dir.mkdir("src/b");
    dir.write("src/file", "file\n");
    dir.mkdir("outside");
    dir.symlink("../outside", "src/link");
    let cfg = config(&dir, &format!("    delete = {delete},\n"));
    let mut d = Daemon::config(&dir, &cfg, &["-log", "Exec"]);
    d.wait_log("Startup of \"");
    d.wait_trees_equal(&dir.src(), &dir.dst());

    dir.rename("src/a", "src/b");
    dir.rename("src/file", "src/link");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert_eq!(
        fs::read_dir(dir.path("outside")).expect("readdir").count(),
        0,
        "nothing may be moved through the target's symlink\n{}",
        d.log()
    );
    let want = format!("Exec: sh [-c] [{clear}mv -- \"$1\" \"$2\"");
    assert_eq!(
        d.log().matches(&want).count(),
        2,
        "want {want}\n{}",
        d.log()
    );
}

#[test]
fn renames_replacing_an_empty_directory_or_a_symlink_replace_them_on_the_target() {
    check_rename_replacing("true", "rm -rf -- \"${2%/}\"; ");
}

#[test]
fn renames_replacing_without_deletes_remove_only_empty_directories_and_symlinks() {
    check_rename_replacing(
        "false",
        "{ rmdir -- \"${2%/}\" || rm -f -- \"${2%/}\"; } 2>/dev/null; ",
    );
}
