//! lsyncd: the Live Syncing Mirror Daemon. Watches local trees with inotify, collects and
//! combines events for a few seconds, then runs rsync (or rsync+ssh, or cp/rm/mv, or the
//! config's own Lua actions) to bring mirrors up to date. Command line, config files, logs and
//! status file are those of lsyncd 2.3.1.
//!
//! `main` parses the command line and maps the outcome to an [`exit::ExitCode`]; the daemon
//! itself is `event_loop::run`; every exit goes through `shutdown::finish`.
#![deny(unsafe_code)]

mod cli;
mod config;
mod crontab;
mod daemon;
mod delay;
mod event_loop;
mod exclude;
mod exit;
mod explain;
mod health;
mod log;
mod lua_rt;
mod metrics;
mod monitor_start;
mod notify;
mod retry;
mod shutdown;
mod signals;
mod source_root;
mod spawn;
mod status;
mod sync;
mod sys;
mod watch;

use std::ffi::OsString;
use std::io::Write;

use exit::ExitCode;

fn main() {
    shutdown::install_panic_hook();
    shutdown::finish(run())
}

/// Everything up to the exit code; every way out of the process is through `shutdown::finish`.
fn run() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = match cli::parse(&argv) {
        Ok(cli) => cli,
        Err(exit) => {
            let (stream, text) = exit.output(env!("CARGO_PKG_VERSION"));
            let _ = match stream {
                cli::Stream::Stdout => std::io::stdout().write_all(text.as_bytes()),
                cli::Stream::Stderr => std::io::stderr().write_all(text.as_bytes()),
            };
            return exit.exit_code();
        }
    };
    for warning in &cli.warnings {
        println!("{warning}");
    }
    if let Err(e) = sys::ignore_sigpipe() {
        let _ = writeln!(std::io::stderr(), "Error: cannot ignore SIGPIPE: {e}");
        return ExitCode::Fatal;
    }
    log::configure_categories(&cli.log_categories);
    event_loop::run(&cli)
}
