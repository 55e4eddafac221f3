//! The monitors (SPEC §3): the kernel interfaces that tell the daemon what changed, and the
//! events they hand to the syncs. Every monitor turns kernel records into the same [`FsEvent`]s
//! (kind, absolute path, directory or not), so syncs, delays and the event loop do not care
//! which one produced them.
//!
//! Owns: the event types ([`FsKind`], [`FsEvent`], [`ReadOutcome`], [`WatchError`]) and
//! `inotifyMode` parsing. The inotify monitor is [`inotify`] (its directory tree in `tree`).
//! Must not touch: syncs, delays, excludes, Lua, logging.

use std::fmt;
use std::io;

mod inotify;
mod tree;

pub(crate) use inotify::Watcher;

/// `inotifyMode` of `settings{}` (SPEC §3.1): which kernel event counts as a modification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum InotifyMode {
    /// `IN_CLOSE_WRITE` only (upstream default).
    #[default]
    CloseWrite,
    /// `IN_MODIFY` instead of `IN_CLOSE_WRITE`.
    Modify,
    /// Both.
    CloseWriteOrModify,
}

impl InotifyMode {
    /// Parses the settings string; the error is the message after upstream's `Error: `.
    pub(crate) fn parse(s: &[u8]) -> Result<Self, String> {
        match s {
            b"CloseWrite" => Ok(Self::CloseWrite),
            b"Modify" => Ok(Self::Modify),
            b"CloseWrite or Modify" => Ok(Self::CloseWriteOrModify),
            b"CloseWrite after Modify" => Err("'CloseWrite after Modify' not implemented.".into()),
            other => Err(format!(
                "'{}' not a valid inotfiyMode.",
                String::from_utf8_lossy(other)
            )),
        }
    }
}

/// The event types a monitor produces (upstream `etype`s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FsKind {
    Attrib,
    Modify,
    Create,
    Delete,
    Move,
}

/// One translated event. Paths are absolute bytes; a directory's path ends with `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FsEvent {
    pub(crate) kind: FsKind,
    pub(crate) path: Vec<u8>,
    /// The destination, only for [`FsKind::Move`].
    pub(crate) path2: Option<Vec<u8>>,
}

/// The most events one `read` call hands back.
pub(crate) const READ_BATCH: usize = 65536;

/// What `read` saw besides events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    Ok,
    /// `out` reached [`READ_BATCH`] events before the queue was empty: call `read` again
    /// (without waiting for readiness) once they are handled. Bounds memory when a stopped or
    /// slow daemon finds a very long kernel queue.
    More,
    /// `IN_Q_OVERFLOW`: events were lost; the caller restarts fully (SPEC §3.3, §13.5).
    Overflow,
}

/// Failures the caller must act on; everything else is skipped silently (SPEC §3.2 step 2).
#[derive(Debug)]
pub(crate) enum WatchError {
    /// `ENOSPC` from `inotify_add_watch`: out of watches (fatal upstream).
    Limit { dir: Vec<u8> },
    /// Reading the inotify fd failed with something other than `EAGAIN`/`EINTR`/`EINVAL`.
    Io(io::Error),
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Limit { dir } => write!(
                f,
                "Terminating since out of inotify watches.\nConsider increasing \
                 /proc/sys/fs/inotify/max_user_watches (fs.inotify.max_user_watches); \
                 failed at {}",
                String::from_utf8_lossy(dir)
            ),
            Self::Io(_) => f.write_str("Read fail on inotify"),
        }
    }
}

impl std::error::Error for WatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Limit { .. } => None,
            Self::Io(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inotify_mode_parses_upstream_strings() {
        let cases: &[(&[u8], Result<InotifyMode, &str>)] = &[
            (b"CloseWrite", Ok(InotifyMode::CloseWrite)),
            (b"Modify", Ok(InotifyMode::Modify)),
            (b"CloseWrite or Modify", Ok(InotifyMode::CloseWriteOrModify)),
            (
                b"CloseWrite after Modify",
                Err("'CloseWrite after Modify' not implemented."),
            ),
            (b"closewrite", Err("'closewrite' not a valid inotfiyMode.")),
            (b"", Err("'' not a valid inotfiyMode.")),
        ];
        for (input, want) in cases {
            let got = InotifyMode::parse(input);
            assert_eq!(got, want.map_err(str::to_owned), "{input:?}");
        }
    }
    #[test]
    fn limit_error_names_the_directory() {
        let e = WatchError::Limit {
            dir: b"/src/a/".to_vec(),
        };
        assert_eq!(
            e.to_string(),
            "Terminating since out of inotify watches.\nConsider increasing \
             /proc/sys/fs/inotify/max_user_watches (fs.inotify.max_user_watches); \
             failed at /src/a/"
        );
    }
}
