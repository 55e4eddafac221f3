//! What configs see around the layers (SPEC §2.2, §2.3, §2.10, §6.5): user alarms, timestamp
//! arithmetic, global locking after the config has run, and fatal Lua errors in user code.
//! All pass against upstream 2.2.3 as well.

use std::time::{Duration, Instant};

use crate::layers::start_layer;
use crate::util::{fixture, make_fifo, open_for_writing, Daemon, TestDir};

#[test]
fn alarms_fire_in_time_order_then_global_locking_applies_in_callbacks() {
    let dir = TestDir::new();
    let started = Instant::now();
    let mut d = start_layer(&dir, "layer_alarm_globals.lua", &["-log", "Tick"]);
    let code = d.wait_exit(Duration::from_secs(30));
    let elapsed = started.elapsed();
    let log = d.log();
    assert_eq!(code, Some(255), "{log}");
    assert!(
        elapsed >= Duration::from_millis(1900),
        "exited after {elapsed:?}\n{log}"
    );

    let ticks: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("Tick: ").map(|(_, m)| m))
        .collect();
    let cfg = "layer_alarm_globals.lua";
    assert_eq!(ticks.len(), 8, "{log}");
    assert_eq!(
        &ticks[..4],
        [
            "A #1 at +1.00 due=(true)",
            "B #1 at +1.25 due=(true)",
            "A #2 at +1.50 due=(true)",
            "A #3 at +2.00 due=(true)",
        ],
        "{log}"
    );
    assert!(
        ticks[4].starts_with("write: ")
            && ticks[4].contains(&format!("{cfg}:21: "))
            && ticks[4].ends_with(
                "Lsyncd does not allow GLOBALS to be created on the fly. \
                 Declare \"undeclared\" local or declare global on load."
            ),
        "{}",
        ticks[4]
    );
    assert!(
        ticks[5].starts_with("read: ")
            && ticks[5].contains(&format!("{cfg}:23: "))
            && ticks[5].ends_with("Access of non-existing global \"alsoUndeclared\""),
        "{}",
        ticks[5]
    );
    assert_eq!(ticks[6], "declaredOnLoad=1 __private=2 __unset=(nil)");
    assert_eq!(
        ticks[7],
        "sync: Sync can only be created during initialization."
    );
    let fatal = log
        .lines()
        .find(|l| l.contains("Error: in Lua: "))
        .unwrap_or_else(|| panic!("no Lua error logged\n{log}"));
    assert!(
        fatal.contains(&format!("{cfg}:31: "))
            && fatal.ends_with("Declare \"createdOnTheFly\" local or declare global on load."),
        "{fatal}"
    );
}

#[test]
fn runtime_error_in_a_handler_is_logged_with_file_and_line_and_exits_255() {
    let dir = TestDir::new();
    let mut d = start_layer(&dir, "layer2_runtime_error.lua", &[]);
    d.wait_log("Normal: watching ");
    dir.write("src/f", "");
    let code = d.wait_exit(Duration::from_secs(30));
    let log = d.log();
    assert_eq!(code, Some(255), "{log}");
    let fatal = log
        .lines()
        .find(|l| l.contains("Error: in Lua: "))
        .unwrap_or_else(|| panic!("no Lua error logged\n{log}"));
    assert!(
        fatal.ends_with("layer2_runtime_error.lua:15: attempt to index a nil value (local 't')"),
        "{fatal}"
    );
}

/// `observefd(fd, ready)`: a descriptor the config opened is watched by the main loop; its
/// callback runs each time it is readable (level-triggered, as upstream's select), until
/// `nonobservefd`.
#[test]
fn observefd_calls_back_when_the_descriptor_is_readable() {
    let dir = TestDir::new();
    let fifo = make_fifo(&dir);
    let mut d = Daemon::start_with(&dir, &[fixture("layer_observefd.lua")], |cmd| {
        cmd.env("LAYER_ROOT", dir.root());
    });
    d.wait_log("--- Startup ---");
    let mut w = open_for_writing(&fifo);
    std::io::Write::write_all(&mut w, b"hello\n").expect("write");
    d.wait_log("observed fd matches: hello");
    std::io::Write::write_all(&mut w, b"last\n").expect("write");
    d.wait_log("stopped observing");
}
