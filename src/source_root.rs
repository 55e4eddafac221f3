//! What the syncs do when their source directory itself goes away or comes back (a
//! [`RootEvent`] from a monitor): while it is away a sync starts no transfer and keeps its
//! pending changes, so the target is never mirrored from a missing or empty source; once it is
//! back, one full transfer covers everything that changed meanwhile.
//!
//! Owns: the `source_gone` state of each sync and the log lines of both changes. Must not
//! touch: the monitors (they decide when a root is gone or back), Lua, the poll loop.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;
use std::time::Instant;

use crate::delay::DelayKind;
use crate::log;
use crate::sync::Core;
use crate::watch::{RootChange, RootEvent};

impl Core {
    /// Hands a root event to every sync on that root using that monitor.
    pub(crate) fn root_event(&mut self, ev: &RootEvent, now: Instant) {
        for sid in 0..self.syncs.len() {
            let s = &mut self.syncs[sid];
            if s.monitor != ev.monitor || s.source != ev.root {
                continue;
            }
            let mut line = s.name.clone();
            line.extend_from_slice(b": source ");
            line.extend_from_slice(&s.source);
            match ev.change {
                RootChange::Back => {
                    s.set_source_gone(false);
                    line.extend_from_slice(b" is back; a full transfer follows");
                    log::normal(line);
                    self.transfer_all(sid, now);
                }
                gone => {
                    s.set_source_gone(true);
                    line.extend_from_slice(
                        format!(
                            " was {}; no transfer until it is back (pending changes are kept, \
                             the target is left as it is)",
                            gone.describe()
                        )
                        .as_bytes(),
                    );
                    log::log(b"Warn", &line);
                }
            }
        }
    }

    /// One transfer of the whole source: a Full event where the config has a `full` action,
    /// else a Create for each entry of the source (directories bring their content, SPEC §3.6).
    fn transfer_all(&mut self, sid: usize, now: Instant) {
        if self.syncs[sid].conf.takes.full {
            self.replace_pending_with_full(sid, now);
            return;
        }
        let source = self.syncs[sid].source.clone();
        let Ok(entries) = std::fs::read_dir(OsStr::from_bytes(&source)) else {
            return;
        };
        for entry in entries.flatten() {
            let mut rel = b"/".to_vec();
            rel.extend_from_slice(entry.file_name().as_bytes());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                rel.push(b'/');
            }
            self.delay(sid, DelayKind::Create, Rc::from(rel), None, now);
        }
    }
}
