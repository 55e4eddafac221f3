//! Exclude and filter rules of one Sync (SPEC §5.1–5.4, §5.6, §5.7).
//!
//! Owns: compiling upstream's rsync-*like* patterns and matching them against relative paths
//! (raw bytes, leading `/`, directories with a trailing `/`), the exclude set, the ordered filter
//! list, and the text handed to rsync at startup (`rsync_stdin`).
//! Must not touch: files, logging, Lua, the clock. Callers read `excludeFrom`/`filterFrom`
//! files themselves and pass their contents in; errors come back as values.
//!
//! Upstream translates each pattern into a Lua pattern and searches the path with it. That
//! translation makes for a few quirks that configs rely on, all kept here:
//!
//! * every character except `?` and `*` is literal, so `[ab]` matches the text `[ab]`;
//! * `?` is one byte except `/`, `*` is any run of bytes except `/`, and two or more stars
//!   (`**`, `***`, …) are any run of bytes including `/`;
//! * a pattern starting with `/` is anchored at the start of the path; any other pattern gets
//!   a `/` prepended, so it starts at a path-component boundary anywhere in the path;
//! * a match counts only if it is followed by `/` or by the end of the path, except for a
//!   pattern ending in `$`, which may be followed by anything;
//! * hence `foo/` matches only the directory path `/…/foo/` itself, not the files in it, and
//!   the empty pattern (`/` after translation) matches every directory path.
//!
//! Matching runs on every inotify event, so it allocates nothing (patterns under 256 bytes): a
//! pattern without wildcards is a plain substring test at each `/`; any other pattern is
//! pre-checked for its literal head and tail, then runs a bit-set NFA simulation (time linear
//! in the path length, no backtracking blow-up). No regex crate: patterns are tiny.

use std::fmt;

/// One element of a compiled pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// A literal byte.
    Byte(u8),
    /// `?`: exactly one byte except `/`.
    AnyButSlash,
    /// `*`: zero or more bytes except `/`.
    StarButSlash,
    /// `**` (or a longer run of stars): zero or more bytes, `/` included.
    StarAny,
}

impl Op {
    fn literal(&self) -> Option<u8> {
        match self {
            Op::Byte(b) => Some(*b),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
enum Program {
    /// The pattern has no wildcard: one literal, always starting with `/`.
    Literal(Box<[u8]>),
    /// General case, matched by [`nfa_match`].
    Ops(Box<[Op]>),
}

/// A compiled pattern (upstream's `toLuaPattern` result plus the end-condition flag).
#[derive(Clone, Debug)]
struct Matcher {
    /// Pattern started with `/`: the match must start at byte 0.
    anchored: bool,
    /// Pattern ended with `$`: no "followed by `/` or end" condition.
    open_end: bool,
    /// The literal bytes a general pattern ends with (may be empty). Unless `open_end`, a
    /// match needs them right before a `/` or the end of the path: a cheap pre-check.
    suffix: Box<[u8]>,
    /// The literal bytes a general pattern starts with (at least the `/`). A match needs
    /// them somewhere in the path (at byte 0 if `anchored`): another cheap pre-check.
    prefix: Box<[u8]>,
    program: Program,
}

impl Matcher {
    fn compile(raw: &[u8]) -> Matcher {
        let anchored = raw.first() == Some(&b'/');
        let open_end = raw.last() == Some(&b'$');
        let mut ops = Vec::with_capacity(raw.len() + 1);
        if !anchored {
            ops.push(Op::Byte(b'/'));
        }
        let mut i = 0;
        while let Some(&b) = raw.get(i) {
            match b {
                b'?' => ops.push(Op::AnyButSlash),
                b'*' => {
                    let run = raw[i..].iter().take_while(|&&c| c == b'*').count();
                    // Upstream rewrites each `**` into "anything"; a third star adds a
                    // "[^/]*" after it, which accepts nothing more, so any run ≥ 2 is StarAny.
                    ops.push(if run >= 2 {
                        Op::StarAny
                    } else {
                        Op::StarButSlash
                    });
                    i += run;
                    continue;
                }
                _ => ops.push(Op::Byte(b)),
            }
            i += 1;
        }
        let prefix: Box<[u8]> = ops.iter().map_while(Op::literal).collect();
        if prefix.len() == ops.len() {
            return Matcher {
                anchored,
                open_end,
                suffix: Box::default(),
                prefix: Box::default(),
                program: Program::Literal(prefix),
            };
        }
        let mut suffix: Vec<u8> = ops.iter().rev().map_while(Op::literal).collect();
        suffix.reverse();
        Matcher {
            anchored,
            open_end,
            suffix: suffix.into_boxed_slice(),
            prefix,
            program: Program::Ops(ops.into_boxed_slice()),
        }
    }

    /// Whether a match ending at `end` satisfies the end condition (SPEC §5.2).
    fn end_ok(&self, path: &[u8], end: usize) -> bool {
        self.open_end || end == path.len() || path[end] == b'/'
    }

    /// Whether `prefix` occurs where a match could start.
    fn prefix_possible(&self, path: &[u8]) -> bool {
        if self.anchored {
            return path.starts_with(&self.prefix);
        }
        path.windows(self.prefix.len().max(1))
            .any(|w| w == &*self.prefix)
    }

    /// Whether some component end (a `/` or the end of the path) is preceded by `suffix`.
    fn suffix_possible(&self, path: &[u8]) -> bool {
        if self.open_end || self.suffix.is_empty() {
            return true;
        }
        let slashes = path.iter().enumerate().filter(|(_, &b)| b == b'/');
        slashes
            .map(|(end, _)| end)
            .chain(std::iter::once(path.len()))
            .any(|end| path[..end].ends_with(&self.suffix))
    }

    fn is_match(&self, path: &[u8]) -> bool {
        match &self.program {
            Program::Literal(lit) => {
                if self.anchored {
                    return path.starts_with(lit) && self.end_ok(path, lit.len());
                }
                let Some(last_start) = path.len().checked_sub(lit.len()) else {
                    return false;
                };
                // `lit` always starts with `/`, so only component boundaries can start a match.
                (0..=last_start).any(|i| {
                    path[i] == b'/'
                        && path[i..].starts_with(lit)
                        && self.end_ok(path, i + lit.len())
                })
            }
            Program::Ops(ops) => {
                self.prefix_possible(path)
                    && self.suffix_possible(path)
                    && nfa_match(self, ops, path)
            }
        }
    }
}

/// Bit-set words kept on the stack; patterns of fewer than 256 ops never allocate.
const INLINE_WORDS: usize = 4;

/// Thompson simulation of `ops` over `path`. State `s` means "ops[..s] matched"; state
/// `ops.len()` accepts. An unanchored pattern starts a new thread at every position.
fn nfa_match(m: &Matcher, ops: &[Op], path: &[u8]) -> bool {
    let accept = ops.len();
    let words = (accept + 1).div_ceil(64);
    let mut inline = [0u64; 2 * INLINE_WORDS];
    let mut heap = Vec::new();
    let buf: &mut [u64] = if words <= INLINE_WORDS {
        &mut inline[..2 * words]
    } else {
        heap.resize(2 * words, 0);
        &mut heap
    };
    let (mut cur, mut next) = buf.split_at_mut(words);
    for pos in 0..=path.len() {
        if pos == 0 || !m.anchored {
            add_state(cur, ops, 0);
        }
        if cur[accept / 64] & (1 << (accept % 64)) != 0 && m.end_ok(path, pos) {
            return true;
        }
        let Some(&c) = path.get(pos) else {
            break;
        };
        next.fill(0);
        for (w, &word) in cur.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let s = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                match ops.get(s) {
                    Some(Op::Byte(b)) if *b == c => add_state(next, ops, s + 1),
                    Some(Op::AnyButSlash) if c != b'/' => add_state(next, ops, s + 1),
                    Some(Op::StarButSlash) if c != b'/' => add_state(next, ops, s),
                    Some(Op::StarAny) => add_state(next, ops, s),
                    _ => {}
                }
            }
        }
        std::mem::swap(&mut cur, &mut next);
        if m.anchored && cur.iter().all(|&w| w == 0) {
            return false;
        }
    }
    false
}

/// Adds state `s` and everything reachable from it without consuming a byte (stars may match
/// nothing).
fn add_state(set: &mut [u64], ops: &[Op], mut s: usize) {
    loop {
        let (w, bit) = (s / 64, 1u64 << (s % 64));
        if set[w] & bit != 0 {
            return; // already present, and so is its closure
        }
        set[w] |= bit;
        match ops.get(s) {
            Some(Op::StarButSlash | Op::StarAny) => s += 1,
            _ => return,
        }
    }
}

/// A pattern with the text it was compiled from (needed for removal and for rsync).
#[derive(Clone, Debug)]
struct Pattern {
    raw: Box<[u8]>,
    matcher: Matcher,
}

impl Pattern {
    fn new(raw: &[u8]) -> Pattern {
        Pattern {
            raw: raw.into(),
            matcher: Matcher::compile(raw),
        }
    }
}

/// One filter rule: `+`/`|` include, `-` exclude (the sign is kept as written for rsync).
#[derive(Clone, Debug)]
struct FilterRule {
    sign: u8,
    pattern: Pattern,
}

/// The rule that decided a path, for `-explain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule<'a> {
    /// A `filter` rule: `sign` is `+`, `-` or `|`.
    Filter { sign: u8, pattern: &'a [u8] },
    /// An `exclude` pattern.
    Exclude { pattern: &'a [u8] },
}

impl Rule<'_> {
    /// Whether the rule excludes the path.
    pub(crate) fn excludes(&self) -> bool {
        match self {
            Rule::Filter { sign, .. } => *sign == b'-',
            Rule::Exclude { .. } => true,
        }
    }

    /// `filter rule "- *.tmp"` or `exclude pattern "*.tmp"`.
    pub(crate) fn describe(&self) -> Vec<u8> {
        match self {
            Rule::Filter { sign, pattern } => {
                [b"filter rule \"".as_slice(), &[*sign, b' '], pattern, b"\""].concat()
            }
            Rule::Exclude { pattern } => {
                [b"exclude pattern \"".as_slice(), pattern, b"\""].concat()
            }
        }
    }
}

/// A filter line that is not `[ws] (+|-||) [ws] pattern`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FilterError {
    /// The offending line, as given.
    pub(crate) line: Vec<u8>,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Unknown filter rule: \"{}\"",
            String::from_utf8_lossy(&self.line)
        )
    }
}

impl std::error::Error for FilterError {}

/// The exclude set and optional filter list of one Sync.
#[derive(Clone, Debug, Default)]
pub(crate) struct Excludes {
    /// Unique by raw pattern, in insertion order (upstream: a set, order unspecified).
    excludes: Vec<Pattern>,
    /// `None` = the Sync has no filter list (`inlet.hasFilters()` is false). An empty list
    /// still counts as present: upstream creates it as soon as `filter`/`filterFrom` is set.
    filters: Option<Vec<FilterRule>>,
}

/// C `isspace` in the C locale, which is what Lua's `%s` uses.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn trim_start_space(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_space(b)).count();
    &s[n..]
}

/// Lines as Lua's `file:lines()` yields them: split on `\n`, `\r` kept. A final empty piece
/// is blank and therefore skipped by both callers anyway.
fn lines(contents: &[u8]) -> impl Iterator<Item = &[u8]> {
    contents.split(|&b| b == b'\n')
}

/// `[ws] sign [ws] pattern`; the pattern is the rest of the line, possibly empty.
fn parse_filter_line(line: &[u8]) -> Result<(u8, &[u8]), FilterError> {
    match trim_start_space(line).split_first() {
        Some((&sign @ (b'+' | b'-' | b'|'), rest)) => Ok((sign, trim_start_space(rest))),
        _ => Err(FilterError {
            line: line.to_vec(),
        }),
    }
}

/// Upstream's log line for a new pattern (category `Exclude` or `Filter`): the pattern and the
/// Lua pattern upstream turned it into, `toLuaPattern "P" = "L"`. The matcher here does not use
/// that translation; the line keeps `-log Exclude` output comparable with upstream's.
fn log_pattern(category: &[u8], pattern: &[u8]) {
    crate::log::with(category, || {
        let mut line = b"toLuaPattern \"".to_vec();
        line.extend_from_slice(pattern);
        line.extend_from_slice(b"\" = \"");
        line.extend_from_slice(&lua_pattern(pattern));
        line.push(b'"');
        line
    });
}

/// The Lua pattern upstream derives from an rsync-like pattern: magic characters escaped with
/// `%`, `?` as `[^/]`, `*` as `[^/]*`, `**` as `.*`, a leading `/` anchored with `^`, and any
/// other pattern made to start at a `/`.
fn lua_pattern(pattern: &[u8]) -> Vec<u8> {
    const ONE: &[u8] = b"[^/]*";
    let mut p = Vec::with_capacity(pattern.len() * 2 + 2);
    for &c in pattern {
        match c {
            b'%' | b'^' | b'$' | b'(' | b')' | b'.' | b'[' | b']' | b'+' | b'-' => {
                p.push(b'%');
                p.push(c);
            }
            b'?' => p.extend_from_slice(b"[^/]"),
            b'*' => p.extend_from_slice(ONE),
            c => p.push(c),
        }
    }
    // `[^/]*[^/]*` (a `**`) becomes `.*`, scanning left to right without overlaps.
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i..].starts_with(ONE) && p[i + ONE.len()..].starts_with(ONE) {
            out.extend_from_slice(b".*");
            i += 2 * ONE.len();
        } else {
            out.push(p[i]);
            i += 1;
        }
    }
    if out.starts_with(b"/") {
        out.insert(0, b'^');
    } else {
        out.insert(0, b'/');
    }
    out
}

impl Excludes {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds an exclude pattern; an already present pattern is ignored.
    pub(crate) fn add_exclude(&mut self, pattern: &[u8]) {
        log_pattern(b"Exclude", pattern);
        if !self.excludes.iter().any(|p| &*p.raw == pattern) {
            self.excludes.push(Pattern::new(pattern));
        }
    }

    /// Removes an exclude pattern; `false` if it was not present (the caller logs
    /// `Removing not excluded exclude "P"`, SPEC §5.7).
    pub(crate) fn remove_exclude(&mut self, pattern: &[u8]) -> bool {
        let before = self.excludes.len();
        self.excludes.retain(|p| &*p.raw != pattern);
        self.excludes.len() != before
    }

    /// Marks the filter list as present even if it stays empty (`filter = {}` in a config).
    pub(crate) fn enable_filters(&mut self) {
        self.filters.get_or_insert_with(Vec::new);
    }

    /// Parses one rule line (SPEC §5.4) and appends it; creates the filter list if needed.
    pub(crate) fn append_filter(&mut self, line: &[u8]) -> Result<(), FilterError> {
        let (sign, pattern) = parse_filter_line(line)?;
        log_pattern(b"Filter", pattern);
        self.filters.get_or_insert_with(Vec::new).push(FilterRule {
            sign,
            pattern: Pattern::new(pattern),
        });
        Ok(())
    }

    /// `excludeFrom` contents (SPEC §5.3): blank, `#` and `+` lines are skipped; otherwise
    /// leading whitespace, one optional `-` and the whitespace after it are dropped and the
    /// rest of the line (trailing blanks and a CRLF `\r` included) is the pattern.
    pub(crate) fn load_exclude_file(&mut self, contents: &[u8]) {
        for line in lines(contents) {
            let text = trim_start_space(line);
            if matches!(text.first(), None | Some(b'+' | b'#')) {
                continue;
            }
            let text = text.strip_prefix(b"-").unwrap_or(text);
            self.add_exclude(trim_start_space(text));
        }
    }

    /// `filterFrom` contents (SPEC §5.4): blank and `#` lines skipped, every other line is a
    /// rule. All-or-nothing: on a bad line nothing is appended. The list becomes present even
    /// if the file holds no rule.
    pub(crate) fn load_filter_file(&mut self, contents: &[u8]) -> Result<(), FilterError> {
        let mut rules = Vec::new();
        for line in lines(contents) {
            if matches!(trim_start_space(line).first(), None | Some(b'#')) {
                continue;
            }
            let (sign, pattern) = parse_filter_line(line)?;
            rules.push(FilterRule {
                sign,
                pattern: Pattern::new(pattern),
            });
        }
        for r in &rules {
            log_pattern(b"Filter", &r.pattern.raw);
        }
        self.filters.get_or_insert_with(Vec::new).extend(rules);
        Ok(())
    }

    /// Whether a relative path is excluded: filter rules in order, first match wins (`-` →
    /// excluded, `+`/`|` → not); without a matching rule the exclude set decides. The root `/`
    /// (and the empty path of Init/Blanket events) is never excluded.
    pub(crate) fn is_excluded(&self, rel_path: &[u8]) -> bool {
        match self.decide(rel_path) {
            Some(Rule::Filter { sign, .. }) => sign == b'-',
            Some(Rule::Exclude { .. }) => true,
            None => false,
        }
    }

    /// The rule that decides a relative path (the one [`Excludes::is_excluded`] follows), or
    /// `None` when no rule matches and the path is therefore not excluded.
    pub(crate) fn decide(&self, rel_path: &[u8]) -> Option<Rule<'_>> {
        if rel_path.is_empty() || rel_path == b"/" {
            return None;
        }
        if let Some(rules) = &self.filters {
            if let Some(rule) = rules.iter().find(|r| r.pattern.matcher.is_match(rel_path)) {
                return Some(Rule::Filter {
                    sign: rule.sign,
                    pattern: &rule.pattern.raw,
                });
            }
        }
        self.excludes
            .iter()
            .find(|p| p.matcher.is_match(rel_path))
            .map(|p| Rule::Exclude { pattern: &p.raw })
    }

    /// The raw exclude patterns in insertion order (`inlet.getExcludes()`).
    pub(crate) fn excludes(&self) -> Vec<Vec<u8>> {
        self.excludes.iter().map(|p| p.raw.to_vec()).collect()
    }

    /// `"<sign> <pattern>"` per filter rule, then `"- <pattern>"` per exclude
    /// (`inlet.getFilters()`).
    pub(crate) fn filters(&self) -> Vec<Vec<u8>> {
        let excludes = self.excludes.iter().map(|p| (b'-', p));
        Self::lines(self.rules().chain(excludes))
    }

    /// `"<sign> <pattern>"` per filter rule only, as the status file lists them (SPEC §12.1:
    /// upstream never lists the excludes there).
    pub(crate) fn filter_rules(&self) -> Vec<Vec<u8>> {
        Self::lines(self.rules())
    }

    fn rules(&self) -> impl Iterator<Item = (u8, &Pattern)> {
        self.filters.iter().flatten().map(|r| (r.sign, &r.pattern))
    }

    fn lines<'a>(items: impl Iterator<Item = (u8, &'a Pattern)>) -> Vec<Vec<u8>> {
        items
            .map(|(sign, p)| {
                let mut line = Vec::with_capacity(p.raw.len() + 2);
                line.push(sign);
                line.push(b' ');
                line.extend_from_slice(&p.raw);
                line
            })
            .collect()
    }

    /// Whether the Sync has a filter list (`inlet.hasFilters()`), even an empty one.
    pub(crate) fn has_filters(&self) -> bool {
        self.filters.is_some()
    }

    /// What a startup/full rsync gets (SPEC §5.6): the stdin text (lines joined by `\n`, no
    /// trailing newline) and the matching argument, or `None` when there is nothing to pass.
    #[cfg(test)]
    pub(crate) fn rsync_stdin(&self) -> Option<(Vec<u8>, &'static str)> {
        if self.has_filters() {
            Some((self.filters().join(&b'\n'), "--filter=. -"))
        } else if !self.excludes.is_empty() {
            Some((self.excludes().join(&b'\n'), "--exclude-from=-"))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_pattern_is_upstreams_translation() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"*.tmp", b"/[^/]*%.tmp"),
            (b"/cache/", b"^/cache/"),
            (b"a+b", b"/a%+b"),
            (b"/x/**/y?", b"^/x/.*/y[^/]"),
            (b"***", b"/.*[^/]*"),
            (b"100%", b"/100%%"),
        ];
        for (pattern, want) in cases {
            assert_eq!(
                String::from_utf8_lossy(&lua_pattern(pattern)),
                String::from_utf8_lossy(want)
            );
        }
    }

    fn excluding(pattern: &[u8]) -> Excludes {
        let mut ex = Excludes::new();
        ex.add_exclude(pattern);
        ex
    }

    /// Whether the exclude pattern excludes the path is `want`.
    fn check(pat: &[u8], path: &[u8], want: bool) {
        assert_eq!(
            excluding(pat).is_excluded(path),
            want,
            "pattern {:?} should {}exclude {:?}",
            String::from_utf8_lossy(pat),
            if want { "" } else { "not " },
            String::from_utf8_lossy(path)
        );
    }

    /// `matches!(name, pattern, path)`: the exclude pattern excludes the path.
    macro_rules! matches {
        ($name:ident, $pat:expr, $path:expr) => {
            #[test]
            fn $name() {
                check($pat, $path, true);
            }
        };
    }

    /// `nmatches!(name, pattern, path)`: the exclude pattern does not exclude the path.
    macro_rules! nmatches {
        ($name:ident, $pat:expr, $path:expr) => {
            #[test]
            fn $name() {
                check($pat, $path, false);
            }
        };
    }

    // SPEC §5.2 reference table, row by row.
    matches!(name_matches_top_file, b"foo", b"/foo");
    matches!(name_matches_top_dir, b"foo", b"/foo/");
    matches!(name_matches_nested_file, b"foo", b"/a/foo");
    matches!(name_matches_inside_nested_dir, b"foo", b"/a/foo/b");
    nmatches!(name_needs_end_of_component, b"foo", b"/foobar");
    nmatches!(name_needs_start_of_component, b"foo", b"/afoo");
    nmatches!(name_does_not_match_with_suffix, b"foo", b"/a/foo.txt");

    matches!(anchored_matches_top_file, b"/foo", b"/foo");
    matches!(anchored_matches_top_dir, b"/foo", b"/foo/");
    matches!(anchored_matches_inside_top_dir, b"/foo", b"/foo/b");
    nmatches!(anchored_does_not_match_nested, b"/foo", b"/a/foo");

    matches!(dir_only_matches_top_dir, b"foo/", b"/foo/");
    matches!(dir_only_matches_nested_dir, b"foo/", b"/a/foo/");
    nmatches!(dir_only_does_not_match_file, b"foo/", b"/foo");
    nmatches!(dir_only_does_not_match_files_inside, b"foo/", b"/a/foo/b");

    matches!(star_suffix_matches_top_file, b"*.tmp", b"/x.tmp");
    matches!(star_suffix_matches_nested_file, b"*.tmp", b"/a/x.tmp");
    matches!(star_matches_empty_name_part, b"*.tmp", b"/.tmp");
    matches!(star_suffix_matches_dir, b"*.tmp", b"/a/x.tmp/");
    nmatches!(star_suffix_needs_end, b"*.tmp", b"/x.tmpl");

    matches!(inner_star_matches_empty, b"a*b", b"/ab");
    matches!(inner_star_matches_one, b"a*b", b"/axb");
    matches!(inner_star_matches_in_middle_component, b"a*b", b"/c/axxb/d");
    nmatches!(single_star_does_not_cross_slash, b"a*b", b"/a/b");

    matches!(double_star_crosses_one_dir, b"/a/**/z", b"/a/b/z");
    matches!(double_star_crosses_two_dirs, b"/a/**/z", b"/a/b/c/z");
    nmatches!(double_star_keeps_the_slashes_around_it, b"/a/**/z", b"/a/z");

    matches!(leading_double_star_top, b"**.bak", b"/x.bak");
    matches!(leading_double_star_nested, b"**.bak", b"/d/x.bak");

    matches!(question_mark_matches_one_byte, b"a?c", b"/abc");
    nmatches!(question_mark_does_not_match_slash, b"a?c", b"/a/c");
    nmatches!(question_mark_does_not_match_nothing, b"a?c", b"/ac");

    matches!(brackets_are_literal, b"[ab]", b"/[ab]");
    nmatches!(brackets_are_not_a_class, b"[ab]", b"/a");

    matches!(dir_star_matches_file, b"d/*", b"/d/x");
    matches!(dir_star_matches_dir, b"d/*", b"/d/x/");
    matches!(dir_star_matches_deeper, b"d/*", b"/d/x/y");
    matches!(dir_star_is_unanchored, b"d/*", b"/e/d/x");

    // Anchoring, `**`, `?`, regex specials.
    nmatches!(anchored_needs_start, b"/a/b", b"/x/a/b");
    matches!(anchored_multi_component, b"/a/b", b"/a/b/c");
    matches!(inner_path_is_unanchored, b"a/b", b"/x/a/b");
    nmatches!(inner_path_needs_component_start, b"a/b", b"/xa/b");
    matches!(double_star_matches_nothing, b"a**b", b"/ab");
    matches!(double_star_spans_components, b"a**b", b"/a/x/b");
    matches!(triple_star_is_double_star, b"a***b", b"/a/x/b");
    matches!(double_star_alone_matches_dir, b"/**", b"/a/");
    matches!(star_alone_matches_any_name, b"*", b"/anything");
    matches!(question_marks_count_bytes, b"??", b"/ab");
    nmatches!(question_marks_need_exact_count, b"??", b"/abc");
    matches!(star_then_question_needs_one, b"*?", b"/a");
    nmatches!(star_question_star_needs_one, b"*?*", b"//");
    matches!(dot_is_literal, b"a.c", b"/a.c");
    nmatches!(dot_is_not_any, b"a.c", b"/abc");
    matches!(percent_is_literal, b"100%", b"/100%");
    matches!(caret_is_literal, b"^a", b"/^a");
    nmatches!(caret_is_not_an_anchor, b"^a", b"/a");
    matches!(parens_plus_minus_are_literal, b"(a+b-c)", b"/(a+b-c)");
    nmatches!(plus_is_not_repetition, b"a+", b"/aa");
    matches!(empty_pattern_matches_every_dir, b"", b"/a/b/");
    nmatches!(empty_pattern_does_not_match_files, b"", b"/a/b");

    // The `$` special case: no end condition.
    matches!(dollar_suffix_matches_exactly, b"foo$", b"/foo$");
    matches!(dollar_suffix_has_no_end_condition, b"foo$", b"/foo$bar");
    nmatches!(dollar_suffix_is_literal, b"foo$", b"/foo");
    matches!(dollar_in_middle_is_literal, b"a$b", b"/a$b");
    nmatches!(dollar_in_middle_keeps_end_condition, b"a$b", b"/a$bc");
    matches!(wildcard_dollar_has_no_end_condition, b"*x$", b"/ax$yz");

    // Bytes, not text.
    matches!(non_utf8_literal, b"\xff\xfe", b"/a/\xff\xfe");
    matches!(question_matches_non_utf8_byte, b"a?", b"/a\xff");
    matches!(star_matches_non_utf8_bytes, b"*.\xe9", b"/d/x\x80.\xe9/");
    nmatches!(question_matches_one_byte_not_one_char, b"a?", b"/a\xc3\xa9");

    #[test]
    fn root_and_empty_path_are_never_excluded() {
        for pat in [&b"/"[..], b"", b"*", b"**", b"/**", b"/$"] {
            let ex = excluding(pat);
            assert!(!ex.is_excluded(b"/"), "{pat:?}");
            assert!(!ex.is_excluded(b""), "{pat:?}");
        }
        let mut ex = Excludes::new();
        ex.append_filter(b"- **").unwrap();
        assert!(!ex.is_excluded(b"/"));
        assert!(ex.is_excluded(b"/a"));
    }

    #[test]
    fn long_patterns_use_the_heap_bit_set() {
        let mut pat = b"*".to_vec();
        pat.extend(std::iter::repeat_n(b'a', 300));
        let mut path = b"/d/x".to_vec();
        path.extend(std::iter::repeat_n(b'a', 300));
        assert!(excluding(&pat).is_excluded(&path));
        path.pop();
        assert!(!excluding(&pat).is_excluded(&path));
    }

    #[test]
    fn duplicates_ignored_and_removal_reports_presence() {
        let mut ex = Excludes::new();
        ex.add_exclude(b"b");
        ex.add_exclude(b"a");
        ex.add_exclude(b"b");
        assert_eq!(ex.excludes(), vec![b"b".to_vec(), b"a".to_vec()]);
        assert!(ex.is_excluded(b"/b"));
        assert!(ex.remove_exclude(b"b"));
        assert!(!ex.remove_exclude(b"b"));
        assert!(!ex.is_excluded(b"/b"));
        assert_eq!(ex.excludes(), vec![b"a".to_vec()]);
    }

    #[test]
    fn exclude_file_line_rules() {
        let mut ex = Excludes::new();
        ex.load_exclude_file(
            b"# comment\n   # indented comment\n+ /included\n  + also\n\n   \n\
              \t\r\n- minus\n  -   spaced \nplain\r\n-nospace\n/last",
        );
        let want: Vec<Vec<u8>> = [&b"minus"[..], b"spaced ", b"plain\r", b"nospace", b"/last"]
            .iter()
            .map(|s| s.to_vec())
            .collect();
        assert_eq!(ex.excludes(), want);
        assert!(!ex.has_filters());
        // The CRLF `\r` stays part of the pattern, as upstream.
        assert!(!ex.is_excluded(b"/plain"));
        assert!(ex.is_excluded(b"/plain\r"));
    }

    #[test]
    fn exclude_file_lone_minus_is_empty_pattern() {
        let mut ex = Excludes::new();
        ex.load_exclude_file(b"-\n");
        assert_eq!(ex.excludes(), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn filter_line_parsing() {
        // Each line and the rule it becomes; `None`: it is rejected and adds nothing.
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"- foo", Some(b"- foo")),
            (b"+ foo", Some(b"+ foo")),
            (b"| foo", Some(b"| foo")),
            (b"-foo", Some(b"- foo")),
            (b"  \t+   foo bar ", Some(b"+ foo bar ")),
            (b"- foo\r", Some(b"- foo\r")),
            (b"-", Some(b"- ")),
            (b"- - x", Some(b"- - x")),
            (b"", None),
            (b"   ", None),
            (b"foo", None),
            (b"* foo", None),
            (b"foo - bar", None),
            (b"#- x", None),
        ];
        for &(line, want) in cases {
            let mut ex = Excludes::new();
            match (ex.append_filter(line), want) {
                (Ok(()), Some(want)) => assert_eq!(ex.filters(), vec![want.to_vec()], "{line:?}"),
                (Err(err), None) => {
                    assert_eq!(err.line, line);
                    assert!(!ex.has_filters());
                }
                (got, _) => panic!("{line:?}: {got:?}"),
            }
        }
        let err = Excludes::new().append_filter(b"x y").unwrap_err();
        assert_eq!(err.to_string(), "Unknown filter rule: \"x y\"");
    }

    #[test]
    fn filter_file_skips_comments_and_is_all_or_nothing() {
        let mut ex = Excludes::new();
        ex.load_filter_file(b"# c\n\n  \r\n+ keep.tmp\r\n- *.tmp\n")
            .unwrap();
        assert_eq!(
            ex.filters(),
            vec![b"+ keep.tmp\r".to_vec(), b"- *.tmp".to_vec()]
        );
        let err = ex.load_filter_file(b"+ a\nbad line\n- b").unwrap_err();
        assert_eq!(err.line, b"bad line");
        assert_eq!(ex.filters().len(), 2);

        let mut empty = Excludes::new();
        empty.load_filter_file(b"# nothing\n").unwrap();
        assert!(empty.has_filters());
    }

    #[test]
    fn filters_first_match_wins_then_excludes() {
        let mut ex = Excludes::new();
        ex.append_filter(b"+ keep.tmp").unwrap();
        ex.append_filter(b"- *.tmp").unwrap();
        ex.append_filter(b"| /logs/important").unwrap();
        ex.append_filter(b"- /logs/*").unwrap();
        ex.add_exclude(b"keep.tmp");
        ex.add_exclude(b"cache");
        let cases: &[(&[u8], bool)] = &[
            (b"/keep.tmp", false),       // `+` wins over the later `-` and the exclude
            (b"/a/x.tmp", true),         // `-` rule
            (b"/logs/important", false), // `|` behaves like `+`
            (b"/logs/other", true),
            (b"/logs/", true), // quirk: `*` may match nothing, so `/logs/*` hits `/logs/`
            (b"/other/", false), // no rule matches, no exclude matches
            (b"/a/cache/", true), // no rule matches, exclude decides
            (b"/a/cached", false), // nothing matches
        ];
        for (path, want) in cases {
            assert_eq!(
                ex.is_excluded(path),
                *want,
                "{:?}",
                String::from_utf8_lossy(path)
            );
        }
    }

    #[test]
    fn getters_and_rsync_stdin() {
        let mut ex = Excludes::new();
        assert_eq!(ex.rsync_stdin(), None);
        assert!(ex.filters().is_empty());

        ex.add_exclude(b"/skip/");
        ex.add_exclude(b"*.tmp");
        assert_eq!(
            ex.filters(),
            vec![b"- /skip/".to_vec(), b"- *.tmp".to_vec()]
        );
        assert_eq!(
            ex.rsync_stdin(),
            Some((b"/skip/\n*.tmp".to_vec(), "--exclude-from=-"))
        );

        ex.enable_filters();
        assert!(ex.has_filters());
        assert_eq!(
            ex.rsync_stdin(),
            Some((b"- /skip/\n- *.tmp".to_vec(), "--filter=. -"))
        );
        ex.append_filter(b"|  a b").unwrap();
        ex.append_filter(b"+x").unwrap();
        assert_eq!(
            ex.rsync_stdin(),
            Some((b"| a b\n+ x\n- /skip/\n- *.tmp".to_vec(), "--filter=. -"))
        );

        let mut only_filters = Excludes::new();
        only_filters.append_filter(b"- x").unwrap();
        assert_eq!(
            only_filters.rsync_stdin(),
            Some((b"- x".to_vec(), "--filter=. -"))
        );
    }

    // ---- Differential test against a model of upstream's algorithm ----
    //
    // `lua_pattern` translates like SPEC §5.1 (textual escaping with `%`, `[^/]`, `.*`) and
    // `lua_find` is a small backtracking matcher for exactly the Lua-pattern subset that the
    // translation produces. The compiled NFA must agree with it on random inputs.

    fn lua_pattern(p: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in p {
            match b {
                b'%' | b'^' | b'$' | b'(' | b')' | b'.' | b'[' | b']' | b'+' | b'-' => {
                    out.extend([b'%', b]);
                }
                b'?' => out.extend(b"[^/]"),
                b'*' => out.extend(b"[^/]*"),
                _ => out.push(b),
            }
        }
        // gsub of "[^/]*[^/]*" → ".*", left to right, non-overlapping.
        let needle = b"[^/]*[^/]*";
        let mut replaced = Vec::new();
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(needle) {
                replaced.extend(b".*");
                i += needle.len();
            } else {
                replaced.push(out[i]);
                i += 1;
            }
        }
        let mut anchored = Vec::new();
        anchored.push(if replaced.first() == Some(&b'/') {
            b'^'
        } else {
            b'/'
        });
        anchored.extend(replaced);
        anchored
    }

    /// Returns (item matcher, length of the item in the pattern).
    fn lua_item(p: &[u8]) -> (Box<dyn Fn(u8) -> bool>, usize) {
        match p[0] {
            b'%' => {
                let c = p[1];
                (Box::new(move |b| b == c), 2)
            }
            b'.' => (Box::new(|_| true), 1),
            b'[' => {
                assert!(p.starts_with(b"[^/]"));
                (Box::new(|b| b != b'/'), 4)
            }
            c => (Box::new(move |b| b == c), 1),
        }
    }

    fn lua_match_at(s: &[u8], i: usize, p: &[u8]) -> bool {
        if p.is_empty() {
            return true;
        }
        if p == b"$" {
            return i == s.len();
        }
        let (single, len) = lua_item(p);
        if p.get(len) == Some(&b'*') {
            let max = s[i..].iter().take_while(|&&b| single(b)).count();
            (0..=max)
                .rev()
                .any(|n| lua_match_at(s, i + n, &p[len + 1..]))
        } else {
            i < s.len() && single(s[i]) && lua_match_at(s, i + 1, &p[len..])
        }
    }

    fn lua_find(s: &[u8], p: &[u8]) -> bool {
        match p.strip_prefix(b"^") {
            Some(rest) => lua_match_at(s, 0, rest),
            None => (0..=s.len()).any(|i| lua_match_at(s, i, p)),
        }
    }

    fn upstream_excludes(pattern: &[u8], path: &[u8]) -> bool {
        let lp = lua_pattern(pattern);
        if lp.last() == Some(&b'$') {
            lua_find(path, &lp)
        } else {
            lua_find(path, &[&lp[..], b"/"].concat()) || lua_find(path, &[&lp[..], b"$"].concat())
        }
    }

    #[test]
    fn compiled_matcher_agrees_with_upstream_model() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let pat_alphabet = b"ab/*?$.[%-^\xff";
        let path_alphabet = b"ab/$.[%-^\xff";
        for _ in 0..200_000 {
            let pat: Vec<u8> = (0..rand(7))
                .map(|_| pat_alphabet[rand(pat_alphabet.len())])
                .collect();
            let mut path = vec![b'/'];
            path.extend((0..rand(9)).map(|_| path_alphabet[rand(path_alphabet.len())]));
            let got = Matcher::compile(&pat).is_match(&path);
            let want = upstream_excludes(&pat, &path);
            assert_eq!(
                got,
                want,
                "pattern {:?} path {:?}",
                String::from_utf8_lossy(&pat),
                String::from_utf8_lossy(&path)
            );
        }
    }
}
