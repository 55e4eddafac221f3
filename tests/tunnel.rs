//! `tunnel{}` (SPEC §14.2) end to end, on loopback only: a real `rsync --daemon` on 127.0.0.1,
//! the private sshd of `util::sshd`, and real `ssh -N -L` port forwards started by lsyncd as
//! tunnel processes. Checked: a sync's actions (the startup rsync included) are held while its
//! tunnel is not up and delivered once it is; `^localhost` / `^localport` substitution in the
//! target and (pool mode) in the tunnel command; round robin over two pool processes; a killed
//! tunnel process is restarted without losing changes; tunnel processes die with lsyncd; a
//! tunnel that never comes up holds the sync forever without stopping the daemon.
//!
//! Tunnel processes are found as the daemon's children in `/proc` (`ppid` = daemon pid,
//! `comm` = `ssh`). A guard SIGKILLs every process left with the test's tunnel command (found
//! by a marker argument: the test's private ssh key, or a unique `sleep` duration) at the end,
//! so a failing test does not leave tunnels running.
//!
//! Against upstream 2.2.3 (`LSYNCD_BIN=/usr/bin/lsyncd`) every test here fails: `tunnel` is
//! a 2.3 global.

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::sshd::{free_port, Sshd, HOST};
use crate::util::{
    lua_str, rsync_path, send_signal, tree_diff, wait_until, Daemon, TestDir, Then, TIMEOUT,
};

// ---------------------------------------------------------------------------------------------
// rsync daemon

/// `rsync --daemon --no-detach` on 127.0.0.1 serving module `m` = the test dir's `dst/`
/// (writable, no chroot, as the current user), with its config, pid file and log in the test
/// dir's root. Killed on drop.
struct RsyncDaemon {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

/// `Uid:`/`Gid:` (real id) of this process, from `/proc/self/status`.
fn own_id(field: &str) -> String {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
        .to_owned()
}

impl RsyncDaemon {
    fn start(dir: &TestDir) -> RsyncDaemon {
        let conf = dir.config(
            "rsyncd.conf",
            &format!(
                "use chroot = no\n\
                 pid file = {root}/rsyncd.pid\n\
                 [m]\n\
                 \tpath = {dst}\n\
                 \tread only = false\n\
                 \tuid = {uid}\n\
                 \tgid = {gid}\n",
                root = dir.path_str(""),
                dst = dir.path_str("dst"),
                uid = own_id("Uid:"),
                gid = own_id("Gid:"),
            ),
        );
        let log = dir.path("rsyncd.log");
        for _attempt in 0..10 {
            let port = free_port();
            let _ = fs::remove_file(dir.path("rsyncd.pid"));
            let child = Command::new(rsync_path())
                .args(["--daemon", "--no-detach", "--address", HOST, "--port"])
                .arg(port.to_string())
                .arg("--config")
                .arg(&conf)
                .arg("--log-file")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start rsync --daemon: {e}"));
            let mut d = RsyncDaemon {
                child: Some(child),
                port,
                log: log.clone(),
            };
            let mut up = false;
            wait_until(TIMEOUT, || {
                up = rsyncd_greets(port);
                up || d.exited()
            });
            if up && !d.exited() {
                return d;
            }
            d.stop(); // most likely the port was taken in the meantime: try another one
        }
        panic!(
            "rsync --daemon did not come up on 127.0.0.1\n--- rsyncd log ---\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RsyncDaemon {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- rsyncd log (port {}) ---\n{}",
                self.port,
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// True if something on 127.0.0.1:PORT greets like an rsync daemon (`@RSYNCD:`).
fn rsyncd_greets(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect((HOST, port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf).is_ok() && &buf == b"@RSYNCD:"
}

// ---------------------------------------------------------------------------------------------
// Processes in /proc

/// One line of `/proc/PID/stat`, the fields the tests need.
#[derive(Clone, Debug)]
struct Proc {
    pid: u32,
    ppid: u32,
    comm: String,
    state: char,
}

fn read_proc(pid: u32) -> Option<Proc> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Proc {
        pid,
        ppid,
        comm,
        state,
    })
}

/// Live (not zombie) processes named `comm` whose parent is `ppid`, sorted by pid.
fn children_named(ppid: u32, comm: &str) -> Vec<u32> {
    let mut out: Vec<u32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(read_proc)
                .filter(|p| p.ppid == ppid && p.comm == comm && p.state != 'Z')
                .map(|p| p.pid)
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// True while `pid` is a live (not zombie) process named `comm`. An orphan whose new parent
/// does not reap it stays a zombie, which counts as gone.
fn alive(pid: u32, comm: &str) -> bool {
    read_proc(pid).is_some_and(|p| p.comm == comm && p.state != 'Z')
}

/// The argv of a process, from `/proc/PID/cmdline`.
fn cmdline(pid: u32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut v: Vec<String> = raw
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    v.pop(); // after the last NUL
    v
}

/// The tunnel processes of one test: named `comm`, with `marker` (a path or word unique to the
/// test) among their arguments. On drop every live one is SIGKILLed, wherever it ended up, so
/// that a failing test (or a daemon that leaves them behind) leaves no tunnel running.
struct Tunnels {
    comm: &'static str,
    marker: String,
}

impl Tunnels {
    fn new(comm: &'static str, marker: impl Into<String>) -> Tunnels {
        Tunnels {
            comm,
            marker: marker.into(),
        }
    }

    /// The daemon's live tunnel children now.
    fn of(&self, daemon_pid: u32) -> Vec<u32> {
        children_named(daemon_pid, self.comm)
    }

    /// True while `pid` is still a live tunnel process.
    fn alive(&self, pid: u32) -> bool {
        alive(pid, self.comm)
    }

    /// Waits until the daemon has exactly `n` live tunnel children, none of them in `old`
    /// (restarted ones), and returns their pids; fails with the log otherwise.
    fn wait(&self, d: &mut Daemon, n: usize, old: &[u32]) -> Vec<u32> {
        let daemon_pid = d.pid();
        let mut pids = Vec::new();
        d.wait_for(
            &format!(
                "{n} {} tunnel process(es) as children of lsyncd, none of {old:?}",
                self.comm
            ),
            || {
                pids = self.of(daemon_pid);
                pids.len() == n && pids.iter().all(|p| !old.contains(p))
            },
        );
        pids
    }
}

impl Drop for Tunnels {
    fn drop(&mut self) {
        let Ok(rd) = fs::read_dir("/proc") else {
            return;
        };
        for pid in rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
            if alive(pid, self.comm) && cmdline(pid).iter().any(|a| a.contains(&self.marker)) {
                send_signal(pid, "KILL");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Config pieces

/// The ssh tunnel command as a Lua argv array: `ssh -N -L FORWARD` to the private sshd, with
/// the options that make it non-interactive and fail when the forward cannot be set up.
fn ssh_tunnel_argv(sshd: &Sshd, forward: &str) -> String {
    let key = sshd.key();
    let key = key.to_str().expect("temp path is UTF-8");
    let port = sshd.port().to_string();
    let args = [
        "ssh",
        "-N",
        "-L",
        forward,
        "-p",
        &port,
        "-i",
        key,
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "LogLevel=ERROR",
        HOST,
    ];
    let quoted: Vec<String> = args.iter().map(lua_str).collect();
    format!("{{ {} }}", quoted.join(", "))
}

/// True if `root/dst` has no entries at all.
fn dst_is_empty(dir: &TestDir) -> bool {
    fs::read_dir(dir.dst()).is_ok_and(|mut rd| rd.next().is_none())
}

/// Port in `rsync://127.0.0.1:PORT/m/`, or `None` for anything else (e.g. an unsubstituted
/// `^localport`).
fn target_port(target: &str) -> Option<u16> {
    target
        .strip_prefix("rsync://127.0.0.1:")?
        .strip_suffix("/m/")?
        .parse()
        .ok()
}

/// Local port of a `-L LPORT:...` argument in an ssh argv.
fn forward_port(argv: &[String]) -> Option<u16> {
    let i = argv.iter().position(|a| a == "-L")?;
    argv.get(i + 1)?.split(':').next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Command mode through `ssh -N -L LPORT:127.0.0.1:RPORT`: held while sshd is down (the ssh
/// tunnel keeps failing and is retried), delivered once the tunnel is up; a SIGKILLed tunnel
/// process is restarted and changes made meanwhile arrive; the tunnel dies with lsyncd.
#[test]
fn command_tunnel_holds_until_up_survives_a_killed_tunnel_and_dies_with_lsyncd() {
    rsync_path();
    let dir = TestDir::new();
    let rsyncd = RsyncDaemon::start(&dir);
    // Start once and stop: a restart keeps the port the config names.
    let mut sshd = Sshd::started();
    sshd.stop();
    let lport = free_port();
    dir.write("src/before/a.txt", "made before the daemon started\n");
    dir.write("src/before/sub/b.txt", "b\n");

    let config = dir.config(
        "tunnel.lua",
        &format!(
            "local t = tunnel{{\n  command = {},\n  readyDelay = 1,\n  retryDelay = 1,\n  \
             localhost = '127.0.0.1',\n}}\n\
             sync{{ default.rsync, source = {}, target = 'rsync://^localhost:{lport}/m/',\n  \
             delay = 1, tunnel = t }}\n",
            ssh_tunnel_argv(&sshd, &format!("{lport}:127.0.0.1:{}", rsyncd.port)),
            lua_str(dir.path_str("src")),
        ),
    );
    let tunnels = Tunnels::new("ssh", sshd.key().to_str().expect("UTF-8"));
    let mut d = Daemon::config(&dir, &config, &["-log", "Exec", "-log", "Tunnel"]);

    // sshd is down: every ssh attempt fails, the tunnel never comes up, nothing is transferred
    // (not even the startup rsync), also not changes made while the daemon runs.
    dir.write("src/held/c.txt", "made while the tunnel was down\n");
    let leaked = wait_until(Duration::from_secs(3), || {
        !dst_is_empty(&dir) || d.try_exit().is_some()
    });
    assert!(
        !leaked,
        "while the tunnel could not come up, the daemon {} (dst: {:?})\n--- log ---\n{}",
        if d.status().is_some() {
            "exited"
        } else {
            "transferred files"
        },
        tree_diff(&dir.src(), &dir.dst()),
        d.log()
    );

    // Tunnel possible now: everything arrives through it.
    sshd.start();
    d.wait_trees_equal(&dir.src(), &dir.dst());
    // The startup rsync must have ended before the tunnel is killed: an interrupted startup
    // without `insist` ends the daemon (SPEC §6.6, §9.8), which is not what this test is about.
    d.wait_startup();
    let first = tunnels.wait(&mut d, 1, &[]);
    let argv = cmdline(first[0]);
    assert_eq!(forward_port(&argv), Some(lport), "tunnel command: {argv:?}");

    // Kill the tunnel mid-run and change things right away: restarted, nothing lost.
    send_signal(first[0], "KILL");
    dir.write(
        "src/after/x1.txt",
        "made right after the tunnel was killed\n",
    );
    dir.write(
        "src/before/a.txt",
        "modified right after the tunnel was killed\n",
    );
    dir.remove("src/before/sub/b.txt");
    let second = tunnels.wait(&mut d, 1, &first);
    dir.write("src/after/x2.txt", "made after the restart\n");
    d.wait_trees_equal(&dir.src(), &dir.dst());

    // At exit the tunnel process is killed.
    let live = tunnels.of(d.pid());
    assert_eq!(live, second, "tunnel processes before TERM");
    d.terminate();
    let gone = wait_until(TIMEOUT, || !live.iter().any(|&p| tunnels.alive(p)));
    assert!(
        gone,
        "ssh tunnel process(es) {live:?} still alive after lsyncd exited\n--- log ---\n{}",
        d.log()
    );
}

/// Pool mode, parallel = 2: each ssh gets its own `^localport` in its `-L`, the rsyncs'
/// targets use those ports (substituted, never the literal `^localport`), alternating round
/// robin, and the trees converge.
#[test]
fn pool_tunnel_gives_two_local_ports_used_round_robin() {
    rsync_path();
    let dir = TestDir::new();
    let rsyncd = RsyncDaemon::start(&dir);
    let sshd = Sshd::started();
    let rec = dir.recorder(Then::ExecRsync);
    dir.write("src/start/a.txt", "startup\n");

    let config = dir.config(
        "pool.lua",
        &format!(
            "local t = tunnel{{\n  mode = 'pool',\n  parallel = 2,\n  command = {},\n  \
             readyDelay = 1,\n  retryDelay = 1,\n}}\n\
             sync{{ default.rsync, source = {}, target = 'rsync://127.0.0.1:^localport/m/',\n  \
             delay = 1, maxProcesses = 2, tunnel = t, rsync = {{ binary = {} }} }}\n",
            ssh_tunnel_argv(&sshd, &format!("^localport:127.0.0.1:{}", rsyncd.port)),
            lua_str(dir.path_str("src")),
            rec.lua(),
        ),
    );
    let tunnels = Tunnels::new("ssh", sshd.key().to_str().expect("UTF-8"));
    let mut d = Daemon::config(&dir, &config, &["-log", "Exec", "-log", "Tunnel"]);

    // Startup through the tunnel.
    rec.wait_calls(&mut d, 1);
    d.wait_trees_equal(&dir.src(), &dir.dst());

    // Two bursts, each delivered before the next: at least two running-mode rsyncs.
    for i in 0..5 {
        dir.write(
            format!("src/burst1/f{i}.txt"),
            format!("burst 1 file {i}\n"),
        );
    }
    rec.wait_calls(&mut d, 2);
    d.wait_trees_equal(&dir.src(), &dir.dst());
    for i in 0..5 {
        dir.write(
            format!("src/burst2/f{i}.txt"),
            format!("burst 2 file {i}\n"),
        );
    }
    dir.write("src/start/a.txt", "startup, modified in burst 2\n");
    rec.wait_calls(&mut d, 3);
    d.wait_trees_equal(&dir.src(), &dir.dst());

    // The two tunnel processes and their local ports.
    let pids = tunnels.wait(&mut d, 2, &[]);
    let mut tunnel_ports: Vec<u16> = pids
        .iter()
        .map(|&p| {
            let argv = cmdline(p);
            forward_port(&argv)
                .unwrap_or_else(|| panic!("tunnel {p} has no numeric -L port: {argv:?}"))
        })
        .collect();
    tunnel_ports.sort_unstable();
    tunnel_ports.dedup();
    assert_eq!(
        tunnel_ports.len(),
        2,
        "the two pool processes must get distinct ^localport values: {pids:?}"
    );

    // Every rsync's target: one of the two ports; the running calls alternate.
    let calls = rec.calls();
    let ports: Vec<u16> = calls
        .iter()
        .map(|c| {
            let args = c.args();
            let target = args.last().cloned().unwrap_or_default();
            let port = target_port(&target)
                .unwrap_or_else(|| panic!("rsync target not substituted: {args:?}"));
            assert!(
                tunnel_ports.contains(&port),
                "rsync target port {port} is none of the tunnel ports {tunnel_ports:?}: {args:?}"
            );
            port
        })
        .collect();
    let running = &ports[1..];
    assert!(
        running.windows(2).all(|w| w[0] != w[1]),
        "running rsyncs must alternate over the two tunnel ports (round robin): ports per call \
         {ports:?} (first = startup)\n--- log ---\n{}",
        d.log()
    );
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct, tunnel_ports, "ports per call: {ports:?}");
}

/// A tunnel that never comes up (`false` exits at once): the startup rsync never runs, the
/// tunnel is retried (warning `Starting tunnel failed.`), the daemon keeps running.
#[test]
fn sync_behind_a_tunnel_that_never_comes_up_is_held_and_the_daemon_keeps_running() {
    let dir = TestDir::new();
    let rec = dir.recorder(Then::Exit(0));
    dir.write("src/a.txt", "never transferred\n");
    let config = dir.config(
        "down.lua",
        &format!(
            "sync{{ default.rsync, source = {}, target = {}, delay = 1,\n  \
             rsync = {{ binary = {} }},\n  \
             tunnel = tunnel{{ command = {{ 'false' }}, retryDelay = 1, readyDelay = 1 }} }}\n",
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
            rec.lua(),
        ),
    );
    // `Warning` (2.3's tunnel warnings) is not enabled by default (SPEC §12.3).
    let mut d = Daemon::config(
        &dir,
        &config,
        &["-log", "Exec", "-log", "Tunnel", "-log", "Warning"],
    );
    dir.write("src/b.txt", "made while running\n");

    let changed = wait_until(Duration::from_secs(3), || {
        !rec.calls().is_empty() || d.try_exit().is_some()
    });
    assert!(
        !changed,
        "with the tunnel down: recorded calls {:?}, daemon exit {:?}\n--- log ---\n{}",
        rec.calls(),
        d.status(),
        d.log()
    );
    // It keeps retrying (SPEC §14.2: RETRY_TIMEOUT, then start again with a warning).
    d.wait_log_count("Starting tunnel failed", 2);
    assert!(rec.calls().is_empty(), "rsync ran: {:?}", rec.calls());
    assert!(d.try_exit().is_none(), "daemon exited\n{}", d.log());
    assert!(dst_is_empty(&dir));
}

/// A fatal exit (the startup rsync fails with an `again` code and `insist` is not set, SPEC
/// §9.8) also kills the tunnel processes (SPEC §14.2). The tunnel is a long `sleep`.
#[test]
fn fatal_exit_kills_the_tunnel_processes() {
    let dir = TestDir::new();
    let rec = dir.recorder(Then::Exit(12));
    // A sleep argument no other process has: the guard's marker.
    let marker = format!("86400.{}{}", std::process::id(), free_port());
    let config = dir.config(
        "fatal.lua",
        &format!(
            "sync{{ default.rsync, source = {}, target = {}, delay = 1,\n  \
             rsync = {{ binary = {} }},\n  \
             tunnel = tunnel{{ command = {{ 'sleep', {} }}, readyDelay = 1, retryDelay = 1 }} }}\n",
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
            rec.lua(),
            lua_str(&marker),
        ),
    );
    let tunnels = Tunnels::new("sleep", marker);
    let mut d = Daemon::config(&dir, &config, &["-log", "Exec", "-log", "Tunnel"]);
    let live = tunnels.wait(&mut d, 1, &[]);
    let code = d.wait_exit(TIMEOUT);
    assert_eq!(
        code,
        Some(255),
        "startup rsync exit 12 without insist must end the daemon\n--- log ---\n{}",
        d.log()
    );
    assert_eq!(rec.calls().len(), 1, "the startup rsync ran once");
    let gone = wait_until(Duration::from_secs(5), || {
        !live.iter().any(|&p| tunnels.alive(p))
    });
    assert!(
        gone,
        "tunnel process(es) {live:?} still alive after lsyncd exited with 255\n--- log ---\n{}",
        d.log()
    );
}
