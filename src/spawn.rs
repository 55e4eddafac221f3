//! Child processes: the only module that creates them (SPEC §6.1, §6.4; STYLE §3.7).
//!
//! Owns: turning a [`SpawnRequest`] (argv bytes, optional stdin text, optional output fd) into
//! a running child; the non-blocking stdin pipes still being written ([`Spawner`]); reaping
//! exited children into `(pid, exit code)` ([`reap`]); the `Exec` log line text
//! ([`exec_log_line`]).
//! Must not touch: Lua, syncs, delays, logging (callers log what these functions return), the
//! `mio::Poll` itself (only its `Registry`, for the stdin pipes). Raw libc lives in `sys.rs`.
//!
//! Nothing else in the crate may use `std::process::Command`: [`reap`] waits for *any* child
//! (`waitpid(-1)`) and would steal its children.
//!
//! Stdin pipes: a filter list can be far larger than the 64 KiB pipe buffer, and a slow child
//! must never block the daemon. The parent writes what fits at once; if that is everything the
//! pipe is closed at once ("one-sweeped"), otherwise the write end is registered `WRITABLE` in
//! the loop's poll under a token >= [`FIRST_PIPE_TOKEN`] and [`Spawner::feed`] continues on each
//! readiness event (mio is edge-triggered: write until `WouldBlock`). `EPIPE` means the child is
//! gone; it is an error return, not a signal, because the daemon ignores SIGPIPE
//! (`sys::ignore_sigpipe`).

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};

use mio::unix::pipe::Sender;
use mio::{Interest, Registry, Token};

use crate::sys;

/// First token handed out for child stdin pipes; lower tokens belong to the event loop
/// (`INOTIFY = Token(0)`, `SIGNALS = Token(1)`, ...).
pub(crate) const FIRST_PIPE_TOKEN: usize = 1024;

/// What to run (SPEC §6.1).
#[derive(Debug)]
pub(crate) struct SpawnRequest {
    /// `argv[0]` is the binary, looked up in `PATH` (`execvp`); raw bytes, no NUL allowed.
    pub(crate) argv: Vec<Vec<u8>>,
    /// Text for the child's stdin. `None` or empty: the child inherits our stdin.
    pub(crate) stdin: Option<Vec<u8>>,
    /// If given, the child's stdout and stderr are this fd (daemonized with a `logfile`: the
    /// caller opens the logfile in append mode, as upstream re-opens it per spawn); `None`:
    /// both are inherited. Closed in the parent once the child is started.
    pub(crate) output: Option<OwnedFd>,
}

/// What became of the stdin text right after the spawn (for the `Exec` log, SPEC §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PipeState {
    /// No stdin text: the child inherits our stdin.
    None,
    /// Everything was written at once and the pipe closed (log `one-sweeped pipe`).
    OneSweep,
    /// The rest is written whenever the pipe becomes writable; the write end is registered
    /// under this token.
    Pending(Token),
    /// The first write failed (child already gone) or the pipe could not be registered; the
    /// pipe is closed and the child sees end of input early (log `broken pipe.`).
    Broken,
}

/// What [`Spawner::feed`] did with a writable pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PipeProgress {
    /// All text written, pipe closed (log `finished pipe.`).
    Finished,
    /// A write failed (`EPIPE`: child gone), pipe closed (log `broken pipe.`).
    Broken,
    /// The pipe is full again; more on the next writable event.
    More,
    /// Not a pipe of ours (already closed, or a spurious event): nothing done.
    Unknown,
}

/// One stdin text still being written.
#[derive(Debug)]
struct PendingPipe {
    sender: Sender,
    text: Vec<u8>,
    written: usize,
    pid: libc::pid_t,
}

/// Starts children and owns their pending stdin pipes.
#[derive(Debug)]
pub(crate) struct Spawner {
    pipes: HashMap<Token, PendingPipe>,
    /// Next token to hand out; never reused, so a late event for a closed pipe is `Unknown`.
    next_token: usize,
}

impl Default for Spawner {
    fn default() -> Self {
        Self::new()
    }
}

impl Spawner {
    pub(crate) fn new() -> Self {
        Self {
            pipes: HashMap::new(),
            next_token: FIRST_PIPE_TOKEN,
        }
    }

    /// Whether `token` is in the range this type hands out for stdin pipes.
    pub(crate) fn is_spawn_token(token: Token) -> bool {
        token.0 >= FIRST_PIPE_TOKEN
    }

    /// Number of stdin pipes still being written.
    #[cfg(test)]
    pub(crate) fn pending_pipes(&self) -> usize {
        self.pipes.len()
    }

    /// Starts `req` (SPEC §6.1) and returns the child's pid and what became of its stdin.
    ///
    /// Everything that can fail is prepared before the fork: the C argv (an empty argv or an
    /// interior NUL byte is an `InvalidInput` error and no child is started), the pipe, the
    /// exec-failure message. An `Err` therefore always means "no child". If `execvp` fails the
    /// child writes `Error: Failed executing [ BINARY ]!` to its stderr and exits with `exit::FATAL_STATUS`.
    pub(crate) fn spawn(
        &mut self,
        registry: &Registry,
        req: SpawnRequest,
    ) -> io::Result<(libc::pid_t, PipeState)> {
        let plan = sys::ExecPlan::new(&req.argv)?;
        let text = req.stdin.filter(|text| !text.is_empty());
        let pipe = match text {
            Some(_) => {
                let (read_end, write_end) = sys::pipe_cloexec()?;
                let sender = Sender::from(write_end);
                // Only our end: the child's stdin (read end) must stay blocking.
                sender.set_nonblocking(true)?;
                Some((read_end, sender))
            }
            None => None,
        };
        let pid = plan.fork_exec(
            pipe.as_ref().map(|(read_end, _)| read_end.as_fd()),
            req.output.as_ref().map(AsFd::as_fd),
        )?;
        crate::shutdown::child_started(pid);
        // The parent's copies of the child's ends are closed here (read end, output fd), so a
        // child that exits is seen as EPIPE on our write end.
        drop(req.output);
        let (Some(text), Some((read_end, sender))) = (text, pipe) else {
            return Ok((pid, PipeState::None));
        };
        drop(read_end);

        let mut pending = PendingPipe {
            sender,
            text,
            written: 0,
            pid,
        };
        let state = match pending.write_until_blocked() {
            Ok(true) => PipeState::OneSweep,
            Err(_) => PipeState::Broken,
            Ok(false) => {
                let token = Token(self.next_token);
                match registry.register(&mut pending.sender, token, Interest::WRITABLE) {
                    Ok(()) => {
                        self.next_token += 1;
                        self.pipes.insert(token, pending);
                        PipeState::Pending(token)
                    }
                    // The child is running; an error here would lose its pid. Closing the
                    // pipe ends its input early, which the caller logs as a broken pipe.
                    Err(_) => PipeState::Broken,
                }
            }
        };
        Ok((pid, state))
    }

    /// Continues writing the pipe registered under `token` after a writable event: until
    /// `WouldBlock` (`More`), the end of the text (`Finished`) or an error (`Broken`, `EPIPE`
    /// when the child is gone). A finished or broken pipe is deregistered and closed.
    pub(crate) fn feed(&mut self, registry: &Registry, token: Token) -> PipeProgress {
        let Some(pending) = self.pipes.get_mut(&token) else {
            return PipeProgress::Unknown;
        };
        let progress = match pending.write_until_blocked() {
            Ok(false) => return PipeProgress::More,
            Ok(true) => PipeProgress::Finished,
            Err(_) => PipeProgress::Broken,
        };
        if let Some(mut done) = self.pipes.remove(&token) {
            // Closing the fd removes it from epoll anyway; deregistering first keeps mio's
            // registry view exact, and its failure changes nothing.
            let _ = registry.deregister(&mut done.sender);
        }
        progress
    }

    /// The pid a pending pipe feeds, for log lines.
    pub(crate) fn pipe_pid(&self, token: Token) -> Option<libc::pid_t> {
        self.pipes.get(&token).map(|pending| pending.pid)
    }
}

impl PendingPipe {
    /// Writes until the text is done (`Ok(true)`) or the pipe is full (`Ok(false)`).
    fn write_until_blocked(&mut self) -> io::Result<bool> {
        while self.written < self.text.len() {
            match self.sender.write(&self.text[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Reaps every exited child (`waitpid(-1, WNOHANG)` until none is left) into `out` as
/// `(pid, exit code)`.
///
/// The exit code is the child's exit status, or 128 + the signal number for a child killed by
/// a signal. Upstream reports such a child as exit code 0 (SPEC §6.4); this deviates on
/// purpose (SPEC §15 item 7), so that a killed rsync is never taken for a success.
/// The third field is the signal that killed the child, if one did.
pub(crate) fn reap(out: &mut Vec<(libc::pid_t, i32, Option<i32>)>) {
    // An error other than "no children" (ECHILD, mapped to None) cannot happen for
    // waitpid(-1, WNOHANG) with a valid status pointer; stopping is the only sensible reaction.
    while let Ok(Some((pid, status))) = sys::wait_any_nohang() {
        if let Some(code) = exit_code(status) {
            crate::shutdown::child_reaped(pid);
            let signal = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
            out.push((pid, code, signal));
        }
    }
}

/// Exit code for a raw wait status: `WEXITSTATUS`, or 128 + `WTERMSIG` for a signalled child;
/// `None` for stop/continue reports (not requested, so not expected).
fn exit_code(status: libc::c_int) -> Option<i32> {
    if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Some(128 + libc::WTERMSIG(status))
    } else {
        None
    }
}

/// The text of the `Exec` log line (SPEC §6.1): `BINARY [arg1] [arg2] ...`; when a stdin text
/// was given (`Some`, even empty, as upstream logs the `<` arguments it was handed) it comes
/// first as `[<] [TEXT]`. Bytes are kept as they are except NUL, shown as a newline (rsync
/// include lists are NUL-separated).
pub(crate) fn exec_log_line(argv: &[Vec<u8>], stdin: Option<&[u8]>) -> Vec<u8> {
    let Some((binary, args)) = argv.split_first() else {
        return Vec::new();
    };
    let mut line = binary.clone();
    let piped = stdin.map(|text| [b"<".as_slice(), text]);
    for arg in piped
        .iter()
        .flatten()
        .copied()
        .chain(args.iter().map(Vec::as_slice))
    {
        line.extend_from_slice(b" [");
        line.extend_from_slice(arg);
        line.push(b']');
    }
    for byte in &mut line {
        if *byte == 0 {
            *byte = b'\n';
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::test_lock;
    use mio::{Events, Poll};
    use std::ffi::OsStr;
    use std::fs::OpenOptions;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::time::{Duration, Instant};

    const DEADLINE: Duration = Duration::from_secs(20);

    fn req(argv: &[&[u8]]) -> SpawnRequest {
        SpawnRequest {
            argv: argv.iter().map(|a| a.to_vec()).collect(),
            stdin: None,
            output: None,
        }
    }

    /// An append-mode fd on `path`, as the daemon passes its logfile.
    fn append_fd(path: &Path) -> OwnedFd {
        OwnedFd::from(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open output file"),
        )
    }

    /// Reaps until `pid` has exited; other pids (left over by a failed test) are ignored.
    fn wait_exit(pid: libc::pid_t) -> i32 {
        let start = Instant::now();
        let mut out = Vec::new();
        loop {
            reap(&mut out);
            if let Some(&(_, code, _)) = out.iter().find(|(p, _, _)| *p == pid) {
                return code;
            }
            assert!(start.elapsed() < DEADLINE, "child {pid} did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// What a spawning test holds: the process-wide lock, a scratch directory, a poll and a
    /// spawner.
    struct Rig {
        _guard: std::sync::MutexGuard<'static, ()>,
        dir: tempfile::TempDir,
        poll: Poll,
        spawner: Spawner,
    }

    impl Rig {
        fn new() -> Rig {
            Rig {
                _guard: test_lock(),
                dir: tempfile::tempdir().expect("tempdir"),
                poll: Poll::new().expect("poll"),
                spawner: Spawner::new(),
            }
        }

        /// Starts `request`; it must start.
        fn spawn(&mut self, request: SpawnRequest) -> (libc::pid_t, PipeState) {
            self.spawner
                .spawn(self.poll.registry(), request)
                .expect("spawn")
        }

        /// Drives the poll loop until no pipe is pending; returns every feed result.
        fn drive(&mut self) -> Vec<PipeProgress> {
            let start = Instant::now();
            let mut events = Events::with_capacity(16);
            let mut progress = Vec::new();
            while self.spawner.pending_pipes() > 0 {
                assert!(start.elapsed() < DEADLINE, "pipes still pending");
                match self
                    .poll
                    .poll(&mut events, Some(Duration::from_millis(100)))
                {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => other.expect("poll"),
                }
                for event in events.iter() {
                    assert!(Spawner::is_spawn_token(event.token()));
                    progress.push(self.spawner.feed(self.poll.registry(), event.token()));
                }
            }
            progress
        }

        fn path(&self, name: &str) -> std::path::PathBuf {
            self.dir.path().join(name)
        }
    }

    /// Bytes 0..=250 cycling (NUL and invalid UTF-8 included, period prime to the pipe size).
    fn binary_text(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn exit_codes_are_reaped() {
        let mut rig = Rig::new();
        let out = rig.path("out");
        let cases: &[(&[&[u8]], i32)] = &[
            (&[b"/bin/echo", b"absolute"], 0),
            (&[b"echo", b"path lookup", b"caf\xe9"], 0),
            (&[b"sh", b"-c", b"exit 3"], 3),
            (&[b"sh", b"-c", b"kill -TERM $$"], 128 + libc::SIGTERM),
        ];
        for (argv, expected) in cases {
            let mut request = req(argv);
            request.output = Some(append_fd(&out));
            let (pid, state) = rig.spawn(request);
            assert_eq!(state, PipeState::None);
            assert_eq!(wait_exit(pid), *expected, "{argv:?}");
        }
        assert_eq!(
            std::fs::read(&out).expect("read"),
            b"absolute\npath lookup caf\xe9\n"
        );
    }

    #[test]
    fn killed_child_reports_128_plus_signal() {
        let mut rig = Rig::new();
        let (pid, _) = rig.spawn(req(&[b"sleep", b"30"]));
        sys::kill(pid, libc::SIGKILL).expect("kill");
        assert_eq!(wait_exit(pid), 137);
    }

    #[test]
    fn large_binary_stdin_is_delivered_exactly() {
        let mut rig = Rig::new();
        let mut target = rig.dir.path().as_os_str().as_bytes().to_vec();
        target.extend_from_slice(b"/out caf\xe9 \xff\xfe");
        let text = binary_text(3 * 1024 * 1024 / 2);
        let request = SpawnRequest {
            argv: vec![
                b"sh".to_vec(),
                b"-c".to_vec(),
                b"cat > \"$1\"".to_vec(),
                b"sh".to_vec(),
                target.clone(),
            ],
            stdin: Some(text.clone()),
            output: None,
        };
        let (pid, state) = rig.spawn(request);
        let PipeState::Pending(token) = state else {
            panic!("1.5 MiB cannot fit a pipe buffer: {state:?}");
        };
        assert!(Spawner::is_spawn_token(token));
        assert_eq!(rig.spawner.pipe_pid(token), Some(pid));
        assert_eq!(rig.spawner.pending_pipes(), 1);
        let progress = rig.drive();
        assert_eq!(progress.last(), Some(&PipeProgress::Finished));
        assert!(progress[..progress.len() - 1]
            .iter()
            .all(|p| *p == PipeProgress::More));
        assert_eq!(wait_exit(pid), 0);
        let got = std::fs::read(OsStr::from_bytes(&target)).expect("read output");
        assert_eq!(got.len(), text.len());
        assert!(got == text, "stdin bytes differ");
    }

    #[test]
    fn small_stdin_is_written_in_one_sweep() {
        let mut rig = Rig::new();
        let out = rig.path("out");
        let request = SpawnRequest {
            argv: vec![b"cat".to_vec()],
            stdin: Some(b"/a\0/b\xe9\0".to_vec()),
            output: Some(append_fd(&out)),
        };
        let (pid, state) = rig.spawn(request);
        assert_eq!(state, PipeState::OneSweep);
        assert_eq!(rig.spawner.pending_pipes(), 0);
        assert_eq!(wait_exit(pid), 0);
        assert_eq!(std::fs::read(&out).expect("read"), b"/a\0/b\xe9\0");
    }

    #[test]
    fn empty_stdin_means_no_pipe() {
        let mut rig = Rig::new();
        let mut request = req(&[b"true"]);
        request.stdin = Some(Vec::new());
        let (pid, state) = rig.spawn(request);
        assert_eq!(state, PipeState::None);
        assert_eq!(wait_exit(pid), 0);
    }

    #[test]
    fn child_ignoring_stdin_breaks_the_pipe_without_killing_us() {
        let mut rig = Rig::new();
        sys::ignore_sigpipe().expect("ignore SIGPIPE");
        let mut request = req(&[b"true"]);
        request.stdin = Some(binary_text(4 * 1024 * 1024));
        let (pid, state) = rig.spawn(request);
        let progress = match state {
            PipeState::Pending(_) => rig.drive(),
            // The child can exit before our first write.
            PipeState::Broken => vec![PipeProgress::Broken],
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(progress.last(), Some(&PipeProgress::Broken));
        assert_eq!(rig.spawner.pending_pipes(), 0);
        assert_eq!(wait_exit(pid), 0);
        // A late event for the closed pipe is harmless.
        if let PipeState::Pending(token) = state {
            let late = rig.spawner.feed(rig.poll.registry(), token);
            assert_eq!(late, PipeProgress::Unknown);
        }
    }

    #[test]
    fn missing_binary_exits_fatal_status_with_message() {
        let mut rig = Rig::new();
        for binary in [
            b"/nonexistent/lsyncd-test-\xe9".as_slice(),
            b"lsyncd-no-such-binary-in-path",
        ] {
            let out = rig.path("out");
            let mut request = req(&[binary, b"arg"]);
            request.output = Some(append_fd(&out));
            let (pid, _) = rig.spawn(request);
            assert_eq!(wait_exit(pid), crate::exit::FATAL_STATUS);
            let mut expected = b"Error: Failed executing [ ".to_vec();
            expected.extend_from_slice(binary);
            expected.extend_from_slice(b" ]!\n");
            assert_eq!(std::fs::read(&out).expect("read"), expected);
            std::fs::remove_file(&out).expect("remove");
        }
    }

    /// `SigBlk:`/`SigIgn:` hex masks of a `/proc/.../status` text.
    fn proc_masks(status: &[u8]) -> (u64, u64) {
        let text = String::from_utf8_lossy(status);
        let mask = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
                .unwrap_or_else(|| panic!("no {name} in {text:?}"))
        };
        (mask("SigBlk:"), mask("SigIgn:"))
    }

    #[test]
    fn child_has_empty_mask_and_default_sigpipe() {
        let mut rig = Rig::new();
        sys::ignore_sigpipe().expect("ignore SIGPIPE");
        let before = std::fs::read("/proc/thread-self/status").expect("own status");
        let out = rig.path("masks");
        // grep itself, not `sh -c`: dash clears its signal mask at startup and would hide a
        // mask leaked by us.
        let mut request = req(&[b"grep", b"-E", b"SigBlk|SigIgn", b"/proc/self/status"]);
        request.output = Some(append_fd(&out));
        let (pid, _) = rig.spawn(request);
        assert_eq!(wait_exit(pid), 0);
        let (blocked, ignored) = proc_masks(&std::fs::read(&out).expect("read"));
        assert_eq!(blocked, 0, "child signal mask");
        let pipe_bit = 1u64 << (libc::SIGPIPE - 1);
        assert_eq!(ignored & pipe_bit, 0, "SIGPIPE ignored in child");
        // The parent's mask is restored after the fork window.
        let after = std::fs::read("/proc/thread-self/status").expect("own status");
        assert_eq!(proc_masks(&before).0, proc_masks(&after).0);
        assert_ne!(proc_masks(&after).1 & pipe_bit, 0, "SIGPIPE ignored in us");
    }

    #[test]
    fn interior_nul_in_argv_is_an_error_and_starts_nothing() {
        let mut rig = Rig::new();
        for argv in [
            &[b"echo".as_slice(), b"a\0b"][..],
            &[b"ec\0ho".as_slice()][..],
            &[][..],
        ] {
            let mut request = req(argv);
            request.stdin = Some(b"text".to_vec());
            let err = rig
                .spawner
                .spawn(rig.poll.registry(), request)
                .expect_err("must fail");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        assert_eq!(rig.spawner.pending_pipes(), 0);
        let mut out = Vec::new();
        reap(&mut out);
        assert!(out.is_empty(), "a child was started: {out:?}");
    }

    #[test]
    fn exit_code_decodes_wait_status() {
        // Raw statuses as Linux encodes them: exit code in bits 8..16, signal in bits 0..7.
        let cases = [
            (0, Some(0)),
            (3 << 8, Some(3)),
            (0xff << 8, Some(0xff)),
            (libc::SIGKILL, Some(128 + libc::SIGKILL)),
            (libc::SIGTERM, Some(128 + libc::SIGTERM)),
            (libc::SIGSEGV | 0x80, Some(128 + libc::SIGSEGV)), // core dumped
            ((libc::SIGSTOP << 8) | 0x7f, None),               // stopped
            (0xffff, None),                                    // continued
        ];
        for (status, expected) in cases {
            assert_eq!(exit_code(status), expected, "status {status:#x}");
        }
    }

    #[test]
    fn exec_log_line_brackets_arguments() {
        let argv = |args: &[&[u8]]| args.iter().map(|a| a.to_vec()).collect::<Vec<_>>();
        /// argv, stdin text, expected line.
        type Case<'a> = (Vec<Vec<u8>>, Option<&'a [u8]>, &'a [u8]);
        let cases: &[Case] = &[
            (argv(&[b"/bin/true"]), None, b"/bin/true"),
            (
                argv(&[b"/bin/sh", b"-c", b"echo \"$1\"", b"/bin/sh", b"a b"]),
                None,
                b"/bin/sh [-c] [echo \"$1\"] [/bin/sh] [a b]",
            ),
            (
                argv(&[b"/usr/bin/rsync", b"-r", b"/s/", b"/t/"]),
                Some(b"/a/new.txt\0/a/b/\0"),
                b"/usr/bin/rsync [<] [/a/new.txt\n/a/b/\n] [-r] [/s/] [/t/]",
            ),
            (argv(&[b"cat"]), Some(b""), b"cat [<] []"),
            (argv(&[b"cp", b"caf\xe9"]), None, b"cp [caf\xe9]"),
            (Vec::new(), None, b""),
        ];
        for (argv, stdin, expected) in cases {
            assert_eq!(
                exec_log_line(argv, *stdin),
                *expected,
                "{:?}",
                String::from_utf8_lossy(expected)
            );
        }
    }
}
