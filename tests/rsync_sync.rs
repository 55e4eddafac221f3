//! Initial (startup) sync with default.rsync (SPEC §9.4): a tree with nested and empty
//! directories, every kind of symlink and hostile names reaches the target intact, through
//! the `-rsync` shortcut and through a config file; two syncs from one source.

use crate::util::{fixture, rsync_path, Daemon, TestDir};

/// Writes a tree below `base` (relative to the test root) with nested and empty dirs,
/// symlinks (relative, absolute, dangling, to a dir) and names with spaces, a newline,
/// quotes, leading dashes, rsync wildcard characters, a backslash, unicode and non-UTF-8 bytes.
pub(crate) fn write_hostile_tree(dir: &TestDir, base: &str) {
    let p = |rel: &[u8]| {
        let mut v = base.as_bytes().to_vec();
        v.push(b'/');
        v.extend_from_slice(rel);
        v
    };
    let files: &[(&[u8], &[u8])] = &[
        (b"top.txt", b"top\n"),
        (b"a/b/c/deep.txt", b"deep\n"),
        (b"a/sibling.txt", b"sibling\n"),
        (b"zero-length", b""),
        (b".hidden", b"hidden\n"),
        (b"with space.txt", b"space\n"),
        (b"dir with space/inner file", b"inner\n"),
        (b"new\nline", b"newline\n"),
        (b"tab\there", b"tab\n"),
        (b"quote'single", b"single\n"),
        (b"dq\"double", b"double\n"),
        (b"-leading-dash", b"dash\n"),
        (b"--rf", b"looks like an option\n"),
        (b"-dashdir/-x", b"dash in dir\n"),
        (b"star*name", b"star\n"),
        (b"q?mark", b"question\n"),
        (b"[br]acket", b"bracket\n"),
        (b"back\\slash", b"backslash\n"),
        (
            "\u{fc}n\u{ef}c\u{f6}d\u{e9} \u{2603}.txt".as_bytes(),
            b"unicode\n",
        ),
        (
            "\u{65e5}\u{672c}/\u{30d5}\u{30a1}\u{30a4}\u{30eb}".as_bytes(),
            b"cjk\n",
        ),
        (b"caf\xe9", b"latin-1 name\n"),
        (b"dir\xff\xfe/in\x80side", b"non-utf8 dir\n"),
    ];
    for (name, contents) in files {
        dir.write(p(name), contents);
    }
    dir.mkdir(p(b"empty"));
    dir.mkdir(p(b"e1/e2/e3"));
    dir.symlink("a/b/c/deep.txt", p(b"rel-link"));
    dir.symlink("/etc/hostname-does-not-matter", p(b"abs-link"));
    dir.symlink("does/not/exist", p(b"dangling-link"));
    dir.symlink("a/b", p(b"dir-link"));
    dir.symlink(b"caf\xe9", p(b"link-to-caf\xe9"));
}

#[test]
fn startup_sync_via_rsync_shortcut_mirrors_hostile_tree() {
    rsync_path();
    let dir = TestDir::new();
    write_hostile_tree(&dir, "src");
    let (src, dst) = (dir.path_str("src"), dir.path_str("dst"));
    let mut d = Daemon::start(&dir, &["-delay", "1", "-rsync", &src, &dst]);
    d.wait_trees_equal(&dir.src(), &dir.dst());
}

#[test]
fn startup_sync_via_config_file_mirrors_hostile_tree() {
    rsync_path();
    let dir = TestDir::new();
    write_hostile_tree(&dir, "src");
    let mut d = Daemon::config(&dir, &fixture("rsync_basic.lua"), &[] as &[&str]);
    d.wait_trees_equal(&dir.src(), &dir.dst());
}

#[test]
fn startup_sync_into_missing_target_directory_creates_it() {
    rsync_path();
    let dir = TestDir::new();
    write_hostile_tree(&dir, "src");
    let (src, dst) = (dir.path_str("src"), dir.path_str("new-target"));
    let mut d = Daemon::start(&dir, &["-delay", "1", "-rsync", &src, &dst]);
    d.wait_trees_equal(&dir.src(), &dir.path("new-target"));
}

#[test]
fn startup_sync_of_relative_source_and_target_in_working_directory() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/x/y.txt", "y\n");
    let mut d = Daemon::start(&dir, &["-delay", "1", "-rsync", "src", "dst"]);
    d.wait_trees_equal(&dir.src(), &dir.dst());
}

#[test]
fn two_syncs_from_one_source_mirror_to_both_targets() {
    rsync_path();
    let dir = TestDir::new();
    dir.mkdir("dst2");
    write_hostile_tree(&dir, "src");
    let mut d = Daemon::config(&dir, &fixture("two_targets.lua"), &[] as &[&str]);
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_trees_equal(&dir.src(), &dir.path("dst2"));
    // Both startups done: live changes reach both targets too.
    d.wait_log_count("finished.", 2);
    dir.write("src/live/new.txt", "new\n");
    dir.remove("src/top.txt");
    dir.rename("src/a", "src/a-renamed");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_trees_equal(&dir.src(), &dir.path("dst2"));
}

#[test]
fn startup_logs_recursive_full_rsync_line_2_3() {
    rsync_path();
    let dir = TestDir::new();
    let (src, dst) = (dir.path_str("src"), dir.path_str("dst"));
    let mut d = Daemon::start(&dir, &["-delay", "1", "-rsync", &src, &dst]);
    d.wait_startup();
    let want = format!("Normal: recursive full rsync: {src}/ -> {dst}/\n");
    assert!(d.log().contains(&want), "log lacks {want:?}\n{}", d.log());
    let want = format!("Normal: Startup of {src}/ -> {dst}/ finished.\n");
    assert!(d.log().contains(&want), "log lacks {want:?}\n{}", d.log());
}
