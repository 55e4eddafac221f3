//! The path tree of a delay list: one node per path that a queued delay has, or that lies
//! above one, each holding the positions of its own delays by role and the multiset of its
//! children's newest positions, so `combine` is answered from O(depth) nodes (see the parent
//! module's doc). The nodes also store the paths the delays refer to.
//!
//! Owns: [`PathTree`], [`Node`], [`Role`] and keeping the aggregates consistent. Must not
//! touch: the combine rules, the queue and its policy (the parent module), I/O, clocks, Lua.

use hashbrown::{DefaultHashBuilder, HashTable};
#[cfg(test)]
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::num::{NonZeroU32, NonZeroU64};
use std::rc::Rc;

use super::queue::{NodeRef, Pos};
use super::slab::Slab;

/// The role a path plays for a delay; one position list per role in a path node. A role's
/// place in this declaration is its index: in [`Role::ALL`], in `Extra::many` and as the two
/// low bits of a [`Packed`].
#[derive(Copy, Clone, Eq, PartialEq, Debug)]
pub(super) enum Role {
    /// `path` of a `Delete`.
    Delete,
    /// `path` of an `Attrib`, `Modify` or `Create`.
    Other,
    /// `path` of a Move.
    MoveFrom,
    /// `path2` of a Move.
    MoveTo,
}

impl Role {
    pub(super) const ALL: [Role; 4] = [Role::Delete, Role::Other, Role::MoveFrom, Role::MoveTo];
}

/// A position with its role in one word: `pos << 2 | role`.
#[derive(Copy, Clone, Eq, PartialEq, Debug)]
struct Packed(NonZeroU64);

impl Packed {
    fn new(pos: Pos, role: Role) -> Packed {
        debug_assert!(pos.get() < 1 << 62, "invariant: positions stay below 2^62");
        Packed(NonZeroU64::new(pos.get() << 2 | role as u64).expect("invariant: non-zero"))
    }

    fn pos(self) -> Pos {
        Pos::new(self.0.get() >> 2).expect("invariant: packed positions are non-zero")
    }

    fn role(self) -> Role {
        Role::ALL[(self.0.get() & 3) as usize]
    }
}

/// What only some nodes need: children (directories) or more than two own delays.
#[derive(Default, Debug)]
struct Extra {
    /// The newest position at or below each child node, as `position << 1 | copy`: one
    /// position is the newest of at most two children (a Move's origin and destination), so
    /// this set is the multiset in 8 bytes an entry.
    children: BTreeSet<u64>,
    /// Own positions, ascending, indexed by `Role as usize`, once a path has more than two
    /// delays (then `Node::own` is empty).
    many: Option<Box<[Vec<Pos>; 4]>>,
}

/// One path of the tree. Exists exactly while some delay has this path or a path below it.
/// Nearly every path has one or two delays (a written file: `Create` then `Modify`), kept
/// inline; 40 bytes.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) path: Rc<[u8]>,
    /// Up to two own delays, ascending by position (`None` after the used ones).
    own: [Option<Packed>; 2],
    extra: Option<Box<Extra>>,
}

impl Node {
    fn many(&self) -> Option<&[Vec<Pos>; 4]> {
        self.extra.as_ref().and_then(|e| e.many.as_deref())
    }

    fn insert(&mut self, role: Role, pos: Pos) {
        let new = Packed::new(pos, role);
        if let Some(lists) = self.extra.as_mut().and_then(|e| e.many.as_mut()) {
            let list = &mut lists[role as usize];
            let at = list.partition_point(|&x| x < pos);
            list.insert(at, pos);
            return;
        }
        match self.own {
            [None, _] => self.own = [Some(new), None],
            [Some(a), None] => {
                self.own = if a.pos() < pos {
                    [Some(a), Some(new)]
                } else {
                    [Some(new), Some(a)]
                };
            }
            [Some(a), Some(b)] => {
                let mut lists: Box<[Vec<Pos>; 4]> = Box::default();
                for p in [a, b, new] {
                    lists[p.role() as usize].push(p.pos());
                }
                for l in lists.iter_mut() {
                    l.sort_unstable();
                }
                self.own = [None, None];
                self.extra.get_or_insert_default().many = Some(lists);
            }
        }
    }

    fn remove(&mut self, role: Role, pos: Pos) {
        let gone = Some(Packed::new(pos, role));
        let Some(extra) = self.extra.as_mut().filter(|e| e.many.is_some()) else {
            match self.own {
                [a, b] if a == gone => self.own = [b, None],
                [a, b] if b == gone => self.own = [a, None],
                _ => debug_assert!(false, "invariant: removing an unindexed delay"),
            }
            return;
        };
        let lists = extra.many.as_mut().expect("checked above");
        let list = &mut lists[role as usize];
        let Ok(at) = list.binary_search(&pos) else {
            debug_assert!(false, "invariant: removing an unindexed delay");
            return;
        };
        list.remove(at);
        if list.capacity() > 4 && list.len() * 4 <= list.capacity() {
            list.shrink_to_fit();
        }
        if lists.iter().map(Vec::len).sum::<usize>() <= 2 {
            let mut rest: Vec<Packed> = Role::ALL
                .iter()
                .flat_map(|&r| lists[r as usize].iter().map(move |&p| Packed::new(p, r)))
                .collect();
            rest.sort_unstable_by_key(|p| p.pos());
            extra.many = None;
            self.own = [rest.first().copied(), rest.get(1).copied()];
        }
        if self
            .extra
            .as_ref()
            .is_some_and(|e| e.children.is_empty() && e.many.is_none())
        {
            self.extra = None;
        }
    }

    pub(super) fn newest_of(&self, role: Role) -> Option<Pos> {
        if let Some(lists) = self.many() {
            return lists[role as usize].last().copied();
        }
        self.own
            .iter()
            .rev()
            .flatten()
            .find(|p| p.role() == role)
            .map(|p| p.pos())
    }

    pub(super) fn own_newest(&self) -> Option<Pos> {
        if let Some(lists) = self.many() {
            return lists.iter().filter_map(|l| l.last().copied()).max();
        }
        self.own.iter().rev().flatten().next().map(|p| p.pos())
    }

    /// Newest position at or below this path.
    pub(super) fn newest(&self) -> Option<Pos> {
        let below = self
            .extra
            .as_ref()
            .and_then(|e| e.children.last())
            .and_then(|&k| Pos::new(k >> 1));
        self.own_newest().max(below)
    }

    fn count_child(&mut self, pos: Pos, add: bool) {
        let key = pos.get() << 1;
        if add {
            let children = &mut self.extra.get_or_insert_default().children;
            let fresh = children.insert(key) || children.insert(key | 1);
            debug_assert!(
                fresh,
                "invariant: a position is the newest of two children at most"
            );
            return;
        }
        let Some(extra) = self.extra.as_mut() else {
            debug_assert!(false, "invariant: a child's newest is counted");
            return;
        };
        let found = extra.children.remove(&(key | 1)) || extra.children.remove(&key);
        debug_assert!(found, "invariant: a child's newest is counted");
        if extra.children.is_empty() && extra.many.is_none() {
            self.extra = None;
        }
    }

    fn is_unused(&self) -> bool {
        self.own[0].is_none() && self.extra.is_none()
    }

    /// Own positions with roles, ascending by position (tests only).
    #[cfg(test)]
    fn own_list(&self) -> Vec<(Pos, u8)> {
        let mut v: Vec<(Pos, u8)> = match self.many() {
            Some(lists) => Role::ALL
                .iter()
                .flat_map(|&r| lists[r as usize].iter().map(move |&p| (p, r as u8)))
                .collect(),
            None => self
                .own
                .iter()
                .flatten()
                .map(|p| (p.pos(), p.role() as u8))
                .collect(),
        };
        v.sort_unstable();
        v
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

/// A node's own positions with roles and its children multiset (tests only).
#[cfg(test)]
type NodeSummary = (Vec<(Pos, u8)>, Vec<(Pos, u32)>);

/// The nodes in a slab (a delay refers to its path by slot, 4 bytes instead of a 16-byte
/// shared pointer), found by path through a table of slot numbers.
#[derive(Default, Debug)]
pub(super) struct PathTree {
    nodes: Slab<Node>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl PathTree {
    /// Inline, as [`PathTree::get`]: a push looks up its path and the parents above it.
    #[inline]
    fn find(&self, path: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(path);
        self.index
            .find(hash, |&i| self.slot(i).path[..] == *path)
            .copied()
    }

    fn slot(&self, i: u32) -> &Node {
        self.nodes
            .get(i)
            .expect("invariant: indexed node slot is filled")
    }

    fn slot_mut(&mut self, i: u32) -> &mut Node {
        self.nodes
            .get_mut(i)
            .expect("invariant: indexed node slot is filled")
    }

    #[inline]
    pub(super) fn get(&self, path: &[u8]) -> Option<&Node> {
        self.find(path).map(|i| self.slot(i))
    }

    pub(super) fn path(&self, r: NodeRef) -> &Rc<[u8]> {
        &self.slot(r.0.get() - 1).path
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The node of `path`, made (holding `make()` as its path) when missing.
    fn ensure(&mut self, path: &[u8], make: impl FnOnce() -> Rc<[u8]>) -> u32 {
        if let Some(i) = self.find(path) {
            return i;
        }
        let node = Node {
            path: make(),
            own: [None, None],
            extra: None,
        };
        let i = self.nodes.put(node);
        let Self {
            nodes,
            index,
            hasher,
        } = self;
        let hash = hasher.hash_one(path);
        index.insert_unique(hash, i, |&j| {
            let node = nodes.get(j);
            hasher.hash_one(node.map_or(&[][..], |n| &n.path[..]))
        });
        i
    }

    fn release(&mut self, i: u32) {
        let Some(node) = self.nodes.take(i) else {
            return;
        };
        let hash = self.hasher.hash_one(&node.path[..]);
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
    }

    /// Indexes `pos` under `path` in the `role` list; returns the path's node.
    pub(super) fn add(&mut self, path: Rc<[u8]>, role: Role, pos: Pos) -> NodeRef {
        let i = self.ensure(&path, || path.clone());
        self.update(i, role, pos, true);
        NodeRef(NonZeroU32::new(i + 1).expect("invariant: slot + 1 is non-zero"))
    }

    /// Takes `pos` out of the `role` list of the node `r`.
    pub(super) fn remove(&mut self, r: NodeRef, role: Role, pos: Pos) {
        self.update(r.0.get() - 1, role, pos, false);
    }

    /// Adds or removes `pos` in the `role` list of node `i`, then fixes the aggregates of the
    /// ancestors: O(depth · log n), stopping as soon as an ancestor's newest is unchanged.
    fn update(&mut self, i: u32, role: Role, pos: Pos, add: bool) {
        let node = self.slot_mut(i);
        let mut old = node.newest();
        if add {
            node.insert(role, pos);
        } else {
            node.remove(role, pos);
        }
        let mut new = node.newest();
        let path = node.path.clone();
        if node.is_unused() {
            self.release(i);
        }
        let mut child: &[u8] = &path;
        while old != new {
            let Some(parent) = parent_of(child) else {
                break;
            };
            let p = self.ensure(parent, || Rc::from(parent));
            let node = self.slot_mut(p);
            let before = node.newest();
            if let Some(o) = old {
                node.count_child(o, false);
            }
            if let Some(n) = new {
                node.count_child(n, true);
            }
            (old, new) = (before, node.newest());
            if node.is_unused() {
                self.release(p);
            }
            child = parent;
        }
    }

    /// Every node as path → (own positions with roles, children multiset) (tests only).
    #[cfg(test)]
    pub(super) fn summary(&self) -> BTreeMap<Vec<u8>, NodeSummary> {
        assert_eq!(self.index.len(), self.nodes.iter().count(), "node index");
        self.nodes
            .iter()
            .map(|n| {
                let mut children: BTreeMap<Pos, u32> = BTreeMap::new();
                for &k in n.extra.iter().flat_map(|e| e.children.iter()) {
                    *children
                        .entry(Pos::new(k >> 1).expect("non-zero"))
                        .or_insert(0) += 1;
                }
                let children: Vec<(Pos, u32)> = children.into_iter().collect();
                assert_eq!(
                    self.find(&n.path)
                        .map(|i| self.slot(i).path.clone())
                        .as_ref(),
                    Some(&n.path)
                );
                (n.path.to_vec(), (n.own_list(), children))
            })
            .collect()
    }
}
