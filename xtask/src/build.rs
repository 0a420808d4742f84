//! `cargo xtask build-kernel` and `cargo xtask build-module`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::config::Profile;
use crate::util::{self, Fnv, Paths};

/// Arguments shared by the build commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ProfileArgs {
    /// Kernel profile (build directory under work/build/).
    #[arg(long, value_enum, default_value = "default")]
    pub profile: Profile,
    /// Shorthand for `--profile debug`.
    #[arg(long, conflicts_with = "profile")]
    pub debug: bool,
}

impl ProfileArgs {
    pub fn profile(&self) -> Profile {
        if self.debug {
            Profile::Debug
        } else {
            self.profile
        }
    }
}

/// Arguments of `cargo xtask build-kernel`.
#[derive(Debug, clap::Args)]
pub struct BuildKernelArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Build even if nothing changed since the last successful build.
    #[arg(long)]
    pub force: bool,
}

impl BuildKernelArgs {
    pub fn run(&self, paths: &Paths) -> Result<()> {
        build_kernel(paths, self.profile.profile(), self.force)
    }
}

/// The kernel image of a profile.
pub fn bzimage(paths: &Paths, profile: Profile) -> PathBuf {
    paths.build(profile).join("arch/x86/boot/bzImage")
}

/// Everything that decides the build output: tree HEAD, config and toolchain versions.
/// The commit the kernel tree's sources are at, or `None` if a tracked file was edited
/// since: then only `make` can tell what is up to date.
fn tree_state(repo: &git2::Repository) -> Result<Option<git2::Oid>> {
    let head = repo
        .head()?
        .target()
        .context("kernel tree HEAD has no target")?;
    Ok(crate::patch::is_clean(repo)?.then_some(head))
}

/// What the build depends on: the tree's commit, the config and the toolchain; `None` when
/// the tree has uncommitted edits.
fn build_stamp(paths: &Paths, profile: Profile) -> Result<Option<String>> {
    let repo = git2::Repository::open(paths.src())?;
    let Some(head) = tree_state(&repo)? else {
        return Ok(None);
    };
    let mut h = Fnv::default();
    h.update(head.as_bytes());
    h.update(&fs_err::read(paths.build(profile).join(".config"))?);
    for (prog, args) in [
        (util::KERNEL_RUSTC.into(), &["--version"][..]),
        (util::bindgen_path(), &["--version"][..]),
        ("gcc".into(), &["--version"][..]),
    ] {
        let prog: PathBuf = prog;
        h.update(
            util::tool_version(&prog, args)
                .unwrap_or_default()
                .as_bytes(),
        );
    }
    Ok(Some(h.hex()))
}

/// Builds `bzImage` and the in-tree modules the config selects.
pub fn build_kernel(paths: &Paths, profile: Profile, force: bool) -> Result<()> {
    let _lock = util::WorkLock::acquire(paths, "build-kernel")?;
    let out = paths.build(profile);
    if !out.join(".config").is_file() {
        bail!(
            "{} is not configured; run `cargo xtask configure --profile {}`",
            out.display(),
            profile.name()
        );
    }
    let stamp_file = out.join(".xtask-build-stamp");
    let stamp = build_stamp(paths, profile)?;
    if stamp.is_none() {
        eprintln!(
            "[build-kernel] the kernel tree has uncommitted edits: make decides what to rebuild"
        );
    }
    if !force
        && bzimage(paths, profile).is_file()
        && stamp.is_some()
        && fs_err::read_to_string(&stamp_file).ok() == stamp
    {
        eprintln!(
            "[build-kernel] {} is up to date (tree, config and toolchain unchanged)",
            profile.name()
        );
        return Ok(());
    }
    let _ = fs_err::remove_file(&stamp_file);
    let log = out.join("build.log");
    let mut cmd = util::kernel_make(paths, &out);
    cmd.arg("LOCALVERSION=").args(["bzImage", "modules"]);
    if !util::run_logged(&mut cmd, &log, "build-kernel")? {
        let text = fs_err::read_to_string(&log).unwrap_or_default();
        let first = util::first_error(&text).unwrap_or_else(|| last_lines(&text, 15));
        bail!(
            "kernel build failed (full log: {}):\n{first}",
            log.display()
        );
    }
    if let Some(stamp) = stamp {
        util::write(&stamp_file, &stamp)?;
    }
    eprintln!("[build-kernel] {}", bzimage(paths, profile).display());
    Ok(())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Directory of the out-of-tree module sources.
pub fn module_dir(paths: &Paths) -> PathBuf {
    paths.root.join("kernel-module")
}

/// Arguments of `cargo xtask build-module`.
#[derive(Debug, clap::Args)]
pub struct BuildModuleArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
}

impl BuildModuleArgs {
    pub fn run(&self, paths: &Paths) -> Result<()> {
        build_module(paths, self.profile.profile()).map(|_| ())
    }
}

/// Builds `kernel-module/` out of tree against a profile's build directory; returns the
/// `.ko` files. The sources are copied to the build directory so the repository stays clean.
pub fn build_module(paths: &Paths, profile: Profile) -> Result<Vec<PathBuf>> {
    let src = module_dir(paths);
    if !src.join("Kbuild").is_file() {
        eprintln!(
            "[build-module] {} has no Kbuild yet: nothing to build",
            src.display()
        );
        return Ok(Vec::new());
    }
    let _lock = util::WorkLock::acquire(paths, "build-module")?;
    let kbuild = paths.build(profile);
    if !bzimage(paths, profile).is_file() {
        bail!(
            "kernel {} is not built; run `cargo xtask build-kernel`",
            profile.name()
        );
    }
    let dest = kbuild.join("lags-module");
    if dest.exists() {
        fs_err::remove_dir_all(&dest)?;
    }
    copy_dir(&src, &dest)?;
    let log = kbuild.join("module-build.log");
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(&kbuild)
        .arg(format!("M={}", dest.display()))
        .arg(format!("-j{}", util::jobs()))
        .arg("modules");
    util::kernel_make_env(&mut cmd);
    if !util::run_logged(&mut cmd, &log, "build-module")? {
        let text = fs_err::read_to_string(&log).unwrap_or_default();
        let first = util::first_error(&text).unwrap_or_else(|| last_lines(&text, 15));
        bail!(
            "module build failed (full log: {}):\n{first}",
            log.display()
        );
    }
    let kos = list_ko(&dest)?;
    if kos.is_empty() {
        bail!("module build produced no .ko in {}", dest.display());
    }
    for k in &kos {
        eprintln!("[build-module] {}", k.display());
    }
    Ok(kos)
}

fn list_ko(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs_err::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ko"))
        .collect();
    v.sort();
    Ok(v)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs_err::create_dir_all(to)?;
    for e in fs_err::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        let n = name.to_string_lossy();
        // Skip build products a developer may have left in the source directory.
        if n.starts_with('.') && n != ".rustfmt.toml" || n.ends_with(".ko") || n.ends_with(".o") {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if e.file_type()?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            fs_err::copy(&src, &dst)
                .with_context(|| format!("failed to copy {}", src.display()))?;
        }
    }
    Ok(())
}

/// In-tree modules the guest tests load (e.g. the `rust_minimal` sample).
pub fn sample_modules(paths: &Paths, profile: Profile) -> Vec<PathBuf> {
    ["samples/rust/rust_minimal.ko"]
        .iter()
        .map(|p| paths.build(profile).join(p))
        .filter(|p| p.is_file())
        .collect()
}

/// The kernel modules of a profile's build that go into the guest image: the in-tree
/// samples ([`sample_modules`]) and the `.ko` files of `kernel-module/`.
pub fn guest_modules(paths: &Paths, profile: Profile) -> Result<Vec<PathBuf>> {
    let mut modules = sample_modules(paths, profile);
    let ours = paths.build(profile).join("lags-module");
    if ours.is_dir() {
        for e in fs_err::read_dir(&ours)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "ko") {
                modules.push(p);
            }
        }
    }
    Ok(modules)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect an edit to a tracked file of the kernel tree to make the build stamp unknown
    // (so build-kernel runs make instead of calling the old bzImage up to date), and a
    // committed tree to give its commit. An untracked file changes nothing.
    #[test]
    fn edited_tree_has_no_stamp() {
        let dir = std::env::temp_dir().join(format!("xtask-build-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fair.c"), "int x;\n").unwrap();
        let oid = crate::fetch::commit_tree(&dir, "base").unwrap();
        let repo = git2::Repository::open(&dir).unwrap();
        assert_eq!(tree_state(&repo).unwrap(), Some(oid));
        std::fs::write(dir.join("notes.txt"), "untracked\n").unwrap();
        assert_eq!(tree_state(&repo).unwrap(), Some(oid));
        std::fs::write(dir.join("fair.c"), "int y;\n").unwrap();
        assert_eq!(tree_state(&repo).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
