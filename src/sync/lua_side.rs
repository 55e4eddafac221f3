//! The Lua-side state the core keeps for the loop: what the config's Lua code asked for (the
//! earliest user `alarm()`, observed fds, tunnels to tick) and what Lua must hear about (the
//! delays removed since the last cycle, whose event tables it forgets), with the time base of
//! Lua timestamps.
//!
//! Owns: [`LuaSide`]. Must not touch: Lua itself (`lua_rt` reads and writes this through the
//! lent core), the poll registrations of observed fds (the event loop).

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::time::Instant;

use crate::delay::DelayId;

/// What the config's Lua code asked the loop for, and what Lua must forget.
#[derive(Debug)]
pub(crate) struct LuaSide {
    /// The time base of Lua timestamps.
    origin: Instant,
    /// The earliest user `alarm()`, kept here so the loop need not ask Lua every pass.
    user_alarm: Option<Instant>,
    /// File descriptors configs observe (`observefd`): fd → (readable wanted, writable wanted).
    observed: BTreeMap<RawFd, (bool, bool)>,
    /// The config created tunnels: the loop ticks them at least once a second.
    tunnels: bool,
    /// Delays removed since the last cycle; Lua forgets their event tables.
    removed: Vec<(usize, DelayId)>,
}

impl LuaSide {
    pub(crate) fn new(origin: Instant) -> LuaSide {
        LuaSide {
            origin,
            user_alarm: None,
            observed: BTreeMap::new(),
            tunnels: false,
            removed: Vec::new(),
        }
    }

    /// The time base of Lua timestamps.
    pub(crate) fn origin(&self) -> Instant {
        self.origin
    }

    /// The earliest user `alarm()`.
    pub(crate) fn user_alarm(&self) -> Option<Instant> {
        self.user_alarm
    }

    /// Sets the earliest user `alarm()`, or none.
    pub(crate) fn set_user_alarm(&mut self, at: Option<Instant>) {
        self.user_alarm = at;
    }

    /// `observefd`: watch `fd` for reading and/or writing; neither stops observing it.
    pub(crate) fn observe_fd(&mut self, fd: RawFd, readable: bool, writable: bool) {
        if readable || writable {
            self.observed.insert(fd, (readable, writable));
        } else {
            self.observed.remove(&fd);
        }
    }

    /// The observed fds as (fd, readable wanted, writable wanted), by fd.
    pub(crate) fn observed(&self) -> Vec<(RawFd, bool, bool)> {
        self.observed
            .iter()
            .map(|(fd, (r, w))| (*fd, *r, *w))
            .collect()
    }

    /// The config created tunnels: the loop ticks them from now on.
    pub(crate) fn note_tunnels(&mut self) {
        self.tunnels = true;
    }

    /// Whether the config created tunnels.
    pub(crate) fn has_tunnels(&self) -> bool {
        self.tunnels
    }

    /// Delay `id` of sync `sid` is gone: Lua forgets its event tables at the end of the cycle.
    pub(crate) fn forget(&mut self, sid: usize, id: DelayId) {
        self.removed.push((sid, id));
    }

    /// The delays removed since the last call.
    pub(crate) fn take_forgotten(&mut self) -> Vec<(usize, DelayId)> {
        std::mem::take(&mut self.removed)
    }

    /// How many delays wait to be forgotten.
    #[cfg(test)]
    pub(crate) fn forgotten(&self) -> usize {
        self.removed.len()
    }
}
