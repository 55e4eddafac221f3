//! Command line (SPEC §1): version, help, option errors, argument-count errors and the
//! config-file/shortcut rules of phase C, with their exit codes (§1.5).

use crate::util::{run, TestDir};

#[test]
fn version_prints_version_2_3_1_and_exits_0() {
    let dir = TestDir::new();
    for flag in ["-version", "--version"] {
        let r = run(&dir, &[flag]);
        assert_eq!(r.code, 0, "{flag}: {r:?}");
        assert_eq!(r.stdout, "Version: 2.3.1\n", "{flag}: {r:?}");
    }
}

#[test]
fn version_exits_before_later_unknown_options_are_seen() {
    let dir = TestDir::new();
    let r = run(&dir, &["-version", "-bogus"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("Version: "), "{r:?}");
    let r = run(&dir, &["-bogus", "-version"]);
    assert_eq!(r.code, 255, "{r:?}");
    assert!(
        r.stderr
            .contains("Error: unknown option command line option -bogus"),
        "{r:?}"
    );
    assert!(!r.stdout.contains("Version:"), "{r:?}");
}

fn assert_is_help(r: &crate::util::Run) {
    assert_eq!(r.code, 255, "{r:?}");
    for needle in [
        "USAGE:",
        "lsyncd [OPTIONS] [CONFIG-FILE]",
        "lsyncd [OPTIONS] -rsync [SOURCE] [TARGET]",
        "lsyncd [OPTIONS] -rsyncssh [SOURCE] [HOST] [TARGETDIR]",
        "lsyncd [OPTIONS] -direct [SOURCE] [TARGETDIR]",
        "OPTIONS:",
        "-nodaemon",
        "-delay SECS",
        "LICENSE:",
    ] {
        assert!(r.stdout.contains(needle), "help lacks {needle:?}: {r:?}");
    }
}

#[test]
fn help_flags_print_usage_on_stdout_and_exit_255() {
    let dir = TestDir::new();
    for flag in ["-help", "--help"] {
        assert_is_help(&run(&dir, &[flag]));
    }
    // Help wins over everything else on the line (phase A).
    assert_is_help(&run(&dir, &["-nodaemon", "-bogus", "-help"]));
}

#[test]
fn help_first_line_names_version_2_3_1() {
    let dir = TestDir::new();
    let r = run(&dir, &["-help"]);
    assert_eq!(
        r.stdout.lines().next(),
        Some("lsyncd version: 2.3.1"),
        "{r:?}"
    );
}

#[test]
fn no_arguments_print_help_and_exit_255() {
    let dir = TestDir::new();
    assert_is_help(&run::<&str>(&dir, &[]));
}

#[test]
fn unknown_option_is_named_and_exits_255() {
    let dir = TestDir::new();
    for arg in ["-bogus", "--bogus", "-runner"] {
        let r = run(&dir, &[arg, "cfg.lua"]);
        assert_eq!(r.code, 255, "{r:?}");
        let want = format!("Error: unknown option command line option {arg}");
        assert!(r.stderr.contains(&want), "want {want:?}: {r:?}");
    }
}

#[test]
fn log_category_must_start_with_upper_case_letter() {
    let dir = TestDir::new();
    let r = run(&dir, &["-log", "lower", "cfg.lua"]);
    assert_eq!(r.code, 255, "{r:?}");
    assert!(
        r.stderr
            .contains("Error: 'lower' is not a valid logging category"),
        "{r:?}"
    );
}

#[test]
fn log_as_last_argument_needs_one_argument() {
    let dir = TestDir::new();
    let r = run(&dir, &["-nodaemon", "-log"]);
    assert_eq!(r.code, 255, "{r:?}");
    assert!(r.stderr.contains("Error: log needs 1 arguments"), "{r:?}");
}

#[test]
fn rsync_shortcut_with_one_argument_needs_two_arguments() {
    let dir = TestDir::new();
    let r = run(&dir, &["-nodaemon", "-rsync", "src"]);
    assert_eq!(r.code, 255, "{r:?}");
    assert!(r.stderr.contains("Error: rsync needs 2 arguments"), "{r:?}");
}

#[test]
fn two_config_files_are_rejected() {
    let dir = TestDir::new();
    let r = run(&dir, &["-nodaemon", "a.lua", "b.lua"]);
    assert_eq!(r.code, 255, "{r:?}");
    assert!(
        r.stderr
            .contains("Error: There can only be one config file in the command line."),
        "{r:?}"
    );
}

#[test]
fn shortcut_and_config_file_together_are_rejected() {
    let dir = TestDir::new();
    let r = run(&dir, &["-nodaemon", "-rsync", "src", "dst", "cfg.lua"]);
    assert_eq!(r.code, 255, "{r:?}");
    assert!(
        r.stderr
            .contains("Error: There cannot be command line syncs and a config file together."),
        "{r:?}"
    );
}

#[test]
fn missing_config_file_is_reported_with_its_path() {
    let dir = TestDir::new();
    let missing = dir.path_str("nope.lua");
    let r = run(&dir, &["-nodaemon", &missing]);
    assert_eq!(r.code, 255, "{r:?}");
    let want = format!("Error: Cannot find config file at '{missing}'.");
    assert!(r.stderr.contains(&want), "want {want:?}: {r:?}");
}

#[test]
fn runner_option_with_missing_file_is_reported() {
    let dir = TestDir::new();
    let r = run(&dir, &["--runner", "/nonexistent/runner.lua"]);
    assert_eq!(r.code, 255, "{r:?}");
    assert!(
        r.stderr
            .contains("Error: Cannot see a runner at '/nonexistent/runner.lua'."),
        "{r:?}"
    );
    let r = run(&dir, &["--runner"]);
    assert_eq!(r.code, 255, "{r:?}");
    assert!(
        r.stderr
            .contains("Error: Lsyncd Lua-runner file missing after --runner"),
        "{r:?}"
    );
}

#[test]
fn monitor_as_last_argument_lists_inotify() {
    let dir = TestDir::new();
    let r = run(&dir, &["-monitor"]);
    assert_eq!(r.code, 255, "{r:?}");
    assert_eq!(
        r.stdout, "This Lsyncd supports these monitors:\n   inotify\n\n",
        "{r:?}"
    );
}

#[test]
fn non_numeric_delay_is_an_error_with_exit_255() {
    let dir = TestDir::new();
    let r = run(
        &dir,
        &["-nodaemon", "-delay", "soon", "-rsync", "src", "dst"],
    );
    assert_eq!(r.code, 255, "{r:?}");
    assert!(r.stderr.contains("Error"), "{r:?}");
}
