//! The exit codes of the daemon: one enum, the only place their numbers are written.
//!
//! Owns: the mapping from why the process ends to the number the shell sees. Every exit
//! travels as an [`ExitCode`] value up to `main`, which hands it to `shutdown::finish`.
//! Must not touch: anything else; it is a plain value type.

/// Why the process ends, and with which code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitCode {
    /// 0: `-version`, `-t`, a finished onepass.
    Success,
    /// Every fatal error: upstream's `exit(-1)` (SPEC §1.5).
    Fatal,
    /// TERM or INT after fading: 128 + the signal number.
    Signal(i32),
    /// `terminate(code)` from Lua: the low byte of its code.
    Requested(u8),
}

/// Upstream's `exit(-1)` as the shell sees it; also what a child whose exec failed exits with.
pub(crate) const FATAL_STATUS: i32 = 255;

impl ExitCode {
    /// The number handed to `exit(3)`.
    pub(crate) fn code(self) -> i32 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Fatal => FATAL_STATUS,
            ExitCode::Signal(sig) => 128 + sig,
            ExitCode::Requested(code) => i32::from(code),
        }
    }

    /// `terminate(code)`: Lua's number truncated to a byte as `exit(3)` would (-1 → 255).
    pub(crate) fn requested(code: i64) -> ExitCode {
        ExitCode::Requested((code & 0xff) as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_upstreams() {
        assert_eq!(ExitCode::Success.code(), 0);
        assert_eq!(ExitCode::Fatal.code(), FATAL_STATUS);
        assert_eq!(ExitCode::Signal(libc::SIGTERM).code(), 143);
        assert_eq!(ExitCode::Signal(libc::SIGINT).code(), 130);
        assert_eq!(ExitCode::requested(-1), ExitCode::Requested(u8::MAX));
        assert_eq!(ExitCode::requested(-1).code(), FATAL_STATUS);
        assert_eq!(ExitCode::requested(3).code(), 3);
        assert_eq!(ExitCode::requested(256).code(), 0);
    }
}
