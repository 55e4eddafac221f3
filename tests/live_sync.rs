//! Live mirroring with default.rsync (SPEC §3, §4, §9.5): changes made while the daemon runs
//! reach the target within a few seconds (`-delay 1`), including renames, moves across the
//! tree's border, fresh directory trees and bursts that cancel out.

use crate::rsync_sync::write_hostile_tree;
use crate::util::{rsync_path, Daemon, TestDir};

/// `lsyncd -nodaemon -delay DELAY -rsync SRC DST`, returned after the startup sync finished.
fn start_mirror(dir: &TestDir, delay: &str) -> Daemon {
    rsync_path();
    let (src, dst) = (dir.path_str("src"), dir.path_str("dst"));
    let mut d = Daemon::start(dir, &["-delay", delay, "-rsync", &src, &dst]);
    d.wait_startup();
    d.wait_trees_equal(&dir.src(), &dir.dst());
    d
}

both_monitors! {
    fn live_file_create_modify_and_delete_are_mirrored(mon) {
        let dir = TestDir::with_monitor(mon);
        dir.write("src/existing.txt", "old\n");
        let mut d = start_mirror(&dir, "1");

        dir.write("src/created.txt", "created\n");
        dir.write("src/sub/created-in-new-dir.txt", "nested\n");
        d.wait_trees_equal(&dir.src(), &dir.dst());

        dir.write("src/existing.txt", "modified, and longer than before\n");
        dir.write("src/created.txt", "");
        d.wait_trees_equal(&dir.src(), &dir.dst());

        dir.remove("src/existing.txt");
        dir.remove("src/sub/created-in-new-dir.txt");
        d.wait_trees_equal(&dir.src(), &dir.dst());
    }
}

both_monitors! {
    fn live_renames_of_files_and_directories_are_mirrored(mon) {
        let dir = TestDir::with_monitor(mon);
        dir.write("src/old.txt", "file\n");
        dir.write("src/olddir/x", "x\n");
        dir.write("src/olddir/sub/y", "y\n");
        dir.write("src/over/target.txt", "to be replaced\n");
        dir.write("src/over/source.txt", "replacement\n");
        let mut d = start_mirror(&dir, "1");

        dir.rename("src/old.txt", "src/new.txt");
        dir.rename("src/olddir", "src/newdir");
        dir.rename("src/over/source.txt", "src/over/target.txt");
        d.wait_trees_equal(&dir.src(), &dir.dst());

        // The renamed directory is still watched under its new name.
        dir.write("src/newdir/sub/z", "z\n");
        dir.rename("src/newdir/x", "src/newdir/sub/x-moved-down");
        dir.rename("src/newdir/sub", "src/sub-moved-up");
        d.wait_trees_equal(&dir.src(), &dir.dst());
    }
}

both_monitors! {
    fn live_directory_tree_create_and_recursive_delete_are_mirrored(mon) {
        let dir = TestDir::with_monitor(mon);
        let mut d = start_mirror(&dir, "1");

        for i in 0..5 {
            dir.write(format!("src/d1/d2/d3/f{i}"), format!("{i}\n"));
            dir.write(format!("src/d1/g{i}"), format!("{i}\n"));
        }
        dir.mkdir("src/d1/empty/emptier");
        d.wait_trees_equal(&dir.src(), &dir.dst());

        dir.remove("src/d1/d2");
        d.wait_trees_equal(&dir.src(), &dir.dst());
        dir.remove("src/d1");
        d.wait_trees_equal(&dir.src(), &dir.dst());
    }
}

both_monitors! {
    fn mkdir_p_and_write_in_one_go_is_mirrored(mon) {
        let dir = TestDir::with_monitor(mon);
        let mut d = start_mirror(&dir, "1");
        // The way a shell does `mkdir -p a/b/c && echo x > a/b/c/f`: the file exists before
        // lsyncd can have watched a/b/c.
        std::fs::create_dir_all(dir.path("src/a/b/c")).expect("mkdir -p");
        std::fs::write(dir.path("src/a/b/c/f"), "x\n").expect("write");
        d.wait_trees_equal(&dir.src(), &dir.dst());
        assert_eq!(dir.read("dst/a/b/c/f").as_deref(), Some(&b"x\n"[..]));
    }
}

both_monitors! {
    fn move_into_tree_from_outside_is_mirrored_and_watched(mon) {
        let dir = TestDir::with_monitor(mon);
        dir.write("outside/incoming/sub/f", "f\n");
        dir.write("outside/incoming/g", "g\n");
        dir.write("outside/single.txt", "single\n");
        let mut d = start_mirror(&dir, "1");

        dir.rename("outside/incoming", "src/incoming");
        dir.rename("outside/single.txt", "src/single.txt");
        d.wait_trees_equal(&dir.src(), &dir.dst());

        // The moved-in tree got watches: changes deep inside it are seen.
        dir.write("src/incoming/sub/later.txt", "later\n");
        dir.remove("src/incoming/g");
        d.wait_trees_equal(&dir.src(), &dir.dst());
    }
}

both_monitors! {
    fn move_out_of_tree_is_mirrored_as_delete(mon) {
        let dir = TestDir::with_monitor(mon);
        dir.mkdir("outside");
        dir.write("src/leaving/sub/f", "f\n");
        dir.write("src/leaving.txt", "bye\n");
        dir.write("src/staying.txt", "stay\n");
        let mut d = start_mirror(&dir, "1");

        dir.rename("src/leaving", "outside/leaving");
        dir.rename("src/leaving.txt", "outside/leaving.txt");
        d.wait_trees_equal(&dir.src(), &dir.dst());
        assert!(!dir.exists("dst/leaving"));
        assert!(dir.exists("dst/staying.txt"));

        // Changes in the moved-out tree no longer matter.
        dir.write("outside/leaving/sub/after.txt", "after\n");
        dir.write("src/marker", "m\n");
        d.wait_trees_equal(&dir.src(), &dir.dst());
    }
}

both_monitors! {
    fn creating_then_deleting_1000_files_within_the_delay_leaves_nothing_behind(mon) {
        let dir = TestDir::with_monitor(mon);
        dir.write("src/keep.txt", "keep\n");
        let mut d = start_mirror(&dir, "3");

        for i in 0..1000 {
            dir.write(format!("src/burst-{i:04}"), format!("{i}\n"));
        }
        for i in 0..1000 {
            dir.remove(format!("src/burst-{i:04}"));
        }
        dir.write("src/after-burst.txt", "done\n");
        d.wait_for("after-burst.txt in the target", || {
            dir.exists("dst/after-burst.txt")
        });
        d.wait_trees_equal(&dir.src(), &dir.dst());
    }
}

both_monitors! {
    fn live_hostile_names_and_symlinks_are_mirrored(mon) {
        let dir = TestDir::with_monitor(mon);
        let mut d = start_mirror(&dir, "1");
        write_hostile_tree(&dir, "src/live");
        d.wait_trees_equal(&dir.src(), &dir.dst());

        // Modify, retarget and delete some of them.
        dir.write(b"src/live/caf\xe9", "changed\n");
        dir.remove("src/live/rel-link");
        dir.symlink("top.txt", "src/live/rel-link");
        dir.remove("src/live/new\nline");
        dir.remove("src/live/star*name");
        dir.rename("src/live/q?mark", "src/live/[moved]");
        dir.remove(b"src/live/dir\xff\xfe");
        d.wait_trees_equal(&dir.src(), &dir.dst());
    }
}
