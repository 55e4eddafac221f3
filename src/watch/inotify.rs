//! The inotify monitor (SPEC §3): the inotify instance, the registry of watched directories and the
//! translation of raw kernel events into [`FsEvent`]s (SPEC §3.3–§3.5).
//!
//! Owns: the inotify fd (close-on-exec, non-blocking), every watch descriptor, the watch tree,
//! move pairing by cookie, `IN_Q_OVERFLOW` and `IN_IGNORED` handling. Must not touch: syncs,
//! delays, excludes, Lua, logging. Which directories deserve a watch is the caller's call, asked
//! through a `concerns(abs_dir_path)` callback (SPEC §3.2 step 1).
//!
//! # inotify gotchas
//!
//! - A watch follows the inode, not the path: a moved directory keeps its wd (and its
//!   sub-directories theirs), so a move within the tree is a rename of one node.
//! - `inotify_add_watch` on an inode that is already watched returns the existing wd (bind mounts,
//!   nested roots, a second `add_tree`); the registry then keeps one node, at the newest path.
//! - A trailing `/` makes path lookup follow a symlink even with `IN_DONT_FOLLOW`, so watches
//!   are added on the path without it.
//! - `rmdir` only works on empty directories, so the kernel reports the children of a deleted
//!   tree first: dropping a node is almost always O(1). Only a directory moved *out* of the
//!   tree takes a sub-tree with it; finding that sub-tree scans the slab once (O(watches)).
//! - After `inotify_rm_watch` (and after the directory is gone) the kernel sends `IN_IGNORED`;
//!   wds are allocated cyclically, so a late `IN_IGNORED` never hits a new watch.
//! - `MOVED_FROM`/`MOVED_TO` of one rename are queued back to back, but a read can fall between
//!   them; the pair is resolved at the end of the burst by one more non-blocking read (SPEC
//!   §3.4; no timer, §15 item 17).

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;

use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};

use super::queue::{KernelQueue, Pass, Queue};
use super::tree::{Handle, Registry, NO_NODE};
use super::{FsEvent, FsKind, InotifyMode, Monitor, ReadOutcome, RootChange, WatchError};

#[path = "inotify_decode.rs"]
mod decode;
#[path = "inotify_roots.rs"]
mod roots;

use decode::{log_event, Pairer, RawEvents, Step};
use roots::Roots;

impl InotifyMode {
    fn mask(self) -> WatchMask {
        // SPEC §3.1. DONT_FOLLOW: symlinks in the tree are files to us. ONLYDIR: a directory
        // replaced by a file between readdir and add_watch fails instead of being watched.
        let base = WatchMask::ATTRIB
            | WatchMask::CLOSE_WRITE
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DONT_FOLLOW
            | WatchMask::ONLYDIR;
        match self {
            Self::CloseWrite => base,
            Self::Modify => (base - WatchMask::CLOSE_WRITE) | WatchMask::MODIFY,
            Self::CloseWriteOrModify => base | WatchMask::MODIFY,
        }
    }
}

/// A sub-directory `inotify_add_watch` refused, logged under [`not_watched_category`].
fn log_not_watched(path: &[u8], e: &io::Error) {
    let category = not_watched_category(e);
    crate::log::with(category, || {
        not_watched_message(path, e, category == b"Inotify")
    });
}

/// Gone (`ENOENT`) or no longer a directory (`ENOTDIR`) since it was listed is normal churn,
/// logged under `Inotify`; anything else (`EACCES`, `ELOOP`, ...) is a warning, as its changes
/// are not seen until it is touched again.
fn not_watched_category(e: &io::Error) -> &'static [u8] {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => b"Inotify",
        _ => b"Warn",
    }
}

fn not_watched_message(path: &[u8], e: &io::Error, churn: bool) -> Vec<u8> {
    let then: &[u8] = if churn {
        b""
    } else {
        b"; its changes are seen once it can be watched and is touched again (e.g. chmod)"
    };
    let reason = e.to_string();
    [
        b"Cannot watch ".as_slice(),
        path,
        b": ",
        reason.as_bytes(),
        then,
    ]
    .concat()
}

fn log_not_concerning(path: &[u8]) {
    crate::log::trace_add_watch(path);
    crate::log::with(b"Inotify", || {
        [b"not concerning \"".as_slice(), path, b"\""].concat()
    });
}

impl Handle for WatchDescriptor {
    fn id(&self) -> i32 {
        self.get_watch_descriptor_id()
    }
}

// ---------------------------------------------------------------------------------------------
// The watcher

/// Initial read buffer: room for ~60 events of maximal name length, hundreds of typical ones.
const READ_BUF: usize = 16 * 1024;
/// The kernel returns `EINVAL` if the next event does not fit; one event is at most 272 bytes,
/// so growing is only a safety net.
const READ_BUF_MAX: usize = 1024 * 1024;

/// The inotify instance and its watch registry (SPEC §3).
pub(crate) struct Watcher {
    inotify: Inotify,
    watches: Watches,
    /// A dup of the inotify fd (same open file, same queue), read with our own buffer and
    /// parser: the crate's parser panics on mask bits it does not know.
    queue: KernelQueue,
    mask: WatchMask,
    reg: Registry<WatchDescriptor>,
    pairer: Pairer,
    /// Scratch space of `walk`, kept to avoid allocations per directory.
    stack: Vec<(u32, i32)>,
    path: Vec<u8>,
    dropped: Vec<WatchDescriptor>,
    /// The source roots: where each is in the tree, or when to look for it again.
    roots: Roots,
}

/// Reading keeps the registry current (SPEC §3.3–§3.5, §15 item 18); `IN_Q_OVERFLOW` stops it.
impl Queue for Watcher {
    fn queue(&mut self) -> &mut KernelQueue {
        &mut self.queue
    }

    fn records(pass: &mut Pass<'_, Self>, bytes: &[u8]) -> Result<bool, WatchError> {
        // The pairer lives in the watcher between reads; `apply` needs all of the watcher.
        let mut pairer = mem::take(&mut pass.m.pairer);
        let mut emit = |step: Step<'_>| pass.m.apply(step, pass.out, pass.concerns);
        let stop = RawEvents { buf: bytes }
            .map(|ev| pairer.feed(ev, &mut emit))
            .find(|fed| !matches!(fed, Ok(true)));
        pass.m.pairer = pairer;
        stop.unwrap_or(Ok(true))
    }

    /// A MOVED_FROM still buffered at the end of a burst has survived one more read than the
    /// one that delivered it: it was a move out (SPEC §3.4).
    fn burst_end(pass: &mut Pass<'_, Self>) -> Result<(), WatchError> {
        let mut pairer = mem::take(&mut pass.m.pairer);
        let ended = pairer.finish(&mut |step| pass.m.apply(step, pass.out, pass.concerns));
        pass.m.pairer = pairer;
        ended
    }

    fn pass_end(&mut self, _result: &Result<ReadOutcome, WatchError>) {
        self.verify_roots(Instant::now());
    }
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("fd", &self.inotify.as_raw_fd())
            .field("watches", &self.reg.live)
            .finish()
    }
}

impl Watcher {
    /// Creates the inotify instance (`IN_CLOEXEC | IN_NONBLOCK`, by `Inotify::init`).
    pub(crate) fn new(mode: InotifyMode) -> io::Result<Self> {
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        // F_DUPFD_CLOEXEC; O_NONBLOCK lives in the shared open file description.
        let reader = File::from(inotify.as_fd().try_clone_to_owned()?);
        Ok(Watcher {
            inotify,
            watches,
            queue: KernelQueue::new(reader, READ_BUF, READ_BUF_MAX),
            mask: mode.mask(),
            reg: Registry::new(),
            pairer: Pairer::default(),
            stack: Vec::new(),
            path: Vec::new(),
            dropped: Vec::new(),
            roots: Roots::default(),
        })
    }

    /// The inotify fd, for registration with the poll loop (readable = events queued).
    pub(crate) fn as_raw_fd(&self) -> RawFd {
        self.inotify.as_raw_fd()
    }

    /// Number of watched directories.
    pub(crate) fn len(&self) -> usize {
        self.reg.live
    }

    /// Calls `f(wd, abs_dir_path)` for every watch, ascending by wd (status file).
    pub(crate) fn for_each(&self, f: &mut dyn FnMut(i32, &[u8])) {
        let mut path = Vec::new();
        for (wd, idx) in self.reg.by_wd_order() {
            path.clear();
            self.reg.path_into(idx, &mut path, 0);
            f(wd, &path);
        }
    }

    /// The absolute path (ending in `/`) a wd watches, if it is registered.
    #[cfg(test)]
    pub(crate) fn path_of_wd(&self, wd: i32) -> Option<Vec<u8>> {
        self.reg.find_wd(wd).map(|idx| self.reg.path(idx))
    }

    /// Watches `abs_dir` and, recursively, every sub-directory `concerns` accepts (SPEC §3.2).
    /// `concerns` sees absolute paths ending in `/`, the root included. Symlinks are never
    /// followed. Vanished or unreadable directories are skipped silently. Returns the number
    /// of directories newly watched.
    #[cfg(test)]
    pub(crate) fn add_tree(
        &mut self,
        abs_dir: &[u8],
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, WatchError> {
        let mut dir = abs_dir.to_vec();
        if dir.last() != Some(&b'/') {
            dir.push(b'/');
        }
        let mut count = 0;
        self.add_root(&dir, concerns, &mut count)?;
        Ok(count)
    }

    /// `add_tree` for `dir` ending in `/`; returns the root's node when it was walked.
    fn add_root(
        &mut self,
        dir: &[u8],
        concerns: &mut dyn FnMut(&[u8]) -> bool,
        count: &mut usize,
    ) -> Result<Option<u32>, WatchError> {
        if !concerns(dir) {
            return Ok(None);
        }
        let root_name = &dir[..dir.len() - 1];
        let root = self.watch_at(NO_NODE, root_name, dir, count)?;
        if let Some(idx) = root {
            self.walk(idx, concerns, count)?;
        }
        Ok(root)
    }

    /// `add_tree` for the sources of every sync, walking each directory once however many
    /// syncs share it: equal roots are walked once, and a root the walk of an enclosing root
    /// already reached (a nested source) is not walked again. Outer roots go first, so a
    /// shared sub-tree is read by the first walk that reaches it.
    pub(crate) fn add_trees(
        &mut self,
        roots: &[&[u8]],
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, WatchError> {
        let mut dirs: Vec<Vec<u8>> = roots
            .iter()
            .map(|r| {
                let mut d = r.to_vec();
                if d.last() != Some(&b'/') {
                    d.push(b'/');
                }
                d
            })
            .collect();
        dirs.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
        dirs.dedup();
        let mut walked: Vec<(usize, u32, i32)> = Vec::new();
        let mut count = 0;
        for (i, dir) in dirs.iter().enumerate() {
            let reached = walked
                .iter()
                .find_map(|&(r, idx, wd)| self.reaches(&dirs[r], idx, wd, dir));
            let node = match reached {
                Some(node) => Some(node),
                None => {
                    let node = self.add_root(dir, concerns, &mut count)?;
                    if let Some(idx) = node {
                        walked.push((i, idx, self.reg.wd(idx)));
                    }
                    node
                }
            };
            if let Some(idx) = node {
                self.roots.watched(dir, idx, self.reg.wd(idx));
            }
        }
        Ok(count)
    }

    /// The node of `dir` if the walk from `root` (node `idx`, still holding `wd`) registered it.
    fn reaches(&self, root: &[u8], idx: u32, wd: i32, dir: &[u8]) -> Option<u32> {
        let rest = dir.strip_prefix(root)?;
        let mut node = idx;
        for name in rest.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
            node = self.reg.find_child(node, name)?;
        }
        self.reg.holds(idx, wd).then_some(node)
    }

    /// SPEC §3.5 for one translated event: resolve paths, keep the registry current, emit.
    fn apply(
        &mut self,
        step: Step<'_>,
        out: &mut Vec<FsEvent>,
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), WatchError> {
        match step {
            Step::Overflow => Ok(()),
            Step::Ignored { wd } => {
                if let Some(idx) = self.reg.find_wd(wd) {
                    self.drop_subtree(idx, true, RootChange::Deleted);
                }
                Ok(())
            }
            Step::MovedSelf { wd } => {
                // A directory with a parent here is renamed by its parent's move event; a
                // top-level one is a source root that moved away: its watches would report
                // under a path it no longer has.
                if let Some(idx) = self.reg.find_wd(wd) {
                    if self.reg.parent(idx) == NO_NODE {
                        self.drop_subtree(idx, false, RootChange::MovedAway);
                    }
                }
                Ok(())
            }
            Step::Event { kind, at, is_dir } => {
                log_event(kind, at, is_dir, None);
                match self.reg.find_wd(at.wd) {
                    // Unknown wd: normal for events of just-removed directories.
                    None => {
                        crate::log::with(b"Inotify", || {
                            b"event belongs to unknown watch descriptor.".to_vec()
                        });
                        Ok(())
                    }
                    Some(dir) => self.simple(kind, dir, at.name, is_dir, out, concerns),
                }
            }
            Step::Move { from, to, is_dir } => {
                log_event(FsKind::Move, from, is_dir, Some(to));
                let from = self.reg.find_wd(from.wd).map(|dir| (dir, from.name));
                let to = self.reg.find_wd(to.wd).map(|dir| (dir, to.name));
                self.apply_move(from, to, is_dir, out, concerns)
            }
        }
    }

    /// A paired move between the watched directories `from` and `to` (either may be unknown:
    /// a directory removed meanwhile).
    fn apply_move(
        &mut self,
        from: Option<(u32, &[u8])>,
        to: Option<(u32, &[u8])>,
        is_dir: bool,
        out: &mut Vec<FsEvent>,
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), WatchError> {
        match (from, to) {
            (None, None) => Ok(()),
            (None, Some((to, to_name))) => {
                crate::log::with(b"Inotify", || {
                    let mut m = b"Move from deleted directory ".to_vec();
                    m.extend_from_slice(&self.child_path(to, to_name, is_dir));
                    m.extend_from_slice(b" becomes Create.");
                    m
                });
                self.simple(FsKind::Create, to, to_name, is_dir, out, concerns)
            }
            (Some((from, from_name)), None) => {
                self.simple(FsKind::Delete, from, from_name, is_dir, out, concerns)
            }
            (Some((from, from_name)), Some((to, to_name))) => {
                let path = self.child_path(from, from_name, is_dir);
                let path2 = self.child_path(to, to_name, is_dir);
                if is_dir {
                    self.roots.renamed();
                    self.move_dir(from, from_name, to, to_name, &path2, concerns)?;
                }
                out.push(FsEvent {
                    kind: FsKind::Move,
                    path,
                    path2: Some(path2),
                    monitor: Monitor::Inotify,
                });
                Ok(())
            }
        }
    }

    /// A non-move event on `name` in the watched directory `dir`.
    fn simple(
        &mut self,
        kind: FsKind,
        dir: u32,
        name: &[u8],
        is_dir: bool,
        out: &mut Vec<FsEvent>,
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), WatchError> {
        let path = self.child_path(dir, name, is_dir);
        let mut kind = kind;
        if is_dir {
            match kind {
                FsKind::Create => self.watch_new(dir, name, &path, concerns)?,
                // Deleted or moved out: forget the sub-tree, release still-live watches.
                FsKind::Delete => {
                    if let Some(child) = self.reg.find_child(dir, name) {
                        self.drop_subtree(child, false, RootChange::Deleted);
                    }
                }
                // A directory that could not be watched was touched (chmod, chown): watched
                // now, it is reported as created, so what it holds is synced too.
                _ if self.reg.find_child(dir, name).is_none()
                    && self.watch_unwatched(dir, name, &path, concerns)? =>
                {
                    kind = FsKind::Create;
                }
                _ => {}
            }
        }
        out.push(FsEvent {
            kind,
            path,
            path2: None,
            monitor: Monitor::Inotify,
        });
        Ok(())
    }

    fn child_path(&self, dir: u32, name: &[u8], is_dir: bool) -> Vec<u8> {
        let mut path = Vec::new();
        self.reg.path_into(dir, &mut path, name.len() + 1);
        path.extend_from_slice(name);
        if is_dir {
            path.push(b'/');
        }
        path
    }

    /// A directory appeared at `parent`/`name` (`path`): watch it and what is below.
    fn watch_new(
        &mut self,
        parent: u32,
        name: &[u8],
        path: &[u8],
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), WatchError> {
        if !concerns(path) {
            log_not_concerning(path);
            if let Some(stale) = self.reg.find_child(parent, name) {
                self.drop_subtree(stale, false, RootChange::MovedAway);
            }
            return Ok(());
        }
        let mut count = 0;
        if let Some(idx) = self.watch_at(parent, name, path, &mut count)? {
            self.walk(idx, concerns, &mut count)?;
        }
        Ok(())
    }

    /// A concerned directory without a watch (it could not be watched before) was touched:
    /// tries again. Whether it is watched now.
    fn watch_unwatched(
        &mut self,
        parent: u32,
        name: &[u8],
        path: &[u8],
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<bool, WatchError> {
        if !concerns(path) {
            return Ok(false);
        }
        let mut count = 0;
        let Some(idx) = self.watch_at(parent, name, path, &mut count)? else {
            return Ok(false);
        };
        crate::log::normal(
            [
                b"Watching ".as_slice(),
                path,
                b" now that it can be watched",
            ]
            .concat(),
        );
        self.walk(idx, concerns, &mut count)?;
        Ok(true)
    }

    /// A paired directory move inside the watched tree. The kernel keeps the wds, so the node
    /// is renamed in place; then the sub-tree is re-read (readdir only, no `add_watch` for
    /// known directories) because `concerns` may judge the new paths differently (upstream
    /// re-adds the whole sub-tree here, SPEC §3.5).
    fn move_dir(
        &mut self,
        from: u32,
        from_name: &[u8],
        to: u32,
        to_name: &[u8],
        path2: &[u8],
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), WatchError> {
        let Some(moved) = self.reg.find_child(from, from_name) else {
            // It was not watched (not concerned at its old place): treat as new.
            return self.watch_new(to, to_name, path2, concerns);
        };
        // An empty directory the move replaced is gone.
        if let Some(replaced) = self.reg.find_child(to, to_name) {
            if replaced != moved && !self.reg.is_ancestor_or_self(replaced, moved) {
                self.drop_subtree(replaced, false, RootChange::Deleted);
            }
        }
        if !concerns(path2) || self.reg.is_ancestor_or_self(moved, to) {
            self.drop_subtree(moved, false, RootChange::MovedAway);
            return Ok(());
        }
        if !self.reg.rename(moved, to, to_name) {
            self.drop_subtree(moved, false, RootChange::MovedAway);
            return Ok(());
        }
        let mut count = 0;
        self.walk(moved, concerns, &mut count)
    }

    /// `inotify_add_watch` on a directory path ending in `/`; the error as the kernel gave it.
    fn add_watch(&mut self, dir: &[u8]) -> io::Result<WatchDescriptor> {
        crate::log::trace_add_watch(dir);
        // Without the trailing slash: with it, the kernel would follow a symlink.
        let bare = match dir {
            b"/" => dir,
            [rest @ .., b'/'] => rest,
            _ => dir,
        };
        let added = self
            .watches
            .add(Path::new(OsStr::from_bytes(bare)), self.mask);
        crate::log::with(b"Inotify", || {
            let mut m = b"addwatch( ".to_vec();
            m.extend_from_slice(dir);
            match &added {
                Ok(wd) => m.extend_from_slice(format!(" )-> {} ", wd.id()).as_bytes()),
                Err(e) => {
                    let errno = e.raw_os_error().unwrap_or(0);
                    m.extend_from_slice(format!(" )-> -1; err= {errno} : {e}").as_bytes());
                }
            }
            m
        });
        added
    }

    /// Watches `path` (ending in `/`) and registers it as `parent`/`name` (`NO_NODE`: as a root
    /// named by its path). Returns the node to descend into, if any.
    fn watch_at(
        &mut self,
        parent: u32,
        name: &[u8],
        path: &[u8],
        count: &mut usize,
    ) -> Result<Option<u32>, WatchError> {
        let wd = match self.add_watch(path) {
            Ok(wd) => wd,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                return Err(WatchError::Limit { dir: path.to_vec() })
            }
            // A source root: the caller decides (a startup error, or still away).
            Err(err) if parent == NO_NODE => {
                return Err(WatchError::Root {
                    dir: path.to_vec(),
                    err,
                })
            }
            Err(e) => {
                log_not_watched(path, &e);
                return Ok(None);
            }
        };
        let Some(known) = self.reg.find_wd(wd.id()) else {
            if parent != NO_NODE {
                if let Some(stale) = self.reg.find_child(parent, name) {
                    self.drop_subtree(stale, false, RootChange::MovedAway);
                }
            }
            return match self.reg.insert(wd, parent, name) {
                Ok(idx) => {
                    *count += 1;
                    Ok(Some(idx))
                }
                Err(wd) => {
                    let _ = self.watches.remove(wd);
                    Ok(None)
                }
            };
        };
        // The kernel handed back a wd we know: same inode, maybe under another path.
        if self.reg.parent(known) == parent && self.reg.name(known) == name {
            return Ok(Some(known));
        }
        if parent == NO_NODE {
            // A root that is already watched inside another tree: keep it there.
            if self.reg.path(known) == path {
                return Ok(Some(known));
            }
        } else if self.reg.is_ancestor_or_self(known, parent) {
            // A bind mount of an ancestor: descending would loop forever.
            return Ok(None);
        }
        // The newest path wins (SPEC §3.2 step 3).
        self.reg.unlink(known);
        if parent != NO_NODE {
            if let Some(stale) = self.reg.find_child(parent, name) {
                self.drop_subtree(stale, false, RootChange::MovedAway);
            }
        }
        if self.reg.rename(known, parent, name) {
            Ok(Some(known))
        } else {
            self.drop_subtree(known, false, RootChange::MovedAway);
            Ok(None)
        }
    }

    /// Descends from `start` (depth first, iteratively), watching every concerned
    /// sub-directory not watched yet and dropping registered ones no longer concerned.
    fn walk(
        &mut self,
        start: u32,
        concerns: &mut dyn FnMut(&[u8]) -> bool,
        count: &mut usize,
    ) -> Result<(), WatchError> {
        let mut stack = mem::take(&mut self.stack);
        let mut path = mem::take(&mut self.path);
        stack.clear();
        stack.push((start, self.reg.wd(start)));
        let result = self.walk_with(&mut stack, &mut path, concerns, count);
        self.stack = stack;
        self.path = path;
        result
    }

    fn walk_with(
        &mut self,
        stack: &mut Vec<(u32, i32)>,
        path: &mut Vec<u8>,
        concerns: &mut dyn FnMut(&[u8]) -> bool,
        count: &mut usize,
    ) -> Result<(), WatchError> {
        while let Some((dir, wd)) = stack.pop() {
            if !self.reg.holds(dir, wd) {
                continue;
            }
            path.clear();
            self.reg.path_into(dir, path, 256);
            let base = path.len();
            // Vanished or unreadable: keep the watch, skip the content.
            let Ok(entries) = fs::read_dir(Path::new(OsStr::from_bytes(path))) else {
                continue;
            };
            for entry in entries {
                let Ok(entry) = entry else { break };
                // d_type from readdir; lstat only where the filesystem reports DT_UNKNOWN.
                // A symlink is not a directory here.
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name();
                let name = name.as_bytes();
                path.truncate(base);
                path.extend_from_slice(name);
                path.push(b'/');
                let known = self.reg.find_child(dir, name);
                if !concerns(path) {
                    log_not_concerning(path);
                    if let Some(child) = known {
                        self.drop_subtree(child, false, RootChange::MovedAway);
                    }
                    continue;
                }
                let next = match known {
                    Some(child) => Some(child),
                    None => self.watch_at(dir, name, path, count)?,
                };
                if let Some(child) = next {
                    stack.push((child, self.reg.wd(child)));
                }
                if !self.reg.holds(dir, wd) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Forgets `idx` and its sub-tree and removes their watches from the kernel (errors are
    /// fine: a watch of a deleted directory may be gone already). `own_gone`: the kernel
    /// already dropped `idx`'s own watch (`IN_IGNORED`). `why`: what a source root among them
    /// went through.
    fn drop_subtree(&mut self, idx: u32, own_gone: bool, why: RootChange) {
        let mut dropped = mem::take(&mut self.dropped);
        self.reg.remove_subtree(idx, &mut dropped);
        for (i, wd) in dropped.drain(..).enumerate() {
            crate::log::with(b"Inotify", || {
                format!("rmwatch()<-{}", wd.id()).into_bytes()
            });
            self.roots.dropped(wd.id(), why);
            if !(own_gone && i == 0) {
                let _ = self.watches.remove(wd);
            }
        }
        self.dropped = dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::decode::EVENT_HEADER;
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn inotify_mode_masks_follow_spec_table() {
        let m = InotifyMode::CloseWrite.mask();
        assert!(m.contains(WatchMask::CLOSE_WRITE) && !m.contains(WatchMask::MODIFY));
        assert!(m.contains(WatchMask::DONT_FOLLOW | WatchMask::ONLYDIR | WatchMask::DELETE_SELF));
        let m = InotifyMode::Modify.mask();
        assert!(!m.contains(WatchMask::CLOSE_WRITE) && m.contains(WatchMask::MODIFY));
        let m = InotifyMode::CloseWriteOrModify.mask();
        assert!(m.contains(WatchMask::CLOSE_WRITE | WatchMask::MODIFY));
    }
    // ---- real inotify ------------------------------------------------------------------------

    struct Fixture {
        _tmp: tempfile::TempDir,
        /// `<tmp>/root/`, the watched tree.
        root: Vec<u8>,
        /// `<tmp>/`, for things outside the tree.
        top: Vec<u8>,
        w: Watcher,
    }

    fn all(_: &[u8]) -> bool {
        true
    }

    fn os(p: &[u8]) -> &Path {
        Path::new(OsStr::from_bytes(p))
    }

    fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
        [a, b].concat()
    }

    impl Fixture {
        fn new(mode: InotifyMode) -> Self {
            Self::with_tree(mode, &[])
        }

        fn with_tree(mode: InotifyMode, dirs: &[&[u8]]) -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let top = fs::canonicalize(tmp.path()).unwrap();
            let mut top = top.as_os_str().as_bytes().to_vec();
            top.push(b'/');
            let root = cat(&top, b"root/");
            fs::create_dir(os(&root)).unwrap();
            for d in dirs {
                fs::create_dir_all(os(&cat(&root, d))).unwrap();
            }
            let w = Watcher::new(mode).unwrap();
            Fixture {
                _tmp: tmp,
                root,
                top,
                w,
            }
        }

        fn p(&self, rel: &[u8]) -> Vec<u8> {
            cat(&self.root, rel)
        }

        fn ps(&self, rels: &[&[u8]]) -> Vec<Vec<u8>> {
            rels.iter().map(|r| self.p(r)).collect()
        }

        fn watch(&mut self) -> usize {
            let root = self.root.clone();
            self.w.add_tree(&root, &mut all).unwrap()
        }

        fn events(&mut self) -> Vec<FsEvent> {
            let mut out = Vec::new();
            assert_eq!(self.w.read(&mut out, &mut all).unwrap(), ReadOutcome::Ok);
            out
        }

        /// Writes a new file at `rel` and checks that its Create and Modify are read.
        fn new_file_is_seen(&mut self, rel: &[u8]) {
            let file = self.p(rel);
            fs::write(os(&file), b"").unwrap();
            let want = [e(FsKind::Create, file.clone()), e(FsKind::Modify, file)];
            assert_eq!(self.events(), want);
        }

        fn watched(&self) -> Vec<Vec<u8>> {
            let mut v = Vec::new();
            self.w.for_each(&mut |_, p| v.push(p.to_vec()));
            v.sort();
            v
        }
    }

    fn e(kind: FsKind, path: Vec<u8>) -> FsEvent {
        FsEvent {
            kind,
            path,
            path2: None,
            monitor: Monitor::Inotify,
        }
    }

    #[test]
    fn file_create_modify_attrib_delete_give_absolute_paths() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"sub"]);
        assert_eq!(f.watch(), 2);
        let file = f.p(b"sub/f.txt");
        fs::write(os(&file), b"x").unwrap();
        assert_eq!(
            f.events(),
            [
                e(FsKind::Create, file.clone()),
                e(FsKind::Modify, file.clone())
            ]
        );
        fs::set_permissions(os(&file), fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(f.events(), [e(FsKind::Attrib, file.clone())]);
        fs::remove_file(os(&file)).unwrap();
        assert_eq!(f.events(), [e(FsKind::Delete, file)]);
        assert_eq!(f.events(), []);
    }

    #[test]
    fn modify_mode_reports_writes_without_close() {
        let mut f = Fixture::new(InotifyMode::Modify);
        f.watch();
        let file = f.p(b"f");
        let mut h = File::create(os(&file)).unwrap();
        assert_eq!(f.events(), [e(FsKind::Create, file.clone())]);
        io::Write::write_all(&mut h, b"data").unwrap();
        assert_eq!(f.events(), [e(FsKind::Modify, file.clone())]);
        drop(h);
        assert_eq!(f.events(), []);
    }

    #[test]
    fn odd_names_stay_bytes() {
        let mut f = Fixture::new(InotifyMode::CloseWrite);
        f.watch();
        for name in [&b"with space"[..], b"new\nline", b"caf\xe9", b"-dash"] {
            let dir = cat(&f.p(name), b"/");
            fs::create_dir(os(&dir)).unwrap();
            assert_eq!(f.events(), [e(FsKind::Create, dir.clone())]);
            let file = cat(&dir, name);
            fs::write(os(&file), b"").unwrap();
            assert_eq!(
                f.events(),
                [e(FsKind::Create, file.clone()), e(FsKind::Modify, file)],
                "{name:?}"
            );
        }
        assert_eq!(f.w.len(), 5);
    }

    #[test]
    fn mkdir_p_watches_every_level() {
        let mut f = Fixture::new(InotifyMode::CloseWrite);
        f.watch();
        fs::create_dir_all(os(&f.p(b"a/b/c"))).unwrap();
        assert_eq!(f.events(), [e(FsKind::Create, f.p(b"a/"))]);
        assert_eq!(
            f.watched(),
            [f.p(b""), f.p(b"a/"), f.p(b"a/b/"), f.p(b"a/b/c/")]
        );
        f.new_file_is_seen(b"a/b/c/f");
    }

    #[test]
    fn dir_moved_within_tree_reports_under_new_path() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"x/y", b"other"]);
        assert_eq!(f.watch(), 4);
        fs::rename(os(&f.p(b"x")), os(&f.p(b"other/z"))).unwrap();
        assert_eq!(
            f.events(),
            [FsEvent {
                kind: FsKind::Move,
                path: f.p(b"x/"),
                path2: Some(f.p(b"other/z/")),
                monitor: Monitor::Inotify,
            }]
        );
        assert_eq!(f.w.len(), 4);
        f.new_file_is_seen(b"other/z/y/f");
        let want = f.ps(&[b"", b"other/", b"other/z/", b"other/z/y/"]);
        assert_eq!(f.watched(), want);
    }

    #[test]
    fn file_move_pairs_into_one_event() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"d"]);
        f.watch();
        fs::write(os(&f.p(b"a")), b"").unwrap();
        f.events();
        fs::rename(os(&f.p(b"a")), os(&f.p(b"d/b"))).unwrap();
        assert_eq!(
            f.events(),
            [FsEvent {
                kind: FsKind::Move,
                path: f.p(b"a"),
                path2: Some(f.p(b"d/b")),
                monitor: Monitor::Inotify,
            }]
        );
    }

    #[test]
    fn dir_moved_out_is_delete_and_unwatched() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"m/n/o", b"keep"]);
        assert_eq!(f.watch(), 5);
        let outside = cat(&f.top, b"m");
        fs::rename(os(&f.p(b"m")), os(&outside)).unwrap();
        assert_eq!(f.events(), [e(FsKind::Delete, f.p(b"m/"))]);
        assert_eq!(f.watched(), [f.p(b""), f.p(b"keep/")]);
        // Its watches are gone from the kernel too: no events, not even for unknown wds.
        fs::write(os(&cat(&outside, b"/n/o/f")), b"").unwrap();
        let mut out = Vec::new();
        f.w.read(&mut out, &mut all).unwrap();
        assert_eq!(out, []);
        let mut buf = vec![0; 4096];
        assert_eq!(
            f.w.queue.fd.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn dir_moved_in_is_create_and_watched() {
        let mut f = Fixture::new(InotifyMode::CloseWrite);
        assert_eq!(f.watch(), 1);
        let outside = cat(&f.top, b"q");
        fs::create_dir_all(os(&cat(&outside, b"/r/s"))).unwrap();
        fs::rename(os(&outside), os(&f.p(b"q"))).unwrap();
        assert_eq!(f.events(), [e(FsKind::Create, f.p(b"q/"))]);
        assert_eq!(f.w.len(), 4);
        f.new_file_is_seen(b"q/r/s/f");
    }

    #[test]
    fn deleting_a_tree_drops_all_its_nodes() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"a/b/c", b"a/d", b"e"]);
        assert_eq!(f.watch(), 6);
        fs::write(os(&f.p(b"a/b/c/f")), b"").unwrap();
        f.events();
        fs::remove_dir_all(os(&f.p(b"a"))).unwrap();
        let got = f.events();
        assert_eq!(got.last(), Some(&e(FsKind::Delete, f.p(b"a/"))));
        assert!(got.contains(&e(FsKind::Delete, f.p(b"a/b/c/f"))));
        assert!(got.contains(&e(FsKind::Delete, f.p(b"a/b/c/"))));
        assert_eq!(f.watched(), [f.p(b""), f.p(b"e/")]);
        assert_eq!(f.w.reg.live, 2);
    }

    #[test]
    fn root_deleted_leaves_an_empty_registry() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"a"]);
        f.watch();
        fs::remove_dir_all(os(&f.root)).unwrap();
        assert_eq!(f.events(), [e(FsKind::Delete, f.p(b"a/"))]);
        assert_eq!(f.w.len(), 0);
        assert_eq!(f.w.reg.heap_bytes(), 0);
    }

    #[test]
    fn rename_over_an_empty_dir_replaces_it() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"src/in", b"dst"]);
        assert_eq!(f.watch(), 4);
        fs::rename(os(&f.p(b"src")), os(&f.p(b"dst"))).unwrap();
        let got = f.events();
        assert_eq!(
            got,
            [FsEvent {
                kind: FsKind::Move,
                path: f.p(b"src/"),
                path2: Some(f.p(b"dst/")),
                monitor: Monitor::Inotify,
            }]
        );
        assert_eq!(f.watched(), [f.p(b""), f.p(b"dst/"), f.p(b"dst/in/")]);
        fs::write(os(&f.p(b"dst/in/f")), b"").unwrap();
        assert_eq!(f.events()[0], e(FsKind::Create, f.p(b"dst/in/f")));
    }

    #[test]
    fn concerns_false_prunes_a_subtree() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"skip/deep", b"keep/x"]);
        let skip = f.p(b"skip/");
        let mut not_skip = |p: &[u8]| !p.starts_with(&skip);
        let root = f.root.clone();
        assert_eq!(f.w.add_tree(&root, &mut not_skip).unwrap(), 3);
        assert_eq!(f.watched(), [f.p(b""), f.p(b"keep/"), f.p(b"keep/x/")]);
        fs::write(os(&f.p(b"skip/deep/f")), b"").unwrap();
        // A new directory below an unconcerned name is reported but not watched.
        fs::create_dir(os(&f.p(b"skip2"))).unwrap();
        let mut only_keep = |p: &[u8]| !p.ends_with(b"skip2/");
        let mut out = Vec::new();
        f.w.read(&mut out, &mut only_keep).unwrap();
        assert_eq!(out, [e(FsKind::Create, f.p(b"skip2/"))]);
        assert_eq!(f.w.len(), 3);
        // The root itself is the caller's decision too.
        let mut never = |_: &[u8]| false;
        let mut g = Fixture::new(InotifyMode::CloseWrite);
        let root = g.root.clone();
        assert_eq!(g.w.add_tree(&root, &mut never).unwrap(), 0);
        assert_eq!(g.w.len(), 0);
    }

    #[test]
    fn dir_moved_to_an_unconcerned_place_is_unwatched() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"a/b"]);
        f.watch();
        fs::rename(os(&f.p(b"a")), os(&f.p(b"tmp"))).unwrap();
        let tmp = f.p(b"tmp/");
        let mut not_tmp = |p: &[u8]| !p.starts_with(&tmp);
        let mut out = Vec::new();
        f.w.read(&mut out, &mut not_tmp).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, FsKind::Move);
        assert_eq!(f.watched(), [f.p(b"")]);
    }

    #[test]
    fn symlinks_are_not_followed() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"real"]);
        let target = cat(&f.top, b"elsewhere");
        fs::create_dir_all(os(&cat(&target, b"/sub"))).unwrap();
        symlink(os(&target), os(&f.p(b"link"))).unwrap();
        assert_eq!(f.watch(), 2);
        symlink(os(&target), os(&f.p(b"link2"))).unwrap();
        assert_eq!(f.events(), [e(FsKind::Create, f.p(b"link2"))]);
        assert_eq!(f.watched(), [f.p(b""), f.p(b"real/")]);
        // A root given as a symlink path with a trailing slash is not followed either.
        let link = f.p(b"link/");
        let err = root_error(f.w.add_tree(&link, &mut all));
        assert_eq!(err, (link, libc::ENOTDIR));
    }

    /// The directory and errno of a `WatchError::Root`.
    fn root_error(r: Result<usize, WatchError>) -> (Vec<u8>, i32) {
        match r {
            Err(WatchError::Root { dir, err }) => (dir, err.raw_os_error().unwrap()),
            other => panic!("not a root error: {other:?}"),
        }
    }

    /// Directories `concerns` was asked about while `roots` were added to a fresh watcher:
    /// one question per directory a walk reaches, so it counts the walks' work.
    fn asked(f: &Fixture, roots: &[&[u8]], skip: &[u8]) -> (usize, Vec<Vec<u8>>) {
        let mut w = Watcher::new(InotifyMode::CloseWrite).unwrap();
        let mut n = 0;
        let roots: Vec<Vec<u8>> = roots.iter().map(|r| f.p(r)).collect();
        let roots: Vec<&[u8]> = roots.iter().map(Vec::as_slice).collect();
        let skip = f.p(skip);
        let mut concerns = |d: &[u8]| {
            n += 1;
            d != skip.as_slice()
        };
        w.add_trees(&roots, &mut concerns).unwrap();
        let mut v = Vec::new();
        w.for_each(&mut |_, p| v.push(p.to_vec()));
        v.sort();
        (n, v)
    }

    #[test]
    fn add_trees_walks_a_shared_source_once() {
        let f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"a/b", b"a/c", b"d/e", b"x/y/z"]);
        let (one, watched) = asked(&f, &[b""], b"none");
        assert_eq!(watched.len(), 9);
        // Ten syncs on one source, in any spelling: one walk.
        let ten: Vec<&[u8]> = (0..10)
            .map(|i| if i % 2 == 0 { &b""[..] } else { b"/" })
            .collect();
        assert_eq!(asked(&f, &ten, b"none"), (one, watched.clone()));
        // Nested sources, inner first: the outer walk reaches them, nothing is read twice.
        assert_eq!(
            asked(&f, &[b"a/b/", b"a/", b"", b"d/"], b"none"),
            (one, watched)
        );
        // A nested source below a directory no sync wants is walked on its own.
        let (_, watched) = asked(&f, &[b"", b"x/y/"], b"x/");
        assert_eq!(
            watched,
            f.ps(&[b"", b"a/", b"a/b/", b"a/c/", b"d/", b"d/e/", b"x/y/", b"x/y/z/"])
        );
    }

    #[test]
    fn nested_roots_share_watches() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"a/b"]);
        let inner = f.p(b"a/");
        assert_eq!(f.w.add_tree(&inner, &mut all).unwrap(), 2);
        assert_eq!(f.watch(), 1);
        assert_eq!(f.w.add_tree(&inner, &mut all).unwrap(), 0);
        assert_eq!(f.watched(), [f.p(b""), f.p(b"a/"), f.p(b"a/b/")]);
        // The inner root was linked into the outer tree: a move renames it.
        fs::rename(os(&f.p(b"a")), os(&f.p(b"c"))).unwrap();
        f.events();
        assert_eq!(f.watched(), [f.p(b""), f.p(b"c/"), f.p(b"c/b/")]);
    }

    #[test]
    fn for_each_is_ascending_by_wd_and_path_of_wd_agrees() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"a", b"b/c"]);
        f.watch();
        let mut seen = Vec::new();
        f.w.for_each(&mut |wd, p| seen.push((wd, p.to_vec())));
        assert_eq!(seen.len(), 4);
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
        for (wd, p) in &seen {
            assert_eq!(f.w.path_of_wd(*wd).as_ref(), Some(p));
        }
        assert_eq!(seen[0].1, f.root);
        assert_eq!(f.w.path_of_wd(9999), None);
    }

    #[test]
    fn an_unwatchable_root_is_an_error_naming_it_and_the_reason() {
        let mut f = Fixture::new(InotifyMode::CloseWrite);
        let gone = f.p(b"nope/");
        assert_eq!(
            root_error(f.w.add_tree(&gone, &mut all)),
            (gone, libc::ENOENT)
        );
        let file = f.p(b"file");
        fs::write(os(&file), b"").unwrap();
        let want = (cat(&file, b"/"), libc::ENOTDIR);
        assert_eq!(root_error(f.w.add_tree(&file, &mut all)), want);
        assert_eq!(f.w.len(), 0);
        let e = WatchError::Root {
            dir: b"/src/".to_vec(),
            err: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            e.to_string(),
            "Cannot watch source directory /src/: Permission denied (os error 13)"
        );
    }

    #[test]
    fn a_sub_directory_that_cannot_be_watched_is_skipped_with_the_reason() {
        let err = io::Error::from_raw_os_error;
        let e = err(libc::EACCES);
        assert_eq!(
            not_watched_message(b"/s/caf\xe9/", &e, false),
            b"Cannot watch /s/caf\xe9/: Permission denied (os error 13); its changes are seen \
              once it can be watched and is touched again (e.g. chmod)"
        );
        // Warnings, except for a directory that went away or was replaced since its listing.
        for (errno, category) in [
            (libc::EACCES, &b"Warn"[..]),
            (libc::ELOOP, b"Warn"),
            (libc::EPERM, b"Warn"),
            (libc::ENOENT, b"Inotify"),
            (libc::ENOTDIR, b"Inotify"),
        ] {
            assert_eq!(not_watched_category(&err(errno)), category, "errno {errno}");
        }
        let gone = not_watched_message(b"/s/d/", &err(libc::ENOENT), true);
        assert_eq!(
            gone,
            b"Cannot watch /s/d/: No such file or directory (os error 2)"
        );
        // A sub-directory gone between readdir and add_watch is skipped, the walk goes on.
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"a"]);
        f.watch();
        let mut root_wd = -1;
        f.w.for_each(&mut |wd, p| {
            if p == f.root {
                root_wd = wd;
            }
        });
        let root = f.w.reg.find_wd(root_wd).expect("the root is watched");
        let mut count = 0;
        let got = f.w.watch_at(root, b"x", &f.p(b"x/"), &mut count);
        assert!(matches!(got, Ok(None)), "{got:?}");
        assert_eq!(f.w.len(), 2);
    }

    /// Reads and returns the root events.
    fn root_events(f: &mut Fixture) -> Vec<(Vec<u8>, RootChange)> {
        f.events();
        f.w.take_root_events()
            .into_iter()
            .map(|e| (e.root, e.change))
            .collect()
    }

    /// Looks for absent roots as if `wait` had passed.
    fn look(f: &mut Fixture, wait: std::time::Duration) -> Vec<(Vec<u8>, RootChange)> {
        f.w.check_roots(Instant::now() + wait, &mut all).unwrap();
        f.w.take_root_events()
            .into_iter()
            .map(|e| (e.root, e.change))
            .collect()
    }

    #[test]
    fn a_root_moved_away_and_back_is_reported_both_ways_and_watched_again() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"a/b"]);
        let root = f.root.clone();
        assert_eq!(f.w.add_trees(&[&root], &mut all).unwrap(), 3);
        assert_eq!(f.w.next_root_check(), None);
        let away = cat(&f.top, b"away");
        fs::rename(os(&f.root), os(&away)).unwrap();
        assert_eq!(root_events(&mut f), [(root.clone(), RootChange::MovedAway)]);
        assert_eq!(f.w.len(), 0, "the moved tree's watches are dropped");
        // Changes in the moved tree are not reported under the old path.
        fs::write(os(&cat(&away, b"/a/f")), b"").unwrap();
        assert_eq!(f.events(), []);
        let first = f.w.next_root_check().expect("a look is scheduled");
        assert!(first > Instant::now());
        // Still away: looked for again later, each wait longer, up to the cap.
        assert_eq!(look(&mut f, roots::FIRST_RETRY), []);
        let second = f.w.next_root_check().unwrap();
        assert!(second > first);
        for _ in 0..10 {
            look(&mut f, roots::MAX_RETRY * 4);
        }
        let last = f.w.next_root_check().unwrap();
        assert!(last <= Instant::now() + roots::MAX_RETRY * 5 + std::time::Duration::from_secs(1));
        // Back: watched again with what it holds, reported once.
        fs::rename(os(&away), os(&f.root)).unwrap();
        assert_eq!(
            look(&mut f, roots::MAX_RETRY * 6),
            [(root.clone(), RootChange::Back)]
        );
        assert_eq!(f.w.next_root_check(), None);
        assert_eq!(f.watched(), [f.p(b""), f.p(b"a/"), f.p(b"a/b/")]);
        fs::write(os(&f.p(b"a/b/g")), b"").unwrap();
        assert_eq!(f.events()[0], e(FsKind::Create, f.p(b"a/b/g")));
    }

    #[test]
    fn a_root_deleted_and_recreated_is_reported_both_ways() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"a"]);
        let root = f.root.clone();
        f.w.add_trees(&[&root], &mut all).unwrap();
        fs::remove_dir_all(os(&f.root)).unwrap();
        assert_eq!(root_events(&mut f), [(root.clone(), RootChange::Deleted)]);
        assert_eq!(look(&mut f, roots::FIRST_RETRY), []);
        fs::create_dir(os(&f.root)).unwrap();
        assert_eq!(look(&mut f, roots::MAX_RETRY), [(root, RootChange::Back)]);
        assert_eq!(f.watched(), [f.p(b"")]);
    }

    #[test]
    fn a_nested_root_renamed_inside_the_outer_tree_is_gone_for_its_syncs_only() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"in/x", b"other"]);
        let (outer, inner) = (f.root.clone(), f.p(b"in/"));
        f.w.add_trees(&[&outer, &inner], &mut all).unwrap();
        fs::rename(os(&f.p(b"in")), os(&f.p(b"moved"))).unwrap();
        assert_eq!(
            root_events(&mut f),
            [(inner.clone(), RootChange::MovedAway)]
        );
        // The outer tree still watches it at its new place.
        assert!(f.watched().contains(&f.p(b"moved/x/")));
        fs::create_dir(os(&inner)).unwrap();
        f.events();
        assert_eq!(
            look(&mut f, roots::FIRST_RETRY),
            [(inner.clone(), RootChange::Back)]
        );
        // Deleted through the outer tree's events.
        fs::remove_dir(os(&inner)).unwrap();
        assert_eq!(root_events(&mut f), [(inner, RootChange::Deleted)]);
    }

    #[test]
    fn tiny_read_buffer_grows_and_pairs_moves_across_reads() {
        let mut f = Fixture::new(InotifyMode::CloseWrite);
        f.watch();
        fs::write(os(&f.p(b"a")), b"").unwrap();
        f.events();
        // One 18-byte-name event per read: the move-to comes in the read after the move-from.
        f.w.queue.buf = vec![0; EVENT_HEADER + 20];
        fs::rename(os(&f.p(b"a")), os(&f.p(b"b"))).unwrap();
        assert_eq!(
            f.events(),
            [FsEvent {
                kind: FsKind::Move,
                path: f.p(b"a"),
                path2: Some(f.p(b"b")),
                monitor: Monitor::Inotify,
            }]
        );
        // A name that does not fit: the kernel says EINVAL, the buffer doubles.
        let long = f.p(&[b'x'; 200]);
        fs::write(os(&long), b"").unwrap();
        assert_eq!(f.events()[0], e(FsKind::Create, long));
        assert!(f.w.queue.buf.len() >= EVENT_HEADER + 200);
    }

    #[test]
    fn dir_moved_from_unconcerned_place_gets_watched() {
        let mut f = Fixture::with_tree(InotifyMode::CloseWrite, &[b"skip/x/y"]);
        let skip = f.p(b"skip/");
        let mut not_skip = |p: &[u8]| !p.starts_with(&skip);
        let root = f.root.clone();
        assert_eq!(f.w.add_tree(&root, &mut not_skip).unwrap(), 1);
        fs::rename(os(&f.p(b"skip/x")), os(&f.p(b"x"))).unwrap();
        // skip/ is not watched, so only the move-to is seen: a Create.
        let mut out = Vec::new();
        f.w.read(&mut out, &mut not_skip).unwrap();
        assert_eq!(out, [e(FsKind::Create, f.p(b"x/"))]);
        assert_eq!(f.watched(), [f.p(b""), f.p(b"x/"), f.p(b"x/y/")]);
    }

    #[test]
    fn churn_reuses_slots_and_keeps_memory_bounded() {
        let mut f = Fixture::new(InotifyMode::CloseWrite);
        f.watch();
        let mut peak = 0;
        for round in 0..5 {
            for i in 0..300 {
                let name = format!("round-{round}-directory-number-{i}");
                fs::create_dir(os(&f.p(name.as_bytes()))).unwrap();
            }
            assert_eq!(f.events().len(), 300);
            assert_eq!(f.w.len(), 301);
            peak = peak.max(f.w.reg.heap_bytes());
            for i in 0..300 {
                let name = format!("round-{round}-directory-number-{i}");
                fs::remove_dir(os(&f.p(name.as_bytes()))).unwrap();
            }
            assert_eq!(f.events().len(), 300);
            assert_eq!(f.w.len(), 1);
        }
        assert_eq!(f.w.reg.nodes.len(), 301, "free slots were reused");
        assert!(f.w.reg.names.len() < 300 * 40, "names were compacted");
        assert!(f.w.reg.heap_bytes() <= peak);
    }

    #[test]
    fn a_long_queue_is_read_in_batches_and_nothing_is_lost() {
        let mut f = Fixture::new(InotifyMode::CloseWrite);
        f.w.queue.batch = 3;
        f.w.queue.buf = vec![0; 64]; // about two events per read(2)
        f.watch();
        for i in 0..10 {
            fs::write(os(&f.p(format!("f{i}").as_bytes())), b"x").unwrap();
        }
        let mut all_events = Vec::new();
        let mut reads = 0;
        loop {
            reads += 1;
            let mut out = Vec::new();
            let outcome = f.w.read(&mut out, &mut all).unwrap();
            all_events.extend(out.iter().map(|e| e.path.clone()));
            match outcome {
                ReadOutcome::More => assert!(out.len() >= 3, "More only once a batch is full"),
                ReadOutcome::Ok => break,
                ReadOutcome::Overflow => panic!("overflow"),
            }
            assert!(reads < 100);
        }
        let out = all_events;
        assert!(
            reads >= 4,
            "a queue of 20 events came back in batches: {reads} reads"
        );
        assert_eq!(out.len(), 20, "a Create and a Modify for each of 10 files");
    }

    #[test]
    fn queue_overflow_is_reported() {
        let max: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(16384);
        assert!(
            max <= 200_000,
            "fs.inotify.max_queued_events is {max}: too large to fill in a test"
        );
        let mut f = Fixture::new(InotifyMode::CloseWrite);
        f.watch();
        let files = [f.p(b"a"), f.p(b"b")];
        for file in &files {
            fs::write(os(file), b"").unwrap();
        }
        // Alternating files, so the kernel cannot merge consecutive identical events.
        for i in 0..max + 10 {
            let mode = fs::Permissions::from_mode(0o600 | ((i as u32 & 1) << 2));
            fs::set_permissions(os(&files[i % 2]), mode).unwrap();
        }
        let mut out = Vec::new();
        assert_eq!(f.w.read(&mut out, &mut all).unwrap(), ReadOutcome::Overflow);
        assert!(!out.is_empty());
    }
}
