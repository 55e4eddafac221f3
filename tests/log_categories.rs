//! The `Inotify` and `Exclude` log categories print what upstream 2.2.3 prints for the same
//! operations (recorded from Debian's lsyncd with `-log Inotify -log Exclude`). Two
//! differences, both deliberate: watch descriptors print as integers (`(1)`, upstream `(1.0)`,
//! a Lua float artifact), and `rmwatch()<-N` of a removed directory comes right before its
//! `Delete` line (the kernel reports the watch gone before the parent's `IN_DELETE`; upstream
//! removes the watch only while handling that `Delete`).

use crate::util::{lua_str, Daemon, TestDir};

/// The `Inotify`/`Exclude` lines of the log, timestamps dropped, the inotify fd as `N`.
fn category_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let l = if l.as_bytes().get(8) == Some(&b' ') && l.as_bytes().get(2) == Some(&b':') {
                &l[9..]
            } else {
                l
            };
            (l.starts_with("Inotify: ") || l.starts_with("Exclude: ")).then(|| {
                if l.starts_with("Inotify: inotify fd = ") {
                    "Inotify: inotify fd = N".to_string()
                } else {
                    l.to_string()
                }
            })
        })
        .collect()
}

#[test]
fn inotify_and_exclude_categories_log_what_upstream_logs() {
    let dir = TestDir::new();
    dir.write("src/a.txt", "a\n");
    dir.mkdir("src/d1/d2");
    let src = dir.path_str("src");
    let config = dir.config(
        "cats.lua",
        &format!(
            "sync {{ default.rsync, source = {}, target = {}, delay = 1, \
             exclude = {{ '*.tmp', '/cache/' }} }}\n",
            lua_str(&src),
            lua_str(dir.path_str("dst")),
        ),
    );
    let mut d = Daemon::config(&dir, &config, &["-log", "Inotify", "-log", "Exclude"]);
    d.wait_startup();
    let step = |d: &mut Daemon, op: &dyn Fn(), last: &str| {
        op();
        d.wait_log(last);
    };
    step(
        &mut d,
        &|| {
            dir.mkdir("src/newdir");
        },
        "newdir/ )-> 4 ",
    );
    step(
        &mut d,
        &|| {
            dir.write("src/newdir/f", "n\n");
        },
        "Modify f(4)",
    );
    step(
        &mut d,
        &|| dir.rename("src/a.txt", "src/b.txt"),
        "to b.txt(1)",
    );
    step(
        &mut d,
        &|| std::fs::remove_dir(dir.path("src/d1/d2")).expect("rmdir"),
        "Delete d2/(2)",
    );
    step(
        &mut d,
        &|| {
            dir.mkdir("src/cache");
        },
        "cache/\"",
    );
    step(
        &mut d,
        &|| dir.rename("src/newdir", "outside"),
        "rmwatch()<-4",
    );
    step(
        &mut d,
        &|| dir.rename("outside", "src/back"),
        "back/ )-> 5 ",
    );
    let want: Vec<String> = [
        "Exclude: toLuaPattern \"*.tmp\" = \"/[^/]*%.tmp\"",
        "Exclude: toLuaPattern \"/cache/\" = \"^/cache/\"",
        "Inotify: inotify fd = N",
        "Inotify: addwatch( SRC/ )-> 1 ",
        "Inotify: addwatch( SRC/d1/ )-> 2 ",
        "Inotify: addwatch( SRC/d1/d2/ )-> 3 ",
        "Inotify: got event Create newdir/(1)",
        "Inotify: addwatch( SRC/newdir/ )-> 4 ",
        "Inotify: got event Create f(4)",
        "Inotify: got event Modify f(4)",
        "Inotify: got event Move a.txt(1) to b.txt(1)",
        "Inotify: rmwatch()<-3",
        "Inotify: got event Delete d2/(2)",
        "Inotify: got event Create cache/(1)",
        "Inotify: not concerning \"SRC/cache/\"",
        "Inotify: handling unary move from.",
        "Inotify: got event Delete newdir/(1)",
        "Inotify: rmwatch()<-4",
        "Inotify: got event Create back/(1)",
        "Inotify: addwatch( SRC/back/ )-> 5 ",
    ]
    .iter()
    .map(|l| l.replace("SRC", &src))
    .collect();
    assert_eq!(category_lines(&d.log()), want, "\n--- log ---\n{}", d.log());
    assert_eq!(d.terminate(), 143);
}

#[test]
fn without_the_categories_nothing_of_them_is_printed() {
    let dir = TestDir::new();
    dir.mkdir("src/d1");
    let config = dir.config(
        "quiet.lua",
        &format!(
            "sync {{ default.rsync, source = {}, target = {}, delay = 0, exclude = {{ '*.tmp' }} }}\n",
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
        ),
    );
    let mut d = Daemon::config(&dir, &config, &[] as &[&str]);
    d.wait_startup();
    dir.mkdir("src/d2");
    dir.write("src/d2/x", "x\n");
    d.wait_for("the new file in the target", || dir.exists("dst/d2/x"));
    assert_eq!(category_lines(&d.log()), Vec::<String>::new());
}
