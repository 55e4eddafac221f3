//! Daemon mode and the pidfile (SPEC §13.2, §13.3, with the fixes of SPEC §15 item 10).
//!
//! Owns: detaching (through `sys::daemonize`), the pidfile's path (made absolute before the
//! working directory becomes `/`), its lock, content and removal.
//! Must not touch: the poll loop, Lua, syncs.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::sys;

/// A written, locked pidfile; the lock is held for as long as this lives.
#[derive(Debug)]
pub(crate) struct Pidfile {
    path: PathBuf,
    _file: File,
}

fn absolute(path: &OsStr) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(p),
        Err(_) => p.to_path_buf(),
    }
}

impl Pidfile {
    /// Creates (mode 0644, close-on-exec), locks and writes `PID\n`, truncating what was there.
    pub(crate) fn write(path: &OsStr) -> Result<Pidfile, String> {
        let abs = absolute(path);
        let shown = path.to_string_lossy();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&abs)
            .map_err(|_| format!("Cannot create pidfile; '{shown}'"))?;
        sys::try_lock(file.as_fd()).map_err(|_| format!("Cannot lock pidfile; '{shown}'"))?;
        file.set_len(0)
            .and_then(|_| file.write_all(format!("{}\n", sys::getpid()).as_bytes()))
            .map_err(|_| format!("Cannot write pidfile; '{shown}'"))?;
        Ok(Pidfile {
            path: abs,
            _file: file,
        })
    }

    /// Removes the file we wrote (after TERM/INT).
    pub(crate) fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Detaches, then writes the pidfile in the child. Returns the pidfile to keep.
pub(crate) fn daemonize(pidfile: Option<&OsStr>) -> Result<Option<Pidfile>, String> {
    let abs: Option<OsString> = pidfile.map(|p| absolute(p).into_os_string());
    sys::daemonize()?;
    abs.map(|p| Pidfile::write(&p)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfile_is_truncated_and_holds_our_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.pid");
        std::fs::write(&path, "999999999999\n").expect("prefill");
        let pf = Pidfile::write(path.as_os_str()).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, format!("{}\n", sys::getpid()));
        pf.remove();
        assert!(!path.exists());
    }
}
