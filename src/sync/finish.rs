//! What happens to the delays of a sync's child when it ends (SPEC §6.5): removed after a
//! success, kept and retried after a failure (with the sync's backoff), or the end of the
//! daemon when a startup transfer dies or every sync has failed.
//!
//! Owns: [`Ended`] and `Core::finish`. Must not touch: Lua (the layer's `collect` already
//! judged the exit code), reaping (the event loop), the backoff arithmetic (`retry.rs`).

use std::time::Instant;

use super::{Agent, Core};
use crate::delay::DelayKind;
use crate::exit::ExitCode;
use crate::health;
use crate::log;
use crate::retry::{Failure, State};

/// How a child of a sync ended, as the event loop hands it to [`Core::finish`].
#[derive(Debug)]
pub(crate) enum Ended<'a> {
    /// It exited with `code`; the layer's `collect` said `rc`.
    Exited { rc: Option<&'a [u8]>, code: i32 },
    /// A signal killed it: retried, its `collect` is not asked.
    Signalled(i32),
    /// fork/exec failed before the command ran.
    SpawnFailed(String),
}

impl Ended<'_> {
    /// The failure this end is, if any, and the exit code to report. `Err` when a startup
    /// transfer (`is_init`) ended with `die`: the daemon ends, as upstream.
    fn judge(self, command: Vec<u8>, is_init: bool) -> Result<(Option<Failure>, i32), ExitCode> {
        Ok(match self {
            Ended::Exited {
                rc: Some(b"die"),
                code,
            } => {
                if is_init {
                    log::error("Critical exitcode.");
                    return Err(ExitCode::Fatal);
                }
                (Some(Failure::Fatal { command, code }), code)
            }
            Ended::Exited {
                rc: Some(b"again"),
                code,
            } => (Some(Failure::Exit { command, code }), code),
            Ended::Exited { code, .. } => (None, code),
            Ended::Signalled(signal) => (Some(Failure::Signal { command, signal }), 128 + signal),
            Ended::SpawnFailed(error) => (Some(Failure::Spawn { command, error }), -1),
        })
    }
}

impl Core {
    /// The delays of a collected child: removed, retried or fatal (SPEC §6.5).
    ///
    /// A failure (`again`, a signal, a failed spawn, and while running `die` or an unknown
    /// code) keeps the child's delays and holds the sync for its backoff; `die` of a startup
    /// transfer ends the daemon as upstream. `Err` also when every sync has failed.
    pub(crate) fn finish(
        &mut self,
        sid: usize,
        pid: libc::pid_t,
        outcome: Ended<'_>,
        now: Instant,
    ) -> Result<(), ExitCode> {
        let s = &mut self.syncs[sid];
        let Some(agent) = s.processes.remove(&pid) else {
            return Ok(());
        };
        self.procs.ended();
        let is_init = agent
            .dids
            .iter()
            .any(|id| s.delays.get(*id).is_some_and(|d| d.kind == DelayKind::Init));
        let (failure, exitcode) = outcome.judge(agent.command.clone(), is_init)?;
        let judged = match &failure {
            None => health::Outcome::Succeeded,
            Some(f) if f.is_fatal() => health::Outcome::Failed,
            Some(_) => health::Outcome::Retry,
        };
        s.health.transfer_finished(pid, judged, exitcode);
        match failure {
            Some(failure) => self.failed(sid, &agent, &failure, is_init, now),
            None => {
                self.succeeded(sid, &agent, exitcode);
                Ok(())
            }
        }
    }

    /// A failed attempt: the agent's delays wait for the end of the sync's backoff. `Err` when
    /// every sync has now failed for good.
    fn failed(
        &mut self,
        sid: usize,
        agent: &Agent,
        failure: &Failure,
        is_init: bool,
        now: Instant,
    ) -> Result<(), ExitCode> {
        let s = &mut self.syncs[sid];
        let pending = s.delays.len();
        let until = s
            .backoff
            .failure(&s.name, failure, pending, self.limits.max_backoff, now);
        for id in &agent.dids {
            s.delays.set_wait(*id, Some(until));
        }
        if is_init {
            self.run.init_retried = true;
        }
        if failure.is_fatal()
            && self
                .syncs
                .iter()
                .all(|s| s.backoff.state() == State::Failed)
        {
            log::error("Critical exitcode.");
            log::error("Every sync has failed; exiting.");
            return Err(ExitCode::Fatal);
        }
        Ok(())
    }

    /// A successful transfer: the agent's delays are done.
    fn succeeded(&mut self, sid: usize, agent: &Agent, exitcode: i32) {
        let s = &mut self.syncs[sid];
        s.backoff.success(&s.name);
        for id in &agent.dids {
            if let Some(d) = s.delays.remove(*id) {
                if d.kind == DelayKind::Init {
                    self.run.init_pending = self.run.init_pending.saturating_sub(1);
                }
                if !agent.is_list {
                    log::with(b"Delay", || {
                        format!("Finish of {} on ", d.kind.as_lua_str())
                            .into_bytes()
                            .into_iter()
                            .chain(s.source.iter().copied())
                            .chain(d.path.iter().copied())
                            .chain(format!(" = {exitcode}").into_bytes())
                            .collect()
                    });
                }
                self.lua.forget(sid, *id);
            }
        }
        if agent.is_list {
            log::with(b"Delay", || {
                format!("Finished list = {exitcode}").into_bytes()
            });
        } else {
            s.init_done = true;
        }
    }
}
