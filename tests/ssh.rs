//! `default.rsyncssh` (SPEC §10) and the `-rsyncssh` / `-sshopts` shortcuts (SPEC §1.2-1.3)
//! against a private sshd on 127.0.0.1 (`util::sshd`): transfers over ssh, moves performed on
//! the target with one `ssh HOST mv ...` (inodes kept, hostile names intact), and an
//! unreachable target at startup, with and without `-insist`, or going away while running.
//! The random churn over ssh is in `churn.rs`.
//!
//! Against upstream (`LSYNCD_BIN`): `-sshopts` is 2.3; `cli_rsyncssh_with_sshopts_words_reaching_ssh`
//! also asserts that a quoted word with a space reaches rsync's `--rsh` quoted (upstream passes
//! it unquoted, which rsync splits).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::util::sshd::{SshRecorder, Sshd, HOST};
use crate::util::{fixture, lua_str, rsync_path, run, show, Daemon, TestDir, TIMEOUT};

/// A generated rsyncssh config: `src` to `127.0.0.1:<abs dst>` through `sshd`, `delay = 1`,
/// plus `extra` (more sync{} keys).
fn config(dir: &TestDir, sshd: &Sshd, extra: &str) -> PathBuf {
    config_with_ssh(dir, sshd, "", extra)
}

/// Like `config`, with `ssh_keys` (e.g. `binary = ...,`) added to the `ssh = {}` table.
fn config_with_ssh(dir: &TestDir, sshd: &Sshd, ssh_keys: &str, extra: &str) -> PathBuf {
    dir.config(
        "rsyncssh.lua",
        &format!(
            "sync{{\n    default.rsyncssh,\n    source = \"src\",\n    host = \"{HOST}\",\n    \
             targetdir = {},\n    delay = 1,\n    {},\n{extra}}}\n",
            lua_str(dir.path_str("dst")),
            sshd.lua_ssh_with(ssh_keys)
        ),
    )
}

/// Inode of `root/rel` (not following symlinks).
fn inode(dir: &TestDir, rel: impl AsRef<[u8]>) -> u64 {
    let p = dir.path(rel);
    std::fs::symlink_metadata(&p)
        .unwrap_or_else(|e| panic!("stat {p:?}: {e}"))
        .ino()
}

/// The `Exec:` lines of a daemon log whose argv contains `[mv]`: the ssh move calls.
fn mv_execs(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("Exec: ") && l.contains(" [mv] "))
        .collect()
}

#[test]
fn initial_sync_then_creates_modifies_and_deletes_over_ssh() {
    rsync_path();
    let sshd = Sshd::started();
    let dir = TestDir::new();
    dir.write("src/top.txt", "top\n");
    dir.write("src/a/b/deep.txt", "deep\n");
    dir.write("src/gone.txt", "to be deleted\n");
    dir.write("src/gone-dir/sub/f", "to be deleted\n");
    dir.mkdir("src/empty");
    dir.symlink("a/b/deep.txt", "src/link");
    dir.write("dst/stray.txt", "not in source\n");

    // The fixture is a plain upstream-syntax config taking port, key and target dir from the
    // environment.
    let cfg = fixture("ssh_rsyncssh.lua");
    let mut d = Daemon::start_with(&dir, &[cfg.as_os_str()], |cmd| {
        cmd.env("LSYNCD_TEST_SSH_PORT", sshd.port().to_string())
            .env("LSYNCD_TEST_SSH_KEY", sshd.key())
            .env("LSYNCD_TEST_TARGETDIR", dir.dst());
    });
    d.wait_log("Startup of \"");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert!(!dir.exists("dst/stray.txt"), "startup --delete");

    dir.write("src/new.txt", "new\n");
    dir.write("src/newdir/inner/f.txt", "inner\n");
    dir.write("src/top.txt", "top, modified\n");
    dir.write("src/a/b/deep.txt", "deep, modified\n");
    dir.remove("src/gone.txt");
    dir.remove("src/gone-dir");
    dir.remove("src/empty");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_log("Finished (list): 0");
}

#[test]
fn moved_directory_holding_20_mb_is_moved_on_target_not_sent_again() {
    rsync_path();
    let sshd = Sshd::started();
    let dir = TestDir::new();
    let big: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    dir.write("src/big/data.bin", &big);
    dir.write("src/big/sub/small.txt", "small\n");
    let cfg = config(&dir, &sshd, "");
    let mut d = Daemon::config(&dir, &cfg, &["-log", "Exec"]);
    d.wait_log("Startup of \"");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    let before = inode(&dir, "dst/big/data.bin");
    let small_before = inode(&dir, "dst/big/sub/small.txt");

    dir.rename("src/big", "src/moved");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_log("Finished Move ");
    assert_eq!(
        inode(&dir, "dst/moved/data.bin"),
        before,
        "the 20 MB file was sent again instead of moved\n{}",
        d.log()
    );
    assert_eq!(inode(&dir, "dst/moved/sub/small.txt"), small_before);

    let log = d.log();
    let moves = mv_execs(&log);
    assert_eq!(moves.len(), 1, "expected one ssh mv, got {moves:#?}\n{log}");
    let dst = dir.path_str("dst");
    let want_tail =
        format!("[{HOST}] [mv] ['{dst}/big/'] ['{dst}/moved/'] [||] [rm] [-rf] ['{dst}/big/']");
    assert!(
        moves[0].contains("Exec: ssh [") && moves[0].ends_with(&want_tail),
        "ssh move argv\n  got: {}\n want: ... {want_tail}",
        moves[0]
    );
    assert!(log.contains("Normal: Moving big/ -> moved/\n"), "{log}");
}

/// Names that a remote shell would split, expand or take for options, and bytes that are no
/// UTF-8.
const HOSTILE: &[&[u8]] = &[
    b"with space",
    b"single'quote",
    b"double\"quote",
    b"dollar$HOME and $(echo x) `echo y`",
    b"-leading-dash",
    b"--",
    b"latin1-caf\xe9",
    b"mixed '\" $x; echo injected #",
    b"tab\there*?[a]",
];

#[test]
fn hostile_names_survive_remote_shell_in_moves() {
    rsync_path();
    let sshd = Sshd::started();
    let dir = TestDir::new();
    let rec = SshRecorder::install(&dir, "ssh-rec.sh");
    for (i, name) in HOSTILE.iter().enumerate() {
        dir.write([b"src/".as_slice(), name].concat(), format!("file {i}\n"));
        dir.write(
            [b"src/".as_slice(), name, b".d/inner"].concat(),
            format!("dir {i}\n"),
        );
    }
    let cfg = config_with_ssh(&dir, &sshd, &format!("binary = {}, ", rec.lua()), "");
    let mut d = Daemon::config(&dir, &cfg, &["-log", "Exec"]);
    d.wait_log("Startup of \"");
    d.wait_trees_equal(&dir.src(), &dir.dst());

    let mut expect = Vec::new();
    for (i, name) in HOSTILE.iter().enumerate() {
        // Each name moves to another hostile name (the next one, with a prefix).
        let to = [b"moved ".as_slice(), HOSTILE[(i + 1) % HOSTILE.len()]].concat();
        let (f_from, f_to) = (
            [b"/".as_slice(), name].concat(),
            [b"/".as_slice(), &to].concat(),
        );
        let (d_from, d_to) = (
            [b"/".as_slice(), name, b".d/"].concat(),
            [b"/".as_slice(), &to, b".d/"].concat(),
        );
        expect.push((
            inode(&dir, [b"dst".as_slice(), &f_from].concat()),
            [b"dst".as_slice(), &f_to].concat(),
        ));
        expect.push((
            inode(&dir, [b"dst".as_slice(), &d_from, b"inner"].concat()),
            [b"dst".as_slice(), &d_to, b"inner"].concat(),
        ));
        dir.rename(
            [b"src".as_slice(), &f_from].concat(),
            [b"src".as_slice(), &f_to].concat(),
        );
        dir.rename(
            [b"src".as_slice(), &d_from[..d_from.len() - 1]].concat(),
            [b"src".as_slice(), &d_to[..d_to.len() - 1]].concat(),
        );
    }
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_log_count("Finished Move ", 2 * HOSTILE.len());
    for (ino, path) in &expect {
        assert_eq!(
            inode(&dir, path),
            *ino,
            "{} was not moved on the target (sent again instead)\n{}",
            show(path),
            d.log()
        );
    }

    // One ssh call per move, its remote command exactly SPEC §10.3's.
    let calls = rec.calls();
    assert_eq!(calls.len(), 2 * HOSTILE.len(), "{calls:?}");
    let q = |p: &[u8]| {
        let mut out = b"'".to_vec();
        for &b in [dir.dst().as_os_str().as_encoded_bytes(), p]
            .concat()
            .iter()
        {
            if b == b'\'' {
                out.extend_from_slice(b"'\"'\"'");
            } else {
                out.push(b);
            }
        }
        out.push(b'\'');
        out
    };
    for (i, name) in HOSTILE.iter().enumerate() {
        let to = [b"moved ".as_slice(), HOSTILE[(i + 1) % HOSTILE.len()]].concat();
        let from = [b"/".as_slice(), name].concat();
        let dest = [b"/".as_slice(), &to].concat();
        let want: Vec<Vec<u8>> = vec![
            HOST.into(),
            b"mv".to_vec(),
            q(&from),
            q(&dest),
            b"||".to_vec(),
            b"rm".to_vec(),
            b"-rf".to_vec(),
            q(&from),
        ];
        assert!(
            calls.iter().any(|c| c.ends_with(&want)),
            "no ssh call ends with {:?}\ncalls: {:?}",
            want.iter().map(|a| show(a)).collect::<Vec<_>>(),
            calls
                .iter()
                .map(|c| c.iter().map(|a| show(a)).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        );
    }
    let head = &calls[0];
    let key = sshd.key();
    for pair in [
        vec![b"-i".to_vec(), key.as_os_str().as_encoded_bytes().to_vec()],
        vec![b"-p".to_vec(), sshd.port().to_string().into_bytes()],
        vec![b"-o".to_vec(), b"StrictHostKeyChecking=no".to_vec()],
    ] {
        assert!(
            head.windows(2).any(|w| w == pair.as_slice()),
            "ssh argv lacks {pair:?}: {head:?}"
        );
    }
}

#[test]
fn unreachable_target_at_startup_exits_255_with_upstream_message() {
    rsync_path();
    let sshd = Sshd::new(); // keys and port, but nothing listens
    let dir = TestDir::new();
    dir.write("src/f", "f\n");
    let cfg = config(&dir, &sshd, "");
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    let code = d.wait_exit(TIMEOUT);
    let src = std::fs::canonicalize(dir.src()).expect("realpath src");
    let msg = format!(
        "Temporary or permanent failure on startup of \"{}/\". Terminating since \"insist\" is not set.",
        src.display()
    );
    assert_eq!(code, Some(255), "{}", d.log());
    assert!(d.log().contains(&msg), "want {msg:?} in\n{}", d.log());
}

#[test]
fn insist_retries_startup_until_sshd_comes_up_then_converges() {
    rsync_path();
    let mut sshd = Sshd::new();
    let dir = TestDir::new();
    dir.write("src/f", "f\n");
    dir.write("src/d/g", "g\n");
    let cfg = config(&dir, &sshd, "");
    let mut d = Daemon::config(&dir, &cfg, &["-insist"]);
    d.wait_log_count("Retrying startup of \"", 2);
    assert!(d.try_exit().is_none(), "{}", d.log());
    assert!(!dir.exists("dst/f"));
    // Changes made while the startup keeps failing are not lost either.
    dir.write("src/while-down.txt", "queued\n");

    sshd.start();
    d.wait_log("Startup of \"");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    dir.write("src/after.txt", "after\n");
    d.wait_trees_equal(&dir.src(), &dir.dst());
}

#[test]
fn sshd_stopped_mid_run_and_restarted_later_loses_no_change() {
    rsync_path();
    let mut sshd = Sshd::started();
    let dir = TestDir::new();
    dir.write("src/keep.txt", "keep\n");
    dir.write("src/old.txt", "old\n");
    dir.write("src/dir/f", "f\n");
    dir.write("src/del/f", "f\n");
    let cfg = config(&dir, &sshd, "");
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_log("Startup of \"");
    d.wait_trees_equal(&dir.src(), &dir.dst());

    // First outage: a transfer batch (creates, a modify, a delete) fails and is retried.
    sshd.stop();
    dir.write("src/new.txt", "new\n");
    dir.write("src/old.txt", "old, changed\n");
    dir.remove("src/del");
    d.wait_log_count("Retrying (list): ", 2);
    assert!(!dir.exists("dst/new.txt"));
    sshd.start();
    d.wait_trees_equal(&dir.src(), &dir.dst());

    // Second outage: a move fails and is retried; changes queued behind it wait for it.
    sshd.stop();
    let retries = d.log().matches("Retrying Move ").count();
    dir.rename("src/dir", "src/dir-moved");
    d.wait_log_count("Retrying Move ", retries + 2);
    dir.write("src/dir-moved/h", "h\n");
    dir.write("src/late.txt", "late\n");
    dir.remove("src/keep.txt");
    d.wait_log_count("Retrying Move ", retries + 3);
    assert!(dir.exists("dst/dir/f") && !dir.exists("dst/late.txt"));
    sshd.start();
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_log("Finished Move ");
    assert!(d.try_exit().is_none(), "{}", d.log());
}

#[test]
fn cli_rsyncssh_with_sshopts_words_reaching_ssh() {
    rsync_path();
    let sshd = Sshd::started();
    let dir = TestDir::new();
    dir.write("src/f", "f\n");
    dir.write("src/d/g", "g\n");
    // A quoted word with a space stays one word: ssh's `-o "Key Value"` form.
    let opts = format!(
        "-p {} -i {} -o StrictHostKeyChecking=no -o \"UserKnownHostsFile /dev/null\" -o BatchMode=yes",
        sshd.port(),
        sshd.key().display()
    );
    let dst = dir.path_str("dst");
    let mut d = Daemon::start(
        &dir,
        &[
            "-log",
            "Exec",
            "-delay",
            "1",
            "-sshopts",
            &opts,
            "-rsyncssh",
            "src",
            HOST,
            &dst,
        ],
    );
    d.wait_log("Startup of \"");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    dir.write("src/live.txt", "live\n");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    let ino = inode(&dir, "dst/d/g");
    dir.rename("src/d", "src/e");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_log("Finished Move ");
    assert_eq!(
        inode(&dir, "dst/e/g"),
        ino,
        "moved with ssh, not sent again"
    );

    let log = d.log();
    let moves = mv_execs(&log);
    assert_eq!(moves.len(), 1, "{log}");
    let want = format!(
        "Exec: ssh [-p] [{}] [-i] [{}] [-o] [StrictHostKeyChecking=no] [-o] [UserKnownHostsFile /dev/null] [-o] [BatchMode=yes] [{HOST}] [mv]",
        sshd.port(),
        sshd.key().display()
    );
    assert!(
        moves[0].contains(&want),
        "got  {}\nwant {want} ...",
        moves[0]
    );
    // rsync gets the same words in its --rsh command, the spaced one quoted for rsync.
    assert!(
        log.contains("[--rsh=ssh -p ") && log.contains(" -o 'UserKnownHostsFile /dev/null' "),
        "{log}"
    );
}

#[test]
fn cli_rsyncssh_direct_and_rsync_shortcuts_run_side_by_side() {
    rsync_path();
    let sshd = Sshd::started();
    let dir = TestDir::new();
    for s in ["s1", "s2", "s3"] {
        dir.write(format!("{s}/f"), format!("{s}\n"));
    }
    let t2 = dir.path_str("t2");
    let opts = sshd.sshopts();
    let mut d = Daemon::start(
        &dir,
        &[
            "-delay",
            "1",
            "-rsync",
            "s1",
            "t1",
            "-rsyncssh",
            "s2",
            HOST,
            &t2,
            "-sshopts",
            &opts,
            "-direct",
            "s3",
            "t3",
        ],
    );
    d.wait_log_count("finished", 3);
    for (s, t) in [("s1", "t1"), ("s2", "t2"), ("s3", "t3")] {
        dir.write(format!("{s}/live/x"), "x\n");
        dir.rename(format!("{s}/f"), format!("{s}/f-moved"));
        d.wait_trees_equal(&dir.path(s), &dir.path(t));
    }
}

#[test]
fn xargs_table_of_lsyncd_2_1_is_rejected() {
    let dir = TestDir::new();
    let r = run(
        &dir,
        &["-nodaemon", fixture("ssh_bad_xargs.lua").to_str().unwrap()],
    );
    assert_eq!(r.code, 255, "{r:?}");
    assert!(r.stderr.contains("xargs"), "{r:?}");
}

#[test]
fn targetdir_with_space_and_quotes_works_for_transfers_and_moves() {
    rsync_path();
    let sshd = Sshd::started();
    let dir = TestDir::new();
    dir.write("src/d/f", "f\n");
    let target = "dst it's \"quoted\" $HOME";
    dir.mkdir(target);
    let cfg = dir.config(
        "rsyncssh.lua",
        &format!(
            "sync{{ default.rsyncssh, source = \"src\", host = \"{HOST}\", targetdir = {}, \
             delay = 1, {} }}\n",
            lua_str(dir.path_str(target)),
            sshd.lua_ssh()
        ),
    );
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_log("Startup of \"");
    d.wait_trees_equal(&dir.src(), &dir.path(target));
    let ino = inode(&dir, format!("{target}/d/f"));
    dir.rename("src/d", "src/e");
    dir.write("src/new", "new\n");
    d.wait_trees_equal(&dir.src(), &dir.path(target));
    d.wait_log("Finished Move ");
    assert_eq!(inode(&dir, format!("{target}/e/f")), ino, "{}", d.log());
}
