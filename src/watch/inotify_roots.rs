//! The source roots of the inotify monitor: which node of the watch tree each root is, noticing
//! a root deleted or moved away, and looking for its return (polling with backoff) until it is
//! watched again. Each change is handed out once as a [`RootEvent`].
//!
//! Owns: the root list, the retry schedule of absent roots, the pending root events. Must not
//! touch: event decoding, syncs, delays, Lua; the tree only through the watcher's own methods.
//!
//! A root is gone when its node left the registry (`IN_IGNORED` or `IN_MOVE_SELF` of a
//! top-level root, or the delete or move of an enclosing watched directory for a nested one),
//! or when a directory rename gave its node another path. Its return is noticed by trying
//! `inotify_add_watch` on its path again, first after [`FIRST_RETRY`], the wait doubling up to
//! [`MAX_RETRY`]: a stat-sized cost, whatever the parent directory is.

use std::io;
use std::time::{Duration, Instant};

use super::Watcher;
use crate::watch::{Monitor, RootChange, RootEvent, WatchError};

/// The first look for an absent root.
pub(super) const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest wait between two looks.
pub(super) const MAX_RETRY: Duration = Duration::from_secs(8);

/// One source root.
#[derive(Debug)]
struct Root {
    /// Absolute, ending in `/`.
    path: Vec<u8>,
    /// Its node and wd while watched.
    node: Option<(u32, i32)>,
    /// Its node was dropped: how.
    lost: Option<RootChange>,
    /// While absent: the next look and the wait after it.
    retry: Option<(Instant, Duration)>,
    /// The errno of the last failed look, so a new reason is logged once.
    last_errno: Option<i32>,
}

/// The roots of one watcher and the events not handed out yet.
#[derive(Debug, Default)]
pub(super) struct Roots {
    list: Vec<Root>,
    events: Vec<RootEvent>,
    /// A directory was renamed since the last check: nested roots may have another path.
    renamed: bool,
}

impl Roots {
    /// `path` is watched as node `idx` holding `wd` (startup, or back).
    pub(super) fn watched(&mut self, path: &[u8], idx: u32, wd: i32) {
        let node = Some((idx, wd));
        match self.list.iter_mut().find(|r| r.path == path) {
            Some(r) => {
                r.node = node;
                r.lost = None;
                r.retry = None;
                r.last_errno = None;
            }
            None => self.list.push(Root {
                path: path.to_vec(),
                node,
                lost: None,
                retry: None,
                last_errno: None,
            }),
        }
    }

    /// `path` is a root that is not there (away since before a restart): looked for as one
    /// that went away.
    pub(super) fn absent(&mut self, path: &[u8], now: Instant) {
        if self.list.iter().any(|r| r.path == path) {
            return;
        }
        self.list.push(Root {
            path: path.to_vec(),
            node: None,
            lost: None,
            retry: Some((now + FIRST_RETRY, FIRST_RETRY)),
            last_errno: None,
        });
    }

    /// The watch `wd` left the registry.
    pub(super) fn dropped(&mut self, wd: i32, why: RootChange) {
        for r in &mut self.list {
            if r.node.is_some_and(|(_, w)| w == wd) {
                r.lost.get_or_insert(why);
            }
        }
    }

    /// A watched directory was renamed.
    pub(super) fn renamed(&mut self) {
        self.renamed = true;
    }

    fn gone(&mut self, i: usize, change: RootChange, now: Instant) {
        let r = &mut self.list[i];
        r.node = None;
        r.lost = None;
        r.retry = Some((now + FIRST_RETRY, FIRST_RETRY));
        self.events.push(RootEvent {
            root: r.path.clone(),
            change,
            monitor: Monitor::Inotify,
        });
    }
}

impl Watcher {
    /// After a read: reports the roots that are no longer where their path says.
    pub(super) fn verify_roots(&mut self, now: Instant) {
        let renamed = std::mem::take(&mut self.roots.renamed);
        for i in 0..self.roots.list.len() {
            let r = &self.roots.list[i];
            let Some((idx, wd)) = r.node else { continue };
            let change = match r.lost {
                Some(why) => why,
                None if !self.reg.holds(idx, wd) => RootChange::Deleted,
                None if renamed && self.reg.path(idx) != r.path => RootChange::MovedAway,
                None => continue,
            };
            crate::log::with(b"Inotify", || {
                let mut m = b"source root ".to_vec();
                m.extend_from_slice(&self.roots.list[i].path);
                m.extend_from_slice(format!(" {}", change.describe()).as_bytes());
                m
            });
            self.roots.gone(i, change, now);
        }
    }

    /// Adds a source root that is away (since before a restart): it is looked for, and
    /// watched and reported `Back` once it is there.
    pub(crate) fn add_absent_root(&mut self, dir: &[u8], now: Instant) {
        self.roots.absent(dir, now);
    }

    /// When a root that is away is to be looked for next.
    pub(crate) fn next_root_check(&self) -> Option<Instant> {
        self.roots
            .list
            .iter()
            .filter_map(|r| r.retry)
            .map(|(at, _)| at)
            .min()
    }

    /// Looks for the absent roots that are due; one found is watched again (with what it
    /// holds) and reported `Back`. Only `ENOSPC` is an error.
    pub(crate) fn check_roots(
        &mut self,
        now: Instant,
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), WatchError> {
        for i in 0..self.roots.list.len() {
            let Some((at, wait)) = self.roots.list[i].retry else {
                continue;
            };
            if at > now {
                continue;
            }
            let path = self.roots.list[i].path.clone();
            let mut count = 0;
            let err = match self.add_root(&path, concerns, &mut count) {
                Ok(Some(idx)) => {
                    let wd = self.reg.wd(idx);
                    self.roots.watched(&path, idx, wd);
                    self.roots.events.push(RootEvent {
                        root: path,
                        change: RootChange::Back,
                        monitor: Monitor::Inotify,
                    });
                    continue;
                }
                Ok(None) => io::Error::from_raw_os_error(libc::ENOENT),
                Err(WatchError::Root { err, .. }) => err,
                Err(e) => return Err(e),
            };
            let r = &mut self.roots.list[i];
            let errno = err.raw_os_error();
            // Absent is what is expected; another reason (EACCES, ENOTDIR) is said once.
            if errno != Some(libc::ENOENT) && errno != r.last_errno {
                crate::log::log(
                    b"Warn",
                    &[
                        b"Source ".as_slice(),
                        &r.path,
                        b" is still not watchable: ",
                        err.to_string().as_bytes(),
                    ]
                    .concat(),
                );
            }
            r.last_errno = errno;
            let wait = (wait * 2).min(MAX_RETRY);
            r.retry = Some((now + wait, wait));
        }
        Ok(())
    }

    /// The root events since the last call, in the order they happened.
    pub(crate) fn take_root_events(&mut self) -> Vec<RootEvent> {
        std::mem::take(&mut self.roots.events)
    }
}
