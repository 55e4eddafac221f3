//! The fanotify monitor: one filesystem-wide mark per filesystem that holds a source, so no
//! directory is ever walked or watched one by one, and no new directory can race its watch.
//!
//! Owns: the fanotify group (`FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME`, close-on-exec,
//! non-blocking), its marks (a `FAN_MARK_FILESYSTEM` mark per filesystem at or below a source, an
//! inode mark on each source root for its own deletion or move), one `O_PATH` fd per marked
//! filesystem to decode handles with, the directory-handle cache, the preflight that says why a
//! source cannot be watched this way, and the translation of records into [`FsEvent`]s.
//! Must not touch: syncs, delays, excludes (asked through the `concerns` callback, as the
//! inotify monitor does), Lua, logging.
//!
//! # How records become events
//!
//! - A record names a directory by handle plus an entry name. The handle is resolved with
//!   `open_by_handle_at` + `readlink(/proc/self/fd/N)` and cached, bounded: the cache maps
//!   (fsid, handle) to the directory's path, or to "not ours" (outside every source, or below a
//!   directory the syncs do not watch: exclusions act exactly as in inotify mode, where such a
//!   directory gets no watch). Events on the whole filesystem arrive, so "not ours" must be cheap:
//!   a cache hit and a drop.
//! - A directory rename touching a source clears the cache (paths below it changed); a rename
//!   elsewhere cannot change a path inside a source, so it keeps it.
//! - A directory that is gone by the time its record is read (`ESTALE`) keeps its cached path;
//!   an unknown one is dropped: the removal of the topmost deleted directory still arrives from
//!   its live parent and covers the rest.
//! - Paths are those at read time and the kernel merges records of one name (masks ORed). So a
//!   record is "this name changed": a merged create+delete is decided by `lstat`; a directory
//!   rename is Delete(old) + Create(new) (the Create syncs the tree recursively), never a
//!   remote move whose earlier events might already name the new path. A file rename (exact,
//!   never merged) is a Move; into a source it is a Create, out of one a Delete. Its origin
//!   may be named by a later rename of its directory; `moves` sends the destinations of such
//!   moves again when that rename is read.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;

use super::queue::{KernelQueue, Pass, Queue};
use super::record::{i32_at, u32_at, until_nul};
use super::{FsEvent, FsKind, InotifyMode, Monitor, ReadOutcome, RootEvent, WatchError};
use crate::sys;

mod moves;
mod roots;

use roots::Root;

/// The directory cache is cleared when it reaches this many entries (about 100 bytes each).
const CACHE_MAX: usize = 65536;
/// Read buffer; records are 60-odd bytes.
const READ_BUF: usize = 256 * 1024;
/// `fanotify_event_metadata`: event_len u32, vers u8, reserved u8, metadata_len u16, mask u64,
/// fd i32, pid i32.
const META_LEN: usize = 24;
const FANOTIFY_METADATA_VERSION: u8 = 3;

/// Why fanotify cannot watch a source; the text names the reason for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal(pub(crate) String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One marked filesystem: the fd handles are decoded through, and its id in records.
#[derive(Debug)]
struct Marked {
    fsid: [i32; 2],
    mount_fd: OwnedFd,
    /// Where it was marked (a source, or a mount point below one), for the status file.
    path: Vec<u8>,
    fs_name: &'static str,
}

/// The fanotify group with its marks and caches.
#[derive(Debug)]
pub(crate) struct Fanotify {
    /// The group fd and its read buffer.
    queue: KernelQueue,
    mask: u64,
    marked: Vec<Marked>,
    roots: Vec<Root>,
    /// (fsid, handle type, handle) bytes → the directory path (ending in `/`), or `None` when
    /// the directory is not watched by any sync.
    cache: HashMap<Box<[u8]>, Option<Box<[u8]>>>,
    key: Vec<u8>,
    /// Source roots that went away or came back, not handed out yet (see `roots`).
    root_events: Vec<RootEvent>,
    /// Paths of the non-rename records handled in the current `read` (see `rename_events`).
    touched: HashSet<Vec<u8>>,
    /// File moves handed out lately, corrected by later directory renames (see `moves`).
    moves: moves::RecentMoves,
    pub(crate) stats: Stats,
}

/// Counters for the status file.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    /// Records read.
    pub(crate) records: u64,
    /// Records of directories outside every source, or not watched by any sync, dropped.
    pub(crate) outside: u64,
    /// Directory handles found in the cache.
    pub(crate) cache_hits: u64,
    /// Records of a directory not cached and no longer openable (gone: `ESTALE`), dropped.
    pub(crate) stale: u64,
}

/// `FAN_Q_OVERFLOW` stops reading.
impl Queue for Fanotify {
    fn queue(&mut self) -> &mut KernelQueue {
        &mut self.queue
    }

    fn records(pass: &mut Pass<'_, Self>, bytes: &[u8]) -> Result<bool, WatchError> {
        for ev in (RawEvents { buf: bytes }) {
            pass.m.stats.records += 1;
            if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
                return Ok(false);
            }
            pass.m.translate(ev, pass.out, pass.concerns);
        }
        Ok(true)
    }

    fn pass_start(&mut self) {
        self.moves.expire(Instant::now());
    }

    /// The queue was empty (or is dropped): nothing read later can merge into the records of
    /// this pass.
    fn pass_end(&mut self, result: &Result<ReadOutcome, WatchError>) {
        if !matches!(result, Ok(ReadOutcome::More)) {
            self.touched.clear();
        }
    }
}

/// `FAN_*` bits of a mark, from `inotifyMode` (as the inotify watch mask).
fn fs_mask(mode: InotifyMode) -> u64 {
    let base = libc::FAN_CREATE | libc::FAN_DELETE | libc::FAN_RENAME | libc::FAN_ATTRIB;
    let writes = match mode {
        InotifyMode::CloseWrite => libc::FAN_CLOSE_WRITE,
        InotifyMode::Modify => libc::FAN_MODIFY,
        InotifyMode::CloseWriteOrModify => libc::FAN_CLOSE_WRITE | libc::FAN_MODIFY,
    };
    base | writes | libc::FAN_ONDIR
}

/// The name of a filesystem type fanotify refuses or that the log should name.
fn fs_name(f_type: i64) -> &'static str {
    match f_type {
        0x794c_7630 => "overlayfs",
        0x6969 => "nfs",
        0x6573_5546 => "fuse",
        0xff53_4d42 => "cifs",
        0xfe53_4d42 => "smb2",
        0x9123_683e => "btrfs",
        0x8584_58f6 => "ramfs",
        0x0102_1994 => "tmpfs",
        0xef53 => "ext4",
        0x5846_5342 => "xfs",
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        _ => "",
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::ENOSYS) => "ENOSYS".into(),
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP".into(),
        Some(libc::EXDEV) => "EXDEV".into(),
        Some(libc::ENODEV) => "ENODEV".into(),
        Some(libc::ESTALE) => "ESTALE".into(),
        _ => e.to_string(),
    }
}

fn lossy(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Mount points strictly below `dir` (ending in `/`), from `/proc/self/mountinfo`.
fn mounts_below(dir: &[u8]) -> Vec<Vec<u8>> {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in info.split(|&b| b == b'\n') {
        let Some(field) = line.split(|&b| b == b' ').nth(4) else {
            continue;
        };
        let mut point = unescape_octal(field);
        point.push(b'/');
        if point.len() > dir.len() && point.starts_with(dir) && !out.contains(&point) {
            out.push(point);
        }
    }
    out
}

/// The mount id of an open file (`/proc/self/fdinfo`).
fn mnt_id(f: &File) -> Option<u64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", f.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The root directory of the mount `dir` (open) lies on, opened, or `dir` itself when it cannot
/// be found. Handles are decoded through it: an fd held on a source root itself would keep the
/// root's dentry alive, and the kernel reports a directory's `FAN_DELETE_SELF` only once its
/// last reference is gone.
fn mount_root(dir: File) -> File {
    let Some(id) = mnt_id(&dir) else { return dir };
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return dir;
    };
    let point = info.split(|&b| b == b'\n').find_map(|line| {
        let mut fields = line.split(|&b| b == b' ');
        let this: u64 = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
        (this == id).then(|| fields.nth(3).map(unescape_octal))?
    });
    let root = point.and_then(|p| File::open(std::ffi::OsStr::from_bytes(&p)).ok());
    match root {
        Some(r) if mnt_id(&r) == Some(id) => r,
        _ => dir,
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 4 <= s.len() && s[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = s[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, d| a * 8 + u32::from(d - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

// The preflight's decisions are pure functions of the facts (errno, filesystem type, kernel
// release), so every reason is tested, including those this machine cannot produce.

/// Why `fanotify_init` failed, on kernel `release`.
fn init_refusal(e: &io::Error, release: &str) -> Refusal {
    Refusal(match e.raw_os_error() {
        Some(libc::EPERM) => "fanotify monitor needs CAP_SYS_ADMIN (fanotify_init: EPERM)".into(),
        Some(libc::EINVAL) | Some(libc::ENOSYS) => format!(
            "kernel too old for the fanotify monitor (Linux {release}; FAN_REPORT_DFID_NAME \
             needs 5.9, FAN_RENAME 5.17; fanotify_init: {})",
            errno_name(e)
        ),
        _ => format!("fanotify_init failed: {e}"),
    })
}

/// Why `dir` (ending in `/`) cannot be watched because of its filesystem type (named by
/// [`fs_name`]), before any mark is tried.
fn fs_refusal(name: &str, dir: &[u8]) -> Option<Refusal> {
    let on = |what: &str| format!("{} is on {what}", lossy(dir));
    match name {
        "overlayfs" => Some(Refusal(format!(
            "{}: fanotify cannot decode its file handles; use inotify",
            on("overlayfs")
        ))),
        "nfs" | "cifs" | "smb2" | "fuse" => Some(Refusal(format!(
            "{}: a filesystem mark sees only local changes and needs decodable handles; use \
             inotify",
            on(name)
        ))),
        _ => None,
    }
}

/// Why a filesystem mark failed on kernel `release`; `on` says which directory is on which
/// filesystem.
fn mark_refusal(e: &io::Error, on: &str, release: &str) -> Refusal {
    let errno = errno_name(e);
    Refusal(match e.raw_os_error() {
        Some(libc::EPERM) => {
            format!("fanotify monitor needs CAP_SYS_ADMIN (fanotify_mark: {errno})")
        }
        Some(libc::EINVAL) => format!(
            "kernel too old for the fanotify monitor (Linux {release}; FAN_RENAME needs 5.17; \
             fanotify_mark: {errno})"
        ),
        Some(libc::EXDEV) => format!(
            "{on}: a btrfs subvolume cannot get a filesystem mark (fanotify_mark: {errno}); use \
             inotify"
        ),
        Some(libc::ENODEV) | Some(libc::EOPNOTSUPP) => format!(
            "{on}: it cannot be watched with fanotify (fanotify_mark: {errno}); use inotify"
        ),
        _ => format!("{on}: fanotify_mark failed: {e}"),
    })
}

/// `readlink(/proc/self/fd/N)` of a directory fd: its path, ending in `/`; `None` when it is
/// not reachable from our root or was deleted.
fn fd_dir_path(fd: RawFd) -> Option<Vec<u8>> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let mut p = link.into_os_string().into_encoded_bytes();
    if p.first() != Some(&b'/') || p.ends_with(b" (deleted)") {
        return None;
    }
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    Some(p)
}

/// One directory record of an event: DFID_NAME, OLD_DFID_NAME or NEW_DFID_NAME.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DirRec<'a> {
    info_type: u8,
    fsid: [i32; 2],
    handle_type: i32,
    handle: &'a [u8],
    name: &'a [u8],
}

/// One event: its mask and up to two directory records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RawEvent<'a> {
    mask: u64,
    dirs: [Option<DirRec<'a>>; 2],
}

/// Parses one info record (`hdr`, fsid, file_handle, NUL-terminated name).
fn parse_info(rec: &[u8]) -> Option<DirRec<'_>> {
    let info_type = *rec.first()?;
    let fsid = [i32_at(rec, 4)?, i32_at(rec, 8)?];
    let hlen = u32_at(rec, 12)? as usize;
    let handle_type = i32_at(rec, 16)?;
    let handle = rec.get(20..20 + hlen)?;
    let name = until_nul(rec.get(20 + hlen..).unwrap_or(&[]));
    Some(DirRec {
        info_type,
        fsid,
        handle_type,
        handle,
        name,
    })
}

/// Iterates the events of one `read()`; parsed with `from_ne_bytes`, so no alignment concerns.
/// A malformed or truncated tail ends the iteration.
struct RawEvents<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for RawEvents<'a> {
    type Item = RawEvent<'a>;

    fn next(&mut self) -> Option<RawEvent<'a>> {
        let len = u32_at(self.buf, 0)? as usize;
        let vers = *self.buf.get(4)?;
        let meta_len = u16::from_ne_bytes(self.buf.get(6..8)?.try_into().ok()?) as usize;
        let mask = u64::from_ne_bytes(self.buf.get(8..16)?.try_into().ok()?);
        if len < META_LEN || meta_len < META_LEN || meta_len > len || len > self.buf.len() {
            self.buf = &[];
            return None;
        }
        let event = &self.buf[..len];
        self.buf = &self.buf[len..];
        let mut dirs = [None, None];
        let mut at = meta_len;
        let mut n = 0;
        while at + 4 <= event.len() && vers == FANOTIFY_METADATA_VERSION {
            let rlen = u16::from_ne_bytes([event[at + 2], event[at + 3]]) as usize;
            if rlen < 4 || at + rlen > event.len() {
                break;
            }
            let rec = &event[at..at + rlen];
            at += rlen;
            let t = rec[0];
            if (t == libc::FAN_EVENT_INFO_TYPE_DFID_NAME
                || t == libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
                || t == libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME
                || t == libc::FAN_EVENT_INFO_TYPE_DFID)
                && n < 2
            {
                if let Some(d) = parse_info(rec) {
                    dirs[n] = Some(d);
                    n += 1;
                }
            }
        }
        Some(RawEvent { mask, dirs })
    }
}

fn exists(path: &[u8]) -> bool {
    let bare = path.strip_suffix(b"/").unwrap_or(path);
    std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(bare)).is_ok()
}

fn push(out: &mut Vec<FsEvent>, kind: FsKind, path: Vec<u8>) {
    out.push(FsEvent {
        kind,
        path,
        path2: None,
        monitor: Monitor::Fanotify,
    });
}

/// The events of one rename from `from` to `to` (each `None` when outside every source).
///
/// A rename record is exact and never merged, but a later change of either name may have been
/// merged into an earlier record of that name still queued, which is then handled first. Such
/// an earlier record was read in the same `read` (`touched`); for those names the state now
/// follows the rename: the old name back again is a Create, the new name gone is a Delete,
/// and a file at the new name gets a Modify (its content may be newer than the moved one).
fn rename_events(
    from: Option<Vec<u8>>,
    to: Option<Vec<u8>>,
    is_dir: bool,
    touched: &HashSet<Vec<u8>>,
    out: &mut Vec<FsEvent>,
) {
    let recheck = |p: &Option<Vec<u8>>| p.clone().filter(|p| touched.contains(p));
    let back = recheck(&from).filter(|a| exists(a));
    let to_now = recheck(&to).map(|b| exists(&b));
    match (from, to) {
        (Some(a), Some(b)) if !is_dir => {
            out.push(FsEvent {
                kind: FsKind::Move,
                path: a,
                path2: Some(b.clone()),
                monitor: Monitor::Fanotify,
            });
            match to_now {
                Some(true) => push(out, FsKind::Modify, b),
                Some(false) => push(out, FsKind::Delete, b),
                None => {}
            }
        }
        (a, b) => {
            if let Some(a) = a {
                push(out, FsKind::Delete, a);
            }
            if let Some(b) = b {
                let gone = to_now == Some(false);
                push(out, if gone { FsKind::Delete } else { FsKind::Create }, b);
            }
        }
    }
    if let Some(a) = back {
        push(out, FsKind::Create, a);
    }
}

/// What a translated record means, before paths are looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A name changed; `lstat` decides between Create and Delete for a merged create+delete.
    Name(FsKind),
    CreateOrDelete,
}

/// SPEC §3.3 for a merged mask: the kind of a non-rename record.
fn classify(mask: u64) -> Option<Kind> {
    let create = mask & libc::FAN_CREATE != 0;
    let delete = mask & libc::FAN_DELETE != 0;
    Some(match (create, delete) {
        (true, true) => Kind::CreateOrDelete,
        (true, false) => Kind::Name(FsKind::Create),
        (false, true) => Kind::Name(FsKind::Delete),
        _ if mask & (libc::FAN_CLOSE_WRITE | libc::FAN_MODIFY) != 0 => Kind::Name(FsKind::Modify),
        _ if mask & libc::FAN_ATTRIB != 0 => Kind::Name(FsKind::Attrib),
        _ => return None,
    })
}

impl Fanotify {
    /// Creates the group. A refusal names the reason (old kernel, missing CAP_SYS_ADMIN).
    ///
    /// The queue is bounded (`fs.fanotify.max_queued_events`, 16384 by default), like
    /// inotify's: an overflow means the same full resync. Measured, a 100 000-file burst with
    /// the target on the same filesystem never overflowed it (the daemon reads a record in
    /// about 1 µs, faster than any writer creates one), while `FAN_UNLIMITED_QUEUE` pins about
    /// 107 bytes of unreclaimable kernel memory per queued record, without bound when the
    /// daemon is stopped, and the records come from every writer on the filesystem.
    pub(crate) fn new(mode: InotifyMode) -> Result<Self, Refusal> {
        let flags = libc::FAN_CLASS_NOTIF
            | libc::FAN_REPORT_DFID_NAME
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK;
        let fd = sys::fanotify_init(flags).map_err(|e| init_refusal(&e, &kernel_release()))?;
        Ok(Fanotify {
            // Records are small: the buffer keeps its size, an `EINVAL` is an error.
            queue: KernelQueue::new(File::from(fd), READ_BUF, READ_BUF),
            mask: fs_mask(mode),
            marked: Vec::new(),
            roots: Vec::new(),
            cache: HashMap::new(),
            key: Vec::new(),
            root_events: Vec::new(),
            touched: HashSet::new(),
            moves: moves::RecentMoves::default(),
            stats: Stats::default(),
        })
    }

    /// The group fd, for the poll loop (readable = records queued).
    pub(crate) fn as_raw_fd(&self) -> RawFd {
        self.queue.fd.as_raw_fd()
    }

    /// Number of source roots watched.
    pub(crate) fn roots(&self) -> usize {
        self.roots.len()
    }

    /// Calls `f(path, fs type)` for every marked filesystem (status file).
    pub(crate) fn for_each_mark(&self, f: &mut dyn FnMut(&[u8], &str)) {
        for m in &self.marked {
            f(&m.path, m.fs_name);
        }
    }

    /// Preflight and mark for the filesystem holding `dir` (ending in `/`).
    fn mark_filesystem(&mut self, dir: &[u8]) -> Result<(), Refusal> {
        let bare = &dir[..dir.len().saturating_sub(1).max(1)];
        let opened = std::fs::File::open(Path::new(std::ffi::OsStr::from_bytes(bare)))
            .map_err(|e| Refusal(format!("cannot open {}: {e}", lossy(dir))))?;
        let mount_fd = OwnedFd::from(mount_root(opened));
        let (f_type, fsid) = sys::fs_type_and_id(mount_fd.as_fd())
            .map_err(|e| Refusal(format!("cannot statfs {}: {e}", lossy(dir))))?;
        let name = fs_name(f_type);
        let on = |what: &str| format!("{} is on {what}", lossy(dir));
        if let Some(r) = fs_refusal(name, dir) {
            return Err(r);
        }
        if self.marked.iter().any(|m| m.fsid == fsid) {
            return Ok(());
        }
        let fs = if name.is_empty() {
            format!("a filesystem of type {f_type:#x}")
        } else {
            name.to_owned()
        };
        sys::fanotify_mark(
            self.queue.fd.as_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
            self.mask,
            bare,
        )
        .map_err(|e| mark_refusal(&e, &on(&fs), &kernel_release()))?;
        // Decoding handles needs CAP_DAC_READ_SEARCH and a filesystem that can do it.
        let (htype, handle) = sys::name_to_handle(bare).map_err(|e| {
            Refusal(format!(
                "{}: it has no file handles (name_to_handle_at: {}); use inotify",
                on(&fs),
                errno_name(&e)
            ))
        })?;
        sys::open_by_handle(mount_fd.as_fd(), htype, &handle).map_err(|e| {
            Refusal(match e.raw_os_error() {
                Some(libc::EPERM) => format!(
                    "fanotify monitor needs CAP_DAC_READ_SEARCH (open_by_handle_at: {})",
                    errno_name(&e)
                ),
                _ => format!(
                    "{}: its file handles cannot be decoded (open_by_handle_at: {}); use inotify",
                    on(&fs),
                    errno_name(&e)
                ),
            })
        })?;
        self.marked.push(Marked {
            fsid,
            mount_fd,
            path: dir.to_vec(),
            fs_name: name,
        });
        Ok(())
    }

    /// One record → zero, one or two events.
    fn translate(
        &mut self,
        ev: RawEvent<'_>,
        out: &mut Vec<FsEvent>,
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        let is_dir = ev.mask & libc::FAN_ONDIR != 0;
        if ev.mask & (libc::FAN_DELETE_SELF | libc::FAN_MOVE_SELF) != 0 {
            self.root_self_event(ev);
        }
        if ev.mask & libc::FAN_RENAME != 0 {
            let (mut old, mut new) = (None, None);
            for d in ev.dirs.iter().flatten() {
                if d.info_type == libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME {
                    old = Some(*d);
                } else if d.info_type == libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME {
                    new = Some(*d);
                }
            }
            let from = old.and_then(|d| self.child(d, is_dir, concerns));
            let to = new.and_then(|d| self.child(d, is_dir, concerns));
            if is_dir && (from.is_some() || to.is_some() || self.touches_root(old, new)) {
                // Paths below the moved directory changed.
                self.cache.clear();
            }
            let start = out.len();
            let moved_dir = to.clone().filter(|_| is_dir);
            if let Some(a) = from.as_deref().filter(|_| is_dir) {
                self.dir_renamed(a);
            }
            rename_events(from, to, is_dir, &self.touched, out);
            if let Some(FsEvent {
                kind: FsKind::Move,
                path,
                path2: Some(dest),
                ..
            }) = out.get(start)
            {
                self.moves.remember(Instant::now(), path, dest);
            }
            if let Some(dir) = moved_dir {
                // Moves read before this rename may name their origin by its new path: their
                // destinations are sent again, or deleted if gone since (a Create of a
                // missing file would replace a pending Delete of it).
                for dest in self.moves.take_below(&dir) {
                    let kind = if exists(&dest) {
                        FsKind::Create
                    } else {
                        FsKind::Delete
                    };
                    push(out, kind, dest);
                }
            }
            return;
        }
        let Some(kind) = classify(ev.mask) else {
            return;
        };
        let Some(d) = ev.dirs[0] else {
            return;
        };
        let Some(path) = self.child(d, is_dir, concerns) else {
            return;
        };
        let kind = match kind {
            Kind::Name(k) => k,
            Kind::CreateOrDelete if exists(&path) => FsKind::Create,
            Kind::CreateOrDelete => FsKind::Delete,
        };
        self.touched.insert(path.clone());
        out.push(FsEvent {
            kind,
            path,
            path2: None,
            monitor: Monitor::Fanotify,
        });
    }

    /// A rename whose old or new parent is the parent of a source root may move that root.
    fn touches_root(&self, old: Option<DirRec<'_>>, new: Option<DirRec<'_>>) -> bool {
        [old, new].iter().flatten().any(|d| {
            self.roots.iter().any(|r| {
                let bare = &r.path[..r.path.len() - 1];
                bare.rsplit(|&b| b == b'/').next() == Some(d.name)
            })
        })
    }

    /// The absolute path of the record's entry (`/` appended for a directory), if it lies in
    /// a directory some sync watches. Name `.` is the directory itself.
    fn child(
        &mut self,
        d: DirRec<'_>,
        is_dir: bool,
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let dir = self.dir_path(d, concerns)?;
        if d.name.is_empty() || d.name == b"." {
            return Some(dir);
        }
        let mut p = Vec::with_capacity(dir.len() + d.name.len() + 1);
        p.extend_from_slice(&dir);
        p.extend_from_slice(d.name);
        if is_dir {
            p.push(b'/');
        }
        Some(p)
    }

    /// The cached or freshly resolved path of the record's directory, if watched.
    fn dir_path(
        &mut self,
        d: DirRec<'_>,
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        self.key.clear();
        self.key.extend_from_slice(&d.fsid[0].to_ne_bytes());
        self.key.extend_from_slice(&d.fsid[1].to_ne_bytes());
        self.key.extend_from_slice(&d.handle_type.to_ne_bytes());
        self.key.extend_from_slice(d.handle);
        if let Some(hit) = self.cache.get(self.key.as_slice()) {
            self.stats.cache_hits += 1;
            if hit.is_none() {
                self.stats.outside += 1;
            }
            return hit.as_ref().map(|p| p.to_vec());
        }
        let mount = self
            .marked
            .iter()
            .find(|m| m.fsid == d.fsid)
            .or_else(|| (self.marked.len() == 1).then(|| &self.marked[0]))?;
        let resolved = match sys::open_by_handle(mount.mount_fd.as_fd(), d.handle_type, d.handle) {
            Ok(fd) => fd_dir_path(fd.as_raw_fd()),
            // Gone (ESTALE) and not cached: the topmost removal covers it.
            Err(_) => {
                self.stats.stale += 1;
                return None;
            }
        };
        let watched = resolved.filter(|p| self.watched(p, concerns));
        if watched.is_none() {
            self.stats.outside += 1;
        }
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(
            self.key.clone().into_boxed_slice(),
            watched.as_ref().map(|p| p.clone().into_boxed_slice()),
        );
        watched
    }

    /// True if `dir` (ending in `/`) is a source root or lies below one with every directory
    /// from that root down concerned: the directories the inotify monitor would watch.
    fn watched(&self, dir: &[u8], concerns: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.roots.iter().any(|r| {
            if r.away.is_some() || !dir.starts_with(&r.path) {
                return false;
            }
            let mut end = r.path.len();
            loop {
                if !concerns(&dir[..end]) {
                    return false;
                }
                if end == dir.len() {
                    return true;
                }
                match dir[end..].iter().position(|&b| b == b'/') {
                    Some(i) => end += i + 1,
                    None => return true,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(info_type: u8, fsid: [i32; 2], handle: &[u8], name: &[u8]) -> Vec<u8> {
        let mut r = vec![info_type, 0, 0, 0];
        r.extend_from_slice(&fsid[0].to_ne_bytes());
        r.extend_from_slice(&fsid[1].to_ne_bytes());
        r.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        r.extend_from_slice(&1i32.to_ne_bytes());
        r.extend_from_slice(handle);
        r.extend_from_slice(name);
        r.push(0);
        while r.len() % 4 != 0 {
            r.push(0);
        }
        let len = r.len() as u16;
        r[2..4].copy_from_slice(&len.to_ne_bytes());
        r
    }

    fn event(mask: u64, records: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = records.concat();
        let mut e = Vec::new();
        e.extend_from_slice(&((META_LEN + body.len()) as u32).to_ne_bytes());
        e.push(FANOTIFY_METADATA_VERSION);
        e.push(0);
        e.extend_from_slice(&(META_LEN as u16).to_ne_bytes());
        e.extend_from_slice(&mask.to_ne_bytes());
        e.extend_from_slice(&(-1i32).to_ne_bytes());
        e.extend_from_slice(&42i32.to_ne_bytes());
        e.extend_from_slice(&body);
        e
    }

    #[test]
    fn records_parse_into_masks_handles_and_names() {
        let mut buf = event(
            libc::FAN_CREATE | libc::FAN_CLOSE_WRITE,
            &[record(
                libc::FAN_EVENT_INFO_TYPE_DFID_NAME,
                [7, 8],
                b"h1h1h1h1",
                b"caf\xe9",
            )],
        );
        buf.extend(event(
            libc::FAN_RENAME | libc::FAN_ONDIR,
            &[
                record(
                    libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME,
                    [7, 8],
                    b"old",
                    b"a",
                ),
                record(
                    libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME,
                    [7, 8],
                    b"new!",
                    b"b",
                ),
            ],
        ));
        buf.extend(event(libc::FAN_Q_OVERFLOW, &[]));
        let evs: Vec<RawEvent<'_>> = RawEvents { buf: &buf }.collect();
        assert_eq!(evs.len(), 3);
        let d = evs[0].dirs[0].unwrap();
        assert_eq!(
            (d.fsid, d.handle, d.name),
            ([7, 8], &b"h1h1h1h1"[..], &b"caf\xe9"[..])
        );
        assert_eq!(d.handle_type, 1);
        assert!(evs[0].dirs[1].is_none());
        let (o, n) = (evs[1].dirs[0].unwrap(), evs[1].dirs[1].unwrap());
        assert_eq!(
            (o.info_type, o.handle, o.name),
            (10, &b"old"[..], &b"a"[..])
        );
        assert_eq!(
            (n.info_type, n.handle, n.name),
            (12, &b"new!"[..], &b"b"[..])
        );
        assert_eq!(evs[2].mask, libc::FAN_Q_OVERFLOW);
        // A truncated tail ends the iteration instead of reading past the buffer.
        let cut = &buf[..buf.len() - 30];
        assert_eq!(RawEvents { buf: cut }.count(), 1);
    }

    #[test]
    fn merged_masks_classify_like_inotify_with_lstat_for_create_plus_delete() {
        use libc::{FAN_ATTRIB, FAN_CLOSE_WRITE, FAN_CREATE, FAN_DELETE, FAN_MODIFY};
        let cases = [
            (
                FAN_CREATE | FAN_CLOSE_WRITE | FAN_MODIFY,
                Some(Kind::Name(FsKind::Create)),
            ),
            (
                FAN_CREATE | FAN_DELETE | FAN_CLOSE_WRITE,
                Some(Kind::CreateOrDelete),
            ),
            (FAN_DELETE | FAN_MODIFY, Some(Kind::Name(FsKind::Delete))),
            (
                FAN_CLOSE_WRITE | FAN_ATTRIB,
                Some(Kind::Name(FsKind::Modify)),
            ),
            (FAN_ATTRIB, Some(Kind::Name(FsKind::Attrib))),
            (libc::FAN_ONDIR, None),
        ];
        for (mask, want) in cases {
            assert_eq!(classify(mask), want, "{mask:#x}");
        }
    }

    #[test]
    fn preflight_names_the_reason_for_each_fact() {
        let err = io::Error::from_raw_os_error;
        let on = "/src/ is on btrfs";
        let cases = [
            (
                init_refusal(&err(libc::EPERM), "6.1"),
                "fanotify monitor needs CAP_SYS_ADMIN (fanotify_init: EPERM)".to_owned(),
            ),
            (
                init_refusal(&err(libc::EINVAL), "5.4.0"),
                "kernel too old for the fanotify monitor (Linux 5.4.0; FAN_REPORT_DFID_NAME \
                 needs 5.9, FAN_RENAME 5.17; fanotify_init: EINVAL)"
                    .to_owned(),
            ),
            (
                mark_refusal(&err(libc::EPERM), on, "6.1"),
                "fanotify monitor needs CAP_SYS_ADMIN (fanotify_mark: EPERM)".to_owned(),
            ),
            (
                mark_refusal(&err(libc::EINVAL), on, "5.10.0"),
                "kernel too old for the fanotify monitor (Linux 5.10.0; FAN_RENAME needs 5.17; \
                 fanotify_mark: EINVAL)"
                    .to_owned(),
            ),
            (
                mark_refusal(&err(libc::EXDEV), on, "6.1"),
                format!(
                    "{on}: a btrfs subvolume cannot get a filesystem mark (fanotify_mark: \
                     EXDEV); use inotify"
                ),
            ),
            (
                mark_refusal(&err(libc::ENODEV), "/p/ is on ramfs", "6.1"),
                "/p/ is on ramfs: it cannot be watched with fanotify (fanotify_mark: ENODEV); \
                 use inotify"
                    .to_owned(),
            ),
            (
                fs_refusal("overlayfs", b"/m/").expect("refused"),
                "/m/ is on overlayfs: fanotify cannot decode its file handles; use inotify"
                    .to_owned(),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got.0, want);
        }
        for remote in ["nfs", "cifs", "smb2", "fuse"] {
            let r = fs_refusal(remote, b"/n/").expect("refused");
            assert!(
                r.0.starts_with(&format!("/n/ is on {remote}: a filesystem mark sees only")),
                "{r}"
            );
        }
        for fine in ["tmpfs", "ext4", "xfs", "btrfs", ""] {
            assert_eq!(fs_refusal(fine, b"/x/"), None, "{fine}");
        }
        // The filesystem types are recognised by their magic numbers.
        assert_eq!(fs_name(0x794c_7630), "overlayfs");
        assert_eq!(fs_name(0x6969), "nfs");
        assert_eq!(fs_name(0x6573_5546), "fuse");
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_octal(br"/mnt/a\040b\011c\134d"), b"/mnt/a b\tc\\d");
        assert_eq!(unescape_octal(br"/x\04"), br"/x\04");
    }

    #[test]
    fn masks_follow_inotify_mode() {
        let m = fs_mask(InotifyMode::CloseWrite);
        assert!(m & libc::FAN_CLOSE_WRITE != 0 && m & libc::FAN_MODIFY == 0);
        assert!(m & libc::FAN_RENAME != 0 && m & libc::FAN_ONDIR != 0);
        assert!(m & (libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO | libc::FAN_ACCESS) == 0);
        let m = fs_mask(InotifyMode::Modify);
        assert!(m & libc::FAN_CLOSE_WRITE == 0 && m & libc::FAN_MODIFY != 0);
    }
}
