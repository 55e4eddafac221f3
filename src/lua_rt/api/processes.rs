//! The `core` functions for processes: `spawn` for events, unbound `exec`, counts, `kill` and observed fds.
//!
//! Owns: these rows of the API table (see `api.rs`). Must not touch: the poll loop, Lua
//! state beyond the values of one call.

use super::prelude::*;

/// This area's `(name, function)` rows.
pub(super) fn rows(lua: &Lua) -> mlua::Result<Vec<Row>> {
    let mut rows = Vec::new();
    rows.extend(spawn_rows(lua)?);
    rows.extend(count_rows(lua)?);
    Ok(rows)
}

/// Starting processes: for events (`spawn`) and unbound (`exec`).
fn spawn_rows(lua: &Lua) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    rows.push(
        (
            "spawn",
            lua.create_function(
                |lua,
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
                    let argv = byte_strings(&argv)?;
                    let stdin = stdin.map(|s| s.as_bytes().to_vec());
                    with_sync(lua, sid, |c, sid| {
                        c.spawn(sid, ids, is_list, argv, stdin)
                            .map(|p| p.map(i64::from))
                            .map_err(mlua::Error::runtime)
                    })
                },
            )?,
        ),
    );
    rows.push((
        "exec",
        lua.create_function(|lua, argv: Table| {
            let argv = byte_strings(&argv)?;
            with_core(lua, |c| Ok(c.procs.exec_unbound(argv).map(i64::from)))
        })?,
    ));
    Ok(rows)
}

/// The strings of a Lua array, as bytes (read before the core is taken: it may run Lua).
fn byte_strings(t: &Table) -> mlua::Result<Vec<Vec<u8>>> {
    t.sequence_values::<mlua::String>()
        .map(|s| s.map(|s| s.as_bytes().to_vec()))
        .collect()
}

/// Process counts, signals and observed fds.
fn count_rows(lua: &Lua) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    rows.push((
        "processInfo",
        core_function(lua, |c, ()| {
            let (running, max) = c.procs.counts();
            Ok((running as i64, max.map(|m| m as i64)))
        })?,
    ));
    rows.push((
        "processCount",
        sync_function(lua, |c, sid, ()| Ok(c.sync(sid).processes.len() as i64))?,
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
    rows.push((
        "observeFd",
        core_function(lua, |c, (fd, r, w): (i64, bool, bool)| {
            let fd = std::os::fd::RawFd::try_from(fd)
                .ok()
                .filter(|fd| *fd >= 0)
                .ok_or_else(|| mlua::Error::runtime("observefd: bad fd"))?;
            c.lua.observe_fd(fd, r, w);
            Ok(())
        })?,
    ));
    Ok(rows)
}
