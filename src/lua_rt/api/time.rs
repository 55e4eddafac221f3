//! The `core` functions for timestamps (`now`, their arithmetic helpers) and the user alarm.
//!
//! Owns: these rows of the API table (see `api.rs`). Must not touch: the poll loop, Lua
//! state beyond the values of one call.

use super::prelude::*;

/// This area's `(name, function)` rows.
pub(super) fn rows(lua: &Lua) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    rows.push((
        "now",
        core_function(lua, |c, ()| {
            Ok(Timestamp(c.lua.origin().elapsed().as_secs_f64()))
        })?,
    ));
    rows.push((
        "setAlarm",
        lua.create_function(|lua, t: Value| {
            let at = ts_of(&t).map(|t| t.0);
            with_core(lua, |c| {
                // A time beyond any instant (`now() + math.huge`) never comes; NaN is refused
                // by alarm() before it gets here.
                let alarm = at.and_then(|secs| {
                    let secs = secs.max(0.0);
                    if !secs.is_finite() || secs > 1e12 {
                        return None;
                    }
                    c.lua
                        .origin()
                        .checked_add(std::time::Duration::from_secs_f64(secs))
                });
                c.lua.set_user_alarm(alarm);
                Ok(())
            })
        })?,
    ));
    rows.push((
        "isTimestamp",
        lua.create_function(|_, v: Value| Ok(ts_of(&v).is_some()))?,
    ));
    rows.push((
        "tsSeconds",
        lua.create_function(|_, v: Value| Ok(ts_of(&v).map(|t| t.0).unwrap_or(0.0)))?,
    ));
    Ok(rows)
}
