//! Tree snapshots and their differences: what a test or a benchmark compares a target with its
//! source by (names as bytes, types, contents, symlink targets; symlinks are not followed).
//! Owns: `Node`, `snapshot`, `tree_diff`, `tree_diff_max`, `assert_trees_equal`, `show`.
//! Must not touch: the trees (it only reads them).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

/// One entry of a tree snapshot.
#[derive(Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
    Other,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Dir => write!(f, "dir"),
            Node::File(c) => write!(
                f,
                "file {:?}",
                String::from_utf8_lossy(&c[..c.len().min(40)])
            ),
            Node::Symlink(t) => write!(f, "symlink -> {:?}", String::from_utf8_lossy(t)),
            Node::Other => write!(f, "special file"),
        }
    }
}

/// All entries below `root` (not `root` itself), keyed by their relative path bytes
/// (`a/b/f`). Symlinks are not followed.
pub fn snapshot(root: &Path) -> io::Result<BTreeMap<Vec<u8>, Node>> {
    let mut out = BTreeMap::new();
    walk(root, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, rel: &mut Vec<u8>, out: &mut BTreeMap<Vec<u8>, Node>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().into_vec();
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            out.insert(rel.clone(), Node::Dir);
            walk(&path, rel, out)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path)?.into_os_string().into_vec();
            out.insert(rel.clone(), Node::Symlink(target));
        } else if ft.is_file() {
            out.insert(rel.clone(), Node::File(fs::read(&path)?));
        } else {
            out.insert(rel.clone(), Node::Other);
        }
        rel.truncate(len);
    }
    Ok(())
}

/// A relative path for messages.
pub fn show(path: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(path)).replace('\u{fffd}', "\\xNN")
}

/// Differences between two trees (names, types, symlink targets, contents), at most 20 lines;
/// `None` if either tree could not be read (e.g. changed while being walked).
pub fn tree_diff(a: &Path, b: &Path) -> Option<Vec<String>> {
    tree_diff_max(a, b, 20)
}

/// Like `tree_diff` with at most `max` lines, plus a last line counting the ones left out.
pub fn tree_diff_max(a: &Path, b: &Path, max: usize) -> Option<Vec<String>> {
    let (sa, sb) = (snapshot(a).ok()?, snapshot(b).ok()?);
    let mut diffs = Vec::new();
    for (k, va) in &sa {
        match sb.get(k) {
            None => diffs.push(format!("only in {a:?}: {} ({va:?})", show(k))),
            Some(vb) if vb != va => diffs.push(format!("differs: {}: {va:?} vs {vb:?}", show(k))),
            Some(_) => {}
        }
    }
    for (k, vb) in &sb {
        if !sa.contains_key(k) {
            diffs.push(format!("only in {b:?}: {} ({vb:?})", show(k)));
        }
    }
    let total = diffs.len();
    if total > max {
        diffs.truncate(max);
        diffs.push(format!("... and {} more differences", total - max));
    }
    Some(diffs)
}

/// True when both trees could be read and are equal.
pub fn trees_equal(a: &Path, b: &Path) -> bool {
    tree_diff_max(a, b, 0).is_some_and(|d| d.is_empty())
}

/// Fails the test with the first differences unless the trees are equal.
pub fn assert_trees_equal(a: &Path, b: &Path) {
    match tree_diff(a, b) {
        Some(d) if d.is_empty() => {}
        Some(d) => panic!("trees {a:?} and {b:?} differ:\n{}", d.join("\n")),
        None => panic!("cannot read {a:?} or {b:?}"),
    }
}
