//! The machine side of the bench: small file helpers, /proc readings (CPU, peak RSS, inotify
//! watches), the tools check, the inotify limits raised for a run, and the machine description
//! for the report.
//! Owns: everything here. Must not touch: the daemons (it only reads /proc), system settings
//! other than the two inotify limits it raises and restores.

use crate::kit::which;
use crate::*;
use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(crate) fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

pub(crate) fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

pub(crate) fn write_file(p: &Path, data: &[u8]) -> Res<()> {
    fs::write(p, data).map_err(|e| format!("write {}: {e}", p.display()))
}

pub(crate) fn mkdir(p: &Path) -> Res<()> {
    fs::create_dir_all(p).map_err(|e| format!("mkdir {}: {e}", p.display()))
}

pub(crate) fn tail(p: &Path, lines: usize) -> String {
    let s = fs::read_to_string(p).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// /proc readings

/// CPU seconds of a process: sum of `se.sum_exec_runtime` (ns resolution) over its threads when
/// /proc/PID/task/*/sched exists, else utime+stime from /proc/PID/stat (clock ticks).
pub(crate) fn cpu_secs(pid: u32) -> f64 {
    sched_cpu(pid).unwrap_or_else(|| stat_cpu(pid))
}

pub(crate) fn sched_cpu(pid: u32) -> Option<f64> {
    let mut total = 0.0;
    let mut any = false;
    for t in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(s) = fs::read_to_string(t.path().join("sched")) else {
            continue;
        };
        if let Some(l) = s.lines().find(|l| l.starts_with("se.sum_exec_runtime")) {
            let ms: f64 = l.rsplit(':').next()?.trim().parse().ok()?;
            total += ms / 1000.0;
            any = true;
        }
    }
    any.then_some(total)
}

pub(crate) fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

pub(crate) fn stat_cpu(pid: u32) -> f64 {
    let (u, s) = stat_times(pid);
    u + s
}

/// (utime, stime) in seconds from /proc/PID/stat.
pub(crate) fn stat_times(pid: u32) -> (f64, f64) {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0.0, 0.0);
    };
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return (0.0, 0.0);
    };
    // After "pid (comm) ": state is field 3, utime 14, stime 15.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (n(11) / clock_ticks(), n(12) / clock_ticks())
}

/// Peak resident set (VmHWM) in MiB.
pub(crate) fn hwm_mib(pid: u32) -> f64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Number of inotify watches the process holds (from /proc/PID/fdinfo). Descriptors with the
/// same watch list are counted once: they are dups of one inotify instance.
pub(crate) fn watch_count(pid: u32) -> usize {
    let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    let mut n = 0;
    for e in rd.flatten() {
        let is_inotify = fs::read_link(e.path())
            .map(|l| l.to_string_lossy().contains("inotify"))
            .unwrap_or(false);
        if is_inotify {
            let info = format!("/proc/{pid}/fdinfo/{}", e.file_name().to_string_lossy());
            if let Ok(s) = fs::read_to_string(info) {
                let mut wds: Vec<String> = s
                    .lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .map(String::from)
                    .collect();
                wds.sort_unstable();
                let len = wds.len();
                if seen.insert(wds) {
                    n += len;
                }
            }
        }
    }
    n
}

// ---------------------------------------------------------------------------------------------
// Environment: tools and inotify limits

pub(crate) fn ensure_tools(o: &Opts) -> Res<()> {
    let mut missing = vec![];
    if !o.upstream.exists() {
        missing.push("lsyncd");
    }
    if which("inotifywait").is_none() {
        missing.push("inotify-tools");
    }
    if which("rsync").is_none() {
        missing.push("rsync");
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() || which("apt-get").is_none() {
        return Err(format!(
            "missing: {} (install as root: apt-get install -y lsyncd inotify-tools rsync)",
            missing.join(" ")
        ));
    }
    eprintln!("bench: installing {}", missing.join(" "));
    let apt = |args: &[&str]| -> Res<()> {
        let st = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("apt-get: {e}"))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("apt-get {} failed: {st}", args.join(" ")))
        }
    };
    apt(&["update", "-q"])?;
    apt(&["install", "-y", "-q", "lsyncd", "inotify-tools", "rsync"])?;
    if !o.upstream.exists() {
        return Err(format!(
            "{} still missing after installing lsyncd",
            o.upstream.display()
        ));
    }
    Ok(())
}

/// A /proc/sys value raised for the run and put back when dropped.
pub(crate) struct Sysctl {
    pub(crate) path: &'static str,
    pub(crate) old: String,
}

impl Sysctl {
    pub(crate) fn raise(path: &'static str, min: u64) -> Option<Sysctl> {
        let old = fs::read_to_string(path).ok()?.trim().to_string();
        if old.parse::<u64>().map(|v| v >= min).unwrap_or(true) {
            return None;
        }
        match fs::write(path, min.to_string()) {
            Ok(()) => Some(Sysctl { path, old }),
            Err(e) => {
                eprintln!("bench: cannot raise {path} from {old} to {min} ({e}); continuing");
                None
            }
        }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = fs::write(self.path, &self.old);
    }
}

pub(crate) fn machine_description(scratch: &Path) -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':').map(|x| x.1.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<f64>().ok())
                })
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let fstype = fs_type(scratch);
    format!(
        "Machine: {cores} cores ({model}), {mem_gib:.0} GiB RAM, Linux {kernel}; scratch trees in {} ({fstype}).",
        scratch.display()
    )
}

pub(crate) fn fs_type(p: &Path) -> String {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: (usize, String) = (0, "unknown".into());
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 2 && p.starts_with(f[1]) && f[1].len() >= best.0 {
            best = (f[1].len(), f[2].to_string());
        }
    }
    best.1
}

pub(crate) fn mtime(p: &Path) -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC", "-r"])
        .arg(p)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

pub(crate) fn version_of(bin: &Path) -> String {
    Command::new(bin)
        .arg("-version")
        .output()
        .map(|o| {
            let t = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            t.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|e| format!("({e})"))
}
