//! Records from the guest: the data port's JSON lines decoded as
//! [`lags_proto::bench::Record`] and tagged with their boot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lags_proto::bench::{
    DoneRecord, KnativeRecord, OverheadRecord, RdhashdRecord, Record, RunRecord, SecondCounts,
    Status,
};
use serde::Serialize;
use serde_json::Value;

use crate::util;

pub use lags_proto::bench::{Hist, LagsCounters, Summary};

/// What the host does with a guest histogram.
pub trait HistExt {
    /// Empirical CDF: (upper edge of the bin in ms, cumulative fraction).
    fn cdf(&self) -> Vec<(f64, f64)>;
    /// Adds the counts of `other`.
    fn merge(&mut self, other: &Hist);
}

impl HistExt for Hist {
    fn cdf(&self) -> Vec<(f64, f64)> {
        let total: u64 = self.bins.iter().map(|b| b.1).sum();
        let mut acc = 0;
        self.bins
            .iter()
            .map(|&(b, n)| {
                acc += n;
                (Hist::upper_edge_ms(b), acc as f64 / total.max(1) as f64)
            })
            .collect()
    }

    fn merge(&mut self, other: &Hist) {
        let mut m: BTreeMap<u32, u64> = self.bins.iter().copied().collect();
        for &(b, n) in &other.bins {
            *m.entry(b).or_default() += n;
        }
        self.bins = m.into_iter().collect();
    }
}

/// One run (configuration x point x repetition): the fields of the guest's
/// [`RunRecord`] the report uses, tagged with the boot.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Run {
    pub boot: String,
    pub sweep: String,
    pub config: String,
    pub funcs: usize,
    pub load: f64,
    pub rep: usize,
    pub offered_load: f64,
    pub achieved_load: f64,
    pub throughput_rps: f64,
    pub cpu_util: f64,
    pub cpu_kernel: f64,
    pub ctxt_per_req: Option<f64>,
    pub schedule_per_req: Option<f64>,
    pub run_delay_ms_per_req: Option<f64>,
    pub worker_cs_per_req: Option<f64>,
    pub worker_wait_ms_per_req: Option<f64>,
    pub work_inflation: Option<f64>,
    pub dispatch_late_mean_us: f64,
    pub dropped: usize,
    pub all: Summary,
    pub light: Summary,
    pub heavy: Summary,
    pub hist_all: Hist,
    pub hist_light: Hist,
    pub lags: Option<LagsCounters>,
    pub seed: u64,
    pub cpus: usize,
    /// Length of the measured window, s.
    pub window_s: f64,
    /// The measured requests by arrival second (empty in records from before them).
    pub per_second: Vec<SecondCounts>,
}

/// One overhead measurement: the guest's [`OverheadRecord`] tagged with the boot.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct OverheadRec {
    pub boot: String,
    pub probe: String,
    pub mode: String,
    pub rep: usize,
    pub value: Option<f64>,
    pub unit: String,
    pub higher_is_better: bool,
    pub error: Option<String>,
}

impl Run {
    fn from_record(boot: &str, r: RunRecord) -> Run {
        Run {
            boot: boot.to_string(),
            sweep: r.sweep,
            config: r.config,
            funcs: r.funcs,
            load: r.load,
            rep: r.rep,
            offered_load: r.offered_load,
            achieved_load: r.achieved_load,
            throughput_rps: r.throughput_rps,
            cpu_util: r.cpu_util,
            cpu_kernel: r.cpu_kernel,
            ctxt_per_req: r.ctxt_per_req,
            schedule_per_req: r.schedule_per_req,
            run_delay_ms_per_req: r.run_delay_ms_per_req,
            worker_cs_per_req: r.worker_cs_per_req,
            worker_wait_ms_per_req: r.worker_wait_ms_per_req,
            work_inflation: r.work_inflation,
            dispatch_late_mean_us: r.dispatch_late_mean_us,
            dropped: r.dropped,
            all: r.all,
            light: r.light,
            heavy: r.heavy,
            hist_all: r.hist_all,
            hist_light: r.hist_light,
            lags: r.lags,
            seed: r.seed,
            cpus: r.cpus,
            window_s: r.window_s,
            per_second: r.per_second,
        }
    }

    /// The run's measured window in the shape of the closed-loop workloads' records, so that
    /// the same bootstrap gives it intervals: its function count, its offered load as the
    /// scale, its repetition (whose configurations ran the same arrival schedule) and its
    /// seconds by arrival, of which `completed` counts every request and `good` the ones
    /// within their SLO. A percentile that falls on a request that never completed (the
    /// histogram's last bin) is infinite. `None` for a record without seconds (from before
    /// them).
    pub fn window(&self) -> Option<RdhashdRecord> {
        if self.per_second.is_empty() {
            return None;
        }
        let requests: u64 = self.per_second.iter().map(|s| s.completed).sum();
        let q = |q: f64| self.hist_all.quantile_ms(q);
        Some(RdhashdRecord {
            config: self.config.clone(),
            funcs: self.funcs,
            scale: Some(self.load),
            rep: self.rep,
            seed: self.seed,
            cpus: self.cpus,
            window_s: self.window_s,
            completed: requests,
            good: self.per_second.iter().map(|s| s.good).sum(),
            p50_ms: q(0.50),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            hist: self.hist_all.clone(),
            cpu_util: self.cpu_util,
            cpu_kernel: Some(self.cpu_kernel),
            ctxt_per_req: self.ctxt_per_req,
            schedule_per_req: self.schedule_per_req,
            lags: self.lags.clone(),
            per_second: self.per_second.clone(),
            ..RdhashdRecord::default()
        })
    }
}

impl OverheadRec {
    fn from_record(boot: &str, r: OverheadRecord) -> OverheadRec {
        OverheadRec {
            boot: boot.to_string(),
            probe: r.probe,
            mode: r.mode,
            rep: r.rep,
            value: r.value,
            unit: r.unit,
            higher_is_better: r.higher_is_better,
            error: r.error,
        }
    }
}

/// Everything the guests wrote, tagged with the boot.
#[derive(Debug, Default)]
pub struct Records {
    /// Every record as written, with `boot` added.
    pub raw: Vec<Value>,
    pub runs: Vec<Run>,
    pub overhead: Vec<OverheadRec>,
    /// The rdhashd runs, as the guest wrote them.
    pub rd: Vec<RdhashdRecord>,
    /// The knative runs.
    pub kn: Vec<KnativeRecord>,
    /// The guests' environment records, with `boot` added.
    pub env: Vec<Value>,
    /// The end record of each boot.
    pub done: Vec<(String, DoneRecord)>,
    /// Lines that are JSON but not a record of the contract (`boot: error`).
    pub invalid: Vec<String>,
}

impl Records {
    /// Whether any run or probe of any workload was recorded.
    pub fn has_results(&self) -> bool {
        !self.runs.is_empty()
            || !self.overhead.is_empty()
            || !self.rd.is_empty()
            || !self.kn.is_empty()
    }
}

impl Records {
    /// Parses one boot's data channel: one record per line, as `lags_proto::bench::Record`
    /// defines it. Lines that are not JSON (the serial port's start-up noise) are ignored;
    /// JSON that is not a valid record is listed in `invalid` and not used.
    pub fn add(&mut self, boot: &str, text: &str) {
        for line in text.lines() {
            let line = line.trim();
            let Ok(mut v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let rec = match serde_json::from_str::<Record>(line) {
                Ok(r) => r,
                Err(e) => {
                    self.invalid.push(format!("{boot}: {e}"));
                    continue;
                }
            };
            if let Some(obj) = v.as_object_mut() {
                obj.insert("boot".into(), Value::String(boot.to_string()));
            }
            match rec {
                Record::Run(r) => self.runs.push(Run::from_record(boot, *r)),
                Record::Overhead(r) => self.overhead.push(OverheadRec::from_record(boot, r)),
                Record::Env(_) => self.env.push(v.clone()),
                Record::Done(d) => self.done.push((boot.to_string(), d)),
                Record::Rdhashd(r) => self.rd.push(*r),
                Record::Knative(r) => self.kn.push(*r),
                Record::Functions(_) => {}
            }
            self.raw.push(v);
        }
    }

    /// Reads the data file of one boot (or host run): adds its records, warns about
    /// invalid ones, and returns the status of its end record. A missing file adds nothing.
    pub fn add_file(&mut self, boot: &str, path: &std::path::Path) -> Option<Status> {
        let text = fs_err::read_to_string(path).unwrap_or_default();
        self.add(boot, &text);
        for e in &self.invalid {
            eprintln!("[bench] WARNING: invalid record from lags-bench: {e}");
        }
        self.invalid.clear();
        self.status_of(boot)
    }

    /// The guest's status of `boot`, from its end record.
    pub fn status_of(&self, boot: &str) -> Option<Status> {
        self.done
            .iter()
            .rev()
            .find(|(b, _)| b == boot)
            .map(|(_, d)| d.status)
    }
}

/// Reads env.json and the data files of a results directory.
pub(crate) fn load_dir(dir: &Path) -> Result<(Value, Records)> {
    let env_path = dir.join("env.json");
    let env: Value = serde_json::from_str(&util::read(&env_path)?)
        .with_context(|| format!("failed to parse {}", env_path.display()))?;
    let mut recs = Records::default();
    let mut names: Vec<PathBuf> = fs_err::read_dir(dir)
        .with_context(|| format!("failed to list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".data.ndjson"))
        .collect();
    names.sort();
    for p in names {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .trim_end_matches(".data.ndjson")
            .to_string();
        recs.add(&name, &util::read(&p)?);
    }
    Ok((env, recs))
}

/// env.json fields that must agree for results directories to be reported together: the
/// kernel, its config, the testbed, the seeds that pick the trace windows, the SLO and the
/// load generator.
const MERGE_KEYS: &[&str] = &[
    "accel",
    "cpus",
    "mem_mib",
    "seed",
    "kernel_release",
    "series_hash",
    "config_hash",
    "slo",
    "dispatcher",
];

/// env.json `settings` fields that must agree as well: the workload, and the windows'
/// lengths and warm-ups, so that second i of a window is the same trace second in every
/// boot (paired statistics pair seconds by index).
const MERGE_SETTINGS: &[&str] = &[
    "workload",
    "duration_s",
    "warmup_s",
    "rd_duration_s",
    "rd_warmup_s",
];

/// What identifies a closed-loop run: workload, configuration, functions (users), scale,
/// repetition and trace window.
type RunKey = (&'static str, String, usize, i64, usize, u64);

fn run_keys(recs: &Records) -> Vec<RunKey> {
    let key = |w: &'static str, r: &RdhashdRecord| {
        (
            w,
            r.config.clone(),
            r.funcs,
            (r.scale() * 1e6).round() as i64,
            r.rep,
            r.trace_offset_s,
        )
    };
    recs.rd
        .iter()
        .map(|r| key("rdhashd", r))
        .chain(recs.kn.iter().map(|k| key("knative", &k.run)))
        .collect()
}

/// Merges the results directories `dirs` into the new directory `out`: every
/// `*.data.ndjson` file copied with its directory's name appended, and one env.json whose
/// boots are all the directories' boots (each name tagged with its directory) and whose
/// command lists every command. Refused, with nothing written, when:
/// - a directory has no env.json, or two directories have the same name;
/// - a directory differs from the first in one of [`MERGE_KEYS`] or [`MERGE_SETTINGS`];
/// - two directories hold the same closed-loop run ([`RunKey`]): counted twice, it would
///   narrow every interval; or a directory holds open-loop or overhead records, which
///   have no such key;
/// - `out` already holds results (merging twice would count every run twice).
///
/// The files go to a temporary directory first, renamed to `out` when complete.
pub(crate) fn merge_dirs(dirs: &[PathBuf], out: &Path) -> Result<()> {
    use anyhow::bail;
    if out.is_dir() && fs_err::read_dir(out)?.next().is_some() {
        bail!(
            "--merge: {} is not empty; merge into a new directory",
            out.display()
        );
    }
    let mut tags = Vec::new();
    let mut envs = Vec::new();
    let mut seen: BTreeMap<RunKey, String> = BTreeMap::new();
    for d in dirs {
        let tag = fs_err::canonicalize(d)?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if tags.contains(&tag) {
            bail!("--merge: two directories named {tag:?}; their files would overwrite each other");
        }
        let (env, recs) = load_dir(d)?;
        if !recs.runs.is_empty() || !recs.overhead.is_empty() {
            bail!(
                "--merge: {} holds open-loop or overhead records; only the closed-loop \
                 workloads (rdhashd, knative) merge",
                d.display()
            );
        }
        for k in run_keys(&recs) {
            if let Some(other) = seen.insert(k.clone(), tag.clone()) {
                bail!(
                    "--merge: {other} and {tag} both hold the {} run of {} at {} × {} in \
                     repetition {} (trace {} s); counted twice it would narrow every interval",
                    k.0,
                    k.1,
                    k.2,
                    k.3 as f64 / 1e6,
                    k.4,
                    k.5
                );
            }
        }
        tags.push(tag);
        envs.push(env);
    }
    let Some(first) = envs.first() else {
        bail!("--merge: no directories given");
    };
    for (d, e) in dirs.iter().zip(&envs).skip(1) {
        let differs = |a: Option<&Value>, b: Option<&Value>, what: String| -> Result<()> {
            if a != b {
                bail!(
                    "--merge: {} has {what} = {}, {} has {}; results of different kernels, \
                     testbeds, seeds or plans are not reported together",
                    d.display(),
                    a.unwrap_or(&Value::Null),
                    dirs[0].display(),
                    b.unwrap_or(&Value::Null)
                );
            }
            Ok(())
        };
        for k in MERGE_KEYS {
            differs(e.get(k), first.get(k), (*k).to_string())?;
        }
        for k in MERGE_SETTINGS {
            differs(
                e.get("settings").and_then(|s| s.get(k)),
                first.get("settings").and_then(|s| s.get(k)),
                format!("settings.{k}"),
            )?;
        }
    }
    let mut merged = first.clone();
    let (mut boots, mut commands) = (Vec::new(), Vec::new());
    let mut copies = Vec::new();
    for ((d, e), tag) in dirs.iter().zip(&envs).zip(&tags) {
        for b in e
            .get("boots")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut b = b.clone();
            if let Some(name) = b.get("name").and_then(Value::as_str) {
                b["name"] = Value::from(format!("{name} ({tag})"));
            }
            boots.push(b);
        }
        commands.extend(e.get("command").and_then(Value::as_str).map(str::to_owned));
        for entry in fs_err::read_dir(d)? {
            let p = entry?.path();
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if let Some(stem) = name.strip_suffix(".data.ndjson") {
                copies.push((p.clone(), format!("{stem}-{tag}.data.ndjson")));
            }
        }
    }
    merged["boots"] = Value::from(boots);
    merged["command"] = Value::from(commands.join(" ; "));
    let tmp = out.with_extension(format!("merging-{}", std::process::id()));
    let _ = fs_err::remove_dir_all(&tmp);
    util::create_dir(&tmp)?;
    let filled = (|| -> Result<()> {
        for (from, name) in &copies {
            fs_err::copy(from, tmp.join(name))?;
        }
        util::write(
            &tmp.join("env.json"),
            serde_json::to_string_pretty(&merged)?,
        )?;
        if out.is_dir() {
            fs_err::remove_dir(out)?;
        }
        fs_err::rename(&tmp, out)?;
        Ok(())
    })();
    if filled.is_err() {
        let _ = fs_err::remove_dir_all(&tmp);
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect a directory with only knative runs (or only rdhashd runs) to count as results:
    // `bench --report-only` of a knative run used to fail with "incomplete results".
    #[test]
    fn any_workload_counts_as_results() {
        assert!(!Records::default().has_results());
        let kn = Records {
            kn: vec![KnativeRecord {
                users: 130,
                pods: 100,
                intra_op: 3,
                work_ms: 30.0,
                rps: 57.0,
                run: RdhashdRecord::default(),
            }],
            ..Records::default()
        };
        assert!(kn.has_results());
        let rd = Records {
            rd: vec![RdhashdRecord::default()],
            ..Records::default()
        };
        assert!(rd.has_results());
    }

    // Expect a CDF from the sparse histogram at the bins' upper edges.
    #[test]
    fn hist_cdf_and_merge() {
        let mut h = Hist {
            bins: vec![(60, 1), (80, 3)],
        };
        h.merge(&Hist {
            bins: vec![(60, 1), (100, 5)],
        });
        assert_eq!(h.bins, vec![(60, 2), (80, 3), (100, 5)]);
        let c = h.cdf();
        assert!((c[0].0 - 10f64.powf(61.0 / 20.0) / 1e3).abs() < 1e-12);
        assert_eq!(c[0].1, 0.2);
        assert_eq!(c[2].1, 1.0);
    }

    // Expect guest lines to be parsed by type and tagged with the boot; junk ignored, and
    // a record that does not match the contract reported instead of read as defaults.
    #[test]
    fn records() {
        let mut r = Records::default();
        let run = Record::Run(Box::new(RunRecord {
            sweep: "load".into(),
            config: "lags".into(),
            load: 0.5,
            all: Summary {
                slo_attainment: Some(0.99),
                ..Summary::default()
            },
            ..RunRecord::default()
        }));
        let ov = Record::Overhead(OverheadRecord {
            probe: "p".into(),
            mode: "off".into(),
            value: Some(1.0),
            ..OverheadRecord::default()
        });
        let done = Record::Done(DoneRecord {
            status: Status::Ok,
            errors: 0,
        });
        let rd = Record::Rdhashd(Box::new(RdhashdRecord {
            config: "stock".into(),
            funcs: 4,
            good: 7,
            ..RdhashdRecord::default()
        }));
        let line = |r: &Record| serde_json::to_string(r).unwrap();
        // A record with a field the contract does not have is not used.
        let misspelt = r#"{"type":"overhead","probe":"p","mode":"on","value":1.0,"unit":"","higher_is_better":false,"wall_s":1.0,"eror":null}"#;
        r.add(
            "b1",
            &format!(
                "garbage\n{}\n{}\n{misspelt}\n{}\n{}\n",
                line(&run),
                line(&ov),
                line(&rd),
                line(&done)
            ),
        );
        assert_eq!(r.runs.len(), 1);
        assert_eq!(r.runs[0].boot, "b1");
        assert_eq!(r.runs[0].all.slo_attainment, Some(0.99));
        assert_eq!(r.overhead.len(), 1);
        assert_eq!(r.done.len(), 1);
        assert_eq!(r.rd.len(), 1);
        assert_eq!((r.rd[0].funcs, r.rd[0].good), (4, 7));
        assert_eq!(r.raw.len(), 4);
        assert_eq!(r.invalid.len(), 1, "{:?}", r.invalid);
        assert_eq!(r.status_of("b1"), Some(Status::Ok));
    }

    /// A results directory with one rdhashd run per scale in `scales`, of kernel `series`.
    fn bench_dir(root: &Path, name: &str, series: &str, scales: &[f64]) -> PathBuf {
        let d = root.join(name);
        fs_err::create_dir_all(&d).unwrap();
        let env = serde_json::json!({
            "command": format!("bench {name}"),
            "accel": "mttcg",
            "cpus": 2,
            "seed": 42,
            "series_hash": series,
            "settings": { "workload": "rdhashd", "rd_duration_s": 75, "rd_scales": scales },
            "boots": [{ "name": "density", "verdict": "Passed" }],
        });
        fs_err::write(d.join("env.json"), env.to_string()).unwrap();
        let lines: Vec<String> = scales
            .iter()
            .map(|&k| {
                let r = Record::Rdhashd(Box::new(RdhashdRecord {
                    config: "stock".into(),
                    funcs: 19,
                    scale: Some(k),
                    trace_offset_s: 195,
                    ..RdhashdRecord::default()
                }));
                serde_json::to_string(&r).unwrap()
            })
            .collect();
        fs_err::write(d.join("density.data.ndjson"), lines.join("\n")).unwrap();
        d
    }

    // Expect two runs of one kernel and plan merged into a new directory (data files tagged
    // by directory, boots and commands of both, every record once), and a merge refused
    // with nothing written for: different kernels, different window lengths, the same run
    // in two directories, two directories of one name, a directory that does not exist,
    // and a target that is not empty.
    #[test]
    fn merge_results_dirs() {
        let root = std::env::temp_dir().join(format!("xtask-merge-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&root);
        let tmp = Scratch(root);
        let a = bench_dir(tmp.path(), "20261127-0100", "abc", &[0.6, 1.0]);
        let b = bench_dir(tmp.path(), "20261127-0200", "abc", &[0.2, 0.4]);
        let out = tmp.path().join("merged");
        merge_dirs(&[a.clone(), b.clone()], &out).unwrap();
        let mut names: Vec<String> = fs_err::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "density-20261127-0100.data.ndjson",
                "density-20261127-0200.data.ndjson",
                "env.json"
            ]
        );
        let (env, recs) = load_dir(&out).unwrap();
        assert_eq!(env["command"], "bench 20261127-0100 ; bench 20261127-0200");
        assert_eq!(env["boots"][1]["name"], "density (20261127-0200)");
        assert_eq!(env["boots"].as_array().unwrap().len(), 2);
        assert_eq!(recs.rd.len(), 4);
        let refused = |dirs: &[PathBuf], what: &str| {
            let to = tmp.path().join("refused");
            let e = merge_dirs(dirs, &to).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
            assert!(!to.exists(), "{e}");
        };
        let e = merge_dirs(&[a.clone(), b.clone()], &out).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        refused(
            &[a.clone(), bench_dir(tmp.path(), "v6", "def", &[0.2])],
            "series_hash",
        );
        let longer = bench_dir(tmp.path(), "longer", "abc", &[0.2]);
        let mut env: Value =
            serde_json::from_str(&fs_err::read_to_string(longer.join("env.json")).unwrap())
                .unwrap();
        env["settings"]["rd_duration_s"] = Value::from(150);
        fs_err::write(longer.join("env.json"), env.to_string()).unwrap();
        refused(&[a.clone(), longer], "settings.rd_duration_s");
        refused(
            &[a.clone(), bench_dir(tmp.path(), "again", "abc", &[1.0])],
            "both hold the rdhashd run of stock at 19 × 1",
        );
        refused(&[a.clone(), a.clone()], "two directories named");
        let e = merge_dirs(
            &[a, tmp.path().join("missing")],
            &tmp.path().join("refused"),
        );
        assert!(e.is_err() && !tmp.path().join("refused").exists());
    }

    /// A directory removed when the test ends.
    struct Scratch(PathBuf);

    impl Scratch {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs_err::remove_dir_all(&self.0);
        }
    }
}
