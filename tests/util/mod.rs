//! Harness for the integration tests: runs the real `lsyncd` binary with real rsync on
//! temporary directories and polls until the result is there.
//!
//! Owns: `TestDir` (a fresh temp dir with `src/` and `dst/`, byte-named file helpers),
//! `Daemon` (one `lsyncd -nodaemon` process, its log, TERM-then-KILL on drop), `run` (one
//! short-lived invocation with stdout and stderr kept apart), `wait_until` (the only way a test
//! waits for something) and rsync argv comparison. The parts the benchmark shares (temp dirs,
//! the process handle, the spawn recorder, the seeded generator, tree comparison) are in
//! `kit/` and re-exported here.
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

pub mod kit;
#[macro_use]
pub mod privfs;
pub mod sshd;
pub use kit::proc::{exit_code, send_signal, Proc};
pub use kit::recorder::{Call, Recorder, Then, Waiter};
pub use kit::rng::Rng;
pub use kit::tree::{assert_trees_equal, show, snapshot, tree_diff, trees_equal, Node};
pub use kit::{lua_str, os, poll_until, temp_dir, which};
pub use privfs::Mon;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

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
        .get_or_init(|| which("rsync"))
        .clone()
        .unwrap_or_else(|| {
            panic!(
                "rsync not found in PATH: the integration tests run the real rsync. \
                 Install it (`make deps`, or `apt-get install rsync`) and run again."
            )
        })
}

/// Whether the tests run as root (some switch users or mount).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Polls `pred` every 50 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, pred: impl FnMut() -> bool) -> bool {
    poll_until(timeout, POLL, pred)
}

// ---------------------------------------------------------------------------------------------
// TestDir

/// A fresh temporary directory holding `src/` and `dst/`; removed on drop.
/// All helpers take paths relative to the root, as bytes (`"src/a"`, `b"src/caf\xe9"`).
/// With [`Mon::Fanotify`] the dir is a private tmpfs (see `privfs`) and daemons started on it
/// run inside its namespace with `-monitor fanotify`.
pub struct TestDir {
    root: PathBuf,
    // Dropped before `tmp`: the mount goes before the dir under it is removed.
    fs: Option<privfs::PrivateFs>,
    tmp: tempfile::TempDir,
}

/// `setpriv` options that run a command as user `nobody` without supplementary groups.
pub const SETPRIV_NOBODY: [&str; 3] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

impl TestDir {
    pub fn new() -> TestDir {
        TestDir::with_monitor(Mon::Inotify)
    }

    pub fn with_monitor(mon: Mon) -> TestDir {
        let tmp = temp_dir("lsyncd-test-", None).expect("create temp dir");
        let fs = (mon == Mon::Fanotify).then(|| privfs::PrivateFs::mount(tmp.path()));
        let root = fs
            .as_ref()
            .map_or_else(|| tmp.path().to_owned(), |f| f.outer());
        let dir = TestDir { root, fs, tmp };
        dir.mkdir("src");
        dir.mkdir("dst");
        dir
    }

    pub fn monitor(&self) -> Mon {
        if self.fs.is_some() {
            Mon::Fanotify
        } else {
            Mon::Inotify
        }
    }

    /// A command running `program` in the test dir: inside its private mount namespace for a
    /// fanotify test dir (with no `-monitor` added, unlike [`Daemon::start`]).
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        match &self.fs {
            Some(fs) => fs.command(program.as_ref()),
            None => {
                let mut cmd = Command::new(program.as_ref());
                cmd.current_dir(self.root());
                cmd
            }
        }
    }

    /// The private mount namespace (`/proc/PID/ns/mnt`) of a fanotify test dir.
    pub fn mount_ns(&self) -> Option<String> {
        self.fs.as_ref().map(privfs::PrivateFs::mount_ns)
    }

    /// Hands the whole tree to user `nobody` (for a daemon run without privileges).
    pub fn give_to_nobody(&self) {
        let chown = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(self.root())
            .status()
            .expect("chown");
        assert!(chown.success());
    }

    pub fn root(&self) -> &Path {
        &self.root
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
        self.recorder_at("rec.sh", then)
    }

    /// Installs a recorder script at `root/REL` (e.g. `bin/rsync`, to be found through PATH).
    pub fn recorder_at(&self, rel: &str, then: Then) -> Recorder {
        if let Then::ExecRsync = then {
            rsync_path();
        }
        let script = self.path(rel);
        if let Some(parent) = script.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {parent:?}: {e}"));
        }
        Recorder::install(&script, then).unwrap_or_else(|e| panic!("install {script:?}: {e}"))
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

/// Makes the FIFO `fifo` in `dir` (for configs that observe a descriptor, `fifo_fd.lua`).
pub fn make_fifo(dir: &TestDir) -> PathBuf {
    let fifo = dir.path("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.display());
    fifo
}

/// Opens a FIFO a daemon holds open for reading, to write lines to it.
pub fn open_for_writing(fifo: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .expect("open fifo for writing")
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
/// appended to `root/lsyncdN.log`. Dropping it sends SIGTERM, waits up to 5 s, then SIGKILLs.
/// If the test is failing, the drop prints the log.
pub struct Daemon {
    proc: Proc,
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
        let mut cmd = match &dir.fs {
            None => Command::new(lsyncd_bin()),
            Some(fs) => {
                let mut cmd = fs.command(&lsyncd_bin());
                cmd.args(["-monitor", "fanotify"]);
                cmd
            }
        };
        cmd.arg("-nodaemon").args(args).current_dir(dir.root());
        adjust(&mut cmd);
        let proc = Proc::spawn(cmd, &log_path)
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", lsyncd_bin()));
        Daemon { proc }
    }

    /// Runs a prepared command (e.g. lsyncd under `setpriv`) as the daemon, logging like
    /// `start`.
    pub fn spawn(dir: &TestDir, cmd: Command) -> Daemon {
        let log_path = dir.path(format!("lsyncd{}.log", next_id()));
        let proc = Proc::spawn(cmd, &log_path).unwrap_or_else(|e| panic!("cannot start: {e}"));
        Daemon { proc }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Everything the daemon printed so far (stdout and stderr interleaved).
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Exit status if the process has ended (reaping it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.proc.try_exit()
    }

    /// The exit status once the process has been seen to end.
    pub fn status(&self) -> Option<ExitStatus> {
        self.proc.status()
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code (128 + signal when
    /// killed), or `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        self.proc.wait_exit(timeout)
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`).
    pub fn signal(&self, name: &str) {
        self.proc.signal(name);
    }

    /// Polls until the log contains `needle`; fails the test (with the log) on timeout or when
    /// the daemon exits first.
    pub fn wait_log(&mut self, needle: &str) {
        self.wait_log_count(needle, 1);
    }

    /// Polls until the log contains `needle` at least `n` times; fails like `wait_log`.
    pub fn wait_log_count(&mut self, needle: &str, n: usize) {
        let ok = wait_until(TIMEOUT, || {
            self.log().matches(needle).count() >= n || self.try_exit().is_some()
        });
        if !(ok && self.log().matches(needle).count() >= n) {
            let times = if n == 1 {
                String::new()
            } else {
                format!(" {n} times")
            };
            panic!(
                "daemon log never showed {needle:?}{times} (exit: {:?})\n--- log ---\n{}",
                self.status().map(exit_code),
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
        self.wait_for(&format!("{a:?} and {b:?} equal"), || trees_equal(a, b));
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
                self.status().map(exit_code),
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

impl Waiter for Daemon {
    fn wait_until_true(&mut self, what: &str, pred: &mut dyn FnMut() -> bool) {
        self.wait_for(what, pred);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.proc.stop(Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!("--- lsyncd log ({:?}) ---\n{}", self.proc.log, self.log());
        }
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
