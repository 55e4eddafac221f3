//! Fields of the kernel's event records, as both monitors' parsers read them: native-endian
//! integers at an offset (`from_ne_bytes`, so no alignment or unsafe concerns) and NUL-padded
//! names. Pure.
//!
//! Owns: reading one field of a record. Must not touch: the record layouts (each monitor
//! parses its own), fds, paths, events.

/// The `u32` at byte `at`, or `None` past the end.
pub(super) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The `i32` at byte `at`, or `None` past the end.
pub(super) fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A name field without its NUL padding: up to the first NUL, or all of it.
pub(super) fn until_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(nul) => &b[..nul],
        None => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_in_bounds_only_and_names_stop_at_nul() {
        let b = [1u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(u32_at(&b, 0), Some(u32::from_ne_bytes([1, 0, 0, 0])));
        assert_eq!(i32_at(&b, 4), Some(-1));
        assert_eq!((u32_at(&b, 5), i32_at(&b, 8)), (None, None));
        assert_eq!(until_nul(b"ab\0\0"), b"ab");
        assert_eq!(until_nul(b"\0x"), b"");
        assert_eq!(until_nul(b"abc"), b"abc");
    }
}
