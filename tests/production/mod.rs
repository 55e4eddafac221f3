//! Running it in production (SPEC §12, §13), one module per area: daemon mode and the pidfile,
//! the status file and logfile, restarts (HUP, `-insist`, `-onepass`), config test mode, the man
//! page, and the files a distribution ships (`make install`, `make deb`, the init script, the
//! systemd units). This file holds the helpers the areas share; it must not hold tests.
//!
//! Daemon-mode tests start the binary without `-nodaemon`; the detached process is not our
//! child, so it is watched through its pidfile and `/proc`, and a guard TERMs (then KILLs) it
//! when a test fails. Everything else runs through the harness's `Daemon` (`-nodaemon`).
//!
//! Against upstream 2.2.3 (`LSYNCD_BIN=/usr/bin/lsyncd`) the tests pass, except those checking
//! our compatible fixes (SPEC §15) or additions: the three `-nodaemon` pidfile tests (the HUP
//! test uses one), `onepass_*` (2.2.3 has no `-onepass`), `configtest_*` (no `-t`) and
//! `status_file_is_never_seen_half_written_*` (upstream truncates and rewrites the file in place;
//! this test catches it half-written).

mod configtest;
mod init_script;
mod install;
mod man_page;
mod pidfile;
mod restart;
mod service;
mod status_file;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{lua_str, send_signal, wait_until, TestDir};

/// `'...'` for /bin/sh.
pub(super) fn sh_word(p: &Path) -> String {
    format!(
        "'{}'",
        p.to_str().expect("UTF-8 temp path").replace('\'', "'\\''")
    )
}

/// Writes an executable `/bin/sh` script at `root/rel`.
pub(super) fn script(dir: &TestDir, rel: &str, body: &str) -> PathBuf {
    let p = dir.write(rel, format!("#!/bin/sh\n{body}"));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod script");
    p
}

/// A path as a Lua string literal.
pub(super) fn lua_path(p: &Path) -> String {
    lua_str(p.to_str().expect("UTF-8 temp path"))
}

/// The pid in a pidfile (`PID\n`), if the file exists and holds exactly that.
pub(super) fn read_pidfile(path: &Path) -> Option<u32> {
    let text = fs::read_to_string(path).ok()?;
    text.strip_suffix('\n')?.parse().ok()
}

/// True while `pid` is a live process (a zombie counts as gone).
pub(super) fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // `pid (comm) S ...`: the state follows the last ')'.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`.
pub(super) fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    // Fields after the comm start at 3 (state).
    rest.split_whitespace().nth(n - 3).map(str::to_owned)
}

/// Pids of live processes whose command line contains `needle` (a unique temp path).
pub(super) fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(needle) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// A detached daemon we did not fork ourselves: TERM on drop, KILL if it lingers.
pub(super) struct Detached {
    pub(super) pid: u32,
}

impl Drop for Detached {
    fn drop(&mut self) {
        if alive(self.pid) {
            send_signal(self.pid, "TERM");
            if !wait_until(Duration::from_secs(5), || !alive(self.pid)) {
                send_signal(self.pid, "KILL");
            }
        }
    }
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// True if `s` is exactly a ctime-style time, `Wed Nov 25 19:52:57 2026` (day of month padded
/// with a space: `Wed Nov  5 ...`).
pub(super) fn is_ctime(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 24 || !s.is_ascii() {
        return false;
    }
    let digit = |i: usize| b[i].is_ascii_digit();
    let day_ok = (b[8] == b' ' || (b'1'..=b'3').contains(&b[8])) && digit(9);
    DAYS.contains(&&s[0..3])
        && b[3] == b' '
        && MONTHS.contains(&&s[4..7])
        && b[7] == b' '
        && day_ok
        && b[10] == b' '
        && digit(11)
        && digit(12)
        && b[13] == b':'
        && digit(14)
        && digit(15)
        && b[16] == b':'
        && digit(17)
        && digit(18)
        && b[19] == b' '
        && (20..24).all(digit)
}

/// Splits a logfile line into (ctime, category, message) if it has upstream's logfile format
/// `<ctime> Category: message`.
pub(super) fn logfile_line(line: &str) -> Option<(&str, &str, &str)> {
    let time = line.get(..24)?;
    if !is_ctime(time) || line.as_bytes().get(24) != Some(&b' ') {
        return None;
    }
    let (cat, msg) = line[25..].split_once(": ")?;
    if cat.is_empty() || !cat.bytes().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    Some((time, cat, msg))
}

/// The source tree (for the man page, `src/cli.rs`, the Makefile and `init/`).
pub(super) fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// True if `tool` is on `PATH`.
pub(super) fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}
