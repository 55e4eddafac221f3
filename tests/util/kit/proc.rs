//! One child process with its output appended to a log file: how the tests and the benchmark
//! run a daemon. Signals go through kill(1), keeping the kit free of `unsafe`.
//! Owns: `Proc`, `exit_code`, `send_signal`. Must not touch: processes it did not start.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// Exit code as a shell reports it: the code, or 128 + signal for a killed process.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Sends `signal` (a name such as `TERM`) to `pid` (`-PGID` for a process group) with kill(1).
/// A process that is already gone is not an error here: callers check exit statuses.
pub fn send_signal(pid: impl std::fmt::Display, signal: &str) {
    let _ = Command::new("kill")
        .arg("-s")
        .arg(signal)
        .arg("--")
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// A started process, stdin from /dev/null, stdout and stderr both appended to `log`.
pub struct Proc {
    child: Child,
    pub log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with its output going to `log` (created or appended to).
    pub fn spawn(mut cmd: Command, log: &Path) -> std::io::Result<Proc> {
        let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        Ok(Proc {
            child,
            log: log.to_owned(),
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far (stdout and stderr interleaved).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
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
        super::poll_until(timeout, Duration::from_millis(20), || {
            self.try_exit().is_some()
        });
        self.status.map(exit_code)
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`) unless the process has ended.
    pub fn signal(&self, name: &str) {
        if self.status.is_none() {
            send_signal(self.child.id(), name);
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; reaps the process.
    pub fn stop(&mut self, grace: Duration) {
        if self.try_exit().is_none() {
            self.signal("TERM");
            if self.wait_exit(grace).is_none() {
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
            }
        }
    }
}
