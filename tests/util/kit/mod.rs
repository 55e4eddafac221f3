//! The test kit shared by the integration tests (`tests/util/`) and the benchmark
//! (`benches/compare/`): temp dirs, running a daemon with its log, the spawn recorder, the
//! seeded generator and tree comparison. Both include this directory as a module (the bench
//! through `#[path]`), so there is one copy of each helper.
//!
//! Owns: `temp_dir`, `lua_str`, `os`, `which`, polling (`poll_until`), and the submodules
//! `proc` (a child process with its log), `recorder` (the rsync stand-in that records calls),
//! `rng` (xorshift64*) and `tree` (snapshots and differences of two trees).
//! Must not touch: anything outside the temp dirs and processes it creates; the crate's `src/`.
//! Helpers here return `io::Result` or plain values and never panic on a failed operation, so
//! the bench can report errors; the tests' wrappers in `tests/util/mod.rs` turn them into
//! failures with a clear message.
#![allow(dead_code)] // the tests and the bench each use a different part of the kit

pub mod proc;
pub mod recorder;
pub mod rng;
pub mod tree;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A fresh temporary directory named `PREFIX…` under `parent` (the system temp dir when
/// `None`); removed when dropped.
pub fn temp_dir(prefix: &str, parent: Option<&Path>) -> io::Result<tempfile::TempDir> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    match parent {
        Some(p) => b.tempdir_in(p),
        None => b.tempdir(),
    }
}

/// Bytes as an `OsStr` (file names are bytes, never lossy strings).
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

/// A path as a Lua string literal.
pub fn lua_path(p: &Path) -> String {
    lua_str(p.as_os_str().as_bytes())
}

/// The first executable file `name` in `$PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Polls `pred` every `every` until it holds (true) or `timeout` passes (false).
pub fn poll_until(timeout: Duration, every: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(every);
    }
}
