//! Lending the daemon's state to Lua. The event loop owns the [`Core`]; while one of its calls
//! into Lua runs (a hook, a startup step), [`lend`] moves the core into the Lua state's app
//! data, and the `core` API functions reach it through [`with_core`], one access per call. When
//! the call returns, the core goes back to the loop. No closure keeps a handle on the core.
//!
//! Re-entry cannot panic: an access holds the core only while Rust code runs (the function it
//! is given gets no Lua handle, and its result becomes Lua values after the core is released).
//! A nested access (e.g. a finalizer the garbage collector runs during an allocation) finds the
//! core taken and gets a Lua error, never a panic. So does a `core` function called while no
//! call is lent the core (a finalizer run when the Lua state is closed).
//!
//! Owns: the loan and the two byte-string shapes the API returns. Must not touch: what the API
//! functions do with the core (`api/`), the hooks (`mod.rs`).

use std::rc::Rc;

use mlua::{IntoLua, Lua, Value};

use crate::sync::Core;

/// The app data slot: the lent core, or the spare the loop holds meanwhile.
pub(super) struct Lent {
    core: Core,
    on_loan: bool,
}

/// Creates the slot; called once per Lua state, before any Lua code runs.
pub(super) fn install(lua: &Lua, spare: Core) {
    lua.set_app_data(Lent {
        core: spare,
        on_loan: false,
    });
}

/// Puts the loop's core back when the lending call ends, also when it unwinds.
struct Return<'a> {
    lua: &'a Lua,
    core: &'a mut Core,
}

impl Drop for Return<'_> {
    fn drop(&mut self) {
        // Every access ended with the call that made it: the slot is free again.
        if let Ok(Some(mut lent)) = self.lua.try_app_data_mut::<Lent>() {
            std::mem::swap(&mut lent.core, self.core);
            lent.on_loan = false;
        }
    }
}

/// Runs `f` (which calls Lua) with `core` lent to the `core` API functions. Errors if the slot
/// is missing or busy, which no caller holding a `&mut Core` can cause.
pub(super) fn lend<R>(lua: &Lua, core: &mut Core, f: impl FnOnce() -> R) -> Result<R, String> {
    {
        let mut lent = match lua.try_app_data_mut::<Lent>() {
            Ok(Some(l)) if !l.on_loan => l,
            _ => return Err("the daemon's state cannot be lent to Lua".to_string()),
        };
        std::mem::swap(&mut lent.core, core);
        lent.on_loan = true;
    }
    let _back = Return { lua, core };
    Ok(f())
}

/// One access of a `core` API function to the lent core. `f` runs plain Rust: it has no Lua
/// handle, so it cannot call back into Lua while it holds the core.
pub(super) fn with_core<R>(
    lua: &Lua,
    f: impl FnOnce(&mut Core) -> mlua::Result<R>,
) -> mlua::Result<R> {
    match lua.try_app_data_mut::<Lent>() {
        Ok(Some(mut lent)) if lent.on_loan => f(&mut lent.core),
        Ok(_) => Err(mlua::Error::runtime(
            "the daemon's core functions are not available here",
        )),
        Err(_) => Err(mlua::Error::runtime(
            "a core function was called while another one is running",
        )),
    }
}

/// Bytes from the core, made a Lua string only after the core is released.
pub(super) struct LuaBytes(pub(super) Rc<[u8]>);

impl IntoLua for LuaBytes {
    fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        lua.create_string(&self.0[..]).map(Value::String)
    }
}

/// A list of byte strings from the core, made a Lua array after the core is released.
pub(super) struct LuaStrings(pub(super) Vec<Vec<u8>>);

impl IntoLua for LuaStrings {
    fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        let v = self
            .0
            .iter()
            .map(|p| lua.create_string(p))
            .collect::<mlua::Result<Vec<_>>>()?;
        lua.create_sequence_from(v).map(Value::Table)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{api::register_api, Runtime};
    use super::*;

    /// Calls every registered `core` function (with arguments that make sense), at the top of
    /// a lent call and again from inside the Lua test `getEvents` runs, two levels deep.
    /// Returns what went wrong: a function without arguments here, or a failed call.
    const REENTER: &str = r#"
        local core = ...
        local failures, calls = {}, 0
        local sid = core.addSync({ source = '/nonexistent-loan-test/', name = 'loan' })
        local did = core.fullEvent(sid, '/a')
        local callAll
        local function argsFor(name, depth)
            local once = false
            local function test(d)
                if not once and depth < 2 then
                    once = true
                    callAll(depth + 1)
                end
                return true
            end
            local A = {
                log = { 'Loan', 'x' }, logEnabled = { 'Normal' }, fading = {}, now = {},
                sourceAway = { '/nonexistent-loan-test/' },
                setAlarm = { false }, isTimestamp = { 1 }, tsSeconds = { core.now() },
                realdir = { '/' }, readdir = { '/' }, fileSize = { '/' }, isSymlink = { '/' }, fileType = { '/' },
                addSync = { { source = '/nonexistent-loan-test/', name = 'more' } },
                dinfo = { sid, did }, dstatus = { sid, did }, nextWait = { sid },
                getEvents = { sid, test }, getEventsExcept = { sid, { 'Blanket' } },
                includeList = { sid, { did } }, discard = { sid, -1 }, blanket = { sid },
                fullEvent = { sid, '/b' }, addExclude = { sid, '*.x' },
                rmExclude = { sid, '*.x' }, getExcludes = { sid }, getFilters = { sid },
                hasFilters = { sid }, appendFilter = { sid, '- *.y' },
                spawn = { sid, did, false, { '/bin/true' } }, exec = { { '/nonexistent' } },
                processInfo = {}, processCount = { sid }, holdSync = { sid, false },
                tunnelsExist = {}, kill = { 1, 0 }, freePort = {},
                observeFd = { 1000, false, false }, splitQuoted = { 'a "b c"' },
            }
            return A[name]
        end
        callAll = function(depth)
            for name, f in pairs(core) do
                local args = argsFor(name, depth)
                if name == 'terminate' then
                    -- ends the run by design
                elseif args == nil then
                    failures[#failures + 1] = 'no arguments for core.' .. name
                else
                    calls = calls + 1
                    local ok, err = pcall(f, table.unpack(args))
                    -- No poll registry in this test: spawn refuses, as before a run starts.
                    local refused = name == 'spawn'
                        and tostring(err):find('before the daemon runs', 1, true)
                    if not ok and not refused then
                        failures[#failures + 1] =
                            'depth ' .. depth .. ': core.' .. name .. ': ' .. tostring(err)
                    end
                end
            end
        end
        callAll(0)
        return failures, calls, core.dstatus(sid, did)
    "#;

    #[test]
    fn every_core_function_runs_re_entrantly_from_lua_inside_a_core_function() {
        let origin = std::time::Instant::now();
        let rt = Runtime::new(origin).expect("runtime");
        let api = register_api(&rt.lua).expect("api");
        let chunk = rt.lua.load(REENTER).into_function().expect("chunk");
        let mut core = Core::new(origin);
        let (failures, calls, status): (Vec<String>, i64, String) =
            lend(&rt.lua, &mut core, || chunk.call(api.clone()))
                .expect("lent")
                .expect("ran");
        assert!(failures.is_empty(), "{failures:#?}");
        let names = api.pairs::<String, Value>().count() as i64;
        // Every function at depth 0, 1 and 2 (terminate excepted).
        assert!(
            calls >= 3 * (names - 1),
            "{calls} calls of {names} functions"
        );
        assert_eq!(status, "wait");
        // What Lua changed is in the loop's core once the call returned.
        assert!(core.syncs.len() > 3, "{} syncs", core.syncs.len());
        assert!(core.syncs[0].delays.len() > 3);
    }

    #[test]
    fn a_core_function_outside_a_lent_call_is_a_lua_error() {
        let origin = std::time::Instant::now();
        let rt = Runtime::new(origin).expect("runtime");
        let api = register_api(&rt.lua).expect("api");
        let now: mlua::Function = api.get("now").expect("now");
        let e = now.call::<Value>(()).expect_err("no core lent");
        assert!(e.to_string().contains("not available"), "{e}");
        let mut core = Core::new(origin);
        let inside = lend(&rt.lua, &mut core, || now.call::<Value>(()));
        assert!(matches!(inside, Ok(Ok(Value::UserData(_)))), "{inside:?}");
        assert!(
            now.call::<Value>(()).is_err(),
            "the loan ended with the call"
        );
    }

    #[test]
    fn a_nested_access_is_refused_without_a_panic() {
        let origin = std::time::Instant::now();
        let rt = Runtime::new(origin).expect("runtime");
        let mut core = Core::new(origin);
        let nested = lend(&rt.lua, &mut core, || {
            with_core(&rt.lua, |_| with_core(&rt.lua, |_| Ok(())))
        })
        .expect("lent");
        let e = nested.expect_err("the core is held by the outer access");
        assert!(
            e.to_string().contains("while another one is running"),
            "{e}"
        );
        let again = lend(&rt.lua, &mut core, || with_core(&rt.lua, |_| Ok(7)));
        assert_eq!(again.expect("lent").expect("free again"), 7);
    }
}
