//! The running-mode include list of an event list (SPEC §9.5): the rsync include patterns
//! for the paths of the events, each with its parent directories.
//!
//! Owns: [`include_list`] and its pattern escaping. Must not touch: the delay lists (read
//! only), Lua, spawning.

use crate::delay::{DelayId, DelayKind, DelayList};

/// An rsync include pattern matching exactly `path` (SPEC §9.5 step 2 with the fix of §15
/// item 22): a path without `*`, `?` or `[` is used as it is (rsync reads it literally);
/// otherwise every `\ * ? [ ]` is escaped. A directory Delete also matches its content (`***`).
fn include_pattern(path: &[u8], dir_delete: bool, out: &mut Vec<u8>) {
    out.clear();
    if !dir_delete && !path.iter().any(|b| matches!(b, b'*' | b'?' | b'[')) {
        out.extend_from_slice(path);
        return;
    }
    for &b in path {
        if matches!(b, b'\\' | b'*' | b'?' | b'[' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
    if dir_delete {
        out.extend_from_slice(b"***");
    }
}

/// The parent directory of a relative path: `/a/b/c` → `/a/b/`, `/a/b/` → `/a/`, `/a` → `/`,
/// `/` → none.
fn parent_dir(path: &[u8]) -> Option<&[u8]> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    if trimmed.is_empty() {
        return None;
    }
    let cut = trimmed.iter().rposition(|b| *b == b'/')?;
    Some(&path[..=cut])
}

/// The running-mode include list of an event list (SPEC §9.5 step 3): every path in queue
/// order (a move's origin and destination), each followed by its parent directories, without
/// duplicates; a parent already listed brought its own parents with it.
pub(crate) fn include_list(delays: &DelayList, dids: &[DelayId]) -> Vec<Vec<u8>> {
    let mut list: Vec<Vec<u8>> = Vec::new();
    let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    let mut pattern = Vec::new();
    let mut push = |path: &[u8], dir_delete: bool, list: &mut Vec<Vec<u8>>| {
        if path.is_empty() {
            return;
        }
        include_pattern(path, dir_delete, &mut pattern);
        if !seen.contains(&pattern) {
            seen.insert(pattern.clone());
            list.push(pattern.clone());
        }
        let mut parent = if dir_delete {
            Some(path)
        } else {
            parent_dir(path)
        };
        while let Some(p) = parent {
            include_pattern(p, false, &mut pattern);
            if seen.contains(&pattern) {
                break;
            }
            seen.insert(pattern.clone());
            list.push(pattern.clone());
            parent = parent_dir(p);
        }
    };
    for id in dids {
        let Some(d) = delays.get(*id) else { continue };
        let dir_delete = d.kind == DelayKind::Delete && d.path.ends_with(b"/");
        push(d.path, dir_delete, &mut list);
        if let Some(p2) = &d.path2 {
            push(p2, false, &mut list);
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delay::Pushed;

    fn list_of(events: &[(DelayKind, &str, Option<&str>)]) -> Vec<String> {
        let mut delays = DelayList::new();
        let mut ids = Vec::new();
        for (kind, path, path2) in events {
            let p2 = path2.map(|p| std::rc::Rc::<[u8]>::from(p.as_bytes()));
            ids.push(delays.push_unblocked(*kind, path.as_bytes().to_vec().into(), None));
            if let Some(p2) = p2 {
                // a move: give the last delay its destination through a fresh Move delay
                delays.remove(*ids.last().expect("id"));
                ids.pop();
                match delays.push(*kind, path.as_bytes().to_vec().into(), Some(p2), None) {
                    Pushed::Appended(id) => ids.push(id),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        include_list(&delays, &ids)
            .into_iter()
            .map(|p| String::from_utf8(p).expect("utf8"))
            .collect()
    }

    #[test]
    fn include_list_cases() {
        use DelayKind::*;
        type Events<'a> = &'a [(DelayKind, &'a str, Option<&'a str>)];
        let cases: [(&str, Events, &[&str]); 3] = [
            (
                "the verified upstream example",
                &[
                    (Create, "/a/new.txt", None),
                    (Modify, "/a/new.txt", None),
                    (Create, "/newdir/", None),
                    (Create, "/newdir/z", None),
                    (Delete, "/top", None),
                    (Create, "/top2", None),
                    (Delete, "/a/b/f", None),
                ],
                &[
                    "/a/new.txt",
                    "/a/",
                    "/",
                    "/newdir/",
                    "/newdir/z",
                    "/top",
                    "/top2",
                    "/a/b/f",
                    "/a/b/",
                ],
            ),
            (
                "only wildcard patterns are escaped, dir deletes expand",
                &[
                    (Create, "/w*x?[y]", None),
                    (Create, "/p]q", None),
                    (Delete, "/d/", None),
                ],
                &["/w\\*x\\?\\[y\\]", "/", "/p]q", "/d/***", "/d/"],
            ),
            (
                "both paths of a move",
                &[(Move, "/a/x", Some("/b/y"))],
                &["/a/x", "/a/", "/", "/b/y", "/b/"],
            ),
        ];
        for (what, events, want) in cases {
            assert_eq!(list_of(events), want, "{what}");
        }
    }

    #[test]
    fn parent_dir_walks_up_to_the_root() {
        assert_eq!(parent_dir(b"/a/b/c"), Some(&b"/a/b/"[..]));
        assert_eq!(parent_dir(b"/a/b/"), Some(&b"/a/"[..]));
        assert_eq!(parent_dir(b"/a"), Some(&b"/"[..]));
        assert_eq!(parent_dir(b"/"), None);
        assert_eq!(parent_dir(b""), None);
    }
}
