//! The QEMU command line: pure functions, one per concern (machine, accelerator, kernel),
//! the guest machine options every booting command shares, and the interactive console.

use std::ffi::OsString;
use std::path::PathBuf;

use super::accel::Accel;

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
        // to real time. No host entropy reaches the guest (rdrand/rdseed off), and the RTC
        // starts at a fixed date and runs on the guest clock: the kernel mixes the wall-clock
        // time at boot into its random pool, which seeds address-space randomisation and
        // hash tables, so a host date would make every run take different paths. So one
        // vCPU runs the same way every time. apply_accel() refuses more than one vCPU.
        Accel::Icount => {
            let mut v = tcg("single", "max,-rdrand,-rdseed");
            v.extend([
                "-icount".into(),
                format!("shift={ICOUNT_SHIFT},sleep=off,align=off").into(),
                "-rtc".into(),
                format!("base={ICOUNT_RTC_BASE},clock=vm").into(),
            ]);
            v
        }
    }
}

/// `-icount` shift: 2^3 ns of guest time per instruction, a 125 MHz guest CPU.
pub const ICOUNT_SHIFT: u32 = 3;

/// The guest's wall-clock time at boot in deterministic mode.
pub const ICOUNT_RTC_BASE: &str = "2026-01-01T00:00:00";

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
    /// Accelerator; default: KVM if a probe boot works, else TCG. `--clock icount` (an
    /// alias) asks for the deterministic instruction-counting clock.
    #[arg(long, value_enum, env = "LAGS_ACCEL", visible_alias = "clock")]
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::vm) fn spec(accel: Accel) -> VmSpec {
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

    pub(in crate::vm) fn strings(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    // Expect parallel host threads only for mttcg, and single-threaded TCG otherwise.
    #[test]
    fn mttcg_runs_parallel_threads() {
        let m = strings(&accel_args(Accel::Mttcg));
        assert!(m.contains(&"tcg,thread=multi".to_string()), "{m:?}");
        let t = strings(&accel_args(Accel::Tcg));
        assert!(t.contains(&"tcg,thread=single".to_string()), "{t:?}");
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
