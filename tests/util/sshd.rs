//! A private `sshd` for the rsyncssh tests: listens on 127.0.0.1 on a free port, with its own
//! host key, user key and authorized_keys in a temp dir, so `ssh 127.0.0.1` reaches it as the
//! current user without touching `~/.ssh` or `/etc/ssh`.
//!
//! Owns: `Sshd` (prepare keys and config; start, stop, restart on the same port; SIGTERM on
//! drop), the client-side settings pointing at it (`ssh{}` table, `-sshopts` string), and
//! `SshRecorder` (an `ssh` wrapper that records each call's argv and then execs the real ssh).
//! Must not touch: the system's sshd, `~/.ssh`, `/etc/ssh`, any process it did not start.
//! The one system change is `mkdir -p /run/sshd`, the privilege separation directory every
//! sshd requires.
//!
//! Test speed: sshd runs each session through the user's login shell, and a non-interactive
//! bash started by sshd reads `~/.bashrc` (Debian builds bash that way), which on developer
//! machines can cost most of a second per connection. `SetEnv SHLVL=1` makes that bash count
//! itself as nested and skip the file; remote commands still go through the same shell and
//! its quoting. `KexAlgorithms curve25519-sha256` avoids the slower default post-quantum kex.
//! Neither changes what is tested: how lsyncd's layers drive ssh and rsync.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{lua_str, send_signal, wait_until, TestDir, TIMEOUT};

/// The sshd binary (Debian/Ubuntu path; `make deps` installs openssh-server).
pub const SSHD: &str = "/usr/sbin/sshd";

/// Host name the tests give lsyncd: sshd listens on 127.0.0.1 only.
pub const HOST: &str = "127.0.0.1";

fn require_tools() {
    if !Path::new(SSHD).is_file() {
        panic!(
            "{SSHD} not found: the rsyncssh tests run their own sshd on 127.0.0.1. \
             Install openssh-server and openssh-client (`make deps`) and run again."
        );
    }
    let has_ssh = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("ssh").is_file()));
    if !has_ssh {
        panic!(
            "ssh not found in PATH: the rsyncssh tests need the OpenSSH client. \
             Install openssh-client (`make deps`) and run again."
        );
    }
}

/// A port on 127.0.0.1 that nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// One private sshd. `Sshd::new()` only prepares keys and a port (nothing listens yet, which
/// is how the "target unreachable" tests use it); `start()` makes it listen.
pub struct Sshd {
    tmp: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    starts: usize,
    /// The mount namespace sshd runs in (`/proc/PID/ns/mnt`), when the test's files live on a
    /// private tmpfs: the remote rsync must see the target as the daemon does.
    mount_ns: Option<String>,
}

impl Sshd {
    /// Generates the host key, the user key and authorized_keys; picks a free port.
    pub fn new() -> Sshd {
        require_tools();
        let tmp = tempfile::Builder::new()
            .prefix("lsyncd-sshd-")
            .tempdir()
            .expect("create sshd temp dir");
        for key in ["host_key", "user_key"] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "lsyncd-test", "-f"])
                .arg(tmp.path().join(key))
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run ssh-keygen ({e}); install openssh-client (`make deps`)")
                });
            assert!(
                out.status.success(),
                "ssh-keygen {key} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        fs::copy(
            tmp.path().join("user_key.pub"),
            tmp.path().join("authorized_keys"),
        )
        .expect("write authorized_keys");
        // ssh refuses a private key readable by others.
        fs::set_permissions(
            tmp.path().join("user_key"),
            fs::Permissions::from_mode(0o600),
        )
        .expect("chmod user key");
        Sshd {
            tmp,
            port: free_port(),
            child: None,
            starts: 0,
            mount_ns: None,
        }
    }

    /// A started sshd.
    pub fn started() -> Sshd {
        let mut s = Sshd::new();
        s.start();
        s
    }

    /// A started sshd whose sessions see `dir` as its daemons do: inside the private mount
    /// namespace of a fanotify test dir (rsync refuses to write through `/proc/PID/root` into
    /// another namespace), as [`Sshd::started`] otherwise.
    pub fn started_in(dir: &TestDir) -> Sshd {
        let mut s = Sshd::new();
        s.mount_ns = dir.mount_ns();
        s.start();
        s
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client's private key.
    pub fn key(&self) -> PathBuf {
        self.tmp.path().join("user_key")
    }

    fn key_str(&self) -> String {
        self.key().to_str().expect("temp path is UTF-8").to_owned()
    }

    fn write_config(&self) -> PathBuf {
        let d = self.tmp.path().to_str().expect("temp path is UTF-8");
        let text = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\n\
             StrictModes no\n\
             UsePAM no\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             KexAlgorithms curve25519-sha256\n\
             SetEnv SHLVL=1\n\
             MaxStartups 100\n\
             LogLevel INFO\n",
            port = self.port
        );
        let path = self.tmp.path().join("sshd_config");
        fs::write(&path, text).expect("write sshd_config");
        path
    }

    /// Everything sshd printed so far (all of its runs).
    pub fn log(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.starts {
            let p = self.tmp.path().join(format!("sshd{i}.log"));
            out.push_str(&String::from_utf8_lossy(&fs::read(p).unwrap_or_default()));
        }
        out
    }

    /// Starts sshd and waits until it answers with an SSH banner. A fresh sshd whose port was
    /// taken in the meantime moves to another free port; a restart keeps its port (clients are
    /// configured with it) and retries until the port is free again.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "sshd already running");
        // Privilege separation directory; sshd refuses to start without it.
        let _ = fs::create_dir_all("/run/sshd");
        let restart = self.starts > 0;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let config = self.write_config();
            self.starts += 1;
            let log_path = self.tmp.path().join(format!("sshd{}.log", self.starts));
            let log = fs::File::create(&log_path).expect("create sshd log");
            let mut cmd = match &self.mount_ns {
                Some(ns) => {
                    let mut c = Command::new("nsenter");
                    c.arg(format!("--mount={ns}")).arg("--").arg(SSHD);
                    c
                }
                None => Command::new(SSHD),
            };
            let child = cmd
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup sshd log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
            self.child = Some(child);
            if self.wait_listening() {
                return;
            }
            // It exited (most likely: port in use) or never answered.
            self.stop();
            if attempts >= 10 {
                panic!(
                    "sshd did not come up on 127.0.0.1:{} after {attempts} attempts\n--- sshd log ---\n{}",
                    self.port,
                    self.log()
                );
            }
            if restart {
                std::thread::sleep(Duration::from_millis(200)); // port still in use: retry
            } else {
                self.port = free_port();
            }
        }
    }

    /// True once our sshd answers on the port; false if it exits first or never answers.
    fn wait_listening(&mut self) -> bool {
        let port = self.port;
        let mut up = false;
        wait_until(TIMEOUT, || {
            if let Some(c) = self.child.as_mut() {
                if c.try_wait().ok().flatten().is_some() {
                    return true;
                }
            }
            up = banner(port);
            up
        });
        up && self
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Stops the listening sshd (SIGTERM, then waits; SIGKILL after the timeout). Sessions
    /// already open run to their end, as with a real server going down.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                send_signal(child.id(), "TERM");
                let gone = wait_until(TIMEOUT, || child.try_wait().ok().flatten().is_some());
                if !gone {
                    let _ = child.kill();
                }
            }
            let _ = child.wait();
        }
    }

    /// `ssh = { ... }` for a sync{}: port, identity file and the options that make a fresh
    /// host key acceptable without prompting or touching known_hosts.
    pub fn lua_ssh(&self) -> String {
        self.lua_ssh_with("")
    }

    /// `lua_ssh()` with more keys (`binary = "...", `) at the start of the table.
    pub fn lua_ssh_with(&self, keys: &str) -> String {
        format!(
            "ssh = {{ {keys}port = {}, identityFile = {}, options = {{ StrictHostKeyChecking = \"no\", \
             UserKnownHostsFile = \"/dev/null\", BatchMode = \"yes\", LogLevel = \"ERROR\" }} }}",
            self.port,
            lua_str(self.key_str())
        )
    }

    /// The same settings as one `-sshopts` string.
    pub fn sshopts(&self) -> String {
        format!(
            "-p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o BatchMode=yes -o LogLevel=ERROR",
            self.port,
            self.key_str()
        )
    }

    /// Runs `ssh 127.0.0.1 COMMAND` with this server's settings (for checks from the test).
    pub fn ssh(&self, command: &str) -> std::process::Output {
        Command::new("ssh")
            .args(self.sshopts().split_whitespace())
            .arg(HOST)
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }
}

/// True if something on 127.0.0.1:PORT greets with an SSH protocol banner.
fn banner(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    &buf == b"SSH-2.0-"
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- sshd log (port {}) ---\n{}", self.port, self.log());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ssh recorder

/// An `ssh` wrapper for `ssh{ binary = ... }`: records each call's arguments
/// (NUL-terminated, like `Recorder`) as `root/REL.calls/N`, then execs the real ssh with
/// them, so the remote command still runs.
pub struct SshRecorder {
    script: PathBuf,
    calls_dir: PathBuf,
}

impl SshRecorder {
    pub fn install(dir: &super::TestDir, rel: &str) -> SshRecorder {
        let calls_dir = dir.mkdir(format!("{rel}.calls"));
        let script = dir.path(rel);
        let mut text = b"#!/bin/sh\nd='".to_vec();
        text.extend_from_slice(calls_dir.as_os_str().as_bytes());
        text.extend_from_slice(
            b"'\ni=1\nwhile ! mkdir \"$d/$i\" 2>/dev/null; do i=$((i + 1)); done\n\
              printf '%s\\0' \"$@\" > \"$d/$i/args\"\n\
              : > \"$d/$i/done\"\n\
              exec ssh \"$@\"\n",
        );
        fs::write(&script, text).expect("write ssh recorder");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        SshRecorder { script, calls_dir }
    }

    /// The script path as a Lua string literal.
    pub fn lua(&self) -> String {
        lua_str(self.script.as_os_str().as_bytes())
    }

    /// Every recorded call's arguments, in call order.
    pub fn calls(&self) -> Vec<Vec<Vec<u8>>> {
        let mut calls = Vec::new();
        for i in 1.. {
            let d = self.calls_dir.join(i.to_string());
            if !d.join("done").exists() {
                break;
            }
            let raw = fs::read(d.join("args")).unwrap_or_default();
            let mut args: Vec<Vec<u8>> = raw.split(|&b| b == 0).map(|s| s.to_vec()).collect();
            args.pop();
            calls.push(args);
        }
        calls
    }
}
