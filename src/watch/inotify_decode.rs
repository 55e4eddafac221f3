//! Decoding of the inotify monitor's kernel records (SPEC §3.3–§3.4): the raw `inotify_event`
//! records of one `read()`, their classification into event kinds, and move pairing by cookie.
//! Pure: no I/O, no watch registry.
//!
//! Owns: the record layout ([`RawEvents`]), the translation into [`Step`]s ([`Pairer`]) and the
//! `Inotify` log line of a raw event ([`log_event`]). Must not touch: watch descriptors, the
//! directory tree, paths (a step still names a wd and an entry name), syncs, delays, Lua.

use super::FsKind;

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

/// Iterates the records of one `read()`. Parsed with `from_ne_bytes`, so no alignment or unsafe
/// concerns; a truncated tail (never produced by the kernel) ends the iteration.
pub(super) struct RawEvents<'a> {
    pub(super) buf: &'a [u8],
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
    pub(super) fn finish<E>(&mut self, emit: Emit<'_, E>) -> Result<(), E> {
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
pub(super) fn log_event(
    kind: FsKind,
    wd: i32,
    name: &[u8],
    is_dir: bool,
    to: Option<(i32, &[u8])>,
) -> i32 {
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

    /// Owned form of a `Step` for comparisons: (what, wd, name, wd2, name2).
    type Out = (&'static str, i32, Vec<u8>, i32, Vec<u8>);

    fn translate(events: &[RawEvent<'_>]) -> Vec<Out> {
        let mut pairer = Pairer::default();
        let mut got: Vec<Out> = Vec::new();
        let mut emit = |s: Step<'_>| -> Result<(), ()> {
            got.push(match s {
                Step::Overflow => ("overflow", 0, vec![], 0, vec![]),
                Step::Ignored { wd } => ("ignored", wd, vec![], 0, vec![]),
                Step::MovedSelf { wd } => ("moved self", wd, vec![], 0, vec![]),
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
                "name-less events do not disturb pairing; IN_MOVE_SELF is reported",
                vec![
                    ev(1, IN_MOVED_FROM | IN_ISDIR, 5, b"d"),
                    ev(4, IN_MOVE_SELF, 0, b""),
                    ev(2, IN_MOVED_TO | IN_ISDIR, 5, b"d"),
                ],
                vec![
                    o("moved self", 4, b"", 0, b""),
                    o("move dir", 1, b"d", 2, b"d"),
                ],
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
}
