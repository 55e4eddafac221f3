//! How a delay enters and leaves the storage of a [`DelayList`]: appending, taking the place
//! of a replaced delay, taking out, the tree and alarm indexes kept in step, status changes,
//! and (tests) the check of every index against one rebuilt from the queue.
//!
//! Owns: these private methods of [`DelayList`]. Must not touch: the combine rules and the
//! queries (the parent module), I/O, clocks (the arrival stamp is read from
//! [`crate::health::clock`]), Lua.

use super::*;

impl DelayList {
    /// Appends a new delay at the end of the queue, blocked by the delay at `blocked_by`.
    pub(super) fn append(&mut self, new: New, blocked_by: Option<Pos>) -> DelayId {
        let pos = self.next_pos;
        self.next_pos = pos
            .checked_add(1)
            .filter(|p| p.get() < 1 << 55)
            .expect("invariant: fewer than 2^55 delays per list");
        if let Some(b) = blocked_by {
            self.blocks.entry(b).or_default().push(pos);
        }
        self.insert_new(pos, new, blocked_by, 0, crate::health::clock())
    }

    /// Puts `new` in the place of the delay `old` just taken from `pos`: it keeps the old
    /// delay's blocker, arrival stamp and (through the position) what the old one blocked.
    pub(super) fn insert_at(&mut self, pos: Pos, new: New, old: &Rec) -> DelayId {
        let since = old.since.min(crate::health::clock());
        self.insert_new(pos, new, old.blocked_by, old.gen.wrapping_add(1), since)
    }

    /// Creates a delay at `pos`, blocked by the delay at `blocked_by`, and indexes it.
    pub(super) fn insert_new(
        &mut self,
        pos: Pos,
        new: New,
        blocked_by: Option<Pos>,
        gen: u8,
        since: u32,
    ) -> DelayId {
        let status = if blocked_by.is_some() {
            Status::Block
        } else {
            Status::Wait
        };
        let (path, path2) = self.index(new.kind, new.path, new.path2, pos);
        let rec = Rec {
            kind: new.kind,
            status,
            gen,
            since,
            path,
            path2,
            alarm: new.alarm,
            blocked_by,
        };
        self.held.add(pos, status, new.alarm);
        self.queue.insert(pos, rec);
        DelayId::of(pos, gen)
    }

    /// Takes the delay at `pos` out of the queue and every index, with its paths. Blocking
    /// links are left to the caller: a replacement inherits them through the position.
    pub(super) fn take(&mut self, pos: Pos) -> Option<Taken> {
        let rec = self.queue.remove(pos)?;
        self.held.remove(pos, rec.status, rec.alarm);
        let (path, path2) = self.unindex(&rec, pos);
        Some((rec, path, path2))
    }

    /// The tree's role for the `path` of a delay of `kind`; `None` for the kinds it does not
    /// index (combine never answers for a `Full`, and `Init`/`Blanket` are in `synthetic`).
    pub(super) fn role(kind: DelayKind) -> Option<Role> {
        match kind {
            DelayKind::Init | DelayKind::Blanket | DelayKind::Full => None,
            DelayKind::Move => Some(Role::MoveFrom),
            DelayKind::Delete => Some(Role::Delete),
            DelayKind::Attrib | DelayKind::Modify | DelayKind::Create => Some(Role::Other),
        }
    }

    pub(super) fn index(
        &mut self,
        kind: DelayKind,
        path: Rc<[u8]>,
        path2: Option<Rc<[u8]>>,
        pos: Pos,
    ) -> (NodeRef, Option<NodeRef>) {
        if matches!(kind, DelayKind::Init | DelayKind::Blanket) {
            self.synthetic.insert(pos);
        }
        let Some(role) = Self::role(kind) else {
            self.detached.insert(pos, path);
            return (NodeRef::DETACHED, None);
        };
        let to = (kind == DelayKind::Move).then(|| {
            self.tree.add(
                path2.unwrap_or_else(|| b"".as_slice().into()),
                Role::MoveTo,
                pos,
            )
        });
        (self.tree.add(path, role, pos), to)
    }

    pub(super) fn unindex(&mut self, rec: &Rec, pos: Pos) -> (Rc<[u8]>, Option<Rc<[u8]>>) {
        self.synthetic.remove(&pos);
        let Some(role) = Self::role(rec.kind) else {
            let path = self.detached.remove(&pos).unwrap_or_default();
            return (path, None);
        };
        let path = self.tree.path(rec.path).clone();
        let path2 = rec.path2.map(|n| {
            let p = self.tree.path(n).clone();
            self.tree.remove(n, Role::MoveTo, pos);
            p
        });
        self.tree.remove(rec.path, role, pos);
        (path, path2)
    }

    /// Changes status and alarm of a queued delay, keeping the wait marks in step.
    pub(super) fn restate(
        &mut self,
        id: DelayId,
        change: impl FnOnce(&Rec) -> (Status, Stamp),
    ) -> bool {
        let Some(pos) = self.locate(id) else {
            return false;
        };
        let Some(d) = self.queue.get_mut(pos) else {
            return false;
        };
        let (status, alarm) = change(d);
        let (old_status, old_alarm) = (d.status, d.alarm);
        d.alarm = alarm;
        self.queue.set_status(pos, status);
        self.held.remove(pos, old_status, old_alarm);
        self.held.add(pos, status, alarm);
        true
    }

    /// Rebuilds every index from the queue and compares (tests only).
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let mut fresh = DelayList::default();
        let listed: HashSet<(Pos, Pos)> = self
            .blocks
            .iter()
            .flat_map(|(&b, l)| l.iter().map(move |&p| (b, p)))
            .collect();
        let mut waits = std::collections::BTreeSet::new();
        for (pos, r) in self.queue.after(None) {
            let d = self.view(pos, r);
            fresh.index(d.kind, d.path.clone(), d.path2.cloned(), pos);
            fresh.held.add(pos, r.status, r.alarm);
            assert_eq!(
                self.queue.marked(pos),
                r.status == Status::Wait,
                "wait mark"
            );
            assert_eq!(
                self.get(d.id).map(|x| x.id),
                Some(d.id),
                "id finds the delay"
            );
            if r.status == Status::Wait {
                waits.insert(pos);
            }
            if let Some(b) = r.blocked_by {
                assert!(self.queue.get(b).is_some(), "blocker queued");
                assert!(b < pos, "blocker sits before what it blocks");
                assert!(listed.contains(&(b, pos)), "blocker lists it");
                assert_ne!(r.status, Status::Wait, "a blocked delay is not wait");
            } else {
                assert_ne!(r.status, Status::Block, "an unblocked delay is not block");
            }
        }
        for b in self.blocks.keys() {
            assert!(
                self.queue.get(*b).is_some(),
                "blocks lists belong to queued delays"
            );
        }
        assert_eq!(self.tree.summary(), fresh.tree.summary(), "path tree");
        assert_eq!(self.detached, fresh.detached);
        assert_eq!(self.synthetic, fresh.synthetic);
        assert_eq!(self.queue.wait_count(), waits.len(), "wait count");
        assert_eq!(
            self.queue.first_wait(),
            waits.first().copied(),
            "first wait"
        );
        assert_eq!(self.held.set, fresh.held.set);
    }
}

/// A delay taken out of the queue and its indexes, with its paths.
pub(super) type Taken = (Rec, Rc<[u8]>, Option<Rc<[u8]>>);

/// A delay about to be queued.
pub(super) struct New {
    pub(super) kind: DelayKind,
    pub(super) path: Rc<[u8]>,
    pub(super) path2: Option<Rc<[u8]>>,
    pub(super) alarm: Stamp,
}
