//! The Lua runtime: owns the `mlua::Lua` state of one run, loads the prelude and the bundled
//! layers, runs the user's config, registers the core API the prelude builds the upstream
//! surface from (SPEC §2.2, §7), and calls the layer hooks for the event loop.
//!
//! The Lua ↔ Rust contract: Lua reaches the daemon only through the private `core` table
//! registered by [`Runtime::new`] (one closure per name, listed there); Rust reaches Lua only
//! through the hook table the prelude returns (`initialize`, `translate`, `init`, `full`,
//! `action`, `collect`, `forget`, `alarmTime`, `runAlarms`). Paths cross as Lua strings made of
//! bytes. No mlua value leaves this module.
//!
//! The core is lent to Lua for the duration of each call from Rust (`loan.rs`): every public
//! method of [`Runtime`] takes the event loop's `&mut Core` and lends it while Lua runs.
//!
//! Must not touch: the poll loop; fork/exec (spawns go through `Core::spawn`).

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use mlua::{Function, Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods, Value};

use crate::cli;
use crate::config;
use crate::delay::DelayId;
use crate::exit::ExitCode;
use crate::log;
mod api;
mod loan;

use crate::sync::{Core, SyncConf, SyncJob, Takes};
use crate::sys;
use api::register_api;

const PRELUDE: &str = include_str!("../../lua/prelude.lua");
const LAYERS: [(&str, &str); 5] = [
    ("@default.lua", include_str!("../../lua/default.lua")),
    ("@validate.lua", include_str!("../../lua/validate.lua")),
    (
        "@default-rsync.lua",
        include_str!("../../lua/default-rsync.lua"),
    ),
    (
        "@default-rsyncssh.lua",
        include_str!("../../lua/default-rsyncssh.lua"),
    ),
    (
        "@default-direct.lua",
        include_str!("../../lua/default-direct.lua"),
    ),
];

/// A Lua-visible timestamp: seconds on the monotonic clock since the run's origin
/// (SPEC §2.10). Upstream counts 100 Hz ticks; `.seconds`, `.string` and concatenation show
/// those ticks' scale.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub(crate) struct Timestamp(pub(crate) f64);

impl Timestamp {
    fn ticks(self) -> i64 {
        (self.0 * 100.0).floor() as i64
    }
}

fn ts_of(v: &Value) -> Option<Timestamp> {
    match v {
        Value::UserData(u) => u.borrow::<Timestamp>().ok().map(|t| *t),
        _ => None,
    }
}

fn num_of(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

impl UserData for Timestamp {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("seconds", |_, t| Ok(t.0.floor() as i64));
        fields.add_field_method_get("string", |_, t| Ok((t.0.floor() as i64).to_string()));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_function(MetaMethod::Add, |lua, (a, b): (Value, Value)| {
            match (ts_of(&a), ts_of(&b), num_of(&a), num_of(&b)) {
                (Some(_), Some(_), _, _) => {
                    // Fatal, as upstream: not an error a pcall could catch.
                    log::error("Cannot add two timestamps!");
                    Err(exit_error(lua, ExitCode::Fatal))
                }
                (Some(t), None, _, Some(n)) | (None, Some(t), Some(n), _) => Ok(Timestamp(t.0 + n)),
                _ => Err(mlua::Error::runtime("invalid timestamp arithmetic")),
            }
        });
        methods.add_meta_function(MetaMethod::Sub, |lua, (a, b): (Value, Value)| {
            match (ts_of(&a), ts_of(&b), num_of(&b)) {
                (Some(x), Some(y), _) => Ok(Value::Number(x.0 - y.0)),
                (Some(x), None, Some(n)) => {
                    lua.create_userdata(Timestamp(x.0 - n)).map(Value::UserData)
                }
                _ => Err(mlua::Error::runtime("invalid timestamp arithmetic")),
            }
        });
        methods.add_meta_function(MetaMethod::Lt, |_, (a, b): (Value, Value)| {
            match (ts_of(&a), ts_of(&b)) {
                (Some(x), Some(y)) => Ok(x.0 < y.0),
                _ => Err(mlua::Error::runtime(
                    "cannot compare a timestamp with a non-timestamp",
                )),
            }
        });
        methods.add_meta_function(MetaMethod::Le, |_, (a, b): (Value, Value)| {
            match (ts_of(&a), ts_of(&b)) {
                (Some(x), Some(y)) => Ok(x.0 <= y.0),
                _ => Err(mlua::Error::runtime(
                    "cannot compare a timestamp with a non-timestamp",
                )),
            }
        });
        methods.add_meta_function(MetaMethod::Eq, |_, (a, b): (Value, Value)| {
            Ok(matches!((ts_of(&a), ts_of(&b)), (Some(x), Some(y)) if x.0 == y.0))
        });
        methods.add_meta_function(MetaMethod::Concat, |lua, (a, b): (Value, Value)| {
            let part = |v: &Value| -> mlua::Result<Vec<u8>> {
                if let Some(t) = ts_of(v) {
                    return Ok(t.ticks().to_string().into_bytes());
                }
                match v {
                    Value::String(s) => Ok(s.as_bytes().to_vec()),
                    Value::Integer(i) => Ok(i.to_string().into_bytes()),
                    Value::Number(n) => Ok(n.to_string().into_bytes()),
                    _ => Err(mlua::Error::runtime(
                        "cannot concatenate a timestamp with this value",
                    )),
                }
            };
            let mut out = part(&a)?;
            out.extend(part(&b)?);
            lua.create_string(&out)
        });
        methods.add_meta_method(MetaMethod::ToString, |_, t, ()| {
            Ok(format!("(Timestamp: {})", t.0))
        });
    }
}

/// The root message of an mlua error: what the user's `error()` said, without wrappers.
pub(crate) fn error_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => error_message(cause),
        // Lua's own traceback belongs to the (hidden) traceback category, not the message.
        mlua::Error::RuntimeError(m) => match m.find("\nstack traceback:") {
            Some(i) => m[..i].to_string(),
            None => m.clone(),
        },
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::ExternalError(e) => e.to_string(),
        mlua::Error::WithContext { cause, .. } => error_message(cause),
        other => other.to_string(),
    }
}

/// The traceback of an mlua error, if it carries one.
fn traceback(e: &mlua::Error) -> Option<String> {
    match e {
        mlua::Error::CallbackError { traceback, cause } => {
            traceback_inner(cause).or_else(|| Some(traceback.clone()))
        }
        _ => None,
    }
}

fn traceback_inner(e: &mlua::Error) -> Option<String> {
    match e {
        mlua::Error::CallbackError { .. } => traceback(e),
        _ => None,
    }
}

/// The Lua traceback text carried by an error: Lua's own (`stack traceback:` in a runtime
/// error's message) or the one mlua attached to a callback error.
fn raw_traceback(e: &mlua::Error) -> Option<String> {
    match e {
        mlua::Error::RuntimeError(m) => {
            m.find("\nstack traceback:").map(|i| m[i + 1..].to_string())
        }
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
            raw_traceback(cause).or_else(|| traceback(e))
        }
        _ => None,
    }
}

/// The exit a Lua callback asked for (`terminate()`, a fatal error found in Rust code Lua
/// called). Kept as app data until the Rust caller of Lua takes it; the slot is made with the
/// state, so recording an exit never inserts app data (which would panic while the core is
/// lent to a running API function).
struct PendingExit(Cell<Option<ExitCode>>);

/// Ends the Lua code running now with `code`: the exit is recorded for the Rust caller, and
/// the returned error unwinds the Lua stack. A `pcall` cannot swallow it: from now on every Lua
/// instruction raises it again, until the caller takes the exit ([`Runtime::take_exit`]).
pub(crate) fn exit_error(lua: &Lua, code: ExitCode) -> mlua::Error {
    if let Ok(Some(pending)) = lua.try_app_data_ref::<PendingExit>() {
        if pending.0.get().is_none() {
            pending.0.set(Some(code));
        }
    }
    lua.set_hook(
        mlua::HookTriggers::new().every_nth_instruction(1),
        |_, _| Err(mlua::Error::runtime("the daemon is exiting")),
    );
    mlua::Error::runtime("the daemon is exiting")
}

/// A Lua error in a hook is fatal (SPEC §6.5): logs the message, then one `Backtrace N :WHERE`
/// line per Lua stack level, and gives the exit code.
pub(crate) fn fatal_lua(e: &mlua::Error) -> ExitCode {
    log::error(format!("in Lua: {}", error_message(e)));
    if let Some(tb) = raw_traceback(e) {
        let levels = tb
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.starts_with("[C]"));
        for (i, line) in levels.enumerate() {
            log::error(format!("Backtrace {} :{}", i + 1, line));
        }
    }
    ExitCode::Fatal
}

fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(i) => Some(i.to_string().into_bytes()),
        Value::Number(n) => Some(lua_number_string(*n).into_bytes()),
        _ => None,
    }
}

/// Lua's own rendering of a float (`%.14g`, with `.0` for integral values).
fn lua_number_string(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{n:.1}")
    } else {
        format!("{n}")
    }
}

/// strerror(3)-style text of an I/O error, without Rust's "(os error N)" suffix.
fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Nil | Value::Boolean(false))
}

/// One run's Lua state with the core API and hooks registered.
pub(crate) struct Runtime {
    lua: Lua,
    hooks: Table,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runtime")
    }
}

impl Runtime {
    /// A fresh Lua state with all standard libraries, the core API, the prelude and the
    /// bundled layers loaded. No Lua code here reaches the core: the prelude and the layers
    /// only define functions.
    pub(crate) fn new(origin: std::time::Instant) -> anyhow::Result<Runtime> {
        let lua = sys::new_lua();
        lua.set_app_data(PendingExit(Cell::new(None)));
        loan::install(&lua, Core::new(origin));
        let api = register_api(&lua).map_err(|e| anyhow::anyhow!("{}", error_message(&e)))?;
        let hooks: Table = lua
            .load(PRELUDE)
            .set_name("@prelude.lua")
            .call(api)
            .map_err(|e| anyhow::anyhow!("prelude: {}", error_message(&e)))?;
        for (name, src) in LAYERS {
            lua.load(src)
                .set_name(name)
                .exec()
                .map_err(|e| anyhow::anyhow!("{}: {}", &name[1..], error_message(&e)))?;
        }
        Ok(Runtime { lua, hooks })
    }

    /// The exit a Lua callback asked for, if any; Lua code runs normally again afterwards.
    fn take_exit(&self) -> Option<ExitCode> {
        let code = self.lua.try_app_data_ref::<PendingExit>().ok()??.0.take()?;
        self.lua.remove_hook();
        Some(code)
    }

    /// A startup step, run with the core lent: the exit Lua asked for, or the step's error
    /// logged as fatal.
    fn startup<T>(
        &self,
        core: &mut Core,
        step: impl FnOnce(&Self) -> Result<T, String>,
    ) -> Result<T, ExitCode> {
        let r = loan::lend(&self.lua, core, || step(self)).and_then(|r| r);
        if let Some(code) = self.take_exit() {
            return Err(code);
        }
        r.map_err(|e| {
            log::error(e);
            ExitCode::Fatal
        })
    }

    /// Command-line settings that `sync{}` applies while the config runs.
    pub(crate) fn set_cli(
        &self,
        core: &mut Core,
        cli: &cli::Cli,
        first_run: bool,
    ) -> Result<(), ExitCode> {
        self.startup(core, |rt| rt.apply_cli(cli, first_run))
    }

    /// Runs a `-script` file (SPEC §1.2).
    pub(crate) fn run_script(&self, core: &mut Core, path: &OsStr) -> Result<(), ExitCode> {
        self.startup(core, |rt| rt.load_script(path))
    }

    /// Runs the config file (SPEC §1.6).
    pub(crate) fn run_config(&self, core: &mut Core, abs: &OsStr) -> Result<(), ExitCode> {
        self.startup(core, |rt| rt.load_config(abs))
    }

    /// Initialization after the config (SPEC §2.1 step 8 c–h): returns the merged settings.
    pub(crate) fn initialize(
        &self,
        core: &mut Core,
        shortcuts: &[cli::Shortcut],
    ) -> Result<config::Settings, ExitCode> {
        self.startup(core, |rt| rt.initialize_settings(shortcuts))
    }

    /// Command-line settings that `sync{}` applies while the config runs.
    fn apply_cli(&self, cli: &cli::Cli, first_run: bool) -> Result<(), String> {
        let t = self.lua.create_table().map_err(|e| error_message(&e))?;
        if let Some(d) = &cli.delay {
            let n: Option<f64> = std::str::from_utf8(d.as_bytes())
                .ok()
                .and_then(|s| s.trim().parse().ok());
            match n {
                Some(n) => t.set("delay", n).map_err(|e| error_message(&e))?,
                None => return Err(format!("-delay: '{}' is not a number", d.to_string_lossy())),
            }
        }
        let set = |k: &str, v: Value| t.set(k, v).map_err(|e| error_message(&e));
        if cli.insist {
            set("insist", Value::Boolean(true))?;
        }
        if cli.nodaemon {
            set("nodaemon", Value::Boolean(true))?;
        }
        if cli.onepass {
            set("onepass", Value::Boolean(true))?;
        }
        if let Some(f) = &cli.logfile {
            set("logfile", Value::String(self.bytes(f.as_bytes())?))?;
        }
        if let Some(f) = &cli.pidfile {
            set("pidfile", Value::String(self.bytes(f.as_bytes())?))?;
        }
        if let Some(m) = &cli.monitor {
            set("monitor", Value::String(self.bytes(m.as_bytes())?))?;
        }
        let f: Function = self.hooks.get("setCli").map_err(|e| error_message(&e))?;
        f.call::<()>((t, first_run)).map_err(|e| error_message(&e))
    }

    fn bytes(&self, b: &[u8]) -> Result<mlua::String, String> {
        self.lua.create_string(b).map_err(|e| error_message(&e))
    }

    /// Runs a `-script` file (SPEC §1.2).
    fn load_script(&self, path: &OsStr) -> Result<(), String> {
        log::with(b"Info", || {
            [b"Run addition script: ".as_slice(), path.as_bytes()].concat()
        });
        let code = std::fs::read(path)
            .map_err(|e| format!("Cannot open script '{}': {e}", path.to_string_lossy()))?;
        self.lua
            .load(&code[..])
            .set_name(format!("@{}", path.to_string_lossy()))
            .exec()
            .map_err(|e| {
                format!(
                    "error running script {}: {}",
                    path.to_string_lossy(),
                    error_message(&e)
                )
            })
    }

    /// Runs the config file (SPEC §1.6): syntax errors and runtime errors have upstream's
    /// texts.
    fn load_config(&self, abs: &OsStr) -> Result<(), String> {
        let name = abs.to_string_lossy();
        let code = std::fs::read(abs).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                return format!("Cannot find config file at '{name}'.");
            }
            // Lua's own text for a file it cannot read (upstream: luaL_loadfile), e.g. a
            // directory: `error loading D: cannot read D: Is a directory`.
            let reason = e.to_string();
            let reason = reason.split(" (os error").next().unwrap_or_default();
            format!("error loading {name}: cannot read {name}: {reason}")
        })?;
        let chunk = self.lua.load(&code[..]).set_name(format!("@{name}"));
        let f = chunk
            .into_function()
            .map_err(|e| format!("error loading {name}: {}", error_message(&e)))?;
        f.call::<()>(())
            .map_err(|e| format!("error preparing {name}: {}", error_message(&e)))
    }

    /// Initialization after the config (SPEC §2.1 step 8 c–h): returns the merged settings.
    fn initialize_settings(&self, shortcuts: &[cli::Shortcut]) -> Result<config::Settings, String> {
        let lua = &self.lua;
        let list = lua.create_table().map_err(|e| error_message(&e))?;
        for (i, s) in shortcuts.iter().enumerate() {
            let t = lua.create_table().map_err(|e| error_message(&e))?;
            let put = |k: &str, v: &OsString| -> Result<(), String> {
                t.set(k, self.bytes(v.as_bytes())?)
                    .map_err(|e| error_message(&e))
            };
            match s {
                cli::Shortcut::Rsync { source, target } => {
                    t.set("kind", "rsync").map_err(|e| error_message(&e))?;
                    put("source", source)?;
                    put("target", target)?;
                }
                cli::Shortcut::RsyncSsh {
                    source,
                    host,
                    targetdir,
                    sshopts,
                } => {
                    t.set("kind", "rsyncssh").map_err(|e| error_message(&e))?;
                    put("source", source)?;
                    put("host", host)?;
                    put("targetdir", targetdir)?;
                    if let Some(words) = sshopts {
                        let w = lua
                            .create_sequence_from(
                                words
                                    .iter()
                                    .map(|w| lua.create_string(w.as_bytes()))
                                    .collect::<mlua::Result<Vec<_>>>()
                                    .map_err(|e| error_message(&e))?,
                            )
                            .map_err(|e| error_message(&e))?;
                        t.set("sshopts", w).map_err(|e| error_message(&e))?;
                    }
                }
                cli::Shortcut::Direct { source, target } => {
                    t.set("kind", "direct").map_err(|e| error_message(&e))?;
                    put("source", source)?;
                    put("target", target)?;
                }
            }
            list.set(i + 1, t).map_err(|e| error_message(&e))?;
        }
        let f: Function = self
            .hooks
            .get("initialize")
            .map_err(|e| error_message(&e))?;
        let settings: Table = f.call(list).map_err(|e| error_message(&e))?;
        config::Settings::from_table(&settings)
    }

    /// Layer 3 translation of string actions (SPEC §8).
    pub(crate) fn translate(&self, core: &mut Core) -> Result<(), ExitCode> {
        self.call_hook::<()>(core, "translate", ())
    }

    /// Calls hook `name` with `core` lent for the call's duration.
    fn call_hook<R: mlua::FromLuaMulti>(
        &self,
        core: &mut Core,
        name: &str,
        args: impl mlua::IntoLuaMulti,
    ) -> Result<R, ExitCode> {
        let f: Function = self.hooks.get(name).map_err(|e| fatal_lua(&e))?;
        match loan::lend(&self.lua, core, || f.call::<R>(args)) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.take_exit().unwrap_or_else(|| fatal_lua(&e))),
            Err(e) => {
                log::error(e);
                Err(ExitCode::Fatal)
            }
        }
    }

    /// One line per sync for `-t` (source, target, delay).
    pub(crate) fn summary(&self, core: &mut Core) -> Result<Vec<u8>, ExitCode> {
        let s: mlua::String = self.call_hook(core, "summary", ())?;
        Ok(s.as_bytes().to_vec())
    }

    /// `config.init(event)` for an Init delay.
    pub(crate) fn call_init(
        &self,
        core: &mut Core,
        sid: usize,
        did: DelayId,
    ) -> Result<(), ExitCode> {
        self.call_hook::<()>(core, "init", (sid as i64, did.0 as i64))
    }

    /// `config.full(event)` for a Full delay.
    /// `collapsed`: the Full stands for pending changes that collapsed (`maxPending`).
    pub(crate) fn call_full(
        &self,
        core: &mut Core,
        sid: usize,
        did: DelayId,
        collapsed: bool,
    ) -> Result<(), ExitCode> {
        self.call_hook::<()>(core, "full", (sid as i64, did.0 as i64, collapsed))
    }

    /// `config.action(inlet)`.
    pub(crate) fn call_action(&self, core: &mut Core, sid: usize) -> Result<(), ExitCode> {
        self.call_hook::<()>(core, "action", sid as i64)
    }

    pub(crate) fn has_full(&self, core: &mut Core, sid: usize) -> Result<bool, ExitCode> {
        self.call_hook::<bool>(core, "hasFull", sid as i64)
    }

    /// `config.collect(agent, exitcode)`: what it returned.
    pub(crate) fn collect(
        &self,
        core: &mut Core,
        sid: usize,
        pid: libc::pid_t,
        code: i32,
    ) -> Result<Option<Vec<u8>>, ExitCode> {
        let rc: Option<mlua::String> =
            self.call_hook(core, "collect", (sid as i64, pid as i64, code as i64))?;
        Ok(rc.map(|s| s.as_bytes().to_vec()))
    }

    /// A child that is not collected (killed by a signal, or never started): its agent is
    /// dropped without asking the layer's `collect`.
    pub(crate) fn drop_agent(&self, core: &mut Core, pid: libc::pid_t) -> Result<(), ExitCode> {
        self.call_hook::<()>(core, "dropAgent", pid as i64)
    }

    /// Forgets the event tables of delays the core removed.
    pub(crate) fn forget_removed(&self, core: &mut Core) -> Result<(), ExitCode> {
        let removed = core.lua.take_forgotten();
        if removed.is_empty() {
            return Ok(());
        }
        let flat = removed
            .iter()
            .flat_map(|(sid, did)| [*sid as i64, did.0 as i64]);
        let t = self
            .lua
            .create_sequence_from(flat)
            .map_err(|e| fatal_lua(&e))?;
        self.call_hook::<()>(core, "forget", t)
    }

    /// Tunnels: start, watch, restart; hold syncs whose tunnel is down (SPEC §14.2).
    pub(crate) fn tunnel_tick(&self, core: &mut Core) -> Result<(), ExitCode> {
        self.call_hook::<()>(core, "tunnelTick", ())
    }

    /// A child no sync owns exited (a tunnel process, or one of `lsyncd.exec`).
    pub(crate) fn child_exit(
        &self,
        core: &mut Core,
        pid: libc::pid_t,
        code: i32,
    ) -> Result<(), ExitCode> {
        self.call_hook::<()>(core, "childExit", (pid as i64, code as i64))
    }

    /// SIGKILL for every tunnel process, at the end of a run.
    pub(crate) fn kill_tunnels(&self, core: &mut Core) {
        let _ = self.call_hook::<()>(core, "killTunnels", ());
    }

    /// The tunnel section of the status file.
    pub(crate) fn tunnel_status(&self, core: &mut Core) -> Vec<u8> {
        self.call_hook::<mlua::String>(core, "tunnelStatus", ())
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// An observed fd is ready: its `observefd` callbacks (SPEC §2.2).
    pub(crate) fn fd_ready(
        &self,
        core: &mut Core,
        fd: std::os::fd::RawFd,
        readable: bool,
        writable: bool,
    ) -> Result<(), ExitCode> {
        self.call_hook::<()>(core, "fdReady", (fd as i64, readable, writable))
    }

    pub(crate) fn run_alarms(&self, core: &mut Core) -> Result<(), ExitCode> {
        self.call_hook::<()>(core, "runAlarms", ())
    }
}

/// A malformed filter rule in the config is fatal with upstream's message (SPEC §2.9).
fn bad_filter(lua: &Lua, e: &crate::exclude::FilterError) -> mlua::Error {
    log::error(e.to_string());
    exit_error(lua, ExitCode::Fatal)
}

/// Reads one sync's config table into a [`SyncJob`] (SPEC §2.5 step 9).
fn sync_job(lua: &Lua, config: &Table) -> mlua::Result<SyncJob> {
    let name = config
        .get::<Value>("name")
        .ok()
        .and_then(|v| bytes_of(&v))
        .unwrap_or_default();
    let source: mlua::String = config.get("source")?;
    let mut excludes = config_excludes(lua, config)?;
    let delay = match config.get::<Value>("delay")? {
        Value::Nil => None,
        v => match num_of(&v) {
            Some(n) if n >= 0.0 => Some(n),
            _ => return Err(mlua::Error::runtime("delay must be a number and >= 0")),
        },
    };
    config_pattern_files(lua, config, &mut excludes)?;
    let crontab = config_crontab(lua, config, &name)?;
    let count = |key: &str, default: usize| config_count(config, key, default);
    let source_as_given = match config.get::<Value>("_source")? {
        Value::String(s) => s.as_bytes().to_vec(),
        _ => source.as_bytes().to_vec(),
    };
    let conf = SyncConf {
        source_as_given,
        delay,
        max_delays: count("maxDelays", 1000)?,
        max_processes: count("maxProcesses", 1)?,
        monitor: match config.get::<Value>("monitor")? {
            Value::String(m) => crate::watch::MonitorChoice::parse(&m.as_bytes()),
            _ => None,
        },
        takes: Takes {
            moves: truthy(&config.get::<Value>("onMove")?),
            subdirs: !matches!(config.get::<Value>("subdirs")?, Value::Boolean(false)),
            init: truthy(&config.get::<Value>("init")?),
            full: takes_full(lua, config)?,
        },
    };
    let source = source.as_bytes().to_vec();
    Ok(SyncJob::new(name, source, conf, excludes, crontab))
}

/// Whether a sync's config handles a Full event: a `full` function, or an `onFull` handler
/// reached through layer 2/3's `default.action`.
fn takes_full(lua: &Lua, config: &Table) -> mlua::Result<bool> {
    if let Value::Function(_) = config.get::<Value>("full")? {
        return Ok(true);
    }
    let default_action = lua
        .globals()
        .get::<Table>("default")?
        .get::<Value>("action")?;
    let on_full = matches!(config.get::<Value>("onFull")?, Value::Function(_));
    Ok(on_full && config.get::<Value>("action")? == default_action)
}

/// `filter` and `exclude` of a sync's config (SPEC §5.7).
fn config_excludes(lua: &Lua, config: &Table) -> mlua::Result<crate::exclude::Excludes> {
    let mut excludes = crate::exclude::Excludes::new();
    match config.get::<Value>("filter")? {
        Value::Nil => {}
        Value::String(s) => excludes
            .append_filter(&s.as_bytes())
            .map_err(|e| bad_filter(lua, &e))?,
        Value::Table(t) => {
            excludes.enable_filters();
            for v in t.sequence_values::<mlua::String>() {
                excludes
                    .append_filter(&v?.as_bytes())
                    .map_err(|e| bad_filter(lua, &e))?;
            }
        }
        _ => {
            return Err(mlua::Error::runtime(
                "type for filter must be table or string",
            ))
        }
    }
    match config.get::<Value>("exclude")? {
        Value::Nil => {}
        Value::String(s) => excludes.add_exclude(&s.as_bytes()),
        Value::Table(t) => {
            for v in t.sequence_values::<mlua::String>() {
                excludes.add_exclude(&v?.as_bytes());
            }
        }
        _ => {
            return Err(mlua::Error::runtime(
                "type for exclude must be table or string",
            ))
        }
    }
    Ok(excludes)
}

/// `filterFrom` and `excludeFrom`: a file that cannot be read is fatal (SPEC §5.7).
fn config_pattern_files(
    lua: &Lua,
    config: &Table,
    excludes: &mut crate::exclude::Excludes,
) -> mlua::Result<()> {
    if let Some(text) = read_pattern_file(lua, config, "filterFrom", "filter")? {
        excludes.enable_filters();
        excludes
            .load_filter_file(&text)
            .map_err(|e| bad_filter(lua, &e))?;
    }
    if let Some(text) = read_pattern_file(lua, config, "excludeFrom", "exclude")? {
        excludes.load_exclude_file(&text);
    }
    Ok(())
}

/// The contents of the file the config's `key` names, if it names one; one that cannot be read
/// is logged as "Cannot open `kind` file" and ends the daemon.
fn read_pattern_file(
    lua: &Lua,
    config: &Table,
    key: &str,
    kind: &str,
) -> mlua::Result<Option<Vec<u8>>> {
    let Some(f) = config.get::<Option<mlua::String>>(key)? else {
        return Ok(None);
    };
    let path = OsStr::from_bytes(&f.as_bytes()).to_os_string();
    match std::fs::read(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) => {
            log::error(format!(
                "Cannot open {kind} file \"{0}\": {0}: {1}",
                path.to_string_lossy(),
                strerror(&e)
            ));
            Err(exit_error(lua, ExitCode::Fatal))
        }
    }
}

/// `crontab` rules (SPEC §14.3): an invalid rule is fatal.
fn config_crontab(
    lua: &Lua,
    config: &Table,
    name: &[u8],
) -> mlua::Result<Vec<crate::crontab::CronRule>> {
    let mut crontab = Vec::new();
    if let Some(rules) = config.get::<Option<Table>>("crontab")? {
        for (i, rule) in rules.sequence_values::<mlua::String>().enumerate() {
            let rule = rule?;
            let text = String::from_utf8_lossy(&rule.as_bytes()).into_owned();
            match crate::crontab::parse(&text) {
                Ok(r) => crontab.push(r),
                Err(e) => {
                    log::error(format!(
                        "Sync: {} - crontab rule {} is not valid: {e} . Rule: {text}",
                        String::from_utf8_lossy(name),
                        i + 1
                    ));
                    return Err(exit_error(lua, ExitCode::Fatal));
                }
            }
        }
    }
    Ok(crontab)
}

/// A count setting (`maxDelays`, `maxProcesses`): at least 1, `default` when not a number.
fn config_count(config: &Table, key: &str, default: usize) -> mlua::Result<usize> {
    Ok(match config.get::<Value>(key)? {
        v @ (Value::Integer(_) | Value::Number(_)) => {
            let n = num_of(&v).unwrap_or(default as f64);
            if n < 1.0 {
                1
            } else if n > usize::MAX as f64 / 2.0 {
                usize::MAX / 2
            } else {
                n as usize
            }
        }
        _ => default,
    })
}
