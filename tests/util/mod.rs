//! Harness for the integration tests: runs the real `lsyncd` binary with real rsync on
//! temporary directories and polls until the result is there.
//!
//! Owns: `TestDir` (a fresh temp dir with `src/` and `dst/`, byte-named file helpers),
//! `Daemon` (one `lsyncd -nodaemon` process, its log, TERM-then-KILL on drop), `run` (one
//! short-lived invocation with stdout and stderr kept apart), `wait_until` (the only way a test
//! waits for something), tree snapshots and `assert_trees_equal`, and `Recorder` (a shell script
//! used as `rsync{ binary = ... }` that records each call's argv and stdin).
//! Must not touch: anything outside the temp dirs it creates; the crate's `src/`.
//!
//! The binary under test is `$LSYNCD_BIN` when set (e.g. `/usr/bin/lsyncd`, to check a test
//! against upstream), else the one Cargo built. With `$LSYNCD_BIN` set, the short-flag word
//! of rsync's argv is compared as a set of letters, because upstream's letter order is random
//! (SPEC §9.3); otherwise our fixed order is checked exactly.
//!
//! Tests never sleep a fixed time to wait for a result: they poll every 50 ms with a generous
//! timeout (SPEC-conform daemons are fast; a slow CI machine only makes them wait longer).
#![allow(dead_code)] // every test module uses a different part of the harness

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often every wait polls.
pub const POLL: Duration = Duration::from_millis(50);
/// Upper bound for anything that should happen within a few seconds (a sync with `delay = 1`).
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for a process that should exit at once (CLI errors, config errors).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The binary under test.
pub fn lsyncd_bin() -> PathBuf {
    match std::env::var_os("LSYNCD_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_lsyncd")),
    }
}

/// True when the binary under test was given through `$LSYNCD_BIN` (normally upstream lsyncd),
/// whose rsync short-flag letter order is random.
pub fn short_flag_order_is_random() -> bool {
    std::env::var_os("LSYNCD_BIN").is_some_and(|p| !p.is_empty())
}

/// Absolute path of the real rsync; fails the test with a clear message when it is missing.
pub fn rsync_path() -> PathBuf {
    static RSYNC: OnceLock<Option<PathBuf>> = OnceLock::new();
    RSYNC
        .get_or_init(|| find_in_path("rsync"))
        .clone()
        .unwrap_or_else(|| {
            panic!(
                "rsync not found in PATH: the integration tests run the real rsync. \
                 Install it (`make deps`, or `apt-get install rsync`) and run again."
            )
        })
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Bytes as an `OsStr` (file names in tests are bytes, never lossy strings).
pub fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// Quotes bytes as a Lua string literal (decimal escapes for anything not plain printable ASCII),
/// so any path can be put into a generated config.
pub fn lua_str(bytes: impl AsRef<[u8]>) -> String {
    let mut out = String::from("\"");
    for &b in bytes.as_ref() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
    out
}

/// Polls `pred` every 50 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Exit code as a shell reports it: the code, or 128 + signal for a killed process.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Sends `signal` (a name such as `TERM`) to `pid` with kill(1), keeping the tests free of
/// `unsafe`. A process that is already gone is not an error here: callers check exit statuses.
pub fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg("-s")
        .arg(signal)
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

// ---------------------------------------------------------------------------------------------
// TestDir

/// A fresh temporary directory holding `src/` and `dst/`; removed on drop.
/// All helpers take paths relative to the root, as bytes (`"src/a"`, `b"src/caf\xe9"`).
pub struct TestDir {
    tmp: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        let tmp = tempfile::Builder::new()
            .prefix("lsyncd-test-")
            .tempdir()
            .expect("create temp dir");
        let dir = TestDir { tmp };
        dir.mkdir("src");
        dir.mkdir("dst");
        dir
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub fn src(&self) -> PathBuf {
        self.path("src")
    }

    pub fn dst(&self) -> PathBuf {
        self.path("dst")
    }

    /// `root/rel`.
    pub fn path(&self, rel: impl AsRef<[u8]>) -> PathBuf {
        self.root().join(os(rel.as_ref()))
    }

    /// `root/rel` as a `&str`-friendly `String` (temp paths are ASCII).
    pub fn path_str(&self, rel: impl AsRef<[u8]>) -> String {
        self.path(rel)
            .to_str()
            .expect("temp dir path is UTF-8")
            .to_owned()
    }

    /// Writes a file, creating missing parent directories.
    pub fn write(&self, rel: impl AsRef<[u8]>, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {parent:?}: {e}"));
        }
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
        p
    }

    /// `mkdir -p`.
    pub fn mkdir(&self, rel: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {p:?}: {e}"));
        p
    }

    /// Creates the symlink `rel` pointing at `target` (taken verbatim).
    pub fn symlink(&self, target: impl AsRef<[u8]>, rel: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        std::os::unix::fs::symlink(os(target.as_ref()), &p)
            .unwrap_or_else(|e| panic!("symlink {p:?}: {e}"));
        p
    }

    /// Removes a file, symlink or whole directory tree.
    pub fn remove(&self, rel: impl AsRef<[u8]>) {
        let p = self.path(rel);
        let meta = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("stat {p:?}: {e}"));
        let res = if meta.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        res.unwrap_or_else(|e| panic!("remove {p:?}: {e}"));
    }

    /// rename(2) within the temp dir (so a move into or out of `src/` is one inotify move).
    pub fn rename(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) {
        let (a, b) = (self.path(from), self.path(to));
        fs::rename(&a, &b).unwrap_or_else(|e| panic!("rename {a:?} -> {b:?}: {e}"));
    }

    /// True if `rel` exists (a dangling symlink exists).
    pub fn exists(&self, rel: impl AsRef<[u8]>) -> bool {
        fs::symlink_metadata(self.path(rel)).is_ok()
    }

    pub fn read(&self, rel: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        fs::read(self.path(rel)).ok()
    }

    /// Writes `text` as `root/NAME` and returns its absolute path (for config files).
    pub fn config(&self, name: &str, text: &str) -> PathBuf {
        self.write(name, text)
    }

    /// Installs a recorder script at `root/rec.sh`; see [`Recorder`].
    pub fn recorder(&self, then: Then) -> Recorder {
        Recorder::install(self, "rec.sh", then)
    }

    /// Installs a recorder script at `root/REL` (e.g. `bin/rsync`, to be found through PATH).
    pub fn recorder_at(&self, rel: &str, then: Then) -> Recorder {
        Recorder::install(self, rel, then)
    }
}

// ---------------------------------------------------------------------------------------------
// Running the binary

/// Path of a fixture config, `tests/fixtures/configs/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/configs")
        .join(name)
}

/// Result of one short-lived run: exit code and both streams, kept apart.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the binary once with `args` (nothing added) in `dir`'s root and waits for it to exit.
/// A run still alive after `EXIT_TIMEOUT` is killed and fails the test.
pub fn run<S: AsRef<OsStr>>(dir: &TestDir, args: &[S]) -> Run {
    let n = next_id();
    let out_path = dir.path(format!("run{n}.stdout"));
    let err_path = dir.path(format!("run{n}.stderr"));
    let out = fs::File::create(&out_path).expect("create stdout capture");
    let err = fs::File::create(&err_path).expect("create stderr capture");
    let mut child = Command::new(lsyncd_bin())
        .args(args)
        .current_dir(dir.root())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", lsyncd_bin()));
    let status = wait_child(&mut child, EXIT_TIMEOUT);
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let result = |code| Run {
        code,
        stdout: read(&out_path),
        stderr: read(&err_path),
    };
    match status {
        Some(st) => result(exit_code(st)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "lsyncd {:?} did not exit within {EXIT_TIMEOUT:?}\n{:?}",
                args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
                result(-1)
            );
        }
    }
}

fn next_id() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// One `lsyncd -nodaemon ...` process running in a test dir's root, stdout and stderr both
/// appended to `root/lsyncd.log`. Dropping it sends SIGTERM, waits up to 5 s, then SIGKILLs.
/// If the test is failing, the drop prints the log.
pub struct Daemon {
    child: Child,
    log_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// `lsyncd -nodaemon ARGS...`
    pub fn start<S: AsRef<OsStr>>(dir: &TestDir, args: &[S]) -> Daemon {
        Daemon::start_with(dir, args, |_| {})
    }

    /// `lsyncd -nodaemon [EXTRA...] CONFIG`
    pub fn config<S: AsRef<OsStr>>(dir: &TestDir, config: &Path, extra: &[S]) -> Daemon {
        let mut args: Vec<OsString> = extra.iter().map(|a| a.as_ref().to_owned()).collect();
        args.push(config.as_os_str().to_owned());
        Daemon::start(dir, &args)
    }

    /// Like `start`, letting the caller adjust the command (environment) first.
    pub fn start_with<S: AsRef<OsStr>>(
        dir: &TestDir,
        args: &[S],
        adjust: impl FnOnce(&mut Command),
    ) -> Daemon {
        let log_path = dir.path(format!("lsyncd{}.log", next_id()));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("create daemon log");
        let log2 = log.try_clone().expect("dup daemon log");
        let mut cmd = Command::new(lsyncd_bin());
        cmd.arg("-nodaemon")
            .args(args)
            .current_dir(dir.root())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        adjust(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", lsyncd_bin()));
        Daemon {
            child,
            log_path,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the daemon printed so far (stdout and stderr interleaved).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Exit status if the process has ended (reaping it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// The exit status once the process has been seen to end.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code (128 + signal when
    /// killed), or `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        wait_until(timeout, || self.try_exit().is_some());
        self.status.map(exit_code)
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`).
    pub fn signal(&self, name: &str) {
        if self.status.is_none() {
            send_signal(self.child.id(), name);
        }
    }

    /// Polls until the log contains `needle`; fails the test (with the log) on timeout or when
    /// the daemon exits first.
    pub fn wait_log(&mut self, needle: &str) {
        let ok = wait_until(TIMEOUT, || {
            self.log().contains(needle) || self.try_exit().is_some()
        });
        if !(ok && self.log().contains(needle)) {
            panic!(
                "daemon log never showed {needle:?} (exit: {:?})\n--- log ---\n{}",
                self.status.map(exit_code),
                self.log()
            );
        }
    }

    /// Polls until the log contains `needle` at least `n` times; fails like `wait_log`.
    pub fn wait_log_count(&mut self, needle: &str, n: usize) {
        let ok = wait_until(TIMEOUT, || {
            self.log().matches(needle).count() >= n || self.try_exit().is_some()
        });
        if !(ok && self.log().matches(needle).count() >= n) {
            panic!(
                "daemon log never showed {needle:?} {n} times (exit: {:?})\n--- log ---\n{}",
                self.status.map(exit_code),
                self.log()
            );
        }
    }

    /// Waits for the end of the initial (startup) rsync: `Startup of ... finished.`
    pub fn wait_startup(&mut self) {
        self.wait_log("finished.");
    }

    /// Polls until the trees `a` and `b` are equal; fails with the differences and the log.
    pub fn wait_trees_equal(&mut self, a: &Path, b: &Path) {
        self.wait_for(&format!("{a:?} and {b:?} equal"), || {
            tree_diff(a, b).is_some_and(|d| d.is_empty())
        });
        let diff = tree_diff(a, b).unwrap_or_default();
        if !diff.is_empty() {
            panic!(
                "trees {a:?} and {b:?} differ:\n{}\n--- log ---\n{}",
                diff.join("\n"),
                self.log()
            );
        }
    }

    /// Polls `pred` until it holds; fails with `what`, the log and the exit status otherwise.
    /// Stops early when the daemon exits.
    pub fn wait_for(&mut self, what: &str, mut pred: impl FnMut() -> bool) {
        let mut held = false;
        wait_until(TIMEOUT, || {
            held = pred();
            held || self.try_exit().is_some()
        });
        if !held && !pred() {
            panic!(
                "timed out waiting for {what} (daemon exit: {:?})\n--- log ---\n{}",
                self.status.map(exit_code),
                self.log()
            );
        }
    }

    /// SIGTERM, then the exit code (fails if it does not exit within the timeout).
    /// Being killed by the signal counts as 143 here; `signals.rs` tells the two apart.
    pub fn terminate(&mut self) -> i32 {
        self.signal("TERM");
        match self.wait_exit(TIMEOUT) {
            Some(code) => code,
            None => panic!("daemon ignored SIGTERM\n--- log ---\n{}", self.log()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            send_signal(self.child.id(), "TERM");
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("--- lsyncd log ({:?}) ---\n{}", self.log_path, self.log());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Trees

/// One entry of a tree snapshot.
#[derive(Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
    Other,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Dir => write!(f, "dir"),
            Node::File(c) => write!(
                f,
                "file {:?}",
                String::from_utf8_lossy(&c[..c.len().min(40)])
            ),
            Node::Symlink(t) => write!(f, "symlink -> {:?}", String::from_utf8_lossy(t)),
            Node::Other => write!(f, "special file"),
        }
    }
}

/// All entries below `root` (not `root` itself), keyed by their relative path bytes
/// (`a/b/f`). Symlinks are not followed.
pub fn snapshot(root: &Path) -> io::Result<BTreeMap<Vec<u8>, Node>> {
    let mut out = BTreeMap::new();
    walk(root, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, rel: &mut Vec<u8>, out: &mut BTreeMap<Vec<u8>, Node>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().into_vec();
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            out.insert(rel.clone(), Node::Dir);
            walk(&path, rel, out)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path)?.into_os_string().into_vec();
            out.insert(rel.clone(), Node::Symlink(target));
        } else if ft.is_file() {
            out.insert(rel.clone(), Node::File(fs::read(&path)?));
        } else {
            out.insert(rel.clone(), Node::Other);
        }
        rel.truncate(len);
    }
    Ok(())
}

/// Relative paths present in a snapshot, for messages.
pub fn show(path: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(path)).replace('\u{fffd}', "\\xNN")
}

/// Differences between two trees (names, types, symlink targets, contents), at most 20 lines;
/// `None` if either tree could not be read (e.g. changed while being walked).
pub fn tree_diff(a: &Path, b: &Path) -> Option<Vec<String>> {
    let (sa, sb) = (snapshot(a).ok()?, snapshot(b).ok()?);
    let mut diffs = Vec::new();
    for (k, va) in &sa {
        match sb.get(k) {
            None => diffs.push(format!("only in {a:?}: {} ({va:?})", show(k))),
            Some(vb) if vb != va => diffs.push(format!("differs: {}: {va:?} vs {vb:?}", show(k))),
            Some(_) => {}
        }
    }
    for (k, vb) in &sb {
        if !sa.contains_key(k) {
            diffs.push(format!("only in {b:?}: {} ({vb:?})", show(k)));
        }
    }
    let total = diffs.len();
    if total > 20 {
        diffs.truncate(20);
        diffs.push(format!("... and {} more differences", total - 20));
    }
    Some(diffs)
}

/// Fails the test with the first differences unless the trees are equal.
pub fn assert_trees_equal(a: &Path, b: &Path) {
    match tree_diff(a, b) {
        Some(d) if d.is_empty() => {}
        Some(d) => panic!("trees {a:?} and {b:?} differ:\n{}", d.join("\n")),
        None => panic!("cannot read {a:?} or {b:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Recorder

/// What the recorder does after recording a call.
#[derive(Clone, Copy, Debug)]
pub enum Then {
    /// Exit with this code (rsync 0 = success).
    Exit(i32),
    /// exec the real rsync with the same arguments and stdin, so the sync still happens.
    ExecRsync,
}

/// A `/bin/sh` script usable as `rsync{ binary = ... }`. Each call gets its own directory
/// `root/REL.calls/N/` (N = 1, 2, ...) holding `args` (each argument followed by a NUL, `printf '%s\0'`),
/// `stdin` (everything read from stdin) and `done` (written last).
pub struct Recorder {
    script: PathBuf,
    calls_dir: PathBuf,
}

/// One recorded call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The arguments (without argv[0]).
    pub args: Vec<Vec<u8>>,
    pub stdin: Vec<u8>,
}

impl Call {
    /// Arguments as (lossy) strings, for comparisons and messages.
    pub fn args(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    pub fn stdin_str(&self) -> String {
        String::from_utf8_lossy(&self.stdin).into_owned()
    }
}

fn sh_quote(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in bytes {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

impl Recorder {
    fn install(dir: &TestDir, rel: &str, then: Then) -> Recorder {
        let calls_dir = dir.mkdir(format!("{rel}.calls"));
        let script = dir.path(rel);
        let d = sh_quote(calls_dir.as_os_str().as_bytes());
        let mut text = Vec::new();
        text.extend_from_slice(
            b"#!/bin/sh\n# Records one call: arguments (NUL-terminated) and stdin.\nd=",
        );
        text.extend_from_slice(&d);
        text.extend_from_slice(
            b"\ni=1\nwhile ! mkdir \"$d/$i\" 2>/dev/null; do i=$((i + 1)); done\n\
              printf '%s\\0' \"$@\" > \"$d/$i/args\"\n\
              cat > \"$d/$i/stdin\"\n\
              : > \"$d/$i/done\"\n",
        );
        match then {
            Then::Exit(code) => text.extend_from_slice(format!("exit {code}\n").as_bytes()),
            Then::ExecRsync => {
                text.extend_from_slice(b"exec ");
                text.extend_from_slice(&sh_quote(rsync_path().as_os_str().as_bytes()));
                text.extend_from_slice(b" \"$@\" < \"$d/$i/stdin\"\n");
            }
        }
        fs::write(&script, text).expect("write recorder");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod recorder");
        Recorder { script, calls_dir }
    }

    /// Absolute path of the script.
    pub fn path(&self) -> &Path {
        &self.script
    }

    /// The script's path as a Lua string literal.
    pub fn lua(&self) -> String {
        lua_str(self.script.as_os_str().as_bytes())
    }

    /// All completely recorded calls, in call order.
    pub fn calls(&self) -> Vec<Call> {
        let mut calls = Vec::new();
        for i in 1.. {
            let d = self.calls_dir.join(i.to_string());
            if !d.exists() {
                break;
            }
            if !d.join("done").exists() {
                break;
            }
            let raw = fs::read(d.join("args")).unwrap_or_default();
            let mut args: Vec<Vec<u8>> = raw.split(|&b| b == 0).map(|s| s.to_vec()).collect();
            args.pop(); // after the last NUL
            let stdin = fs::read(d.join("stdin")).unwrap_or_default();
            calls.push(Call { args, stdin });
        }
        calls
    }

    /// Waits until at least `n` calls are recorded; fails with the daemon log otherwise.
    pub fn wait_calls(&self, daemon: &mut Daemon, n: usize) -> Vec<Call> {
        daemon.wait_for(&format!("{n} recorded rsync call(s)"), || {
            self.calls().len() >= n
        });
        self.calls()
    }
}

// ---------------------------------------------------------------------------------------------
// rsync argv comparison

/// Compares a recorded argument vector with the expected one. The combined short-flag word
/// (the one expected argument made of `-` and letters/digits, other than `-r`) is compared
/// exactly, or as a set of letters when the binary under test is upstream (random order).
pub fn assert_args(got: &[String], want: &[String]) {
    let is_flag_word = |a: &str| {
        a.len() > 1
            && a != "-r"
            && a.starts_with('-')
            && a[1..].bytes().all(|b| b.is_ascii_alphanumeric())
    };
    let flag_index = want.iter().position(|a| is_flag_word(a));
    let norm = |v: &[String]| -> Vec<String> {
        v.iter()
            .enumerate()
            .map(|(i, a)| {
                if Some(i) == flag_index && short_flag_order_is_random() && is_flag_word(a) {
                    let mut letters: Vec<char> = a.chars().skip(1).collect();
                    letters.sort_unstable();
                    format!("-{{{}}}", letters.into_iter().collect::<String>())
                } else {
                    a.clone()
                }
            })
            .collect()
    };
    let (g, w) = (norm(got), norm(want));
    if g != w {
        panic!(
            "rsync argv differs\n  want: {w:?}\n   got: {g:?}{}",
            if short_flag_order_is_random() {
                "\n  (short-flag word compared as a letter set: upstream's order is random)"
            } else {
                ""
            }
        );
    }
}

/// `sv!["a", x, ...]`: a `Vec<String>` from anything `String::from` takes.
macro_rules! sv {
    ($($e:expr),* $(,)?) => { vec![$(String::from($e)),*] };
}
pub mod sshd;

// ---------------------------------------------------------------------------------------------
// Rng

/// A small deterministic generator (xorshift64*) for seeded churn tests: no dependency, the
/// same sequence everywhere.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (0 is mapped to 1: xorshift never leaves 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A random element, or `None` for an empty slice.
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            Some(&v[self.below(v.len())])
        }
    }
}
