//! The monitors (SPEC §3): the kernel interfaces that tell the daemon what changed, and the
//! events they hand to the syncs. Every monitor turns kernel records into the same [`FsEvent`]s
//! (kind, absolute path, directory or not), so syncs, delays and the event loop do not care
//! which one produced them.
//!
//! Owns: the event types ([`FsKind`], [`FsEvent`], [`RootEvent`], [`ReadOutcome`],
//! [`WatchError`]), the monitor names (`-monitor`, the `monitor` key), `inotifyMode` parsing
//! and [`Monitors`], the monitors of one run behind one interface. The inotify monitor is
//! `inotify` (event decoding in `inotify_decode.rs`, source roots in `inotify_roots.rs`, its
//! directory tree in `tree`), the fanotify monitor `fanotify`; the read loop both run is in
//! `queue`, the record fields both parse are read in `record`.
//! Must not touch: syncs, delays, excludes, Lua, logging.

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

mod fanotify;
mod inotify;
mod queue;
mod record;
mod tree;

pub(crate) use fanotify::{Fanotify, Refusal};
pub(crate) use inotify::Watcher;
use queue::Queue;

/// The monitor a sync's events come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Monitor {
    #[default]
    Inotify,
    Fanotify,
}

impl Monitor {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Inotify => "inotify",
            Self::Fanotify => "fanotify",
        }
    }
}

/// A `monitor` value as configured: a monitor, or `auto` (fanotify where it works).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MonitorChoice {
    Inotify,
    Fanotify,
    Auto,
}

/// The names `-monitor` lists, in that order.
pub(crate) const MONITOR_NAMES: [&str; 3] = ["inotify", "fanotify", "auto"];

impl MonitorChoice {
    pub(crate) fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"inotify" => Some(Self::Inotify),
            b"fanotify" => Some(Self::Fanotify),
            b"auto" => Some(Self::Auto),
            _ => None,
        }
    }
}

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
    /// Only syncs using this monitor take the event.
    pub(crate) monitor: Monitor,
}

/// What happened to a source root (a sync's `source` directory itself), as a monitor saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RootChange {
    /// The root was renamed or moved elsewhere: its path names nothing, or something else.
    /// The monitor has dropped what it watched below it (its events would carry wrong paths).
    MovedAway,
    /// The root was deleted (or the filesystem under it unmounted).
    Deleted,
    /// The path names a directory again (moved back, recreated, or a new directory there) and
    /// the monitor watches it anew. Changes made while it was away were not seen: every sync
    /// on this root needs one full transfer.
    Back,
}

impl RootChange {
    /// How a log line says it: `moved away`, `deleted`, `back`.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::MovedAway => "moved away",
            Self::Deleted => "deleted",
            Self::Back => "back",
        }
    }
}

/// A source root went away or came back (see [`RootChange`]); handed to the core through
/// [`Monitors::take_root_events`], apart from the [`FsEvent`]s. A monitor reports `MovedAway`
/// or `Deleted` once per absence, then looks for the root's return itself (polling with
/// backoff, see [`Monitors::next_root_check`]) and reports `Back` once it watches it again.
/// While a root is away the core starts no transfer for its syncs and keeps their pending
/// changes; `Back` replaces those by one full transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RootEvent {
    /// The root as the syncs name it: absolute, ending in `/`.
    pub(crate) root: Vec<u8>,
    pub(crate) change: RootChange,
    /// Only syncs using this monitor take the event.
    pub(crate) monitor: Monitor,
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
    /// A source root cannot be watched (`EACCES`, `ENOTDIR`, ...): a startup error.
    Root { dir: Vec<u8>, err: io::Error },
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
            Self::Root { dir, err } => write!(
                f,
                "Cannot watch source directory {}: {err}",
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
            Self::Root { err, .. } | Self::Io(err) => Some(err),
        }
    }
}

/// The monitors of one run: an inotify instance once a sync uses it, a fanotify group once a
/// sync uses that. Both fds are polled under one token.
pub(crate) struct Monitors {
    mode: InotifyMode,
    inotify: Option<Watcher>,
    fanotify: Option<Fanotify>,
    /// Why the fanotify group could not be created (asked once).
    fan_refused: Option<Refusal>,
}

impl fmt::Debug for Monitors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitors")
            .field("inotify", &self.inotify)
            .field("fanotify", &self.fanotify.as_ref().map(Fanotify::roots))
            .finish()
    }
}

impl Monitors {
    pub(crate) fn new(mode: InotifyMode) -> Self {
        Monitors {
            mode,
            inotify: None,
            fanotify: None,
            fan_refused: None,
        }
    }

    /// The inotify instance, created on first use.
    pub(crate) fn inotify(&mut self) -> io::Result<&mut Watcher> {
        if self.inotify.is_none() {
            self.inotify = Some(Watcher::new(self.mode)?);
        }
        Ok(self.inotify.as_mut().expect("just created"))
    }

    /// Watches `source` with fanotify (creating the group on first use), or says why not.
    pub(crate) fn add_fanotify_root(&mut self, source: &[u8]) -> Result<(), Refusal> {
        self.fanotify_group()?.add_root(source)
    }

    /// Adds `source`, away since before a restart, to the fanotify group (created on first
    /// use): it is marked once it is there.
    pub(crate) fn add_absent_fanotify_root(&mut self, source: &[u8]) -> Result<(), Refusal> {
        self.fanotify_group()?
            .add_absent_root(source, Instant::now());
        Ok(())
    }

    /// The fanotify group, created on first use, or why it cannot be.
    fn fanotify_group(&mut self) -> Result<&mut Fanotify, Refusal> {
        if let Some(r) = &self.fan_refused {
            return Err(r.clone());
        }
        if self.fanotify.is_none() {
            match Fanotify::new(self.mode) {
                Ok(f) => self.fanotify = Some(f),
                Err(r) => {
                    self.fan_refused = Some(r.clone());
                    return Err(r);
                }
            }
        }
        Ok(self.fanotify.as_mut().expect("just created"))
    }

    /// The answers of the monitors in use, inotify's first.
    fn each<T>(
        &self,
        ino: impl FnOnce(&Watcher) -> Option<T>,
        fan: impl FnOnce(&Fanotify) -> Option<T>,
    ) -> impl Iterator<Item = T> {
        let ino = self.inotify.as_ref().and_then(ino);
        ino.into_iter().chain(self.fanotify.as_ref().and_then(fan))
    }

    /// The fds to poll: readable means events are queued.
    pub(crate) fn fds(&self) -> Vec<RawFd> {
        self.each(|w| Some(w.as_raw_fd()), |f| Some(f.as_raw_fd()))
            .collect()
    }

    /// Reads both monitors (see [`Queue::read`]); `concerns` is asked per monitor.
    pub(crate) fn read(
        &mut self,
        out: &mut Vec<FsEvent>,
        concerns: &mut dyn FnMut(Monitor, &[u8]) -> bool,
    ) -> Result<ReadOutcome, WatchError> {
        let mut outcome = ReadOutcome::Ok;
        if let Some(w) = &mut self.inotify {
            outcome = w.read(out, &mut |d| concerns(Monitor::Inotify, d))?;
            if outcome == ReadOutcome::Overflow {
                return Ok(outcome);
            }
        }
        if let Some(f) = &mut self.fanotify {
            match f.read(out, &mut |d| concerns(Monitor::Fanotify, d))? {
                ReadOutcome::Ok => {}
                other => outcome = other,
            }
        }
        Ok(outcome)
    }

    /// The source roots that went away or came back since the last call (see
    /// [`RootEvent`]); after [`Monitors::read`] and [`Monitors::check_roots`].
    pub(crate) fn take_root_events(&mut self) -> Vec<RootEvent> {
        let mut events = self
            .inotify
            .as_mut()
            .map(Watcher::take_root_events)
            .unwrap_or_default();
        if let Some(f) = &mut self.fanotify {
            events.extend(f.take_root_events());
        }
        events
    }

    /// When the event loop must wake up to look for a source root that is away.
    pub(crate) fn next_root_check(&self) -> Option<Instant> {
        self.each(Watcher::next_root_check, Fanotify::next_root_check)
            .min()
    }

    /// Looks for the absent source roots that are due (see [`Monitors::next_root_check`]);
    /// one found is watched again and reported `Back`. `concerns` as for `read`.
    pub(crate) fn check_roots(
        &mut self,
        now: Instant,
        concerns: &mut dyn FnMut(Monitor, &[u8]) -> bool,
    ) -> Result<(), WatchError> {
        if let Some(w) = &mut self.inotify {
            w.check_roots(now, &mut |d| concerns(Monitor::Inotify, d))?;
        }
        if let Some(f) = &mut self.fanotify {
            f.check_roots(now);
        }
        Ok(())
    }

    /// Number of inotify watches.
    pub(crate) fn len(&self) -> usize {
        self.inotify.as_ref().map_or(0, Watcher::len)
    }

    /// Every inotify watch, ascending by wd (status file).
    pub(crate) fn for_each(&self, f: &mut dyn FnMut(i32, &[u8])) {
        if let Some(w) = &self.inotify {
            w.for_each(f);
        }
    }

    /// The monitors in use, for the health record: `inotify`, `fanotify` or both.
    pub(crate) fn kind_name(&self) -> &'static str {
        let fan = self.fanotify.as_ref().is_some_and(|f| f.roots() > 0);
        match (self.inotify.is_some(), fan) {
            (true, true) => "inotify+fanotify",
            (false, true) => "fanotify",
            _ => "inotify",
        }
    }

    pub(crate) fn fanotify(&self) -> Option<&Fanotify> {
        self.fanotify.as_ref()
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
