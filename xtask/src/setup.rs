//! `cargo xtask setup`: check and install the pinned toolchain.
//!
//! Debian packages come from apt (Debian/Ubuntu only); bindgen-cli from `cargo install
//! --locked`. The kernel's Rust is Debian's `rustc-web` with its matching `rust-web-src`:
//! rustup toolchains on these machines have no `rust-src`, and mixing a rustc with another
//! version's library sources breaks the kernel build in confusing ways.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::util::{self, tool_version};

/// Debian packages the pipeline needs, with what each is for.
pub const PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "the kernel's rustc (/usr/bin/rustc)"),
    ("rust-web-src", "Rust library sources matching rustc-web"),
    ("libclang-dev", "libclang for bindgen"),
    ("clang", "clang (bindgen's header parsing)"),
    ("gcc", "C compiler"),
    ("make", "kernel build"),
    ("flex", "kconfig"),
    ("bison", "kconfig"),
    ("bc", "kernel build"),
    ("libelf-dev", "objtool"),
    ("libssl-dev", "kernel signing tools"),
    ("cpio", "initramfs tooling"),
    ("xz-utils", "unpacking the kernel tarball"),
    ("busybox-static", "guest userspace"),
    ("qemu-system-x86", "the VM"),
    ("linux-source-6.12", "offline kernel source"),
    (
        "stress-ng",
        "benchmark and stress tool carried into the guest",
    ),
    ("linux-perf", "perf bench carried into the guest"),
    ("python3", "kernel scripts"),
    ("perl", "checkpatch.pl"),
    (
        "python3-ply",
        "checkpatch.pl's SPDX check (scripts/spdxcheck.py)",
    ),
    (
        "python3-git",
        "checkpatch.pl's SPDX check (scripts/spdxcheck.py)",
    ),
    ("fonts-dejavu-core", "text in the benchmark's PNG plots"),
];

/// Arguments of `cargo xtask setup`.
#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Only check; do not install anything.
    #[arg(long)]
    pub check: bool,
}

impl SetupArgs {
    pub fn run(&self) -> Result<()> {
        setup(!self.check)
    }
}

/// The three words of dpkg's `${Status}`: what the administrator wants, dpkg's error flag and
/// the package's state (see dpkg-query(1)). Only the state word says whether it is installed:
/// `unknown ok not-installed` *ends with* "installed" but names a package that never was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgStatus {
    pub want: String,
    pub flag: String,
    pub state: String,
}

impl DpkgStatus {
    /// Parses `want flag state`; anything else is not a dpkg status.
    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let (want, flag, state) = (words.next()?, words.next()?, words.next()?);
        if words.next().is_some() {
            return None;
        }
        Some(Self {
            want: want.into(),
            flag: flag.into(),
            state: state.into(),
        })
    }

    /// Unpacked and configured, with no reinstall required.
    pub fn installed(&self) -> bool {
        self.state == "installed" && self.flag == "ok"
    }
}

/// Interprets one `dpkg-query -W -f '${Status}|${Version}' PKG` run: `Some(version)` only for an
/// installed package. A non-zero exit (dpkg never heard of the package) or unparsable output is
/// "not installed".
pub fn parse_dpkg_query(success: bool, stdout: &str) -> Option<String> {
    if !success {
        return None;
    }
    let (status, version) = stdout.trim_end().split_once('|')?;
    let status = DpkgStatus::parse(status)?;
    status.installed().then(|| version.to_string())
}

fn dpkg_version(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}|${Version}", pkg])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    parse_dpkg_query(out.status.success(), &String::from_utf8_lossy(&out.stdout))
}

fn is_debian() -> bool {
    Path::new("/usr/bin/apt-get").exists() && Path::new("/usr/bin/dpkg-query").exists()
}

/// Checks everything, installs what is missing if `install`, prints the version table.
pub fn setup(install: bool) -> Result<()> {
    if !is_debian() {
        bail!(
            "automatic installation needs apt (Debian/Ubuntu). Install by hand: {} and \
             `cargo install --locked bindgen-cli@{}`",
            PACKAGES.iter().map(|p| p.0).collect::<Vec<_>>().join(" "),
            util::BINDGEN_VERSION
        );
    }
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|p| p.0)
        .filter(|p| dpkg_version(p).is_none())
        .collect();
    if !missing.is_empty() {
        if !install {
            bail!(
                "missing packages: {} (run `cargo xtask setup`)",
                missing.join(" ")
            );
        }
        eprintln!("[setup] installing: {}", missing.join(" "));
        let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
        let apt = |args: &[&str]| {
            let mut all: Vec<&str> = sudo.to_vec();
            all.push("apt-get");
            all.extend_from_slice(args);
            let mut c = Command::new(all[0]);
            c.args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive");
            util::run(&mut c)
        };
        apt(&["update", "-q"])?;
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(missing.iter());
        if let Err(e) = apt(&args) {
            bail!(
                "{e:#}\nInstall these packages by hand: {}",
                missing.join(" ")
            );
        }
    }
    // rustc and its library sources must come from the same source package version.
    let (rv, sv) = (dpkg_version("rustc-web"), dpkg_version("rust-web-src"));
    if rv != sv {
        bail!("rustc-web {rv:?} and rust-web-src {sv:?} differ: install matching versions");
    }
    let bindgen_ok = tool_version(util::bindgen_path(), &["--version"])
        .is_some_and(|v| v.ends_with(util::BINDGEN_VERSION));
    if !bindgen_ok {
        if !install {
            bail!(
                "bindgen {} missing (run `cargo xtask setup`)",
                util::BINDGEN_VERSION
            );
        }
        eprintln!("[setup] installing bindgen-cli {}", util::BINDGEN_VERSION);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        util::run(Command::new(cargo).args([
            "install",
            "--locked",
            &format!("bindgen-cli@{}", util::BINDGEN_VERSION),
        ]))?;
    }
    print_table();
    verify_tools()
}

fn is_root() -> bool {
    util::output(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0")
}

/// Prints the versions of the pinned tools (the single place they are shown together).
pub fn print_table() {
    let rows: Vec<(&str, Option<String>)> = vec![
        (
            "kernel series base",
            Some(format!(
                "Linux {} ({})",
                util::KERNEL_VERSION,
                util::KERNEL_TAG
            )),
        ),
        (
            "rustc (kernel)",
            tool_version(util::KERNEL_RUSTC, &["--version"]),
        ),
        ("rust-src", rust_src()),
        (
            "bindgen",
            tool_version(util::bindgen_path(), &["--version"]),
        ),
        (
            "libclang",
            dpkg_version("libclang-dev").map(|v| format!("libclang-dev {v}")),
        ),
        ("gcc", tool_version("gcc", &["--version"])),
        ("make", tool_version("make", &["--version"])),
        ("qemu", tool_version("qemu-system-x86_64", &["--version"])),
        (
            "busybox",
            dpkg_version("busybox-static").map(|v| format!("busybox-static {v}")),
        ),
        (
            "linux-source",
            dpkg_version("linux-source-6.12").map(|v| format!("linux-source-6.12 {v}")),
        ),
        (
            "cargo (xtask)",
            tool_version(
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
                &["--version"],
            ),
        ),
    ];
    eprintln!("{:<20} version", "tool");
    for (name, v) in rows {
        eprintln!("{name:<20} {}", v.unwrap_or_else(|| "MISSING".into()));
    }
}

fn rust_src() -> Option<String> {
    let sysroot =
        util::output(Command::new(util::KERNEL_RUSTC).args(["--print", "sysroot"])).ok()?;
    let lib = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library");
    lib.join("core/src/lib.rs")
        .is_file()
        .then(|| lib.display().to_string())
}

/// How a tool proves it is usable.
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// `program args…` runs, exits 0, and its first output line contains the text.
    Runs(&'static str, &'static [&'static str], &'static str),
    /// The file exists.
    File(&'static str),
}

/// Every tool the two README commands run, with the Debian package that provides it. Setup
/// checks each one by running it, whatever dpkg says: a green run on a machine with hand
/// installs must not hide a missing install step.
const TOOLS: &[(&str, &str, Probe)] = &[
    ("flex", "flex", Probe::Runs("flex", &["--version"], "flex")),
    (
        "bison",
        "bison",
        Probe::Runs("bison", &["--version"], "GNU Bison"),
    ),
    ("bc", "bc", Probe::Runs("bc", &["--version"], "bc")),
    (
        "cpio",
        "cpio",
        Probe::Runs("cpio", &["--version"], "GNU cpio"),
    ),
    (
        "make",
        "make",
        Probe::Runs("make", &["--version"], "GNU Make"),
    ),
    ("gcc", "gcc", Probe::Runs("gcc", &["--version"], "gcc")),
    (
        "clang",
        "clang",
        Probe::Runs("clang", &["--version"], "clang version"),
    ),
    ("xz", "xz-utils", Probe::Runs("xz", &["--version"], "xz")),
    (
        "python3",
        "python3",
        Probe::Runs("python3", &["--version"], "Python 3"),
    ),
    (
        "perl",
        "perl",
        Probe::Runs("perl", &["-e", "print qq(perl ok)"], "perl ok"),
    ),
    (
        "python3 ply (spdxcheck)",
        "python3-ply",
        Probe::Runs(
            "/usr/bin/python3",
            &["-c", "import ply; print('ply ok')"],
            "ply ok",
        ),
    ),
    (
        "python3 git (spdxcheck)",
        "python3-git",
        Probe::Runs(
            "/usr/bin/python3",
            &["-c", "import git; print('git ok')"],
            "git ok",
        ),
    ),
    (
        "qemu-system-x86_64",
        "qemu-system-x86",
        Probe::Runs("qemu-system-x86_64", &["--version"], "QEMU emulator"),
    ),
    (
        "stress-ng",
        "stress-ng",
        Probe::Runs("stress-ng", &["--version"], "stress-ng"),
    ),
    (
        "perf",
        "linux-perf",
        Probe::Runs("/usr/bin/perf", &["--version"], "perf version"),
    ),
    (
        "libelf headers",
        "libelf-dev",
        Probe::File("/usr/include/gelf.h"),
    ),
    (
        "OpenSSL headers",
        "libssl-dev",
        Probe::File("/usr/include/openssl/opensslv.h"),
    ),
    (
        "kernel source tarball",
        "linux-source-6.12",
        Probe::File("/usr/src/linux-source-6.12.tar.xz"),
    ),
    (
        "DejaVu font",
        "fonts-dejavu-core",
        Probe::File("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    ),
];

/// Runs every tool the pipeline needs and checks the pinned versions; the error names each
/// missing tool and its package.
pub fn verify_tools() -> Result<()> {
    let mut problems = Vec::new();
    for (name, pkg, probe) in TOOLS {
        let ok = match probe {
            Probe::Runs(program, args, expect) => {
                probe_runs(program, args).is_some_and(|first| first.contains(expect))
            }
            Probe::File(path) => Path::new(path).is_file(),
        };
        if !ok {
            problems.push(format!("{name} (package {pkg})"));
        }
    }
    if let Err(e) = check_busybox(Path::new("/bin/busybox")) {
        problems.push(format!("{e} (package busybox-static)"));
    }
    if let Err(e) = check_kernel_rust() {
        problems.push(format!("{e:#}"));
    }
    if !problems.is_empty() {
        return Err(util::failure(
            util::Exit::Infra,
            format!(
                "setup: these tools are missing or unusable after installation:\n  {}\n\
                 run `cargo xtask setup` (as root or with sudo) or install them by hand",
                problems.join("\n  ")
            ),
        ));
    }
    eprintln!("[setup] all {} tools verified", TOOLS.len() + 4);
    Ok(())
}

/// First output line of a successful run, or `None` when the program is absent or fails.
fn probe_runs(program: &str, args: &[&str]) -> Option<String> {
    util::tool_first_line(program, args, true)
}

/// The guest's userspace is one busybox binary copied into the initramfs: it must run and be
/// statically linked (Debian's dynamic `busybox` package installs the same path).
fn check_busybox(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if elf_has_interpreter(&bytes)? {
        bail!(
            "{} is dynamically linked; the guest needs a static busybox",
            path.display()
        );
    }
    // `busybox true` prints nothing: only its exit status tells that it runs.
    match Command::new(path).arg("true").status() {
        Ok(s) if s.success() => Ok(()),
        _ => bail!("{} does not run", path.display()),
    }
}

/// Whether a 64-bit little-endian ELF file has a `PT_INTERP` program header (is dynamic).
pub fn elf_has_interpreter(elf: &[u8]) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("not a 64-bit little-endian ELF file");
    }
    let bad = || anyhow::anyhow!("truncated ELF header");
    let phoff = usize::try_from(u64_at(0x20).ok_or_else(bad)?)?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(bad)?);
    for i in 0..phnum {
        let p_type = u32_at(phoff + i * phentsize).ok_or_else(bad)?;
        if p_type == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The kernel's Rust: `/usr/bin/rustc` is rustc-web's version, its library sources are
/// present, and bindgen is the pinned version and can load libclang.
fn check_kernel_rust() -> Result<()> {
    let dpkg = dpkg_version("rustc-web")
        .ok_or_else(|| anyhow::anyhow!("rustc-web (package rustc-web) not installed"))?;
    let upstream = upstream_version(&dpkg);
    let rustc = probe_runs(util::KERNEL_RUSTC, &["--version"]).unwrap_or_default();
    if !rustc.starts_with(&format!("rustc {upstream}")) {
        bail!(
            "{} reports {rustc:?}, expected rustc {upstream} (package rustc-web)",
            util::KERNEL_RUSTC
        );
    }
    if rust_src().is_none() {
        bail!("Rust library sources for {rustc} missing (package rust-web-src)");
    }
    let bindgen = util::bindgen_path();
    let version = probe_runs(&bindgen.to_string_lossy(), &["--version"]).unwrap_or_default();
    if !version.ends_with(util::BINDGEN_VERSION) {
        bail!(
            "bindgen {} missing at {} (cargo install --locked bindgen-cli@{})",
            util::BINDGEN_VERSION,
            bindgen.display(),
            util::BINDGEN_VERSION
        );
    }
    // bindgen loads libclang at run time: translate a one-line header to prove it can.
    let dir = std::env::temp_dir().join(format!("lags-setup-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let header = dir.join("probe.h");
    std::fs::write(&header, "int lags_probe(void);\n")?;
    let out = Command::new(&bindgen).arg(&header).output();
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Ok(o)
            if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("lags_probe") =>
        {
            Ok(())
        }
        _ => bail!("bindgen cannot load libclang (package libclang-dev)"),
    }
}

/// `1.85.0+dfsg1-1~deb12u3` → `1.85.0`: the upstream part of a Debian version.
pub fn upstream_version(debian: &str) -> &str {
    let no_epoch = debian.split_once(':').map_or(debian, |(_, v)| v);
    no_epoch.split(['+', '-', '~']).next().unwrap_or(no_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real `dpkg-query -W -f '${Status}|${Version}' PKG` outputs, captured on Debian 12.
    #[test]
    fn installed_package_is_installed() {
        assert_eq!(
            parse_dpkg_query(true, "install ok installed|1.07.1-3+b1"),
            Some("1.07.1-3+b1".into())
        );
        assert_eq!(
            parse_dpkg_query(true, "hold ok installed|4.3-4.1\n"),
            Some("4.3-4.1".into())
        );
    }

    #[test]
    fn known_but_never_installed_is_missing() {
        // The bug of issue 9: this status *ends with* "installed".
        assert_eq!(parse_dpkg_query(true, "unknown ok not-installed|"), None);
    }

    #[test]
    fn removed_with_config_files_is_missing() {
        assert_eq!(
            parse_dpkg_query(true, "deinstall ok config-files|2.6.4-8.2"),
            None
        );
    }

    #[test]
    fn half_installed_and_reinstreq_are_missing() {
        assert_eq!(
            parse_dpkg_query(true, "install reinstreq half-installed|2.13+dfsg-7.1"),
            None
        );
        assert_eq!(
            parse_dpkg_query(true, "install ok half-configured|2.13+dfsg-7.1"),
            None
        );
        assert_eq!(
            parse_dpkg_query(true, "install ok unpacked|2.13+dfsg-7.1"),
            None
        );
        assert_eq!(
            parse_dpkg_query(true, "install reinstreq installed|2.13+dfsg-7.1"),
            None
        );
    }

    #[test]
    fn unknown_package_is_missing() {
        // dpkg-query exits 1 with "no packages found matching" on stderr, nothing on stdout.
        assert_eq!(parse_dpkg_query(false, ""), None);
        assert_eq!(parse_dpkg_query(true, "garbage"), None);
        assert_eq!(parse_dpkg_query(true, "install ok|1.0"), None);
    }

    #[test]
    fn status_words_are_parsed() {
        let s = DpkgStatus::parse("deinstall ok config-files").unwrap();
        assert_eq!((s.want.as_str(), s.flag.as_str()), ("deinstall", "ok"));
        assert_eq!(s.state, "config-files");
        assert!(!s.installed());
        assert!(DpkgStatus::parse("install ok installed extra").is_none());
    }

    #[test]
    fn upstream_part_of_debian_versions() {
        assert_eq!(upstream_version("1.85.0+dfsg1-1~deb12u3"), "1.85.0");
        assert_eq!(upstream_version("1:10.0.2+ds-2"), "10.0.2");
        assert_eq!(upstream_version("4.3-4.1"), "4.3");
    }

    #[test]
    fn elf_interpreter_detects_dynamic_binaries() {
        // This test binary is dynamically linked (glibc target).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(elf_has_interpreter(&me).unwrap());
        // A minimal static ELF: header only, no program headers.
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        assert!(!elf_has_interpreter(&elf).unwrap());
        // One PT_INTERP program header makes it dynamic.
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf.extend_from_slice(&[0u8; 56]);
        elf[64..68].copy_from_slice(&3u32.to_le_bytes());
        assert!(elf_has_interpreter(&elf).unwrap());
        assert!(elf_has_interpreter(b"#!/bin/sh").is_err());
    }
}
