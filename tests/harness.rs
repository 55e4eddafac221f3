//! Checks of the harness itself (no lsyncd involved): a broken comparison or recorder would
//! make every other test meaningless.

use crate::util::{assert_trees_equal, rsync_path, tree_diff, TestDir, Then};
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn tree_diff_reports_missing_content_type_and_symlink_differences() {
    let dir = TestDir::new();
    for side in ["src", "dst"] {
        dir.write(format!("{side}/same/f"), "same\n");
        dir.symlink("same/f", format!("{side}/link-same"));
    }
    assert_trees_equal(&dir.src(), &dir.dst());

    dir.write(b"src/only-in-src\xe9", "x");
    dir.write("src/content", "a");
    dir.write("dst/content", "b");
    dir.write("src/kind", "file");
    dir.mkdir("dst/kind");
    dir.symlink("one", "src/link");
    dir.symlink("two", "dst/link");
    dir.mkdir("dst/only-in-dst");
    let diff = tree_diff(&dir.src(), &dir.dst()).expect("readable trees");
    let text = diff.join("\n");
    assert_eq!(diff.len(), 5, "{text}");
    for needle in [
        "only-in-src",
        "\"content\"",
        "\"kind\"",
        "\"link\"",
        "only-in-dst",
    ] {
        assert!(text.contains(needle), "{needle} not reported:\n{text}");
    }
}

#[test]
fn recorder_keeps_arguments_and_stdin_byte_exact() {
    let dir = TestDir::new();
    let rec = dir.recorder(Then::Exit(3));
    let args: Vec<std::ffi::OsString> = vec![
        "plain".into(),
        "".into(),
        "two\nlines".into(),
        "it's \"quoted\"".into(),
        "-dash".into(),
        crate::util::os(b"caf\xe9").to_owned(),
    ];
    for round in 0..2 {
        let mut child = Command::new(rec.path())
            .args(&args)
            .stdin(Stdio::piped())
            .spawn()
            .expect("run recorder");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"/a\0/b\n\0/c").expect("feed stdin");
        drop(stdin);
        assert_eq!(child.wait().expect("wait").code(), Some(3));
        assert_eq!(rec.calls().len(), round + 1);
    }
    let calls = rec.calls();
    use std::os::unix::ffi::OsStrExt;
    let want: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
    for call in &calls {
        assert_eq!(call.args, want);
        assert_eq!(call.stdin, b"/a\0/b\n\0/c");
    }
}

#[test]
fn recorder_can_pass_the_call_on_to_rsync() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/a/f", "f\n");
    let rec = dir.recorder(Then::ExecRsync);
    let status = Command::new(rec.path())
        .args(["-r", "--include-from=-", "--exclude=*"])
        .arg(format!("{}/", dir.path_str("src")))
        .arg(format!("{}/", dir.path_str("dst")))
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(b"/a/\n/a/f\n")?;
            c.wait()
        })
        .expect("run recorder");
    assert!(status.success());
    assert_trees_equal(&dir.src(), &dir.dst());
    assert_eq!(rec.calls().len(), 1);
}
