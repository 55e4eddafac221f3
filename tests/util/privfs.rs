//! A private tmpfs in a private mount namespace, for fanotify tests: a filesystem-wide mark on
//! it sees the test's own events only, and nothing is mounted where anyone else looks.
//!
//! A holder process (`unshare -m` → `mount -t tmpfs` over the test dir → `sleep`) keeps the
//! namespace alive. The test reaches the tmpfs through `/proc/HOLDER/root/<dir>`; the daemon is
//! started inside the namespace with `nsenter`, and sees the same paths (in its own namespace
//! `/proc/HOLDER/root` is `/`).
//! Owns: the holder process. Must not touch: any mount outside the namespace it creates.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The monitor a test's daemon uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mon {
    Inotify,
    /// `-monitor fanotify`, on a private tmpfs.
    Fanotify,
}

/// Runs one test body once per monitor, as two tests named `NAME::inotify` and
/// `NAME::fanotify` (the body is written once and gets the monitor as `$mon`).
macro_rules! both_monitors {
    ($(#[$meta:meta])* fn $name:ident($mon:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use $crate::util::Mon;

            $(#[$meta])*
            fn body($mon: Mon) $body

            #[test]
            fn inotify() {
                body(Mon::Inotify)
            }

            #[test]
            fn fanotify() {
                body(Mon::Fanotify)
            }
        }
    };
}

/// The namespace of one test dir.
pub struct PrivateFs {
    holder: Child,
    /// The test dir's path as seen inside the namespace (and on the host, where it is empty).
    inner: PathBuf,
}

impl PrivateFs {
    /// Mounts a tmpfs over `dir` inside a new mount namespace.
    pub fn mount(dir: &Path) -> PrivateFs {
        let mut holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs -o mode=0755,size=2g lsyncd-test \"$0\" && echo ready && exec sleep 100000")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run unshare (util-linux) for a private tmpfs: {e}"));
        let mut line = String::new();
        let out = holder.stdout.take().expect("holder stdout");
        let _ = BufReader::new(out).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            panic!(
                "could not mount a private tmpfs with unshare -m (fanotify tests run as root): \
                 {line:?}"
            );
        }
        PrivateFs {
            holder,
            inner: dir.to_owned(),
        }
    }

    /// Where the test itself reaches the tmpfs.
    pub fn outer(&self) -> PathBuf {
        let rel = self.inner.strip_prefix("/").unwrap_or(&self.inner);
        PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(rel)
    }

    /// The namespace, for `nsenter --mount=`.
    pub fn mount_ns(&self) -> String {
        format!("/proc/{}/ns/mnt", self.holder.id())
    }

    /// A command that runs `program` inside the namespace, in the test dir (entered after
    /// `setns`: nsenter's `--wd` opens the directory before, which would be the host's empty
    /// one under the mount). Every step `exec`s, so the command's pid is the program's.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount={}", self.mount_ns()))
            .args(["--", "sh", "-c", "cd \"$0\" && exec \"$@\""])
            .arg(&self.inner)
            .arg(program);
        cmd
    }
}

impl Drop for PrivateFs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
