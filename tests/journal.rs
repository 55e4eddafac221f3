//! Journal-aware console logging: with `JOURNAL_STREAM` naming stderr every line is
//! `<N>Category: message` (Error 3, Warn 4, Normal 5, other categories 7) without a timestamp,
//! and a message of several lines reaches the journal's native socket as one entry; with it
//! unset, or naming another file, the console lines are the usual `HH:MM:SS Category: ...`.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{lsyncd_bin, lua_str, wait_until, TestDir, TIMEOUT};

/// The daemon with stdout and stderr on `log`, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(dir: &TestDir) -> std::path::PathBuf {
    dir.write("src/a.txt", "a\n");
    dir.config(
        "journal.lua",
        &format!(
            // the status file cannot be written: an Error line on every write
            "settings {{ statusFile = {}, statusInterval = 1 }}\n\
             sync {{ default.rsync, source = {}, target = {}, delay = 0 }}\n",
            lua_str(dir.path_str("missing/status")),
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
        ),
    )
}

/// Starts `lsyncd -nodaemon -log Exec CONFIG` (inside `wrap` if given) with output on `log`
/// and `JOURNAL_STREAM` as `journal` says: `Some(true)` naming the log, `Some(false)` naming
/// another file, `None` unset.
fn start(dir: &TestDir, log: &Path, journal: Option<bool>, wrap: &[&str]) -> Running {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("dup");
    let named = if journal == Some(true) {
        log.to_path_buf()
    } else {
        dir.config("other", "")
    };
    let m = std::fs::metadata(&named).expect("stat");
    let mut cmd = Command::new(
        wrap.first()
            .copied()
            .unwrap_or(lsyncd_bin().to_str().expect("utf8")),
    );
    cmd.args(wrap.iter().skip(1));
    if !wrap.is_empty() {
        cmd.arg(lsyncd_bin());
    }
    cmd.args(["-nodaemon", "-log", "Exec"])
        .arg(dir.path("journal.lua"))
        .current_dir(dir.root())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env_remove("JOURNAL_STREAM");
    if journal.is_some() {
        cmd.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
    }
    Running(cmd.spawn().expect("start lsyncd"))
}

fn wait_for_text(log: &Path, what: &[&str]) -> String {
    let read = || String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
    let ok = wait_until(TIMEOUT, || {
        let t = read();
        what.iter().all(|w| t.contains(w))
    });
    let text = read();
    assert!(ok, "never saw {what:?} in:\n{text}");
    text
}

#[test]
fn journal_stream_on_stderr_gives_priority_prefixes_and_no_timestamps() {
    let dir = TestDir::new();
    config(&dir);
    let log = dir.path("out.log");
    let _d = start(&dir, &log, Some(true), &[]);
    wait_for_text(&log, &["Startup of "]);
    dir.write("src/b.txt", "b\n");
    let text = wait_for_text(
        &log,
        &[
            "<5>Normal: --- Startup",
            "<3>Error: Cannot open status file",
            "<7>Exec: rsync [",
            "<5>Normal: Calling rsync with filter-list of new/modified files/dirs\n<5>/b.txt\n",
        ],
    );
    assert_eq!(
        text.matches("Cannot open status file").count(),
        1,
        "said once: {text}"
    );
    for line in text.lines() {
        let ok = ["<3>", "<4>", "<5>", "<7>"]
            .iter()
            .any(|p| line.starts_with(p));
        assert!(ok, "line without a priority prefix: {line:?}\n{text}");
    }
}

#[test]
fn journal_stream_unset_or_naming_another_file_keeps_the_console_format() {
    for journal in [None, Some(false)] {
        let dir = TestDir::new();
        config(&dir);
        let log = dir.path("out.log");
        let _d = start(&dir, &log, journal, &[]);
        wait_for_text(&log, &["Startup of "]);
        dir.write("src/b.txt", "b\n");
        let text = wait_for_text(
            &log,
            &[
                "Error: Cannot open status file",
                "Normal: Calling rsync with filter-list",
            ],
        );
        let mut lines = text.lines();
        let first = lines.next().expect("a line");
        // upstream's console line: `HH:MM:SS Category: message`; continuation lines as they are
        let stamped = |l: &str| {
            let b = l.as_bytes();
            b.len() > 9
                && b[..8].iter().enumerate().all(|(i, c)| {
                    if i == 2 || i == 5 {
                        *c == b':'
                    } else {
                        c.is_ascii_digit()
                    }
                })
                && b[8] == b' '
        };
        assert!(stamped(first), "{first:?}\n{text}");
        assert!(text.contains(" Normal: --- Startup"), "{text}");
        assert!(!text.contains("<5>") && !text.contains("<3>"), "{text}");
        assert!(
            text.lines()
                .filter(|l| l.contains("Calling rsync with filter-list"))
                .all(stamped),
            "{text}"
        );
        assert!(
            text.contains("filter-list of new/modified files/dirs\n/b.txt\n"),
            "{text}"
        );
    }
}

#[test]
fn a_message_of_several_lines_is_one_native_journal_entry() {
    // A private mount namespace puts the test's socket where journald's would be.
    let dir = TestDir::new();
    config(&dir);
    let sock_path = dir.path("journal.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let log = dir.path("out.log");
    let script = "mount -t tmpfs none /run && mkdir -p /run/systemd/journal && \
                  touch /run/systemd/journal/socket && \
                  mount --bind \"$0\" /run/systemd/journal/socket && exec \"$@\"";
    let sock_str = sock_path.to_str().expect("utf8");
    let _d = start(
        &dir,
        &log,
        Some(true),
        &["unshare", "-m", "sh", "-c", script, sock_str],
    );
    wait_for_text(&log, &["Startup of "]);
    dir.write("src/b.txt", "b\n");
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 65536];
    let found = wait_until(TIMEOUT, || {
        if let Ok(n) = sock.recv(&mut buf) {
            entries.push(buf[..n].to_vec());
        }
        entries
            .iter()
            .any(|e| e.windows(17).any(|w| w == b"filter-list of ne"))
    });
    assert!(
        found,
        "no native entry; log:\n{}",
        String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default())
    );
    let entry = entries
        .iter()
        .find(|e| e.windows(17).any(|w| w == b"filter-list of ne"))
        .expect("entry");
    let head = b"PRIORITY=5\nSYSLOG_IDENTIFIER=lsyncd\nMESSAGE\n";
    assert!(
        entry.starts_with(head),
        "{:?}",
        String::from_utf8_lossy(entry)
    );
    let len = u64::from_le_bytes(
        entry[head.len()..head.len() + 8]
            .try_into()
            .expect("8 bytes"),
    );
    let message = &entry[head.len() + 8..];
    assert_eq!(
        message.len() as u64,
        len + 1,
        "length field and trailing newline"
    );
    let message = String::from_utf8_lossy(&message[..len as usize]);
    assert!(
        message.starts_with(
            "Normal: Calling rsync with filter-list of new/modified files/dirs\n/b.txt\n"
        ),
        "{message:?}"
    );
    // The multi-line message did not also go to stderr.
    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    assert!(!text.contains("filter-list"), "{text}");
    assert!(text.contains("<5>Normal: --- Startup"), "{text}");
}
