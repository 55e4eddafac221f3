//! Features of lsyncd 2.3 (SPEC §14): `-script` files run before the config, and
//! `batchSizeLimit` sending large files in rsync processes of their own (SPEC §9.7).

use crate::util::{lua_str, rsync_path, Daemon, TestDir, Then};

#[test]
fn script_files_run_before_the_config_in_order() {
    rsync_path();
    let dir = TestDir::new();
    let first = dir.config("first.lua", "preScriptValue = 'one'\n");
    let second = dir.config("second.lua", "preScriptValue = preScriptValue .. ',two'\n");
    let config = dir.config(
        "main.lua",
        &format!(
            "if preScriptValue ~= 'one,two' then error('scripts did not run first: ' .. tostring(preScriptValue)) end\n\
             sync{{ default.rsync, source = {}, target = {}, delay = 1 }}\n",
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst"))
        ),
    );
    let mut d = Daemon::start(
        &dir,
        &[
            "-log".as_ref(),
            "Info".as_ref(),
            "-script".as_ref(),
            first.as_os_str(),
            "-script".as_ref(),
            second.as_os_str(),
            config.as_os_str(),
        ],
    );
    d.wait_log("Run addition script: ");
    d.wait_startup();
    let log = d.log();
    let one = log.find("first.lua").expect("first script logged");
    let two = log.find("second.lua").expect("second script logged");
    assert!(one < two, "scripts run in command-line order:\n{log}");
}

#[test]
fn batch_size_limit_sends_large_files_in_their_own_rsync() {
    let dir = TestDir::new();
    let rec = dir.recorder(Then::ExecRsync);
    let config = dir.config(
        "batch.lua",
        &format!(
            "sync{{ default.rsync, source = {}, target = {}, delay = 3, maxProcesses = 2,\n\
             batchSizeLimit = 1048576, rsync = {{ binary = {} }} }}\n",
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
            lua_str(rec.path().to_string_lossy().as_bytes())
        ),
    );
    let mut d = Daemon::config(&dir, &config, &[] as &[&str]);
    d.wait_startup();
    rec.wait_calls(&mut d, 1);

    dir.write("src/big.bin", vec![7u8; 5 * 1024 * 1024]);
    for i in 0..50 {
        dir.write(format!("src/small-{i:02}.txt"), format!("{i}\n"));
    }
    rec.wait_calls(&mut d, 3);
    d.wait_trees_equal(&dir.src(), &dir.dst());
    // The big file's Create and Modify are two delays (SPEC §4.3). They normally leave in one
    // list; when the Modify is read after the action took the Create, it leaves in a second
    // rsync of its own. Either way the big file never shares an rsync with the small files.
    let calls = rec.calls();
    assert!(
        (3..=4).contains(&calls.len()),
        "startup, one batch of small files, one or two for the big file: {}",
        calls.len()
    );
    let lists: Vec<Vec<String>> = calls[1..]
        .iter()
        .map(|c| {
            c.stdin
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect()
        })
        .collect();
    let small = lists
        .iter()
        .find(|l| l.iter().any(|p| p == "/small-00.txt"))
        .expect("a batch of small files");
    let big = lists
        .iter()
        .find(|l| l.iter().any(|p| p == "/big.bin"))
        .expect("a list for the big file");
    assert_eq!(
        small.iter().filter(|p| p.starts_with("/small-")).count(),
        50,
        "{small:?}"
    );
    assert!(!small.iter().any(|p| p == "/big.bin"), "{small:?}");
    assert_eq!(big, &vec!["/big.bin".to_string(), "/".to_string()]);
    for list in &lists {
        let has_small = list.iter().any(|p| p.starts_with("/small-"));
        let has_big = list.iter().any(|p| p == "/big.bin");
        assert!(
            has_small != has_big,
            "every list is the small batch or the big file: {list:?}"
        );
        if has_small {
            assert!(
                std::ptr::eq(list, small),
                "one batch holds the small files: {lists:?}"
            );
        }
    }
}

/// A Full event created from a Layer 2 handler reaches `onFull` through `default.action` when
/// the config has no `full` function (SPEC §4.7, §7.5).
#[test]
fn full_event_from_a_handler_reaches_on_full() {
    let dir = TestDir::new();
    let config = dir.config(
        "onfull.lua",
        &format!(
            "sync{{ source = {},\n\
             onCreate = function(event) event.inlet.createFullEvent('/from-' .. event.basename) end,\n\
             onFull = function(event)\n\
               log('Normal', 'onFull etype=', event.etype, ' path=', event.path)\n\
             end }}\n",
            lua_str(dir.path_str("src"))
        ),
    );
    let mut d = Daemon::config(&dir, &config, &[] as &[&str]);
    d.wait_log("--- Startup ---");
    // The Init of a Layer 2 sync is discarded at once; then the watches are in place.
    crate::util::wait_until(std::time::Duration::from_secs(5), || {
        dir.write("src/trigger", "x");
        d.log().contains("onFull etype=Full path=from-trigger")
    });
    d.wait_log("onFull etype=Full path=from-trigger");
}
