//! Decoding of the inotify monitor's kernel records (SPEC §3.3–§3.4): the raw `inotify_event`
//! records of one `read()`, their classification into event kinds, and move pairing by cookie.
//! Pure: no I/O, no watch registry.
//!
//! Owns: the record layout ([`RawEvents`]), the translation into [`Step`]s ([`Pairer`]) and the
//! `Inotify` log line of a raw event ([`log_event`]). Must not touch: watch descriptors, the
//! directory tree, paths (a step still names a wd and an entry name), syncs, delays, Lua.

use super::FsKind;
use crate::watch::record::{i32_at, u32_at, until_nul};

/// `sizeof(struct inotify_event)` without the name: wd, mask, cookie, len.
pub(super) const EVENT_HEADER: usize = 16;

/// One kernel record as read from the fd; `name` without its NUL padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RawEvent<'a> {
    pub(super) wd: i32,
    pub(super) mask: u32,
    pub(super) cookie: u32,
    pub(super) name: &'a [u8],
}

/// Iterates the records of one `read()`; a truncated tail (never produced by the kernel) ends
/// the iteration.
pub(super) struct RawEvents<'a> {
    pub(super) buf: &'a [u8],
}

impl<'a> Iterator for RawEvents<'a> {
    type Item = RawEvent<'a>;

    fn next(&mut self) -> Option<RawEvent<'a>> {
        let wd = i32_at(self.buf, 0)?;
        let mask = u32_at(self.buf, 4)?;
        let cookie = u32_at(self.buf, 8)?;
        let len = u32_at(self.buf, 12)? as usize;
        let end = EVENT_HEADER.checked_add(len)?;
        let Some(padded) = self.buf.get(EVENT_HEADER..end) else {
            self.buf = &[];
            return None;
        };
        self.buf = &self.buf[end..];
        Some(RawEvent {
            wd,
            mask,
            cookie,
            name: until_nul(padded),
        })
    }
}

impl<'a> RawEvent<'a> {
    fn entry(&self) -> Entry<'a> {
        Entry {
            wd: self.wd,
            name: self.name,
        }
    }
}

/// A directory entry as inotify names it: the watch of its directory and its name there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry<'a> {
    pub(super) wd: i32,
    pub(super) name: &'a [u8],
}

/// A raw event after pairing and classification, still in wd + name form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step<'a> {
    Overflow,
    /// The kernel dropped this watch (directory gone, unmounted, or we removed it).
    Ignored {
        wd: i32,
    },
    /// The watched directory itself was renamed (`IN_MOVE_SELF`). Its parent, when watched,
    /// reports the same rename as a move; only a source root's own event matters.
    MovedSelf {
        wd: i32,
    },
    Event {
        kind: FsKind,
        at: Entry<'a>,
        is_dir: bool,
    },
    Move {
        from: Entry<'a>,
        to: Entry<'a>,
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
pub(super) struct Pairer {
    pending: Option<(i32, u32, bool)>,
    name: Vec<u8>,
}

pub(super) type Emit<'e, E> = &'e mut dyn FnMut(Step<'_>) -> Result<(), E>;

impl Pairer {
    /// Translates one raw event (SPEC §3.3 order). `Ok(false)` after an overflow: the caller
    /// drops the rest of the buffer.
    pub(super) fn feed<E>(&mut self, ev: RawEvent<'_>, emit: Emit<'_, E>) -> Result<bool, E> {
        if ev.mask & libc::IN_Q_OVERFLOW != 0 {
            self.finish(emit)?;
            emit(Step::Overflow)?;
            return Ok(false);
        }
        if ev.mask & libc::IN_IGNORED != 0 {
            emit(Step::Ignored { wd: ev.wd })?;
            return Ok(true);
        }
        // Not an entry event: it leaves a buffered MOVED_FROM waiting for its MOVED_TO.
        if ev.mask & libc::IN_MOVE_SELF != 0 {
            emit(Step::MovedSelf { wd: ev.wd })?;
            return Ok(true);
        }
        if ev.name.is_empty() {
            return Ok(true);
        }
        let is_dir = ev.mask & libc::IN_ISDIR != 0;
        if let Some((from_wd, cookie, from_dir)) = self.pending.take() {
            if ev.mask & libc::IN_MOVED_TO != 0 && ev.cookie == cookie {
                emit(Step::Move {
                    from: Entry {
                        wd: from_wd,
                        name: &self.name,
                    },
                    to: ev.entry(),
                    is_dir: is_dir || from_dir,
                })?;
                return Ok(true);
            }
            crate::log::with(b"Inotify", || {
                b"icore, changing unary MOVE_FROM into DELETE".to_vec()
            });
            emit(Step::Event {
                kind: FsKind::Delete,
                at: Entry {
                    wd: from_wd,
                    name: &self.name,
                },
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
                at: ev.entry(),
                is_dir,
            })?;
        }
        Ok(true)
    }

    /// End of the burst: a still unpaired `MOVED_FROM` becomes a `Delete`.
    pub(super) fn finish<E>(&mut self, emit: Emit<'_, E>) -> Result<(), E> {
        match self.pending.take() {
            Some((wd, _, is_dir)) => {
                crate::log::with(b"Inotify", || b"handling unary move from.".to_vec());
                emit(Step::Event {
                    kind: FsKind::Delete,
                    at: Entry {
                        wd,
                        name: &self.name,
                    },
                    is_dir,
                })
            }
            None => Ok(()),
        }
    }
}

/// The `Inotify` log line of a raw event, as upstream words it: `got event Create d/(1)`, or
/// `got event Move a(1) to b(2)`.
pub(super) fn log_event(kind: FsKind, at: Entry<'_>, is_dir: bool, to: Option<Entry<'_>>) {
    crate::log::call("inotifyEvent");
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
        let put = |m: &mut Vec<u8>, e: Entry<'_>| {
            m.extend_from_slice(e.name);
            m.extend_from_slice(slash);
            m.extend_from_slice(format!("({})", e.wd).as_bytes());
        };
        put(&mut m, at);
        if let Some(to) = to {
            m.extend_from_slice(b" to ");
            put(&mut m, to);
        }
        m
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// One case a paragraph: `# what the case shows`, the raw events of one burst (`;` between
    /// them), then `=>` and the steps they translate into, in order.
    /// Event: `wd MASK[|MASK…] cookie [name]`, the mask bits named without `IN_`.
    /// Step: `overflow`, `ignored wd`, `moved self wd`, `KIND[ dir] wd/name` (KIND `attrib`,
    /// `modify`, `create` or `delete`), `move[ dir] wd/name wd/name`.
    const TRANSLATIONS: &str = "
        # first matching bit decides
        1 ATTRIB 0 a; 1 CLOSE_WRITE 0 b; 1 MODIFY 0 c; 1 CREATE|ISDIR 0 d; 1 DELETE 0 e;
        1 ATTRIB|CREATE 0 f; 1 OPEN 0 skipped
        => attrib 1/a; modify 1/b; modify 1/c; create dir 1/d; delete 1/e; attrib 1/f
        # name-less events are ignored, IN_IGNORED reported for bookkeeping
        2 DELETE_SELF 0; 2 ATTRIB|ISDIR 0; 2 IGNORED 0
        => ignored 2
        # same cookie pairs into one move, across watches
        1 MOVED_FROM 5 old; 3 MOVED_TO 5 new
        => move 1/old 3/new
        # directory move keeps the directory flag
        1 MOVED_FROM|ISDIR 5 d; 1 MOVED_TO|ISDIR 5 e
        => move dir 1/d 1/e
        # other cookie: delete first, then the unpaired move-to is a create
        1 MOVED_FROM 5 old; 1 MOVED_TO 6 in
        => delete 1/old; create 1/in
        # any other event flushes the buffered move-from as delete
        1 MOVED_FROM 5 old; 1 CREATE 0 x
        => delete 1/old; create 1/x
        # name-less events do not disturb pairing; IN_MOVE_SELF is reported
        1 MOVED_FROM|ISDIR 5 d; 4 MOVE_SELF 0; 2 MOVED_TO|ISDIR 5 d
        => moved self 4; move dir 1/d 2/d
        # a second move-from replaces the first, which becomes delete
        1 MOVED_FROM 5 a; 1 MOVED_FROM|ISDIR 6 b
        => delete 1/a; delete dir 1/b
        # unpaired move-to is a create
        1 MOVED_TO|ISDIR 9 in
        => create dir 1/in
        # overflow flushes the pending move and drops the rest of the buffer
        1 CREATE 0 a; 1 MOVED_FROM 5 m; -1 Q_OVERFLOW 0; 1 DELETE 0 lost
        => create 1/a; delete 1/m; overflow
";

    /// The mask bits [`TRANSLATIONS`] names.
    const MASK_BITS: &[(&str, u32)] = &[
        ("ATTRIB", libc::IN_ATTRIB),
        ("CLOSE_WRITE", libc::IN_CLOSE_WRITE),
        ("MODIFY", libc::IN_MODIFY),
        ("CREATE", libc::IN_CREATE),
        ("DELETE", libc::IN_DELETE),
        ("ISDIR", libc::IN_ISDIR),
        ("OPEN", libc::IN_OPEN),
        ("DELETE_SELF", libc::IN_DELETE_SELF),
        ("IGNORED", libc::IN_IGNORED),
        ("MOVED_FROM", libc::IN_MOVED_FROM),
        ("MOVED_TO", libc::IN_MOVED_TO),
        ("MOVE_SELF", libc::IN_MOVE_SELF),
        ("Q_OVERFLOW", libc::IN_Q_OVERFLOW),
    ];

    /// `wd MASK[|MASK…] cookie [name]`.
    fn event(text: &'static str) -> RawEvent<'static> {
        let fields: Vec<&'static str> = text.split_whitespace().collect();
        let (wd, mask, cookie, name) = match fields[..] {
            [wd, mask, cookie] => (wd, mask, cookie, ""),
            [wd, mask, cookie, name] => (wd, mask, cookie, name),
            _ => panic!("bad event {text:?}"),
        };
        let bit = |bit: &str| match MASK_BITS.iter().find(|(name, _)| *name == bit) {
            Some(&(_, value)) => value,
            None => panic!("unknown mask bit {bit:?} in {text:?}"),
        };
        RawEvent {
            wd: wd.parse().expect("wd"),
            mask: mask.split('|').map(bit).fold(0, |mask, value| mask | value),
            cookie: cookie.parse().expect("cookie"),
            name: name.as_bytes(),
        }
    }

    fn entry(e: Entry<'_>) -> String {
        format!("{}/{}", e.wd, e.name.escape_ascii())
    }

    /// A step in the notation of [`TRANSLATIONS`].
    fn step_text(step: Step<'_>) -> String {
        let dir = |is_dir| if is_dir { " dir" } else { "" };
        match step {
            Step::Overflow => "overflow".to_owned(),
            Step::Ignored { wd } => format!("ignored {wd}"),
            Step::MovedSelf { wd } => format!("moved self {wd}"),
            Step::Event { kind, at, is_dir } => {
                let (kind, dir) = match kind {
                    FsKind::Attrib => ("attrib", ""),
                    FsKind::Modify => ("modify", ""),
                    FsKind::Create => ("create", dir(is_dir)),
                    FsKind::Delete => ("delete", dir(is_dir)),
                    FsKind::Move => ("bad", ""),
                };
                format!("{kind}{dir} {}", entry(at))
            }
            Step::Move { from, to, is_dir } => {
                format!("move{} {} {}", dir(is_dir), entry(from), entry(to))
            }
        }
    }

    /// The steps of one burst, fed as the monitor feeds a read: up to an overflow, then the
    /// end-of-burst flush.
    fn translate(events: &[RawEvent<'_>]) -> Vec<String> {
        let mut pairer = Pairer::default();
        let mut got = Vec::new();
        let mut emit = |s: Step<'_>| -> Result<(), ()> {
            got.push(step_text(s));
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

    #[test]
    fn translation_follows_spec_order_and_pairs_moves() {
        let mut cases = 0;
        for case in TRANSLATIONS.split('#').skip(1) {
            let (what, rest) = case.split_once('\n').expect("a case names what it shows");
            let (events, want) = rest.split_once("=>").expect("a case has `=>`");
            let input: Vec<RawEvent<'static>> =
                events.split(';').map(str::trim).map(event).collect();
            let want: Vec<&str> = want.split(';').map(str::trim).collect();
            assert_eq!(translate(&input), want, "{}", what.trim());
            cases += 1;
        }
        assert_eq!(cases, 10);
    }
}
