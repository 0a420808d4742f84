//! Records from the guest: the data port's JSON lines decoded as
//! [`lags_proto::bench::Record`] and tagged with their boot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lags_proto::bench::{
    DoneRecord, KnativeRecord, OverheadRecord, RdhashdRecord, Record, RunRecord, Status,
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
        }
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
/// kernel, its config, the testbed and the seeds that pick the trace windows.
const MERGE_KEYS: &[&str] = &[
    "accel",
    "cpus",
    "mem_mib",
    "seed",
    "kernel_release",
    "series_hash",
    "config_hash",
];

/// Merges the results directories `dirs` into `out`: every `*.data.ndjson` file copied with
/// its directory's name appended (so names never collide), and one env.json whose boots are
/// all the directories' boots (each name tagged with its directory) and whose command lists
/// every command. Refused, with nothing written, when a directory has no env.json or
/// differs from the first in one of [`MERGE_KEYS`], or when `out` already holds results
/// (merging twice would count every run twice).
pub(crate) fn merge_dirs(dirs: &[PathBuf], out: &Path) -> Result<()> {
    if out.is_dir() {
        let held = fs_err::read_dir(out)?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".data.ndjson"));
        if held {
            anyhow::bail!(
                "--merge: {} already holds results; merge into a new directory",
                out.display()
            );
        }
    }
    let mut envs = Vec::new();
    for d in dirs {
        let p = d.join("env.json");
        let v: Value = serde_json::from_str(&util::read(&p)?)
            .with_context(|| format!("failed to parse {}", p.display()))?;
        envs.push(v);
    }
    let Some(first) = envs.first() else {
        anyhow::bail!("--merge: no directories given");
    };
    for (d, e) in dirs.iter().zip(&envs).skip(1) {
        for k in MERGE_KEYS {
            if e.get(k) != first.get(k) {
                anyhow::bail!(
                    "--merge: {} has {k} = {}, {} has {}; results of different kernels, \
                     testbeds or seeds are not reported together",
                    d.display(),
                    e.get(k).unwrap_or(&Value::Null),
                    dirs[0].display(),
                    first.get(k).unwrap_or(&Value::Null)
                );
            }
        }
    }
    let mut merged = first.clone();
    let (mut boots, mut commands) = (Vec::new(), Vec::new());
    let mut copies = Vec::new();
    for (d, e) in dirs.iter().zip(&envs) {
        let tag = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| d.display().to_string());
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
                copies.push((p.clone(), out.join(format!("{stem}-{tag}.data.ndjson"))));
            }
        }
    }
    merged["boots"] = Value::from(boots);
    merged["command"] = Value::from(commands.join(" ; "));
    util::create_dir(out)?;
    for (from, to) in copies {
        fs_err::copy(&from, &to)?;
    }
    util::write(
        &out.join("env.json"),
        serde_json::to_string_pretty(&merged)?,
    )?;
    Ok(())
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

    fn bench_dir(root: &Path, name: &str, series: &str) -> PathBuf {
        let d = root.join(name);
        fs_err::create_dir_all(&d).unwrap();
        let env = serde_json::json!({
            "command": format!("bench {name}"),
            "accel": "mttcg",
            "cpus": 2,
            "seed": 42,
            "series_hash": series,
            "boots": [{ "name": "density", "verdict": "Passed" }],
        });
        fs_err::write(d.join("env.json"), env.to_string()).unwrap();
        fs_err::write(
            d.join("density.data.ndjson"),
            format!("{{\"from\":\"{name}\"}}\n"),
        )
        .unwrap();
        d
    }

    // Expect two runs of one kernel and plan merged into a new directory (data files tagged
    // by directory, boots and commands of both), and a merge of different kernels, into a
    // directory that already holds results, or of a directory without env.json refused
    // with nothing written.
    #[test]
    fn merge_results_dirs() {
        let root = std::env::temp_dir().join(format!("xtask-merge-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&root);
        let tmp = Scratch(root);
        let a = bench_dir(tmp.path(), "20261127-0100", "abc");
        let b = bench_dir(tmp.path(), "20261127-0200", "abc");
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
        let env: Value =
            serde_json::from_str(&fs_err::read_to_string(out.join("env.json")).unwrap()).unwrap();
        assert_eq!(env["command"], "bench 20261127-0100 ; bench 20261127-0200");
        assert_eq!(env["boots"][1]["name"], "density (20261127-0200)");
        assert_eq!(env["boots"].as_array().unwrap().len(), 2);
        // Merging again into the same directory would count every run twice.
        let e = merge_dirs(&[a.clone(), b.clone()], &out).unwrap_err();
        assert!(e.to_string().contains("already holds results"), "{e}");
        let other = bench_dir(tmp.path(), "v6", "def");
        let out2 = tmp.path().join("merged2");
        let e = merge_dirs(&[a.clone(), other], &out2).unwrap_err();
        assert!(e.to_string().contains("series_hash"), "{e}");
        assert!(!out2.exists());
        let e = merge_dirs(&[a, tmp.path().join("missing")], &out2).unwrap_err();
        assert!(!out2.exists(), "{e}");
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
