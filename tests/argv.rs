//! The exact argv and stdin of the rsync calls default.rsync makes (SPEC §9.3–9.6), recorded by
//! a script given as `rsync{ binary = ... }`: startup argv for a table of `rsync{}` options,
//! with and without excludes and filters, and running-mode argv with the NUL-separated include
//! list for known sets of events.
//!
//! Short flags: our order is fixed (the §9.3 table order, `D` last); upstream's is random, so
//! with `$LSYNCD_BIN` set the short-flag word is compared as a set (see `util::assert_args`).

use crate::util::{lua_str, rsync_path, Call, Daemon, Recorder, TestDir, Then};
use std::path::PathBuf;

/// A test dir with a recorder and the absolute `SOURCE` / `TARGET` strings rsync is given.
struct Setup {
    dir: TestDir,
    rec: Recorder,
    /// realpath of src/ plus `/` (SPEC §2.5 step 6).
    source: String,
    /// the target as configured plus `/` (SPEC §9.2 step 6).
    target: String,
}

impl Setup {
    fn new(then: Then) -> Setup {
        let dir = TestDir::new();
        let rec = dir.recorder(then);
        let source = format!(
            "{}/",
            std::fs::canonicalize(dir.src())
                .expect("realpath src")
                .to_str()
                .expect("UTF-8 temp path")
        );
        let target = format!("{}/", dir.path_str("dst"));
        Setup {
            dir,
            rec,
            source,
            target,
        }
    }

    /// A config with one default.rsync sync using the recorder, plus `rsync_opts` inside
    /// `rsync = { ... }` and `sync_extra` inside `sync{ ... }`.
    fn config(&self, delay: u32, rsync_opts: &str, sync_extra: &str) -> PathBuf {
        let text = format!(
            "sync{{\n    default.rsync,\n    source = {src},\n    target = {dst},\n    \
             delay = {delay},\n    rsync = {{ binary = {bin}, {rsync_opts} }},\n    {sync_extra}\n}}\n",
            src = lua_str(self.dir.path_str("src")),
            dst = lua_str(self.dir.path_str("dst")),
            bin = self.rec.lua(),
        );
        self.dir.config("argv.lua", &text)
    }

    /// `[.., SOURCE, TARGET]` appended to `args`.
    fn with_ends(&self, mut args: Vec<String>) -> Vec<String> {
        args.push(self.source.clone());
        args.push(self.target.clone());
        args
    }
}

/// Starts lsyncd with the given options and returns the recorded startup call.
fn startup_call(rsync_opts: &str, sync_extra: &str) -> (Setup, Call) {
    let s = Setup::new(Then::Exit(0));
    let cfg = s.config(1, rsync_opts, sync_extra);
    let mut d = Daemon::config(&s.dir, &cfg, &[] as &[&str]);
    d.wait_startup();
    let calls = s.rec.calls();
    assert_eq!(calls.len(), 1, "one startup call\n--- log ---\n{}", d.log());
    let call = calls.into_iter().next().expect("one call");
    (s, call)
}

/// Checks a startup call without excludes or filters: no stdin, argv as given.
fn check_startup(rsync_opts: &str, sync_extra: &str, want: Vec<String>) {
    let (s, call) = startup_call(rsync_opts, sync_extra);
    crate::util::assert_args(&call.args(), &s.with_ends(want));
    assert!(
        call.stdin.is_empty(),
        "no stdin expected: {:?}",
        call.stdin_str()
    );
}

const ALL_SHORT_FLAGS: &str = "acls = true, backup = true, checksum = true, compress = true, \
    copy_dirlinks = true, copy_links = true, cvs_exclude = true, dry_run = true, \
    executability = true, group = true, hard_links = true, ignore_times = true, ipv4 = true, \
    ipv6 = true, keep_dirlinks = true, links = true, one_file_system = true, \
    omit_dir_times = true, omit_link_times = true, owner = true, perms = true, \
    protect_args = true, prune_empty_dirs = true, quiet = true, sparse = true, times = true, \
    update = true, verbose = true, whole_file = true, xattrs = true";

#[test]
fn startup_argv_with_default_options() {
    check_startup("", "", sv!["--delete", "--ignore-errors", "-lst", "-r"]);
}

#[test]
fn startup_argv_with_every_short_flag_in_fixed_order() {
    check_startup(
        ALL_SHORT_FLAGS,
        "",
        sv![
            "--delete",
            "--ignore-errors",
            "-AbczkLCnEgHI46KlxOJopsmqStuvWX",
            "-r"
        ],
    );
}

/// Upstream 2.2.3 crashes here instead (`bad argument #4 to 'exec' (string expected, got
/// table)`, exit 255): it leaves an empty table in `_computed`. SPEC §9.3 says the word is
/// omitted.
#[test]
fn startup_argv_omits_short_flag_word_when_no_flag_is_set() {
    check_startup(
        "links = false, times = false, protect_args = false",
        "",
        sv!["--delete", "--ignore-errors", "-r"],
    );
}

#[test]
fn startup_argv_with_archive_expands_to_its_flags_and_d() {
    check_startup(
        "archive = true",
        "",
        sv!["--delete", "--ignore-errors", "-glopstD", "-r"],
    );
}

#[test]
fn startup_argv_with_archive_keeps_explicit_values() {
    // archive only fills keys that are nil: owner stays off, hard_links stays on.
    check_startup(
        "archive = true, owner = false, hard_links = true",
        "",
        sv!["--delete", "--ignore-errors", "-gHlpstD", "-r"],
    );
}

#[test]
fn startup_argv_with_numeric_bwlimit() {
    check_startup(
        "bwlimit = 100",
        "",
        sv!["--delete", "--ignore-errors", "-lst", "--bwlimit=100", "-r"],
    );
}

#[test]
fn startup_argv_with_extra_arguments_after_short_flags() {
    check_startup(
        "_extra = { \"--one\", \"-x y\", \"--two=a b\" }",
        "",
        sv![
            "--delete",
            "--ignore-errors",
            "-lst",
            "--one",
            "-x y",
            "--two=a b",
            "-r"
        ],
    );
}

#[test]
fn startup_argv_with_every_long_option_in_fixed_order() {
    check_startup(
        "compress = true, verbose = true, _extra = { \"--x1\", \"--x2\" }, \
         append = true, append_verify = true, backup_dir = \"/bk\", bwlimit = \"100\", \
         chmod = \"u+rwx\", chown = \"a:b\", groupmap = \"x:y\", existing = true, \
         inplace = true, password_file = \"/pf\", rsh = \"ssh -p 22\", \
         rsync_path = \"/usr/bin/rsync\", suffix = \"~\", temp_dir = \"/tt\", timeout = 5, \
         usermap = \"u:v\"",
        "",
        sv![
            "--delete",
            "--ignore-errors",
            "-zlstv",
            "--x1",
            "--x2",
            "--append",
            "--append-verify",
            "--backup-dir=/bk",
            "--bwlimit=100",
            "--chmod=u+rwx",
            "--chown=a:b",
            "--groupmap=x:y",
            "--existing",
            "--inplace",
            "--password-file=/pf",
            "--rsh=ssh -p 22",
            "--rsync-path=/usr/bin/rsync",
            "--suffix=~",
            "--temp-dir=/tt",
            "--timeout=5",
            "--usermap=u:v",
            "-r"
        ],
    );
}

#[test]
fn startup_argv_with_false_options_contributes_nothing() {
    check_startup(
        "compress = false, append = false, inplace = false, archive = false",
        "",
        sv!["--delete", "--ignore-errors", "-lst", "-r"],
    );
}

#[test]
fn startup_argv_with_copy_unsafe_links_2_3() {
    check_startup(
        "copy_unsafe_links = true",
        "",
        sv![
            "--delete",
            "--ignore-errors",
            "-lst",
            "--copy-unsafe-links",
            "-r"
        ],
    );
}

#[test]
fn startup_argv_with_delete_excluded_2_3() {
    check_startup(
        "delete_excluded = true",
        "",
        sv![
            "--delete",
            "--ignore-errors",
            "--delete-excluded",
            "-lst",
            "-r"
        ],
    );
    // Even with delete = false the flag is passed to the startup transfer.
    check_startup(
        "delete_excluded = true",
        "delete = false,",
        sv!["--delete-excluded", "-lst", "-r"],
    );
}

#[test]
fn startup_argv_per_delete_mode() {
    for (mode, del) in [
        ("true", true),
        ("false", false),
        ("'startup'", true),
        ("'running'", false),
    ] {
        let mut want = if del {
            sv!["--delete", "--ignore-errors"]
        } else {
            sv![]
        };
        want.extend(sv!["-lst", "-r"]);
        check_startup("", &format!("delete = {mode},"), want);
    }
}

#[test]
fn startup_with_excludes_sends_patterns_on_stdin() {
    let (s, call) = startup_call("", "exclude = { \"*.tmp\", \"/skip/\", \"cache/\" },");
    crate::util::assert_args(
        &call.args(),
        &s.with_ends(sv![
            "--exclude-from=-",
            "--delete",
            "--ignore-errors",
            "-lst",
            "-r"
        ]),
    );
    // Patterns joined by newlines, no trailing newline; the set's order is unspecified.
    assert!(!call.stdin.ends_with(b"\n"), "{:?}", call.stdin_str());
    let mut lines: Vec<&str> = std::str::from_utf8(&call.stdin)
        .expect("UTF-8")
        .split('\n')
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, ["*.tmp", "/skip/", "cache/"]);
}

#[test]
fn startup_with_exclude_from_file_sends_its_patterns() {
    let s = Setup::new(Then::Exit(0));
    s.dir.write(
        "ex.txt",
        "# comment\n\n+ not a pattern\n- minus.txt\n  indented\nplain\n",
    );
    let cfg = s.config(
        1,
        "",
        &format!("excludeFrom = {},", lua_str(s.dir.path_str("ex.txt"))),
    );
    let mut d = Daemon::config(&s.dir, &cfg, &[] as &[&str]);
    d.wait_startup();
    let call = s.rec.calls().into_iter().next().expect("startup call");
    assert_eq!(call.args()[0], "--exclude-from=-");
    let mut lines: Vec<&str> = std::str::from_utf8(&call.stdin)
        .expect("UTF-8")
        .split('\n')
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, ["indented", "minus.txt", "plain"]);
}

#[test]
fn startup_with_filters_sends_rules_then_excludes() {
    let (s, call) = startup_call(
        "",
        "filter = { \"- *.bak\", \"+ keep/\", \"-   /out/\" }, exclude = \"*.tmp\",",
    );
    crate::util::assert_args(
        &call.args(),
        &s.with_ends(sv![
            "--filter=. -",
            "--delete",
            "--ignore-errors",
            "-lst",
            "-r"
        ]),
    );
    assert_eq!(call.stdin_str(), "- *.bak\n+ keep/\n- /out/\n- *.tmp");
}

// ---------------------------------------------------------------------------------------------
// Running mode

/// Starts lsyncd (delay 2 s), waits for the startup call, runs `act` on the test dir and
/// returns the first running-mode call.
fn running_call(
    s: &Setup,
    rsync_opts: &str,
    sync_extra: &str,
    act: impl FnOnce(&TestDir),
) -> (Daemon, Call) {
    let cfg = s.config(2, rsync_opts, sync_extra);
    let mut d = Daemon::config(&s.dir, &cfg, &[] as &[&str]);
    d.wait_startup();
    act(&s.dir);
    let calls = s.rec.wait_calls(&mut d, 2);
    let call = calls.into_iter().nth(1).expect("second call");
    (d, call)
}

/// The NUL-separated include list of a running-mode call (no trailing NUL, SPEC §9.5).
fn include_list(call: &Call) -> Vec<Vec<u8>> {
    assert!(
        !call.stdin.ends_with(b"\0"),
        "include list must not end with NUL: {:?}",
        call.stdin_str()
    );
    call.stdin.split(|&b| b == 0).map(|p| p.to_vec()).collect()
}

fn list(items: &[&[u8]]) -> Vec<Vec<u8>> {
    items.iter().map(|i| i.to_vec()).collect()
}

fn show_list(l: &[Vec<u8>]) -> Vec<String> {
    l.iter().map(|p| crate::util::show(p)).collect()
}

fn running_tail(del: bool) -> Vec<String> {
    let mut v = sv!["-r"];
    if del {
        v.extend(sv!["--delete", "--ignore-errors"]);
    }
    v.extend(sv!["--force", "--from0", "--include-from=-", "--exclude=*"]);
    v
}

#[test]
fn running_argv_and_include_list_for_new_file() {
    let s = Setup::new(Then::Exit(0));
    s.dir.mkdir("src/a");
    let (_d, call) = running_call(&s, "", "", |dir| {
        dir.write("src/a/new.txt", "new\n");
    });
    let mut want = sv!["-lst"];
    want.extend(running_tail(true));
    crate::util::assert_args(&call.args(), &s.with_ends(want));
    assert_eq!(
        show_list(&include_list(&call)),
        show_list(&list(&[b"/a/new.txt", b"/a/", b"/"]))
    );
}

#[test]
fn running_include_list_for_mixed_events() {
    // The event sequence SPEC §9.5 verified on upstream.
    let s = Setup::new(Then::Exit(0));
    s.dir.mkdir("src/a/b");
    s.dir.write("src/a/b/f", "f\n");
    s.dir.write("src/top", "top\n");
    let (_d, call) = running_call(&s, "", "", |dir| {
        dir.write("src/a/new.txt", "new\n");
        dir.mkdir("src/newdir");
        dir.write("src/newdir/z", "z\n");
        dir.rename("src/top", "src/top2");
        dir.remove("src/a/b/f");
    });
    assert_eq!(
        show_list(&include_list(&call)),
        show_list(&list(&[
            b"/a/new.txt",
            b"/a/",
            b"/",
            b"/newdir/",
            b"/newdir/z",
            b"/top",
            b"/top2",
            b"/a/b/f",
            b"/a/b/",
        ]))
    );
}

#[test]
fn running_include_list_marks_deleted_directory_with_triple_star() {
    let s = Setup::new(Then::Exit(0));
    s.dir.write("src/d/sub/f", "f\n");
    let (_d, call) = running_call(&s, "", "", |dir| {
        dir.remove("src/d");
    });
    let got = include_list(&call);
    for must in [&b"/d/***"[..], b"/d/", b"/"] {
        assert!(
            got.iter().any(|p| p == must),
            "{} missing from {:?}",
            crate::util::show(must),
            show_list(&got)
        );
    }
    // Every entry is unique.
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        got.len(),
        "duplicates in {:?}",
        show_list(&got)
    );
}

#[test]
fn running_include_list_escapes_wildcards_and_keeps_raw_bytes() {
    let s = Setup::new(Then::Exit(0));
    let (_d, call) = running_call(&s, "", "", |dir| {
        dir.write("src/w*x?[y]", "w\n");
        dir.write(b"src/caf\xe9", "c\n");
        dir.write("src/new\nline", "n\n");
    });
    assert_eq!(
        show_list(&include_list(&call)),
        show_list(&list(&[
            b"/w\\*x\\?\\[y\\]",
            b"/",
            b"/caf\xe9",
            b"/new\nline"
        ]))
    );
}

#[test]
fn running_argv_per_delete_mode() {
    for (mode, del) in [
        ("true", true),
        ("false", false),
        ("'startup'", false),
        ("'running'", true),
    ] {
        let s = Setup::new(Then::Exit(0));
        let (_d, call) = running_call(&s, "", &format!("delete = {mode},"), |dir| {
            dir.write("src/f", "f\n");
        });
        let mut want = sv!["-lst"];
        want.extend(running_tail(del));
        crate::util::assert_args(&call.args(), &s.with_ends(want));
    }
}

#[test]
fn running_argv_carries_computed_options() {
    let s = Setup::new(Then::Exit(0));
    let (_d, call) = running_call(
        &s,
        "archive = true, compress = true, bwlimit = 100, _extra = { \"--x1\" }",
        "exclude = { \"*.tmp\" },",
        |dir| {
            dir.write("src/f.tmp", "excluded\n");
            dir.write("src/f", "f\n");
        },
    );
    let mut want = sv!["-zglopstD", "--x1", "--bwlimit=100"];
    want.extend(running_tail(true));
    crate::util::assert_args(&call.args(), &s.with_ends(want));
    // Excludes are not passed in running mode; excluded paths are simply not listed.
    assert_eq!(
        show_list(&include_list(&call)),
        show_list(&list(&[b"/f", b"/"]))
    );
}

#[test]
fn running_include_list_larger_than_a_pipe_buffer_arrives_whole() {
    // 350 names of 230 bytes: about 80 KiB of list, more than a pipe buffer holds (64 KiB),
    // written within one delay window so that they form one batch.
    rsync_path();
    let s = Setup::new(Then::ExecRsync);
    let names: Vec<String> = (0..350)
        .map(|i| format!("{i:05}-{}", "n".repeat(224)))
        .collect();
    let (mut d, call) = running_call(&s, "", "maxDelays = 100000,", |dir| {
        for n in &names {
            dir.write(format!("src/{n}"), "x");
        }
    });
    assert!(
        call.stdin.len() > 65536,
        "list is {} bytes",
        call.stdin.len()
    );
    let got = include_list(&call);
    assert_eq!(got.len(), names.len() + 1, "entries in the include list");
    for n in &names {
        let want = format!("/{n}").into_bytes();
        assert!(got.contains(&want), "{n} missing from the include list");
    }
    d.wait_trees_equal(&s.dir.src(), &s.dir.dst());
}

#[test]
fn default_rsync_binary_is_looked_up_in_path_2_3() {
    // 2.3 execs `rsync` through PATH (execvp); a recorder named rsync first in PATH sees the call.
    let dir = TestDir::new();
    let rec = dir.recorder_at("bin/rsync", Then::Exit(0));
    let path = format!(
        "{}:{}",
        dir.path_str("bin"),
        std::env::var("PATH").unwrap_or_default()
    );
    let (src, dst) = (dir.path_str("src"), dir.path_str("dst"));
    let mut d = Daemon::start_with(&dir, &["-delay", "1", "-rsync", &src, &dst], |cmd| {
        cmd.env("PATH", &path);
    });
    d.wait_startup();
    let calls = rec.calls();
    assert_eq!(
        calls.len(),
        1,
        "rsync from PATH not used\n--- log ---\n{}",
        d.log()
    );
    let source = format!(
        "{}/",
        std::fs::canonicalize(dir.src())
            .expect("realpath")
            .to_str()
            .expect("UTF-8")
    );
    let want: Vec<String> = sv![
        "--delete",
        "--ignore-errors",
        "-lst",
        "-r",
        source,
        format!("{dst}/")
    ];
    crate::util::assert_args(&calls[0].args(), &want);
}
