//! Every `unsafe` block and every raw libc call of the crate; only safe wrappers leave this file.
//!
//! Owns: fork + exec of children (with the child-side setup between the two), `waitpid`,
//! `pipe2`, `kill`, `getpid`, the SIGPIPE disposition of the daemon, `realpath`, the fanotify
//! calls (`fanotify_init`, `fanotify_mark`, `name_to_handle_at`, `open_by_handle_at`, `fstatfs`).
//! Must not touch: logging, Lua, the event loop, any policy. Callers in `spawn.rs` decide *what*
//! to run; this file only knows *how* to do it without undefined behaviour.
//!
//! Conventions (STYLE §3.6): one `cvt` helper turns the C "-1 and errno" convention into
//! `io::Result`; EINTR is retried only for idempotent calls (`waitpid`); fds are `OwnedFd` /
//! `BorrowedFd` and are created close-on-exec in the creating call; every `unsafe` block carries a
//! `// SAFETY:` comment (enforced by `clippy::undocumented_unsafe_blocks`).
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::ptr;

use crate::crontab::CivilTime;

/// Exit status of a child whose `execvp` failed (SPEC §6.1; the rsync exit-code table maps it
/// to `again`).
pub(crate) const EXEC_FAILED_STATUS: libc::c_int = crate::exit::FATAL_STATUS;

/// Signals whose disposition the daemon changes (SIGPIPE ignored by [`ignore_sigpipe`], the
/// others caught by signal-hook in `signals.rs`). A child gets each back at `SIG_DFL` before
/// exec (SPEC §15 items 8-9): an ignored disposition would survive `execvp`, and a caught one
/// would run signal-hook's handler in the child until `execvp` replaces the image.
const CHANGED_SIGNALS: [libc::c_int; 5] = [
    libc::SIGPIPE,
    libc::SIGHUP,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGCHLD,
];

/// The `syscall!` of mio, as a function: `-1` becomes `io::Error::last_os_error()`.
trait MinusOne: Copy + PartialEq {
    const MINUS_ONE: Self;
}

impl MinusOne for i32 {
    const MINUS_ONE: Self = -1;
}

impl MinusOne for isize {
    const MINUS_ONE: Self = -1;
}

fn cvt<T: MinusOne>(rc: T) -> io::Result<T> {
    if rc == T::MINUS_ONE {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Converts the return value of a `pthread_*` call (an error number, 0 on success).
fn cvt_pthread(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// This process's id.
pub(crate) fn getpid() -> libc::pid_t {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// Sends `sig` to `pid` (`kill(2)`); `sig == 0` only checks that the process exists.
pub(crate) fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes plain integers and touches no memory of ours.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Sets SIGPIPE to `SIG_IGN` so a child that exits before reading its stdin list turns our next
/// write into `EPIPE` instead of killing the daemon (SPEC §15 item 8). Children get `SIG_DFL`
/// back before exec ([`ExecPlan::fork_exec`]).
pub(crate) fn ignore_sigpipe() -> io::Result<()> {
    set_disposition(libc::SIGPIPE, libc::SIG_IGN)
}

fn set_disposition(sig: libc::c_int, handler: libc::sighandler_t) -> io::Result<()> {
    let action = plain_sigaction(handler);
    // SAFETY: `action` is a fully initialised sigaction with an empty mask and no SA_SIGINFO,
    // whose handler is SIG_IGN or SIG_DFL (no code of ours runs in signal context); the old
    // action is not requested (null pointer is allowed).
    cvt(unsafe { libc::sigaction(sig, &action, ptr::null_mut()) }).map(drop)
}

/// A `sigaction` for `SIG_DFL`/`SIG_IGN`: no flags, empty mask.
fn plain_sigaction(handler: libc::sighandler_t) -> libc::sigaction {
    // SAFETY: sigaction is a plain C struct for which all-zero bytes are a valid value (null
    // handler = SIG_DFL, no flags, and the mask is set right below).
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    // SAFETY: sa_mask is a valid, exclusively borrowed sigset_t.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    action
}

fn sigset(full: bool) -> libc::sigset_t {
    // SAFETY: sigset_t is a plain C bit set; zeroed is a valid starting value that
    // sigemptyset/sigfillset then initialise properly.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t; neither call can fail on it.
    unsafe {
        if full {
            libc::sigfillset(&mut set);
        } else {
            libc::sigemptyset(&mut set);
        }
    }
    set
}

/// A pipe whose both ends are close-on-exec, returned as `(read end, write end)`.
///
/// Deliberately not `O_NONBLOCK`: with `pipe2` that flag lands on both ends, and the read end
/// becomes a child's stdin, which must block. The caller makes the write end non-blocking
/// (mio's `Sender::set_nonblocking`) before the fork.
pub(crate) fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [RawFd; 2] = [-1, -1];
    // SAFETY: `fds` is a writable array of two c_ints, as pipe2 requires.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else yet; each is
    // adopted exactly once.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok(pair)
}

/// A close-on-exec duplicate of `fd` numbered 3 or higher, so it can never collide with the
/// stdio slots a child's setup writes to.
fn dup_above_stdio(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: `fd` is a valid open descriptor for the borrow's lifetime; F_DUPFD_CLOEXEC only
    // creates a new descriptor.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: fcntl succeeded, so `new` is an open descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// One `waitpid(-1, WNOHANG)`: `Some((pid, raw status))` for an exited child, `None` when no
/// child has exited (or there are no children at all). EINTR is retried.
pub(crate) fn wait_any_nohang() -> io::Result<Option<(libc::pid_t, libc::c_int)>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable c_int for waitpid to fill in.
        match cvt(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) }) {
            Ok(0) => return Ok(None),
            Ok(pid) => return Ok(Some((pid, status))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// `realpath(3)` on bytes: the absolute, symlink-free path, or the error of the lookup.
pub(crate) fn realpath(path: &[u8]) -> io::Result<Vec<u8>> {
    std::fs::canonicalize(OsStr::from_bytes(path)).map(|p| p.into_os_string().into_vec())
}

/// Everything a child needs, built before the fork so the child allocates nothing.
pub(crate) struct ExecPlan {
    /// Owns the bytes `argv_ptrs` points into (a `CString`'s heap buffer does not move when
    /// the `Vec` does).
    argv: Vec<CString>,
    /// `argv` as a NULL-terminated pointer array, the shape `execvp` wants.
    argv_ptrs: Vec<*const libc::c_char>,
    /// `Error: Failed executing [ BINARY ]!\n`, written by the child if `execvp` fails.
    failure_message: Vec<u8>,
    /// SIG_DFL action for the child's reset of [`CHANGED_SIGNALS`].
    default_action: libc::sigaction,
    /// Empty mask for the child: it must not inherit the all-blocked mask of the fork window
    /// nor anything the daemon blocked (SPEC §15 item 9).
    empty_mask: libc::sigset_t,
}

impl ExecPlan {
    /// Validates and converts `argv` (`argv[0]` is the binary, looked up in `PATH`). An empty
    /// argv or an argument with an interior NUL byte is an `InvalidInput` error.
    pub(crate) fn new(argv: &[Vec<u8>]) -> io::Result<Self> {
        let Some(binary) = argv.first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot spawn an empty argument vector",
            ));
        };
        let argv = argv
            .iter()
            .map(|arg| {
                CString::new(arg.as_slice()).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "spawn argument contains a NUL byte",
                    )
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let argv_ptrs = argv
            .iter()
            .map(|arg| arg.as_ptr())
            .chain(std::iter::once(ptr::null()))
            .collect();
        let mut failure_message = b"Error: Failed executing [ ".to_vec();
        failure_message.extend_from_slice(binary);
        failure_message.extend_from_slice(b" ]!\n");
        Ok(Self {
            argv,
            argv_ptrs,
            failure_message,
            default_action: plain_sigaction(libc::SIG_DFL),
            empty_mask: sigset(false),
        })
    }

    /// Forks and executes the plan; returns the child's pid.
    ///
    /// `stdin`: if given, becomes the child's fd 0; otherwise the child inherits ours.
    /// `output`: if given, becomes the child's fds 1 and 2; otherwise they are inherited.
    /// Both are only borrowed: the caller closes its copies after this returns.
    ///
    /// All signals are blocked in the calling thread from just before the fork until the parent
    /// returns, so no signal handler (signal-hook's) ever runs in the child; the child resets
    /// [`CHANGED_SIGNALS`] to `SIG_DFL` and then its mask to empty, so a signal that arrived in
    /// the window (say a terminal's SIGINT) is delivered with its default action.
    pub(crate) fn fork_exec(
        &self,
        stdin: Option<BorrowedFd<'_>>,
        output: Option<BorrowedFd<'_>>,
    ) -> io::Result<libc::pid_t> {
        // A source fd in 0..=2 could be overwritten by an earlier dup2 of the child setup, and
        // dup2(fd, fd) would leave its close-on-exec flag set; move such fds out of the way.
        let stdin_dup = match stdin {
            Some(fd) if fd.as_raw_fd() < 3 => Some(dup_above_stdio(fd)?),
            _ => None,
        };
        let output_dup = match output {
            Some(fd) if fd.as_raw_fd() < 3 => Some(dup_above_stdio(fd)?),
            _ => None,
        };
        let stdin_raw = stdin_dup
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .or(stdin.map(|fd| fd.as_raw_fd()));
        let output_raw = output_dup
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .or(output.map(|fd| fd.as_raw_fd()));

        let all = sigset(true);
        let mut saved = sigset(false);
        // SAFETY: both sets are valid sigset_t values; `saved` is writable.
        cvt_pthread(unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved) })?;

        // SAFETY: the child runs only `exec_child`, which makes async-signal-safe calls
        // (sigaction, sigprocmask, dup2, execvp, write, _exit) on data prepared before the
        // fork, and never returns; so forking is sound even if the process has other threads.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            self.exec_child(stdin_raw, output_raw);
        }
        let fork_result = cvt(pid);

        // SAFETY: `saved` is the mask pthread_sigmask reported above; restoring it cannot fail.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, ptr::null_mut()) };
        fork_result
    }

    /// The child between fork and exec. Only async-signal-safe calls, no allocation, no locks,
    /// no Rust I/O, never returns (`_exit`, not `exit`: no atexit handlers or stdio flushing of
    /// the parent's state).
    fn exec_child(&self, stdin: Option<RawFd>, output: Option<RawFd>) -> ! {
        // SAFETY: we are in the freshly forked child, which owns copies of all fds; every
        // pointer passed below points into `self`, which was fully built before the fork and
        // stays alive because this function never returns; `argv` is non-empty (checked in
        // `new`), so indexing it cannot panic. Return values of the setup calls are ignored on
        // purpose: nothing useful can be done about a failure except to try the exec anyway
        // (and a dup2 of a valid fd onto 0..=2 cannot fail).
        unsafe {
            for sig in CHANGED_SIGNALS {
                libc::sigaction(sig, &self.default_action, ptr::null_mut());
            }
            libc::sigprocmask(libc::SIG_SETMASK, &self.empty_mask, ptr::null_mut());
            if let Some(fd) = stdin {
                libc::dup2(fd, libc::STDIN_FILENO);
            }
            if let Some(fd) = output {
                libc::dup2(fd, libc::STDOUT_FILENO);
                libc::dup2(fd, libc::STDERR_FILENO);
            }
            libc::execvp(self.argv[0].as_ptr(), self.argv_ptrs.as_ptr());
            libc::write(
                libc::STDERR_FILENO,
                self.failure_message.as_ptr().cast(),
                self.failure_message.len(),
            );
            libc::_exit(EXEC_FAILED_STATUS)
        }
    }
}

/// A fresh Lua state with every standard library, `debug` included (SPEC §0.1: configs use
/// `debug`, `io`, `os`, `package`).
pub(crate) fn new_lua() -> mlua::Lua {
    // SAFETY: `unsafe_new_with` is unsafe only because the `debug` library lets Lua code break
    // mlua's memory-safety assumptions (e.g. by editing upvalues of Rust callbacks). Configs are
    // trusted code run by the administrator, exactly as upstream loads them; nothing untrusted
    // is ever evaluated in this state.
    unsafe { mlua::Lua::unsafe_new_with(mlua::StdLib::ALL, mlua::LuaOptions::default()) }
}

/// The current local time (localtime_r(3), honouring TZ).
pub(crate) fn local_time_now() -> CivilTime {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    local_time(now)
}

/// localtime_r(3) of a Unix time.
pub(crate) fn local_time(t: libc::time_t) -> CivilTime {
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct (integers and a null
    // `tm_zone` pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live, properly aligned locals; localtime_r is thread-safe
    // and writes only into `tm`.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return CivilTime {
            year: 1970,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
        };
    }
    // Fields of a successful localtime_r are in range, the second in 0..=60.
    let field = |v: libc::c_int| u32::try_from(v).unwrap_or(0);
    CivilTime {
        year: tm.tm_year + 1900,
        month: field(tm.tm_mon + 1),
        day: field(tm.tm_mday),
        hour: field(tm.tm_hour),
        minute: field(tm.tm_min),
        second: field(tm.tm_sec.min(60)),
    }
}

/// The ident string handed to openlog(3) must outlive every syslog call: keep it here.
static SYSLOG_IDENT: std::sync::OnceLock<CString> = std::sync::OnceLock::new();

/// openlog(3) with `ident` (an interior NUL cuts it) and a facility code (already shifted).
pub(crate) fn openlog(ident: &[u8], facility: i32) {
    let end = ident.iter().position(|b| *b == 0).unwrap_or(ident.len());
    let ident = SYSLOG_IDENT.get_or_init(|| CString::new(&ident[..end]).unwrap_or_default());
    // SAFETY: `ident` lives in a static for the rest of the process, as openlog requires.
    unsafe { libc::openlog(ident.as_ptr(), 0, facility) };
}

/// syslog(3) of one message with a priority, passed through "%s" (never as a format).
pub(crate) fn syslog(priority: u8, message: &[u8]) {
    let end = message
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(message.len());
    let Ok(msg) = CString::new(&message[..end]) else {
        return;
    };
    // SAFETY: the format is a literal "%s" and `msg` a valid NUL-terminated string, so syslog
    // reads exactly one string argument.
    unsafe { libc::syslog(libc::c_int::from(priority), c"%s".as_ptr(), msg.as_ptr()) };
}

/// The current umask, read without changing it for longer than two calls.
pub(crate) fn current_umask() -> u32 {
    // SAFETY: umask(2) cannot fail; the second call restores the value the first one read.
    let old = unsafe { libc::umask(0o022) };
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    old as u32
}

/// Detaches from the terminal (SPEC §13.2): the parent exits 0 once the child runs; the child
/// is a session leader's child in `/`, std streams on /dev/null, umask unchanged.
pub(crate) fn daemonize() -> Result<(), String> {
    let d = daemonize2::Daemonize::new()
        .working_directory("/")
        .umask(current_umask());
    // SAFETY: `start` forks; the process is single-threaded at this point (the daemon never
    // starts threads), so the child may run arbitrary code after fork. The parent side exits
    // inside `start` without returning.
    unsafe { d.start() }.map_err(|e| format!("cannot daemonize: {e}"))
}

/// lockf(F_TLOCK) on an open file: Err if another process holds the lock.
pub(crate) fn try_lock(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a valid open descriptor borrowed for the call; lockf only reads it.
    cvt(unsafe { libc::lockf(fd.as_raw_fd(), libc::F_TLOCK, 0) }).map(|_| ())
}

/// Which of `fds` (fd, want readable, want writable) are ready now: poll(2) with a zero
/// timeout. Returns (fd, readable, writable) for each ready one; an fd that is not open is
/// reported neither readable nor writable.
pub(crate) fn poll_now(fds: &[(RawFd, bool, bool)]) -> Vec<(RawFd, bool, bool)> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, r, w)| libc::pollfd {
            fd,
            events: (if r { libc::POLLIN } else { 0 }) | (if w { libc::POLLOUT } else { 0 }),
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a live, properly initialised array of `pfds.len()` pollfd structs that
    // poll only reads and writes within; a zero timeout never blocks.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 0) };
    if rc <= 0 {
        return Vec::new();
    }
    pfds.iter()
        .filter(|p| p.revents & libc::POLLNVAL == 0)
        .map(|p| {
            let readable = p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
            (
                p.fd,
                readable && p.events & libc::POLLIN != 0,
                p.revents & libc::POLLOUT != 0,
            )
        })
        .filter(|&(_, r, w)| r || w)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// fanotify (the fanotify monitor, `watch/fanotify.rs`)

/// `MAX_HANDLE_SZ` of `<fcntl.h>`: the largest file handle the kernel hands out.
pub(crate) const MAX_HANDLE_SZ: usize = 128;

/// `fanotify_init(flags, O_RDONLY | O_CLOEXEC | O_LARGEFILE)`. The caller passes
/// `FAN_CLOEXEC | FAN_NONBLOCK` in `flags`.
pub(crate) fn fanotify_init(flags: u32) -> io::Result<OwnedFd> {
    let event_flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as libc::c_uint;
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe { libc::fanotify_init(flags, event_flags) })?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fanotify_mark(group, flags, mask, AT_FDCWD, path)`.
pub(crate) fn fanotify_mark(
    group: BorrowedFd<'_>,
    flags: u32,
    mask: u64,
    path: &[u8],
) -> io::Result<()> {
    let path = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `group` is a live fd, `path` a NUL-terminated string that outlives the call.
    cvt(unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            flags,
            mask,
            libc::AT_FDCWD,
            path.as_ptr(),
        )
    })
    .map(drop)
}

/// A `struct file_handle` buffer: `handle_bytes u32, handle_type i32, f_handle[]`, kept in
/// `u32`s so the struct's 4-byte alignment holds.
fn handle_buf(handle_type: i32, handle: &[u8]) -> Vec<u32> {
    let mut buf = vec![0u32; 2 + MAX_HANDLE_SZ.div_ceil(4)];
    let n = handle.len().min(MAX_HANDLE_SZ);
    buf[0] = n as u32;
    buf[1] = handle_type as u32;
    for (i, chunk) in handle[..n].chunks(4).enumerate() {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        buf[2 + i] = u32::from_ne_bytes(word);
    }
    buf
}

/// `name_to_handle_at(AT_FDCWD, path, ..., 0)`: the handle type and bytes of `path` (not
/// following a final symlink: callers pass directories).
pub(crate) fn name_to_handle(path: &[u8]) -> io::Result<(i32, Vec<u8>)> {
    let cpath = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = handle_buf(0, &[]);
    buf[0] = MAX_HANDLE_SZ as u32;
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `buf` is a 4-byte aligned file_handle with room for MAX_HANDLE_SZ bytes, as
    // `handle_bytes` says; `cpath` and `mount_id` outlive the call.
    cvt(unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            cpath.as_ptr(),
            buf.as_mut_ptr().cast::<libc::file_handle>(),
            &mut mount_id,
            0,
        )
    })?;
    let n = (buf[0] as usize).min(MAX_HANDLE_SZ);
    let bytes: Vec<u8> = buf[2..]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(n)
        .collect();
    Ok((buf[1] as i32, bytes))
}

/// `open_by_handle_at(mount_fd, handle, O_PATH | O_CLOEXEC)`. Needs CAP_DAC_READ_SEARCH;
/// `ESTALE` once the object is gone.
pub(crate) fn open_by_handle(
    mount_fd: BorrowedFd<'_>,
    handle_type: i32,
    handle: &[u8],
) -> io::Result<OwnedFd> {
    let mut buf = handle_buf(handle_type, handle);
    // SAFETY: `buf` is a 4-byte aligned file_handle whose `handle_bytes` matches the bytes that
    // follow it; `mount_fd` is a live fd.
    let fd = cvt(unsafe {
        libc::open_by_handle_at(
            mount_fd.as_raw_fd(),
            buf.as_mut_ptr().cast::<libc::file_handle>(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstatfs(fd)`: the filesystem type (`f_type`) and id (`f_fsid`, as fanotify reports it).
pub(crate) fn fs_type_and_id(fd: BorrowedFd<'_>) -> io::Result<(i64, [i32; 2])> {
    // SAFETY: `statfs` is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is live and `st` is a properly sized, writable statfs.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    // SAFETY: `fsid_t` is `#[repr(C)] struct { __val: [c_int; 2] }`, so it can be read as
    // `[i32; 2]`; `read_unaligned` needs no alignment.
    let fsid: [i32; 2] =
        unsafe { ptr::read_unaligned(ptr::addr_of!(st.f_fsid).cast::<[i32; 2]>()) };
    Ok((st.f_type as i64, fsid))
}

/// A process-wide lock for tests that touch process-wide state: children reaped with
/// `waitpid(-1)` (one test would steal another's), signal dispositions, raised signals.
#[cfg(test)]
pub(crate) fn test_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that panicked while holding the lock leaves no broken state behind.
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Test builds: the global allocator counts, per thread, the heap this thread holds, in the
/// chunk sizes glibc's malloc hands out (request plus an 8-byte header, rounded up to 16, at
/// least 32), so a test can assert what a data structure costs (see `delay`'s memory test).
#[cfg(test)]
pub(crate) mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static HELD: Cell<isize> = const { Cell::new(0) };
    }

    struct Counting;

    fn chunk(size: usize) -> isize {
        ((size + 8 + 15) & !15).max(32) as isize
    }

    fn count(delta: isize) {
        // A const-initialized Cell has no destructor: usable until the thread ends.
        let _ = HELD.try_with(|h| h.set(h.get() + delta));
    }

    // SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
    // `GlobalAlloc` contract; the counting touches only a thread-local integer and never
    // allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(chunk(layout.size()));
            // SAFETY: the caller's contract for `alloc` is passed on unchanged.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            count(-chunk(layout.size()));
            // SAFETY: `ptr` came from `System` with this `layout` (every allocation does).
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count(chunk(layout.size()));
            // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count(chunk(new_size) - chunk(layout.size()));
            // SAFETY: `ptr` came from `System` with `layout`; the caller guarantees
            // `new_size` is valid for it.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// Bytes of heap the calling thread holds now, counted as malloc chunks (allocations of
    /// other threads are not seen; memory freed by another thread than its allocator's
    /// counts there).
    pub(crate) fn held() -> isize {
        HELD.with(Cell::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn exec_plan_rejects_interior_nul_and_empty_argv() {
        for argv in [
            vec![b"echo".to_vec(), b"a\0b".to_vec()],
            vec![b"ec\0ho".to_vec()],
            vec![],
        ] {
            let err = ExecPlan::new(&argv).err().expect("must be rejected");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{argv:?}");
        }
    }

    #[test]
    fn exec_plan_prepares_failure_message_with_raw_bytes() {
        let plan = ExecPlan::new(&[b"/no/such/bin\xe9".to_vec()]).expect("valid argv");
        assert_eq!(
            plan.failure_message,
            b"Error: Failed executing [ /no/such/bin\xe9 ]!\n"
        );
        assert_eq!(plan.argv_ptrs.len(), 2);
        assert!(plan.argv_ptrs[1].is_null());
    }

    #[test]
    fn pipe_is_cloexec_and_carries_bytes() {
        let (rd, wr) = pipe_cloexec().expect("pipe");
        for fd in [rd.as_raw_fd(), wr.as_raw_fd()] {
            // SAFETY: `fd` is open (owned by `rd`/`wr` above); F_GETFD only reads flags.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        }
        let mut w = std::fs::File::from(wr);
        w.write_all(b"a\0\xff").expect("write");
        drop(w);
        let mut got = Vec::new();
        std::fs::File::from(rd).read_to_end(&mut got).expect("read");
        assert_eq!(got, b"a\0\xff");
    }

    #[test]
    fn dup_above_stdio_never_returns_a_stdio_slot() {
        // Fd 0 may be closed under CI, so duplicate a pipe end; F_DUPFD's floor still applies.
        let (rd, _wr) = pipe_cloexec().expect("pipe");
        let dup = dup_above_stdio(rd.as_fd()).expect("dup");
        assert!(dup.as_raw_fd() >= 3);
        assert_ne!(dup.as_raw_fd(), rd.as_raw_fd());
    }

    #[test]
    fn kill_with_signal_zero_probes_existence() {
        assert!(kill(getpid(), 0).is_ok());
        assert_eq!(std::process::id() as libc::pid_t, getpid());
    }

    #[test]
    fn realpath_resolves_symlinks_on_non_utf8_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = realpath(dir.path().as_os_str().as_bytes()).expect("base");
        let mut target = base.clone();
        target.extend_from_slice(b"/caf\xe9");
        std::fs::create_dir(OsStr::from_bytes(&target)).expect("mkdir");
        let mut link = base.clone();
        link.extend_from_slice(b"/l\xff");
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), OsStr::from_bytes(&link))
            .expect("symlink");
        let mut via = link.clone();
        via.extend_from_slice(b"/./");
        assert_eq!(realpath(&via).expect("resolve"), target);
        let mut missing = base;
        missing.extend_from_slice(b"/missing");
        assert_eq!(
            realpath(&missing).expect_err("missing").kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn wait_any_nohang_without_exited_children_is_none() {
        let _guard = test_lock();
        // Other tests reap under the same lock, so nothing of ours is left to reap here.
        assert!(wait_any_nohang().expect("waitpid").is_none());
    }
}
