//! Type and range checks of every documented `settings{}`, `sync{}`, `rsync{}`, `ssh{}` and
//! `tunnel{}` key: a wrong value is rejected while the config loads (`-t` and a real start
//! alike) with exit 255, naming the key, what was expected, and the config file and line.
//! A NUL byte in a string that would reach an argv, a path or an exclude is one of those
//! errors, not a spawn failure later.

use crate::util::{run, TestDir};

const RSYNC: &str = "sync{ default.rsync, source = 'src', target = 'dst', ";
const SSH: &str = "sync{ default.rsyncssh, source = 'src', host = 'h', targetdir = 't', ";

/// (Lua statement, key that must be named).
fn cases() -> Vec<(String, &'static str)> {
    let settings = |kv: &str| format!("settings{{ {kv} }}");
    let rsync = |kv: &str| format!("{RSYNC}{kv} }}");
    let ssh = |kv: &str| format!("{SSH}{kv} }}");
    let tunnel = |kv: &str| format!("tunnel{{ command = {{ 'true' }}, {kv} }}");
    vec![
        (settings("logfile = {}"), "logfile"),
        (settings("logfile = '/l\\0x'"), "logfile"),
        (settings("pidfile = 5"), "pidfile"),
        (settings("nodaemon = 'yes'"), "nodaemon"),
        (settings("onepass = 1"), "onepass"),
        (settings("statusFile = print"), "statusFile"),
        (settings("statusInterval = -1"), "statusInterval"),
        (settings("statusInterval = 'x'"), "statusInterval"),
        (settings("logfacility = {}"), "logfacility"),
        (settings("logident = true"), "logident"),
        (settings("insist = 'no'"), "insist"),
        (settings("inotifyMode = true"), "inotifyMode"),
        (settings("inotifyMode = 'Sometimes'"), "inotifyMode"),
        (settings("maxProcesses = 'x'"), "maxProcesses"),
        (settings("maxProcesses = 0"), "maxProcesses"),
        (settings("maxProcesses = 1.5"), "maxProcesses"),
        (settings("maxDelays = {}"), "maxDelays"),
        (settings("maxDelays = 0"), "maxDelays"),
        (settings("maxBackoff = 0"), "maxBackoff"),
        (settings("maxBackoff = math.huge"), "maxBackoff"),
        (settings("maxPending = 'many'"), "maxPending"),
        (settings("maxPending = 0"), "maxPending"),
        (settings("stopGrace = -1"), "stopGrace"),
        (settings("stopGrace = 0/0"), "stopGrace"),
        (settings("stopGrace = '5'"), "stopGrace"),
        (rsync("target = {}"), "target"),
        (rsync("target = '/dst\\0x'"), "target"),
        (
            "sync{ default.rsync, source = 5, target = 'dst' }".to_string(),
            "source",
        ),
        (rsync("delay = -1"), "delay"),
        (rsync("delay = 'soon'"), "delay"),
        (rsync("delay = 0/0"), "delay"),
        (rsync("maxDelays = 0"), "maxDelays"),
        (rsync("maxProcesses = 0"), "maxProcesses"),
        (rsync("maxProcesses = 'x'"), "maxProcesses"),
        (rsync("batchSizeLimit = -5"), "batchSizeLimit"),
        (rsync("delete = 'always'"), "delete"),
        (rsync("delete = 1"), "delete"),
        (rsync("exclude = 5"), "exclude"),
        (rsync("exclude = { 'a', 'b\\0c' }"), "exclude[2]"),
        (rsync("excludeFrom = {}"), "excludeFrom"),
        (rsync("filter = { 1 }"), "filter[1]"),
        (rsync("filterFrom = true"), "filterFrom"),
        (rsync("crontab = '* * * * *'"), "crontab"),
        (rsync("monitor = 5"), "monitor"),
        (rsync("action = 5"), "action"),
        (rsync("collect = 'x'"), "collect"),
        (rsync("init = 5"), "init"),
        (rsync("full = {}"), "full"),
        (rsync("prepare = 1"), "prepare"),
        (rsync("exitcodes = 5"), "exitcodes"),
        (rsync("exitcodes = { [0] = 'fine' }"), "exitcodes[0]"),
        (rsync("tunnel = {}"), "tunnel"),
        (rsync("rsync = 5"), "rsync"),
        (rsync("rsync = { binary = {} }"), "rsync.binary"),
        (
            rsync("rsync = { binary = '/usr/bin/rsync\\0x' }"),
            "rsync.binary",
        ),
        (
            rsync("rsync = { _extra = { '-v', 'a\\0b' } }"),
            "rsync._extra[2]",
        ),
        (rsync("rsync = { _extra = '--foo' }"), "rsync._extra"),
        (rsync("rsync = { archive = 'yes' }"), "rsync.archive"),
        (rsync("rsync = { compress = 1 }"), "rsync.compress"),
        (rsync("rsync = { bwlimit = -1 }"), "rsync.bwlimit"),
        (rsync("rsync = { timeout = 'never' }"), "rsync.timeout"),
        (rsync("rsync = { rsh = {} }"), "rsync.rsh"),
        (rsync("rsync = { chmod = true }"), "rsync.chmod"),
        (
            rsync("rsync = { password_file = 'x\\0' }"),
            "rsync.password_file",
        ),
        (rsync("rsync = { temp_dir = 3 }"), "rsync.temp_dir"),
        (ssh("host = {}"), "host"),
        (ssh("targetdir = true"), "targetdir"),
        (ssh("ssh = { port = 'x' }"), "ssh.port"),
        (ssh("ssh = { port = 70000 }"), "ssh.port"),
        (ssh("ssh = { binary = 5 }"), "ssh.binary"),
        (ssh("ssh = { identityFile = {} }"), "ssh.identityFile"),
        (ssh("ssh = { options = 'x' }"), "ssh.options"),
        (ssh("ssh = { options = { User = {} } }"), "ssh.options.User"),
        (ssh("ssh = { _extra = { true } }"), "ssh._extra[1]"),
        (ssh("sshExitCodes = 5"), "sshExitCodes"),
        (ssh("rsyncExitCodes = 'x'"), "rsyncExitCodes"),
        (ssh("onMove = 5"), "onMove"),
        (tunnel("mode = 'magic'"), "mode"),
        (tunnel("parallel = 0"), "parallel"),
        (tunnel("retryDelay = -1"), "retryDelay"),
        (tunnel("readyDelay = 'x'"), "readyDelay"),
        (tunnel("localhost = {}"), "localhost"),
        (tunnel("checkMaxFailed = 0"), "checkMaxFailed"),
        (tunnel("distribution = 'random'"), "distribution"),
        (
            "tunnel{ command = { 'ssh', 'a\\0b' } }".to_string(),
            "command[2]",
        ),
        ("tunnel{ command = 5 }".to_string(), "command"),
        (
            "sync{ default.direct, source = 'src', target = 'dst', onMove = 5 }".to_string(),
            "onMove",
        ),
        (
            "sync{ source = 'src', onCreate = 5 }".to_string(),
            "onCreate",
        ),
    ]
}

#[test]
fn every_documented_key_rejects_wrong_types_and_ranges_naming_key_file_and_line() {
    let dir = TestDir::new();
    dir.mkdir("src");
    dir.mkdir("dst");
    let mut failures = Vec::new();
    for (i, (stmt, key)) in cases().iter().enumerate() {
        let name = format!("c{i}.lua");
        let cfg = dir.config(&name, &format!("-- case {i}\n{stmt}\n"));
        let cfg_str = cfg.to_str().expect("utf8");
        for mode in [&["-t"][..], &["-nodaemon"][..]] {
            let mut args: Vec<&str> = mode.to_vec();
            args.push(cfg_str);
            let r = run(&dir, &args);
            let named = format!("\"{key}\" must be ");
            let line = format!("{cfg_str}:2: ");
            if r.code != 255 || !r.stderr.contains(&named) || !r.stderr.contains(&line) {
                failures.push(format!(
                    "{stmt} ({mode:?}): want {named:?} at {line:?}\n{r:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn valid_values_of_the_same_keys_still_load() {
    let dir = TestDir::new();
    dir.mkdir("src");
    dir.mkdir("dst");
    let cfg = dir.config(
        "ok.lua",
        "settings{ logfile = '/dev/null', nodaemon = true, statusInterval = 0, \
         inotifyMode = 'CloseWrite or Modify', maxProcesses = 1, maxDelays = 10, \
         maxBackoff = 60, maxPending = 1000, stopGrace = math.huge, insist = true }\n\
         sync{ default.rsync, source = 'src', target = 'dst', delay = 0.5, delete = 'running', \
         exclude = { '*.tmp' }, init = false, exitcodes = { [0] = 'ok', [23] = 'again' }, \
         rsync = { binary = 'rsync', archive = true, bwlimit = 100, timeout = 30, \
         _extra = { '--inplace', 5 }, chmod = 'u+rw' } }\n\
         sync{ default.rsyncssh, source = 'src', host = 'h', targetdir = 't', \
         ssh = { port = 22, options = { User = 'u', ConnectTimeout = 5 }, _extra = { '-4' } } }\n\
         local t = tunnel{ command = 'ssh -N h', parallel = 2, retryDelay = 1, mode = 'command' }\n",
    );
    let r = run(&dir, &["-t", cfg.to_str().expect("utf8")]);
    assert_eq!(r.code, 0, "{r:?}");
}

/// Every numeric key: (statement template with `V` for the value, key, integer only, largest
/// accepted value: `None` for any finite one, `Some(inf)` where math.huge means "for ever").
fn numeric_keys() -> Vec<(String, &'static str, bool, Option<f64>)> {
    let settings = |k: &str| format!("settings{{ {k} = V }}");
    let rsync = |kv: &str| format!("{RSYNC}{kv} }}");
    let tunnel = |k: &str| format!("tunnel{{ command = {{ 'true' }}, {k} = V }}");
    vec![
        (settings("statusInterval"), "statusInterval", false, None),
        (settings("maxProcesses"), "maxProcesses", true, None),
        (settings("maxDelays"), "maxDelays", true, None),
        (
            settings("maxBackoff"),
            "maxBackoff",
            false,
            Some(31_536_000.0),
        ),
        (settings("maxPending"), "maxPending", true, None),
        (
            settings("stopGrace"),
            "stopGrace",
            false,
            Some(f64::INFINITY),
        ),
        (rsync("delay = V"), "delay", false, None),
        (rsync("maxDelays = V"), "maxDelays", true, None),
        (rsync("maxProcesses = V"), "maxProcesses", true, None),
        (rsync("batchSizeLimit = V"), "batchSizeLimit", false, None),
        (
            rsync("rsync = { timeout = V }"),
            "rsync.timeout",
            true,
            Some(2_147_483_647.0),
        ),
        (
            format!("{SSH}ssh = {{ port = V }} }}"),
            "ssh.port",
            true,
            Some(65_535.0),
        ),
        (tunnel("parallel"), "parallel", true, Some(1000.0)),
        (tunnel("retryDelay"), "retryDelay", false, None),
        (tunnel("readyDelay"), "readyDelay", false, None),
        (tunnel("checkMaxFailed"), "checkMaxFailed", true, None),
    ]
}

/// NaN, infinities, negative, fractional, out-of-range and wrong-typed values of every numeric
/// key are refused naming the key; what is accepted (huge finite values of unbounded keys)
/// must load without a panic.
#[test]
fn every_numeric_key_refuses_nan_infinities_negatives_fractions_and_wrong_types() {
    let dir = TestDir::new();
    dir.mkdir("src");
    dir.mkdir("dst");
    let mut failures = Vec::new();
    let mut n = 0;
    for (template, key, integer, max) in numeric_keys() {
        let values: Vec<(&str, bool)> = vec![
            ("0/0", false),
            ("-math.huge", false),
            ("-1", false),
            ("-0.5", false),
            ("{}", false),
            ("true", false),
            ("1.5", !integer && max.is_none_or(|m| m >= 1.5)),
            ("math.huge", max == Some(f64::INFINITY)),
            ("2^63", max.is_none_or(|m| m >= 2f64.powi(63))),
            ("1e300", max.is_none_or(|m| m >= 1e300)),
            ("7", true),
            ("'x'", false),
        ];
        for (value, accepted) in values {
            n += 1;
            let stmt = template.replace('V', value);
            let plain = "sync{ default.rsync, source = 'src', target = 'dst' }";
            let cfg = dir.config(&format!("n{n}.lua"), &format!("{stmt}\n{plain}\n"));
            let r = run(&dir, &["-t", cfg.to_str().expect("utf8")]);
            let named = format!("\"{key}\" must be ");
            let ok = if accepted {
                r.code == 0
            } else {
                r.code == 255 && r.stderr.contains(&named)
            };
            if !ok || r.stderr.contains("panicked") {
                failures.push(format!("{stmt}: want accepted = {accepted}\n{r:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The largest values a config may give (huge delays, counts and intervals) run without a
/// panic or an overflow: the daemon syncs with its other sync and stops on TERM.
#[test]
fn huge_accepted_numbers_run_without_a_panic() {
    let dir = TestDir::new();
    dir.mkdir("src");
    let cfg = dir.config(
        "huge.lua",
        "settings{ statusInterval = 1e300, maxProcesses = 2^63, maxDelays = 2^63, \
         maxBackoff = 31536000, maxPending = 2^63, stopGrace = 1e300, statusFile = 'status' }\n\
         sync{ default.rsync, source = 'src', target = 'dst', delay = 0, maxDelays = 2^63, \
         maxProcesses = 2^63, batchSizeLimit = 1e300 }\n\
         sync{ default.rsync, source = 'src', target = 'dst2', delay = 1e300 }\n",
    );
    let mut d = crate::util::Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_for("the startup transfer", || dir.exists("dst2"));
    dir.write("src/f", "x\n");
    d.wait_for("a change synced", || dir.exists("dst/f"));
    assert!(!d.log().contains("panicked"), "{}", d.log());
    assert_eq!(d.terminate(), 143, "{}", d.log());
}
