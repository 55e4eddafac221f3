//! Layer 1 (SPEC §6.5, §7.1–§7.4, §4.7, §5.7): custom `action(inlet)` and `collect` in
//! configs under `fixtures/configs/layer1_*.lua`, recording what they spawn with `rec.sh`.
//! All pass against upstream 2.2.3 as well.

use crate::layers::start_layer;
use crate::util::{TestDir, Then, TIMEOUT};

#[test]
fn layer1_action_batches_events_with_get_events_get_paths_and_stdin() {
    let dir = TestDir::new();
    dir.write("src/old", "old\n");
    let rec = dir.recorder(Then::Exit(0));
    let mut d = start_layer(&dir, "layer1_batch.lua", &["-log", "Layer1"]);
    d.wait_log("Normal: watching ");

    // one burst, well inside the one-second delay
    dir.rename("src/old", "src/new");
    for f in ["a", "skip1", "stop1", "b"] {
        dir.write(format!("src/{f}"), format!("{f}\n"));
    }
    // the walk stops at stop1; skip1 is left out
    let calls = rec.wait_calls(&mut d, 1);
    assert_eq!(
        calls[0].args(),
        sv!["list", "Move:/old", "/new", "Create:/a", "Modify:/a"]
    );
    assert_eq!(calls[0].stdin_str(), "/old\n/new\n/a\n/a\n");

    // collect said 'again' once: the same list runs a second time (after a second), then
    // 'ok' ends it
    let calls = rec.wait_calls(&mut d, 2);
    assert_eq!(calls[1], calls[0]);
    d.wait_log("Layer1: collect #2 isList=(true) exitcode=0 -> ok");

    let calls = rec.wait_calls(&mut d, 5);
    assert_eq!(calls[2].args(), sv!["single", "Create", "stop1"]);
    assert_eq!(calls[3].args(), sv!["single", "Modify", "stop1"]);
    assert_eq!(calls[4].args(), sv!["list", "Create:/b", "Modify:/b"]);
    assert_eq!(calls[4].stdin_str(), "/b\n/b\n");
    let log = d.log();
    assert!(
        log.contains("Layer1: collect #1 isList=(true) exitcode=0 -> again"),
        "{log}"
    );
    assert!(
        log.contains("Layer1: collect #3 isList=(false) exitcode=0 -> ok"),
        "{log}"
    );
    assert!(log.contains("Layer1: discarding Create skip1"), "{log}");
    assert!(log.contains("Layer1: discarding Modify skip1"), "{log}");
    assert!(
        log.contains("Layer1: list of 4 isList=(true) config=(true)"),
        "{log}"
    );
    assert!(
        log.contains("inlet does not have function \"nonsense\""),
        "{log}"
    );
    assert!(
        log.contains("event list does not have function \"nonsense\""),
        "{log}"
    );

    // nothing of the finished lists and nothing discarded comes back
    dir.write("src/c", "c\n");
    let calls = rec.wait_calls(&mut d, 6);
    assert_eq!(calls[5].args(), sv!["list", "Create:/c", "Modify:/c"]);
    assert_eq!(rec.calls().len(), 6);
}

#[test]
fn layer1_discard_blanket_event_and_runtime_excludes() {
    let dir = TestDir::new();
    let rec = dir.recorder(Then::Exit(0));
    let mut d = start_layer(&dir, "layer1_blanket.lua", &["-log", "Layer1"]);
    d.wait_log("Normal: watching ");

    dir.write("src/x", "x\n");
    let calls = rec.wait_calls(&mut d, 2);
    assert_eq!(calls[0].args(), sv!["Modify", "x"]);
    // the tag set on the table createBlanketEvent returned is on the event getEvent returns
    assert_eq!(calls[1].args(), sv!["blanket", "after x", "", "wait"]);
    d.wait_log("Layer1: discarding Create x");
    d.wait_log("Error: Ignored cancel of a non-waiting event of type Blanket");

    // exclude *.tmp from now on
    dir.write("src/exclude-tmp", "");
    d.wait_log("Layer1: excludes: [*.tmp]");
    dir.write("src/a.tmp", "a\n");
    dir.write("src/b.txt", "b\n");
    let calls = rec.wait_calls(&mut d, 4);
    assert_eq!(calls[2].args(), sv!["Modify", "b.txt"]);
    assert_eq!(calls[3].args(), sv!["blanket", "after b.txt", "", "wait"]);

    // and include it again
    dir.write("src/include-tmp", "");
    d.wait_log("Layer1: excludes: []");
    dir.write("src/c.tmp", "c\n");
    let calls = rec.wait_calls(&mut d, 6);
    assert_eq!(calls[4].args(), sv!["Modify", "c.tmp"]);
    assert_eq!(calls[5].args(), sv!["blanket", "after c.tmp", "", "wait"]);
    let log = d.log();
    assert!(!log.contains("a.tmp"), "{log}");
    assert!(rec
        .calls()
        .iter()
        .all(|c| !c.args().concat().contains("a.tmp")));
}

#[test]
fn layer1_collect_die_ends_lsyncd_with_255() {
    let dir = TestDir::new();
    let mut d = start_layer(&dir, "layer1_die.lua", &[]);
    d.wait_log("Normal: watching ");
    dir.write("src/f", "");
    let code = d.wait_exit(TIMEOUT);
    let log = d.log();
    assert_eq!(code, Some(255), "{log}");
    assert!(log.contains("Normal: collecting Create = 0"), "{log}");
    assert!(log.contains("Error: Critical exitcode."), "{log}");
}
