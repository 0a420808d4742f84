//! The accelerator: KVM when a probe boot under it works (cached), else TCG; multi-threaded
//! and deterministic TCG on request, with their checks.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use super::args::{qemu_binary, VmSpec, ICOUNT_SHIFT};
use super::run::{run_vm, Limits};

/// The accelerator a VM runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    /// Single-threaded TCG: every vCPU takes turns on one host thread.
    Tcg,
    /// Multi-threaded TCG: one host thread per vCPU. Needs a kernel without runtime text
    /// patching (`--profile parallel`); refused otherwise.
    Mttcg,
    /// Deterministic TCG: one vCPU whose clock counts instructions (`-icount`), so the same
    /// guest program sees the same times in every run. For policy decisions, not overheads.
    Icount,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
            Accel::Mttcg => "mttcg",
            Accel::Icount => "icount",
        }
    }
}

/// Options of a kernel `.config` under which the kernel rewrites its own code at run time
/// (static keys, dynamic preemption's static calls, ftrace's call sites when a tracer
/// starts), which QEMU 7.2's multi-threaded TCG races with ("Oops: int3").
pub fn text_patching_options(config: &str) -> Vec<&'static str> {
    crate::config::options_on(
        config,
        &[
            "CONFIG_JUMP_LABEL",
            "CONFIG_PREEMPT_DYNAMIC",
            "CONFIG_DYNAMIC_FTRACE",
        ],
    )
}

/// Refuses multi-threaded TCG for a kernel that patches its text at run time: the
/// kernel's `.config` sits at the root of the build directory, three levels above
/// `arch/x86/boot/bzImage`.
fn check_mttcg_kernel(kernel: &Path) -> Result<()> {
    let config = kernel
        .ancestors()
        .nth(4)
        .map(|d| d.join(".config"))
        .filter(|p| p.is_file());
    let Some(config) = config else {
        bail!(
            "--accel mttcg: no .config next to {} to prove the kernel does not patch its \
             text at run time; build it with `cargo xtask build-kernel --profile parallel`",
            kernel.display()
        );
    };
    let text = fs_err::read_to_string(&config)?;
    let bad = text_patching_options(&text);
    if !bad.is_empty() {
        bail!(
            "--accel mttcg: {} has {} (runtime text patching, which races with QEMU's \
             multi-threaded TCG: \"Oops: int3\"); use `--profile parallel`",
            config.display(),
            bad.join(" and ")
        );
    }
    Ok(())
}

/// Decides the accelerator: `forced` if given, else KVM only if a real boot under KVM
/// reaches the test runner within a short limit (nested KVM can stall forever in the
/// kernel decompressor), else TCG. The answer is cached in `cache`.
pub fn choose_accel(
    forced: Option<Accel>,
    probe: &VmSpec,
    cache: &Path,
) -> Result<(Accel, String)> {
    if let Some(a) = forced {
        return Ok((a, format!("{} forced by --accel/LAGS_ACCEL", a.name())));
    }
    let kvm_dev = Path::new("/dev/kvm");
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(kvm_dev)
        .is_err()
    {
        return Ok((Accel::Tcg, "/dev/kvm is not usable".into()));
    }
    let key = probe_key(probe);
    if let Ok(text) = fs_err::read_to_string(cache) {
        if let Some((k, v)) = text.trim().split_once(' ') {
            if k == key {
                let a = if v == "kvm" { Accel::Kvm } else { Accel::Tcg };
                return Ok((a, format!("cached KVM probe result ({})", cache.display())));
            }
        }
    }
    eprintln!("[qemu] probing whether KVM actually boots this kernel (up to 25 s) ...");
    let mut spec = probe.clone();
    spec.accel = Accel::Kvm;
    spec.extra_cmdline
        .push(lags_proto::runner::suites_param::<&str>(&[]));
    let log = cache.with_extension("log");
    let run = run_vm(
        &spec,
        &log,
        Limits {
            hard: Duration::from_secs(25),
            silence: Duration::from_secs(20),
        },
        |_| {},
    )?;
    let ok = run.console.contains(lags_proto::marker::RUNNER_START);
    let accel = if ok { Accel::Kvm } else { Accel::Tcg };
    crate::util::write(cache, format!("{key} {}\n", accel.name()))?;
    let why = if ok {
        format!(
            "KVM probe booted to the runner in {:.1}s",
            run.elapsed.as_secs_f64()
        )
    } else {
        format!(
            "KVM probe did not reach the runner ({:?}); see {}",
            run.ending,
            log.display()
        )
    };
    Ok((accel, why))
}

/// Chooses the accelerator for `spec` with [`choose_accel`], sets it and says which one runs;
/// under TCG with a warning that only ratios measured within one boot mean anything. Returns
/// the accelerator and why it was chosen.
pub fn apply_accel(
    forced: Option<Accel>,
    spec: &mut VmSpec,
    cache: &Path,
    who: &str,
) -> Result<(Accel, String)> {
    let (accel, why) = choose_accel(forced, spec, cache)?;
    if accel == Accel::Mttcg {
        check_mttcg_kernel(&spec.kernel)?;
    }
    if accel == Accel::Icount && spec.cpus != 1 {
        bail!(
            "--accel icount is deterministic with one vCPU only; pass --cpus 1 (got {})",
            spec.cpus
        );
    }
    spec.accel = accel;
    match accel {
        Accel::Tcg => eprintln!(
            "[{who}] WARNING: running under TCG software emulation ({why}); only ratios measured within one boot are meaningful"
        ),
        Accel::Icount => eprintln!(
            "[{who}] WARNING: running under deterministic TCG (-icount shift={ICOUNT_SHIFT}, {why}): guest time counts instructions; only decisions and ratios mean anything"
        ),
        Accel::Mttcg => eprintln!(
            "[{who}] WARNING: running under multi-threaded TCG software emulation ({why}): parallel vCPUs, but only ratios measured within one boot are meaningful"
        ),
        Accel::Kvm => eprintln!("[{who}] accelerator: KVM ({why})"),
    }
    Ok((accel, why))
}

fn probe_key(spec: &VmSpec) -> String {
    let mut h = crate::util::Fnv::default();
    if let Ok(m) = fs_err::metadata(&spec.kernel) {
        h.update(format!("{:?}{}", m.modified().ok(), m.len()).as_bytes());
    }
    h.update(
        crate::util::tool_version(qemu_binary(), &["--version"])
            .unwrap_or_default()
            .as_bytes(),
    );
    h.hex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::args::accel_args;
    use crate::vm::args::tests::{spec, strings};

    // Expect icount mode to count instructions without host entropy or host clocks, and to
    // be refused for more than one vCPU before anything boots.
    #[test]
    fn icount_is_single_vcpu_and_host_independent() {
        let a = strings(&accel_args(Accel::Icount)).join(" ");
        for part in [
            "tcg,thread=single",
            "-icount shift=3,sleep=off,align=off",
            "-rdrand,-rdseed",
            "-rtc base=2026-01-01T00:00:00,clock=vm",
        ] {
            assert!(a.contains(part), "{part} missing in {a}");
        }
        let mut two = spec(Accel::Tcg);
        two.cpus = 2;
        let cache = std::env::temp_dir().join(format!("xtask-icount-{}", std::process::id()));
        let err = apply_accel(Some(Accel::Icount), &mut two, &cache, "test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--cpus 1"), "{err}");
    }

    // Expect the options that make the kernel rewrite its code at run time to be found,
    // and only when set to y.
    #[test]
    fn text_patching_options_found() {
        let stock = "CONFIG_JUMP_LABEL=y\nCONFIG_PREEMPT_DYNAMIC=y\nCONFIG_SMP=y\n";
        assert_eq!(
            text_patching_options(stock),
            ["CONFIG_JUMP_LABEL", "CONFIG_PREEMPT_DYNAMIC"]
        );
        assert_eq!(
            text_patching_options("CONFIG_DYNAMIC_FTRACE=y\n"),
            ["CONFIG_DYNAMIC_FTRACE"]
        );
        let parallel = "# CONFIG_JUMP_LABEL is not set\nCONFIG_SMP=y\n";
        assert!(text_patching_options(parallel).is_empty());
    }

    // Expect mttcg to be refused for a kernel whose .config enables text patching or that
    // has no .config to check, and allowed for the parallel profile's kernel.
    #[test]
    fn mttcg_refused_for_patching_kernels() {
        let dir = std::env::temp_dir().join(format!("xtask-mttcg-{}", std::process::id()));
        let boot = dir.join("arch/x86/boot");
        std::fs::create_dir_all(&boot).unwrap();
        let kernel = boot.join("bzImage");
        std::fs::write(&kernel, "").unwrap();
        let err = check_mttcg_kernel(&kernel).unwrap_err().to_string();
        assert!(err.contains("no .config"), "{err}");
        std::fs::write(dir.join(".config"), "CONFIG_JUMP_LABEL=y\n").unwrap();
        let err = check_mttcg_kernel(&kernel).unwrap_err().to_string();
        assert!(
            err.contains("CONFIG_JUMP_LABEL") && err.contains("--profile parallel"),
            "{err}"
        );
        std::fs::write(dir.join(".config"), "# CONFIG_JUMP_LABEL is not set\n").unwrap();
        check_mttcg_kernel(&kernel).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
