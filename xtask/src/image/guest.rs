//! The guest programs: workspace packages built as static binaries for the initramfs.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::util::{self, Paths};

/// Target triple of the static guest binaries.
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds a workspace package as static guest binaries and returns their directory.
pub fn build_static(paths: &Paths, package: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&paths.root)
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            package,
            "--target",
            GUEST_TARGET,
        ])
        // Static glibc binaries: the initramfs has no libc. With --target, RUSTFLAGS do not
        // reach build scripts or proc macros.
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    util::run(&mut cmd).with_context(|| format!("failed to build the guest package {package}"))?;
    Ok(paths.root.join("target").join(GUEST_TARGET).join("release"))
}

/// Builds the static guest runner (tests/guest) and returns its directory.
pub fn build_guest(paths: &Paths) -> Result<PathBuf> {
    build_static(paths, "lags-guest")
}
