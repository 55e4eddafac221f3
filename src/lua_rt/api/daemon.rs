//! The `core` functions for logging, `terminate`, whether the run is fading and whether a
//! source of the run before a restart is away.
//!
//! Owns: these rows of the API table (see `api.rs`). Must not touch: the poll loop, Lua
//! state beyond the values of one call.

use super::prelude::*;

/// This area's `(name, function)` rows.
pub(super) fn rows(lua: &Lua) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    rows.push((
        "log",
        lua.create_function(|_, (cat, msg): (mlua::String, mlua::String)| {
            log::log(&cat.as_bytes(), &msg.as_bytes());
            Ok(())
        })?,
    ));
    rows.push((
        "logEnabled",
        lua.create_function(|_, cat: mlua::String| Ok(log::enabled(&cat.as_bytes())))?,
    ));
    rows.push((
        "terminate",
        lua.create_function(|lua, code: i64| -> mlua::Result<()> {
            Err(exit_error(lua, ExitCode::requested(code)))
        })?,
    ));
    rows.push(("fading", core_function(lua, |c, ()| Ok(c.is_fading()))?));
    rows.push((
        "sourceAway",
        core_function(lua, |c, given: mlua::String| {
            Ok(c.run
                .source_away(&given.as_bytes())
                .map(|k| LuaBytes(k.real.as_slice().into())))
        })?,
    ));
    Ok(rows)
}
