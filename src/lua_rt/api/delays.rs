//! The `core` functions for syncs and their delays: `addSync`, event info, the getEvents walks, include lists, discarding and synthetic events.
//!
//! Owns: these rows of the API table (see `api.rs`). Must not touch: the poll loop, Lua
//! state beyond the values of one call.

use super::prelude::*;

/// This area's `(name, function)` rows.
pub(super) fn rows(lua: &Lua) -> mlua::Result<Vec<Row>> {
    let mut rows = Vec::new();
    rows.extend(sync_rows(lua)?);
    rows.extend(walk_rows(lua)?);
    rows.extend(change_rows(lua)?);
    Ok(rows)
}

/// `addSync` and what Lua asks about one delay.
fn sync_rows(lua: &Lua) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    rows.push((
        "addSync",
        lua.create_function(|lua, config: Table| {
            // Reading the config runs Lua (metamethods): done before the core is taken.
            let job = sync_job(lua, &config)?;
            with_core(lua, |c| Ok(c.add_sync(job) as i64))
        })?,
    ));
    rows.push((
        "dinfo",
        sync_function(lua, |c, sid, did: i64| {
            Ok(match c.sync(sid).delays.get(did_of(did)) {
                Some(d) => (
                    Some(d.kind.as_lua_str()),
                    Some(d.status.as_str()),
                    Some(LuaBytes(d.path.clone())),
                    d.path2.cloned().map(LuaBytes),
                ),
                None => (None, None, None, None),
            })
        })?,
    ));
    rows.push((
        "dstatus",
        sync_function(lua, |c, sid, did: i64| {
            Ok(c.sync(sid)
                .delays
                .get(did_of(did))
                .map(|d| d.status.as_str()))
        })?,
    ));
    rows.push((
        "nextWait",
        sync_function(lua, |c, sid, ()| {
            let s = c.sync(sid);
            Ok(s.delays
                .next_wait(Instant::now(), s.conf.max_delays)
                .map(|d| d.0 as i64))
        })?,
    ));
    Ok(rows)
}

/// The getDelays walks and the include list of an event list.
fn walk_rows(lua: &Lua) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    rows.push((
        "getEvents",
        lua.create_function(|lua, (sid, test): (i64, Option<Function>)| {
            // A snapshot: the test runs Lua, which may call back into the core.
            let snap = with_sync(lua, sid, |c, sid| Ok(c.sync(sid).delays.snapshot()))?;
            let out = select_walk(snap, |id| match &test {
                Some(t) => Ok::<_, mlua::Error>(judged(t.call::<Value>(id.0 as i64)?)),
                None => Ok(Select::Include),
            })?;
            id_list(lua, out)
        })?,
    ));
    rows.push((
        // getEvents with a test on the event type only, evaluated here without building event
        // tables (the bundled rsync layers' fast path; same result as a Lua test).
        "getEventsExcept",
        lua.create_function(|lua, (sid, skip): (i64, Table)| {
            let mut skipped: Vec<DelayKind> = Vec::new();
            for k in skip.sequence_values::<mlua::String>() {
                if let Some(kind) = DelayKind::from_lua_str(&k?.as_bytes()) {
                    skipped.push(kind);
                }
            }
            let out = with_sync(lua, sid, |c, sid| {
                Ok(c.sync(sid).delays.select(|_, d| {
                    if skipped.contains(&d.kind) {
                        Select::Exclude
                    } else {
                        Select::Include
                    }
                }))
            })?;
            id_list(lua, out)
        })?,
    ));
    rows.push((
        // The running-mode include list of an event list (SPEC §9.5): (count, the list joined
        // by NUL for rsync's stdin, the list joined by newlines when Normal is logged).
        "includeList",
        lua.create_function(|lua, (sid, dids): (i64, Table)| {
            let ids: Vec<DelayId> = dids
                .sequence_values::<i64>()
                .map(|v| v.map(did_of))
                .collect::<mlua::Result<_>>()?;
            let list = with_sync(lua, sid, |c, sid| {
                Ok(crate::sync::include_list(&c.sync(sid).delays, &ids))
            })?;
            let stdin = lua.create_string(list.join(&b'\0'))?;
            let shown = if log::enabled(b"Normal") {
                Value::String(lua.create_string(list.join(&b'\n'))?)
            } else {
                Value::Nil
            };
            Ok((list.len() as i64, stdin, shown))
        })?,
    ));
    Ok(rows)
}

/// Delay ids as a Lua array.
fn id_list(lua: &Lua, ids: Vec<DelayId>) -> mlua::Result<Table> {
    lua.create_sequence_from(ids.into_iter().map(|id| id.0 as i64))
}

/// What a getEvents test said of an event: `'break'` ends the walk, a true value includes it.
fn judged(v: Value) -> Select {
    match v {
        Value::String(s) if s.as_bytes().as_ref() == b"break" => Select::Break,
        v if truthy(&v) => Select::Include,
        _ => Select::Exclude,
    }
}

/// Discarding delays and queueing synthetic ones.
fn change_rows(lua: &Lua) -> mlua::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    rows.push((
        "discard",
        sync_function(lua, |c, sid, did: i64| {
            c.discard(sid, did_of(did));
            Ok(())
        })?,
    ));
    rows.push((
        "blanket",
        sync_function(lua, |c, sid, ()| {
            let id =
                c.sync_mut(sid)
                    .delays
                    .push_unblocked(DelayKind::Blanket, Default::default(), None);
            Ok(id.0 as i64)
        })?,
    ));
    rows.push((
        "fullEvent",
        sync_function(lua, |c, sid, path: Option<mlua::String>| {
            let p: std::rc::Rc<[u8]> = match path {
                Some(p) => p.as_bytes().to_vec().into(),
                None => b"/".to_vec().into(),
            };
            let id = c
                .sync_mut(sid)
                .delays
                .push_unblocked(DelayKind::Full, p, None);
            Ok(id.0 as i64)
        })?,
    ));
    Ok(rows)
}
