//! Exclusions (SPEC §5): `exclude` patterns of every shape and an `excludeFrom` file keep
//! matching paths out of the target, both in the startup transfer (rsync's own matching,
//! §5.6) and live (lsyncd's matching on events, §5.2), while everything else is mirrored.

use crate::util::{fixture, rsync_path, Daemon, TestDir};

/// Written as `excludes.txt`: comments, `+` lines and blank lines are skipped, a leading `-`
/// is stripped (SPEC §5.3).
const EXCLUDE_FILE: &str = "# secrets never leave the machine\n\
                            secret.key\n\
                            \n\
                            + this line is not a pattern\n\
                            - /logs/\n";

/// Paths (relative to src/ and dst/) that must be mirrored at startup.
const KEPT: &[&str] = &[
    "keep.txt",
    "a.tmpl",
    "a/keep.c",
    "a/x.o",
    "a/deep/keep.c",
    "a/build/out",
    "a/logs/l",
    "b/cache",
];

/// Paths that must never reach the target at startup.
const EXCLUDED: &[&str] = &[
    "x.tmp",
    "a/y.tmp",
    "dir.tmp/inner",
    "build/out",
    "cache/c1",
    "a/cache/c2",
    "a/deep/x.o",
    "a/b/deep/y.o",
    "secret.key",
    "a/secret.key",
    "logs/l",
];

/// Created while running: mirrored.
const KEPT_LIVE: &[&str] = &[
    "new.tmpl",
    "a/build/new",
    "n/keep",
    "n/deep/z.c",
    "n/m/cache",
    "a/logs/new",
];

/// Created while running: never mirrored.
const EXCLUDED_LIVE: &[&str] = &[
    "new.tmp",
    "a/new.tmp",
    "n/new.tmp",
    "build/new",
    "cache/new",
    "a/cache/new",
    "n/cache/q",
    "a/b/deep/new.o",
    "n/deep/z.o",
    "n/secret.key",
    "logs/new",
];

fn assert_excluded_absent(dir: &TestDir, d: &Daemon, paths: &[&str]) {
    let leaked: Vec<&&str> = paths
        .iter()
        .filter(|p| dir.exists(format!("dst/{p}")))
        .collect();
    assert!(
        leaked.is_empty(),
        "excluded paths reached the target: {leaked:?}\n--- log ---\n{}",
        d.log()
    );
}

both_monitors! {
    fn excluded_paths_never_reach_the_target_at_startup_or_live(mon) {
        rsync_path();
        let dir = TestDir::with_monitor(mon);
        dir.write("excludes.txt", EXCLUDE_FILE);
        for p in KEPT.iter().chain(EXCLUDED) {
            dir.write(format!("src/{p}"), format!("{p}\n"));
        }
        let mut d = Daemon::config(&dir, &fixture("excludes.lua"), &[] as &[&str]);
        d.wait_startup();
        for p in KEPT {
            d.wait_for(&format!("{p} mirrored"), || {
                dir.read(format!("dst/{p}")) == Some(format!("{p}\n").into_bytes())
            });
        }
        assert_excluded_absent(&dir, &d, EXCLUDED);

        // Live: excluded files first, then the mirrored ones, then a marker last.
        for p in EXCLUDED_LIVE.iter().chain(KEPT_LIVE) {
            dir.write(format!("src/{p}"), format!("{p}\n"));
        }
        dir.write("src/zz-marker", "last\n");
        for p in KEPT_LIVE.iter().chain(&["zz-marker"]) {
            d.wait_for(&format!("{p} mirrored"), || dir.exists(format!("dst/{p}")));
        }
        assert_excluded_absent(&dir, &d, EXCLUDED);
        assert_excluded_absent(&dir, &d, EXCLUDED_LIVE);

        // Modifying an excluded file that exists in the source changes nothing either.
        dir.write("src/x.tmp", "changed\n");
        dir.write("src/zz-marker2", "last\n");
        d.wait_for("zz-marker2 mirrored", || dir.exists("dst/zz-marker2"));
        assert_excluded_absent(&dir, &d, EXCLUDED);
    }
}
