//! `delete` modes of default.rsync (SPEC §9.6): whether files deleted while lsyncd was stopped
//! (or never in the source) disappear from the target at startup, and whether files deleted
//! while it runs disappear then.

use crate::util::{rsync_path, Daemon, Mon, TestDir};

fn config(mode: &str) -> String {
    format!(
        "sync{{ default.rsync, source = \"src\", target = \"dst\", delay = 1, delete = {mode} }}\n"
    )
}

/// Runs the scenario for one `delete` value and checks the expected outcome.
fn check_delete_mode(mon: Mon, mode: &str, deletes_at_startup: bool, deletes_while_running: bool) {
    rsync_path();
    let dir = TestDir::with_monitor(mon);
    let cfg = dir.config("delete.lua", &config(mode));
    dir.write("src/keep.txt", "keep\n");
    dir.write("src/gone-while-stopped.txt", "soon gone\n");
    dir.write("src/gone-while-stopped-dir/f", "soon gone\n");
    dir.write("src/gone-while-running.txt", "gone later\n");
    dir.write("src/gone-while-running-dir/sub/f", "gone later\n");

    // First run: everything is mirrored (the target starts empty, no deletes involved).
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_startup();
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert_eq!(d.terminate(), 143, "{}", d.log());
    drop(d);

    // While stopped: delete from the source, and put a stray file into the target.
    dir.remove("src/gone-while-stopped.txt");
    dir.remove("src/gone-while-stopped-dir");
    dir.write("dst/stray-in-target.txt", "never in source\n");

    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_startup();
    for p in [
        "gone-while-stopped.txt",
        "gone-while-stopped-dir",
        "stray-in-target.txt",
    ] {
        assert_eq!(
            dir.exists(format!("dst/{p}")),
            !deletes_at_startup,
            "delete = {mode}: after startup, dst/{p} should {}exist\n--- log ---\n{}",
            if deletes_at_startup { "not " } else { "" },
            d.log()
        );
    }

    // While running: delete, then create a marker in the same batch.
    dir.remove("src/gone-while-running.txt");
    dir.remove("src/gone-while-running-dir");
    dir.write("src/marker.txt", "marker\n");
    d.wait_for("marker.txt mirrored", || dir.exists("dst/marker.txt"));
    for p in ["gone-while-running.txt", "gone-while-running-dir"] {
        assert_eq!(
            dir.exists(format!("dst/{p}")),
            !deletes_while_running,
            "delete = {mode}: dst/{p} should {}exist after its live delete\n--- log ---\n{}",
            if deletes_while_running { "not " } else { "" },
            d.log()
        );
    }
    assert!(dir.exists("dst/keep.txt"));
}

both_monitors! {
    fn delete_true_removes_at_startup_and_while_running(mon) {
        check_delete_mode(mon, "true", true, true);
    }
}

both_monitors! {
    fn delete_false_never_removes_from_target(mon) {
        check_delete_mode(mon, "false", false, false);
    }
}

both_monitors! {
    fn delete_startup_removes_only_at_startup(mon) {
        check_delete_mode(mon, "'startup'", true, false);
    }
}

both_monitors! {
    fn delete_running_removes_only_while_running(mon) {
        check_delete_mode(mon, "'running'", false, true);
    }
}

both_monitors! {
    fn delete_default_is_true_for_rsync_shortcut(mon) {
        rsync_path();
        let dir = TestDir::with_monitor(mon);
        dir.write("src/keep.txt", "keep\n");
        dir.write("src/victim.txt", "victim\n");
        dir.write("dst/stray.txt", "stray\n");
        let (src, dst) = (dir.path_str("src"), dir.path_str("dst"));
        let mut d = Daemon::start(&dir, &["-delay", "1", "-rsync", &src, &dst]);
        d.wait_startup();
        d.wait_trees_equal(&dir.src(), &dir.dst());
        dir.remove("src/victim.txt");
        d.wait_trees_equal(&dir.src(), &dir.dst());
    }
}
