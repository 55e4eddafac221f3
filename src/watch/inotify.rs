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
use std::io::{self, Read};
use std::mem;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};

use super::tree::{Handle, Registry, NO_NODE};
use super::{FsEvent, FsKind, InotifyMode, Monitor, ReadOutcome, WatchError, READ_BATCH};

impl InotifyMode {
    fn mask(self) -> WatchMask {
        // SPEC §3.1. DONT_FOLLOW: symlinks in the tree are files to us. ONLYDIR: a directory
        // replaced by a file between readdir and add_watch fails instead of being watched.
        let base = WatchMask::ATTRIB
            | WatchMask::CLOSE_WRITE
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::DELETE_SELF
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

// ---------------------------------------------------------------------------------------------
// Raw events and their translation (pure: no I/O, no registry)

/// `sizeof(struct inotify_event)` without the name: wd, mask, cookie, len.
const EVENT_HEADER: usize = 16;

/// One kernel record as read from the fd; `name` without its NUL padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RawEvent<'a> {
    wd: i32,
    mask: u32,
    cookie: u32,
    name: &'a [u8],
}

/// Iterates the records of one `read()`. Parsed with `from_ne_bytes`, so no alignment or unsafe
/// concerns; a truncated tail (never produced by the kernel) ends the iteration.
struct RawEvents<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for RawEvents<'a> {
    type Item = RawEvent<'a>;

    fn next(&mut self) -> Option<RawEvent<'a>> {
        let field = |at: usize| -> Option<[u8; 4]> { self.buf.get(at..at + 4)?.try_into().ok() };
        let wd = i32::from_ne_bytes(field(0)?);
        let mask = u32::from_ne_bytes(field(4)?);
        let cookie = u32::from_ne_bytes(field(8)?);
        let len = u32::from_ne_bytes(field(12)?) as usize;
        let end = EVENT_HEADER.checked_add(len)?;
        let Some(padded) = self.buf.get(EVENT_HEADER..end) else {
            self.buf = &[];
            return None;
        };
        self.buf = &self.buf[end..];
        let name = match padded.iter().position(|&b| b == 0) {
            Some(nul) => &padded[..nul],
            None => padded,
        };
        Some(RawEvent {
            wd,
            mask,
            cookie,
            name,
        })
    }
}

/// A raw event after pairing and classification, still in wd + name form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step<'a> {
    Overflow,
    /// The kernel dropped this watch (directory gone, unmounted, or we removed it).
    Ignored {
        wd: i32,
    },
    Event {
        kind: FsKind,
        wd: i32,
        name: &'a [u8],
        is_dir: bool,
    },
    Move {
        from_wd: i32,
        from_name: &'a [u8],
        to_wd: i32,
        to_name: &'a [u8],
        is_dir: bool,
    },
}

/// SPEC §3.3 step 5: the first matching bit decides.
fn classify(mask: u32) -> Option<FsKind> {
    if mask & libc::IN_MOVED_TO != 0 {
        Some(FsKind::Create)
    } else if mask & libc::IN_ATTRIB != 0 {
        Some(FsKind::Attrib)
    } else if mask & (libc::IN_CLOSE_WRITE | libc::IN_MODIFY) != 0 {
        Some(FsKind::Modify)
    } else if mask & libc::IN_CREATE != 0 {
        Some(FsKind::Create)
    } else if mask & libc::IN_DELETE != 0 {
        Some(FsKind::Delete)
    } else {
        None
    }
}

/// The one-slot `MOVED_FROM` buffer of SPEC §3.4. The name buffer is reused between moves.
#[derive(Debug, Default)]
struct Pairer {
    pending: Option<(i32, u32, bool)>,
    name: Vec<u8>,
}

type Emit<'e, E> = &'e mut dyn FnMut(Step<'_>) -> Result<(), E>;

impl Pairer {
    /// Translates one raw event (SPEC §3.3 order). `Ok(false)` after an overflow: the caller
    /// drops the rest of the buffer.
    fn feed<E>(&mut self, ev: RawEvent<'_>, emit: Emit<'_, E>) -> Result<bool, E> {
        if ev.mask & libc::IN_Q_OVERFLOW != 0 {
            self.finish(emit)?;
            emit(Step::Overflow)?;
            return Ok(false);
        }
        if ev.mask & libc::IN_IGNORED != 0 {
            emit(Step::Ignored { wd: ev.wd })?;
            return Ok(true);
        }
        if ev.name.is_empty() {
            return Ok(true);
        }
        let is_dir = ev.mask & libc::IN_ISDIR != 0;
        if let Some((from_wd, cookie, from_dir)) = self.pending.take() {
            if ev.mask & libc::IN_MOVED_TO != 0 && ev.cookie == cookie {
                emit(Step::Move {
                    from_wd,
                    from_name: &self.name,
                    to_wd: ev.wd,
                    to_name: ev.name,
                    is_dir: is_dir || from_dir,
                })?;
                return Ok(true);
            }
            crate::log::with(b"Inotify", || {
                b"icore, changing unary MOVE_FROM into DELETE".to_vec()
            });
            emit(Step::Event {
                kind: FsKind::Delete,
                wd: from_wd,
                name: &self.name,
                is_dir: from_dir,
            })?;
        }
        if ev.mask & libc::IN_MOVED_FROM != 0 {
            self.name.clear();
            self.name.extend_from_slice(ev.name);
            self.pending = Some((ev.wd, ev.cookie, is_dir));
            return Ok(true);
        }
        if let Some(kind) = classify(ev.mask) {
            emit(Step::Event {
                kind,
                wd: ev.wd,
                name: ev.name,
                is_dir,
            })?;
        }
        Ok(true)
    }

    /// End of the burst: a still unpaired `MOVED_FROM` becomes a `Delete`.
    fn finish<E>(&mut self, emit: Emit<'_, E>) -> Result<(), E> {
        match self.pending.take() {
            Some((wd, _, is_dir)) => {
                crate::log::with(b"Inotify", || b"handling unary move from.".to_vec());
                emit(Step::Event {
                    kind: FsKind::Delete,
                    wd,
                    name: &self.name,
                    is_dir,
                })
            }
            None => Ok(()),
        }
    }
}

/// The `Inotify` log line of a raw event, as upstream words it: `got event Create d/(1)`, or
/// `got event Move a(1) to b(2)`. Returns `wd` for the caller to go on with.
fn log_event(kind: FsKind, wd: i32, name: &[u8], is_dir: bool, to: Option<(i32, &[u8])>) -> i32 {
    crate::log::with(b"Inotify", || {
        let kind = match kind {
            FsKind::Attrib => "Attrib",
            FsKind::Modify => "Modify",
            FsKind::Create => "Create",
            FsKind::Delete => "Delete",
            FsKind::Move => "Move",
        };
        let slash: &[u8] = if is_dir { b"/" } else { b"" };
        let mut m = format!("got event {kind} ").into_bytes();
        m.extend_from_slice(name);
        m.extend_from_slice(slash);
        m.extend_from_slice(format!("({wd})").as_bytes());
        if let Some((wd2, name2)) = to {
            m.extend_from_slice(b" to ");
            m.extend_from_slice(name2);
            m.extend_from_slice(slash);
            m.extend_from_slice(format!("({wd2})").as_bytes());
        }
        m
    });
    wd
}

fn log_not_concerning(path: &[u8]) {
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
    reader: File,
    mask: WatchMask,
    reg: Registry<WatchDescriptor>,
    buf: Vec<u8>,
    pairer: Pairer,
    /// Scratch space of `walk`, kept to avoid allocations per directory.
    stack: Vec<(u32, i32)>,
    path: Vec<u8>,
    dropped: Vec<WatchDescriptor>,
    /// The most events one `read` returns ([`READ_BATCH`]; smaller in tests).
    batch: usize,
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
            reader,
            mask: mode.mask(),
            reg: Registry::new(),
            buf: vec![0; READ_BUF],
            pairer: Pairer::default(),
            stack: Vec::new(),
            path: Vec::new(),
            dropped: Vec::new(),
            batch: READ_BATCH,
        })
    }

    /// The inotify fd, for registration with the poll loop (readable = events queued).
    pub(crate) fn as_raw_fd(&self) -> RawFd {
        self.inotify.as_raw_fd()
    }

    /// Heap bytes held by the registry (capacities), for the memory benchmark.
    #[cfg(test)]
    #[allow(dead_code)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.reg.heap_bytes()
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
                .any(|&(r, idx, wd)| self.reaches(&dirs[r], idx, wd, dir));
            if reached {
                continue;
            }
            if let Some(idx) = self.add_root(dir, concerns, &mut count)? {
                walked.push((i, idx, self.reg.wd(idx)));
            }
        }
        Ok(count)
    }

    /// Whether the walk from `root` (node `idx`, still holding `wd`) registered `dir`.
    fn reaches(&self, root: &[u8], idx: u32, wd: i32, dir: &[u8]) -> bool {
        let Some(rest) = dir.strip_prefix(root) else {
            return false;
        };
        let mut node = idx;
        for name in rest.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
            match self.reg.find_child(node, name) {
                Some(child) => node = child,
                None => return false,
            }
        }
        self.reg.holds(idx, wd)
    }

    /// Reads every queued event (until `EAGAIN`), appends the translations to `out` in order
    /// and keeps the registry current (SPEC §3.3–§3.5, §15 item 18). Stops at `IN_Q_OVERFLOW`.
    pub(crate) fn read(
        &mut self,
        out: &mut Vec<FsEvent>,
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<ReadOutcome, WatchError> {
        let mut buf = mem::take(&mut self.buf);
        let mut pairer = mem::take(&mut self.pairer);
        let result = self.read_into(&mut buf, &mut pairer, out, concerns);
        self.buf = buf;
        self.pairer = pairer;
        result
    }

    fn read_into(
        &mut self,
        buf: &mut Vec<u8>,
        pairer: &mut Pairer,
        out: &mut Vec<FsEvent>,
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<ReadOutcome, WatchError> {
        loop {
            let read = self.reader.read(buf);
            let mut emit = |step: Step<'_>| self.apply(step, out, concerns);
            let n = match read {
                Ok(0) => {
                    pairer.finish(&mut emit)?;
                    return Err(WatchError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(n) => n,
                // End of the burst. A MOVED_FROM still buffered here has survived one more
                // read than the one that delivered it: it was a move out (SPEC §3.4).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    pairer.finish(&mut emit)?;
                    return Ok(ReadOutcome::Ok);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && buf.len() < READ_BUF_MAX => {
                    buf.resize(buf.len() * 2, 0);
                    continue;
                }
                Err(e) => {
                    pairer.finish(&mut emit)?;
                    return Err(WatchError::Io(e));
                }
            };
            for ev in (RawEvents { buf: &buf[..n] }) {
                if !pairer.feed(ev, &mut emit)? {
                    return Ok(ReadOutcome::Overflow);
                }
            }
            if out.len() >= self.batch {
                return Ok(ReadOutcome::More);
            }
        }
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
                    self.drop_subtree(idx, true);
                }
                Ok(())
            }
            Step::Event {
                kind,
                wd,
                name,
                is_dir,
            } => match self.reg.find_wd(log_event(kind, wd, name, is_dir, None)) {
                // Unknown wd: normal for events of just-removed directories.
                None => {
                    crate::log::with(b"Inotify", || {
                        b"event belongs to unknown watch descriptor.".to_vec()
                    });
                    Ok(())
                }
                Some(dir) => self.simple(kind, dir, name, is_dir, out, concerns),
            },
            Step::Move {
                from_wd,
                from_name,
                to_wd,
                to_name,
                is_dir,
            } => match (
                self.reg.find_wd(log_event(
                    FsKind::Move,
                    from_wd,
                    from_name,
                    is_dir,
                    Some((to_wd, to_name)),
                )),
                self.reg.find_wd(to_wd),
            ) {
                (None, None) => Ok(()),
                (None, Some(to)) => {
                    crate::log::with(b"Inotify", || {
                        let mut m = b"Move from deleted directory ".to_vec();
                        m.extend_from_slice(&self.child_path(to, to_name, is_dir));
                        m.extend_from_slice(b" becomes Create.");
                        m
                    });
                    self.simple(FsKind::Create, to, to_name, is_dir, out, concerns)
                }
                (Some(from), None) => {
                    self.simple(FsKind::Delete, from, from_name, is_dir, out, concerns)
                }
                (Some(from), Some(to)) => {
                    let path = self.child_path(from, from_name, is_dir);
                    let path2 = self.child_path(to, to_name, is_dir);
                    if is_dir {
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
            },
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
        if is_dir {
            match kind {
                FsKind::Create => self.watch_new(dir, name, &path, concerns)?,
                // Deleted or moved out: forget the sub-tree, release still-live watches.
                FsKind::Delete => {
                    if let Some(child) = self.reg.find_child(dir, name) {
                        self.drop_subtree(child, false);
                    }
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
                self.drop_subtree(stale, false);
            }
            return Ok(());
        }
        let mut count = 0;
        if let Some(idx) = self.watch_at(parent, name, path, &mut count)? {
            self.walk(idx, concerns, &mut count)?;
        }
        Ok(())
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
                self.drop_subtree(replaced, false);
            }
        }
        if !concerns(path2) || self.reg.is_ancestor_or_self(moved, to) {
            self.drop_subtree(moved, false);
            return Ok(());
        }
        if !self.reg.rename(moved, to, to_name) {
            self.drop_subtree(moved, false);
            return Ok(());
        }
        let mut count = 0;
        self.walk(moved, concerns, &mut count)
    }

    /// `inotify_add_watch` on a directory path ending in `/`. `Ok(None)`: skip it (vanished,
    /// not a directory, a symlink, unreadable, ...). Only `ENOSPC` is an error.
    fn add_watch(&mut self, dir: &[u8]) -> Result<Option<WatchDescriptor>, WatchError> {
        // Without the trailing slash: with it, the kernel would follow a symlink.
        let bare = match dir {
            b"/" => dir,
            [rest @ .., b'/'] => rest,
            _ => dir,
        };
        match self
            .watches
            .add(Path::new(OsStr::from_bytes(bare)), self.mask)
        {
            Ok(wd) => {
                crate::log::with(b"Inotify", || {
                    let mut m = b"addwatch( ".to_vec();
                    m.extend_from_slice(dir);
                    m.extend_from_slice(format!(" )-> {} ", wd.id()).as_bytes());
                    m
                });
                Ok(Some(wd))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                Err(WatchError::Limit { dir: dir.to_vec() })
            }
            Err(e) => {
                crate::log::with(b"Inotify", || {
                    let mut m = b"addwatch( ".to_vec();
                    m.extend_from_slice(dir);
                    let errno = e.raw_os_error().unwrap_or(0);
                    m.extend_from_slice(format!(" )-> -1; err= {errno} : {e}").as_bytes());
                    m
                });
                Ok(None)
            }
        }
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
        let Some(wd) = self.add_watch(path)? else {
            return Ok(None);
        };
        let Some(known) = self.reg.find_wd(wd.id()) else {
            if parent != NO_NODE {
                if let Some(stale) = self.reg.find_child(parent, name) {
                    self.drop_subtree(stale, false);
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
                self.drop_subtree(stale, false);
            }
        }
        if self.reg.rename(known, parent, name) {
            Ok(Some(known))
        } else {
            self.drop_subtree(known, false);
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
                        self.drop_subtree(child, false);
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
    /// already dropped `idx`'s own watch (`IN_IGNORED`).
    fn drop_subtree(&mut self, idx: u32, own_gone: bool) {
        let mut dropped = mem::take(&mut self.dropped);
        self.reg.remove_subtree(idx, &mut dropped);
        for (i, wd) in dropped.drain(..).enumerate() {
            crate::log::with(b"Inotify", || {
                format!("rmwatch()<-{}", wd.id()).into_bytes()
            });
            if !(own_gone && i == 0) {
                let _ = self.watches.remove(wd);
            }
        }
        self.dropped = dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn raw(wd: i32, mask: u32, cookie: u32, name: &[u8], pad: usize) -> Vec<u8> {
        let mut v = Vec::new();
        let len = if name.is_empty() { 0 } else { name.len() + pad };
        v.extend_from_slice(&wd.to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&cookie.to_ne_bytes());
        v.extend_from_slice(&(len as u32).to_ne_bytes());
        v.extend_from_slice(name);
        v.resize(v.len() + len - name.len(), 0);
        v
    }

    #[test]
    fn raw_events_parse_names_without_padding_and_stop_at_truncation() {
        let mut buf = raw(1, libc::IN_CREATE, 0, b"caf\xe9", 12);
        buf.extend(raw(-1, libc::IN_Q_OVERFLOW, 0, b"", 0));
        buf.extend(raw(2, libc::IN_MOVED_TO, 7, b"a b\nc", 3));
        let truncated = raw(3, libc::IN_DELETE, 0, b"cut", 13);
        buf.extend_from_slice(&truncated[..20]);
        let got: Vec<_> = RawEvents { buf: &buf }.collect();
        let want = [
            RawEvent {
                wd: 1,
                mask: libc::IN_CREATE,
                cookie: 0,
                name: b"caf\xe9",
            },
            RawEvent {
                wd: -1,
                mask: libc::IN_Q_OVERFLOW,
                cookie: 0,
                name: b"",
            },
            RawEvent {
                wd: 2,
                mask: libc::IN_MOVED_TO,
                cookie: 7,
                name: b"a b\nc",
            },
        ];
        assert_eq!(got, want);
    }

    /// Owned form of a `Step` for comparisons: (what, wd, name, wd2, name2).
    type Out = (&'static str, i32, Vec<u8>, i32, Vec<u8>);

    fn translate(events: &[RawEvent<'_>]) -> Vec<Out> {
        let mut pairer = Pairer::default();
        let mut got: Vec<Out> = Vec::new();
        let mut emit = |s: Step<'_>| -> Result<(), ()> {
            got.push(match s {
                Step::Overflow => ("overflow", 0, vec![], 0, vec![]),
                Step::Ignored { wd } => ("ignored", wd, vec![], 0, vec![]),
                Step::Event {
                    kind,
                    wd,
                    name,
                    is_dir,
                } => {
                    let what = match (kind, is_dir) {
                        (FsKind::Attrib, _) => "attrib",
                        (FsKind::Modify, _) => "modify",
                        (FsKind::Create, false) => "create",
                        (FsKind::Create, true) => "create dir",
                        (FsKind::Delete, false) => "delete",
                        (FsKind::Delete, true) => "delete dir",
                        (FsKind::Move, _) => "bad",
                    };
                    (what, wd, name.to_vec(), 0, vec![])
                }
                Step::Move {
                    from_wd,
                    from_name,
                    to_wd,
                    to_name,
                    is_dir,
                } => (
                    if is_dir { "move dir" } else { "move" },
                    from_wd,
                    from_name.to_vec(),
                    to_wd,
                    to_name.to_vec(),
                ),
            });
            Ok(())
        };
        for &ev in events {
            if !pairer.feed(ev, &mut emit).unwrap() {
                return got;
            }
        }
        pairer.finish(&mut emit).unwrap();
        got
    }

    fn ev(wd: i32, mask: u32, cookie: u32, name: &'static [u8]) -> RawEvent<'static> {
        RawEvent {
            wd,
            mask,
            cookie,
            name,
        }
    }

    fn o(what: &'static str, wd: i32, name: &[u8], wd2: i32, name2: &[u8]) -> Out {
        (what, wd, name.to_vec(), wd2, name2.to_vec())
    }

    #[test]
    fn translation_follows_spec_order_and_pairs_moves() {
        use libc::*;
        let cases: Vec<(&str, Vec<RawEvent<'static>>, Vec<Out>)> = vec![
            (
                "first matching bit decides",
                vec![
                    ev(1, IN_ATTRIB, 0, b"a"),
                    ev(1, IN_CLOSE_WRITE, 0, b"b"),
                    ev(1, IN_MODIFY, 0, b"c"),
                    ev(1, IN_CREATE | IN_ISDIR, 0, b"d"),
                    ev(1, IN_DELETE, 0, b"e"),
                    ev(1, IN_ATTRIB | IN_CREATE, 0, b"f"),
                    ev(1, IN_OPEN, 0, b"skipped"),
                ],
                vec![
                    o("attrib", 1, b"a", 0, b""),
                    o("modify", 1, b"b", 0, b""),
                    o("modify", 1, b"c", 0, b""),
                    o("create dir", 1, b"d", 0, b""),
                    o("delete", 1, b"e", 0, b""),
                    o("attrib", 1, b"f", 0, b""),
                ],
            ),
            (
                "name-less events are ignored, IN_IGNORED reported for bookkeeping",
                vec![
                    ev(2, IN_DELETE_SELF, 0, b""),
                    ev(2, IN_ATTRIB | IN_ISDIR, 0, b""),
                    ev(2, IN_IGNORED, 0, b""),
                ],
                vec![o("ignored", 2, b"", 0, b"")],
            ),
            (
                "same cookie pairs into one move, across watches",
                vec![
                    ev(1, IN_MOVED_FROM, 5, b"old"),
                    ev(3, IN_MOVED_TO, 5, b"new"),
                ],
                vec![o("move", 1, b"old", 3, b"new")],
            ),
            (
                "directory move keeps the directory flag",
                vec![
                    ev(1, IN_MOVED_FROM | IN_ISDIR, 5, b"d"),
                    ev(1, IN_MOVED_TO | IN_ISDIR, 5, b"e"),
                ],
                vec![o("move dir", 1, b"d", 1, b"e")],
            ),
            (
                "other cookie: delete first, then the unpaired move-to is a create",
                vec![
                    ev(1, IN_MOVED_FROM, 5, b"old"),
                    ev(1, IN_MOVED_TO, 6, b"in"),
                ],
                vec![
                    o("delete", 1, b"old", 0, b""),
                    o("create", 1, b"in", 0, b""),
                ],
            ),
            (
                "any other event flushes the buffered move-from as delete",
                vec![ev(1, IN_MOVED_FROM, 5, b"old"), ev(1, IN_CREATE, 0, b"x")],
                vec![o("delete", 1, b"old", 0, b""), o("create", 1, b"x", 0, b"")],
            ),
            (
                "name-less events do not disturb pairing",
                vec![
                    ev(1, IN_MOVED_FROM | IN_ISDIR, 5, b"d"),
                    ev(4, IN_MOVE_SELF, 0, b""),
                    ev(2, IN_MOVED_TO | IN_ISDIR, 5, b"d"),
                ],
                vec![o("move dir", 1, b"d", 2, b"d")],
            ),
            (
                "a second move-from replaces the first, which becomes delete",
                vec![
                    ev(1, IN_MOVED_FROM, 5, b"a"),
                    ev(1, IN_MOVED_FROM | IN_ISDIR, 6, b"b"),
                ],
                vec![
                    o("delete", 1, b"a", 0, b""),
                    o("delete dir", 1, b"b", 0, b""),
                ],
            ),
            (
                "unpaired move-to is a create",
                vec![ev(1, IN_MOVED_TO | IN_ISDIR, 9, b"in")],
                vec![o("create dir", 1, b"in", 0, b"")],
            ),
            (
                "overflow flushes the pending move and drops the rest of the buffer",
                vec![
                    ev(1, IN_CREATE, 0, b"a"),
                    ev(1, IN_MOVED_FROM, 5, b"m"),
                    ev(-1, IN_Q_OVERFLOW, 0, b""),
                    ev(1, IN_DELETE, 0, b"lost"),
                ],
                vec![
                    o("create", 1, b"a", 0, b""),
                    o("delete", 1, b"m", 0, b""),
                    o("overflow", 0, b"", 0, b""),
                ],
            ),
        ];
        for (what, input, want) in cases {
            assert_eq!(translate(&input), want, "{what}");
        }
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

        fn watch(&mut self) -> usize {
            let root = self.root.clone();
            self.w.add_tree(&root, &mut all).unwrap()
        }

        fn events(&mut self) -> Vec<FsEvent> {
            let mut out = Vec::new();
            assert_eq!(self.w.read(&mut out, &mut all).unwrap(), ReadOutcome::Ok);
            out
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
        fs::write(os(&f.p(b"a/b/c/f")), b"").unwrap();
        assert_eq!(
            f.events(),
            [
                e(FsKind::Create, f.p(b"a/b/c/f")),
                e(FsKind::Modify, f.p(b"a/b/c/f"))
            ]
        );
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
        fs::write(os(&f.p(b"other/z/y/f")), b"").unwrap();
        assert_eq!(
            f.events(),
            [
                e(FsKind::Create, f.p(b"other/z/y/f")),
                e(FsKind::Modify, f.p(b"other/z/y/f"))
            ]
        );
        assert_eq!(
            f.watched(),
            [
                f.p(b""),
                f.p(b"other/"),
                f.p(b"other/z/"),
                f.p(b"other/z/y/")
            ]
        );
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
            f.w.reader.read(&mut buf).unwrap_err().kind(),
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
        fs::write(os(&f.p(b"q/r/s/f")), b"").unwrap();
        assert_eq!(
            f.events(),
            [
                e(FsKind::Create, f.p(b"q/r/s/f")),
                e(FsKind::Modify, f.p(b"q/r/s/f"))
            ]
        );
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
        assert_eq!(f.w.add_tree(&link, &mut all).unwrap(), 0);
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
            [
                f.p(b""),
                f.p(b"a/"),
                f.p(b"a/b/"),
                f.p(b"a/c/"),
                f.p(b"d/"),
                f.p(b"d/e/"),
                f.p(b"x/y/"),
                f.p(b"x/y/z/")
            ]
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
    fn vanished_root_is_skipped_silently() {
        let mut f = Fixture::new(InotifyMode::CloseWrite);
        let gone = f.p(b"nope/");
        assert_eq!(f.w.add_tree(&gone, &mut all).unwrap(), 0);
        let file = f.p(b"file");
        fs::write(os(&file), b"").unwrap();
        assert_eq!(f.w.add_tree(&file, &mut all).unwrap(), 0);
        assert_eq!(f.w.len(), 0);
    }

    #[test]
    fn tiny_read_buffer_grows_and_pairs_moves_across_reads() {
        let mut f = Fixture::new(InotifyMode::CloseWrite);
        f.watch();
        fs::write(os(&f.p(b"a")), b"").unwrap();
        f.events();
        // One 18-byte-name event per read: the move-to comes in the read after the move-from.
        f.w.buf = vec![0; EVENT_HEADER + 20];
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
        assert!(f.w.buf.len() >= EVENT_HEADER + 200);
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
        f.w.batch = 3;
        f.w.buf = vec![0; 64]; // about two events per read(2)
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
