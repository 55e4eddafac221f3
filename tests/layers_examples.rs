//! Configs modelled on upstream's examples (`/usr/share/doc/lsyncd/examples/`), written by us
//! under `fixtures/configs/layer_example_*.lua`: they load and do their job. (The bash cp
//! mirror, modelled on lbash.lua, is `layer3_bash_mirror.lua`, run by
//! `layers::layer3_shell_mirror_converges_on_500_random_operations`.)
//! All pass against upstream 2.2.3 as well.

use crate::layers::start_layer;
use crate::util::{TestDir, Then};

#[test]
fn example_alarm_driven_sync_mirrors_the_tree_every_second() {
    let dir = TestDir::new();
    dir.write("src/before", "1\n");
    let mut d = start_layer(&dir, "layer_example_alarm.lua", &[]);
    d.wait_log("Beep");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    dir.write("src/sub/after", "2\n");
    dir.remove("src/before");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_log_count("Beep", 3);
    let src = dir.path_str("src");
    assert!(
        d.log()
            .contains(&format!("Normal: Finished Blanket on {src}/ = 0")),
        "{}",
        d.log()
    );
}

#[test]
fn example_echo_tattler_tells_about_every_event() {
    let dir = TestDir::new();
    let mut d = start_layer(&dir, "layer_example_echo.lua", &[]);
    let src = dir.path_str("src");
    d.wait_log(&format!("\ntelling about {src}/\n"));
    d.wait_log(&format!("Startup of {src}/ -> "));

    dir.write("src/a", "x\n");
    d.wait_log("\ncreate a\n");
    d.wait_log("\nmodify a\n");
    d.wait_log(&format!("Finished Modify on {src}//a = 0"));
    std::fs::set_permissions(
        dir.path("src/a"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    d.wait_log("\nattrib a\n");
    d.wait_log(&format!("Finished Attrib on {src}//a = 0"));
    dir.rename("src/a", "src/b");
    d.wait_log("\nmove a -> b\n");
    d.wait_log(&format!("Finished Move on {src}//a = 0"));
    dir.remove("src/b");
    d.wait_log("\ndelete b\n");
    assert!(
        d.log().contains(
            "Normal: Event Move spawns action \"/bin/echo move ^o.pathname -> ^d.pathname\""
        ),
        "{}",
        d.log()
    );
}

#[test]
fn example_postcmd_runs_after_each_rsync() {
    let dir = TestDir::new();
    dir.write("src/before", "1\n");
    let rec = dir.recorder(Then::Exit(0));
    let mut d = start_layer(&dir, "layer_example_postcmd.lua", &["-log", "Exec"]);
    d.wait_log("Startup of ");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    // the startup transfer has no post-command
    assert!(rec.calls().is_empty());

    dir.write("src/after", "2\n");
    let calls = rec.wait_calls(&mut d, 1);
    assert_eq!(
        calls[0].args(),
        sv!["localhost", "/usr/local/bin/dopostcmd"]
    );
    d.wait_log("Normal: postcmd finished = 0");
    // the post-command started only after the transfer had finished
    let log = d.log();
    let rsynced = log
        .find("Finished a list after exitcode: 0")
        .unwrap_or_else(|| panic!("no finished transfer\n{log}"));
    let postcmd = log
        .find(&format!("Exec: {}", rec.path().display()))
        .unwrap_or_else(|| panic!("no post-command\n{log}"));
    assert!(rsynced < postcmd, "{log}");
    d.wait_trees_equal(&dir.src(), &dir.dst());
}

#[test]
fn example_rsyncssh_with_custom_action_moves_by_ssh() {
    let dir = TestDir::new();
    dir.write("src/a", "1\n");
    let rsync = dir.recorder_at("rsync.sh", Then::Exit(0));
    let ssh = dir.recorder_at("ssh.sh", Then::Exit(0));
    let mut d = start_layer(&dir, "layer_example_rsyncssh.lua", &[]);
    let src = dir.path_str("src");
    let calls = rsync.wait_calls(&mut d, 1);
    let startup = calls[0].args();
    assert_eq!(
        startup[startup.len() - 2..],
        [format!("{src}/"), "remotehost:/remote/dir/".to_string()]
    );
    d.wait_log("Startup of ");

    dir.rename("src/a", "src/b");
    let calls = ssh.wait_calls(&mut d, 1);
    assert_eq!(
        calls[0].args(),
        sv![
            "-p",
            "2222",
            "remotehost",
            "mv",
            "'/remote/dir/a'",
            "'/remote/dir/b'",
            "||",
            "rm",
            "-rf",
            "'/remote/dir/a'"
        ]
    );
    d.wait_log("Normal: custom action: move #1 a -> b");

    dir.write("src/c", "2\n");
    let calls = rsync.wait_calls(&mut d, 2);
    assert!(calls[1].stdin_str().contains("/c"), "{:?}", calls[1]);
    assert_eq!(
        calls[1].args()[calls[1].args().len() - 2..],
        [format!("{src}/"), "remotehost:/remote/dir/".to_string()]
    );
}
