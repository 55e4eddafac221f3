//! The `core` functions for processes: `spawn` for events, unbound `exec`, counts, `kill` and observed fds.
//!
//! Owns: these rows of the API table (see `api.rs`). Must not touch: the poll loop, Lua
//! state beyond the values of one call.

use super::prelude::*;

/// This area's `(name, function)` rows.
pub(super) fn rows(lua: &Lua, core: &Shared) -> mlua::Result<Vec<Row>> {
    let mut rows = Vec::new();
    rows.extend(spawn_rows(lua, core)?);
    rows.extend(count_rows(lua, core)?);
    Ok(rows)
}

/// Starting processes: for events (`spawn`) and unbound (`exec`).
fn spawn_rows(lua: &Lua, core: &Shared) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    {
        let core = core.clone();
        rows.push((
            "spawn",
            lua.create_function(
                move |_,
                      (sid, dids, is_list, argv, stdin): (
                    i64,
                    Value,
                    bool,
                    Table,
                    Option<mlua::String>,
                )| {
                    let ids: Vec<DelayId> = match dids {
                        Value::Integer(i) => vec![did_of(i)],
                        Value::Table(t) => t
                            .sequence_values::<i64>()
                            .map(|v| v.map(did_of))
                            .collect::<mlua::Result<_>>()?,
                        _ => return Err(mlua::Error::runtime("spawning with an unknown agent")),
                    };
                    let argv: Vec<Vec<u8>> = argv
                        .sequence_values::<mlua::String>()
                        .map(|s| s.map(|s| s.as_bytes().to_vec()))
                        .collect::<mlua::Result<_>>()?;
                    let stdin = stdin.map(|s| s.as_bytes().to_vec());
                    let mut c = core.borrow_mut();
                    let sid = sid_check(&c, sid)?;
                    c.spawn(sid, ids, is_list, argv, stdin)
                        .map(|p| p.map(i64::from))
                        .map_err(mlua::Error::runtime)
                },
            )?,
        ));
    }
    {
        let core = core.clone();
        rows.push((
            "exec",
            lua.create_function(move |_, argv: Table| {
                let argv: Vec<Vec<u8>> = argv
                    .sequence_values::<mlua::String>()
                    .map(|s| s.map(|s| s.as_bytes().to_vec()))
                    .collect::<mlua::Result<_>>()?;
                let mut c = core.borrow_mut();
                Ok(c.exec_unbound(argv).map(i64::from))
            })?,
        ));
    }
    Ok(rows)
}

/// Process counts, signals and observed fds.
fn count_rows(lua: &Lua, core: &Shared) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    {
        let core = core.clone();
        rows.push((
            "processInfo",
            lua.create_function(move |_, ()| {
                let c = core.borrow();
                Ok((c.running as i64, c.max_processes.map(|m| m as i64)))
            })?,
        ));
    }
    rows.push((
        "processCount",
        sync_function(lua, core, |_, c, sid, ()| {
            Ok(c.syncs[sid].processes.len() as i64)
        })?,
    ));
    rows.push((
        "kill",
        lua.create_function(|_, (pid, sig): (i64, i64)| {
            // Not a process group or every process (0, negative), not a truncated number.
            let (Ok(pid), Ok(sig)) = (libc::pid_t::try_from(pid), i32::try_from(sig)) else {
                return Err(mlua::Error::runtime("kill: pid or signal out of range"));
            };
            if pid <= 0 || !(0..=64).contains(&sig) {
                return Err(mlua::Error::runtime(
                    "kill: pid must be > 0 and signal between 0 and 64",
                ));
            }
            Ok(if sys::kill(pid, sig).is_ok() { 0 } else { -1 })
        })?,
    ));
    {
        let core = core.clone();
        rows.push((
            "observeFd",
            lua.create_function(move |_, (fd, r, w): (i64, bool, bool)| {
                let fd = std::os::fd::RawFd::try_from(fd)
                    .ok()
                    .filter(|fd| *fd >= 0)
                    .ok_or_else(|| mlua::Error::runtime("observefd: bad fd"))?;
                let mut c = core.borrow_mut();
                if r || w {
                    c.observed.insert(fd, (r, w));
                } else {
                    c.observed.remove(&fd);
                }
                Ok(())
            })?,
        ));
    }
    Ok(rows)
}
