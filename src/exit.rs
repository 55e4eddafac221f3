//! Exit statuses: the daemon's own codes (one enum, the only place their numbers are written)
//! and the children's statuses a failure line explains.
//!
//! Owns: the mapping from why the process ends to the number the shell sees. Every exit
//! travels as an [`ExitCode`] value up to `main`, which hands it to `shutdown::finish`. Also
//! the meaning of rsync's own exit statuses (rsync(1), "EXIT VALUES").
//! Must not touch: anything else; these are plain values.

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

/// rsync's own exit statuses that a failure line explains, with their meaning. These are
/// what an rsync child returns, never this daemon's exit codes: rsync's 255 means its remote
/// shell failed.
const RSYNC_STATUSES: [(i32, &str); 7] = [
    (11, "error in file I/O"),
    (12, "error in rsync protocol data stream"),
    (23, "partial transfer"),
    (24, "source files vanished"),
    (30, "timeout"),
    (35, "timeout waiting for daemon connection"),
    (255, "remote shell failed"),
];

/// What an rsync child's exit status means, if it is a well-known one.
pub(crate) fn rsync_status_meaning(status: i32) -> Option<&'static str> {
    RSYNC_STATUSES
        .iter()
        .find(|(known, _)| *known == status)
        .map(|(_, meaning)| *meaning)
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

    #[test]
    fn rsync_statuses_are_explained() {
        assert_eq!(rsync_status_meaning(255), Some("remote shell failed"));
        assert_eq!(rsync_status_meaning(23), Some("partial transfer"));
        assert_eq!(rsync_status_meaning(1), None);
    }
}
