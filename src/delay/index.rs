//! The indexes of a delay list: the path tree `combine` is answered from, the alarm index
//! the Sync alarm is read from, and the queue order over a slab of delays (see the parent
//! module's doc for why each exists).
//!
//! Owns: these data structures and keeping them consistent. Must not touch: the combine rules
//! and the queue's policy (the parent module), I/O, clocks, Lua.

use hashbrown::HashMap;
use std::collections::{BTreeMap, BTreeSet};
#[cfg(test)]
use std::ops::Bound::{Excluded, Unbounded};
use std::rc::Rc;
use std::time::Instant;

use super::{Delay, Pos, Status};

/// The role a path plays for a delay; one position list per role in a path node.
#[derive(Copy, Clone, Eq, PartialEq, Debug)]
pub(super) enum Role {
    /// `path` of a `Delete`.
    Delete = 0,
    /// `path` of an `Attrib`, `Modify` or `Create`.
    Other = 1,
    /// `path` of a Move.
    MoveFrom = 2,
    /// `path2` of a Move.
    MoveTo = 3,
}

pub(super) const ROLES: [Role; 4] = [Role::Delete, Role::Other, Role::MoveFrom, Role::MoveTo];

/// Positions of the delays having exactly one path, per [`Role`]. Nearly every path has one
/// or two delays (a written file: `Create` then `Modify`), which are stored inline; only a path
/// shared by more pays for per-role lists.
#[derive(Default, Debug, PartialEq, Eq)]
pub(super) enum Own {
    #[default]
    Empty,
    One(Pos, Role),
    /// Two delays, ascending by position.
    Two([(Pos, Role); 2]),
    /// Ascending positions, indexed by `Role as usize`.
    Many(Box<[Vec<Pos>; 4]>),
}

impl Own {
    pub(super) fn insert(&mut self, role: Role, pos: Pos) {
        match self {
            Own::Empty => *self = Own::One(pos, role),
            Own::One(p, r) => {
                let (a, b) = ((*p, *r), (pos, role));
                *self = Own::Two(if a.0 < b.0 { [a, b] } else { [b, a] });
            }
            Own::Two(v) => {
                let mut lists: Box<[Vec<Pos>; 4]> = Box::default();
                for &(p, r) in v.iter() {
                    lists[r as usize].push(p);
                }
                *self = Own::Many(lists);
                self.insert(role, pos);
            }
            Own::Many(lists) => {
                let list = &mut lists[role as usize];
                let at = list.partition_point(|&x| x < pos);
                list.insert(at, pos);
            }
        }
    }

    pub(super) fn remove(&mut self, role: Role, pos: Pos) {
        match self {
            Own::One(p, r) if *p == pos && *r == role => *self = Own::Empty,
            Own::Two([a, b]) if *a == (pos, role) => *self = Own::One(b.0, b.1),
            Own::Two([a, b]) if *b == (pos, role) => *self = Own::One(a.0, a.1),
            Own::Many(lists) => {
                let list = &mut lists[role as usize];
                let Ok(at) = list.binary_search(&pos) else {
                    debug_assert!(false, "invariant: removing an unindexed delay");
                    return;
                };
                list.remove(at);
                if list.capacity() > 4 && list.len() * 4 <= list.capacity() {
                    list.shrink_to_fit();
                }
                let left: usize = lists.iter().map(Vec::len).sum();
                if left <= 2 {
                    let mut rest: Vec<(Pos, Role)> = ROLES
                        .iter()
                        .flat_map(|&r| lists[r as usize].iter().map(move |&p| (p, r)))
                        .collect();
                    rest.sort_unstable_by_key(|&(p, _)| p);
                    *self = match rest[..] {
                        [] => Own::Empty,
                        [(p, r)] => Own::One(p, r),
                        [a, b] => Own::Two([a, b]),
                        _ => unreachable!("at most two left"),
                    };
                }
            }
            _ => debug_assert!(false, "invariant: removing an unindexed delay"),
        }
    }

    pub(super) fn newest_of(&self, role: Role) -> Option<Pos> {
        match self {
            Own::Empty => None,
            Own::One(p, r) => (*r == role).then_some(*p),
            Own::Two(v) => v.iter().rev().find(|&&(_, r)| r == role).map(|&(p, _)| p),
            Own::Many(lists) => lists[role as usize].last().copied(),
        }
    }

    pub(super) fn newest(&self) -> Option<Pos> {
        match self {
            Own::Empty => None,
            Own::One(p, _) => Some(*p),
            Own::Two([_, b]) => Some(b.0),
            Own::Many(lists) => lists.iter().filter_map(|l| l.last().copied()).max(),
        }
    }
}

/// One path of the path tree. Exists exactly while some delay has this path or a path below it.
#[derive(Default, Debug, PartialEq, Eq)]
pub(super) struct Node {
    pub(super) own: Own,
    /// Multiset (position → count) of the `newest` value of every child node. Directories
    /// only: a file path never has children, so the box keeps file nodes 16 bytes smaller.
    #[allow(clippy::box_collection)]
    pub(super) children: Option<Box<BTreeMap<Pos, u32>>>,
    /// Newest position at or below this path: max of `own` and `children`.
    pub(super) newest: Option<Pos>,
}

impl Node {
    pub(super) fn own_newest(&self) -> Option<Pos> {
        self.own.newest()
    }

    pub(super) fn compute_newest(&self) -> Option<Pos> {
        let below = self
            .children
            .as_ref()
            .and_then(|c| c.last_key_value())
            .map(|(&p, _)| p);
        self.own.newest().max(below)
    }
}

/// The parent directory of a path in the tree: its longest proper prefix ending with `/`
/// (`/a/b/f` → `/a/b/`, `/a/b/` → `/a/`, `/` → none). Following parents visits exactly the
/// directories a path is "under" (§4.3), so the tree's aggregates match upstream's prefix test.
pub(super) fn parent_of(path: &[u8]) -> Option<&[u8]> {
    let (_, head) = path.split_last()?;
    let slash = head.iter().rposition(|&c| c == b'/')?;
    Some(&path[..=slash])
}

#[derive(Default, Debug)]
pub(super) struct PathTree {
    pub(super) nodes: HashMap<Rc<[u8]>, Node>,
}

impl PathTree {
    pub(super) fn get(&self, path: &[u8]) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Adds or removes `pos` in the `role` list of `path`, then fixes the aggregates of the
    /// ancestors: O(depth · log n), stopping as soon as an ancestor's newest is unchanged.
    /// The tree's own copy of `path` when it has a node for it, so that every delay of one path
    /// shares one allocation (a written file has a `Create` and a `Modify`).
    pub(super) fn intern(&self, path: Rc<[u8]>) -> Rc<[u8]> {
        match self.nodes.get_key_value(&path[..]) {
            Some((key, _)) => key.clone(),
            None => path,
        }
    }

    pub(super) fn update(&mut self, key: &Rc<[u8]>, role: Role, pos: Pos, add: bool) {
        let path: &[u8] = key;
        let node = self.nodes.entry(key.clone()).or_default();
        if add {
            node.own.insert(role, pos);
        } else {
            node.own.remove(role, pos);
        }
        let mut old = node.newest;
        let mut new = node.compute_newest();
        node.newest = new;
        if new.is_none() {
            self.nodes.remove(path);
        }
        let mut child = path;
        while old != new {
            let Some(parent) = parent_of(child) else {
                break;
            };
            let node = self.nodes.entry_ref(parent).or_default();
            if let (Some(o), Some(children)) = (old, node.children.as_mut()) {
                if let Some(count) = children.get_mut(&o) {
                    *count -= 1;
                    if *count == 0 {
                        children.remove(&o);
                    }
                }
                if children.is_empty() {
                    node.children = None;
                }
            }
            if let Some(n) = new {
                *node.children.get_or_insert_default().entry(n).or_insert(0) += 1;
            }
            old = node.newest;
            new = node.compute_newest();
            node.newest = new;
            if new.is_none() {
                self.nodes.remove(parent);
            }
            child = parent;
        }
    }
}

/// The alarms the scheduler asks about (SPEC §4.6 "Sync alarm"): `wait` delays by queue
/// position, and the timed delays that are not `wait` (active, blocked) by alarm, since the
/// scheduler's scan also stops at those.
#[derive(Default, Debug)]
pub(super) struct AlarmIndex {
    pub(super) wait: BTreeMap<Pos, Option<Instant>>,
    pub(super) held: BTreeSet<(Instant, Pos)>,
}

impl AlarmIndex {
    pub(super) fn add(&mut self, pos: Pos, status: Status, alarm: Option<Instant>) {
        if status == Status::Wait {
            self.wait.insert(pos, alarm);
        } else if let Some(t) = alarm {
            self.held.insert((t, pos));
        }
    }

    pub(super) fn remove(&mut self, pos: Pos, status: Status, alarm: Option<Instant>) {
        if status == Status::Wait {
            self.wait.remove(&pos);
        } else if let Some(t) = alarm {
            self.held.remove(&(t, pos));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.wait.len()
    }

    /// The latest alarm after `floor` of a delay that is not `wait` and sits before `before`.
    /// Costs O(log n) plus the held delays behind `before` with alarms later than that.
    pub(super) fn held_in_front(&self, before: Pos, floor: Instant) -> Option<Instant> {
        self.held
            .iter()
            .rev()
            .take_while(|(t, _)| *t > floor)
            .find(|(_, p)| *p < before)
            .map(|(t, _)| *t)
    }
}

/// The queue order: position → slot, and the delays in a slab. A `BTreeMap<Pos, Delay>` keeps
/// its leaves about half full, which for a 90-byte delay costs more than the delay itself; the
/// order map holds 12-byte entries and the slab reuses freed slots.
#[derive(Debug, Default)]
pub(super) struct Queue {
    pub(super) order: BTreeMap<Pos, u32>,
    pub(super) slots: Vec<Option<Delay>>,
    pub(super) free: Vec<u32>,
}

impl Queue {
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub(super) fn slot(&self, i: u32) -> &Delay {
        self.slots[i as usize]
            .as_ref()
            .expect("invariant: ordered slot is filled")
    }

    pub(super) fn get(&self, pos: &Pos) -> Option<&Delay> {
        self.order.get(pos).map(|&i| self.slot(i))
    }

    pub(super) fn get_mut(&mut self, pos: &Pos) -> Option<&mut Delay> {
        let i = *self.order.get(pos)?;
        self.slots[i as usize].as_mut()
    }

    #[cfg(test)]
    pub(super) fn contains_key(&self, pos: &Pos) -> bool {
        self.order.contains_key(pos)
    }

    pub(super) fn insert(&mut self, pos: Pos, delay: Delay) -> Option<Delay> {
        let old = self.remove(&pos);
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(delay);
                i
            }
            None => {
                let i = u32::try_from(self.slots.len()).expect("invariant: < 2^32 delays");
                self.slots.push(Some(delay));
                i
            }
        };
        self.order.insert(pos, i);
        old
    }

    pub(super) fn remove(&mut self, pos: &Pos) -> Option<Delay> {
        let i = self.order.remove(pos)?;
        let delay = self.slots[i as usize].take();
        if self.order.is_empty() {
            self.slots.clear();
            self.free.clear();
        } else {
            self.free.push(i);
        }
        delay
    }

    pub(super) fn first_key_value(&self) -> Option<(&Pos, &Delay)> {
        self.order
            .first_key_value()
            .map(|(p, &i)| (p, self.slot(i)))
    }

    pub(super) fn last_key_value(&self) -> Option<(&Pos, &Delay)> {
        self.order.last_key_value().map(|(p, &i)| (p, self.slot(i)))
    }

    #[cfg(test)]
    pub(super) fn after(&self, pos: Pos) -> impl Iterator<Item = (&Pos, &Delay)> {
        self.order
            .range((Excluded(pos), Unbounded))
            .map(|(p, &i)| (p, self.slot(i)))
    }

    #[cfg(test)]
    pub(super) fn iter(
        &self,
    ) -> impl DoubleEndedIterator<Item = (&Pos, &Delay)> + ExactSizeIterator {
        self.order.iter().map(|(p, &i)| (p, self.slot(i)))
    }

    pub(super) fn values(&self) -> impl DoubleEndedIterator<Item = &Delay> + ExactSizeIterator {
        self.order.values().map(|&i| self.slot(i))
    }
}

impl std::ops::Index<&Pos> for Queue {
    type Output = Delay;

    fn index(&self, pos: &Pos) -> &Delay {
        self.get(pos).expect("invariant: position is queued")
    }
}
