//! The process table: the children of every sync, the spawner that starts them, the global
//! process count and cap, and spawns that failed before exec (SPEC §6.1).
//!
//! Owns: [`ProcessTable`], [`Agent`] and `Core::spawn` (which marks the delays of an agent
//! active). Must not touch: Lua, the poll loop, what happens when a child ends (`finish.rs`),
//! fork/exec itself (`spawn.rs`).

use std::collections::HashMap;
use std::ffi::OsString;

use super::Core;
use crate::delay::{DelayId, Status};
use crate::health;
use crate::log;
use crate::spawn::{self, PipeState, SpawnRequest, Spawner};

/// What a running child was spawned for.
#[derive(Debug)]
pub(crate) struct Agent {
    pub(crate) dids: Vec<DelayId>,
    pub(crate) is_list: bool,
    /// argv[0], for failure reports.
    pub(crate) command: Vec<u8>,
}

/// The children of all syncs and how to start more.
#[derive(Debug)]
pub(crate) struct ProcessTable {
    spawner: Spawner,
    registry: Option<mio::Registry>,
    /// Processes of all syncs.
    running: usize,
    /// `settings{ maxProcesses }`: the global cap.
    max: Option<usize>,
    /// The sync each child of a sync belongs to.
    owner: HashMap<libc::pid_t, usize>,
    /// When daemonized with a logfile, children write to it (SPEC §6.1).
    child_logfile: Option<OsString>,
    /// Spawns that failed before exec, as (sync, stand-in pid, error): finished as failed
    /// attempts by the event loop after the actions of this cycle.
    failures: Vec<(usize, libc::pid_t, String)>,
    /// The next stand-in pid of a failed spawn (negative: never a real process).
    next_failed_pid: libc::pid_t,
}

impl ProcessTable {
    pub(crate) fn new() -> ProcessTable {
        ProcessTable {
            spawner: Spawner::new(),
            registry: None,
            running: 0,
            max: None,
            owner: HashMap::new(),
            child_logfile: None,
            failures: Vec::new(),
            next_failed_pid: -1,
        }
    }

    /// The poll registry stdin pipes of children register with; no spawn before it is set.
    pub(crate) fn set_registry(&mut self, registry: mio::Registry) {
        self.registry = Some(registry);
    }

    /// `settings{ maxProcesses }`, and the logfile children write to (daemonized only).
    pub(crate) fn configure(&mut self, max: Option<usize>, child_logfile: Option<OsString>) {
        self.max = max;
        self.child_logfile = child_logfile;
    }

    /// Processes running in all syncs.
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Processes running in all syncs, and the global cap.
    pub(crate) fn counts(&self) -> (usize, Option<usize>) {
        (self.running, self.max)
    }

    /// Whether the global process cap is reached.
    pub(crate) fn at_limit(&self) -> bool {
        matches!(self.max, Some(m) if self.running >= m)
    }

    /// The sync a reaped child belonged to; it belongs to none from now on.
    pub(crate) fn take_owner(&mut self, pid: libc::pid_t) -> Option<usize> {
        self.owner.remove(&pid)
    }

    /// A child of a sync ended.
    pub(crate) fn ended(&mut self) {
        self.running = self.running.saturating_sub(1);
    }

    /// The spawns of this cycle that failed before exec.
    pub(crate) fn take_failures(&mut self) -> Vec<(usize, libc::pid_t, String)> {
        std::mem::take(&mut self.failures)
    }

    /// Feeds a child's stdin pipe that became writable.
    pub(crate) fn feed_pipe(&mut self, token: mio::Token) {
        if let Some(reg) = self.registry.as_ref() {
            let pid = self.spawner.pipe_pid(token);
            let progress = self.spawner.feed(reg, token);
            log::with(b"Exec", || {
                format!("stdin pipe of {}: {progress:?}", pid.unwrap_or(0)).into_bytes()
            });
        }
    }

    /// The stdout/stderr a child gets: the logfile when daemonized with one, else inherited.
    fn child_output(&self) -> Option<std::os::fd::OwnedFd> {
        let path = self.child_logfile.as_ref()?;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .ok()
            .map(std::os::fd::OwnedFd::from)
    }

    /// Starts `argv` for sync `sid`. A spawn that fails before exec still gets a pid, a
    /// negative stand-in: it counts as a process that failed at once, so that the layer keeps
    /// its events (they are active, not waiting) and the sync backs off.
    fn launch(
        &mut self,
        sid: usize,
        argv: Vec<Vec<u8>>,
        stdin: Option<Vec<u8>>,
    ) -> Result<libc::pid_t, String> {
        let Some(registry) = self.registry.as_ref() else {
            return Err("spawn() called before the daemon runs".to_string());
        };
        let req = SpawnRequest {
            argv,
            stdin,
            output: self.child_output(),
        };
        self.running += 1;
        match self.spawner.spawn(registry, req) {
            Ok((pid, pipe)) => {
                if matches!(pipe, PipeState::OneSweep) {
                    log::with(b"Exec", || b"one-sweeped pipe".to_vec());
                }
                self.owner.insert(pid, sid);
                Ok(pid)
            }
            Err(e) => {
                let pid = self.next_failed_pid;
                self.next_failed_pid = if pid <= -1_000_000 { -1 } else { pid - 1 };
                self.failures.push((sid, pid, e.to_string()));
                Ok(pid)
            }
        }
    }

    /// `lsyncd.exec`: a child bound to no event; its exit is ignored when reaped.
    pub(crate) fn exec_unbound(&mut self, argv: Vec<Vec<u8>>) -> Option<libc::pid_t> {
        log::with(b"Exec", || spawn::exec_log_line(&argv, None));
        let registry = self.registry.as_ref()?;
        let req = SpawnRequest {
            argv,
            stdin: None,
            output: self.child_output(),
        };
        match self.spawner.spawn(registry, req) {
            Ok((pid, _)) => Some(pid),
            Err(e) => {
                log::error(format!("cannot spawn: {e}"));
                None
            }
        }
    }
}

impl Core {
    /// `spawn()` for an agent (SPEC §6.1). Returns the pid, or `None` when nothing started.
    pub(crate) fn spawn(
        &mut self,
        sid: usize,
        dids: Vec<DelayId>,
        is_list: bool,
        argv: Vec<Vec<u8>>,
        stdin: Option<Vec<u8>>,
    ) -> Result<Option<libc::pid_t>, String> {
        let s = &mut self.syncs[sid];
        for id in &dids {
            let status = s.delays.get(*id).map(|d| d.status);
            let ok = matches!(
                (is_list, status),
                (false, Some(Status::Wait)) | (true, Some(Status::Wait | Status::Block))
            );
            if !ok {
                return Err(if is_list {
                    "spawn() called on an non-waiting event list".to_string()
                } else {
                    "spawn() called on an non-waiting event".to_string()
                });
            }
        }
        let stdin = stdin.filter(|t| !t.is_empty());
        log::with(b"Exec", || spawn::exec_log_line(&argv, stdin.as_deref()));
        let command = health::command_line(&argv);
        let program = argv.first().cloned().unwrap_or_default();
        let pid = self.procs.launch(sid, argv, stdin)?;
        s.health.transfer_started(pid, command);
        for id in &dids {
            s.delays.set_active(*id);
        }
        let agent = Agent {
            dids,
            is_list,
            command: program,
        };
        s.processes.insert(pid, agent);
        Ok(Some(pid))
    }
}
