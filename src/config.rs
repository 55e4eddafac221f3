//! Typed settings read from the Lua `settings{}` table after initialization (SPEC §2.4).
//!
//! Owns the mapping from upstream's camelCase keys to Rust fields and the checks that upstream
//! makes when it starts running (`logfacility`). The per-sync keys are read in `lua_rt`
//! (`sync_job`), where the config table lives.
//!
//! Must not touch: the file system, the poll loop, Lua beyond reading the table it is given.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use mlua::{Table, Value};

use crate::log;
use crate::watch::{MonitorChoice, MONITOR_NAMES};

/// The settings of one run, CLI values already merged over the config's.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub(crate) logfile: Option<OsString>,
    pub(crate) pidfile: Option<OsString>,
    pub(crate) nodaemon: bool,
    pub(crate) onepass: bool,
    pub(crate) status_file: Option<OsString>,
    /// Seconds; 0 writes on every cycle.
    pub(crate) status_interval: f64,
    /// syslog facility code (already shifted), `user` by default.
    pub(crate) logfacility: i32,
    pub(crate) logident: Vec<u8>,
    /// Startup transfers that fail temporarily are retried (SPEC §13.6).
    pub(crate) insist: bool,
    /// Raw `inotifyMode`; validated when the first watch is added (SPEC §2.9).
    pub(crate) inotify_mode: Option<Vec<u8>>,
    pub(crate) max_processes: Option<usize>,
    /// `monitor` (`-monitor` or `settings{}`): the monitor of syncs that name none.
    pub(crate) monitor: Option<MonitorChoice>,
    /// `statusFormat`: upstream's text or JSON.
    pub(crate) status_format: crate::status::StatusFormat,
    /// `metricsFile`: Prometheus text rewritten with the status file.
    pub(crate) metrics_file: Option<OsString>,
    /// `metricsListen`: where `GET /metrics` is served.
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
    /// `maxBackoff`: the longest wait between two attempts of a failing sync, in seconds.
    pub(crate) max_backoff: f64,
    /// `maxPending`: pending changes of one sync above which they collapse into one full
    /// transfer.
    pub(crate) max_pending: usize,
    /// `stopGrace`: how long a fading run waits for its children before it signals them;
    /// `None` (math.huge) waits for ever, as upstream.
    pub(crate) stop_grace: Option<std::time::Duration>,
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Nil | Value::Boolean(false))
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(i) => Some(i.to_string().into_bytes()),
        Value::Number(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        Value::String(s) => std::str::from_utf8(&s.as_bytes()).ok()?.trim().parse().ok(),
        _ => None,
    }
}

impl Settings {
    /// Reads the merged settings table; an unknown `logfacility` is an error with upstream's
    /// text.
    pub(crate) fn from_table(t: &Table) -> Result<Settings, String> {
        let get = |k: &str| t.get::<Value>(k).unwrap_or(Value::Nil);
        let path = |k: &str| bytes(&get(k)).map(OsString::from_vec);
        let logfacility = match bytes(&get("logfacility")) {
            None => 1 << 3,
            Some(name) => log::facility(&name).ok_or_else(|| {
                format!(
                    "Logging facility '{}' unknown.",
                    String::from_utf8_lossy(&name)
                )
            })?,
        };
        let status_format = match bytes(&get("statusFormat")) {
            None => crate::status::StatusFormat::Text,
            Some(v) => crate::status::StatusFormat::parse(&v)?,
        };
        let metrics_listen = match get("metricsListen") {
            Value::Nil => None,
            v => {
                let text = bytes(&v).unwrap_or_default();
                let addr = std::str::from_utf8(&text)
                    .ok()
                    .and_then(|t| t.parse::<std::net::SocketAddr>().ok());
                Some(addr.ok_or_else(|| {
                    format!(
                        "settings.metricsListen: expected an address and port such as \
                         \"127.0.0.1:9101\", got \"{}\"",
                        String::from_utf8_lossy(&text)
                    )
                })?)
            }
        };
        let monitor = match bytes(&get("monitor")) {
            None => None,
            Some(name) => Some(MonitorChoice::parse(&name).ok_or_else(|| {
                format!(
                    "settings: monitor \"{}\" unknown (known: {}).",
                    String::from_utf8_lossy(&name),
                    MONITOR_NAMES.join(", ")
                )
            })?),
        };
        Ok(Settings {
            monitor,
            status_format,
            metrics_file: path("metricsFile"),
            metrics_listen,
            logfile: path("logfile"),
            pidfile: path("pidfile"),
            nodaemon: truthy(&get("nodaemon")),
            onepass: truthy(&get("onepass")),
            status_file: path("statusFile"),
            status_interval: number(&get("statusInterval")).unwrap_or(10.0).max(0.0),
            logfacility,
            logident: bytes(&get("logident")).unwrap_or_else(|| b"lsyncd".to_vec()),
            insist: truthy(&get("insist")),
            inotify_mode: bytes(&get("inotifyMode")),
            max_processes: number(&get("maxProcesses"))
                .filter(|n| *n >= 1.0)
                .map(|n| n.min(1e9) as usize),
            max_pending: number(&get("maxPending"))
                .filter(|n| *n >= 1.0)
                .map_or(crate::sync::DEFAULT_MAX_PENDING, |n| n.min(1e12) as usize),
            max_backoff: number(&get("maxBackoff"))
                .filter(|n| n.is_finite() && *n >= 1.0)
                .unwrap_or(crate::retry::DEFAULT_MAX_BACKOFF),
            stop_grace: match number(&get("stopGrace")) {
                Some(n) if n.is_nan() || n < 0.0 => None,
                n => std::time::Duration::try_from_secs_f64(
                    n.unwrap_or(crate::shutdown::DEFAULT_STOP_GRACE),
                )
                .ok(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_of(code: &str) -> Result<Settings, String> {
        let lua = mlua::Lua::new();
        let t: Table = lua.load(code).eval().expect("table");
        Settings::from_table(&t)
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let s = settings_of("return {}").expect("settings");
        assert_eq!(s.logfacility, 1 << 3);
        assert_eq!(s.logident, b"lsyncd");
        assert_eq!(s.status_interval, 10.0);
        assert!(!s.nodaemon && s.max_processes.is_none());
        assert_eq!(s.stop_grace, Some(std::time::Duration::from_secs(60)));
    }

    #[test]
    fn stop_grace_of_math_huge_waits_for_ever() {
        let s = settings_of("return { stopGrace = math.huge }").expect("settings");
        assert_eq!(s.stop_grace, None);
        let s = settings_of("return { stopGrace = 0.5 }").expect("settings");
        assert_eq!(s.stop_grace, Some(std::time::Duration::from_millis(500)));
    }

    #[test]
    fn keys_map_to_fields() {
        let s = settings_of(
            "return { logfile='/l', statusFile='/s', statusInterval=0, nodaemon=true, \
             maxProcesses=4, logfacility='DAEMON', logident='x' }",
        )
        .expect("settings");
        assert_eq!(s.logfile, Some(OsString::from("/l")));
        assert_eq!(s.status_file, Some(OsString::from("/s")));
        assert_eq!(s.status_interval, 0.0);
        assert!(s.nodaemon);
        assert_eq!(s.max_processes, Some(4));
        assert_eq!(s.logfacility, 3 << 3);
        assert_eq!(s.logident, b"x");
    }

    #[test]
    fn observability_keys_are_parsed_and_bad_values_name_the_key() {
        let s = settings_of(
            "return { statusFormat='json', metricsFile='/m', metricsListen='127.0.0.1:9101' }",
        )
        .expect("settings");
        assert_eq!(s.status_format, crate::status::StatusFormat::Json);
        assert_eq!(s.metrics_file, Some(OsString::from("/m")));
        assert_eq!(
            s.metrics_listen,
            Some("127.0.0.1:9101".parse().expect("addr"))
        );
        let e = settings_of("return { metricsListen='localhost' }").expect_err("error");
        assert!(e.starts_with("settings.metricsListen: "), "{e}");
        let e = settings_of("return { metricsListen=9101 }").expect_err("error");
        assert!(e.contains("\"9101\""), "{e}");
        let e = settings_of("return { statusFormat='xml' }").expect_err("error");
        assert!(e.starts_with("settings.statusFormat: "), "{e}");
    }

    #[test]
    fn monitor_names_parse_and_an_unknown_one_is_an_error_naming_it() {
        let s = settings_of("return { monitor='auto' }").expect("settings");
        assert_eq!(s.monitor, Some(MonitorChoice::Auto));
        assert_eq!(settings_of("return {}").expect("settings").monitor, None);
        let e = settings_of("return { monitor='fsevents' }").expect_err("error");
        assert_eq!(
            e,
            "settings: monitor \"fsevents\" unknown (known: inotify, fanotify, auto)."
        );
    }

    #[test]
    fn unknown_facility_is_an_error_naming_it() {
        let e = settings_of("return { logfacility='nope' }").expect_err("error");
        assert_eq!(e, "Logging facility 'nope' unknown.");
    }
}
