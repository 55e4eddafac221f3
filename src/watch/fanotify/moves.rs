//! File moves the fanotify monitor handed out recently, by origin, so a directory rename read
//! later can correct them.
//!
//! A record names its directories by handle, and a handle resolves to the directory's path
//! when the record is read, not when the event happened. So `mv a/f b/m; mv a a2` read after
//! both reads as a move from `a2/f`: a path the target never had. The remote `mv` fails, and
//! nothing else would send `b/m`. When the rename of `a` to `a2` is read, every remembered
//! move whose origin lies below `a2/` may be such a move; its destination gets a Create (or a
//! Delete if it is gone by then), which turns a still-queued move into Delete + Create
//! (SPEC §4.3) and sends a done one again.
//! (A rename's record is queued after the rename takes effect, so it may be read a little
//! after a record of the move that it falsified: moves are kept for a few seconds.)
//!
//! Owns: the remembered moves and their expiry. Must not touch: records, handles, the cache.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a move is remembered.
const KEEP: Duration = Duration::from_secs(5);
/// The most moves remembered from earlier reads (a read's own are kept whatever their number).
const MAX: usize = 16384;

/// Remembered moves: origin (and a serial, as one origin can move twice) → destination.
#[derive(Debug, Default)]
pub(super) struct RecentMoves {
    by_origin: BTreeMap<(Vec<u8>, u64), Vec<u8>>,
    /// Insertion order, for expiry: (when, origin, serial).
    order: VecDeque<(Instant, Vec<u8>, u64)>,
    serial: u64,
}

impl RecentMoves {
    /// Forgets moves older than [`KEEP`] and the oldest beyond [`MAX`]. Called before each
    /// read, so the moves of one read stay until it is over.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.order.front() {
            let old = now.duration_since(*at) > KEEP;
            if !old && self.order.len() <= MAX {
                break;
            }
            let (_, origin, serial) = self.order.pop_front().expect("front exists");
            self.by_origin.remove(&(origin, serial));
        }
    }

    pub(super) fn remember(&mut self, now: Instant, origin: &[u8], destination: &[u8]) {
        self.serial += 1;
        self.by_origin
            .insert((origin.to_vec(), self.serial), destination.to_vec());
        self.order.push_back((now, origin.to_vec(), self.serial));
    }

    /// Takes the destinations of the remembered moves whose origin lies below `dir` (ending
    /// in `/`), in the order they were handed out.
    pub(super) fn take_below(&mut self, dir: &[u8]) -> Vec<Vec<u8>> {
        let keys: Vec<(Vec<u8>, u64)> = self
            .by_origin
            .range((dir.to_vec(), 0)..)
            .take_while(|((origin, _), _)| origin.starts_with(dir))
            .map(|(k, _)| k.clone())
            .collect();
        let mut taken: Vec<(u64, Vec<u8>)> = keys
            .into_iter()
            .filter_map(|k| {
                let serial = k.1;
                self.by_origin.remove(&k).map(|d| (serial, d))
            })
            .collect();
        taken.sort_unstable_by_key(|(serial, _)| *serial);
        taken.into_iter().map(|(_, d)| d).collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_origin.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_below_a_renamed_directory_are_taken_once_in_order() {
        let now = Instant::now();
        let mut m = RecentMoves::default();
        m.remember(now, b"/s/a2/f", b"/s/b/m");
        m.remember(now, b"/s/a20", b"/s/x");
        m.remember(now, b"/s/a2/sub/g", b"/s/c/n");
        m.remember(now, b"/s/a2/f", b"/s/b/m2");
        assert_eq!(
            m.take_below(b"/s/a2/"),
            vec![b"/s/b/m".to_vec(), b"/s/c/n".to_vec(), b"/s/b/m2".to_vec()]
        );
        assert!(m.take_below(b"/s/a2/").is_empty());
        // A sibling that only shares the prefix is no child.
        assert_eq!(m.len(), 1);
        assert_eq!(m.take_below(b"/s/a20/"), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn old_moves_expire_and_the_count_is_bounded() {
        let start = Instant::now();
        let mut m = RecentMoves::default();
        m.remember(start, b"/s/old", b"/s/x");
        m.expire(start + KEEP + Duration::from_millis(1));
        assert_eq!(m.len(), 0);
        for i in 0..MAX + 10 {
            let p = format!("/s/{i}");
            m.remember(start, p.as_bytes(), p.as_bytes());
        }
        m.expire(start);
        assert_eq!(m.len(), MAX);
        // The oldest went first.
        let kept = m.take_below(b"/s/");
        assert_eq!(kept.len(), MAX);
        assert_eq!(kept[0], b"/s/10");
    }
}
