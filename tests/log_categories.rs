//! The `Inotify` and `Exclude` log categories print what upstream 2.2.3 prints for the same
//! operations (recorded from Debian's lsyncd with `-log Inotify -log Exclude`). Two
//! differences, both deliberate: watch descriptors print as integers (`(1)`, upstream `(1.0)`,
//! a Lua float artifact), and `rmwatch()<-N` of a removed directory comes right before its
//! `Delete` line (the kernel reports the watch gone before the parent's `IN_DELETE`; upstream
//! removes the watch only while handling that `Delete`).

use crate::util::{lua_str, Daemon, TestDir};

/// Upstream's trace categories: the loop's passes, logged only when enabled.
const TRACES: [&str; 4] = ["Call: ", "Function: ", "Masterloop: ", "Alarm: "];

/// Every log line, the console timestamp dropped.
fn untimed(log: &str) -> Vec<&str> {
    log.lines()
        .map(|l| {
            let b = l.as_bytes();
            if b.get(8) == Some(&b' ') && b.get(2) == Some(&b':') {
                &l[9..]
            } else {
                l
            }
        })
        .collect()
}

/// The index of the first line at or after `from` that starts with `prefix`.
fn find(lines: &[&str], from: usize, prefix: &str) -> usize {
    (from..lines.len())
        .find(|&i| lines[i].starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} after line {from}:\n{}", lines.join("\n")))
}

/// The seconds of the first `(Timestamp: S)` in a line.
fn stamp(line: &str) -> f64 {
    let rest = line.split("(Timestamp: ").nth(1).expect(line);
    rest[..rest.find(')').expect(line)].parse().expect(line)
}

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
    assert!(
        untimed(&d.log())
            .iter()
            .all(|l| !TRACES.iter().any(|t| l.starts_with(t))),
        "{}",
        d.log()
    );
}

#[test]
fn log_all_traces_each_pass_of_the_loop_at_upstreams_points() {
    let dir = TestDir::new();
    dir.mkdir("src");
    let src = dir.path_str("src");
    let config = dir.config(
        "trace.lua",
        &format!(
            "sync {{ default.rsync, source = {}, target = {}, delay = 1 }}\n",
            lua_str(&src),
            lua_str(dir.path_str("dst")),
        ),
    );
    let mut d = Daemon::config(&dir, &config, &["-log", "all"]);
    d.wait_startup();
    dir.mkdir("src/newdir");
    d.wait_log("Finished a list");
    assert_eq!(d.terminate(), 143);
    let log = d.log();
    let lines = untimed(&log);
    // Startup: configure, initialize, the watches, then the first pass runs the Init event
    // at once.
    let mut at = 0;
    for prefix in [
        "Call: configure( )",
        "Call: initialize( )",
        &format!("Function: Inotify.addWatch( {src}/ )"),
        &format!("Inotify: addwatch( {src}/ )-> "),
        "Call: getAlarm( )",
        "Function: getAlarm( )",
        "Alarm: runner.getAlarm returns: (true) Source:Sync1",
        "Masterloop: immediately handling delays.",
        "Call: cycle( )",
        "Function: cycle( (Timestamp: ",
        "Function: invokeActions( \"Sync1\", (Timestamp: ",
        "Exec: ",
        "Call: collectProcess( )",
        "Delay: collected an event",
        "Normal: Startup of ",
    ] {
        at = find(&lines, at, prefix) + 1;
    }
    // A new directory: the event, its watch, its delay, then passes that sleep until the
    // delay is due and a pass that runs it.
    for prefix in [
        "Call: inotifyEvent( )",
        "Inotify: got event Create newdir/",
        &format!("Function: Inotify.addWatch( {src}/newdir/ )"),
        &format!("Inotify: addwatch( {src}/newdir/ )-> "),
        "Function: delay( Sync1, Create, /newdir/, (nil) )",
        "Delay: New Create: /newdir/",
        "Call: cycle( )",
    ] {
        at = find(&lines, at, prefix) + 1;
    }
    let queued = stamp(lines[at]);
    // The first answer naming the sync is its delay's due time.
    let mut alarm = find(&lines, at, "Alarm: runner.getAlarm returns: (Timestamp: ");
    while !lines[alarm].ends_with(" Source:Sync1") {
        alarm = find(
            &lines,
            alarm + 1,
            "Alarm: runner.getAlarm returns: (Timestamp: ",
        );
    }
    let wait = stamp(lines[alarm]) - queued;
    assert!(
        (0.5..=1.01).contains(&wait),
        "due {wait} s after queueing:\n{log}"
    );
    let select = lines[alarm + 1];
    let timeout: f64 = select
        .strip_prefix("Masterloop: going into select ( timeout ")
        .and_then(|r| r.strip_suffix(" seconds )"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{select:?} after the alarm:\n{log}"));
    assert!(timeout > 0.0 && timeout <= 1.0, "{select}");
    at = alarm + 2;
    for prefix in [
        "Call: cycle( )",
        "Function: invokeActions( \"Sync1\", (Timestamp: ",
        "Normal: Calling rsync with filter-list",
        "Call: collectProcess( )",
        "Delay: collected a list",
        "Normal: Finished a list",
        "Call: term( )",
    ] {
        at = find(&lines, at, prefix) + 1;
    }
    assert_eq!(lines[at], "Normal: --- TERM signal, fading ---", "{log}");
    // Every pass before the TERM: getAlarm, its answer, then the sleep; every cycle with its
    // time.
    let running = &lines[..at];
    for (i, l) in running.iter().enumerate() {
        let next = running.get(i + 1).copied().unwrap_or("");
        match *l {
            "Call: getAlarm( )" => assert_eq!(next, "Function: getAlarm( )", "line {i}"),
            "Function: getAlarm( )" => {
                assert!(next.starts_with("Alarm: runner.getAlarm returns: "))
            }
            "Call: cycle( )" => assert!(next.starts_with("Function: cycle( (Timestamp: ")),
            l if l.starts_with("Alarm: runner.getAlarm") => assert!(
                next.starts_with("Masterloop: going into select (")
                    || next == "Masterloop: immediately handling delays.",
                "line {i}: {next:?}"
            ),
            _ => {}
        }
    }
    let count = |p: &str| running.iter().filter(|l| l.starts_with(p)).count();
    assert_eq!(count("Call: getAlarm( )"), count("Masterloop: "), "{log}");
    assert_eq!(count("Call: cycle( )"), count("Function: cycle( "), "{log}");
}

#[test]
fn each_trace_category_can_be_enabled_alone() {
    let dir = TestDir::new();
    dir.mkdir("src");
    let config = dir.config(
        "alone.lua",
        &format!(
            "sync {{ default.rsync, source = {}, target = {}, delay = 0 }}\n",
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
        ),
    );
    let mut d = Daemon::config(&dir, &config, &["-log", "Alarm", "-log", "Masterloop"]);
    d.wait_startup();
    d.wait_log("Masterloop: going into select ( no timeout )");
    assert_eq!(d.terminate(), 143);
    let log = d.log();
    let lines = untimed(&log);
    assert!(
        lines.contains(&"Alarm: runner.getAlarm returns: (true) Source:Sync1"),
        "{log}"
    );
    assert!(
        lines.contains(&"Masterloop: immediately handling delays."),
        "{log}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("Call: ") || l.starts_with("Function: ")),
        "{log}"
    );
}
