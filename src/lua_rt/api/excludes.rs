//! The `core` functions for the exclude and filter lists of a sync (SPEC §5.7).
//!
//! Owns: these rows of the API table (see `api.rs`). Must not touch: the poll loop, Lua
//! state beyond the values of one call.

use super::prelude::*;

/// This area's `(name, function)` rows.
pub(super) fn rows(lua: &Lua) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    rows.push((
        "addExclude",
        sync_function(lua, |c, sid, p: mlua::String| {
            c.sync_mut(sid).excludes.add_exclude(&p.as_bytes());
            Ok(())
        })?,
    ));
    rows.push((
        "rmExclude",
        sync_function(lua, |c, sid, p: mlua::String| {
            if !c.sync_mut(sid).excludes.remove_exclude(&p.as_bytes()) {
                log::normal(
                    [
                        b"Removing not excluded exclude \"".as_slice(),
                        &p.as_bytes(),
                        b"\"",
                    ]
                    .concat(),
                );
            }
            Ok(())
        })?,
    ));
    rows.push((
        "getExcludes",
        sync_function(lua, |c, sid, ()| {
            Ok(LuaStrings(c.sync_mut(sid).excludes.excludes()))
        })?,
    ));
    rows.push((
        "getFilters",
        sync_function(lua, |c, sid, ()| {
            Ok(LuaStrings(c.sync_mut(sid).excludes.filters()))
        })?,
    ));
    rows.push((
        "hasFilters",
        sync_function(lua, |c, sid, ()| Ok(c.sync_mut(sid).excludes.has_filters()))?,
    ));
    rows.push((
        "appendFilter",
        sync_function(lua, |c, sid, line: mlua::String| {
            c.sync_mut(sid)
                .excludes
                .append_filter(&line.as_bytes())
                .map_err(|e| mlua::Error::runtime(e.to_string()))
        })?,
    ));
    Ok(rows)
}
