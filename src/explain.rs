//! `lsyncd -explain PATH CONFIG`: for every sync of the config, whether PATH would be watched
//! (a directory) and transferred, and which exclude or filter rule decided it. It asks the
//! same matcher (`Excludes::decide`, behind `is_excluded`) and the same watch rule
//! (`Core::sync_concerns`) the daemon uses, after the config was loaded exactly as for a run.
//!
//! Owns: the text of the answer. Must not touch: the file system beyond one `lstat` of PATH,
//! the poll loop, Lua.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::sync::{Core, SyncJob};

/// PATH made absolute (against the working directory) without resolving symlinks, `.` and `..`
/// taken out, and a trailing `/` when it is a directory (as the daemon's paths are).
fn normalize(path: &[u8]) -> Vec<u8> {
    let mut abs = if path.starts_with(b"/") {
        Vec::new()
    } else {
        std::env::current_dir()
            .map(|d| d.as_os_str().as_bytes().to_vec())
            .unwrap_or_default()
    };
    abs.push(b'/');
    abs.extend_from_slice(path);
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in abs.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = Vec::with_capacity(abs.len() + 1);
    for p in &parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    let is_dir = path.ends_with(b"/")
        || std::fs::symlink_metadata(OsStr::from_bytes(&out)).is_ok_and(|m| m.is_dir());
    if is_dir || out.is_empty() {
        out.push(b'/');
    }
    out
}

/// The answer for one sync.
fn explain_sync(s: &SyncJob, abs: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&s.name);
    out.extend_from_slice(b" (source ");
    out.extend_from_slice(&s.source);
    out.extend_from_slice(b"):\n");
    let root = &s.source[..s.source.len() - 1];
    let rel = if abs == s.source.as_slice() {
        &b"/"[..]
    } else if abs.len() > root.len() && abs.starts_with(root) && abs[root.len()] == b'/' {
        &abs[root.len()..]
    } else {
        out.extend_from_slice(b"  outside the source: not watched, not transferred\n");
        return;
    };
    let is_dir = rel.ends_with(b"/");
    // An excluded directory above it: the daemon never watches below it and rsync never
    // descends into it.
    let mut cut = 1;
    while let Some(i) = rel[cut..].iter().position(|b| *b == b'/') {
        let dir = &rel[..cut + i + 1];
        cut += i + 1;
        if dir.len() == rel.len() {
            break;
        }
        if let Some(rule) = s.excludes.decide(dir).filter(|r| r.excludes()) {
            out.extend_from_slice(b"  not watched, not transferred: its directory ");
            out.extend_from_slice(dir);
            out.extend_from_slice(b" is excluded by ");
            out.extend_from_slice(&rule.describe());
            out.push(b'\n');
            return;
        }
    }
    if is_dir {
        let watched = Core::sync_concerns(s, abs);
        out.extend_from_slice(if watched {
            b"  watched: yes\n".as_slice()
        } else if !s.conf.takes.subdirs && rel != b"/" {
            b"  watched: no (subdirs = false)\n".as_slice()
        } else {
            b"  watched: no\n".as_slice()
        });
    }
    match s.excludes.decide(rel) {
        Some(rule) if rule.excludes() => {
            out.extend_from_slice(b"  transferred: no, excluded by ");
            out.extend_from_slice(&rule.describe());
        }
        Some(rule) => {
            out.extend_from_slice(b"  transferred: yes, included by ");
            out.extend_from_slice(&rule.describe());
        }
        None => out.extend_from_slice(b"  transferred: yes, no rule matches"),
    }
    out.push(b'\n');
}

/// The whole answer: the path as the daemon sees it, then one block per sync.
pub(crate) fn explain(core: &Core, path: &[u8]) -> Vec<u8> {
    let abs = normalize(path);
    let mut out = b"Path ".to_vec();
    out.extend_from_slice(&abs);
    out.push(b'\n');
    for s in &core.syncs {
        explain_sync(s, &abs, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_absolute_and_clean() {
        assert_eq!(normalize(b"/a/./b/../c"), b"/a/c");
        assert_eq!(normalize(b"/a/b/"), b"/a/b/");
        assert_eq!(normalize(b"/"), b"/");
        assert_eq!(normalize(b"/tmp"), b"/tmp/");
    }
}
