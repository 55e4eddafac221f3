//! The storage of a delay list: the compact delay record, the queue order over a slab of
//! records with its wait marks, the held alarms and the compact instants they use (see the parent module's doc for
//! why each exists).
//!
//! Owns: [`Rec`], [`Stamp`], [`Queue`], [`Held`] and keeping each consistent in itself.
//! Must not touch: the combine rules, the path tree, the queue's policy (the parent module),
//! I/O, clocks (an instant is only converted, never read), Lua.

use std::collections::{BTreeMap, BTreeSet};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::slab::Slab;
use super::{DelayKind, Status};

/// Queue position: grows with every append, starts at 1; a replacement reuses the position
/// of the delay it replaces.
pub(super) type Pos = NonZeroU64;

/// A path node of the path tree (its slab index plus one), or [`NodeRef::DETACHED`].
#[derive(Copy, Clone, Eq, PartialEq, Hash, Debug)]
pub(super) struct NodeRef(pub(super) NonZeroU32);

impl NodeRef {
    /// The path of an `Init`, `Blanket` or `Full` delay, which `combine` never answers
    /// from, so the tree does not hold it: it is kept beside the queue, by position.
    pub(super) const DETACHED: NodeRef = NodeRef(NonZeroU32::MAX);
}

/// An optional instant in 8 bytes: nanoseconds from a process-wide origin, biased so that
/// the order of stamps is the order of instants; 0 is "none" (upstream alarm `true`).
#[derive(Copy, Clone, Eq, PartialEq, Ord, PartialOrd, Hash, Debug, Default)]
pub(super) struct Stamp(u64);

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

const BIAS: u64 = 1 << 63;

impl Stamp {
    pub(super) fn of(t: Option<Instant>) -> Stamp {
        let Some(t) = t else { return Stamp(0) };
        let o = origin();
        // ±2^63 - 1 ns is ±292 years around the origin; beyond that the stamp saturates.
        let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let off = match t.checked_duration_since(o) {
            Some(d) => ns(d),
            None => -ns(o.duration_since(t)),
        };
        Stamp((off as u64) ^ BIAS)
    }

    pub(super) fn get(self) -> Option<Instant> {
        if self.0 == 0 {
            return None;
        }
        let off = (self.0 ^ BIAS) as i64;
        let o = origin();
        Some(if off >= 0 {
            o + Duration::from_nanos(off as u64)
        } else {
            o - Duration::from_nanos(off.unsigned_abs())
        })
    }
}

/// One queued delay as stored: 32 bytes. Paths are path-tree nodes; the id is the position
/// (kept by the queue order) and `gen`.
#[derive(Clone, Debug)]
pub(super) struct Rec {
    pub(super) kind: DelayKind,
    pub(super) status: Status,
    /// How many delays this position held before this one (replacements, see [`super::DelayId`]).
    pub(super) gen: u8,
    /// When the change it stands for first arrived ([`crate::health::clock`]).
    pub(super) since: u32,
    pub(super) path: NodeRef,
    /// Move destination; `None` for other kinds.
    pub(super) path2: Option<NodeRef>,
    pub(super) alarm: Stamp,
    /// Position of the delay that blocks this one.
    pub(super) blocked_by: Option<Pos>,
}

/// Positions per chunk of the queue order.
const CHUNK: u64 = 32;
/// An empty entry of a chunk.
const NONE: u32 = u32::MAX;

/// 32 consecutive positions → slab slot ([`NONE`] where no delay sits).
#[derive(Debug)]
pub(super) struct Chunk {
    slot: [u32; CHUNK as usize],
    used: u32,
    /// Bit `i`: the delay at the chunk's position `i` is `wait`.
    wait: u32,
}

/// The queue order, position → slot, in chunks of 32 consecutive positions (a chunk exists
/// while one of its positions holds a delay), and the delays in a slab whose freed slots are
/// reused. Appends fill chunks densely, so the order costs about 4 bytes per delay; a
/// `BTreeMap<Pos, _>` keeps its leaves about half full, six times as much.
///
/// It is also the wait index the Sync alarm is read from (SPEC §4.6): each chunk marks its
/// `wait` delays in a bitmap, and the chunks holding one are kept in order, so the first
/// `wait` delay is found in O(log n) whatever number of blocked or active delays precede it.
#[derive(Debug, Default)]
pub(super) struct Queue {
    order: BTreeMap<u64, Box<Chunk>>,
    /// Keys of the chunks that hold a `wait` delay.
    waiting: BTreeSet<u64>,
    /// Number of `wait` delays.
    waits: usize,
    len: usize,
    slots: Slab<Rec>,
}

fn split(pos: Pos) -> (u64, usize) {
    (pos.get() / CHUNK, (pos.get() % CHUNK) as usize)
}

fn join(key: u64, at: usize) -> Pos {
    Pos::new(key * CHUNK + at as u64).expect("invariant: position 0 is never used")
}

impl Queue {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn slot_of(&self, pos: Pos) -> Option<u32> {
        let (key, at) = split(pos);
        let i = self.order.get(&key)?.slot[at];
        (i != NONE).then_some(i)
    }

    pub(super) fn rec(&self, i: u32) -> &Rec {
        self.slots
            .get(i)
            .expect("invariant: ordered slot is filled")
    }

    pub(super) fn get(&self, pos: Pos) -> Option<&Rec> {
        self.slot_of(pos).map(|i| self.rec(i))
    }

    /// The record at `pos`, to change anything but its status ([`Queue::set_status`]).
    pub(super) fn get_mut(&mut self, pos: Pos) -> Option<&mut Rec> {
        let i = self.slot_of(pos)?;
        self.slots.get_mut(i)
    }

    pub(super) fn set_status(&mut self, pos: Pos, status: Status) {
        if let Some(r) = self.get_mut(pos) {
            r.status = status;
            self.mark(pos, status == Status::Wait);
        }
    }

    /// Sets or clears the wait mark of the queued position `pos`.
    fn mark(&mut self, pos: Pos, wait: bool) {
        let (key, at) = split(pos);
        let Some(c) = self.order.get_mut(&key) else {
            return;
        };
        let bit = 1u32 << at;
        if (c.wait & bit != 0) == wait {
            return;
        }
        c.wait ^= bit;
        if wait {
            self.waits += 1;
            self.waiting.insert(key);
        } else {
            self.waits -= 1;
            if c.wait == 0 {
                self.waiting.remove(&key);
            }
        }
    }

    /// The first `wait` delay in queue order.
    pub(super) fn first_wait(&self) -> Option<Pos> {
        let &key = self.waiting.first()?;
        let c = self.order.get(&key)?;
        Some(join(key, c.wait.trailing_zeros() as usize))
    }

    pub(super) fn wait_count(&self) -> usize {
        self.waits
    }

    /// Whether `pos` is marked `wait` (tests only).
    #[cfg(test)]
    pub(super) fn marked(&self, pos: Pos) -> bool {
        let (key, at) = split(pos);
        self.order.get(&key).is_some_and(|c| c.wait & 1 << at != 0)
    }

    /// Puts `rec` at the free position `pos`.
    pub(super) fn insert(&mut self, pos: Pos, rec: Rec) {
        let wait = rec.status == Status::Wait;
        let i = self.slots.put(rec);
        let (key, at) = split(pos);
        let chunk = self.order.entry(key).or_insert_with(|| {
            Box::new(Chunk {
                slot: [NONE; CHUNK as usize],
                used: 0,
                wait: 0,
            })
        });
        debug_assert_eq!(chunk.slot[at], NONE, "invariant: queue position is free");
        chunk.slot[at] = i;
        chunk.used += 1;
        self.len += 1;
        self.mark(pos, wait);
    }

    pub(super) fn remove(&mut self, pos: Pos) -> Option<Rec> {
        self.mark(pos, false);
        let (key, at) = split(pos);
        let chunk = self.order.get_mut(&key)?;
        let i = std::mem::replace(&mut chunk.slot[at], NONE);
        if i == NONE {
            return None;
        }
        chunk.used -= 1;
        if chunk.used == 0 {
            self.order.remove(&key);
        }
        self.len -= 1;
        self.slots.take(i)
    }

    /// `(position, record)` in queue order, from after `after` (from the start for `None`).
    pub(super) fn after(&self, after: Option<Pos>) -> impl DoubleEndedIterator<Item = (Pos, &Rec)> {
        let (first, from) = match after {
            None => (0, 0),
            Some(p) => {
                let (key, at) = split(p);
                (key, at + 1)
            }
        };
        self.order.range(first..).flat_map(move |(&key, c)| {
            let skip = if key == first { from } else { 0 };
            c.slot
                .iter()
                .enumerate()
                .skip(skip)
                .filter(|&(_, &i)| i != NONE)
                .map(move |(at, &i)| (join(key, at), self.rec(i)))
        })
    }

    pub(super) fn first(&self) -> Option<(Pos, &Rec)> {
        self.after(None).next()
    }

    pub(super) fn last(&self) -> Option<(Pos, &Rec)> {
        let (&key, c) = self.order.last_key_value()?;
        let at = c.slot.iter().rposition(|&i| i != NONE)?;
        Some((join(key, at), self.rec(c.slot[at])))
    }
}

/// The timed delays that are not `wait` (active, blocked) by alarm: the scheduler's scan for
/// the Sync alarm (SPEC §4.6) also stops at those.
#[derive(Default, Debug)]
pub(super) struct Held {
    pub(super) set: BTreeSet<(Stamp, Pos)>,
}

impl Held {
    pub(super) fn add(&mut self, pos: Pos, status: Status, alarm: Stamp) {
        if status != Status::Wait && alarm != Stamp::default() {
            self.set.insert((alarm, pos));
        }
    }

    pub(super) fn remove(&mut self, pos: Pos, status: Status, alarm: Stamp) {
        if status != Status::Wait && alarm != Stamp::default() {
            self.set.remove(&(alarm, pos));
        }
    }

    /// The latest alarm after `floor` of a delay that is not `wait` and sits before `before`.
    /// Costs O(log n) plus the held delays behind `before` with alarms later than that.
    pub(super) fn held_in_front(&self, before: Pos, floor: Stamp) -> Option<Stamp> {
        self.set
            .iter()
            .rev()
            .take_while(|(t, _)| *t > floor)
            .find(|(_, p)| *p < before)
            .map(|(t, _)| *t)
    }
}
