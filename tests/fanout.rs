//! Many syncs on one tree (fan-out): ten syncs on one source with different excludes, a sync
//! whose source is inside another's, and two syncs on one source with different `delete`
//! modes. The watch tree and the startup walk are shared between them; each sync must still
//! see exactly its own files, at startup and live, through directory moves and sub-tree
//! deletes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::{rsync_path, show, snapshot, wait_until, Daemon, Node, TestDir, TIMEOUT};

const SYNCS: usize = 10;

/// Sync `i` of ten excludes every file ending in `.j` for `j != i`.
const TEN_SYNCS: &str = r#"
for i = 0, 9 do
    local ex = {}
    for j = 0, 9 do
        if j ~= i then ex[#ex + 1] = '*.' .. j end
    end
    sync{ default.rsync, source = "src", target = "dst" .. i, delay = 0, exclude = ex }
end
"#;

/// What target `i` must hold: every directory of the source, and its files ending in `.i`.
fn own_files(src: &Path, i: usize) -> Option<BTreeMap<Vec<u8>, Node>> {
    let suffix = format!(".{i}");
    let all = snapshot(src).ok()?;
    Some(
        all.into_iter()
            .filter(|(p, n)| *n == Node::Dir || p.ends_with(suffix.as_bytes()))
            .collect(),
    )
}

/// Writes `rel.0` … `rel.9` under the source.
fn write_ten(dir: &TestDir, rel: &str) {
    for j in 0..SYNCS {
        dir.write(format!("src/{rel}.{j}"), format!("{rel} for sync {j}\n"));
    }
}

/// Waits until every target holds exactly its own files; fails naming the first difference.
fn wait_each_own(d: &mut Daemon, dir: &TestDir, step: &str) {
    for i in 0..SYNCS {
        let dst = dir.path(format!("dst{i}"));
        let equal = || {
            let want = own_files(&dir.src(), i);
            want.is_some() && want == snapshot(&dst).ok()
        };
        if wait_until(TIMEOUT, equal) {
            continue;
        }
        let want = own_files(&dir.src(), i).unwrap_or_default();
        let got = snapshot(&dst).unwrap_or_default();
        let missing: Vec<String> = want
            .keys()
            .filter(|k| !got.contains_key(*k))
            .map(|k| show(k))
            .collect();
        let extra: Vec<String> = got
            .keys()
            .filter(|k| !want.contains_key(*k))
            .map(|k| show(k))
            .collect();
        panic!(
            "{step}: dst{i} does not hold exactly its own files\n  missing: {missing:?}\n  \
             extra: {extra:?}\n--- log ---\n{}",
            d.log()
        );
    }
}

#[test]
fn ten_syncs_with_different_excludes_each_receive_exactly_their_own_files() {
    rsync_path();
    let dir = TestDir::new();
    let cfg = dir.config("ten.lua", TEN_SYNCS);
    write_ten(&dir, "top");
    write_ten(&dir, "a/f");
    write_ten(&dir, "a/deep/g");
    write_ten(&dir, "c/sub/h");
    dir.mkdir("src/moved");
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    wait_each_own(&mut d, &dir, "startup");

    write_ten(&dir, "new/n");
    write_ten(&dir, "a/late");
    wait_each_own(&mut d, &dir, "live creates");

    dir.rename("src/a", "src/moved/a2");
    write_ten(&dir, "moved/a2/deep/after-move");
    wait_each_own(&mut d, &dir, "after a directory move");

    dir.remove("src/c");
    wait_each_own(&mut d, &dir, "after a sub-tree delete");
    assert!(
        !dir.exists("dst3/c"),
        "the deleted sub-tree is gone from the targets"
    );
    assert!(dir.exists("dst3/moved/a2/deep/g.3") && !dir.exists("dst3/moved/a2/deep/g.4"));
}

#[test]
fn a_sync_inside_another_syncs_source_mirrors_its_own_sub_tree() {
    rsync_path();
    let dir = TestDir::new();
    let cfg = dir.config(
        "nested.lua",
        "sync{ default.rsync, source = \"src\", target = \"dst\", delay = 0 }\n\
         sync{ default.rsync, source = \"src/sub\", target = \"inner\", delay = 0 }\n",
    );
    dir.write("src/outside.txt", "outer only\n");
    dir.write("src/sub/in.txt", "both\n");
    dir.write("src/sub/d/deep.txt", "both, deep\n");
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_trees_equal(&dir.path("src/sub"), &dir.path("inner"));
    assert!(!dir.exists("inner/outside.txt") && !dir.exists("inner/sub"));

    dir.write("src/sub/d/live.txt", "live\n");
    dir.write("src/other.txt", "outer live\n");
    dir.rename("src/sub/d", "src/sub/e");
    dir.remove("src/sub/in.txt");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d.wait_trees_equal(&dir.path("src/sub"), &dir.path("inner"));
    assert!(dir.exists("inner/e/live.txt") && !dir.exists("inner/d"));

    // The inner source moved away: the outer sync mirrors the move.
    dir.rename("src/sub", "src/sub2");
    d.wait_trees_equal(&dir.src(), &dir.dst());
}

#[test]
fn two_syncs_on_one_source_keep_their_own_delete_modes() {
    rsync_path();
    let dir = TestDir::new();
    let cfg = dir.config(
        "modes.lua",
        "sync{ default.rsync, source = \"src\", target = \"deleting\", delay = 0, delete = true }\n\
         sync{ default.rsync, source = \"src\", target = \"keeping\", delay = 0, delete = false }\n",
    );
    dir.write("src/keep.txt", "keep\n");
    dir.write("src/gone-later.txt", "gone later\n");
    dir.write("src/gone-dir/f", "gone later\n");
    for t in ["deleting", "keeping"] {
        dir.write(format!("{t}/stray.txt"), "never in the source\n");
    }
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_for("both startup transfers", || {
        dir.exists("deleting/gone-dir/f") && dir.exists("keeping/gone-dir/f")
    });
    d.wait_for("the stray file removed by delete = true", || {
        !dir.exists("deleting/stray.txt")
    });
    assert!(
        dir.exists("keeping/stray.txt"),
        "delete = false keeps the stray file"
    );

    dir.remove("src/gone-later.txt");
    dir.remove("src/gone-dir");
    dir.write("src/marker.txt", "marker\n");
    d.wait_for("marker in both targets", || {
        dir.exists("deleting/marker.txt") && dir.exists("keeping/marker.txt")
    });
    d.wait_trees_equal(&dir.src(), &dir.path("deleting"));
    for p in ["gone-later.txt", "gone-dir/f", "stray.txt", "keep.txt"] {
        assert!(
            dir.exists(format!("keeping/{p}")),
            "delete = false keeps {p}"
        );
    }
}
