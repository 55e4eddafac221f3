//! The `core` functions for timestamps (`now`, their arithmetic helpers) and the user alarm.
//!
//! Owns: these rows of the API table (see `api.rs`). Must not touch: the poll loop, Lua
//! state beyond the values of one call.

use super::prelude::*;

/// This area's `(name, function)` rows.
pub(super) fn rows(lua: &Lua, core: &Shared) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    {
        let core = core.clone();
        rows.push((
            "now",
            lua.create_function(move |_, ()| {
                let origin = core.borrow().origin;
                Ok(Timestamp(origin.elapsed().as_secs_f64()))
            })?,
        ));
    }
    {
        let core = core.clone();
        rows.push((
            "setAlarm",
            lua.create_function(move |_, t: Value| {
                let mut c = core.borrow_mut();
                let origin = c.origin;
                // A time beyond any instant (`now() + math.huge`) never comes; NaN is refused
                // by alarm() before it gets here.
                c.user_alarm = ts_of(&t).and_then(|t| {
                    let secs = t.0.max(0.0);
                    if !secs.is_finite() || secs > 1e12 {
                        return None;
                    }
                    origin.checked_add(std::time::Duration::from_secs_f64(secs))
                });
                Ok(())
            })?,
        ));
    }
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
