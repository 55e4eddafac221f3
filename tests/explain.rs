//! `lsyncd -explain PATH CONFIG`: per sync, whether PATH is watched and transferred and the
//! rule that decided it, from the daemon's own matcher; exit 0 without starting anything.

use crate::util::{lua_str, run, TestDir};

fn explain(dir: &TestDir, path: &str) -> String {
    let config = dir.path("explain.lua");
    let r = run(
        dir,
        &[
            std::ffi::OsStr::new("-explain"),
            path.as_ref(),
            config.as_os_str(),
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let transferred = std::fs::read_dir(dir.dst()).map_or(0, |d| d.count());
    assert_eq!(transferred, 0, "explain started a transfer");
    r.stdout
}

fn setup() -> (TestDir, String) {
    let dir = TestDir::new();
    dir.write("src/a.tmp", "x");
    dir.write("src/cache/deep/f", "x");
    dir.write("src/keep/x.log", "x");
    dir.write("src/logs/today", "x");
    dir.write("src/plain.txt", "x");
    let src = dir.path_str("src");
    dir.config(
        "explain.lua",
        &format!(
            "sync {{ default.rsync, source = {src}, target = {dst}, \
               exclude = {{ '*.tmp', '/cache/' }} }}\n\
             sync {{ default.rsync, source = {src}, target = {dst2}, \
               filter = {{ '+ /keep/**', '- *.log', '- /logs/' }} }}\n",
            src = lua_str(&src),
            dst = lua_str(dir.path_str("dst")),
            dst2 = lua_str(dir.path_str("dst2")),
        ),
    );
    (dir, src)
}

#[test]
fn an_excluded_file_names_its_exclude_pattern() {
    let (dir, src) = setup();
    assert_eq!(
        explain(&dir, &format!("{src}/a.tmp")),
        format!(
            "Path {src}/a.tmp\n\
             Sync1 (source {src}/):\n  transferred: no, excluded by exclude pattern \"*.tmp\"\n\
             Sync2 (source {src}/):\n  transferred: yes, no rule matches\n"
        )
    );
}

#[test]
fn a_file_under_an_excluded_directory_names_the_directory_and_its_rule() {
    let (dir, src) = setup();
    // relative to the working directory (the test dir's root), with a `.` to clean up
    assert_eq!(
        explain(&dir, "src/./cache/deep/f"),
        format!(
            "Path {src}/cache/deep/f\n\
             Sync1 (source {src}/):\n  not watched, not transferred: its directory /cache/ \
             is excluded by exclude pattern \"/cache/\"\n\
             Sync2 (source {src}/):\n  transferred: yes, no rule matches\n"
        )
    );
}

#[test]
fn a_filter_included_file_names_the_including_rule() {
    let (dir, src) = setup();
    assert_eq!(
        explain(&dir, &format!("{src}/keep/x.log")),
        format!(
            "Path {src}/keep/x.log\n\
             Sync1 (source {src}/):\n  transferred: yes, no rule matches\n\
             Sync2 (source {src}/):\n  transferred: yes, included by filter rule \"+ /keep/**\"\n"
        )
    );
}

#[test]
fn a_directory_says_whether_it_is_watched_and_outside_paths_are_neither() {
    let (dir, src) = setup();
    assert_eq!(
        explain(&dir, &format!("{src}/logs")),
        format!(
            "Path {src}/logs/\n\
             Sync1 (source {src}/):\n  watched: yes\n  transferred: yes, no rule matches\n\
             Sync2 (source {src}/):\n  watched: no\n  \
             transferred: no, excluded by filter rule \"- /logs/\"\n"
        )
    );
    let out = explain(&dir, "/etc/passwd");
    assert_eq!(
        out.matches("  outside the source: not watched, not transferred\n")
            .count(),
        2,
        "{out}"
    );
}
