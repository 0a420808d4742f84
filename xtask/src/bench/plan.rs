//! Host-side plan: the sweep settings from the command line and their split into boots,
//! each a [`lags_proto::bench::Plan`] written as `lb.*` kernel parameters.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use lags_proto::bench::{KnPlan, Plan, RdPlan, SchedConfig, Workload};
use serde::Serialize;

use super::BenchArgs;

/// The sweep settings after the preset and the overrides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub funcs: usize,
    pub loads: Vec<f64>,
    pub density: Vec<usize>,
    pub density_load: f64,
    pub reps: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub configs: Vec<String>,
    pub parts: Vec<String>,
    pub mean_ms: f64,
    pub ov_reps: usize,
    pub ov_pipe_loops: u64,
    pub ov_switch_s: u32,
    /// `zipf-open` (the `load` and `density` parts above) or `rdhashd` (its density sweep
    /// below replaces `density`).
    pub workload: Workload,
    /// rdhashd: function counts (functions per vCPU × vCPUs).
    pub rd_funcs: Vec<usize>,
    /// rdhashd: concurrency scales (the trace's targets times each), ascending.
    pub rd_scales: Vec<f64>,
    /// rdhashd: measured and warm-up seconds per run.
    pub rd_duration_s: u32,
    pub rd_warmup_s: u32,
    /// knative: user counts of its sweep (its windows are rdhashd's).
    pub kn_users: Vec<usize>,
    /// knative: longest think time, ms (the warm-up covers it).
    pub kn_think_max_ms: f64,
}

/// rdhashd's default densities, in functions per vCPU (the prototype: 1 to 19 per core).
pub const RD_PER_CPU: [f64; 4] = [1.0, 4.0, 8.0, 19.0];

impl Settings {
    pub fn preset(quick: bool) -> Settings {
        if quick {
            Settings {
                funcs: 50,
                loads: vec![0.5, 0.7, 0.9],
                density: vec![25, 100],
                density_load: 0.7,
                reps: 3,
                duration_s: 3.0,
                warmup_s: 1.0,
                configs: vec!["stock".into(), "lags".into(), "tuned".into()],
                parts: vec!["load".into(), "density".into(), "overhead".into()],
                mean_ms: 5.0,
                ov_reps: 3,
                ov_pipe_loops: 10_000,
                ov_switch_s: 2,
                workload: Workload::ZipfOpen,
                rd_funcs: rd_funcs(&RD_PER_CPU, 1),
                rd_scales: vec![1.0],
                rd_duration_s: 4,
                rd_warmup_s: 1,
                kn_users: vec![20, 60],
                kn_think_max_ms: 3000.0,
            }
        } else {
            Settings {
                funcs: 100,
                loads: vec![0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95],
                density: vec![25, 100, 400],
                density_load: 0.7,
                reps: 3,
                duration_s: 8.0,
                warmup_s: 1.0,
                configs: vec!["stock".into(), "lags".into(), "tuned".into()],
                parts: vec!["load".into(), "density".into(), "overhead".into()],
                mean_ms: 5.0,
                ov_reps: 5,
                ov_pipe_loops: 20_000,
                ov_switch_s: 3,
                workload: Workload::ZipfOpen,
                rd_funcs: rd_funcs(&RD_PER_CPU, 1),
                rd_scales: vec![1.0],
                rd_duration_s: 20,
                rd_warmup_s: 2,
                kn_users: vec![50, 100, 150],
                kn_think_max_ms: 3000.0,
            }
        }
    }

    pub(super) fn from_args(a: &BenchArgs) -> Result<Settings> {
        let mut s = Settings::preset(a.quick);
        if let Some(v) = a.funcs {
            s.funcs = v;
        }
        if let Some(v) = &a.loads {
            s.loads = v.clone();
        }
        if let Some(v) = &a.density {
            s.density = v.clone();
        }
        if let Some(v) = a.density_load {
            s.density_load = v;
        }
        if let Some(v) = a.reps {
            s.reps = v;
        }
        if let Some(v) = a.duration {
            s.duration_s = v;
        }
        if let Some(v) = &a.configs {
            s.configs = v.clone();
        }
        if let Some(v) = &a.parts {
            s.parts = v.clone();
        }
        if let Some(v) = a.mean_ms {
            s.mean_ms = v;
        }
        s.workload = a.workload;
        if a.rd_trace.is_some() && s.workload != Workload::Rdhashd {
            bail!("--rd-trace is an rdhashd option: add --workload rdhashd");
        }
        if a.rd_scale.is_some() && s.workload != Workload::Rdhashd {
            bail!("--rd-scale is an rdhashd option: add --workload rdhashd");
        }
        if a.sched_ftrace && s.workload == Workload::ZipfOpen {
            bail!("--sched-ftrace measures the closed-loop workloads: add --workload rdhashd or knative");
        }
        if a.no_schedstats && s.workload == Workload::ZipfOpen {
            bail!("--no-schedstats is a closed-loop option (rdhashd, knative): zipf-open's records need the schedstat counts");
        }
        if a.sched_ftrace && a.host {
            bail!(
                "--sched-ftrace runs in a guest on the ftrace profile's kernel; on a host it \
                 would rewrite the host's global tracing settings (use --sched-profile there)"
            );
        }
        if s.workload == Workload::Knative {
            if a.parts.is_none() {
                s.parts = vec!["density".into()];
            }
            if s.parts.iter().any(|p| p == "load") {
                bail!("--workload knative has no load part: its sweep is the density part (user counts)");
            }
            if a.fifo_dispatch {
                bail!(
                    "--fifo-dispatch is a zipf-open option: knative's users run in the fair class"
                );
            }
            if let Some(u) = &a.kn_users {
                if u.is_empty() || u.contains(&0) {
                    bail!("--kn-users: user counts, each at least 1");
                }
                s.kn_users = u.clone();
            }
            if a.kn_pods == 0 || a.kn_k == 0 || a.kn_work_ms.is_nan() || a.kn_work_ms <= 0.0 {
                bail!("--kn-pods, --kn-k and --kn-work-ms must be positive");
            }
            if !(0.0..=3.0).contains(&a.kn_work_sigma) {
                bail!("--kn-work-sigma must be in [0, 3]");
            }
            if let Some(v) = a.duration {
                s.rd_duration_s = v.ceil().max(1.0) as u32;
            }
        }
        if s.workload == Workload::Rdhashd {
            if a.parts.is_none() {
                s.parts = vec!["density".into()];
            }
            if s.parts.iter().any(|p| p == "load") {
                bail!("--workload rdhashd has no load part: use --parts density[,overhead]");
            }
            if a.fifo_dispatch {
                bail!("--fifo-dispatch is a zipf-open option: rdhashd's controller runs in the fair class");
            }
            let per_cpu = a.rd_density.as_deref().unwrap_or(&RD_PER_CPU);
            if per_cpu.is_empty() || per_cpu.iter().any(|&x| !(x > 0.0 && x <= 1000.0)) {
                bail!("--rd-density: functions per vCPU, each in (0, 1000]");
            }
            s.rd_funcs = rd_funcs(per_cpu, a.machine.cpus);
            if let Some(v) = &a.rd_scale {
                if v.is_empty() || v.iter().any(|&k| !(k > 0.0 && k <= 100.0)) {
                    bail!("--rd-scale: concurrency scales, each in (0, 100]");
                }
                let mut v = v.clone();
                v.sort_by(f64::total_cmp);
                v.dedup();
                if v.len() > 1 && s.rd_funcs.len() > 1 {
                    bail!(
                        "--rd-scale sweeps concurrency at one density: give one --rd-density (the sweep has {} function counts)",
                        s.rd_funcs.len()
                    );
                }
                s.rd_scales = v;
            }
            if let Some(d) = &a.rd_trace {
                let have = super::trace_files(d, a.host)?.len();
                if let Some(&f) = s.rd_funcs.iter().find(|&&f| f > have) {
                    bail!(
                        "--rd-trace {} has {have} functions, the density sweep asks for {f}: lower --rd-density",
                        d.display()
                    );
                }
            }
            if let Some(v) = a.duration {
                s.rd_duration_s = v.ceil().max(1.0) as u32;
            }
        }
        SchedConfig::check(&s.configs).map_err(anyhow::Error::msg)?;
        for p in &s.parts {
            if !["load", "density", "overhead"].contains(&p.as_str()) {
                bail!("unknown part {p:?}: use load, density, overhead");
            }
        }
        if s.loads.iter().any(|&l| !(0.01..=1.5).contains(&l)) {
            bail!("loads must be fractions of the vCPUs (0.01..1.5)");
        }
        s.loads.sort_by(f64::total_cmp);
        // One run per (repetition, load) and configuration: a load given twice would run a
        // second schedule that the report could not pair (loads are told apart to 1e-6).
        s.loads
            .dedup_by(|a, b| (*a * 1e6).round() == (*b * 1e6).round());
        Ok(s)
    }

    fn rdhashd(&self) -> bool {
        self.workload == Workload::Rdhashd
    }

    /// Estimated guest seconds of the density part (zipf-open's or rdhashd's).
    fn density_s(&self) -> f64 {
        let runs = |points: usize| points as f64 * self.reps as f64 * self.configs.len() as f64;
        if self.workload == Workload::Knative {
            // The warm-up covers the longest think time; the pods start once.
            let warm = f64::from(self.rd_warmup_s).max((self.kn_think_max_ms / 1e3).ceil() + 1.0);
            runs(self.kn_users.len()) * (warm + f64::from(self.rd_duration_s) + 2.0) + 10.0
        } else if self.rdhashd() {
            // Settle, warm-up, window and drain per run; starting the threads per density.
            runs(self.rd_funcs.len() * self.rd_scales.len())
                * (f64::from(self.rd_warmup_s + self.rd_duration_s) + 1.5)
                + self.rd_funcs.len() as f64 * 3.0
        } else {
            runs(self.density.len()) * self.run_s()
        }
    }

    /// Estimated guest seconds of one run.
    fn run_s(&self) -> f64 {
        self.warmup_s + self.duration_s + 2.0
    }

    fn overhead_s(&self) -> f64 {
        // Two modes; pipe at ~100 us/op under TCG, messaging ~5 s, switch + start-up.
        self.ov_reps as f64
            * 2.0
            * (self.ov_pipe_loops as f64 * 100e-6 + 5.0 + self.ov_switch_s as f64 + 2.0)
    }
}

/// Function counts for densities in functions per vCPU: rounded, at least 1, ascending,
/// without repeats. Pure.
pub fn rd_funcs(per_cpu: &[f64], cpus: u32) -> Vec<usize> {
    let mut v: Vec<usize> = per_cpu
        .iter()
        .map(|x| ((x * f64::from(cpus)).round() as usize).max(1))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// One boot of the benchmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootPlan {
    pub name: String,
    pub kernel: PathBuf,
    /// `lb.*` guest parameters.
    pub params: Vec<String>,
    pub estimate_s: f64,
}

/// Splits the work into boots of at most `max_boot_s` (estimated), configurations always
/// interleaved within a boot. `base` gives the guest plan's fields that are not sweep
/// settings (seed, SLO, tuned slice, workload shape); `common` are extra parameters for
/// every boot (`--param`), after the plan so they win. Pure.
pub fn plan_boots(
    s: &Settings,
    kernel: &Path,
    baseline: Option<&Path>,
    base: &Plan,
    common: &[String],
    max_boot_s: f64,
) -> Vec<BootPlan> {
    let has = |p: &str| s.parts.iter().any(|x| x == p);
    let params = |parts: &str, loads: &[f64]| -> Vec<String> {
        let plan = Plan {
            parts: parts.split(',').map(str::to_string).collect(),
            configs: s.configs.clone(),
            funcs: s.funcs,
            loads: loads.to_vec(),
            density: s.density.clone(),
            density_load: s.density_load,
            reps: s.reps,
            duration_s: s.duration_s,
            warmup_s: s.warmup_s,
            mean_ms: s.mean_ms,
            ov_reps: s.ov_reps,
            ov_pipe_loops: s.ov_pipe_loops,
            ov_switch_s: s.ov_switch_s,
            workload: s.workload,
            rd: RdPlan {
                funcs: s.rd_funcs.clone(),
                scales: s.rd_scales.clone(),
                duration_s: s.rd_duration_s,
                warmup_s: s.rd_warmup_s,
                ..base.rd.clone()
            },
            kn: KnPlan {
                users: s.kn_users.clone(),
                ..base.kn.clone()
            },
            ..base.clone()
        };
        let mut v = plan.to_cmdline();
        v.extend(common.iter().cloned());
        v
    };
    let nconf = s.configs.len() as f64;
    let load_s = |n: usize| n as f64 * s.reps as f64 * nconf * s.run_s();
    let density_s = s.density_s();
    let ov_s = s.overhead_s();
    let total = if has("load") {
        load_s(s.loads.len())
    } else {
        0.0
    } + if has("density") { density_s } else { 0.0 }
        + if has("overhead") { ov_s } else { 0.0 };
    let mut boots = Vec::new();
    if total <= max_boot_s {
        let parts: Vec<&str> = ["overhead", "load", "density"]
            .into_iter()
            .filter(|p| has(p))
            .collect();
        if !parts.is_empty() {
            boots.push(BootPlan {
                name: "all".into(),
                kernel: kernel.to_path_buf(),
                params: params(&parts.join(","), &s.loads),
                estimate_s: total,
            });
        }
    } else {
        if has("load") && !s.loads.is_empty() {
            let per = ((max_boot_s / load_s(1)).floor() as usize).max(1);
            let nboots = s.loads.len().div_ceil(per);
            // Spread the loads round-robin, so every boot covers the whole range.
            for b in 0..nboots {
                let loads: Vec<f64> = s.loads.iter().skip(b).step_by(nboots).copied().collect();
                let name = if nboots == 1 {
                    "load".to_string()
                } else {
                    format!("load-{}", b + 1)
                };
                boots.push(BootPlan {
                    name,
                    kernel: kernel.to_path_buf(),
                    estimate_s: load_s(loads.len()),
                    params: params("load", &loads),
                });
            }
        }
        let mut rest = Vec::new();
        let mut est = 0.0;
        if has("overhead") {
            rest.push("overhead");
            est += ov_s;
        }
        if has("density") {
            rest.push("density");
            est += density_s;
        }
        if !rest.is_empty() {
            boots.push(BootPlan {
                name: rest.join("+"),
                kernel: kernel.to_path_buf(),
                params: params(&rest.join(","), &s.loads),
                estimate_s: est,
            });
        }
    }
    if let Some(b) = baseline {
        boots.push(BootPlan {
            name: "baseline-kernel".into(),
            kernel: b.to_path_buf(),
            params: params("overhead", &s.loads),
            estimate_s: ov_s / 2.0,
        });
    }
    boots
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guest plan's base for the boot-plan tests: seed 1, everything else default.
    fn seed1() -> Plan {
        Plan {
            seed: 1,
            ..Plan::default()
        }
    }

    // Expect one boot when it fits, otherwise loads spread over boots and the rest in one.
    #[test]
    fn boot_plan() {
        let s = Settings::preset(true);
        let k = Path::new("/k");
        let b = plan_boots(&s, k, None, &seed1(), &[], 1200.0);
        assert_eq!(b.len(), 1);
        assert!(b[0]
            .params
            .contains(&"lb.parts=overhead,load,density".to_string()));
        assert!(b[0].estimate_s < 600.0, "{}", b[0].estimate_s);
        let f = Settings::preset(false);
        let b = plan_boots(&f, k, None, &seed1(), &[], 1200.0);
        assert_eq!(b.len(), 1, "the full preset fits one 20-minute boot: {b:?}");
        let b = plan_boots(
            &f,
            k,
            Some(Path::new("/base")),
            &seed1(),
            &["lb.x=1".into()],
            800.0,
        );
        let names: Vec<&str> = b.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["load", "overhead+density", "baseline-kernel"]);
        assert!(b.iter().all(|b| b.estimate_s <= 800.0));
        assert!(b.iter().all(|b| b.params.contains(&"lb.x=1".to_string())));
        assert_eq!(b[2].kernel, Path::new("/base"));
        let b = plan_boots(&f, k, None, &seed1(), &[], 300.0);
        let loads: Vec<&String> = b
            .iter()
            .flat_map(|b| b.params.iter())
            .filter(|p| p.starts_with("lb.loads="))
            .collect();
        assert!(b.len() > 3, "{b:?}");
        assert!(loads[0].contains("0.4") && loads[1].contains("0.5"));
    }

    // Expect densities per vCPU as function counts, and an rdhashd plan to carry its
    // workload, function counts and run length to the guest, estimated from its own runs.
    #[test]
    fn rdhashd_boot_plan() {
        assert_eq!(rd_funcs(&RD_PER_CPU, 1), vec![1, 4, 8, 19]);
        assert_eq!(rd_funcs(&RD_PER_CPU, 2), vec![2, 8, 16, 38]);
        assert_eq!(rd_funcs(&[0.1, 0.4, 1.0], 2), vec![1, 2]);
        let s = Settings {
            workload: Workload::Rdhashd,
            parts: vec!["density".into()],
            ..Settings::preset(true)
        };
        let b = plan_boots(&s, Path::new("/k"), None, &seed1(), &[], 1200.0);
        assert_eq!(b.len(), 1);
        let (p, w) = Plan::from_cmdline(&b[0].params.join(" "));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(p.workload.name(), "rdhashd");
        assert_eq!(p.rd.funcs, vec![1, 4, 8, 19]);
        assert_eq!((p.rd.duration_s, p.rd.warmup_s), (4, 1));
        assert_eq!(p.rd.sleep_ms, 20.0);
        // 4 densities x 3 configurations x 3 repetitions of 6.5 s, and the thread starts.
        assert!(
            (b[0].estimate_s - (36.0 * 6.5 + 12.0)).abs() < 1e-9,
            "{}",
            b[0].estimate_s
        );
        assert!(b[0].estimate_s < 300.0);
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn settings(args: &[&str]) -> Result<Settings> {
        use clap::Parser;
        let a = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .expect("valid arguments")
            .bench;
        Settings::from_args(&a)
    }

    // Expect the report's description of knative's load generator to be the plan the guest
    // will run: `--param` overrides included (a run with `--param lb.kn_k=1` was described
    // as split over 3 threads), and the request-size spread when there is one.
    #[test]
    fn knative_description_follows_the_plan() {
        use clap::Parser;
        let text = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
                .expect("valid arguments")
                .bench
                .dispatcher_text()
        };
        let t = text(&["--workload", "knative"]);
        assert!(
            t.contains("each request 30 ms of CPU split over 3 threads and joined"),
            "{t}"
        );
        let t = text(&["--workload", "knative", "--param", "lb.kn_k=1"]);
        assert!(t.contains("each request 30 ms of CPU on one thread"), "{t}");
        let t = text(&[
            "--workload",
            "knative",
            "--kn-k",
            "2",
            "--kn-work-sigma",
            "1.5",
        ]);
        assert!(
            t.contains("lognormal around 30 ms of CPU (σ = 1.5, at most 50× the mean) split over 2 threads"),
            "{t}"
        );
        let t = text(&[
            "--workload",
            "knative",
            "--param",
            "lb.kn_think_max_ms=5000",
        ]);
        assert!(t.contains("think time uniform 1–5 s"), "{t}");
    }

    // Expect knative's defaults (its sweep is the density part, over user counts), its
    // options to reach the guest plan, and bad combinations refused before any boot.
    #[test]
    fn knative_settings() {
        let s = settings(&["--workload", "knative", "--quick"]).unwrap();
        assert_eq!(s.parts, vec!["density"]);
        assert_eq!(s.kn_users, vec![20, 60]);
        let s = settings(&[
            "--workload",
            "knative",
            "--kn-users",
            "10,40",
            "--duration",
            "30",
        ])
        .unwrap();
        assert_eq!((s.kn_users.clone(), s.rd_duration_s), (vec![10, 40], 30));
        let b = plan_boots(&s, Path::new("/k"), None, &seed1(), &[], f64::INFINITY);
        let (p, w) = Plan::from_cmdline(&b[0].params.join(" "));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            (p.workload, p.kn.users.clone()),
            (Workload::Knative, vec![10, 40])
        );
        // 2 user counts x 3 configurations x 3 repetitions of (4 s warm-up covering the 3 s
        // think time + 30 s + 2 s), and the pods' start.
        assert!(
            (b[0].estimate_s - (18.0 * 36.0 + 10.0)).abs() < 1e-9,
            "{}",
            b[0].estimate_s
        );
        for bad in [
            &["--workload", "knative", "--parts", "load"][..],
            &["--workload", "knative", "--kn-users", "0,10"],
            &["--workload", "knative", "--kn-k", "0"],
            &["--workload", "knative", "--kn-work-ms=-1"],
            &["--workload", "knative", "--kn-work-sigma", "4"],
            &["--workload", "knative", "--kn-work-sigma=-1"],
            &["--workload", "knative", "--fifo-dispatch"],
            &["--workload", "zipf-open", "--rd-trace", "/tmp"],
            &["--workload", "zipf-open", "--sched-ftrace"],
            &["--workload", "zipf-open", "--no-schedstats"],
            &["--workload", "rdhashd", "--sched-ftrace", "--host"],
        ] {
            assert!(settings(bad).is_err(), "{bad:?} accepted");
        }
    }

    // Expect concurrency scales to reach the guest plan sorted and without repeats, the
    // estimate to count a run per scale, and a scale sweep over several densities (no
    // single capacity axis), a non-positive scale and a scale on another workload refused.
    #[test]
    fn rdhashd_scale_settings() {
        let s = settings(&[
            "--workload",
            "rdhashd",
            "--rd-density",
            "8",
            "--rd-scale",
            "0.9,0.6,0.9,0.75",
            "--duration",
            "10",
            "--reps",
            "2",
            "--configs",
            "stock,lags",
        ])
        .unwrap();
        assert_eq!(s.rd_scales, vec![0.6, 0.75, 0.9]);
        let b = plan_boots(&s, Path::new("/k"), None, &seed1(), &[], f64::INFINITY);
        let (p, w) = Plan::from_cmdline(&b[0].params.join(" "));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            (p.rd.funcs.clone(), p.rd.scales.clone()),
            (vec![16], vec![0.6, 0.75, 0.9])
        );
        // 3 scales x 2 configurations x 2 repetitions of (2 + 10 + 1.5) s, one thread start.
        assert!(
            (b[0].estimate_s - (12.0 * 13.5 + 3.0)).abs() < 1e-9,
            "{}",
            b[0].estimate_s
        );
        let z = settings(&["--loads", "0.5,0.3,0.5,0.3000000001"]).unwrap();
        assert_eq!(z.loads, vec![0.3, 0.5]);
        let one = settings(&["--workload", "rdhashd", "--rd-scale", "1.2"]).unwrap();
        assert_eq!((one.rd_scales, one.rd_funcs.len()), (vec![1.2], 4));
        for bad in [
            &["--workload", "rdhashd", "--rd-scale", "0.5,1"][..],
            &[
                "--workload",
                "rdhashd",
                "--rd-density",
                "8",
                "--rd-scale",
                "0,1",
            ],
            &[
                "--workload",
                "rdhashd",
                "--rd-density",
                "8",
                "--rd-scale=-1",
            ],
            &["--workload", "knative", "--rd-scale", "1"],
        ] {
            assert!(settings(bad).is_err(), "{bad:?} accepted");
        }
    }
}
