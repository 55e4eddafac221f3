//! Pending changes above `settings{ maxPending }`: a collapsed Full still carries out the
//! deletions of `delete = 'running'` (and `true`); a layer 2/3 config collapses into its
//! `onFull`; a config with no way to take a Full keeps every change and says so once.
//!
//! Each test holds the changes back with a long `delay` instead of a broken target: the
//! pending queue grows the same way, and the outcome is decided by what the daemon runs next.

use std::fs;

use crate::util::{lua_str, rsync_path, Daemon, TestDir};

/// The lines of the list the config's shell actions append to.
fn lines(dir: &TestDir) -> Vec<String> {
    fs::read_to_string(dir.path("list"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn collapsed_full_deletes(mode: &str) {
    rsync_path();
    let dir = TestDir::new();
    for i in 0..5 {
        dir.write(format!("src/gone{i}"), "old\n");
    }
    dir.write("src/keep", "keep\n");
    let cfg = dir.config(
        "collapse.lua",
        &format!(
            "settings {{ maxPending = 10 }}\n\
             sync {{ default.rsync, source = 'src', target = 'dst', delay = 3, delete = {mode} }}\n"
        ),
    );
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_startup();
    d.wait_trees_equal(&dir.src(), &dir.dst());
    for i in 0..5 {
        dir.remove(format!("src/gone{i}"));
    }
    for i in 0..30 {
        dir.write(format!("src/new{i}"), "new\n");
    }
    d.wait_log("collapsed into one full transfer");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert!(!dir.exists("dst/gone0"), "{}", d.log());
}

#[test]
fn a_collapsed_full_deletes_what_delete_running_would_have_deleted() {
    collapsed_full_deletes("'running'");
}

#[test]
fn a_collapsed_full_deletes_what_delete_true_would_have_deleted() {
    collapsed_full_deletes("true");
}

/// A collapsed Full with `delete = 'startup'` deletes nothing: while running, that mode keeps
/// on the target what the source deleted.
#[test]
fn a_collapsed_full_with_delete_startup_keeps_deleted_files() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/gone", "old\n");
    let cfg = dir.config(
        "collapse.lua",
        "settings { maxPending = 10 }\n\
         sync { default.rsync, source = 'src', target = 'dst', delay = 3, delete = 'startup' }\n",
    );
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_startup();
    d.wait_for("gone mirrored", || dir.exists("dst/gone"));
    dir.remove("src/gone");
    for i in 0..30 {
        dir.write(format!("src/new{i}"), "new\n");
    }
    d.wait_log("collapsed into one full transfer");
    d.wait_for("new files mirrored", || dir.exists("dst/new29"));
    assert!(dir.exists("dst/gone"), "{}", d.log());
}

#[test]
fn without_a_full_action_every_change_is_kept_and_the_limit_logged_once() {
    let dir = TestDir::new();
    dir.mkdir("src");
    let list = lua_str(dir.path_str("list"));
    let cfg = dir.config(
        "nofull.lua",
        &format!(
            "settings {{ maxPending = 10 }}\n\
             sync {{ source = 'src', delay = 3, maxProcesses = 1,\n\
                     onCreate = 'echo c ^pathname >> '..{list},\n\
                     onModify = 'echo m ^pathname >> '..{list} }}\n"
        ),
    );
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_log("watching");
    for i in 0..30 {
        dir.write(format!("src/f{i}"), "x\n");
    }
    let names = || {
        let mut names: Vec<String> = lines(&dir)
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    d.wait_for("30 files acted on", || names().len() >= 30);
    let names = names();
    assert_eq!(names.len(), 30, "{:?}\n{}", lines(&dir), d.log());
    let warned = d.log().matches("no full or onFull action").count();
    assert_eq!(warned, 1, "{}", d.log());
    assert!(!d.log().contains("collapsed into"), "{}", d.log());
}

#[test]
fn a_layer_2_config_with_on_full_collapses_into_it() {
    let dir = TestDir::new();
    dir.mkdir("src");
    let list = lua_str(dir.path_str("list"));
    let cfg = dir.config(
        "onfull.lua",
        &format!(
            "settings {{ maxPending = 10 }}\n\
             sync {{ source = 'src', delay = 3,\n\
                     onCreate = 'echo c ^pathname >> '..{list},\n\
                     onFull = function(event) spawnShell(event, 'echo full >> '..{list}) end }}\n"
        ),
    );
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_log("watching");
    for i in 0..30 {
        dir.write(format!("src/f{i}"), "x\n");
    }
    d.wait_log("collapsed into one full transfer");
    d.wait_for("the full action", || {
        lines(&dir).iter().any(|l| l == "full")
    });
    assert!(lines(&dir).len() < 30, "{:?}", lines(&dir));
}
