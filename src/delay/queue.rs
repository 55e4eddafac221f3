//! The storage of a delay list: the compact delay record, the queue order over a slab of
//! records, the wait index and the compact instants they use (see the parent module's doc for
//! why each exists).
//!
//! Owns: [`Rec`], [`Stamp`], [`Queue`], [`Waits`] and keeping each consistent in itself.
//! Must not touch: the combine rules, the path tree, the queue's policy (the parent module),
//! I/O, clocks (an instant is only converted, never read), Lua.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
}

/// The queue order, position → slot, in chunks of 32 consecutive positions (a chunk exists
/// while one of its positions holds a delay), and the delays in a slab whose freed slots are
/// reused. Appends fill chunks densely, so the order costs about 4 bytes per delay; a
/// `BTreeMap<Pos, _>` keeps its leaves about half full, six times as much.
#[derive(Debug, Default)]
pub(super) struct Queue {
    order: BTreeMap<u64, Box<Chunk>>,
    len: usize,
    slots: Vec<Option<Rec>>,
    free: Vec<u32>,
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
        self.slots[i as usize]
            .as_ref()
            .expect("invariant: ordered slot is filled")
    }

    pub(super) fn get(&self, pos: Pos) -> Option<&Rec> {
        self.slot_of(pos).map(|i| self.rec(i))
    }

    pub(super) fn get_mut(&mut self, pos: Pos) -> Option<&mut Rec> {
        let i = self.slot_of(pos)?;
        self.slots[i as usize].as_mut()
    }

    /// Puts `rec` at the free position `pos`.
    pub(super) fn insert(&mut self, pos: Pos, rec: Rec) {
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(rec);
                i
            }
            None => {
                let i = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|&i| i != NONE)
                    .expect("invariant: fewer than 2^32 - 1 delays per list");
                self.slots.push(Some(rec));
                i
            }
        };
        let (key, at) = split(pos);
        let chunk = self.order.entry(key).or_insert_with(|| {
            Box::new(Chunk {
                slot: [NONE; CHUNK as usize],
                used: 0,
            })
        });
        debug_assert_eq!(chunk.slot[at], NONE, "invariant: queue position is free");
        chunk.slot[at] = i;
        chunk.used += 1;
        self.len += 1;
    }

    pub(super) fn remove(&mut self, pos: Pos) -> Option<Rec> {
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
        let rec = self.slots[i as usize].take();
        if self.len == 0 {
            self.slots = Vec::new();
            self.free = Vec::new();
        } else {
            self.free.push(i);
        }
        rec
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

/// The wait index the Sync alarm is read from (SPEC §4.6 "Sync alarm"): the positions of the
/// `wait` delays in a min-heap that is pruned lazily (an entry whose delay left `wait` stays
/// until it reaches the top; the owner prunes the top after every change, so the top is
/// always a `wait` delay), and the timed delays that are not `wait` (active, blocked) by
/// alarm, since the scheduler's scan also stops at those.
#[derive(Default, Debug)]
pub(super) struct Waits {
    pub(super) heap: BinaryHeap<Reverse<Pos>>,
    /// Number of `wait` delays.
    pub(super) count: usize,
    pub(super) held: BTreeSet<(Stamp, Pos)>,
}

impl Waits {
    pub(super) fn add(&mut self, pos: Pos, status: Status, alarm: Stamp) {
        if status == Status::Wait {
            self.heap.push(Reverse(pos));
            self.count += 1;
        } else if alarm != Stamp::default() {
            self.held.insert((alarm, pos));
        }
    }

    /// Leaves the heap entry to be pruned (see the type's doc).
    pub(super) fn remove(&mut self, pos: Pos, status: Status, alarm: Stamp) {
        if status == Status::Wait {
            self.count -= 1;
        } else if alarm != Stamp::default() {
            self.held.remove(&(alarm, pos));
        }
    }

    /// The first `wait` position, once the top has been pruned.
    pub(super) fn first(&self) -> Option<Pos> {
        self.heap.peek().map(|r| r.0)
    }

    /// The latest alarm after `floor` of a delay that is not `wait` and sits before `before`.
    /// Costs O(log n) plus the held delays behind `before` with alarms later than that.
    pub(super) fn held_in_front(&self, before: Pos, floor: Stamp) -> Option<Stamp> {
        self.held
            .iter()
            .rev()
            .take_while(|(t, _)| *t > floor)
            .find(|(_, p)| *p < before)
            .map(|(t, _)| *t)
    }
}
