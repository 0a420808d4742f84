//! `cargo xtask bench --host`: the benchmark's workloads on the running kernel.
//!
//! Emulation has no caches, so the cost of a context switch cannot grow with density in a
//! TCG guest; the prototype's main mechanism shows only on real CPUs. This mode runs the
//! same `lags-bench` binary, plan, records and report on the host's own kernel (bare metal or
//! a KVM guest): `lags-bench --host --data FILE lb.…` as a child process instead of PID 1
//! of a guest. The child creates `lags-bench.<pid>` under the host's cpu hierarchy (cgroup
//! v2 or the v1 cpu controller), removes it at the end or on SIGINT/SIGTERM/SIGHUP, and
//! gets SIGTERM when xtask dies. Configurations the running kernel cannot run are left out
//! and named in the report (`lags` without LAGS, `tuned` without a writable
//! `base_slice_ns`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lags_proto::bench::{SchedConfig, Status};

use super::plan::{plan_boots, Settings};
use super::records::Records;
use super::report::{BootInfo, Env};
use super::{progress, verdict_word, BenchArgs};
use crate::results::verdict::Verdict;
use crate::util::{self, failure, Exit, Paths};

const SYSCTL_LAGS: &str = "/proc/sys/kernel/sched_lags";
const BASE_SLICE: &str = "/sys/kernel/debug/sched/base_slice_ns";
const CREDIT_REF: &str = "/sys/kernel/debug/sched/lags/credit_ref_pct";

/// What the running kernel offers the configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostKernel {
    /// `kernel.sched_lags` exists: the kernel carries LAGS.
    pub lags: bool,
    /// `base_slice_ns` can be written (debugfs mounted and not locked down).
    pub slice_writable: bool,
    /// LAGS's `credit_ref_pct` can be written (a LAGS kernel, debugfs as above).
    pub credit_ref_writable: bool,
}

impl HostKernel {
    fn probe() -> HostKernel {
        if !Path::new(BASE_SLICE).exists() && Path::new("/sys/kernel/debug").is_dir() {
            // Idempotent; failure leaves the tuned configuration out, as below.
            let _ = Command::new("mount")
                .args(["-t", "debugfs", "debugfs", "/sys/kernel/debug"])
                .stderr(Stdio::null())
                .status();
        }
        // Opening for writing writes nothing; a lockdown or sandbox refuses the open.
        let writable = |f: &str| std::fs::OpenOptions::new().write(true).open(f).is_ok();
        HostKernel {
            lags: Path::new(SYSCTL_LAGS).exists(),
            slice_writable: writable(BASE_SLICE),
            credit_ref_writable: writable(CREDIT_REF),
        }
    }
}

/// The requested configurations the kernel can run, and a note for each one it cannot.
/// Pure.
pub fn runnable_configs(requested: &[String], k: HostKernel) -> (Vec<String>, Vec<String>) {
    let mut keep = Vec::new();
    let mut notes = Vec::new();
    for c in requested {
        // Unknown names were refused with the settings; keep them to fail there too.
        let Some(cfg) = SchedConfig::from_name(c) else {
            keep.push(c.clone());
            continue;
        };
        if cfg.needs_lags() && !k.lags {
            notes.push(format!(
                "configuration {c} left out: the running kernel has no LAGS ({SYSCTL_LAGS} missing)"
            ));
        } else if cfg == SchedConfig::Tuned && !k.slice_writable {
            notes.push(format!(
                "configuration tuned left out: {BASE_SLICE} cannot be written here (debugfs missing, locked down or sandboxed)"
            ));
        } else if cfg == SchedConfig::LagsInert && !k.credit_ref_writable {
            notes.push(format!(
                "configuration lags-inert left out: {CREDIT_REF} cannot be written here (debugfs missing, locked down or sandboxed)"
            ));
        } else {
            keep.push(c.clone());
        }
    }
    (keep, notes)
}

/// The verdict of one host run from how the child ended and its end record: a run that
/// had to be stopped at the time limit is a timeout; any other ending without an `ok` end
/// record is a failed benchmark. Pure.
pub fn run_verdict(
    timed_out: bool,
    exit: Option<i32>,
    status: Option<Status>,
) -> (Verdict, String) {
    if timed_out {
        return (Verdict::Timeout, "stopped at the time limit".into());
    }
    match (status, exit) {
        (Some(Status::Ok), Some(0)) => (Verdict::Passed, String::new()),
        (Some(s), _) => (Verdict::TestsFailed, format!("status {}", s.as_str())),
        (None, Some(c)) => (
            Verdict::TestsFailed,
            format!("lags-bench exited with {c} without an end record"),
        ),
        (None, None) => (
            Verdict::TestsFailed,
            "lags-bench was killed by a signal without an end record".into(),
        ),
    }
}

fn uname_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Runs `lags-bench --host`, streaming its lines to the terminal (filtered as a guest's
/// console is) and to `log`; SIGTERM at `limit` (the child cleans up), SIGKILL 20 s later.
/// Returns (timed out, exit code, elapsed).
fn run_child(
    bench: &Path,
    data: &Path,
    params: &[String],
    log: &Path,
    limit: Duration,
    verbose: bool,
) -> Result<(bool, Option<i32>, Duration)> {
    let mut cmd = Command::new(bench);
    cmd.arg("--host")
        .arg("--data")
        .arg(data)
        .args(params)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SIGTERM, not SIGKILL: the benchmark removes its cgroups when it gets it.
    crate::vm::signal_on_parent_death(&mut cmd, libc::SIGTERM);
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", bench.display()))?;
    let (tx, rx) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ]
    .into_iter()
    .map(|r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        })
    })
    .collect();
    drop(tx);
    let mut out = fs_err::File::create(log)?;
    let mut timed_out = false;
    let mut killed_at = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => {
                writeln!(out, "{l}")?;
                progress(&l, verbose);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if t0.elapsed() > limit && !timed_out {
            timed_out = true;
            eprintln!("[bench] time limit reached: stopping lags-bench (SIGTERM)");
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            killed_at = Some(Instant::now());
        }
        if killed_at.is_some_and(|k| k.elapsed() > Duration::from_secs(20)) {
            let _ = child.kill();
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait()?;
    Ok((timed_out, status.code(), t0.elapsed()))
}

/// `cargo xtask bench --host`.
pub fn run(a: &BenchArgs, paths: &Paths) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(failure(
            Exit::Infra,
            "bench --host needs root: it creates cgroups, writes scheduler tunables and runs perf -a",
        ));
    }
    if a.baseline_kernel.is_some() || a.machine.accel.is_some() {
        bail!("--host runs on the running kernel: --baseline-kernel and --accel do not apply");
    }
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = a.clone();
    args.machine.cpus = host_cpus as u32;
    let mut settings = Settings::from_args(&args)?;
    let kernel = HostKernel::probe();
    let (configs, notes) = runnable_configs(&settings.configs, kernel);
    for n in &notes {
        eprintln!("[bench] {n}");
    }
    if configs.is_empty() {
        return Err(failure(
            Exit::Infra,
            "no requested configuration can run on this kernel",
        ));
    }
    settings.configs = configs;
    if settings.reps < 3 {
        eprintln!("[bench] WARNING: fewer than 3 repetitions: the spread is not meaningful");
    }
    let dir = paths.work.join("bench").join(util::timestamp());
    util::create_dir(&dir)?;
    eprintln!("[bench] building lags-bench (static) ...");
    let bench = super::build_bench(paths)?;
    let (base, common) = a.base_plan()?;
    let release = uname_release();
    let boots = plan_boots(
        &settings,
        Path::new("/proc/version"),
        None,
        &base,
        &common,
        f64::INFINITY,
    );
    let mut env = Env {
        accel: "host".into(),
        accel_reason: format!(
            "--host: the running kernel {release} on real CPUs; {}",
            if notes.is_empty() {
                "every requested configuration runs".to_string()
            } else {
                notes.join("; ")
            }
        ),
        cpus: host_cpus as u32,
        mem_mib: 0,
        kernel_release: release.clone(),
        ..args.env_base(&settings)
    };
    let total: f64 = boots.iter().map(|b| b.estimate_s).sum();
    eprintln!(
        "[bench] host mode on {release}, {host_cpus} CPUs, configurations {}: estimated {:.0} min; results in {}",
        settings.configs.join(","),
        total / 60.0,
        dir.display()
    );
    let mut recs = Records::default();
    let mut verdicts = Vec::new();
    for b in &boots {
        let data = dir.join(format!("{}.data.ndjson", b.name));
        let log = dir.join(format!("{}.console.log", b.name));
        let limit = Duration::from_secs(a.timeout.unwrap_or((b.estimate_s * 2.0 + 120.0) as u64));
        let before = super::loadavg();
        let cpu0 = super::host_cpu_times();
        let (timed_out, code, elapsed) =
            run_child(&bench, &data, &b.params, &log, limit, a.verbose)?;
        let guest_status = recs.add_file(&b.name, &data);
        let (v, message) = run_verdict(timed_out, code, guest_status);
        verdicts.push(v);
        eprintln!(
            "[bench] run {}: {} ({:.0}s) {message}",
            b.name,
            verdict_word(v),
            elapsed.as_secs_f64()
        );
        env.boots.push(BootInfo {
            name: b.name.clone(),
            kernel: format!("running kernel {release}"),
            params: b.params.clone(),
            elapsed_s: elapsed.as_secs_f64(),
            verdict: verdict_word(v).into(),
            message,
            host_loadavg_before: before,
            host_loadavg_after: super::loadavg(),
            host_steal_pct: super::steal_pct(cpu0, super::host_cpu_times()),
            guest_status: guest_status
                .map_or_else(|| "no end record".into(), |s| s.as_str().into()),
        });
        util::write(&dir.join("env.json"), serde_json::to_string_pretty(&env)?)?;
    }
    super::finish(paths, &dir, &env, &recs, a.slo_target, verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    // Expect every configuration on a LAGS kernel with debugfs, on a stock kernel in a
    // sandbox (this project's own development host) only stock, and on a LAGS kernel with
    // debugfs locked no lags-inert, each left out with its reason.
    #[test]
    fn configurations_the_kernel_can_run() {
        let all = v(&["stock", "lags", "lags-inert", "tuned"]);
        let full = HostKernel {
            lags: true,
            slice_writable: true,
            credit_ref_writable: true,
        };
        assert_eq!(runnable_configs(&all, full), (all.clone(), vec![]));
        let (keep, notes) = runnable_configs(
            &all,
            HostKernel {
                lags: false,
                slice_writable: false,
                credit_ref_writable: false,
            },
        );
        assert_eq!(keep, v(&["stock"]));
        assert_eq!(notes.len(), 3);
        assert!(notes[0].contains("lags left out") && notes[0].contains("no LAGS"));
        assert!(notes[1].contains("lags-inert left out") && notes[1].contains("no LAGS"));
        assert!(notes[2].contains("base_slice_ns"));
        // LAGS in the kernel but debugfs locked: lags runs, lags-inert cannot set its knob.
        let (keep, notes) = runnable_configs(
            &all,
            HostKernel {
                lags: true,
                slice_writable: false,
                credit_ref_writable: false,
            },
        );
        assert_eq!(keep, v(&["stock", "lags"]));
        assert!(notes[0].contains("lags-inert") && notes[0].contains("credit_ref_pct"));
        // A LAGS kernel whose base slice can be written but without LAGS's tunables (a
        // build without them): lags-inert is left out by its own knob, not the slice's.
        let (keep, notes) = runnable_configs(
            &all,
            HostKernel {
                lags: true,
                slice_writable: true,
                credit_ref_writable: false,
            },
        );
        assert_eq!(keep, v(&["stock", "lags", "tuned"]));
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("lags-inert left out") && notes[0].contains("credit_ref_pct"));
    }

    // Expect a clean end only with both a zero exit and an ok end record, a timeout only
    // when xtask stopped the run, and every other ending a failed benchmark.
    #[test]
    fn host_run_verdicts() {
        assert_eq!(
            run_verdict(false, Some(0), Some(Status::Ok)).0,
            Verdict::Passed
        );
        assert_eq!(
            run_verdict(true, Some(1), Some(Status::Error)).0,
            Verdict::Timeout
        );
        assert_eq!(
            run_verdict(false, Some(1), Some(Status::Errors)).0,
            Verdict::TestsFailed
        );
        let (v, m) = run_verdict(false, None, None);
        assert_eq!(v, Verdict::TestsFailed);
        assert!(m.contains("signal"));
        let (_, m) = run_verdict(false, Some(2), None);
        assert!(m.contains("exited with 2"));
    }
}
