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

fn dpkg_version(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}|${Version}", pkg])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (status, version) = text.split_once('|')?;
    status.ends_with("installed").then(|| version.to_string())
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
    Ok(())
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
