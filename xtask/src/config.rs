//! `cargo xtask configure`: a minimal VM config built the virtme-ng way.
//!
//! `x86_64_defconfig` → the fragments of the profile, merged in a fixed order with the kernel's
//! own `scripts/kconfig/merge_config.sh` → `olddefconfig` → every option a fragment asked for
//! must have survived (kunit.py's "Missing: CONFIG_…" check; it catches `CONFIG_RUST` silently
//! dropping when the toolchain is not acceptable).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{self, Paths};

/// A kernel build profile: one build directory and one fragment list each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Fast minimal VM kernel with LAGS (what CI boots).
    Default,
    /// Default plus lockdep, UBSAN, KFENCE, hung-task and RCU-stall checkers.
    Debug,
    /// The same series built with `CONFIG_SCHED_LAGS=n`.
    Nolags,
    /// Default without runtime text patching (no jump labels, no dynamic preemption), the
    /// kernel that multi-threaded TCG (`--accel mttcg`) runs safely.
    Parallel,
    /// Default plus the ftrace function profiler (`bench --sched-ftrace`): the time inside
    /// `schedule()` as the prototype measured it. Patches text when the profiler starts,
    /// so never under multi-threaded TCG.
    Ftrace,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Debug => "debug",
            Profile::Nolags => "nolags",
            Profile::Parallel => "parallel",
            Profile::Ftrace => "ftrace",
        }
    }

    /// Fragments in merge order; later fragments win conflicts.
    pub fn fragments(self) -> &'static [&'static str] {
        match self {
            Profile::Default => &["minimal", "vm", "sched", "rust", "lags"],
            Profile::Debug => &["minimal", "vm", "sched", "rust", "lags", "debug"],
            Profile::Nolags => &["minimal", "vm", "sched", "rust", "nolags"],
            Profile::Parallel => &["minimal", "vm", "sched", "rust", "lags", "parallel"],
            Profile::Ftrace => &["minimal", "vm", "sched", "rust", "lags", "ftrace"],
        }
    }
}

/// What a fragment asks for: `Some(value)` for `CONFIG_X=value`, `None` for "is not set".
pub type Requests = BTreeMap<String, Option<String>>;

/// Which of `options` a kernel `.config` (or fragment) sets to `y`, in the given order.
pub fn options_on<'a>(config: &str, options: &[&'a str]) -> Vec<&'a str> {
    let c = parse_config(config);
    options
        .iter()
        .copied()
        .filter(|k| c.get(*k).is_some_and(|v| v.as_deref() == Some("y")))
        .collect()
}

/// Parses Kconfig fragment or `.config` text. Later lines override earlier ones.
pub fn parse_config(text: &str) -> Requests {
    let mut map = Requests::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# CONFIG_") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                map.insert(format!("CONFIG_{name}"), None);
            }
        } else if line.starts_with("CONFIG_") {
            if let Some((k, v)) = line.split_once('=') {
                map.insert(k.to_string(), Some(v.to_string()));
            }
        }
    }
    map
}

/// One requested option that `olddefconfig` did not keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub option: String,
    pub requested: Option<String>,
    pub actual: Option<String>,
    /// The fragment that asked for it.
    pub fragment: String,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "is not set".into());
        write!(
            f,
            "{} (requested {} by {}, got {})",
            self.option,
            show(&self.requested),
            self.fragment,
            show(&self.actual)
        )
    }
}

/// Compares the merged requests (fragment name, text) with the final `.config`.
pub fn lost_options(fragments: &[(String, String)], final_config: &str) -> Vec<Lost> {
    let actual = parse_config(final_config);
    // The last fragment that mentions an option decides what was requested.
    let mut wanted: BTreeMap<String, (Option<String>, String)> = BTreeMap::new();
    for (name, text) in fragments {
        for (k, v) in parse_config(text) {
            wanted.insert(k, (v, name.clone()));
        }
    }
    wanted
        .into_iter()
        .filter_map(|(option, (requested, fragment))| {
            let got = actual.get(&option).cloned().flatten();
            let ok = match (&requested, &got) {
                // "is not set" is satisfied by absence too (option hidden by dependencies).
                (None, None) => true,
                (None, Some(v)) => v == "n",
                (Some(r), Some(g)) => r == g,
                (Some(r), None) => r == "n",
            };
            (!ok).then_some(Lost {
                option,
                requested,
                actual: got,
                fragment,
            })
        })
        .collect()
}

/// Paths of the fragments of a profile, checked to exist.
pub fn fragment_paths(paths: &Paths, profile: Profile) -> Result<Vec<PathBuf>> {
    profile
        .fragments()
        .iter()
        .map(|f| {
            let p = paths.configs().join(format!("{f}.config"));
            if p.is_file() {
                Ok(p)
            } else {
                bail!("config fragment {} is missing", p.display())
            }
        })
        .collect()
}

/// Arguments of `cargo xtask configure`.
#[derive(Debug, clap::Args)]
pub struct ConfigureArgs {
    /// Kernel profile to configure (its own build directory under work/build/).
    #[arg(long, value_enum, default_value = "default")]
    pub profile: Profile,
    /// Shorthand for `--profile debug`.
    #[arg(long, conflicts_with = "profile")]
    pub debug: bool,
    /// Print the fragment list and the merged requests instead of configuring.
    #[arg(long)]
    pub dry_run: bool,
}

impl ConfigureArgs {
    pub fn profile(&self) -> Profile {
        if self.debug {
            Profile::Debug
        } else {
            self.profile
        }
    }

    pub fn run(&self, paths: &Paths) -> Result<()> {
        configure(paths, self.profile(), self.dry_run)
    }
}

/// Configures `profile` in its build directory; returns after the lost-option check.
pub fn configure(paths: &Paths, profile: Profile, dry_run: bool) -> Result<()> {
    let frags = fragment_paths(paths, profile)?;
    let texts: Vec<(String, String)> = frags
        .iter()
        .map(|p| Ok((file_name(p), util::read(p)?)))
        .collect::<Result<_>>()?;
    if dry_run {
        for (name, text) in &texts {
            println!("## {name}");
            for (k, v) in parse_config(text) {
                match v {
                    Some(v) => println!("{k}={v}"),
                    None => println!("# {k} is not set"),
                }
            }
        }
        return Ok(());
    }
    let _lock = util::WorkLock::acquire(paths, "configure")?;
    let src = paths.src();
    if !src.join("Makefile").is_file() {
        bail!(
            "no kernel tree at {}; run `cargo xtask fetch` first",
            src.display()
        );
    }
    let out = paths.build(profile);
    fs_err::create_dir_all(&out).with_context(|| format!("failed to create {}", out.display()))?;
    let make = |target: &str| -> Result<()> {
        let mut cmd = Command::new("make");
        cmd.arg("-C")
            .arg(&src)
            .arg(format!("O={}", out.display()))
            .arg(target);
        util::kernel_make_env(&mut cmd);
        util::output(&mut cmd).map(|_| ())
    };
    eprintln!(
        "[configure] {} profile: x86_64_defconfig + {}",
        profile.name(),
        profile.fragments().join(" + ")
    );
    make("x86_64_defconfig")?;
    let mut cmd = Command::new(src.join("scripts/kconfig/merge_config.sh"));
    cmd.current_dir(&src)
        .arg("-m")
        .arg("-O")
        .arg(&out)
        .arg(out.join(".config"))
        .args(&frags);
    let log = util::output(&mut cmd).context("merge_config.sh failed")?;
    util::write(&out.join("merge_config.log"), log)?;
    make("olddefconfig")?;
    let final_config = util::read(&out.join(".config"))?;
    let lost = lost_options(&texts, &final_config);
    if !lost.is_empty() {
        let list: Vec<String> = lost.iter().map(|l| format!("  {l}")).collect();
        let mut msg = format!(
            "not all Kconfig options requested by configs/ survived olddefconfig \
             (unsatisfied dependencies or a toolchain Kconfig rejected). Missing:\n{}",
            list.join("\n")
        );
        if lost.iter().any(|l| l.option == "CONFIG_RUST") {
            msg.push_str(&format!(
                "\nCONFIG_RUST needs the pinned toolchain: run `cargo xtask setup`; check with \
                 `make -C {} O={} LLVM= RUSTC={} rustavailable`",
                src.display(),
                out.display(),
                util::KERNEL_RUSTC
            ));
        }
        if lost.iter().any(|l| l.option == "CONFIG_SCHED_LAGS") {
            msg.push_str("\nCONFIG_SCHED_LAGS needs the series: run `cargo xtask patch` first");
        }
        bail!(msg);
    }
    eprintln!(
        "[configure] {} options requested, all present in {}",
        count(&texts),
        out.join(".config").display()
    );
    Ok(())
}

fn count(texts: &[(String, String)]) -> usize {
    texts.iter().map(|(_, t)| parse_config(t).len()).sum()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(name: &str, text: &str) -> (String, String) {
        (name.to_string(), text.to_string())
    }

    // Expect that values, "is not set" and comments are parsed, later lines winning.
    #[test]
    fn parses_fragments() {
        let m = parse_config(
            "# Help: x\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"s\"\nCONFIG_A=m\n",
        );
        assert_eq!(m["CONFIG_A"], Some("m".into()));
        assert_eq!(m["CONFIG_B"], None);
        assert_eq!(m["CONFIG_C"], Some("\"s\"".into()));
        assert_eq!(m.len(), 3);
    }

    // Expect that a dropped CONFIG_RUST is reported with the fragment that asked for it.
    #[test]
    fn reports_lost_rust() {
        let frags = [frag("rust.config", "CONFIG_RUST=y\nCONFIG_MODULES=y\n")];
        let fin = "CONFIG_MODULES=y\n# CONFIG_RUST is not set\n";
        let lost = lost_options(&frags, fin);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].option, "CONFIG_RUST");
        assert_eq!(lost[0].fragment, "rust.config");
        assert!(lost[0].to_string().contains("got is not set"));
    }

    // Expect that "is not set" requests accept absence, and that a later fragment overrides.
    #[test]
    fn disabled_and_overridden() {
        let frags = [
            frag(
                "lags.config",
                "CONFIG_SCHED_LAGS=y\n# CONFIG_USB is not set\n",
            ),
            frag("nolags.config", "# CONFIG_SCHED_LAGS is not set\n"),
        ];
        assert!(lost_options(&frags, "CONFIG_X=y\n").is_empty());
        let lost = lost_options(&frags, "CONFIG_SCHED_LAGS=y\nCONFIG_USB=y\n");
        let names: Vec<&str> = lost.iter().map(|l| l.option.as_str()).collect();
        assert_eq!(names, ["CONFIG_SCHED_LAGS", "CONFIG_USB"]);
        assert_eq!(lost[0].fragment, "nolags.config");
    }

    // Expect that a value mismatch (not just presence) is lost.
    #[test]
    fn value_mismatch() {
        let frags = [frag("a", "CONFIG_SAMPLE_RUST_MINIMAL=m\nCONFIG_HZ=1000\n")];
        let lost = lost_options(&frags, "CONFIG_SAMPLE_RUST_MINIMAL=y\nCONFIG_HZ=1000\n");
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].actual, Some("y".into()));
    }

    // Expect that every profile's fragments exist in the repository.
    #[test]
    fn profiles_reference_existing_fragments() {
        let paths = Paths::new(None);
        for p in [
            Profile::Default,
            Profile::Debug,
            Profile::Nolags,
            Profile::Parallel,
            Profile::Ftrace,
        ] {
            let frags = fragment_paths(&paths, p).unwrap();
            for f in frags {
                let text = util::read(&f).unwrap();
                assert!(
                    text.starts_with("# Help: "),
                    "{} lacks a # Help: line",
                    f.display()
                );
            }
        }
    }
}
