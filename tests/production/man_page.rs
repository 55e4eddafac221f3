//! The man page: it renders without warnings and documents every option. The option names
//! come from the flag table `FLAGS` in `src/cli.rs` (every `names: &[...]` entry, so hidden
//! `-monitor` is included, which `-help` would not list) and are looked for in the rendered
//! OPTIONS section.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use super::{have, manifest_dir};

/// Every option name of `FLAGS` in `src/cli.rs` (the `names: &[...]` entries).
fn cli_option_names() -> Vec<String> {
    let path = manifest_dir().join("src/cli.rs");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    let start = text
        .find("const FLAGS: &[Flag] = &[")
        .expect("FLAGS table in src/cli.rs");
    let end = start + text[start..].find("\n];").expect("end of FLAGS");
    let mut names = Vec::new();
    for chunk in text[start..end].split("names: &[").skip(1) {
        let list = &chunk[..chunk.find(']').expect("end of names list")];
        for quoted in list.split(',') {
            let name = quoted.trim().trim_matches('"');
            if !name.is_empty() {
                names.push(name.to_owned());
            }
        }
    }
    names
}

#[test]
fn man_page_renders_without_warnings_and_documents_every_option() {
    let man = manifest_dir().join("man/lsyncd.1");
    assert!(man.is_file(), "{man:?} missing");
    assert!(
        have("groff"),
        "groff not found: this test renders the man page with it (apt-get install groff-base)"
    );
    let check = Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(&man)
        .output()
        .expect("run groff");
    assert!(
        check.status.success() && check.stderr.is_empty() && check.stdout.is_empty(),
        "groff -man -ww -z reported:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    if have("mandoc") {
        let lint = Command::new("mandoc")
            .args(["-T", "lint", "-W", "warning"])
            .arg(&man)
            .output()
            .expect("run mandoc");
        assert!(
            lint.status.success() && lint.stdout.is_empty(),
            "mandoc -T lint reported:\n{}{}",
            String::from_utf8_lossy(&lint.stdout),
            String::from_utf8_lossy(&lint.stderr)
        );
    }
    // Render to plain text and collect the words of the OPTIONS section.
    let out = Command::new("groff")
        .args([
            "-man",
            "-Tascii",
            "-P-c",
            "-P-b",
            "-P-u",
            "-P-o",
            "-rLL=200n",
        ])
        .arg(&man)
        .env("GROFF_NO_SGR", "1")
        .output()
        .expect("render man page");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "CONFIGURATION",
        "SIGNALS",
        "FILES",
        "EXIT STATUS",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        assert!(
            text.lines().any(|l| l == section),
            "section {section} missing from the rendered page"
        );
    }
    let options: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "OPTIONS")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect();
    let words: BTreeSet<&str> = options
        .iter()
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || ",[]|".contains(c)))
        .collect();
    let names = cli_option_names();
    assert!(
        names.len() >= 17 && names.iter().any(|n| n == "t") && names.iter().any(|n| n == "monitor"),
        "could not read the flag table of src/cli.rs: {names:?}"
    );
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| {
            !words.contains(format!("-{n}").as_str()) && !words.contains(format!("--{n}").as_str())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "options of src/cli.rs not documented in the OPTIONS section: {missing:?}"
    );
    for other in ["rsync(1)", "ssh(1)", "inotify(7)"] {
        assert!(text.contains(other), "SEE ALSO should name {other}");
    }
}
