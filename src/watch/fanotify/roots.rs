//! The source roots of the fanotify monitor: their inode marks, noticing a root deleted or
//! moved away, and looking for its return until it is watched again. Each change is handed out
//! once as a [`RootEvent`], as the inotify monitor does.
//!
//! Owns: the root list's away/back state and the pending root events. Must not touch: record
//! parsing, the handle cache (only cleared), syncs, delays, Lua, logging.
//!
//! A root is gone when its inode mark reports `FAN_DELETE_SELF` or `FAN_MOVE_SELF`, or when a
//! directory rename inside another source moved the directory it lies in (nested sources).
//! While it is away, records below its path are dropped (a directory created there meanwhile is
//! not the one the syncs mirrored); its return is noticed by marking its path again, first
//! after [`FIRST_RETRY`], the wait doubling up to [`MAX_RETRY`].

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use super::{errno_name, lossy, mounts_below, Fanotify, RawEvent, Refusal};
use crate::sys;
use crate::watch::{Monitor, RootChange, RootEvent};

/// The first look for an absent root.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest wait between two looks.
const MAX_RETRY: Duration = Duration::from_secs(8);

/// A source root: its path (ending in `/`), its own handle (for DELETE_SELF/MOVE_SELF), and
/// while it is away the next look and the wait after it.
#[derive(Debug)]
pub(super) struct Root {
    pub(super) path: Vec<u8>,
    handle: Vec<u8>,
    pub(super) away: Option<(Instant, Duration)>,
}

impl Fanotify {
    /// Marks `dir` (absolute, ending in `/`) as a source root: the filesystems at and below it
    /// and an inode mark on the root itself. Returns the root's handle.
    fn attach(&mut self, dir: &[u8]) -> Result<Vec<u8>, Refusal> {
        let mut points = vec![dir.to_vec()];
        points.extend(mounts_below(dir));
        for p in &points {
            self.mark_filesystem(p)?;
        }
        let bare = &dir[..dir.len().saturating_sub(1).max(1)];
        let (_, handle) = sys::name_to_handle(bare).map_err(|e| {
            Refusal(format!(
                "no file handle for {} (name_to_handle_at: {})",
                lossy(dir),
                errno_name(&e)
            ))
        })?;
        sys::fanotify_mark(
            self.queue.fd.as_fd(),
            libc::FAN_MARK_ADD,
            libc::FAN_DELETE_SELF | libc::FAN_MOVE_SELF | libc::FAN_ONDIR,
            bare,
        )
        .map_err(|e| {
            Refusal(format!(
                "cannot mark the source root {} (fanotify_mark: {})",
                lossy(dir),
                errno_name(&e)
            ))
        })?;
        self.cache.clear();
        Ok(handle)
    }

    /// Watches the source `dir` (absolute, ending in `/`): marks its filesystem and those of
    /// the mounts below it, after checking each can be watched, and puts an inode mark on the
    /// root. Nothing is walked. A root already watched (another sync on it) is not marked again.
    pub(crate) fn add_root(&mut self, dir: &[u8]) -> Result<(), Refusal> {
        if self.roots.iter().any(|r| r.path == dir) {
            return Ok(());
        }
        let handle = self.attach(dir)?;
        self.roots.push(Root {
            path: dir.to_vec(),
            handle,
            away: None,
        });
        Ok(())
    }

    /// Adds the source `dir` (absolute, ending in `/`) that is away (since before a restart):
    /// nothing is marked until it is there; then it is reported `Back`.
    pub(crate) fn add_absent_root(&mut self, dir: &[u8], now: Instant) {
        if self.roots.iter().any(|r| r.path == dir) {
            return;
        }
        self.roots.push(Root {
            path: dir.to_vec(),
            handle: Vec::new(),
            away: Some((now + FIRST_RETRY, FIRST_RETRY)),
        });
    }

    fn gone(&mut self, i: usize, change: RootChange, now: Instant) {
        let r = &mut self.roots[i];
        if r.away.is_some() {
            return;
        }
        r.away = Some((now + FIRST_RETRY, FIRST_RETRY));
        self.root_events.push(RootEvent {
            root: r.path.clone(),
            change,
            monitor: Monitor::Fanotify,
        });
        self.cache.clear();
    }

    /// `FAN_DELETE_SELF` or `FAN_MOVE_SELF` of a directory with an inode mark: a source root
    /// (unless it is one that was away already, whose old directory may still carry a mark).
    pub(super) fn root_self_event(&mut self, ev: RawEvent<'_>) {
        let Some(d) = ev.dirs[0] else { return };
        let change = if ev.mask & libc::FAN_DELETE_SELF != 0 {
            RootChange::Deleted
        } else {
            RootChange::MovedAway
        };
        let now = Instant::now();
        for i in 0..self.roots.len() {
            if self.roots[i].handle == d.handle {
                self.gone(i, change, now);
            }
        }
        self.cache.clear();
    }

    /// A directory inside a source, at `from` (ending in `/`), was renamed: the roots at or
    /// below it (nested sources) moved away.
    pub(super) fn dir_renamed(&mut self, from: &[u8]) {
        let now = Instant::now();
        for i in 0..self.roots.len() {
            if self.roots[i].path.starts_with(from) {
                self.gone(i, RootChange::MovedAway, now);
            }
        }
    }

    /// The source roots that went away or came back since the last call.
    pub(crate) fn take_root_events(&mut self) -> Vec<RootEvent> {
        std::mem::take(&mut self.root_events)
    }

    /// When a root that is away is to be looked for next.
    pub(crate) fn next_root_check(&self) -> Option<Instant> {
        self.roots
            .iter()
            .filter_map(|r| r.away)
            .map(|(at, _)| at)
            .min()
    }

    /// Looks for the absent roots that are due; one that is a directory again is marked anew
    /// and reported `Back`. One that cannot be marked (not there, not a directory, or on a
    /// filesystem fanotify refuses) is looked for again later.
    pub(crate) fn check_roots(&mut self, now: Instant) {
        for i in 0..self.roots.len() {
            let Some((at, wait)) = self.roots[i].away else {
                continue;
            };
            if at > now {
                continue;
            }
            let path = self.roots[i].path.clone();
            let bare = &path[..path.len().saturating_sub(1).max(1)];
            let is_dir = std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(bare))
                .is_ok_and(|m| m.is_dir());
            match is_dir.then(|| self.attach(&path)) {
                Some(Ok(handle)) => {
                    let r = &mut self.roots[i];
                    r.handle = handle;
                    r.away = None;
                    self.root_events.push(RootEvent {
                        root: path,
                        change: RootChange::Back,
                        monitor: Monitor::Fanotify,
                    });
                }
                _ => {
                    let wait = (wait * 2).min(MAX_RETRY);
                    self.roots[i].away = Some((now + wait, wait));
                }
            }
        }
    }
}
