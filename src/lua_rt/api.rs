//! The private `core` table the prelude builds the upstream Lua API from: one table of
//! `(name, function)` rows, kept in modules by area.
//!
//! Every function reaches the daemon's state only through the core lent to the running call
//! (`loan::with_core`); none keeps a handle on it.
//!
//! Owns: the names Lua can call and their Rust functions. Must not touch: the poll loop,
//! fork/exec (spawns go through `Core::spawn`).

mod daemon;
mod delays;
mod excludes;
mod fs;
mod processes;
mod time;
mod tunnels;

/// What the area modules share.
mod prelude {
    pub(super) use super::super::loan::{with_core, LuaBytes, LuaStrings};
    pub(super) use super::super::{bytes_of, exit_error, sync_job, truthy, ts_of, Timestamp};
    pub(super) use super::{core_function, sync_function, with_sync, Row};
    pub(super) use crate::cli;
    pub(super) use crate::delay::{select_walk, DelayId, DelayKind, Select};
    pub(super) use crate::exit::ExitCode;
    pub(super) use crate::log;
    pub(super) use crate::sys;
    pub(super) use mlua::{Function, Lua, Table, Value};
    pub(super) use std::ffi::OsStr;
    pub(super) use std::os::unix::ffi::{OsStrExt, OsStringExt};
    pub(super) use std::time::Instant;

    pub(super) fn did_of(v: i64) -> DelayId {
        DelayId(v as u64)
    }
}

use mlua::{Function, Lua, Table, Value};

use super::loan::with_core;
use crate::sync::Core;

/// One entry of the `core` table.
pub(super) type Row = (&'static str, Function);

/// An area's rows, made for one Lua state.
type Area = fn(&Lua) -> mlua::Result<Vec<Row>>;

/// The areas, each giving its rows.
const AREAS: [Area; 7] = [
    daemon::rows,
    time::rows,
    fs::rows,
    delays::rows,
    excludes::rows,
    processes::rows,
    tunnels::rows,
];

/// Registers the private `core` table the prelude builds the upstream API from. Each entry:
///
/// | name | arguments | returns |
/// |---|---|---|
/// | `log` | category, message | — |
/// | `logEnabled` | category | boolean |
/// | `terminate` | code | (exits) |
/// | `now` | — | timestamp |
/// | `setAlarm` | timestamp or nil | the earliest user alarm, for the loop's timeout |
/// | `isTimestamp`, `tsSeconds` | value | boolean / seconds |
/// | `realdir` | path | absolute dir with `/`, or nil + error text |
/// | `readdir` | path | { name = isdir } or nil |
/// | `fileSize` | path | size or nil |
/// | `isSymlink` | path | whether the path itself is a symlink |
/// | `fileType` | path | file, directory, symlink, fifo, socket, char, block, or nil |
/// | `addSync` | config table | sync id |
/// | `dinfo` | sid, did | etype, status, path, path2 (nil if gone) |
/// | `dstatus` | sid, did | status or nil |
/// | `nextWait` | sid | did or nil |
/// | `getEvents` | sid, test(did) or nil | array of dids |
/// | `getEventsExcept` | sid, array of etypes | array of dids (getEvents rejecting those types) |
/// | `includeList` | sid, dids | count, NUL-joined list, newline-joined list or nil |
/// | `discard` | sid, did | — |
/// | `blanket`, `fullEvent` | sid[, path] | did |
/// | `addExclude`, `rmExclude`, `getExcludes`, `getFilters`, `hasFilters`, `appendFilter` | sid, … | SPEC §5.7 |
/// | `spawn` | sid, did or dids, isList, argv, stdin or nil | pid or nil |
/// | `exec` | argv | pid or nil |
/// | `fading` | — | boolean |
/// | `processInfo` | — | running, global max or nil |
/// | `processCount` | sid | number |
/// | `holdSync` | sid, held | — (a sync whose tunnel is not up runs no action) |
/// | `tunnelsExist` | — | — (the loop ticks tunnels from now on) |
/// | `kill` | pid, signal | kill(2) result |
/// | `freePort` | — | port or nil |
/// | `observeFd` | fd, readable wanted, writable wanted | — (both false: stop observing) |
/// | `splitQuoted` | string | array of words |
pub(super) fn register_api(lua: &Lua) -> mlua::Result<Table> {
    let api = lua.create_table()?;
    for area in AREAS {
        for (name, f) in area(lua)? {
            if api.contains_key(name)? {
                return Err(mlua::Error::runtime(format!(
                    "core.{name} registered twice"
                )));
            }
            api.set(name, f)?;
        }
    }
    Ok(api)
}

/// A `core` function taking a sync id first: the id is checked against the lent core, then
/// `f` gets the core, the sync's index and the other arguments. `f` runs plain Rust; what it
/// returns becomes Lua values after the core is released.
fn sync_function<A, R>(
    lua: &Lua,
    f: impl Fn(&mut Core, usize, A) -> mlua::Result<R> + 'static,
) -> mlua::Result<Function>
where
    A: mlua::FromLuaMulti,
    R: mlua::IntoLuaMulti,
{
    lua.create_function(move |lua, mut args: mlua::MultiValue| {
        let sid = match args.pop_front().unwrap_or(Value::Nil) {
            Value::Integer(i) => i,
            Value::Number(n) => n as i64,
            _ => return Err(mlua::Error::runtime("unknown sync")),
        };
        let rest = A::from_lua_multi(args, lua)?;
        with_sync(lua, sid, |c, sid| f(c, sid, rest))
    })
}

/// One access to sync id `sid` of the lent core, for a `core` function that also runs Lua
/// (before or after, never during the access).
fn with_sync<R>(
    lua: &Lua,
    sid: i64,
    f: impl FnOnce(&mut Core, usize) -> mlua::Result<R>,
) -> mlua::Result<R> {
    with_core(lua, |c| {
        let sid = sid_of(c, sid)?;
        f(c, sid)
    })
}

/// The index of sync id `sid` of a Lua call, if such a sync exists.
fn sid_of(c: &Core, sid: i64) -> mlua::Result<usize> {
    c.sync_index(sid)
        .ok_or_else(|| mlua::Error::runtime("unknown sync"))
}

/// A `core` function on the daemon as a whole: `f` gets the lent core and the arguments, runs
/// plain Rust, and what it returns becomes Lua values after the core is released.
fn core_function<A, R>(
    lua: &Lua,
    f: impl Fn(&mut Core, A) -> mlua::Result<R> + 'static,
) -> mlua::Result<Function>
where
    A: mlua::FromLuaMulti,
    R: mlua::IntoLuaMulti,
{
    lua.create_function(move |lua, args: A| with_core(lua, |c| f(c, args)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The names the prelude calls as `core.NAME`.
    fn used_by_prelude() -> BTreeSet<String> {
        let text = super::super::PRELUDE;
        let mut out = BTreeSet::new();
        for (i, _) in text.match_indices("core.") {
            let before = text[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = text[i + 5..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
        out
    }

    /// The names a configuration sees, qualified as the man page writes them: the globals
    /// the prelude and the layers define, `lsyncd.NAME`, `inlet.NAME`, `event.NAME` and
    /// `elist.NAME`. Names starting with `_` are private.
    fn public_api() -> BTreeSet<String> {
        let lua = crate::sys::new_lua();
        let builtin: BTreeSet<String> = lua
            .globals()
            .pairs::<String, Value>()
            .map(|kv| kv.expect("pair").0)
            .collect();
        let api = register_api(&lua).expect("register");
        lua.load(super::super::PRELUDE)
            .call::<Value>(api)
            .expect("prelude");
        for (name, src) in super::super::LAYERS {
            lua.load(src).set_name(name).exec().expect("layer");
        }
        let keys = |t: Table| -> Vec<String> {
            t.pairs::<String, Value>()
                .map(|kv| kv.expect("pair").0)
                .filter(|k| !k.starts_with('_'))
                .collect()
        };
        let mut out: BTreeSet<String> = keys(lua.globals())
            .into_iter()
            .filter(|k| !builtin.contains(k))
            .collect();
        let lsyncd: Table = lua.globals().get("lsyncd").expect("lsyncd table");
        out.extend(keys(lsyncd).into_iter().map(|k| format!("lsyncd.{k}")));
        // The inlet, event and event-list objects answer through closures; their names are
        // the prelude's tables of them.
        let text = super::super::PRELUDE;
        let block = |open: &str, close: &str| -> &str {
            let start = text.find(open).expect(open) + open.len();
            &text[start..start + text[start..].find(close).expect(close)]
        };
        for line in block("local function mkinlet( sid )", "\nend\n").lines() {
            if let Some(rest) = line.trim().strip_prefix("function fns.") {
                out.insert(format!(
                    "inlet.{}",
                    rest.split('(').next().unwrap_or("").trim()
                ));
            }
        }
        for line in block("local function mkevent(", "\nend\n").lines() {
            if let Some((_, rest)) = line.split_once("rawset( ev, '") {
                out.insert(format!("event.{}", rest.split('\'').next().unwrap_or("")));
            }
        }
        for (object, open) in [
            ("event", "local eventFields = {"),
            ("elist", "local listFunctions = {"),
        ] {
            for line in block(open, "\n}\n").lines() {
                let Some(rest) = line.strip_prefix('\t') else {
                    continue;
                };
                if let Some((name, _)) = rest.split_once(" = function") {
                    out.insert(format!("{object}.{name}"));
                }
            }
        }
        out
    }

    /// The names `man/lsyncd.1` lists in its "Lua API" section: one per `.B`/`.BR` line.
    fn listed_in_man_page() -> BTreeSet<String> {
        let man = include_str!("../../man/lsyncd.1");
        let start = man
            .find("\n.SS Lua API\n")
            .expect("man page has a Lua API section");
        let section = &man[start + 1..];
        let section = &section[..section[4..].find("\n.S").map_or(section.len(), |e| e + 4)];
        section
            .lines()
            .filter_map(|l| l.strip_prefix(".BR ").or_else(|| l.strip_prefix(".B ")))
            .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn the_man_page_lists_exactly_the_public_api() {
        let code = public_api();
        let man = listed_in_man_page();
        let undocumented: Vec<_> = code.difference(&man).collect();
        let stale: Vec<_> = man.difference(&code).collect();
        assert!(
            undocumented.is_empty(),
            "not in the man page's Lua API list: {undocumented:?}"
        );
        assert!(
            stale.is_empty(),
            "listed in the man page, not defined: {stale:?}"
        );
        assert!(
            code.contains("spawn") && code.contains("inlet.getEvent"),
            "{code:?}"
        );
    }

    #[test]
    fn the_prelude_uses_exactly_the_registered_names() {
        let lua = crate::sys::new_lua();
        let api = register_api(&lua).expect("register");
        let registered: BTreeSet<String> = api
            .pairs::<String, Value>()
            .map(|kv| kv.expect("pair").0)
            .collect();
        let used = used_by_prelude();
        let unused: Vec<_> = registered.difference(&used).collect();
        let missing: Vec<_> = used.difference(&registered).collect();
        assert!(unused.is_empty(), "registered, never used: {unused:?}");
        assert!(missing.is_empty(), "used, never registered: {missing:?}");
        assert!(registered.len() > 30, "{registered:?}");
    }
}
