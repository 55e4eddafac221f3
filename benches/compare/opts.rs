//! The bench's command line: options, workload sizes (full and quick).
//! Owns: `USAGE`, `Opts`, `Sizes`, `parse_opts`. Must not touch: anything else (no I/O).

use crate::*;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) const USAGE: &str = "\
usage: cargo bench --bench compare -- [OPTIONS]

  --quick               one round, small sizes (a few minutes)
  --rounds N            rounds of ours/upstream (default 3; quick: 1)
  --ours PATH           our binary (default target/release/lsyncd)
  --upstream PATH       upstream binary (default /usr/bin/lsyncd)
  --only LIST           comma-separated workloads to run: w1,w2,w2b,w3,w4,w5,fan
  --out PATH            report file (default target/bench/report.md)
  --scratch DIR         where scratch trees go (default /dev/shm when writable, else the temp dir)
  --seed N              seed of the W4 operations (default 7)
  --w1-dirs TOPxSUB|1m  W1 tree shape (default 100x1000; quick 20x500; 1m = 1000x1000,
                        one million directories)
  --w2-files N[,UP]     W2 files created, ours[,upstream] (default 100000,50000; quick 10000)
  --w2b N1,N2[,U1,U2]   W2b sizes, ours[,upstream]
                        (default 10000,100000,1000,3000; quick 2000,20000,500,2000)
  --w3-samples N        W3 samples (default 50; quick 20)
  --w4-ops N            W4 operations (default 20000; quick 2000)
  --w5-dirs TOPxSUB     W5 tree shape (default 100x1000; quick 20x500)
  --w5-syncs N          W5 syncs in the fan-out run, against one (default 10)
  --w5-files N          W5 files created after startup (default 10000; quick 2000)
";

// ---------------------------------------------------------------------------------------------
// Options and sizes

pub(crate) struct Sizes {
    pub(crate) w1_top: usize,
    pub(crate) w1_sub: usize,
    pub(crate) w2_dirs: usize,
    pub(crate) w2_files: usize,
    pub(crate) w2_files_up: usize,
    pub(crate) w2b: (usize, usize),
    pub(crate) w2b_up: (usize, usize),
    pub(crate) w3_samples: usize,
    pub(crate) w4_ops: usize,
    pub(crate) w5_top: usize,
    pub(crate) w5_sub: usize,
    pub(crate) w5_syncs: usize,
    pub(crate) w5_files: usize,
    /// Longest wait for a daemon to become quiescent after W2's writer, or to digest W2b's creates.
    pub(crate) busy_timeout: Duration,
    pub(crate) w4_timeout: Duration,
}

pub(crate) struct Opts {
    pub(crate) quick: bool,
    pub(crate) rounds: usize,
    pub(crate) ours: PathBuf,
    pub(crate) upstream: PathBuf,
    pub(crate) only: Option<Vec<String>>,
    pub(crate) out: PathBuf,
    pub(crate) scratch: Option<PathBuf>,
    pub(crate) seed: u64,
    pub(crate) sizes: Sizes,
}

impl Opts {
    pub(crate) fn runs(&self, w: &str) -> bool {
        self.only.as_ref().is_none_or(|l| l.iter().any(|x| x == w))
    }
}

pub(crate) fn parse_list(s: &str) -> Res<Vec<usize>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .replace('_', "")
                .parse::<usize>()
                .map_err(|e| format!("bad number {x:?}: {e}"))
        })
        .collect()
}

/// `TOPxSUB` for option `name`.
fn parse_shape(name: &str, v: &str) -> Res<(usize, usize)> {
    let (t, s) = v
        .split_once('x')
        .ok_or_else(|| format!("{name} wants TOPxSUB, got {v:?}"))?;
    Ok((parse_list(t)?[0], parse_list(s)?[0]))
}

pub(crate) fn parse_opts() -> Res<Opts> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let default_ours = option_env!("CARGO_BIN_EXE_lsyncd")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target/release/lsyncd"));
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench to harness = false targets.
    args.retain(|a| a != "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = Opts {
        quick,
        rounds: if quick { 1 } else { 3 },
        ours: default_ours,
        upstream: PathBuf::from("/usr/bin/lsyncd"),
        only: None,
        out: manifest.join("target/bench/report.md"),
        scratch: None,
        seed: 7,
        sizes: if quick {
            Sizes {
                w1_top: 20,
                w1_sub: 500,
                w2_dirs: 100,
                w2_files: 10_000,
                w2_files_up: 10_000,
                w2b: (2_000, 20_000),
                w2b_up: (500, 2_000),
                w3_samples: 20,
                w4_ops: 2_000,
                w5_top: 20,
                w5_sub: 500,
                w5_syncs: 10,
                w5_files: 2_000,
                busy_timeout: Duration::from_secs(60),
                w4_timeout: Duration::from_secs(60),
            }
        } else {
            Sizes {
                w1_top: 100,
                w1_sub: 1_000,
                w2_dirs: 100,
                w2_files: 100_000,
                w2_files_up: 50_000,
                w2b: (10_000, 100_000),
                w2b_up: (1_000, 3_000),
                w3_samples: 50,
                w4_ops: 20_000,
                w5_top: 100,
                w5_sub: 1_000,
                w5_syncs: 10,
                w5_files: 10_000,
                busy_timeout: Duration::from_secs(300),
                w4_timeout: Duration::from_secs(120),
            }
        },
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--quick" => {}
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--rounds" => o.rounds = parse_list(&val(&a)?)?[0].max(1),
            "--ours" => o.ours = PathBuf::from(val(&a)?),
            "--upstream" => o.upstream = PathBuf::from(val(&a)?),
            "--only" => {
                o.only = Some(
                    val(&a)?
                        .split(',')
                        .map(|s| s.trim().to_lowercase())
                        .collect(),
                )
            }
            "--out" => o.out = PathBuf::from(val(&a)?),
            "--scratch" => o.scratch = Some(PathBuf::from(val(&a)?)),
            "--seed" => o.seed = parse_list(&val(&a)?)?[0] as u64,
            "--w1-dirs" => {
                let v = val(&a)?;
                let v = if v == "1m" {
                    "1000x1000".to_string()
                } else {
                    v
                };
                (o.sizes.w1_top, o.sizes.w1_sub) = parse_shape(&a, &v)?;
            }
            "--w2-files" => {
                let v = parse_list(&val(&a)?)?;
                o.sizes.w2_files = v[0];
                o.sizes.w2_files_up = *v.get(1).unwrap_or(&v[0]);
            }
            "--w2b" => {
                let v = parse_list(&val(&a)?)?;
                if v.len() != 2 && v.len() != 4 {
                    return Err("--w2b wants N1,N2 or N1,N2,U1,U2".into());
                }
                o.sizes.w2b = (v[0], v[1]);
                if v.len() == 4 {
                    o.sizes.w2b_up = (v[2], v[3]);
                }
            }
            "--w3-samples" => o.sizes.w3_samples = parse_list(&val(&a)?)?[0].max(1),
            "--w4-ops" => o.sizes.w4_ops = parse_list(&val(&a)?)?[0],
            "--w5-dirs" => (o.sizes.w5_top, o.sizes.w5_sub) = parse_shape(&a, &val(&a)?)?,
            "--w5-syncs" => o.sizes.w5_syncs = parse_list(&val(&a)?)?[0].max(2),
            "--w5-files" => o.sizes.w5_files = parse_list(&val(&a)?)?[0].max(1),
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    let s = &o.sizes;
    if s.w2b.0 == 0 || s.w2b.1 <= s.w2b.0 || s.w2b_up.0 == 0 || s.w2b_up.1 <= s.w2b_up.0 {
        return Err("--w2b sizes must satisfy 0 < N1 < N2".into());
    }
    Ok(o)
}
