//! The directory tree of the inotify monitor: one node per watched directory, with its name
//! and parent link, looked up by watch descriptor or by (parent, name).
//!
//! Owns: the nodes, the name arena and both lookup tables. Must not touch: the kernel (the
//! inotify monitor adds and removes watches and tells the tree), syncs, excludes.
//!
//! # Memory layout
//!
//! A watched directory costs one 32-byte `Node` in a slab plus its name in one shared byte
//! arena, plus one `u32` slot in each of two `hashbrown::HashTable`s (by wd, by parent+name)
//! that hash data stored in the node instead of duplicating keys. No per-directory heap
//! allocation: about 50 bytes per directory in total. Full paths are built on demand by walking
//! parent links, only when an event is emitted. A directory move renames one node.

use std::hash::BuildHasher;
use std::mem;

use hashbrown::{DefaultHashBuilder, HashTable};

/// What the registry keeps per watch: the kernel's wd, or (in tests) a bare number.
pub(super) trait Handle {
    fn id(&self) -> i32;
}

/// "No node": the parent of a root, the end of the free list.
pub(super) const NO_NODE: u32 = u32::MAX;

/// One watched directory (32 bytes with a `WatchDescriptor`).
#[derive(Debug)]
pub(super) struct Node<H> {
    /// `None` marks a free slot.
    handle: Option<H>,
    /// Parent node; `NO_NODE` for a root. In a free slot: the next free slot.
    parent: u32,
    /// The name in `Registry::names`; for a root, its absolute path without the trailing `/`.
    name_off: u32,
    name_len: u32,
    /// Number of nodes whose parent is this one.
    children: u32,
}

impl<H> Node<H> {
    pub(super) fn vacant() -> Self {
        Node {
            handle: None,
            parent: NO_NODE,
            name_off: 0,
            name_len: 0,
            children: 0,
        }
    }
}

/// Nodes per slab chunk (32 KiB).
pub(super) const CHUNK: usize = 1024;

/// The nodes, in fixed-size chunks: growing never copies, and never allocates more than one
/// chunk ahead (a doubling `Vec` would waste up to half of the biggest structure).
#[derive(Debug)]
pub(super) struct Slab<H> {
    chunks: Vec<Box<[Node<H>]>>,
    len: u32,
}

impl<H> Slab<H> {
    pub(super) fn new() -> Self {
        Slab {
            chunks: Vec::new(),
            len: 0,
        }
    }

    /// Slots handed out so far (live and free).
    pub(super) fn len(&self) -> u32 {
        self.len
    }

    pub(super) fn get(&self, idx: u32) -> Option<&Node<H>> {
        (idx < self.len).then(|| &self[idx])
    }

    /// Appends a node; the caller checked `len() < NO_NODE`.
    pub(super) fn push(&mut self, node: Node<H>) -> u32 {
        let idx = self.len;
        if idx as usize / CHUNK == self.chunks.len() {
            self.chunks
                .push((0..CHUNK).map(|_| Node::vacant()).collect());
        }
        self.len += 1;
        self[idx] = node;
        idx
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Node<H>> {
        let len = self.len as usize;
        self.chunks.iter_mut().flat_map(|c| c.iter_mut()).take(len)
    }

    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.chunks.len() * CHUNK * mem::size_of::<Node<H>>()
            + self.chunks.capacity() * mem::size_of::<Box<[Node<H>]>>()
    }
}

impl<H> std::ops::Index<u32> for Slab<H> {
    type Output = Node<H>;

    fn index(&self, idx: u32) -> &Node<H> {
        &self.chunks[idx as usize / CHUNK][idx as usize % CHUNK]
    }
}

impl<H> std::ops::IndexMut<u32> for Slab<H> {
    fn index_mut(&mut self, idx: u32) -> &mut Node<H> {
        &mut self.chunks[idx as usize / CHUNK][idx as usize % CHUNK]
    }
}

/// Directory tree of the watches: names and parent links, never full paths.
#[derive(Debug)]
pub(super) struct Registry<H> {
    pub(super) nodes: Slab<H>,
    free: u32,
    pub(super) live: usize,
    /// Every node's name, back to back. Renamed or removed nodes leave garbage behind, which
    /// `maybe_compact` reclaims once it outweighs the live names.
    pub(super) names: Vec<u8>,
    garbage: usize,
    /// Node indices, hashed by the node's wd.
    by_wd: HashTable<u32>,
    /// Indices of non-root nodes, hashed by (parent, name).
    by_name: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

pub(super) fn name_of<'a, H>(names: &'a [u8], node: &Node<H>) -> &'a [u8] {
    let start = node.name_off as usize;
    &names[start..start + node.name_len as usize]
}

pub(super) fn wd_of<H: Handle>(node: &Node<H>) -> i32 {
    node.handle.as_ref().map_or(-1, Handle::id)
}

pub(super) fn hash_child(hasher: &DefaultHashBuilder, parent: u32, name: &[u8]) -> u64 {
    hasher.hash_one((parent, name))
}

/// Grows `v` so it can take `extra` more items, by a quarter rather than doubling: the slab and
/// the arena are the bulk of the memory, and `realloc` of big blocks is a cheap `mremap`.
pub(super) fn reserve_quarter<T>(v: &mut Vec<T>, extra: usize, min: usize) {
    if v.capacity() - v.len() < extra {
        v.reserve_exact(extra.max(v.capacity() / 4).max(min));
    }
}

impl<H: Handle> Registry<H> {
    pub(super) fn new() -> Self {
        Registry {
            nodes: Slab::new(),
            free: NO_NODE,
            live: 0,
            names: Vec::new(),
            garbage: 0,
            by_wd: HashTable::new(),
            by_name: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    pub(super) fn node(&self, idx: u32) -> &Node<H> {
        &self.nodes[idx]
    }

    pub(super) fn name(&self, idx: u32) -> &[u8] {
        name_of(&self.names, self.node(idx))
    }

    pub(super) fn parent(&self, idx: u32) -> u32 {
        self.node(idx).parent
    }

    pub(super) fn wd(&self, idx: u32) -> i32 {
        wd_of(self.node(idx))
    }

    /// True if `idx` is a live node that still holds watch `wd` (stale-index guard).
    pub(super) fn holds(&self, idx: u32, wd: i32) -> bool {
        self.nodes
            .get(idx)
            .is_some_and(|n| n.handle.as_ref().is_some_and(|h| h.id() == wd))
    }

    pub(super) fn find_wd(&self, wd: i32) -> Option<u32> {
        let nodes = &self.nodes;
        self.by_wd
            .find(self.hasher.hash_one(wd), |&i| wd_of(&nodes[i]) == wd)
            .copied()
    }

    pub(super) fn find_child(&self, parent: u32, name: &[u8]) -> Option<u32> {
        let (nodes, names) = (&self.nodes, &self.names);
        self.by_name
            .find(hash_child(&self.hasher, parent, name), |&i| {
                let n = &nodes[i];
                n.parent == parent && name_of(names, n) == name
            })
            .copied()
    }

    /// Appends `name` to the arena; `None` if offsets would no longer fit in 32 bits.
    pub(super) fn push_name(&mut self, name: &[u8]) -> Option<(u32, u32)> {
        if u32::try_from(self.names.len() + name.len()).is_err() {
            self.compact();
        }
        let off = u32::try_from(self.names.len()).ok()?;
        let len = u32::try_from(name.len()).ok()?;
        u32::try_from(self.names.len() + name.len()).ok()?;
        reserve_quarter(&mut self.names, name.len(), 4096);
        self.names.extend_from_slice(name);
        Some((off, len))
    }

    /// Registers a new watch under `parent` (or as a root). The caller made sure no other node
    /// holds the same wd or the same (parent, name). Hands the handle back if the registry is
    /// full (4 GiB of names or 2^32 nodes).
    pub(super) fn insert(&mut self, handle: H, parent: u32, name: &[u8]) -> Result<u32, H> {
        if self.free == NO_NODE && self.nodes.len() == NO_NODE {
            return Err(handle);
        }
        let Some((name_off, name_len)) = self.push_name(name) else {
            return Err(handle);
        };
        let wd = handle.id();
        let node = Node {
            handle: Some(handle),
            parent: NO_NODE,
            name_off,
            name_len,
            children: 0,
        };
        let idx = if self.free != NO_NODE {
            let idx = self.free;
            self.free = self.node(idx).parent;
            self.nodes[idx] = node;
            idx
        } else {
            self.nodes.push(node)
        };
        self.live += 1;
        let (nodes, hasher) = (&self.nodes, &self.hasher);
        self.by_wd.insert_unique(hasher.hash_one(wd), idx, |&i| {
            hasher.hash_one(wd_of(&nodes[i]))
        });
        self.link(idx, parent);
        Ok(idx)
    }

    /// Hangs a detached node under `parent` (no-op for `NO_NODE`, i.e. a root).
    pub(super) fn link(&mut self, idx: u32, parent: u32) {
        self.nodes[idx].parent = parent;
        if parent == NO_NODE {
            return;
        }
        self.nodes[parent].children += 1;
        let (nodes, names, hasher) = (&self.nodes, &self.names, &self.hasher);
        let hash = hash_child(hasher, parent, name_of(names, &nodes[idx]));
        self.by_name.insert_unique(hash, idx, |&i| {
            let n = &nodes[i];
            hash_child(hasher, n.parent, name_of(names, n))
        });
    }

    /// Detaches a node from its parent, making it a root; its sub-tree stays attached to it.
    pub(super) fn unlink(&mut self, idx: u32) {
        let parent = self.parent(idx);
        if parent == NO_NODE {
            return;
        }
        let hash = hash_child(&self.hasher, parent, self.name(idx));
        if let Ok(entry) = self.by_name.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        let p = &mut self.nodes[parent];
        p.children = p.children.saturating_sub(1);
        self.nodes[idx].parent = NO_NODE;
    }

    /// Moves a node (and so its sub-tree) to `parent`/`name`. The caller checked that no other
    /// node sits there and that `parent` is not inside the node's own sub-tree. `false` if the
    /// new name did not fit; the node is then left detached.
    pub(super) fn rename(&mut self, idx: u32, parent: u32, name: &[u8]) -> bool {
        self.unlink(idx);
        if self.name(idx) != name {
            let old_len = self.node(idx).name_len as usize;
            let Some((off, len)) = self.push_name(name) else {
                return false;
            };
            self.garbage += old_len;
            let node = &mut self.nodes[idx];
            node.name_off = off;
            node.name_len = len;
        }
        self.link(idx, parent);
        true
    }

    /// Frees one node. Its children (if any) must be freed in the same sweep.
    pub(super) fn remove_node(&mut self, idx: u32) -> Option<H> {
        self.unlink(idx);
        let wd = self.wd(idx);
        if let Ok(entry) = self
            .by_wd
            .find_entry(self.hasher.hash_one(wd), |&i| i == idx)
        {
            entry.remove();
        }
        let free = self.free;
        let node = &mut self.nodes[idx];
        self.garbage += node.name_len as usize;
        node.parent = free;
        node.children = 0;
        self.free = idx;
        self.live -= 1;
        node.handle.take()
    }

    /// Frees `idx` and every node below it; their handles go to `out`, `idx`'s first.
    pub(super) fn remove_subtree(&mut self, idx: u32, out: &mut Vec<H>) {
        if self.node(idx).children == 0 {
            out.extend(self.remove_node(idx));
            self.maybe_compact();
            return;
        }
        // Without child lists, one sweep over the slab decides for every node whether `idx`
        // is among its ancestors; each node's verdict is memoised, so this is O(slab).
        const UNKNOWN: u8 = 0;
        const INSIDE: u8 = 1;
        const OUTSIDE: u8 = 2;
        let len = self.nodes.len();
        let mut state = vec![UNKNOWN; len as usize];
        state[idx as usize] = INSIDE;
        let mut chain = Vec::new();
        for start in 0..len {
            if state[start as usize] != UNKNOWN || self.nodes[start].handle.is_none() {
                continue;
            }
            chain.clear();
            let mut at = start;
            let verdict = loop {
                if state[at as usize] != UNKNOWN {
                    break state[at as usize];
                }
                chain.push(at);
                let parent = self.nodes[at].parent;
                // The length bound only guards against a corrupted (cyclic) tree.
                if parent == NO_NODE || chain.len() > len as usize {
                    break OUTSIDE;
                }
                at = parent;
            };
            for &c in &chain {
                state[c as usize] = verdict;
            }
        }
        out.extend(self.remove_node(idx));
        for i in 0..len {
            if state[i as usize] == INSIDE && i != idx {
                out.extend(self.remove_node(i));
            }
        }
        self.maybe_compact();
    }

    /// True if `ancestor` is `idx` or one of its ancestors.
    pub(super) fn is_ancestor_or_self(&self, ancestor: u32, idx: u32) -> bool {
        let mut at = idx;
        for _ in 0..=self.nodes.len() {
            if at == ancestor {
                return true;
            }
            at = self.parent(at);
            if at == NO_NODE {
                return false;
            }
        }
        false
    }

    /// Appends the node's absolute path (with trailing `/`) to `buf`, reserving `extra` more.
    pub(super) fn path_into(&self, idx: u32, buf: &mut Vec<u8>, extra: usize) {
        let mut total = 0;
        let mut at = idx;
        loop {
            let node = self.node(at);
            total += node.name_len as usize + 1;
            if node.parent == NO_NODE {
                break;
            }
            at = node.parent;
        }
        buf.reserve(total + extra);
        let start = buf.len();
        buf.resize(start + total, 0);
        let mut end = start + total;
        let mut at = idx;
        loop {
            let node = self.node(at);
            end -= 1;
            buf[end] = b'/';
            let name = name_of(&self.names, node);
            end -= name.len();
            buf[end..end + name.len()].copy_from_slice(name);
            if node.parent == NO_NODE {
                break;
            }
            at = node.parent;
        }
    }

    pub(super) fn path(&self, idx: u32) -> Vec<u8> {
        let mut buf = Vec::new();
        self.path_into(idx, &mut buf, 0);
        buf
    }

    /// (wd, node) of every live node, ascending by wd.
    pub(super) fn by_wd_order(&self) -> Vec<(i32, u32)> {
        let mut all: Vec<(i32, u32)> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].handle.is_some())
            .map(|i| (wd_of(&self.nodes[i]), i))
            .collect();
        all.sort_unstable();
        all
    }

    pub(super) fn maybe_compact(&mut self) {
        if self.garbage > 4096 && self.garbage * 2 > self.names.len() {
            self.compact();
        }
        if self.live == 0 {
            // Everything gone (e.g. the root deleted): give the memory back.
            *self = Registry {
                hasher: mem::take(&mut self.hasher),
                ..Registry::new()
            };
        }
    }

    /// Rewrites the arena with live names only. Hashes do not depend on offsets.
    pub(super) fn compact(&mut self) {
        let mut names = Vec::with_capacity(self.names.len() - self.garbage);
        for node in self.nodes.iter_mut().filter(|n| n.handle.is_some()) {
            let off = names.len();
            names.extend_from_slice(name_of(&self.names, node));
            node.name_off = off as u32;
        }
        self.names = names;
        self.garbage = 0;
    }

    /// Bytes allocated on the heap by the registry (capacity, not length).
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.nodes.heap_bytes()
            + self.names.capacity()
            + self.by_wd.allocation_size()
            + self.by_name.allocation_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inotify::WatchDescriptor;

    impl Handle for i32 {
        fn id(&self) -> i32 {
            *self
        }
    }

    fn reg_path(reg: &Registry<i32>, idx: u32) -> String {
        String::from_utf8_lossy(&reg.path(idx)).into_owned()
    }

    /// A registry of the directory `root` (wd 1) and `dirs`, each `(parent, name)` with the
    /// parent its position in the whole list (0: the root) and wd its position + 1. With the
    /// node of each, the root first.
    fn registry(root: &[u8], dirs: &[(usize, &[u8])]) -> (Registry<i32>, Vec<u32>) {
        let mut reg = Registry::<i32>::new();
        let mut nodes = vec![reg.insert(1, NO_NODE, root).unwrap()];
        for (wd, &(parent, name)) in (2..).zip(dirs) {
            nodes.push(reg.insert(wd, nodes[parent], name).unwrap());
        }
        (reg, nodes)
    }

    #[test]
    fn registry_builds_paths_from_names_and_renames_subtrees() {
        let (mut reg, nodes) = registry(b"/src", &[(0, b"a"), (1, b"b"), (0, b"c")]);
        let (root, a, b, c) = (nodes[0], nodes[1], nodes[2], nodes[3]);
        assert_eq!(reg_path(&reg, b), "/src/a/b/");
        assert_eq!(reg.find_child(a, b"b"), Some(b));
        assert_eq!(reg.find_wd(4), Some(c));
        assert!(reg.rename(a, c, b"z"));
        assert_eq!(reg_path(&reg, b), "/src/c/z/b/");
        assert_eq!(reg.find_child(root, b"a"), None);
        assert_eq!(reg.find_child(c, b"z"), Some(a));
        assert_eq!((reg.node(root).children, reg.node(c).children), (1, 1));
        let slash = reg.insert(9, NO_NODE, b"").unwrap();
        assert_eq!(reg_path(&reg, slash), "/");
    }

    #[test]
    fn registry_remove_subtree_takes_descendants_only_and_reuses_slots() {
        let dirs: &[(usize, &[u8])] = &[(0, b"a"), (1, b"b"), (2, b"c"), (0, b"d"), (4, b"e")];
        let (mut reg, nodes) = registry(b"/r", dirs);
        let (root, a, d) = (nodes[0], nodes[1], nodes[4]);
        let mut out = Vec::new();
        reg.remove_subtree(a, &mut out);
        out[1..].sort_unstable();
        assert_eq!(out, [2, 3, 4]);
        assert_eq!(reg.live, 3);
        assert_eq!(reg.node(root).children, 1);
        assert_eq!(reg.find_wd(3), None);
        assert_eq!(reg.find_child(root, b"a"), None);
        let x = reg.insert(7, d, b"x").unwrap();
        assert!(x < 6, "free slot reused");
        assert_eq!(reg_path(&reg, x), "/r/d/x/");
        let ids: Vec<i32> = reg.by_wd_order().iter().map(|w| w.0).collect();
        assert_eq!(ids, [1, 5, 6, 7]);
    }

    #[test]
    fn registry_compaction_keeps_names_and_lookups() {
        let mut reg = Registry::<i32>::new();
        let root = reg.insert(0, NO_NODE, b"/r").unwrap();
        let mut out = Vec::new();
        for round in 0..50 {
            for i in 0..100 {
                let name = format!("dir-{round}-{i}-with-a-longish-name");
                reg.insert(1 + round * 100 + i, root, name.as_bytes())
                    .unwrap();
            }
            for i in 0..100 {
                let idx = reg.find_wd(1 + round * 100 + i).unwrap();
                if i % 10 != 0 {
                    reg.remove_subtree(idx, &mut out);
                }
            }
        }
        assert_eq!(reg.live, 1 + 50 * 10);
        assert!(reg.names.len() < 2 * 501 * 40, "arena was compacted");
        let idx = reg
            .find_child(root, b"dir-49-90-with-a-longish-name")
            .unwrap();
        assert_eq!(reg_path(&reg, idx), "/r/dir-49-90-with-a-longish-name/");
        reg.remove_subtree(root, &mut out);
        assert_eq!((reg.live, reg.names.capacity()), (0, 0));
    }

    #[test]
    fn node_stays_32_bytes() {
        assert_eq!(mem::size_of::<Node<WatchDescriptor>>(), 32);
    }
}
