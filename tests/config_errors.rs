//! Bad configurations (SPEC §2.9, §1.6, §2.7): each fixture in `tests/fixtures/configs/bad_*.lua`
//! must make lsyncd exit 255 with its message on stderr. Messages are matched after any
//! `FILE:LINE: ` position prefix, whose exact form may differ (SPEC §2.7, last paragraph).
//! The fixtures use paths relative to the test dir, which is the working directory.

use crate::util::{fixture, run, TestDir};

/// Runs `lsyncd -nodaemon FIXTURE` and checks exit 255 and every needle on stderr
/// (`{CFG}` in a needle stands for the fixture's absolute path).
fn check_bad_config(name: &str, needles: &[&str]) {
    let dir = TestDir::new();
    dir.write("afile", "a regular file\n");
    let cfg = fixture(name);
    let cfg_str = cfg.to_str().expect("fixture path is UTF-8");
    let r = run(&dir, &["-nodaemon", cfg_str]);
    assert_eq!(r.code, 255, "{name}: {r:?}");
    for needle in needles {
        let needle = needle.replace("{CFG}", cfg_str);
        assert!(
            r.stderr.contains(&needle),
            "{name}: stderr lacks {needle:?}\n{r:?}"
        );
    }
}

macro_rules! bad_config {
    ($($test:ident: $fixture:literal => [$($needle:expr),+ $(,)?];)+) => {
        $(
            #[test]
            fn $test() {
                check_bad_config($fixture, &[$($needle),+]);
            }
        )+
    };
}

const UNKNOWN: &str = "unknown. ( if this is not a typo add it to checkgauge )";

bad_config! {
    unknown_sync_key_is_rejected: "bad_unknown_sync_key.lua" => [
        "Error: error preparing {CFG}: ",
        "Parameter \"bogus\" unknown. ( if this is not a typo add it to checkgauge )",
    ];
    unknown_rsync_key_is_rejected_with_its_prefix: "bad_unknown_rsync_key.lua" => [
        "Error: error preparing {CFG}: ",
        "Parameter \"rsync.bogus\" ", UNKNOWN,
    ];
    unknown_ssh_key_is_rejected_with_its_prefix: "bad_unknown_ssh_key.lua" => [
        "Error: error preparing {CFG}: ",
        "Parameter \"ssh.bogus\" ", UNKNOWN,
    ];
    layer3_handler_is_rejected_for_default_rsync: "bad_rsync_with_layer3_handler.lua" => [
        "Parameter \"onModify\" ", UNKNOWN,
    ];
    unknown_setting_is_rejected: "bad_unknown_setting.lua" => [
        "Error: error preparing {CFG}: ",
        "setting \"bogus\" unknown.",
    ];
    settings_assignment_is_rejected: "bad_settings_assignment.lua" => [
        "Error: Do not use settings = { ... }\n",
        "please use settings{ ... } (without the equal sign)",
    ];
    sync_without_source_is_rejected: "bad_missing_source.lua" => [
        "source missing from sync.",
    ];
    nonexistent_source_is_rejected: "bad_source_not_found.lua" => [
        "no-such-dir",
        "Error: Cannot access source directory: no-such-dir",
    ];
    source_that_is_a_file_is_rejected: "bad_source_is_file.lua" => [
        "Error: Cannot access source directory: afile",
    ];
    default_rsync_without_target_is_rejected: "bad_rsync_without_target.lua" => [
        "Error: error preparing {CFG}: ",
        "default.rsync needs \"target\" configured",
    ];
    default_rsyncssh_without_host_is_rejected: "bad_rsyncssh_without_host.lua" => [
        "default.rsyncssh needs \"host\" configured",
    ];
    default_rsyncssh_without_targetdir_is_rejected: "bad_rsyncssh_without_targetdir.lua" => [
        "default.rsyncssh needs \"targetdir\" configured",
    ];
    default_rsyncssh_with_two_processes_is_rejected: "bad_rsyncssh_max_processes.lua" => [
        "default.rsyncssh must have maxProcesses set to 1.",
    ];
    global_max_processes_before_rsyncssh_is_rejected: "bad_rsyncssh_global_max_processes.lua" => [
        "default.rsyncssh must have maxProcesses set to 1.",
    ];
    // The gauge check runs before the `_computed` check (SPEC §9.2 steps 1 and 3), so a plain
    // `rsync._computed` is reported as an unknown key ...
    rsync_computed_is_an_unknown_rsync_key: "bad_rsync_computed.lua" => [
        "Parameter \"rsync._computed\" ", UNKNOWN,
    ];
    // ... and only a gauge that lets it through reaches the dedicated message.
    rsync_computed_past_the_gauge_is_rejected: "bad_rsync_computed_gauged.lua" => [
        "please do not use the internal rsync._computed parameter",
    ];
    negative_delay_is_rejected: "bad_delay_negative.lua" => [
        "{CFG}:2: sync: \"delay\" must be a number >= 0 (got number -1)",
    ];
    string_delay_is_rejected: "bad_delay_string.lua" => [
        "{CFG}:2: sync: \"delay\" must be a number >= 0 (got string \"soon\")",
    ];
    exclude_of_wrong_type_is_rejected: "bad_exclude_type.lua" => [
        "{CFG}:2: sync: \"exclude\" must be a string or a table of strings",
    ];
    filter_of_wrong_type_is_rejected: "bad_filter_type.lua" => [
        "{CFG}:2: sync: \"filter\" must be a string or a table of strings",
    ];
    unreadable_exclude_from_is_rejected: "bad_exclude_from_missing.lua" => [
        "Error: Cannot open exclude file \"no-such-excludes.txt\": ",
    ];
    unreadable_filter_from_is_rejected: "bad_filter_from_missing.lua" => [
        "Error: Cannot open filter file \"no-such-filters.txt\": ",
    ];
    malformed_filter_rule_is_rejected: "bad_filter_rule.lua" => [
        "Error: Unknown filter rule: \"bogus rule\"",
    ];
    lua_syntax_error_is_reported_as_loading_error: "bad_lua_syntax.lua" => [
        "Error: error loading {CFG}: ",
    ];
    lua_runtime_error_is_reported_as_preparing_error: "bad_lua_runtime.lua" => [
        "Error: error preparing {CFG}: ",
    ];
    config_without_syncs_has_nothing_to_watch: "bad_no_syncs.lua" => [
        "Error: Nothing to watch!",
    ];
    invalid_inotify_mode_is_rejected: "bad_inotify_mode.lua" => [
        "{CFG}:2: settings: \"inotifyMode\" must be one of \"Modify\", \"CloseWrite\", \"CloseWrite or Modify\" (got string \"Sometimes\")",
    ];
}

/// Lua's own positions cut a file name to its last ~56 bytes ("...tail"); ours print it whole,
/// so a config deep in a long path still names itself, in settings{}, sync{} and API errors.
#[test]
fn errors_in_a_config_under_a_long_path_name_the_whole_path() {
    let dir = TestDir::new();
    dir.mkdir("src");
    let deep = "a-directory-name-long-enough/that-lua-would-cut-the-file-name/of-the-config";
    dir.mkdir(deep);
    let cases = [
        (
            "settings{ inotifyMode = 'Sometimes' }",
            "\"inotifyMode\" must be one of",
        ),
        (
            "settings{ noSuchSetting = 1 }",
            "setting \"noSuchSetting\" unknown.",
        ),
        (
            "sync{ default.rsync, source = 'src', target = 'dst', delay = 'x' }",
            "\"delay\"",
        ),
        ("spawn( 1, '/bin/true' )", "spawning with an invalid agent"),
    ];
    for (i, (stmt, needle)) in cases.iter().enumerate() {
        let cfg = dir.config(
            &format!("{deep}/c{i}.lua"),
            &format!("-- case {i}\n{stmt}\n"),
        );
        let cfg_str = cfg.to_str().expect("utf8");
        assert!(cfg_str.len() > 80, "{cfg_str}");
        let r = run(&dir, &["-nodaemon", cfg_str]);
        assert_eq!(r.code, 255, "{stmt}: {r:?}");
        let at = format!("{cfg_str}:2: ");
        assert!(
            r.stderr.contains(&at) && r.stderr.contains(needle),
            "{stmt}: want {needle:?} at {at:?}\n{r:?}"
        );
    }
}
