//! The guest image layer: the static guest programs ([`guest`]), the newc cpio writer with
//! the base layout ([`cpio`]), the libraries of carried host programs ([`ldd`]), and here
//! the image every kernel-test command boots: busybox, the runner as `/init`, the kernel's
//! modules and the carried programs.

pub mod cpio;
pub mod guest;
pub mod ldd;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

pub use cpio::Initramfs;

use crate::util::Paths;
use guest::build_guest;

/// Assembles the initramfs of a profile.
pub fn make_initramfs(
    paths: &Paths,
    modules: &[PathBuf],
    programs: &[PathBuf],
    out: &Path,
) -> Result<PathBuf> {
    guest_image(paths, modules, programs)?.write_to(out)?;
    Ok(out.to_path_buf())
}

/// The guest image of a profile, in memory: busybox, the runner as `/init`, the modules
/// (the profile's, from [`crate::build::guest_modules`]) and the `programs` with their
/// libraries (`vm` adds its own files before writing it).
pub fn guest_image(paths: &Paths, modules: &[PathBuf], programs: &[PathBuf]) -> Result<Initramfs> {
    let bin = build_guest(paths)?;
    let mut fs = Initramfs::new();
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        bail!("/bin/busybox missing: install busybox-static (cargo xtask setup)");
    }
    fs.busybox(busybox)?;
    fs.host_file("/init", &bin.join("lags-init"))?;
    // The benchmark workload generator, when the workspace builds one.
    let bench = bin.join("lags-bench");
    if bench.is_file() {
        fs.host_file("/bin/lags-bench", &bench)?;
    }
    for m in modules {
        let name = m
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        fs.host_file(&format!("/lib/modules/extra/{name}"), m)?;
    }
    for p in programs {
        fs.host_program(p)?;
    }
    Ok(fs)
}
