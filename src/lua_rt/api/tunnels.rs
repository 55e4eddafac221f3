//! The `core` functions for tunnels: holding a sync, the tick flag, free ports and command splitting.
//!
//! Owns: these rows of the API table (see `api.rs`). Must not touch: the poll loop, Lua
//! state beyond the values of one call.

use super::prelude::*;

/// This area's `(name, function)` rows.
pub(super) fn rows(lua: &Lua) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    rows.push((
        "holdSync",
        sync_function(lua, |c, sid, held: bool| {
            c.sync_mut(sid).hold(held);
            Ok(())
        })?,
    ));
    rows.push((
        "tunnelsExist",
        core_function(lua, |c, ()| {
            c.lua.note_tunnels();
            Ok(())
        })?,
    ));
    rows.push((
        "freePort",
        lua.create_function(|_, ()| {
            Ok(std::net::TcpListener::bind(("0.0.0.0", 0))
                .and_then(|l| l.local_addr())
                .ok()
                .map(|a| a.port() as i64))
        })?,
    ));
    rows.push((
        "splitQuoted",
        lua.create_function(|lua, s: mlua::String| {
            let (words, _warnings) = cli::split_quoted(&s.as_bytes());
            let v = words
                .iter()
                .map(|w| lua.create_string(w))
                .collect::<mlua::Result<Vec<_>>>()?;
            lua.create_sequence_from(v)
        })?,
    ));
    Ok(rows)
}
