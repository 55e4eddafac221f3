//! `crontab` (SPEC §14.3, evaluated natively on wall-clock local time, §15 item 24): a due rule
//! queues a Full event, which runs a full rsync; an invalid rule is refused at startup.

use crate::util::{lua_str, rsync_path, run, Daemon, TestDir};

#[test]
fn crontab_every_two_seconds_runs_full_syncs_that_repair_the_target() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/a.txt", "a\n");
    let config = dir.config(
        "cron.lua",
        &format!(
            "sync{{ default.rsync, source = {}, target = {}, delay = 1,\n\
             crontab = {{ '*/2 * * * * *' }} }}\n",
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst"))
        ),
    );
    let mut d = Daemon::config(&dir, &config, &["-log", "Info"]);
    d.wait_startup();
    d.wait_trees_equal(&dir.src(), &dir.dst());
    // Behind the daemon's back: no event will ever report these.
    dir.remove("dst/a.txt");
    dir.write("dst/stray.txt", "not in the source\n");
    d.wait_log("Crontab triggered full sync");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_log_count("Crontab triggered full sync", 2);
    d.wait_log_count("recursive full rsync", 3);
}

#[test]
fn invalid_crontab_rule_is_refused_at_startup() {
    let dir = TestDir::new();
    let config = dir.config(
        "badcron.lua",
        &format!(
            "sync{{ default.rsync, source = {}, target = {}, crontab = {{ '* * * * *', '61 * * * * *' }} }}\n",
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst"))
        ),
    );
    let r = run(&dir, &["-nodaemon".as_ref(), config.as_os_str()]);
    assert_eq!(r.code, 255, "{r:?}");
    assert!(
        r.stderr
            .contains("Sync: Sync1 - crontab rule 1 is not valid: "),
        "{r:?}"
    );
    assert!(r.stderr.contains(". Rule: * * * * *"), "{r:?}");
}
