//! The spawn recorder: a `/bin/sh` script used in place of rsync (`rsync{ binary = ... }`, or
//! first in `PATH`) that records when each call started, its arguments, its stdin and when its
//! stdin ended, then exits with a given code or execs the real rsync. The integration tests
//! check argv and include lists with it; the benchmark measures spawn times with it.
//! Owns: `Recorder`, `Then`, `Call`, `Stamp`, `Waiter`. Must not touch: anything outside the
//! script and its `SCRIPT.calls/` directory.
//!
//! Layout: call `ID` (= start time `%s.%N` and the shell's pid) leaves `SCRIPT.calls/ID.args`
//! (each argument followed by a NUL) and `ID.stdin`; then a line `START EOF ID` is appended to
//! `SCRIPT.calls/index`, so a call listed there is complete. Calls are ordered by start time.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What the recorder does after recording a call.
#[derive(Clone, Copy, Debug)]
pub enum Then {
    /// Exit with this code (rsync 0 = success).
    Exit(i32),
    /// exec the real rsync (from `PATH`) with the same arguments and stdin, so the sync happens.
    ExecRsync,
}

/// Start and end-of-stdin times of one completed call (epoch seconds) and its id.
#[derive(Clone, Debug)]
pub struct Stamp {
    pub t: f64,
    pub eof: f64,
    key: (u64, u64),
    id: String,
}

/// One recorded call.
#[derive(Clone, Debug, PartialEq)]
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

/// Something that can wait for a condition while watching a daemon (the tests' `Daemon`).
pub trait Waiter {
    /// Polls `pred` until it holds; fails with `what` otherwise.
    fn wait_until_true(&mut self, what: &str, pred: &mut dyn FnMut() -> bool);
}

pub struct Recorder {
    script: PathBuf,
    calls_dir: PathBuf,
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

/// `SECONDS.NANOS` as a sort key and as seconds.
fn parse_time(s: &str) -> Option<((u64, u64), f64)> {
    let (a, b) = s.split_once('.')?;
    Some(((a.parse().ok()?, b.parse().ok()?), s.parse().ok()?))
}

impl Recorder {
    /// Writes the script at `script` (its calls go to `SCRIPT.calls/`).
    pub fn install(script: &Path, then: Then) -> io::Result<Recorder> {
        let mut calls_dir = script.as_os_str().to_owned();
        calls_dir.push(".calls");
        let calls_dir = PathBuf::from(calls_dir);
        fs::create_dir_all(&calls_dir)?;
        let mut text = b"#!/bin/sh\n# Records one call: start time, arguments, stdin.\n\
                         t=$(date +%s.%N)\nd="
            .to_vec();
        text.extend_from_slice(&sh_quote(calls_dir.as_os_str().as_bytes()));
        text.extend_from_slice(
            b"\nc=\"$d/$t.$$\"\nprintf '%s\\0' \"$@\" > \"$c.args\"\ncat > \"$c.stdin\"\n\
              e=$(date +%s.%N)\nprintf '%s %s %s\\n' \"$t\" \"$e\" \"$t.$$\" >> \"$d/index\"\n",
        );
        match then {
            Then::Exit(code) => text.extend_from_slice(format!("exit {code}\n").as_bytes()),
            Then::ExecRsync => {
                let rsync = super::which("rsync").ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "rsync not found in PATH")
                })?;
                text.extend_from_slice(b"exec ");
                text.extend_from_slice(&sh_quote(rsync.as_os_str().as_bytes()));
                text.extend_from_slice(b" \"$@\" < \"$c.stdin\"\n");
            }
        }
        fs::write(script, text)?;
        fs::set_permissions(script, fs::Permissions::from_mode(0o755))?;
        Ok(Recorder {
            script: script.to_owned(),
            calls_dir,
        })
    }

    /// Absolute path of the script.
    pub fn path(&self) -> &Path {
        &self.script
    }

    /// The script's path as a Lua string literal.
    pub fn lua(&self) -> String {
        super::lua_path(&self.script)
    }

    /// Size of the call index: grows with every completed call (cheap to poll).
    pub fn index_len(&self) -> u64 {
        fs::metadata(self.calls_dir.join("index"))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Times of all completed calls, in start order.
    pub fn stamps(&self) -> Vec<Stamp> {
        let text = fs::read_to_string(self.calls_dir.join("index")).unwrap_or_default();
        let mut v: Vec<Stamp> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split(' ');
                let (key, t) = parse_time(it.next()?)?;
                let (_, eof) = parse_time(it.next()?)?;
                let id = it.next()?.to_string();
                Some(Stamp { t, eof, key, id })
            })
            .collect();
        v.sort_by_key(|s| s.key);
        v
    }

    /// The file holding the stdin of the call `s`.
    pub fn stdin_path(&self, s: &Stamp) -> PathBuf {
        self.calls_dir.join(format!("{}.stdin", s.id))
    }

    /// All completed calls, in start order.
    pub fn calls(&self) -> Vec<Call> {
        self.stamps()
            .iter()
            .map(|s| {
                let raw = fs::read(self.calls_dir.join(format!("{}.args", s.id)));
                let mut args: Vec<Vec<u8>> = raw
                    .unwrap_or_default()
                    .split(|&b| b == 0)
                    .map(|s| s.to_vec())
                    .collect();
                args.pop(); // after the last NUL
                let stdin = fs::read(self.stdin_path(s)).unwrap_or_default();
                Call { args, stdin }
            })
            .collect()
    }

    /// Waits until at least `n` calls are recorded; fails through `w` otherwise.
    pub fn wait_calls(&self, w: &mut impl Waiter, n: usize) -> Vec<Call> {
        w.wait_until_true(&format!("{n} recorded rsync call(s)"), &mut || {
            self.stamps().len() >= n
        });
        self.calls()
    }
}
