//! A small deterministic generator (xorshift64*) for seeded churn in tests and benchmarks:
//! no dependency, the same sequence everywhere.
//! Owns: `Rng`. Must not touch: anything else (it does no I/O).

pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (0 is mapped to 1: xorshift never leaves 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A random element, or `None` for an empty slice.
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            Some(&v[self.below(v.len())])
        }
    }
}
