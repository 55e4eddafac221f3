//! The status file (SPEC §12.1, §12.2): its layout, checked by a strict parser, and its atomic
//! rewrites; logfile lines (SPEC §12.4).

use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, Instant};

use super::{is_ctime, logfile_line, lua_path};
use crate::util::{rsync_path, Daemon, TestDir, TIMEOUT};

// Status file parser (SPEC §12.1)

#[derive(Debug, PartialEq, Eq)]
struct StatusSync {
    name: String,
    source: String,
    /// (status, etype, path text after the etype).
    delays: Vec<(String, String, String)>,
    /// `None` for `  nothing.`, else the `<sign> <pattern>` lines.
    filters: Option<Vec<String>>,
}

#[derive(Debug)]
struct StatusReport {
    syncs: Vec<StatusSync>,
    watches: Vec<(u32, String)>,
}

/// Parses a whole status report; any deviation from the layout (including a report cut short)
/// is an error naming the line.
fn parse_status(text: &str) -> Result<StatusReport, String> {
    let Some(body) = text.strip_suffix('\n') else {
        return Err("report does not end with a newline".into());
    };
    let lines: Vec<&str> = body.split('\n').collect();
    let mut i = 0;
    let mut next = |what: &str| -> Result<&str, String> {
        let l = lines
            .get(i)
            .copied()
            .ok_or_else(|| format!("report ends where {what} was expected (line {})", i + 1))?;
        i += 1;
        Ok(l)
    };
    let header = next("the header")?;
    let time = header
        .strip_prefix("Lsyncd status report at ")
        .ok_or_else(|| format!("bad header {header:?}"))?;
    if !is_ctime(time) {
        return Err(format!("bad time in header {header:?}"));
    }
    if !next("an empty line")?.is_empty() {
        return Err("no empty line after the header".into());
    }
    let mut syncs = Vec::new();
    let watch_total = loop {
        let l = next("a sync or the watch list")?;
        if let Some(rest) = l.strip_prefix("Inotify watching ") {
            let n = rest
                .strip_suffix(" directories")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| format!("bad watch line {l:?}"))?;
            break n;
        }
        let (name, source) = l
            .split_once(" source=")
            .ok_or_else(|| format!("bad sync line {l:?}"))?;
        let count_line = next("`There are N delays`")?;
        let n = count_line
            .strip_prefix("There are ")
            .and_then(|r| r.strip_suffix(" delays"))
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| format!("bad delay count line {count_line:?}"))?;
        let mut delays = Vec::new();
        for _ in 0..n {
            let d = next("a delay line")?;
            let (status, rest) = (d.get(..7).unwrap_or(""), d.get(7..).unwrap_or(""));
            let st = status.trim_end();
            if !["wait", "active", "block"].contains(&st) || format!("{st:<7}") != status {
                return Err(format!("bad delay status in {d:?}"));
            }
            let (etype, path) = rest
                .split_once(' ')
                .ok_or_else(|| format!("bad delay line {d:?}"))?;
            let known = [
                "Attrib", "Modify", "Create", "Delete", "Move", "Init", "Blanket", "Full",
            ];
            if !known.contains(&etype) || !path.starts_with('/') && etype != "Init" {
                return Err(format!("bad delay line {d:?}"));
            }
            delays.push((st.to_owned(), etype.to_owned(), path.to_owned()));
        }
        if next("`Filtering:`")? != "Filtering:" {
            return Err(format!("no `Filtering:` line after the delays of {name}"));
        }
        let mut filters = Vec::new();
        let mut nothing = false;
        loop {
            let f = next("a filter line or an empty line")?;
            if f.is_empty() {
                break;
            }
            if f == "  nothing." && filters.is_empty() && !nothing {
                nothing = true;
            } else if !nothing && (f.starts_with("+ ") || f.starts_with("- ")) {
                filters.push(f.to_owned());
            } else {
                return Err(format!("bad filter line {f:?}"));
            }
        }
        if !nothing && filters.is_empty() {
            return Err(format!("neither filter rules nor `  nothing.` for {name}"));
        }
        if !next("the second empty line")?.is_empty() {
            return Err(format!(
                "sync block of {name} not closed by two empty lines"
            ));
        }
        syncs.push(StatusSync {
            name: name.to_owned(),
            source: source.to_owned(),
            delays,
            filters: if nothing { None } else { Some(filters) },
        });
    };
    let mut watches = Vec::new();
    for _ in 0..watch_total {
        let w = next("a watch line")?;
        let (wd, path) = w
            .strip_prefix("  ")
            .and_then(|r| r.split_once(": "))
            .ok_or_else(|| format!("bad watch line {w:?}"))?;
        let wd = wd
            .parse::<u32>()
            .map_err(|_| format!("bad watch descriptor in {w:?}"))?;
        if !path.starts_with('/') || !path.ends_with('/') {
            return Err(format!(
                "watch path not absolute with trailing slash: {w:?}"
            ));
        }
        watches.push((wd, path.to_owned()));
    }
    if i != lines.len() {
        return Err(format!(
            "unexpected text after the watch list: {:?}",
            &lines[i..]
        ));
    }
    Ok(StatusReport { syncs, watches })
}

#[test]
fn status_file_after_a_few_events_has_upstream_layout() {
    rsync_path();
    let dir = TestDir::new();
    dir.mkdir("src/a/b");
    dir.mkdir("src2");
    dir.mkdir("dst2");
    dir.write("src/a/b/old", "old\n");
    let status = dir.path("lsyncd.status");
    // Sync1 has only excludes (never listed: `  nothing.`), Sync2 has filter rules.
    // The long delay keeps the events queued so they show in the report.
    let cfg = dir.config(
        "status.lua",
        &format!(
            "settings{{ statusFile = {status}, statusInterval = 1 }}\n\
             sync{{ default.rsync, source = {s1}, target = {t1}, delay = 60,\n  \
               exclude = {{ '*.tmp', 'cache/' }} }}\n\
             sync{{ default.rsync, source = {s2}, target = {t2}, delay = 60,\n  \
               filter = {{ '- *.o', '+ *' }} }}\n",
            status = lua_path(&status),
            s1 = lua_path(&dir.src()),
            t1 = lua_path(&dir.dst()),
            s2 = lua_path(&dir.path("src2")),
            t2 = lua_path(&dir.path("dst2")),
        ),
    );
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_log_count("finished", 2);
    dir.write("src/new1", "1\n");
    dir.write("src/a/new2", "2\n");
    dir.mkdir("src/c");
    dir.write("src2/x.c", "x\n");

    let src = format!("{}/", dir.path_str("src"));
    let src2 = format!("{}/", dir.path_str("src2"));
    let mut last = String::new();
    let mut report = None;
    d.wait_for(
        "a status report listing the new events and directory",
        || {
            last = fs::read_to_string(&status).unwrap_or_default();
            match parse_status(&last) {
                Ok(r) => {
                    let has = |s: usize, etype: &str, path: &str| {
                        r.syncs.get(s).is_some_and(|s| {
                            s.delays.iter().any(|(_, e, p)| e == etype && p == path)
                        })
                    };
                    let ready = r.watches.len() == 5
                        && has(0, "Create", "/new1")
                        && has(0, "Create", "/a/new2")
                        && has(0, "Create", "/c/")
                        && has(1, "Create", "/x.c");
                    if ready {
                        report = Some(r);
                    }
                    ready
                }
                Err(_) => false,
            }
        },
    );
    let r = report.unwrap_or_else(|| panic!("last report:\n{last}\n{:?}", parse_status(&last)));
    assert_eq!(r.syncs.len(), 2, "{last}");
    assert_eq!(
        (r.syncs[0].name.as_str(), r.syncs[0].source.as_str()),
        ("Sync1", src.as_str()),
        "{last}"
    );
    assert_eq!(
        (r.syncs[1].name.as_str(), r.syncs[1].source.as_str()),
        ("Sync2", src2.as_str()),
        "{last}"
    );
    for s in &r.syncs {
        assert!(
            s.delays.iter().all(|(st, _, _)| st == "wait"),
            "all delays should still wait (delay = 60)\n{last}"
        );
    }
    assert_eq!(
        r.syncs[0].filters, None,
        "a sync with only excludes shows `Filtering:` + `  nothing.` (excludes are not listed)\n{last}"
    );
    assert_eq!(
        r.syncs[1].filters,
        Some(vec!["- *.o".to_owned(), "+ *".to_owned()]),
        "{last}"
    );
    let paths: Vec<&str> = r.watches.iter().map(|(_, p)| p.as_str()).collect();
    let want: BTreeSet<String> = ["", "a/", "a/b/", "c/"]
        .iter()
        .map(|p| format!("{src}{p}"))
        .chain(std::iter::once(src2.clone()))
        .collect();
    assert_eq!(
        paths.iter().map(|p| p.to_string()).collect::<BTreeSet<_>>(),
        want,
        "{last}"
    );
    assert!(
        r.watches.windows(2).all(|w| w[0].0 < w[1].0),
        "watch list not in ascending watch-descriptor order\n{last}"
    );
    // The exact text of one sync block, as upstream writes it.
    let delay_lines: String = r.syncs[1]
        .delays
        .iter()
        .map(|(st, e, p)| format!("{st:<7}{e} {p}\n"))
        .collect();
    let block = format!(
        "Sync2 source={src2}\nThere are {} delays\n{delay_lines}Filtering:\n- *.o\n+ *\n\n\n",
        r.syncs[1].delays.len()
    );
    assert!(last.contains(&block), "want block:\n{block}\nin:\n{last}");
    assert_eq!(d.terminate(), 143);
}

#[test]
fn status_file_is_never_seen_half_written_while_rewritten_under_load() {
    rsync_path();
    let dir = TestDir::new();
    let status = dir.path("lsyncd.status");
    // A long delay and a high maxDelays keep thousands of events queued, so each report is
    // large; statusInterval = 1 rewrites it every second while events keep coming.
    let cfg = dir.config(
        "load.lua",
        &format!(
            "settings{{ statusFile = {}, statusInterval = 1 }}\n\
             sync{{ default.rsync, source = {}, target = {}, delay = 600, maxDelays = 1000000 }}\n",
            lua_path(&status),
            lua_path(&dir.src()),
            lua_path(&dir.dst()),
        ),
    );
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_startup();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let src = dir.src();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sub = src.join(format!("d{}", n % 20));
                let _ = fs::create_dir_all(&sub);
                let _ = fs::write(sub.join(format!("file-with-a-longish-name-{n}")), b"x");
                n += 1;
                // Pace the load, so the reports grow to a few hundred KB, not to many MB.
                if n.is_multiple_of(200) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            n
        })
    };
    // Read as fast as possible until several different reports were seen, the last ones
    // large enough that a non-atomic rewrite would be caught half-way.
    const MIN_LEN: usize = 64 * 1024;
    let mut versions = BTreeSet::new();
    let mut reads = 0u64;
    let mut max_len = 0usize;
    let mut bad: Option<(String, String)> = None;
    let end = Instant::now() + TIMEOUT;
    while Instant::now() < end && (versions.len() < 5 || max_len <= MIN_LEN) && bad.is_none() {
        let Ok(text) = fs::read_to_string(&status) else {
            continue; // not written yet
        };
        reads += 1;
        match parse_status(&text) {
            Ok(r) => {
                let total: usize = r.syncs.iter().map(|s| s.delays.len()).sum();
                max_len = max_len.max(text.len());
                versions.insert((total, text.len()));
            }
            Err(e) => bad = Some((e, text)),
        }
        if d.try_exit().is_some() {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().expect("writer thread");
    if let Some((err, text)) = bad {
        let tail: String = text
            .chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "status file read in an incomplete or malformed state after {reads} reads: {err}\n\
             ({} bytes; last 300:)\n{tail}",
            text.len()
        );
    }
    assert!(
        versions.len() >= 5,
        "saw only {} different reports in {reads} reads ({written} files written)\n{}",
        versions.len(),
        d.log()
    );
    assert!(
        max_len > MIN_LEN,
        "reports stayed small ({max_len} bytes), the test did not load the writer"
    );
    eprintln!(
        "{reads} reads of {} reports, up to {max_len} bytes; {written} files",
        versions.len()
    );
    assert_eq!(d.terminate(), 143);
}

// Logfile (SPEC §12.4)

#[test]
fn logfile_lines_have_ctime_prefix_and_category() {
    rsync_path();
    let dir = TestDir::new();
    dir.write("src/f", "f\n");
    let logfile = dir.path("lsyncd.log.file");
    let cfg = dir.config(
        "log.lua",
        &format!(
            "settings{{ logfile = {} }}\n\
             sync{{ default.rsync, source = {}, target = {}, delay = 1, exclude = {{ '*.tmp' }} }}\n",
            lua_path(&logfile),
            lua_path(&dir.src()),
            lua_path(&dir.dst()),
        ),
    );
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_startup();
    dir.write("src/g", "g\n");
    d.wait_trees_equal(&dir.src(), &dir.dst());
    assert_eq!(d.terminate(), 143);

    let text = fs::read_to_string(&logfile).expect("logfile written");
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.first().and_then(|l| logfile_line(l));
    match first {
        Some((_, "Normal", msg)) if msg.starts_with("--- Startup ---") => {}
        _ => panic!("first line should be `<ctime> Normal: --- Startup ---`\n{text}"),
    }
    // Messages may span lines (the exclude list of the startup rsync, the include list of a
    // live one); every line that is not such a continuation has the format.
    let mut parsed = 0;
    let mut multiline = false;
    for (i, l) in lines.iter().enumerate() {
        if let Some((_, _, msg)) = logfile_line(l) {
            parsed += 1;
            multiline = msg.ends_with(" excluding")
                || msg.ends_with(" filtering")
                || msg.ends_with("filter-list of new/modified files/dirs");
            continue;
        }
        assert!(
            multiline,
            "line {} not in logfile format: {l:?}\n{text}",
            i + 1
        );
    }
    assert!(parsed >= 4, "too few log lines\n{text}");
    for want in ["Normal: recursive ", "Normal: --- TERM signal, fading ---"] {
        assert!(
            lines
                .iter()
                .any(|l| logfile_line(l).is_some() && l[25..].starts_with(want)),
            "no `<ctime> {want}` line\n{text}"
        );
    }
    // The console format (`HH:MM:SS Category:`) does not leak into the file.
    assert!(
        !lines
            .iter()
            .any(|l| l.len() > 9 && l.as_bytes()[2] == b':' && l.as_bytes()[8] == b' '),
        "console-format line in the logfile\n{text}"
    );
}
