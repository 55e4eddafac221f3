//! Logging: upstream's categories and levels (SPEC §12.3) and its destinations and line formats
//! (SPEC §12.4).
//!
//! Owns the one process-wide logger. Everything in the daemon logs through [`log`] with a
//! category name; the category decides the priority, the priority decides whether the message
//! is emitted and where. Messages are bytes: file names in them are never made lossy.
//!
//! Two phases, as upstream: while the configuration is read every message goes to stderr as
//! `Category: message`; once running, to the console (`HH:MM:SS Category: message`, errors on
//! stderr, the rest on stdout) while not daemonized, to the logfile (`<ctime> Category: message`)
//! when one is set, and to syslog when daemonized without a logfile.
//!
//! Under systemd (`JOURNAL_STREAM` names the device and inode of stderr) console lines go to
//! stderr as `<N>Category: message` with the syslog priority N (Error 3, Warn 4, Normal 5, any
//! other category 7) and no timestamp, so journald keeps the levels. A message of several lines
//! is sent to the journal's native socket as one entry; when that socket cannot be reached
//! every line gets the prefix.
//!
//! Upstream's trace categories (`Call`, `Function`, `Masterloop`, `Alarm`: what the main loop
//! does on every pass) are looked up once when the categories are set, so a trace point that
//! is off costs one thread-local load ([`traced`]).
//!
//! Must not touch: Lua, the event loop, any sync state.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use crate::sys;

/// syslog priorities (`<syslog.h>`), which upstream uses as category priorities.
const LOG_ERR: u8 = 3;
const LOG_WARNING: u8 = 4;
const LOG_NOTICE: u8 = 5;
const LOG_DEBUG: u8 = 7;
/// Priority of a category nobody enabled: shown only with `-log all`.
const DISABLED: u8 = 99;

#[derive(Debug)]
struct Logger {
    /// Messages with a category priority above this are dropped.
    level: u8,
    /// Categories enabled with `-log NAME` (priority LOG_NOTICE).
    enabled: HashMap<Vec<u8>, u8>,
    running: bool,
    /// Console output while not detached.
    console: bool,
    logfile: Option<OsString>,
    syslog: bool,
    /// stderr is the journal (`JOURNAL_STREAM` matches it).
    journal: bool,
    /// `SYSLOG_IDENTIFIER=` of native journal entries.
    ident: Vec<u8>,
}

thread_local! {
    static LOGGER: RefCell<Logger> = RefCell::new(Logger {
        level: LOG_NOTICE,
        enabled: HashMap::new(),
        running: false,
        console: true,
        logfile: None,
        syslog: false,
        journal: stderr_is_journal(),
        ident: b"lsyncd".to_vec(),
    });
}

/// Upstream's trace categories, logged on every pass of the main loop when enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trace {
    /// The loop hands a step to the runner: `configure( )`, `getAlarm( )`, `cycle( )`, ...
    Call = 1,
    /// A step starts, with its arguments: `cycle( TIME )`, `delay( SYNC, ETYPE, PATH, PATH2 )`.
    Function = 2,
    /// How long the loop sleeps.
    Masterloop = 4,
    /// The next wake-up and what asked for it.
    Alarm = 8,
}

impl Trace {
    const ALL: [Trace; 4] = [
        Trace::Call,
        Trace::Function,
        Trace::Masterloop,
        Trace::Alarm,
    ];

    fn name(self) -> &'static [u8] {
        match self {
            Trace::Call => b"Call",
            Trace::Function => b"Function",
            Trace::Masterloop => b"Masterloop",
            Trace::Alarm => b"Alarm",
        }
    }
}

thread_local! {
    /// The [`Trace`] categories that are on, as bits.
    static TRACED: Cell<u8> = const { Cell::new(0) };
}

/// Recomputes [`TRACED`] from the levels and categories.
fn update_traced(l: &Logger) {
    let bits = Trace::ALL
        .iter()
        .filter(|t| priority(l, t.name()) <= l.level)
        .fold(0, |bits, t| bits | *t as u8);
    TRACED.with(|c| c.set(bits));
}

/// Whether a trace category is on: one thread-local load.
#[inline]
pub(crate) fn traced(t: Trace) -> bool {
    TRACED.with(|c| c.get() & t as u8 != 0)
}

/// Logs a trace line; the message is only built when the category is on.
#[inline]
pub(crate) fn trace(t: Trace, build: impl FnOnce() -> Vec<u8>) {
    if traced(t) {
        log(t.name(), &build());
    }
}

/// `Call: NAME( )`: the loop hands a step to the runner (upstream's wording).
#[inline]
pub(crate) fn call(name: &str) {
    trace(Trace::Call, || format!("{name}( )").into_bytes());
}

/// `Function: Inotify.addWatch( DIR )`: a directory is about to be watched or judged.
pub(crate) fn trace_add_watch(dir: &[u8]) {
    trace(Trace::Function, || {
        [b"Inotify.addWatch( ".as_slice(), dir, b" )"].concat()
    });
}

/// `Function: delay( SYNC, ETYPE, PATH, PATH2 )`: an event reaches a sync (`(nil)` for no
/// PATH2).
pub(crate) fn trace_delay(sync: &[u8], etype: &str, path: &[u8], path2: Option<&[u8]>) {
    trace(Trace::Function, || {
        let parts: [&[u8]; 8] = [
            b"delay( ",
            sync,
            b", ",
            etype.as_bytes(),
            b", ",
            path,
            b", ",
            path2.unwrap_or(b"(nil)"),
        ];
        let mut m = parts.concat();
        m.extend_from_slice(b" )");
        m
    });
}

/// A time as the logs show timestamps: `(Timestamp: S)`, seconds since the run's origin to
/// the hundredth (the clock Lua's `now()` reads).
pub(crate) fn timestamp(origin: std::time::Instant, t: std::time::Instant) -> String {
    let secs = t.saturating_duration_since(origin).as_secs_f64();
    format!("(Timestamp: {})", (secs * 100.0).round() / 100.0)
}

/// Where systemd's journal takes native entries.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Whether `JOURNAL_STREAM` (`DEVICE:INODE`, set by systemd) names the file stderr is.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value
        .to_str()
        .and_then(|v| v.split_once(':'))
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
    else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        Err(_) => false,
    }
}

/// The priority journald gets for a category.
fn journal_priority(category: &[u8]) -> u8 {
    match category {
        b"Error" => LOG_ERR,
        b"Warn" => LOG_WARNING,
        b"Normal" => LOG_NOTICE,
        _ => LOG_DEBUG,
    }
}

/// One message as journal output: `<N>Category: message` on stderr, or one native entry for a
/// message of several lines.
fn to_journal(l: &Logger, category: &[u8], message: &[u8]) {
    let prio = journal_priority(category);
    let mut text = category.to_vec();
    text.extend_from_slice(b": ");
    text.extend_from_slice(message);
    if message.contains(&b'\n') && send_native(prio, &l.ident, &text) {
        return;
    }
    let mut out = Vec::with_capacity(text.len() + 8);
    for line in text.split(|b| *b == b'\n') {
        out.extend_from_slice(format!("<{prio}>").as_bytes());
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    let _ = std::io::stderr().write_all(&out);
}

/// Sends one entry over the journal's native protocol; `false` if it could not be sent.
fn send_native(prio: u8, ident: &[u8], message: &[u8]) -> bool {
    let mut d = format!("PRIORITY={prio}\nSYSLOG_IDENTIFIER=").into_bytes();
    d.extend(ident.iter().map(|b| if *b == b'\n' { b' ' } else { *b }));
    d.extend_from_slice(b"\nMESSAGE\n");
    d.extend_from_slice(&(message.len() as u64).to_le_bytes());
    d.extend_from_slice(message);
    d.push(b'\n');
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.send_to(&d, JOURNAL_SOCKET))
        .is_ok()
}

/// Applies the `-log` arguments of the command line, in order (SPEC §12.3).
pub(crate) fn configure_categories(categories: &[String]) {
    LOGGER.with(|l| {
        let mut l = l.borrow_mut();
        for c in categories {
            match c.as_str() {
                "all" => l.level = DISABLED,
                "scarce" => l.level = LOG_WARNING,
                other => {
                    l.enabled.insert(other.as_bytes().to_vec(), LOG_NOTICE);
                }
            }
        }
        update_traced(&l);
    });
}

/// Resets the levels and categories (a HUP restart re-parses the same command line).
#[cfg(test)]
pub(crate) fn reset_categories() {
    LOGGER.with(|l| {
        let mut l = l.borrow_mut();
        l.level = LOG_NOTICE;
        l.enabled.clear();
        update_traced(&l);
    });
}

/// Destinations for the running phase (SPEC §12.4). `daemon` means the console is gone.
pub(crate) fn start_running(
    logfile: Option<OsString>,
    daemon: bool,
    syslog_ident: &[u8],
    facility: i32,
) {
    LOGGER.with(|l| {
        let mut l = l.borrow_mut();
        l.running = true;
        l.console = !daemon;
        l.syslog = daemon && logfile.is_none();
        l.logfile = logfile;
        l.ident = syslog_ident.to_vec();
        if l.syslog {
            sys::openlog(syslog_ident, facility);
        }
    });
}

/// Back to the configuration phase, for a restart.
pub(crate) fn stop_running() {
    LOGGER.with(|l| l.borrow_mut().running = false);
}

fn priority(l: &Logger, category: &[u8]) -> u8 {
    match category {
        b"Error" => LOG_ERR,
        b"Warn" => LOG_WARNING,
        b"Normal" => LOG_NOTICE,
        other => l.enabled.get(other).copied().unwrap_or(DISABLED),
    }
}

/// Whether a message of this category would be emitted; lets callers skip building it.
pub(crate) fn enabled(category: &[u8]) -> bool {
    LOGGER.with(|l| {
        let l = l.borrow();
        priority(&l, category) <= l.level
    })
}

/// Logs `message` under `category`.
pub(crate) fn log(category: &[u8], message: &[u8]) {
    LOGGER.with(|l| {
        let l = l.borrow();
        let prio = priority(&l, category);
        if prio > l.level {
            return;
        }
        if !l.running {
            if l.journal {
                return to_journal(&l, category, message);
            }
            let mut line = Vec::with_capacity(category.len() + message.len() + 3);
            line.extend_from_slice(category);
            line.extend_from_slice(b": ");
            line.extend_from_slice(message);
            line.push(b'\n');
            let _ = std::io::stderr().write_all(&line);
            return;
        }
        let now = sys::local_time_now();
        if l.console && l.journal {
            to_journal(&l, category, message);
        } else if l.console {
            let mut line =
                format!("{:02}:{:02}:{:02} ", now.hour, now.minute, now.second).into_bytes();
            line.extend_from_slice(category);
            line.extend_from_slice(b": ");
            line.extend_from_slice(message);
            line.push(b'\n');
            if prio <= LOG_ERR {
                let _ = std::io::stderr().write_all(&line);
            } else {
                let _ = std::io::stdout().write_all(&line);
            }
        }
        if let Some(path) = &l.logfile {
            let mut line = now.ctime().into_bytes();
            line.push(b' ');
            line.extend_from_slice(category);
            line.extend_from_slice(b": ");
            line.extend_from_slice(message);
            line.push(b'\n');
            match OpenOptions::new().append(true).create(true).open(path) {
                Ok(mut f) => {
                    let _ = f.write_all(&line);
                }
                Err(_) => {
                    let mut msg = b"Cannot open logfile [".to_vec();
                    msg.extend_from_slice(path.as_bytes());
                    msg.extend_from_slice(b"]!\n");
                    let _ = std::io::stderr().write_all(&msg);
                    crate::shutdown::finish(crate::exit::ExitCode::Fatal);
                }
            }
        }
        if l.syslog {
            let mut line = category.to_vec();
            line.extend_from_slice(b", ");
            line.extend_from_slice(message);
            let p = if category == b"Exec" {
                LOG_DEBUG
            } else {
                prio.min(LOG_DEBUG)
            };
            sys::syslog(p, &line);
        }
    });
}

/// Logs an `Error` line.
pub(crate) fn error(message: impl AsRef<[u8]>) {
    log(b"Error", message.as_ref());
}

/// Logs a `Normal` line.
pub(crate) fn normal(message: impl AsRef<[u8]>) {
    log(b"Normal", message.as_ref());
}

/// Logs under any category; the message is only built when it will be emitted.
pub(crate) fn with(category: &[u8], build: impl FnOnce() -> Vec<u8>) {
    if enabled(category) {
        log(category, &build());
    }
}

/// Checks that a logfile can be opened, as upstream does when it switches to running.
pub(crate) fn check_logfile(path: &OsString) -> Result<(), String> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map(|_| ())
        .map_err(|_| format!("Cannot open logfile [{}]!", path.to_string_lossy()))
}

/// Parses a syslog facility name (SPEC §2.4 `logfacility`), case-insensitively.
pub(crate) fn facility(name: &[u8]) -> Option<i32> {
    let lower: Vec<u8> = name.to_ascii_lowercase();
    let code = match lower.as_slice() {
        b"auth" | b"security" => 4,
        b"authpriv" => 10,
        b"cron" => 9,
        b"daemon" => 3,
        b"ftp" => 11,
        b"kern" => 0,
        b"lpr" => 6,
        b"mail" => 2,
        b"news" => 7,
        b"syslog" => 5,
        b"user" => 1,
        b"uucp" => 8,
        b"mark" => 24,
        b"local0" => 16,
        b"local1" => 17,
        b"local2" => 18,
        b"local3" => 19,
        b"local4" => 20,
        b"local5" => 21,
        b"local6" => 22,
        b"local7" => 23,
        _ => return None,
    };
    Some(code << 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_level_shows_normal_warn_error_only() {
        reset_categories();
        assert!(enabled(b"Error"));
        assert!(enabled(b"Warn"));
        assert!(enabled(b"Normal"));
        assert!(!enabled(b"Exec"));
        assert!(!enabled(b"Delay"));
    }

    #[test]
    fn log_category_enables_it_and_scarce_hides_normal() {
        reset_categories();
        configure_categories(&["Exec".to_string()]);
        assert!(enabled(b"Exec"));
        configure_categories(&["scarce".to_string()]);
        assert!(!enabled(b"Normal"));
        assert!(!enabled(b"Exec"));
        assert!(enabled(b"Warn"));
        configure_categories(&["all".to_string()]);
        assert!(enabled(b"traceback"));
        reset_categories();
    }

    #[test]
    fn trace_categories_follow_the_levels() {
        reset_categories();
        assert!(Trace::ALL.iter().all(|t| !traced(*t)));
        configure_categories(&["Call".to_string(), "Alarm".to_string()]);
        assert!(traced(Trace::Call) && traced(Trace::Alarm));
        assert!(!traced(Trace::Function) && !traced(Trace::Masterloop));
        configure_categories(&["scarce".to_string()]);
        assert!(!traced(Trace::Call));
        configure_categories(&["all".to_string()]);
        assert!(Trace::ALL.iter().all(|t| traced(*t)));
        reset_categories();
        assert!(!traced(Trace::Masterloop));
    }

    #[test]
    fn timestamps_show_hundredths_since_the_origin() {
        let origin = std::time::Instant::now();
        let at = |ms| origin + std::time::Duration::from_millis(ms);
        assert_eq!(timestamp(origin, at(12_346)), "(Timestamp: 12.35)");
        assert_eq!(timestamp(origin, at(5_000)), "(Timestamp: 5)");
        assert_eq!(timestamp(at(10), origin), "(Timestamp: 0)");
    }

    #[test]
    fn facility_names_are_case_insensitive() {
        assert_eq!(facility(b"DAEMON"), Some(3 << 3));
        assert_eq!(facility(b"local7"), Some(23 << 3));
        assert_eq!(facility(b"bogus"), None);
    }
}
