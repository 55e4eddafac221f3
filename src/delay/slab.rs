//! The slab both stores of a delay list keep their entries in (the queue's records, the path
//! tree's nodes): entries by a 4-byte slot number, freed slots reused, and all memory given
//! back once the slab is empty.
//!
//! Owns: [`Slab`]. Must not touch: what the entries are or how they are found (the queue
//! order, the path index), I/O, clocks, Lua.

/// Entries by slot number. Slot numbers stay below `u32::MAX - 1`, so the two top values are
/// free for the owners' markers (the queue order's empty entry, the tree's detached path).
#[derive(Debug)]
pub(super) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// Stores `x` in a free slot, or a new one; returns its slot number.
    pub(super) fn put(&mut self, x: T) -> u32 {
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = Some(x);
            return i;
        }
        let i = u32::try_from(self.slots.len())
            .ok()
            .filter(|&i| i < u32::MAX - 1)
            .expect("invariant: fewer than 2^32 - 2 entries per slab");
        self.slots.push(Some(x));
        i
    }

    /// Takes the entry out of slot `i`; when it was the last one, frees the slab's memory.
    pub(super) fn take(&mut self, i: u32) -> Option<T> {
        let x = self.slots.get_mut(i as usize)?.take()?;
        if self.free.len() + 1 == self.slots.len() {
            *self = Slab::default();
        } else {
            self.free.push(i);
        }
        Some(x)
    }

    pub(super) fn get(&self, i: u32) -> Option<&T> {
        self.slots.get(i as usize)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.slots.get_mut(i as usize)?.as_mut()
    }

    /// The entries, in slot order (tests only).
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten()
    }
}
