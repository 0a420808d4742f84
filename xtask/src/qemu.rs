//! QEMU: the command line (pure functions, one per concern), the KVM probe and the
//! supervisor (spawn, console capture, timeouts, reaping).

use std::ffi::OsString;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

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

/// Everything needed to boot one VM.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Extra kernel parameters (runner options, `sched_lags=off`, ...).
    pub extra_cmdline: Vec<String>,
    pub cpus: u32,
    pub mem_mib: u32,
    pub accel: Accel,
    /// If set, the guest's second serial port (ttyS1) is written to this file: a clean
    /// channel for bulk data such as benchmark results, separate from the console.
    pub data_out: Option<PathBuf>,
}

/// The fixed part of the kernel command line.
pub const BASE_CMDLINE: &[&str] = &[
    // All kernel and test output goes to the first serial port, which QEMU gives us on stdout.
    "console=ttyS0,115200",
    "earlyprintk=serial,ttyS0,115200",
    // The test runner prints KTAP through /dev/kmsg; never rate-limit it.
    "printk.devkmsg=on",
    "loglevel=7",
    // On panic reboot at once; with -no-reboot that makes QEMU exit.
    "panic=-1",
    "rdinit=/init",
    // Boot faster and quieter under emulation.
    "mitigations=off",
    "nokaslr",
];

/// Flags that make QEMU a headless, deviceless box with a serial console on stdio.
pub fn machine_args(spec: &VmSpec) -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        // No default devices (VGA, NIC, floppy, ...): faster boot, nothing to probe.
        "-nodefaults",
        "-display",
        "none",
        // Reboot (test runner done, or panic=-1) exits QEMU instead of booting again.
        "-no-reboot",
        "-parallel",
        "none",
        "-net",
        "none",
        "-monitor",
        "none",
        // The guest's ttyS0 is our stdout.
        "-serial",
        "stdio",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    if let Some(p) = &spec.data_out {
        let mut s = OsString::from("file:");
        s.push(p);
        v.push("-serial".into());
        v.push(s);
    }
    v.push("-smp".into());
    v.push(spec.cpus.to_string().into());
    v.push("-m".into());
    v.push(format!("{}M", spec.mem_mib).into());
    v
}

/// Accelerator and CPU model.
pub fn accel_args(accel: Accel) -> Vec<OsString> {
    let tcg = |threads: &str, cpu: &str| -> Vec<OsString> {
        let accel = format!("tcg,thread={threads}");
        ["-machine", "q35", "-accel", &accel, "-cpu", cpu]
            .iter()
            .map(OsString::from)
            .collect()
    };
    match accel {
        Accel::Kvm => ["-machine", "q35,accel=kvm", "-cpu", "host"]
            .iter()
            .map(OsString::from)
            .collect(),
        // Single-threaded TCG (all vCPUs round-robin on one host thread). Multi-threaded
        // TCG in QEMU 7.2 races with the kernel's int3-based text patching: any static key
        // flip (even the stock "sched_clock: Marking stable") can end in "Oops: int3".
        // Seen in 1 of 2 boots with thread=multi, 0 of 3 with thread=single over 600 flips
        // each; see Documentation/xtask.md.
        Accel::Tcg => tcg("single", "max"),
        // Parallel vCPUs; only for kernels that never patch their text at run time, which
        // apply_accel() checks.
        Accel::Mttcg => tcg("multi", "max"),
        // Guest time is instruction count x 2^ICOUNT_SHIFT ns; sleep=off lets an idle guest's
        // clock jump ahead instead of waiting in real time, align=off never slows the guest
        // to real time. No host entropy reaches the guest (rdrand/rdseed off), so one vCPU
        // runs the same way every time. apply_accel() refuses more than one vCPU.
        Accel::Icount => {
            let mut v = tcg("single", "max,-rdrand,-rdseed");
            v.extend([
                "-icount".into(),
                format!("shift={ICOUNT_SHIFT},sleep=off,align=off").into(),
                "-rtc".into(),
                "clock=vm".into(),
            ]);
            v
        }
    }
}

/// `-icount` shift: 2^3 ns of guest time per instruction, a 125 MHz guest CPU.
pub const ICOUNT_SHIFT: u32 = 3;

/// Options of a kernel `.config` under which the kernel rewrites its own code at run time
/// (static keys, dynamic preemption's static calls), which QEMU 7.2's multi-threaded TCG
/// races with ("Oops: int3").
pub fn text_patching_options(config: &str) -> Vec<&'static str> {
    let c = crate::config::parse_config(config);
    ["CONFIG_JUMP_LABEL", "CONFIG_PREEMPT_DYNAMIC"]
        .into_iter()
        .filter(|k| c.get(*k).is_some_and(|v| v.as_deref() == Some("y")))
        .collect()
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

/// Kernel, initramfs and command line.
pub fn kernel_args(spec: &VmSpec) -> Vec<OsString> {
    let mut cmdline: Vec<String> = BASE_CMDLINE.iter().map(|s| s.to_string()).collect();
    cmdline.extend(spec.extra_cmdline.iter().cloned());
    vec![
        "-kernel".into(),
        spec.kernel.clone().into_os_string(),
        "-initrd".into(),
        spec.initrd.clone().into_os_string(),
        "-append".into(),
        cmdline.join(" ").into(),
    ]
}

/// The complete argument vector.
pub fn qemu_args(spec: &VmSpec) -> Vec<OsString> {
    let mut v = machine_args(spec);
    v.extend(accel_args(spec.accel));
    v.extend(kernel_args(spec));
    v
}

/// The guest machine options of every command that boots a kernel of its own (`qemu-test`,
/// `vm`, `bench`; `robustness` fixes the memory), one definition for their flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct MachineArgs {
    /// Accelerator; default: KVM if a probe boot works, else TCG.
    #[arg(long, value_enum, env = "LAGS_ACCEL")]
    pub accel: Option<Accel>,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 2048)]
    pub mem: u32,
}

/// The QEMU binary.
pub fn qemu_binary() -> &'static str {
    "qemu-system-x86_64"
}

/// Makes the kernel send SIGKILL to the child when the thread that spawned it ends, so no
/// QEMU outlives xtask even when xtask itself is killed (SIGKILL, or a signal whose default
/// action ends the process) and no `Drop` runs. [`ChildGuard`] covers the ordinary exits.
///
/// The signal follows the spawning *thread*, not the process: spawn from a thread that lives
/// as long as the child is needed (every caller spawns from the thread that then waits).
pub fn die_with_parent(cmd: &mut Command) {
    signal_on_parent_death(cmd, libc::SIGKILL);
}

/// As [`die_with_parent`], with the signal of the caller's choice (the host benchmark gets
/// SIGTERM, which it handles by removing its cgroups).
pub fn signal_on_parent_death(cmd: &mut Command, sig: libc::c_int) {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid is async-signal-safe and touches no memory.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and calls only the
    // async-signal-safe functions prctl, getppid and _exit; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then nobody would send
            // the signal.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Kills and reaps the child when dropped, so no QEMU outlives xtask's stack frame.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Why a VM run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// QEMU exited by itself (guest reboot/poweroff, or a QEMU error).
    Exited,
    /// No console output for the silence limit.
    Silent,
    /// The hard time limit passed.
    HardTimeout,
}

/// What a VM run produced.
#[derive(Debug)]
pub struct VmRun {
    pub console: String,
    pub ending: Ending,
    pub qemu_status: Option<i32>,
    pub qemu_stderr: String,
    pub elapsed: Duration,
}

impl VmRun {
    /// QEMU itself failing (bad option, missing firmware) is a host problem, not a boot
    /// failure: a guest reset under -no-reboot exits with status 0, and a guest that ran
    /// printed something. Every command that boots checks this before its verdict.
    pub fn ensure_qemu_ran(&self) -> Result<()> {
        if self.ending == Ending::Exited
            && self.qemu_status != Some(0)
            && self.console.trim().is_empty()
        {
            bail!(
                "QEMU failed ({:?}): {}",
                self.qemu_status,
                self.qemu_stderr.trim()
            );
        }
        Ok(())
    }
}

/// Time limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub hard: Duration,
    pub silence: Duration,
}

/// Boots the VM, copies the console into `log`, calls `on_line` for each console line,
/// and stops it at the first of: QEMU exit, silence, hard timeout.
pub fn run_vm(
    spec: &VmSpec,
    log: &Path,
    limits: Limits,
    on_line: impl FnMut(&str),
) -> Result<VmRun> {
    run_vm_with(spec, log, limits, Terminal::Captured, on_line)
}

/// How the guest console meets the user.
pub enum Terminal<'a> {
    /// QEMU's stdin is /dev/null; the console is only captured (tests, `vm -- CMD`).
    Captured,
    /// QEMU reads the user's terminal (stdin inherited, Ctrl-C goes to the guest, Ctrl-A X
    /// quits QEMU) and every console byte is also passed to `echo` as it arrives, so prompts
    /// without a newline show at once (`vm` without a command).
    Interactive { echo: &'a mut dyn FnMut(&[u8]) },
}

/// Replaces the console's `-serial stdio` with a stdio chardev that leaves Ctrl-C to the
/// guest (`signal=off`) and multiplexes QEMU's escape keys (`mux=on`: Ctrl-A X quits).
pub fn interactive_console(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut it = args.into_iter().peekable();
    while let Some(a) = it.next() {
        if a == "-serial" && it.peek().is_some_and(|v| v == "stdio") {
            it.next();
            out.extend(
                [
                    "-chardev",
                    "stdio,id=con0,mux=on,signal=off",
                    "-serial",
                    "chardev:con0",
                ]
                .map(OsString::from),
            );
        } else {
            out.push(a);
        }
    }
    out
}

/// [`run_vm`] with a choice of [`Terminal`].
pub fn run_vm_with(
    spec: &VmSpec,
    log: &Path,
    limits: Limits,
    mut terminal: Terminal<'_>,
    mut on_line: impl FnMut(&str),
) -> Result<VmRun> {
    let mut args = qemu_args(spec);
    let mut cmd = Command::new(qemu_binary());
    if matches!(terminal, Terminal::Interactive { .. }) {
        args = interactive_console(args);
        cmd.stdin(Stdio::inherit());
    } else {
        cmd.stdin(Stdio::null());
    }
    cmd.args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut logf =
        fs_err::File::create(log).with_context(|| format!("failed to create {}", log.display()))?;
    writeln!(logf, "# {}", crate::util::display_cmd(&cmd))?;
    let child = cmd.spawn().with_context(|| {
        format!(
            "failed to start {}: is qemu-system-x86 installed? (cargo xtask setup)",
            qemu_binary()
        )
    })?;
    let mut guard = ChildGuard(child);
    let stdout = guard.0.stdout.take().context("no QEMU stdout")?;
    let stderr = guard.0.stderr.take().context("no QEMU stderr")?;
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    // Chunks, not lines: an interactive prompt has no newline.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut stdout = stdout;
        let mut buf = vec![0u8; 8192];
        loop {
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let start = Instant::now();
    let mut last_output = Instant::now();
    let mut console = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut take_line = |bytes: &[u8], console: &mut String| -> Result<()> {
        let line = String::from_utf8_lossy(bytes);
        let line = line.trim_end_matches('\r');
        logf.write_all(line.as_bytes())?;
        logf.write_all(b"\n")?;
        console.push_str(line);
        console.push('\n');
        on_line(line);
        Ok(())
    };
    let ending = loop {
        let left = limits.hard.saturating_sub(start.elapsed());
        let quiet = limits.silence.saturating_sub(last_output.elapsed());
        if left.is_zero() {
            break Ending::HardTimeout;
        }
        if quiet.is_zero() {
            break Ending::Silent;
        }
        match rx.recv_timeout(left.min(quiet).min(Duration::from_millis(500))) {
            Ok(bytes) => {
                last_output = Instant::now();
                if let Terminal::Interactive { echo } = &mut terminal {
                    echo(&bytes);
                }
                pending.extend_from_slice(&bytes);
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    take_line(&line[..i], &mut console)?;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break Ending::Exited,
        }
    };
    if !pending.is_empty() {
        take_line(&std::mem::take(&mut pending), &mut console)?;
    }
    if ending != Ending::Exited {
        let _ = guard.0.kill();
    }
    let status = guard.0.wait().ok().and_then(|s| s.code());
    drop(guard);
    let qemu_stderr = err_thread.join().unwrap_or_default();
    if !qemu_stderr.trim().is_empty() {
        writeln!(logf, "# qemu stderr:\n{qemu_stderr}")?;
    }
    Ok(VmRun {
        console,
        ending,
        qemu_status: status,
        qemu_stderr,
        elapsed: start.elapsed(),
    })
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

    fn spec(accel: Accel) -> VmSpec {
        VmSpec {
            kernel: "/k/bzImage".into(),
            initrd: "/k/initramfs.cpio".into(),
            extra_cmdline: vec!["lags.suites=boot".into(), "sched_lags=off".into()],
            cpus: 2,
            mem_mib: 1024,
            accel,
            data_out: None,
        }
    }

    fn strings(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    // Expect QEMU exiting non-zero without any console output to be a host error, and a
    // guest that printed or a clean exit (reset under -no-reboot) not to be.
    #[test]
    fn qemu_failure_is_a_host_error() {
        let run = |console: &str, status| VmRun {
            console: console.into(),
            ending: Ending::Exited,
            qemu_status: status,
            qemu_stderr: "qemu-system-x86_64: -accel foo: invalid accelerator foo\n".into(),
            elapsed: Duration::from_millis(10),
        };
        let err = run("", Some(1)).ensure_qemu_ran().unwrap_err().to_string();
        assert!(err.contains("invalid accelerator"), "{err}");
        run("[0.0] Linux version\n", Some(1))
            .ensure_qemu_ran()
            .unwrap();
        run("", Some(0)).ensure_qemu_ran().unwrap();
    }

    // Expect parallel host threads only for mttcg, and single-threaded TCG otherwise.
    #[test]
    fn mttcg_runs_parallel_threads() {
        let m = strings(&accel_args(Accel::Mttcg));
        assert!(m.contains(&"tcg,thread=multi".to_string()), "{m:?}");
        let t = strings(&accel_args(Accel::Tcg));
        assert!(t.contains(&"tcg,thread=single".to_string()), "{t:?}");
    }

    // Expect icount mode to count instructions without host entropy or host clocks, and to
    // be refused for more than one vCPU before anything boots.
    #[test]
    fn icount_is_single_vcpu_and_host_independent() {
        let a = strings(&accel_args(Accel::Icount)).join(" ");
        for part in [
            "tcg,thread=single",
            "-icount shift=3,sleep=off,align=off",
            "-rdrand,-rdseed",
            "-rtc clock=vm",
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

    // Expect the safety flags, the serial console on stdio and the sizes.
    #[test]
    fn machine_flags() {
        let a = strings(&qemu_args(&spec(Accel::Tcg)));
        for flag in ["-nodefaults", "-no-reboot", "stdio"] {
            assert!(a.contains(&flag.to_string()), "{flag} missing in {a:?}");
        }
        let smp = a.iter().position(|s| s == "-smp").unwrap();
        assert_eq!(a[smp + 1], "2");
        let m = a.iter().position(|s| s == "-m").unwrap();
        assert_eq!(a[m + 1], "1024M");
        // A data channel becomes the second serial port, after the console.
        let mut s = spec(Accel::Tcg);
        s.data_out = Some("/r/out.bin".into());
        let a = strings(&qemu_args(&s));
        let serials: Vec<&String> = a
            .iter()
            .zip(a.iter().skip(1))
            .filter(|(f, _)| *f == "-serial")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(serials, ["stdio", "file:/r/out.bin"]);
    }

    // Expect the interactive console to replace only the stdio serial port, in place.
    #[test]
    fn interactive_console_chardev() {
        let mut s = spec(Accel::Tcg);
        s.data_out = Some("/r/out.bin".into());
        let a = strings(&interactive_console(qemu_args(&s)));
        assert!(!a.contains(&"stdio".to_string()), "{a:?}");
        let c = a.iter().position(|x| x == "-chardev").unwrap();
        assert_eq!(a[c + 1], "stdio,id=con0,mux=on,signal=off");
        assert_eq!(a[c + 2..c + 4], ["-serial", "chardev:con0"]);
        // The data port stays the second serial port.
        let serials: Vec<&String> = a
            .iter()
            .zip(a.iter().skip(1))
            .filter(|(f, _)| *f == "-serial")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(serials, ["chardev:con0", "file:/r/out.bin"]);
    }

    // Expect a child spawned with die_with_parent to be killed by SIGKILL when the thread
    // that spawned it ends, long before its own 30 s would pass.
    #[test]
    fn child_dies_with_spawning_thread() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = std::thread::spawn(|| {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            die_with_parent(&mut cmd);
            cmd.spawn().unwrap()
        })
        .join()
        .unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("child still alive 10 s after its spawning thread ended");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }

    // Expect KVM to use the host CPU and TCG the emulated "max" CPU, single-threaded.
    #[test]
    fn accel_flags() {
        let k = strings(&accel_args(Accel::Kvm));
        assert!(k.contains(&"q35,accel=kvm".to_string()) && k.contains(&"host".to_string()));
        let t = strings(&accel_args(Accel::Tcg));
        assert!(t.contains(&"tcg,thread=single".to_string()) && t.contains(&"max".to_string()));
        assert!(!t.iter().any(|s| s.contains("kvm")));
    }

    // Expect the command line to carry panic=-1, the console and the extra parameters last.
    #[test]
    fn kernel_cmdline() {
        let a = strings(&kernel_args(&spec(Accel::Tcg)));
        assert_eq!(a[0], "-kernel");
        assert_eq!(a[1], "/k/bzImage");
        assert_eq!(a[3], "/k/initramfs.cpio");
        let cmdline = &a[5];
        assert!(cmdline.starts_with("console=ttyS0,115200"));
        assert!(cmdline.contains(" panic=-1 "));
        assert!(cmdline.contains("rdinit=/init"));
        assert!(cmdline.ends_with("lags.suites=boot sched_lags=off"));
    }
}
