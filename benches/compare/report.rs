//! The report: rows declared by the workloads, measurements per side, medians, the rendered
//! Markdown table with targets and whether they are met.
//! Owns: `Side`, `M`, `Row`, `Report`, `render` and the number formatting. Must not touch: the
//! daemons or the trees.

use crate::*;
use std::fmt::Write as _;

// Measurements and the report

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Side {
    Ours,
    Upstream,
    Reference,
}

#[derive(Clone)]
pub(crate) enum M {
    V(f64),
    /// A run that failed this measurement, with a short reason shown in the cell.
    Fail(String),
}

pub(crate) struct Row {
    pub(crate) workload: String,
    pub(crate) metric: String,
    pub(crate) ours: Vec<M>,
    pub(crate) up: Vec<M>,
    pub(crate) reference: Vec<M>,
    pub(crate) reference_label: String,
    pub(crate) target: String,
    /// Evaluates the target from the medians (ours, upstream, reference).
    pub(crate) check: Option<fn(f64, f64, f64) -> bool>,
    /// Ratio ours/upstream shown only when both sides ran the same size.
    pub(crate) ratio: bool,
    pub(crate) digits: usize,
}

pub(crate) struct Report {
    pub(crate) rows: Vec<Row>,
    pub(crate) notes: Vec<String>,
    pub(crate) problems: Vec<String>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn row(
        &mut self,
        workload: &str,
        metric: &str,
        reference_label: &str,
        target: &str,
        check: Option<fn(f64, f64, f64) -> bool>,
        ratio: bool,
        digits: usize,
    ) {
        if self.find(workload, metric).is_none() {
            self.rows.push(Row {
                workload: workload.into(),
                metric: metric.into(),
                ours: vec![],
                up: vec![],
                reference: vec![],
                reference_label: reference_label.into(),
                target: target.into(),
                check,
                ratio,
                digits,
            });
        }
    }

    pub(crate) fn find(&mut self, workload: &str, metric: &str) -> Option<&mut Row> {
        self.rows
            .iter_mut()
            .find(|r| r.workload == workload && r.metric == metric)
    }

    pub(crate) fn add(&mut self, workload: &str, metric: &str, side: Side, m: M) {
        let r = self
            .find(workload, metric)
            .expect("row declared before use");
        match side {
            Side::Ours => r.ours.push(m),
            Side::Upstream => r.up.push(m),
            Side::Reference => r.reference.push(m),
        }
    }

    pub(crate) fn problem(&mut self, s: String) {
        eprintln!("bench: PROBLEM: {s}");
        self.problems.push(s);
    }
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

pub(crate) fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (s.len() as f64) - 1.0).ceil().max(0.0) as usize;
    s[i.min(s.len() - 1)]
}

pub(crate) fn fmt_num(x: f64, digits: usize) -> String {
    if x.is_nan() {
        return "–".into();
    }
    let s = format!("{x:.digits$}");
    // Thousands separators on the integer part for readability.
    let (int, frac) = s
        .split_once('.')
        .map(|(a, b)| (a.to_string(), Some(b.to_string())))
        .unwrap_or((s.clone(), None));
    let neg = int.starts_with('-');
    let digits_only = int.trim_start_matches('-');
    let mut grouped = String::new();
    for (i, c) in digits_only.chars().enumerate() {
        if i > 0 && (digits_only.len() - i) % 3 == 0 {
            grouped.push('\u{202f}');
        }
        grouped.push(c);
    }
    let mut out = if neg { format!("-{grouped}") } else { grouped };
    if let Some(f) = frac {
        out.push('.');
        out.push_str(&f);
    }
    out
}

pub(crate) fn values(v: &[M]) -> Vec<f64> {
    v.iter()
        .filter_map(|m| match m {
            M::V(x) => Some(*x),
            M::Fail(_) => None,
        })
        .collect()
}

pub(crate) fn cell(v: &[M], digits: usize) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let vals = values(v);
    let fails: Vec<&str> = v
        .iter()
        .filter_map(|m| match m {
            M::Fail(s) => Some(s.as_str()),
            M::V(_) => None,
        })
        .collect();
    let mut s = String::new();
    if !vals.is_empty() {
        let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        s = fmt_num(median(&vals), digits);
        if vals.len() > 1 {
            let _ = write!(s, " ({}–{})", fmt_num(lo, digits), fmt_num(hi, digits));
        }
    }
    if !fails.is_empty() {
        let mut uniq: Vec<&str> = vec![];
        for f in fails.iter() {
            if !uniq.contains(f) {
                uniq.push(f);
            }
        }
        if !s.is_empty() {
            s.push_str("; ");
        }
        let _ = write!(s, "{}/{} runs: {}", fails.len(), v.len(), uniq.join(", "));
    }
    s
}

pub(crate) fn render(o: &Opts, rep: &Report, machine: &str, versions: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# lsyncd benchmark: ours vs upstream 2.2.3\n");
    let _ = writeln!(s, "{machine}\n");
    let _ = writeln!(s, "{versions}\n");
    let _ = writeln!(
        s,
        "Mode: {}, {} round(s), interleaved ours/upstream. Cells: median (min–max) over rounds. \
         CPU: daemon's own CPU time from /proc (not its children); RSS: VmHWM.\n",
        if o.quick { "quick" } else { "full" },
        o.rounds
    );
    let _ = writeln!(
        s,
        "| Workload | Metric | Ours | Upstream | Ours/Upstream | Reference | Target | Met |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for r in &rep.rows {
        let (ov, uv, rv) = (values(&r.ours), values(&r.up), values(&r.reference));
        let (om, um, rm) = (median(&ov), median(&uv), median(&rv));
        let ours_failed = r.ours.iter().any(|m| matches!(m, M::Fail(_)));
        let ratio = if r.ratio && !ov.is_empty() && !uv.is_empty() && um != 0.0 {
            format!("{:.3}", om / um)
        } else {
            "–".into()
        };
        let refcell = if r.reference.is_empty() {
            "–".into()
        } else {
            format!("{}: {}", r.reference_label, cell(&r.reference, r.digits))
        };
        let met = match r.check {
            Some(_) if ours_failed => "**NO** (failed runs)".to_string(),
            Some(f) if !ov.is_empty() => {
                if f(om, um, rm) {
                    "yes".into()
                } else {
                    "**NO**".into()
                }
            }
            _ => "–".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.metric,
            cell(&r.ours, r.digits),
            cell(&r.up, r.digits),
            ratio,
            refcell,
            if r.target.is_empty() {
                "–"
            } else {
                &r.target
            },
            met
        );
    }
    if !rep.notes.is_empty() {
        let _ = writeln!(s, "\nNotes:\n");
        for n in &rep.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    if !rep.problems.is_empty() {
        let _ = writeln!(s, "\nProblems seen during the run:\n");
        for p in &rep.problems {
            let _ = writeln!(s, "- {}", p.replace('\n', "\n  "));
        }
    }
    s
}
