//! Health reports: `/metrics` scraped over real TCP while a live sync runs, the metrics file and
//! the JSON status file agreeing with it, state and lag of a sync whose target fails and is
//! repaired, the idle rewrite of the status file, and a strict parser of the Prometheus text
//! format that every page read here goes through.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::util::{lua_str, Daemon, TestDir};

/// One series: metric name and its labels in order, e.g. `lsyncd_sync_lag_seconds{sync="Sync1"}`.
type Series = String;

/// Parses the Prometheus text exposition format 0.0.4 strictly: every line a `# HELP`,
/// `# TYPE` or a sample; names and label names valid; label values only with `\\`, `\"` and
/// `\n` escapes; values parse as floats; each family's TYPE comes once, before its samples,
/// and its samples are contiguous; counters end in `_total`; no series twice.
pub fn parse_prometheus(text: &str) -> Result<BTreeMap<Series, f64>, String> {
    fn valid_name(n: &str, colon: bool) -> bool {
        let mut chars = n.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'));
        first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    let mut out = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, ()> = BTreeMap::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    if !text.ends_with('\n') {
        return Err("the page does not end with a newline".into());
    }
    for (no, line) in text.lines().enumerate() {
        let err = |m: &str| Err(format!("line {}: {m}: {line:?}", no + 1));
        if line.is_empty() {
            return err("empty line");
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, arg) = (parts.next(), parts.next(), parts.next());
            let Some(name) = name.filter(|n| valid_name(n, true)) else {
                return err("comment without a valid metric name");
            };
            match (kw, arg) {
                (Some("HELP"), Some(h)) if !h.is_empty() => {
                    if helps.insert(name.to_string(), ()).is_some() {
                        return err("second HELP");
                    }
                }
                (Some("TYPE"), Some(t)) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return err("unknown type");
                    }
                    if t == "counter" && !name.ends_with("_total") {
                        return err("counter not named *_total");
                    }
                    if types.insert(name.to_string(), t.to_string()).is_some() {
                        return err("second TYPE");
                    }
                    if let Some(c) = current.take() {
                        finished.push(c);
                    }
                    current = Some(name.to_string());
                }
                _ => return err("malformed comment"),
            }
            continue;
        }
        // a sample: name[{labels}] value
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if !valid_name(name, true) {
            return err("invalid metric name");
        }
        if current.as_deref() != Some(name) {
            return err("sample outside its family (no TYPE right before it)");
        }
        if finished.iter().any(|f| f == name) {
            return err("family not contiguous");
        }
        let mut rest = &line[name_end..];
        let mut series = name.to_string();
        if let Some(labels) = rest.strip_prefix('{') {
            series.push('{');
            let mut chars = labels.char_indices().peekable();
            let mut seen: Vec<String> = Vec::new();
            let end;
            loop {
                let start = match chars.peek() {
                    Some(&(i, '}')) => {
                        end = i;
                        break;
                    }
                    Some(&(i, _)) => i,
                    None => return err("unterminated labels"),
                };
                let eq = labels[start..].find('=').map(|e| start + e);
                let Some(eq) = eq else {
                    return err("label without =");
                };
                let lname = &labels[start..eq];
                if !valid_name(lname, false) || lname.starts_with("__") {
                    return err("invalid label name");
                }
                if seen.iter().any(|s| s == lname) {
                    return err("label twice");
                }
                seen.push(lname.to_string());
                while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return err("label value not quoted");
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => return err("bad escape in label value"),
                        },
                        Some((_, '"')) => break,
                        Some((_, '\n')) | None => return err("unterminated label value"),
                        Some((_, c)) => value.push(c),
                    }
                }
                if !series.ends_with('{') {
                    series.push(',');
                }
                series.push_str(&format!("{lname}={value:?}"));
                match chars.peek() {
                    Some(&(_, ',')) => {
                        chars.next();
                    }
                    Some(&(_, '}')) => {}
                    _ => return err("labels not separated by commas"),
                }
            }
            series.push('}');
            rest = &labels[end + 1..];
        }
        let Some(value) = rest.strip_prefix(' ') else {
            return err("no space before the value");
        };
        let mut fields = value.split(' ');
        let v = fields.next().unwrap_or("");
        let v: f64 = match v {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse() {
                Ok(x) => x,
                Err(_) => return err("value is not a number"),
            },
        };
        if let Some(ts) = fields.next() {
            if ts.parse::<i64>().is_err() {
                return err("timestamp is not an integer");
            }
        }
        if fields.next().is_some() {
            return err("trailing fields");
        }
        if out.insert(series, v).is_some() {
            return err("series twice");
        }
    }
    Ok(out)
}

/// `GET /metrics` over a real TCP connection: (status code, content type, body).
pub fn scrape(port: u16) -> Result<(u16, String, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let raw = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no header end")?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status code")?;
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_string();
    Ok((code, ctype, body.to_string()))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

fn scrape_ok(port: u16) -> BTreeMap<Series, f64> {
    let (code, ctype, body) = scrape(port).expect("scrape /metrics");
    assert_eq!(code, 200, "{body}");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    parse_prometheus(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

fn sample(m: &BTreeMap<Series, f64>, name: &str, sync: &str) -> f64 {
    let key = format!("{name}{{sync={sync:?}}}");
    *m.get(&key).unwrap_or_else(|| panic!("no {key} in {m:#?}"))
}

fn state(m: &BTreeMap<Series, f64>, sync: &str) -> String {
    let on: Vec<&str> = [
        "starting",
        "ok",
        "retrying",
        "failed",
        "waiting_for_tunnel",
        "source_gone",
    ]
    .into_iter()
    .filter(|s| m.get(&format!("lsyncd_sync_state{{sync={sync:?},state={s:?}}}")) == Some(&1.0))
    .collect();
    assert_eq!(on.len(), 1, "exactly one state is 1: {on:?}");
    on[0].to_string()
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

const COUNTERS: [(&str, &str); 5] = [
    ("lsyncd_sync_transfers_started_total", "transfers_started"),
    (
        "lsyncd_sync_transfers_succeeded_total",
        "transfers_succeeded",
    ),
    ("lsyncd_sync_transfers_failed_total", "transfers_failed"),
    ("lsyncd_sync_events_total", "events_received"),
    ("lsyncd_sync_events_excluded_total", "events_excluded"),
];

#[test]
fn metrics_move_during_a_live_sync_and_agree_across_http_file_and_json() {
    let dir = TestDir::new();
    dir.write("src/a.txt", "a\n");
    let port = free_port();
    let config = dir.config(
        "metrics.lua",
        &format!(
            "settings {{ statusFile = {}, statusFormat = 'json', metricsFile = {}, \
             metricsListen = '127.0.0.1:{port}', statusInterval = 1 }}\n\
             sync {{ default.rsync, source = {}, target = {}, delay = 0, \
             exclude = {{ '*.tmp' }} }}\n",
            lua_str(dir.path_str("status.json")),
            lua_str(dir.path_str("lsyncd.prom")),
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
        ),
    );
    let mut d = Daemon::config(&dir, &config, &[] as &[&str]);
    d.wait_startup();
    let name = "Sync1";
    let before = scrape_ok(port);
    assert_eq!(state(&before, name), "ok");
    assert!(sample(&before, "lsyncd_sync_transfers_started_total", name) >= 1.0);
    assert!(sample(&before, "lsyncd_sync_transfers_succeeded_total", name) >= 1.0);
    assert!(before["lsyncd_watches"] >= 1.0);
    assert!(sample(&before, "lsyncd_sync_last_success_timestamp_seconds", name) > 1e9);

    for i in 0..5 {
        dir.write(format!("src/f{i}.txt"), format!("{i}\n"));
        dir.write(format!("src/f{i}.tmp"), "x\n");
    }
    d.wait_for("the new files in the target", || {
        (0..5).all(|i| dir.exists(format!("dst/f{i}.txt")))
    });
    assert!(!dir.exists("dst/f0.tmp"));
    let mut after = BTreeMap::new();
    d.wait_for("the counters to move", || {
        after = scrape_ok(port);
        sample(&after, "lsyncd_sync_transfers_succeeded_total", name)
            > sample(&before, "lsyncd_sync_transfers_succeeded_total", name)
            && sample(&after, "lsyncd_sync_events_excluded_total", name) >= 5.0
            && sample(&after, "lsyncd_sync_pending_events", name) == 0.0
    });
    assert!(
        sample(&after, "lsyncd_sync_events_total", name)
            >= sample(&before, "lsyncd_sync_events_total", name) + 10.0
    );
    assert!(
        sample(&after, "lsyncd_sync_transfers_started_total", name)
            > sample(&before, "lsyncd_sync_transfers_started_total", name)
    );
    assert_eq!(sample(&after, "lsyncd_sync_lag_seconds", name), 0.0);
    assert_eq!(
        sample(&after, "lsyncd_sync_transfers_failed_total", name),
        0.0
    );

    // Idle now: the file and the JSON status catch up within statusInterval and then hold
    // the same counters as the HTTP page.
    let prom = dir.path("lsyncd.prom");
    let json = dir.path("status.json");
    d.wait_for(
        "the metrics file and JSON status to agree with /metrics",
        || {
            let http = scrape_ok(port);
            let Some(file) = std::fs::read_to_string(&prom)
                .ok()
                .and_then(|t| parse_prometheus(&t).ok())
            else {
                return false;
            };
            let Some(j) = read_json(&json) else {
                return false;
            };
            let js = &j["syncs"][0];
            js["name"] == name
                && js["state"] == "ok"
                && js["lag_seconds"] == 0
                && COUNTERS.iter().all(|(metric, key)| {
                    let h = sample(&http, metric, name);
                    file.get(&format!("{metric}{{sync={name:?}}}")) == Some(&h)
                        && js[key].as_f64() == Some(h)
                })
        },
    );
    let j = read_json(&json).expect("json status");
    assert_eq!(j["monitor"], "inotify");
    assert!(j["watches"].as_u64().is_some_and(|w| w >= 1), "{j}");
    assert!(j["syncs"][0]["last_failure"].is_null(), "{j}");
    // anything but /metrics is a 404
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("send");
    let mut r = String::new();
    s.read_to_string(&mut r).expect("read");
    assert!(
        r.starts_with("HTTP/1.0 404") || r.starts_with("HTTP/1.1 404"),
        "{r}"
    );
    assert_eq!(d.terminate(), 143);
}

#[test]
fn a_failing_target_shows_retrying_its_exit_code_and_growing_lag_then_ok_after_repair() {
    let dir = TestDir::new();
    dir.write("src/a.txt", "a\n");
    dir.mkdir("t");
    let port = free_port();
    let target = dir.path_str("t/dst");
    let config = dir.config(
        "failing.lua",
        &format!(
            "settings {{ metricsListen = '127.0.0.1:{port}' }}\n\
             sync {{ default.rsync, source = {}, target = {}, delay = 0 }}\n",
            lua_str(dir.path_str("src")),
            lua_str(&target),
        ),
    );
    let mut d = Daemon::config(&dir, &config, &[] as &[&str]);
    d.wait_startup();
    assert_eq!(state(&scrape_ok(port), "Sync1"), "ok");
    // The target's parent goes away: rsync ends with 11 (file I/O), which is retried.
    std::fs::rename(dir.path("t"), dir.path("t.away")).expect("move the target away");
    dir.write("src/b.txt", "b\n");
    let mut m = BTreeMap::new();
    d.wait_for("state retrying with exit code 11", || {
        m = scrape_ok(port);
        state(&m, "Sync1") == "retrying"
            && m.get("lsyncd_sync_last_failure_exit_code{sync=\"Sync1\"}") == Some(&11.0)
    });
    assert!(sample(&m, "lsyncd_sync_transfers_failed_total", "Sync1") >= 1.0);
    assert!(sample(&m, "lsyncd_sync_consecutive_failures", "Sync1") >= 1.0);
    assert!(sample(&m, "lsyncd_sync_pending_events", "Sync1") >= 1.0);
    assert!(sample(&m, "lsyncd_sync_last_failure_timestamp_seconds", "Sync1") > 1e9);
    let lag_then = sample(&m, "lsyncd_sync_lag_seconds", "Sync1");
    d.wait_for("the lag to grow", || {
        let m = scrape_ok(port);
        state(&m, "Sync1") == "retrying"
            && sample(&m, "lsyncd_sync_lag_seconds", "Sync1") >= lag_then + 2.0
    });
    // Repair: the target is back, the queued change goes through.
    std::fs::rename(dir.path("t.away"), dir.path("t")).expect("move the target back");
    d.wait_for("state ok and lag 0", || {
        let m = scrape_ok(port);
        state(&m, "Sync1") == "ok"
            && sample(&m, "lsyncd_sync_lag_seconds", "Sync1") == 0.0
            && sample(&m, "lsyncd_sync_consecutive_failures", "Sync1") == 0.0
    });
    assert_eq!(dir.read("t/dst/b.txt").as_deref(), Some(&b"b\n"[..]));
    assert_eq!(d.terminate(), 143);
}

#[test]
fn the_status_file_is_rewritten_while_idle() {
    for format in ["text", "json"] {
        let dir = TestDir::new();
        let status = dir.path("status");
        let config = dir.config(
            "idle.lua",
            &format!(
                "settings {{ statusFile = {}, statusFormat = '{format}', statusInterval = 1 }}\n\
                 sync {{ default.rsync, source = {}, target = {} }}\n",
                lua_str(dir.path_str("status")),
                lua_str(dir.path_str("src")),
                lua_str(dir.path_str("dst")),
            ),
        );
        dir.mkdir("src");
        let mut d = Daemon::config(&dir, &config, &[] as &[&str]);
        d.wait_startup();
        let mtime = || std::fs::metadata(&status).and_then(|m| m.modified()).ok();
        d.wait_for("a first status file", || mtime().is_some());
        // Nothing happens from now on; the file must still be rewritten, several times.
        for _ in 0..3 {
            let seen = mtime();
            d.wait_for("the idle rewrite", || mtime() != seen);
        }
        let text = std::fs::read(&status).expect("status");
        if format == "json" {
            let j: serde_json::Value = serde_json::from_slice(&text).expect("valid JSON");
            assert_eq!(j["syncs"][0]["state"], "ok", "{j}");
        } else {
            assert!(text.starts_with(b"Lsyncd status report at "));
        }
        assert_eq!(d.terminate(), 143);
    }
}

#[test]
fn a_bad_metrics_address_is_a_config_error_naming_the_key() {
    let dir = TestDir::new();
    dir.mkdir("src");
    let config = dir.config(
        "bad.lua",
        &format!(
            "settings {{ metricsListen = 'localhost' }}\n\
             sync {{ default.rsync, source = {}, target = {} }}\n",
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
        ),
    );
    let run = crate::util::run(&dir, &[config.as_os_str()]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("settings.metricsListen"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("\"localhost\""), "{}", run.stderr);
}

#[test]
fn the_strict_parser_rejects_what_prometheus_rejects() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{s=\"q\\\"\\\\\\n\"} 1\n";
    assert_eq!(parse_prometheus(ok).expect("valid").len(), 1);
    for bad in [
        "# TYPE a counter\na 1\n",               // counter without _total
        "# TYPE a gauge\na{s=\"x\"}1\n",         // no space
        "# TYPE a gauge\na{s=\"\\x\"} 1\n",      // bad escape
        "# TYPE a gauge\na{s=x} 1\n",            // unquoted
        "# TYPE a gauge\na 1\na 2\n",            // twice
        "# TYPE a gauge\na one\n",               // not a number
        "b 1\n",                                 // no TYPE
        "# TYPE a gauge\n# TYPE b gauge\na 1\n", // sample after another TYPE
        "# TYPE a gauge\na 1",                   // no final newline
        "# TYPE 1a gauge\n",                     // bad name
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn a_fatal_exit_code_shows_failed_for_that_sync_only_then_ok_after_repair() {
    let dir = TestDir::new();
    dir.write("src/a.txt", "a\n");
    dir.mkdir("src2");
    // rsync that ends with 1 (a fatal code) while the flag file exists
    let flag = dir.path("broken");
    let script = dir.write(
        "flaky-rsync.sh",
        format!(
            "#!/bin/sh\n[ -e '{}' ] && exit 1\nexec '{}' \"$@\"\n",
            flag.display(),
            crate::util::rsync_path().display()
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let port = free_port();
    let config = dir.config(
        "fatal.lua",
        &format!(
            "settings {{ metricsListen = '127.0.0.1:{port}', maxBackoff = 1 }}\n\
             sync {{ default.rsync, source = {}, target = {}, delay = 0, \
               rsync = {{ binary = {} }} }}\n\
             sync {{ default.rsync, source = {}, target = {}, delay = 0 }}\n",
            lua_str(dir.path_str("src")),
            lua_str(dir.path_str("dst")),
            lua_str(script.to_str().expect("utf8")),
            lua_str(dir.path_str("src2")),
            lua_str(dir.path_str("dst2")),
        ),
    );
    let mut d = Daemon::config(&dir, &config, &[] as &[&str]);
    d.wait_log_count("finished.", 2);
    std::fs::write(&flag, b"").expect("break the transfer");
    dir.write("src/b.txt", "b\n");
    let mut m = BTreeMap::new();
    d.wait_for("Sync1 failed with exit code 1", || {
        m = scrape_ok(port);
        state(&m, "Sync1") == "failed"
            && m.get("lsyncd_sync_last_failure_exit_code{sync=\"Sync1\"}") == Some(&1.0)
    });
    assert_eq!(state(&m, "Sync2"), "ok", "the other sync is not affected");
    d.wait_for("Sync1's lag to grow", || {
        sample(&scrape_ok(port), "lsyncd_sync_lag_seconds", "Sync1") >= 2.0
    });
    std::fs::remove_file(&flag).expect("repair");
    d.wait_for("Sync1 ok again with lag 0", || {
        let m = scrape_ok(port);
        state(&m, "Sync1") == "ok" && sample(&m, "lsyncd_sync_lag_seconds", "Sync1") == 0.0
    });
    assert_eq!(dir.read("dst/b.txt").as_deref(), Some(&b"b\n"[..]));
    assert_eq!(d.terminate(), 143);
}
