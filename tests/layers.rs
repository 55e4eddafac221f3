//! Layer 3 string actions and Layer 2 Lua handlers (SPEC §6, §7.3, §7.5, §7.6, §8, §15 items 4
//! and 30), run through configs in upstream syntax under `fixtures/configs/layer*.lua`.
//!
//! The fixtures find their directories through `$LAYER_ROOT` (the test's temp dir: `src/`,
//! `dst/`, and the recorder `rec.sh`), so they stay plain upstream configs.
//!
//! Against upstream 2.2.3 (`LSYNCD_BIN=/usr/bin/lsyncd`) every test here passes except
//! `layer3_translation_replaces_every_occurrence_and_generates_no_code` (2.2.3 replaces only
//! the last occurrence of a variable in a direct-exec argument, and generates Lua source from
//! the command, so a backslash or `]]` in it breaks the config: SPEC §15 item 4) and
//! `layer3_again_without_delay_retries_after_one_second` (2.2.3 crashes with `attempt to
//! compare nil with number`, §15 item 30). Known harmless differences: 2.2.3 runs
//! `/bin/sh` (not `sh`) for shell mode and spawnShell, and execs without PATH lookup, so the
//! fixtures use absolute paths.

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use crate::util::{fixture, Daemon, Rng, TestDir, Then, TIMEOUT};

/// `lsyncd -nodaemon EXTRA... fixtures/configs/NAME` with `$LAYER_ROOT` set to the test dir.
pub(crate) fn start_layer(dir: &TestDir, name: &str, extra: &[&str]) -> Daemon {
    let mut args: Vec<OsString> = extra.iter().map(OsString::from).collect();
    args.push(fixture(name).into_os_string());
    let root = dir.root().to_owned();
    Daemon::start_with(dir, &args, move |cmd| {
        cmd.env("LAYER_ROOT", root);
    })
}

/// Relative paths (bytes) of the directories and of the other files below `root`; the first
/// directory is `""`, the root itself.
fn list_tree(root: &Path) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    use std::os::unix::ffi::OsStrExt;
    let mut dirs = vec![Vec::new()];
    let mut files = Vec::new();
    let mut i = 0;
    while i < dirs.len() {
        let rel = dirs[i].clone();
        i += 1;
        let abs = root.join(std::ffi::OsStr::from_bytes(&rel));
        let Ok(rd) = fs::read_dir(&abs) else { continue };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let mut p = rel.clone();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(e.file_name().as_bytes());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    (dirs, files)
}

fn join(dir: &[u8], name: &str) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name.as_bytes());
    p
}

fn src_rel(p: &[u8]) -> Vec<u8> {
    [b"src/".as_slice(), p].concat()
}

/// `n` random file-system operations on `dir`'s `src/`: file creates, rewrites, appends,
/// deletes, renames (also over an existing file), directory creates, renames and recursive
/// deletes. Names are fresh (`f17`, `d3`), so nothing is renamed over a directory.
fn churn(dir: &TestDir, rng: &mut Rng, n: usize) {
    let src = dir.src();
    let mut fresh = 0usize;
    let mut name = |prefix: &str| {
        fresh += 1;
        format!("{prefix}{fresh}")
    };
    for _ in 0..n {
        let (dirs, files) = list_tree(&src);
        let some_dir = |rng: &mut Rng| dirs[rng.below(dirs.len())].clone();
        match rng.below(100) {
            0..=29 => {
                let p = join(&some_dir(rng), &name("f"));
                dir.write(src_rel(&p), format!("created {}\n", rng.next()));
            }
            30..=44 if !files.is_empty() => {
                let p = &files[rng.below(files.len())];
                dir.write(src_rel(p), format!("rewritten {}\n", rng.next()));
            }
            45..=54 if !files.is_empty() => {
                use std::io::Write as _;
                let p = &files[rng.below(files.len())];
                let mut f = fs::OpenOptions::new()
                    .append(true)
                    .open(dir.path(src_rel(p)))
                    .expect("open for append");
                writeln!(f, "appended {}", rng.next()).expect("append");
            }
            55..=62 if !files.is_empty() => {
                dir.remove(src_rel(&files[rng.below(files.len())]));
            }
            63..=72 if !files.is_empty() => {
                let from = files[rng.below(files.len())].clone();
                let to = if rng.below(4) == 0 && files.len() > 1 {
                    files[rng.below(files.len())].clone()
                } else {
                    join(&some_dir(rng), &name("r"))
                };
                if from != to {
                    dir.rename(src_rel(&from), src_rel(&to));
                }
            }
            73..=84 if dirs.len() < 25 => {
                dir.mkdir(src_rel(&join(&some_dir(rng), &name("d"))));
            }
            85..=92 if dirs.len() > 1 => {
                let from = dirs[1 + rng.below(dirs.len() - 1)].clone();
                let parent = some_dir(rng);
                // not into itself
                if !(parent == from || parent.starts_with(&[from.as_slice(), b"/"].concat())) {
                    dir.rename(src_rel(&from), src_rel(&join(&parent, &name("m"))));
                }
            }
            93..=99 if dirs.len() > 1 => {
                dir.remove(src_rel(&dirs[1 + rng.below(dirs.len() - 1)]));
            }
            _ => {
                let p = join(&some_dir(rng), &name("f"));
                dir.write(src_rel(&p), "fallback\n");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Layer 3

#[test]
fn layer3_shell_mirror_converges_on_500_random_operations() {
    let dir = TestDir::new();
    // Content from before the start goes over through onStartup.
    dir.write("src/.hidden", "h\n");
    dir.write("src/pre/a", "a\n");
    dir.write("src/pre/sub/b", "b\n");
    let mut d = start_layer(&dir, "layer3_bash_mirror.lua", &[]);
    d.wait_log("Startup of ");
    d.wait_trees_equal(&dir.src(), &dir.dst());

    let mut rng = Rng::new(0x1a7e_5eed);
    churn(&dir, &mut rng, 500);
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert!(d.try_exit().is_none(), "daemon died:\n{}", d.log());
    assert!(d.log().contains("spawns shell \""), "{}", d.log());
}

#[test]
fn layer3_direct_exec_and_shell_mode_get_the_event_values() {
    let dir = TestDir::new();
    dir.mkdir("src/sub dir");
    let rec = dir.recorder(Then::Exit(0));
    let mut d = start_layer(&dir, "layer3_recorded.lua", &["-log", "Exec"]);
    let (root, src, dst) = (dir.path_str(""), dir.path_str("src"), dir.path_str("dst"));
    let root = root.trim_end_matches('/');

    // onStartup, direct exec: the quotes stay, "x^pathy" is "x" .. "" .. "y"
    let calls = rec.wait_calls(&mut d, 1);
    assert_eq!(
        calls[0].args(),
        sv!["startup", "\"quoted arg\"", format!("{src}/"), "xy"]
    );
    d.wait_log("Startup of ");
    assert!(
        d.log().contains(&format!(
            "Normal: Event Init spawns action \"{root}/rec.sh  startup \"quoted arg\"   ^source x^pathy\""
        )),
        "{}",
        d.log()
    );

    // onCreate (direct exec) and onModify (shell mode) for one written file
    dir.write("src/a b", "x\n");
    let calls = rec.wait_calls(&mut d, 3);
    assert_eq!(
        calls[1].args(),
        sv![
            "create",
            "a b",
            "\"q ^basename\"",
            format!("{src}//a b"),
            format!("{dst}/"),
            "a bdir"
        ]
    );
    assert_eq!(
        calls[2].args(),
        sv!["modify", format!("{dst}/a b"), "a b", "a b"]
    );
    let log = d.log();
    assert!(
        log.contains(&format!(
            "[-c] [cd / && {root}/rec.sh modify \"$2\" \"$1\" \"$1\"]"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Normal: Event Modify spawns shell \"cd / && {root}/rec.sh modify {dst}/a b a b a b\""
        )),
        "{log}"
    );

    // onMove: '^' forces shell mode; ^o.pathdir is ^o.path followed by "dir". (Renamed only
    // once the Modify is collected: a move of a path with a pending event is split, §4.3.)
    d.wait_log("Finished Modify on ");
    dir.rename("src/a b", "src/sub dir/c d");
    let calls = rec.wait_calls(&mut d, 4);
    assert_eq!(
        calls[3].args(),
        sv![
            "move",
            "a b",
            "sub dir/c d",
            format!("{dst}/sub dir/"),
            "a bdir"
        ]
    );
    assert!(
        d.log().contains(&format!(
            "[-c] [{root}/rec.sh move \"$1\" \"$3\" \"$4\" \"$2\"dir]"
        )),
        "{}",
        d.log()
    );

    dir.remove("src/sub dir/c d");
    let calls = rec.wait_calls(&mut d, 5);
    assert_eq!(
        calls[4].args(),
        sv!["delete", "sub dir/c d", format!("{src}//sub dir/"), "a\tb"]
    );
    assert_eq!(rec.calls().len(), 5);
}

#[test]
fn layer3_translation_replaces_every_occurrence_and_generates_no_code() {
    let dir = TestDir::new();
    let rec = dir.recorder(Then::Exit(0));
    let mut d = start_layer(&dir, "layer3_translation_fixes.lua", &[]);
    d.wait_log("Startup of ");
    dir.write("src/a b", "x\n");
    let calls = rec.wait_calls(&mut d, 2);
    assert_eq!(
        calls[0].args(),
        sv!["create", "a b=a b", "a ba b<a b>", "back\\slash"]
    );
    assert_eq!(calls[1].args(), sv!["modify", "]]", "\\n", "a b", "[[x]]"]);
}

#[test]
fn layer2_and_layer3_nonzero_exit_without_exitcodes_is_fatal() {
    for config in ["layer3_exit_fatal.lua", "layer2_exit_fatal.lua"] {
        let dir = TestDir::new();
        let mut d = start_layer(&dir, config, &[]);
        d.wait_log("Startup of ");
        dir.write("src/f", "x\n");
        let code = d.wait_exit(TIMEOUT);
        let src = dir.path_str("src");
        let log = d.log();
        assert_eq!(code, Some(255), "{config}: {log}");
        assert!(
            log.contains(&format!("Error: Failure with Create on {src}//f = 3")),
            "{config}: {log}"
        );
        assert!(log.contains("Error: Critical exitcode."), "{config}: {log}");
    }
}

/// Unix times (seconds) of the attempts `layer3_again.lua` wrote down.
fn attempts(dir: &TestDir) -> Vec<(f64, String)> {
    let text = String::from_utf8(dir.read("attempts").unwrap_or_default()).unwrap();
    text.lines()
        .map(|l| {
            let (t, p) = l.split_once(' ').expect("time and path");
            (t.parse().expect("a time"), p.to_string())
        })
        .collect()
}

#[test]
fn layer3_again_without_delay_retries_after_one_second() {
    let dir = TestDir::new();
    let mut d = start_layer(&dir, "layer3_again.lua", &[]);
    d.wait_log("Startup of ");
    dir.write("src/f", "x\n");
    d.wait_for("a retried attempt", || attempts(&dir).len() >= 2);
    let src = dir.path_str("src");
    d.wait_log(&format!("Normal: Retrying Create on {src}//f = 3"));
    let a = attempts(&dir);
    assert_eq!((a[0].1.as_str(), a[1].1.as_str()), ("f", "f"));
    let gap = a[1].0 - a[0].0;
    assert!(
        (0.9..10.0).contains(&gap),
        "retry came {gap} s after the first attempt"
    );

    dir.write("released", "");
    d.wait_log(&format!("Normal: Finished Create on {src}//f = 0"));
    assert!(d.try_exit().is_none(), "{}", d.log());
}

#[test]
fn layer3_onstartup_blocks_the_sync_until_it_finishes() {
    let dir = TestDir::new();
    let mut d = start_layer(&dir, "layer3_startup_blocks.lua", &["-log", "Delay"]);
    d.wait_for("the startup command", || dir.exists("started"));
    dir.write("src/x", "");
    // The Create is queued behind the running Init: without the block it would run now
    // (four process slots, no delay).
    d.wait_log("Create: /x blocked by Init");
    assert!(!d.log().contains("Event Create spawns"), "{}", d.log());
    dir.write("release", "");
    d.wait_for("the Create after the startup", || {
        dir.read("order")
            .is_some_and(|o| o.ends_with(b"create x\n"))
    });
    assert_eq!(dir.read("order").unwrap(), b"startup\ncreate x\n");
}

// ---------------------------------------------------------------------------------------------
// Layer 2

/// The blocks `layer2_fields.lua` wrote: header ("ETYPE PATH ROLE") → field → value.
fn field_blocks(dir: &TestDir) -> Vec<(String, Vec<(String, String)>)> {
    let text = String::from_utf8(dir.read("fields.txt").unwrap_or_default()).unwrap();
    let mut blocks: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("== ") {
            blocks.push((h.to_string(), Vec::new()));
        } else if let Some((k, v)) = line.split_once('=') {
            if let Some(b) = blocks.last_mut() {
                b.1.push((k.to_string(), v.to_string()));
            }
        }
    }
    blocks
}

/// Checks the first block with `header` against `want` (field, value) in order, then the
/// common tail: `move`, `config`, `inlet`, the unknown-field error (raised at `line` of the
/// config; Lua may shorten the file's directory) and, for events that were spawned for,
/// `after=active`.
fn check_fields(
    dir: &TestDir,
    line: u32,
    header: &str,
    want: &[(&str, String)],
    move_field: &str,
    spawned: bool,
) {
    let blocks = field_blocks(dir);
    let Some((_, got)) = blocks.iter().find(|(h, _)| h == header) else {
        panic!(
            "no event {header:?}; got {:?}",
            blocks.iter().map(|b| &b.0).collect::<Vec<_>>()
        );
    };
    let mut want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    want.push(("move".into(), move_field.into()));
    want.push(("config".into(), "true".into()));
    want.push(("inlet".into(), "true".into()));
    let unknown = got
        .iter()
        .find(|(k, _)| k == "unknown")
        .map(|(_, v)| v.clone());
    let unknown = unknown.unwrap_or_default();
    assert!(
        unknown.starts_with("false ")
            && unknown.ends_with(&format!(
                "layer2_fields.lua:{line}: event does not have field \"nonsense\""
            )),
        "{header}: unknown field gave {unknown:?}"
    );
    let mut got: Vec<(String, String)> = got
        .iter()
        .filter(|(k, _)| k != "unknown")
        .cloned()
        .collect();
    if spawned {
        want.push(("after".into(), "active".into()));
    } else {
        got.retain(|(k, _)| k != "after");
    }
    assert_eq!(got, want, "fields of {header}");
}

#[test]
fn layer2_event_fields_of_init_file_dir_and_move() {
    let dir = TestDir::new();
    // the line of layer2_fields.lua that reads `event.nonsense`
    let line = 31;
    let mut d = start_layer(&dir, "layer2_fields.lua", &[]);
    let (s, t) = (dir.path_str("src"), dir.path_str("dst"));
    d.wait_log("Startup of ");
    dir.mkdir("src/d1");
    d.wait_log(&format!("Finished Create on {s}//d1/ = 0"));
    dir.mkdir("src/d1/sub");
    dir.write("src/d1/f", "x\n");
    d.wait_log(&format!("Finished Modify on {s}//d1/f = 0"));
    d.wait_log(&format!("Finished Create on {s}//d1/sub/ = 0"));
    dir.rename("src/d1/sub", "src/moved");
    d.wait_log(&format!("Finished Move on {s}//d1/sub/ = 0"));
    dir.remove("src/d1/f");
    d.wait_log(&format!("Finished Delete on {s}//d1/f = 0"));

    fn f<'a>(k: &'a str, v: &str) -> (&'a str, String) {
        (k, v.to_string())
    }
    check_fields(
        &dir,
        line,
        "Init  single",
        &[
            f("etype", "Init"),
            f("status", "wait"),
            f("isdir", "false"),
            f("isList", "false"),
            f("name", "nil"),
            f("basename", "nil"),
            f("path", ""),
            f("pathdir", ""),
            f("pathname", ""),
            f("source", &format!("{s}/")),
            f("sourcePath", &format!("{s}/")),
            f("sourcePathdir", &format!("{s}/")),
            f("sourcePathname", &format!("{s}/")),
            f("target", &t),
            f("targetPath", &t),
            f("targetPathdir", &t),
            f("targetPathname", &t),
        ],
        "nil",
        true,
    );
    check_fields(
        &dir,
        line,
        "Create d1/sub/ single",
        &[
            f("etype", "Create"),
            f("status", "wait"),
            f("isdir", "true"),
            f("isList", "false"),
            f("name", "sub/"),
            f("basename", "sub"),
            f("path", "d1/sub/"),
            f("pathdir", "d1/"),
            f("pathname", "d1/sub"),
            f("source", &format!("{s}/")),
            f("sourcePath", &format!("{s}//d1/sub/")),
            f("sourcePathdir", &format!("{s}//d1/")),
            f("sourcePathname", &format!("{s}//d1/sub")),
            f("target", &t),
            f("targetPath", &format!("{t}/d1/sub/")),
            f("targetPathdir", &format!("{t}/d1/")),
            f("targetPathname", &format!("{t}/d1/sub")),
        ],
        "nil",
        true,
    );
    let file = |etype: &str| {
        vec![
            f("etype", etype),
            f("status", "wait"),
            f("isdir", "false"),
            f("isList", "false"),
            f("name", "f"),
            f("basename", "f"),
            f("path", "d1/f"),
            f("pathdir", "d1/"),
            f("pathname", "d1/f"),
            f("source", &format!("{s}/")),
            f("sourcePath", &format!("{s}//d1/f")),
            f("sourcePathdir", &format!("{s}//d1/")),
            f("sourcePathname", &format!("{s}//d1/f")),
            f("target", &t),
            f("targetPath", &format!("{t}/d1/f")),
            f("targetPathdir", &format!("{t}/d1/")),
            f("targetPathname", &format!("{t}/d1/f")),
        ]
    };
    check_fields(
        &dir,
        line,
        "Create d1/f single",
        &file("Create"),
        "nil",
        true,
    );
    check_fields(
        &dir,
        line,
        "Modify d1/f single",
        &file("Modify"),
        "nil",
        true,
    );
    check_fields(
        &dir,
        line,
        "Delete d1/f single",
        &file("Delete"),
        "nil",
        true,
    );
    check_fields(
        &dir,
        line,
        "Move d1/sub/ origin",
        &[
            f("etype", "Move"),
            f("status", "wait"),
            f("isdir", "true"),
            f("isList", "false"),
            f("name", "sub/"),
            f("basename", "sub"),
            f("path", "d1/sub/"),
            f("pathdir", "d1/"),
            f("pathname", "d1/sub"),
            f("source", &format!("{s}/")),
            f("sourcePath", &format!("{s}//d1/sub/")),
            f("sourcePathdir", &format!("{s}//d1/")),
            f("sourcePathname", &format!("{s}//d1/sub")),
            f("target", &t),
            f("targetPath", &format!("{t}/d1/sub/")),
            f("targetPathdir", &format!("{t}/d1/")),
            f("targetPathname", &format!("{t}/d1/sub")),
        ],
        "Fr",
        false,
    );
    check_fields(
        &dir,
        line,
        "Move moved/ destination",
        &[
            f("etype", "Move"),
            f("status", "wait"),
            f("isdir", "true"),
            f("isList", "false"),
            f("name", "moved/"),
            f("basename", "moved"),
            f("path", "moved/"),
            f("pathdir", ""),
            f("pathname", "moved"),
            f("source", &format!("{s}/")),
            f("sourcePath", &format!("{s}//moved/")),
            f("sourcePathdir", &format!("{s}//")),
            f("sourcePathname", &format!("{s}//moved")),
            f("target", &t),
            f("targetPath", &format!("{t}/moved/")),
            f("targetPathdir", &format!("{t}/")),
            f("targetPathname", &format!("{t}/moved")),
        ],
        "To",
        // the destination block is followed by the origin's 'after' line
        true,
    );
}

#[test]
fn layer2_spawn_spawnshell_and_log_with_user_categories() {
    let dir = TestDir::new();
    let rec = dir.recorder(Then::Exit(0));
    let mut d = start_layer(&dir, "layer2_tools.lua", &["-log", "MyCat"]);
    let (s, t) = (dir.path_str("src"), dir.path_str("dst"));
    let calls = rec.wait_calls(&mut d, 1);
    assert_eq!(calls[0].args(), sv!["startup", "from", "a table", "7", "3"]);
    d.wait_log("Startup of ");

    dir.write("src/a b", "x\n");
    let calls = rec.wait_calls(&mut d, 3);
    assert_eq!(
        calls[1].args(),
        sv!["shell", "a b", format!("{t}/a b"), "2"]
    );
    assert_eq!(calls[2].args(), sv!["modify", "a b"]);
    assert_eq!(calls[2].stdin_str(), "stdin for a b\n");
    d.wait_log(&format!("Finished Modify on {s}//a b = 0"));

    // no onMove: the move is a Delete of the origin and a Create of the destination
    dir.rename("src/a b", "src/c");
    let calls = rec.wait_calls(&mut d, 5);
    assert_eq!(calls[3].args(), sv!["delete", "a b"]);
    assert_eq!(calls[4].args(), sv!["shell", "c", format!("{t}/c"), "2"]);

    let log = d.log();
    assert!(
        log.contains(&format!(
            "MyCat: startup of {s}/ n=42 f=1.5 (true) (false) (nil) end"
        )),
        "{log}"
    );
    assert!(log.contains("MyCat: create a b\n"), "{log}");
    assert!(log.contains("MyCat: create c\n"), "{log}");
    // an event kept by the config after its delay finished
    assert!(log.contains("MyCat: kept Create a b active\n"), "{log}");
    assert!(!log.contains("OtherCat"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Injection

/// File names that run `touch pwned` if a shell ever parses them as code.
const HOSTILE: [&[u8]; 5] = [
    b"$(touch pwned)",
    b"`touch pwned`",
    b"\"; touch pwned; \"",
    b"a'b",
    b"new\nline",
];

/// Every path named `pwned` below `root` (recursively).
fn find_pwned(root: &Path, found: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = fs::read_dir(root) else { return };
    for e in rd.flatten() {
        if e.file_name() == "pwned" {
            found.push(e.path());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            find_pwned(&e.path(), found);
        }
    }
}

#[test]
fn hostile_file_names_go_through_layer2_and_layer3_actions_without_injection() {
    for p in ["/pwned", "/tmp/pwned"] {
        assert!(
            !Path::new(p).exists(),
            "{p} exists before the test; remove it so that the test can tell"
        );
    }
    let dir = TestDir::new();
    let targets = ["dst/l3shell", "dst/l3direct", "dst/l2"];
    for t in targets {
        dir.mkdir(t);
    }
    let mut d = start_layer(&dir, "layer_injection.lua", &[]);
    d.wait_log("Normal: L2 watching ");
    let converge = |d: &mut Daemon| {
        for t in targets {
            d.wait_trees_equal(&dir.src(), &dir.path(t));
        }
    };

    // create, in the root and in a directory that has a hostile name itself
    for (i, name) in HOSTILE.iter().enumerate() {
        dir.write([b"src/".as_slice(), name].concat(), format!("file {i}\n"));
    }
    converge(&mut d);
    for name in HOSTILE {
        let p = [b"src/dir $(touch pwned)/".as_slice(), name].concat();
        dir.write(p, "nested\n");
    }
    converge(&mut d);

    // modify
    for name in HOSTILE {
        dir.write([b"src/".as_slice(), name].concat(), "rewritten\n");
    }
    converge(&mut d);

    // move (onMove in all three syncs), to other hostile names, and a directory
    for (i, name) in HOSTILE.iter().enumerate() {
        let to = [
            b"src/".as_slice(),
            HOSTILE[(i + 1) % HOSTILE.len()],
            b" moved",
        ]
        .concat();
        dir.rename([b"src/".as_slice(), name].concat(), to);
    }
    dir.rename("src/dir $(touch pwned)", "src/`touch pwned` dir");
    converge(&mut d);

    // delete
    dir.remove(b"src/a'b moved");
    dir.remove("src/`touch pwned` dir");
    converge(&mut d);

    assert!(d.try_exit().is_none(), "{}", d.log());
    let log = d.log();
    assert!(log.contains("spawns shell"), "{log}");
    assert!(log.contains("spawns action"), "{log}");
    assert!(log.contains("L2 copies "), "{log}");
    let mut found = Vec::new();
    find_pwned(dir.root(), &mut found);
    for p in ["/pwned", "/tmp/pwned"] {
        if Path::new(p).exists() {
            found.push(p.into());
        }
    }
    assert!(found.is_empty(), "injected: {found:?}\n{log}");
}
