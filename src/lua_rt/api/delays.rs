//! The `core` functions for syncs and their delays: `addSync`, event info, the getEvents walks, include lists, discarding and synthetic events.
//!
//! Owns: these rows of the API table (see `api.rs`). Must not touch: the poll loop, Lua
//! state beyond the values of one call.

use super::prelude::*;

/// This area's `(name, function)` rows.
pub(super) fn rows(lua: &Lua, core: &Shared) -> mlua::Result<Vec<Row>> {
    let mut rows = Vec::new();
    rows.extend(sync_rows(lua, core)?);
    rows.extend(walk_rows(lua, core)?);
    rows.extend(change_rows(lua, core)?);
    Ok(rows)
}

/// `addSync` and what Lua asks about one delay.
fn sync_rows(lua: &Lua, core: &Shared) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    {
        let core = core.clone();
        rows.push((
            "addSync",
            lua.create_function(move |lua, config: Table| {
                let job = sync_job(lua, &config)?;
                let mut c = core.borrow_mut();
                c.syncs.push(job);
                Ok((c.syncs.len() - 1) as i64)
            })?,
        ));
    }
    rows.push((
        "dinfo",
        sync_function(lua, core, |lua, c, sid, did: i64| {
            let Some(d) = c.syncs[sid].delays.get(did_of(did)) else {
                return Ok((Value::Nil, Value::Nil, Value::Nil, Value::Nil));
            };
            let p2 = match &d.path2 {
                Some(p) => Value::String(lua.create_string(p)?),
                None => Value::Nil,
            };
            Ok((
                Value::String(lua.create_string(d.kind.as_lua_str())?),
                Value::String(lua.create_string(d.status.as_str())?),
                Value::String(lua.create_string(d.path)?),
                p2,
            ))
        })?,
    ));
    rows.push((
        "dstatus",
        sync_function(lua, core, |_, c, sid, did: i64| {
            Ok(c.syncs[sid]
                .delays
                .get(did_of(did))
                .map(|d| d.status.as_str()))
        })?,
    ));
    rows.push((
        "nextWait",
        sync_function(lua, core, |_, c, sid, ()| {
            let s = &c.syncs[sid];
            Ok(s.delays
                .next_wait(Instant::now(), s.max_delays)
                .map(|d| d.0 as i64))
        })?,
    ));
    Ok(rows)
}

/// The getDelays walks and the include list of an event list.
fn walk_rows(lua: &Lua, core: &Shared) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    {
        let core = core.clone();
        rows.push((
            "getEvents",
            lua.create_function(move |lua, (sid, test): (i64, Option<Function>)| {
                // A snapshot: the test runs Lua, which may call back into the core.
                let snap = {
                    let c = core.borrow();
                    c.syncs[sid_check(&c, sid)?].delays.snapshot()
                };
                let out = select_walk(snap, |id| {
                    let Some(t) = &test else {
                        return Ok::<_, mlua::Error>(Select::Include);
                    };
                    Ok(match t.call::<Value>(id.0 as i64)? {
                        Value::String(s) if s.as_bytes().as_ref() == b"break" => Select::Break,
                        v if truthy(&v) => Select::Include,
                        _ => Select::Exclude,
                    })
                })?;
                lua.create_sequence_from(out.into_iter().map(|id| id.0 as i64))
            })?,
        ));
    }
    {
        // getEvents with a test on the event type only, evaluated here without building event
        // tables (the bundled rsync layers' fast path; same result as a Lua test).
        let core = core.clone();
        rows.push((
            "getEventsExcept",
            lua.create_function(move |lua, (sid, skip): (i64, Table)| {
                let mut skipped: Vec<DelayKind> = Vec::new();
                for k in skip.sequence_values::<mlua::String>() {
                    if let Some(kind) = DelayKind::from_lua_str(&k?.as_bytes()) {
                        skipped.push(kind);
                    }
                }
                let c = core.borrow();
                let out = c.syncs[sid_check(&c, sid)?].delays.select(|_, d| {
                    if skipped.contains(&d.kind) {
                        Select::Exclude
                    } else {
                        Select::Include
                    }
                });
                lua.create_sequence_from(out.into_iter().map(|id| id.0 as i64))
            })?,
        ));
    }
    {
        // The running-mode include list of an event list (SPEC §9.5): (count, the list joined
        // by NUL for rsync's stdin, the list joined by newlines when Normal is logged).
        let core = core.clone();
        rows.push((
            "includeList",
            lua.create_function(move |lua, (sid, dids): (i64, Table)| {
                let ids: Vec<DelayId> = dids
                    .sequence_values::<i64>()
                    .map(|v| v.map(did_of))
                    .collect::<mlua::Result<_>>()?;
                let c = core.borrow();
                let s = &c.syncs[sid_check(&c, sid)?];
                let list = crate::sync::include_list(&s.delays, &ids);
                let stdin = lua.create_string(list.join(&b'\0'))?;
                let shown = if log::enabled(b"Normal") {
                    Value::String(lua.create_string(list.join(&b'\n'))?)
                } else {
                    Value::Nil
                };
                Ok((list.len() as i64, stdin, shown))
            })?,
        ));
    }
    Ok(rows)
}

/// Discarding delays and queueing synthetic ones.
fn change_rows(lua: &Lua, core: &Shared) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    rows.push((
        "discard",
        sync_function(lua, core, |_, c, sid, did: i64| {
            c.discard(sid, did_of(did));
            Ok(())
        })?,
    ));
    rows.push((
        "blanket",
        sync_function(lua, core, |_, c, sid, ()| {
            let id =
                c.syncs[sid]
                    .delays
                    .push_unblocked(DelayKind::Blanket, Default::default(), None);
            Ok(id.0 as i64)
        })?,
    ));
    rows.push((
        "fullEvent",
        sync_function(lua, core, |_, c, sid, path: Option<mlua::String>| {
            let p: std::rc::Rc<[u8]> = match path {
                Some(p) => p.as_bytes().to_vec().into(),
                None => b"/".to_vec().into(),
            };
            let id = c.syncs[sid].delays.push_unblocked(DelayKind::Full, p, None);
            Ok(id.0 as i64)
        })?,
    ));
    Ok(rows)
}
