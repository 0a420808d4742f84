//! `cargo xtask check-series`: what a tip-tree maintainer checks before reading the code.
//!
//! Subjects (`subsys/component: Uppercase imperative`), a Signed-off-by from the author,
//! `scripts/checkpatch.pl --strict` clean, a cover letter with `base-commit:`, and with
//! `--build-each` every patch compiling the scheduler on its own (bisectability).

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::config::Profile;
use crate::fetch::BASE_TAG;
use crate::patch::{parse_mbox, series};
use crate::util::{self, failure, Exit, Paths};

/// Arguments of `cargo xtask check-series`.
#[derive(Debug, clap::Args)]
pub struct CheckSeriesArgs {
    /// Also compile every patch of the applied series on its own: kernel/sched/, init/ and
    /// rust/ in the default profile's configuration and with CONFIG_SCHED_LAGS=n,
    /// kernel/sched/ with CONFIG_PROC_SYSCTL=n and CONFIG_WERROR=y (needs a configured
    /// default profile; checks out each commit in turn).
    #[arg(long)]
    pub build_each: bool,
}

/// Arguments of `cargo xtask export-series`.
#[derive(Debug, clap::Args)]
pub struct ExportSeriesArgs {}

impl ExportSeriesArgs {
    /// Regenerates `patches/` from the commits on top of `lags-base` in work/linux (for
    /// developers who edit the series as commits there), keeping the cover letter's prose.
    pub fn run(&self, paths: &Paths) -> Result<()> {
        let _lock = util::WorkLock::acquire(paths, "export-series")?;
        let dir = paths.patches();
        let cover = dir.join("0000-cover-letter.patch");
        let old_cover = fs_err::read_to_string(&cover).ok();
        let tmp = paths.work.join("export.tmp");
        if tmp.exists() {
            fs_err::remove_dir_all(&tmp)?;
        }
        // The cover letter is "from" the committer identity; make it the series' author.
        let repo = git2::Repository::open(paths.src())?;
        let head = repo.head()?.peel_to_commit()?;
        let author = head.author();
        let name = author.name().unwrap_or_default().to_string();
        let email = author.email().unwrap_or_default().to_string();
        util::run(
            Command::new("git")
                .arg("-c")
                .arg(format!("user.name={name}"))
                .arg("-c")
                .arg(format!("user.email={email}"))
                .arg("-C")
                .arg(paths.src())
                .args([
                    "format-patch",
                    "-q",
                    "--cover-letter",
                    "--base",
                    BASE_TAG,
                    "-o",
                ])
                .arg(&tmp)
                .arg(format!("{BASE_TAG}..HEAD")),
        )?;
        let new_cover = util::read(&tmp.join("0000-cover-letter.patch"))?;
        let merged = match old_cover {
            Some(old) => merge_cover_letter(&old, &new_cover)?,
            None => new_cover,
        };
        util::write(&tmp.join("0000-cover-letter.patch"), merged)?;
        for f in fs_err::read_dir(&dir)? {
            let p = f?.path();
            if p.extension().is_some_and(|e| e == "patch") {
                fs_err::remove_file(&p)?;
            }
        }
        for f in fs_err::read_dir(&tmp)? {
            let p = f?.path();
            fs_err::rename(&p, dir.join(p.file_name().unwrap_or_default()))?;
        }
        fs_err::remove_dir_all(&tmp)?;
        eprintln!("[export-series] patches/ regenerated from {BASE_TAG}..HEAD");
        Ok(())
    }
}

/// Keeps the subject line's title and the prose of `old` with the headers, shortlog,
/// diffstat and base-commit of the freshly generated cover letter `new`.
pub fn merge_cover_letter(old: &str, new: &str) -> Result<String> {
    // Prose: everything after the headers up to the shortlog ("Name (N):" line).
    let prose = |t: &str| -> Result<(String, String)> {
        let (headers, body) = t.split_once("\n\n").context("cover letter without body")?;
        let cut = body
            .lines()
            .position(|l| l.ends_with("):") && l.contains(" ("))
            .context("cover letter without shortlog")?;
        let lines: Vec<&str> = body.lines().collect();
        Ok((headers.to_string(), lines[..cut].join("\n") + "\n"))
    };
    let (old_headers, old_prose) = prose(old)?;
    let (new_headers, _) = prose(new)?;
    let (_, new_body) = new
        .split_once("\n\n")
        .context("cover letter without body")?;
    let shortlog_at = new_body
        .lines()
        .position(|l| l.ends_with("):") && l.contains(" ("))
        .context("generated cover letter without shortlog")?;
    let tail: Vec<&str> = new_body.lines().skip(shortlog_at).collect();
    let title = old_headers
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .and_then(|s| s.split_once("] ").map(|(_, t)| t.to_string()))
        .unwrap_or_default();
    let headers: Vec<String> = new_headers
        .lines()
        .map(|l| match l.strip_prefix("Subject: ") {
            Some(s) if !title.is_empty() => {
                let tag = s.split_once("] ").map_or(s, |(t, _)| t);
                format!("Subject: {tag}] {title}")
            }
            _ => l.to_string(),
        })
        .collect();
    Ok(format!(
        "{}\n\n{}{}\n",
        headers.join("\n"),
        old_prose,
        tail.join("\n")
    ))
}

/// Problems found in one patch's metadata (pure, unit-tested).
pub fn metadata_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let p = match parse_mbox(text) {
        Ok(p) => p,
        Err(e) => return vec![format!("not a format-patch mail: {e:#}")],
    };
    if !subject_ok(&p.subject) {
        problems.push(format!(
            "subject {:?} is not `subsys/component: Uppercase imperative` (e.g. `sched/fair: Add ...`)",
            p.subject
        ));
    }
    let sob = format!("Signed-off-by: {} <{}>", p.author_name, p.author_email);
    if !p.message.lines().any(|l| l.trim() == sob) {
        problems.push(format!("no `{sob}` from the author"));
    }
    let body_lines = p
        .message
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty() && !is_trailer(l))
        .count();
    if body_lines < 3 {
        problems.push("changelog too short: give context, problem and solution".into());
    }
    if p.message.to_lowercase().contains("this patch") {
        problems
            .push("changelog says \"this patch\": describe the change in imperative mood".into());
    }
    problems
}

fn is_trailer(l: &str) -> bool {
    [
        "Signed-off-by:",
        "Reviewed-by:",
        "Acked-by:",
        "Link:",
        "Suggested-by:",
        "Co-developed-by:",
        "Tested-by:",
        "Cc:",
    ]
    .iter()
    .any(|t| l.starts_with(t))
}

/// `sched/fair: Add ...`, `sched: ...`, `docs: scheduler: ...`, `rust: ...`.
pub fn subject_ok(s: &str) -> bool {
    let Some((prefix, rest)) = s.split_once(": ") else {
        return false;
    };
    let rest = rest.rsplit(": ").next().unwrap_or(rest);
    let prefix_ok = !prefix.is_empty()
        && prefix.split('/').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        });
    prefix_ok && rest.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && !rest.ends_with('.')
}

/// Parses checkpatch's `total: N errors, N warnings, N checks` line.
pub fn checkpatch_totals(out: &str) -> Option<(u32, u32, u32)> {
    let line = out.lines().find(|l| l.starts_with("total: "))?;
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    (nums.len() >= 3).then(|| (nums[0], nums[1], nums[2]))
}

impl CheckSeriesArgs {
    pub fn run(&self, paths: &Paths) -> Result<()> {
        let dir = paths.patches();
        let files = series(&dir)?;
        if files.is_empty() {
            bail!("no patches in {}", dir.display());
        }
        let mut bad = Vec::new();
        let cover = dir.join("0000-cover-letter.patch");
        match fs_err::read_to_string(&cover) {
            Ok(t) if t.contains("\nbase-commit: ") => {
                if t.contains("*** SUBJECT HERE ***") || t.contains("*** BLURB HERE ***") {
                    bad.push("0000-cover-letter.patch: template placeholders left in".to_string());
                }
            }
            Ok(_) => bad.push(
                "0000-cover-letter.patch: no base-commit: line (use format-patch --base)".into(),
            ),
            Err(_) => {
                bad.push("0000-cover-letter.patch missing (use format-patch --cover-letter)".into())
            }
        }
        let checkpatch = paths.src().join("scripts/checkpatch.pl");
        if !checkpatch.is_file() {
            bail!("{} missing: run `cargo xtask fetch`", checkpatch.display());
        }
        for f in &files {
            let name = f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            for p in metadata_problems(&util::read(f)?) {
                bad.push(format!("{name}: {p}"));
            }
            // checkpatch runs scripts/spdxcheck.py through `/usr/bin/env python3`; its SPDX
            // check needs Debian's python3-ply and python3-git, which only the system python sees, so the
            // system directories go first (a pyenv or venv python3 would skip the check).
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut system_first = std::ffi::OsString::from("/usr/bin:/bin:");
            system_first.push(&path);
            let out = Command::new("perl")
                .arg(&checkpatch)
                .args(["--strict", "--no-signoff", "--show-types"])
                .arg(f)
                .env("PATH", system_first)
                .current_dir(paths.src())
                .output()
                .context("failed to run checkpatch.pl")?;
            let errors = String::from_utf8_lossy(&out.stderr);
            if errors.contains("Traceback") {
                bad.push(format!(
                    "{name}: checkpatch's scripts/spdxcheck.py failed, so the SPDX check did \
                     not run (are python3-ply and python3-git installed? run `cargo xtask setup`): {}",
                    errors.lines().last().unwrap_or("")
                ));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            match checkpatch_totals(&text) {
                Some((0, 0, 0)) => eprintln!("[check-series] {name}: checkpatch --strict clean"),
                Some((e, w, c)) => {
                    let detail: Vec<&str> = text
                        .lines()
                        .filter(|l| {
                            l.starts_with("ERROR:")
                                || l.starts_with("WARNING:")
                                || l.starts_with("CHECK:")
                        })
                        .collect();
                    bad.push(format!(
                        "{name}: checkpatch --strict: {e} errors, {w} warnings, {c} checks\n    {}",
                        detail.join("\n    ")
                    ));
                }
                None => bad.push(format!("{name}: checkpatch produced no totals:\n{text}")),
            }
        }
        if self.build_each {
            if let Err(e) = build_each(paths) {
                bad.push(format!("bisectability: {e:#}"));
            }
        }
        if bad.is_empty() {
            eprintln!("[check-series] {} patches: all checks passed", files.len());
            Ok(())
        } else {
            Err(failure(
                Exit::TestsFailed,
                format!("check-series found problems:\n  {}", bad.join("\n  ")),
            ))
        }
    }
}

/// A kernel configuration every commit of the series must compile in.
struct Variant {
    name: &'static str,
    /// Its build directory under `work/build`.
    dir: &'static str,
    /// `scripts/config` arguments applied to the default profile's `.config`.
    edits: &'static [&'static str],
    /// make targets.
    targets: &'static [&'static str],
}

/// The default profile's configuration, and two that single commits have broken before:
/// LAGS configured out (every hook must have its stub), and no sysctl with warnings as
/// errors (a helper used only by the sysctl handler until a later patch was an unused
/// static function, an error with `CONFIG_WERROR`).
const VARIANTS: &[Variant] = &[
    Variant {
        name: "default",
        dir: "bisect",
        edits: &[],
        targets: &["kernel/sched/", "init/", "rust/"],
    },
    Variant {
        name: "nolags",
        dir: "bisect-nolags",
        edits: &["--disable", "SCHED_LAGS"],
        targets: &["kernel/sched/", "init/", "rust/"],
    },
    Variant {
        name: "nosysctl",
        dir: "bisect-nosysctl",
        // PROC_SYSCTL has a prompt only with EXPERT.
        edits: &[
            "--enable",
            "EXPERT",
            "--disable",
            "PROC_SYSCTL",
            "--enable",
            "WERROR",
        ],
        targets: &["kernel/sched/"],
    },
];

/// Checks that every `--enable X` / `--disable X` of `edits` holds in `.config` text.
fn edits_hold(config: &str, edits: &[&str]) -> Result<(), String> {
    for pair in edits.chunks(2) {
        let (want, sym) = match pair {
            ["--enable", sym] => (format!("CONFIG_{sym}=y"), *sym),
            ["--disable", sym] => (format!("# CONFIG_{sym} is not set"), *sym),
            _ => return Err(format!("unsupported scripts/config edit {pair:?}")),
        };
        if !config.lines().any(|l| l == want) {
            return Err(format!(
                "expected `{want}` after olddefconfig, but CONFIG_{sym} changed back"
            ));
        }
    }
    Ok(())
}

fn variant_dir(paths: &Paths, v: &Variant) -> std::path::PathBuf {
    paths.work.join("build").join(v.dir)
}

/// Compiles every commit of the applied series in each of [`VARIANTS`], then returns the
/// tree to the series head.
fn build_each(paths: &Paths) -> Result<()> {
    let _lock = util::WorkLock::acquire(paths, "check-series")?;
    let repo = git2::Repository::open(paths.src())?;
    let head = repo.head()?.peel_to_commit()?;
    let base = repo.revparse_single(BASE_TAG)?.peel_to_commit()?;
    let mut walk = repo.revwalk()?;
    walk.push(head.id())?;
    walk.hide(base.id())?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
    let commits: Vec<git2::Oid> = walk.collect::<Result<_, _>>()?;
    // The default configuration is built first at every commit; a variant's directory
    // starts as a copy of it (so only what its options touch is rebuilt), with the
    // variant's edits applied to the copied .config.
    let default_dir = variant_dir(paths, &VARIANTS[0]);
    fs_err::create_dir_all(&default_dir)?;
    fs_err::copy(
        paths.build(Profile::Default).join(".config"),
        default_dir.join(".config"),
    )
    .context("configure the default profile first (cargo xtask configure)")?;
    let prepare = |v: &Variant| -> Result<()> {
        let out = variant_dir(paths, v);
        if out.exists() {
            fs_err::remove_dir_all(&out)?;
        }
        util::run(Command::new("cp").arg("-a").arg(&default_dir).arg(&out))
            .with_context(|| format!("copying {} for {}", default_dir.display(), v.name))?;
        let mut cmd = Command::new(paths.src().join("scripts/config"));
        cmd.arg("--file").arg(out.join(".config")).args(v.edits);
        util::run(&mut cmd).with_context(|| format!("scripts/config for {}", v.name))
    };
    let checkout = |id: git2::Oid| -> Result<()> {
        let obj = repo.find_object(id, None)?;
        repo.checkout_tree(&obj, Some(git2::build::CheckoutBuilder::new().force()))?;
        repo.set_head_detached(id)?;
        Ok(())
    };
    let mut result = Ok(());
    'commits: for (i, id) in commits.iter().enumerate() {
        checkout(*id)?;
        let summary = repo
            .find_commit(*id)?
            .summary()
            .unwrap_or_default()
            .to_string();
        for v in VARIANTS {
            if i == 0 && !v.edits.is_empty() {
                prepare(v)?;
            }
            eprintln!(
                "[check-series] building {}/{} ({}): {summary}",
                i + 1,
                commits.len(),
                v.name
            );
            let out = variant_dir(paths, v);
            let mut cmd = util::kernel_make(paths, &out);
            cmd.arg("olddefconfig").args(v.targets);
            let built = util::run_logged(&mut cmd, &out.join("build.log"), "build-each")?;
            if i == 0 {
                // olddefconfig may have turned an edit back (a hidden prompt, a select).
                let config = fs_err::read_to_string(out.join(".config"))?;
                if let Err(e) = edits_hold(&config, v.edits) {
                    result = Err(anyhow::anyhow!("the {} configuration: {e}", v.name));
                    break 'commits;
                }
            }
            if !built {
                let text = fs_err::read_to_string(out.join("build.log")).unwrap_or_default();
                result = Err(anyhow::anyhow!(
                    "patch {} ({summary}) does not build on its own in the {} configuration:\n{}",
                    i + 1,
                    v.name,
                    util::first_error(&text).unwrap_or_default()
                ));
                break 'commits;
            }
        }
    }
    // Back to the series head, whatever happened.
    checkout(head.id())?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect a variant's edits to be checked against the resulting .config, so that an
    // option olddefconfig turned back (PROC_SYSCTL without EXPERT) is an error, not a
    // variant that silently builds the default configuration again.
    #[test]
    fn variant_edits_checked() {
        let edits = ["--enable", "EXPERT", "--disable", "PROC_SYSCTL"];
        let ok = "CONFIG_EXPERT=y\n# CONFIG_PROC_SYSCTL is not set\n";
        assert_eq!(edits_hold(ok, &edits), Ok(()));
        let reverted = "CONFIG_EXPERT=y\nCONFIG_PROC_SYSCTL=y\n";
        let err = edits_hold(reverted, &edits).unwrap_err();
        assert!(err.contains("CONFIG_PROC_SYSCTL changed back"), "{err}");
        assert!(edits_hold("", &["--set-val", "X"]).is_err());
        for v in VARIANTS {
            assert_eq!(v.edits.len() % 2, 0, "{}: edits come in pairs", v.name);
        }
    }

    // Expect tip-tree subjects to pass and file paths, lowercase or full stops to fail.
    #[test]
    fn subjects() {
        assert!(subject_ok("sched/fair: Order LAGS groups by load credit"));
        assert!(subject_ok("sched: Add cpu.lags"));
        assert!(subject_ok("docs: scheduler: Document LAGS"));
        assert!(!subject_ok("kernel/sched/fair.c: add thing"));
        assert!(!subject_ok("sched/fair: add thing"));
        assert!(!subject_ok("sched/fair: Add thing."));
        assert!(!subject_ok("Add thing"));
    }

    // Expect the cover letter prose and title to survive a regeneration, with the new
    // patch count, shortlog and base.
    #[test]
    fn cover_letter_merge() {
        let old = "From 1 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nSubject: [PATCH 0/2] sched/fair: LAGS\n\nWhat and why.\n\nResults: 2x.\n\nA (2):\n  one\n  two\n\nbase-commit: aaa\n-- \n2.47.3\n";
        let new = "From 2 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nSubject: [PATCH 0/3] *** SUBJECT HERE ***\n\n*** BLURB HERE ***\n\nA (3):\n  one\n  two\n  three\n\nbase-commit: bbb\n-- \n2.47.3\n";
        let m = merge_cover_letter(old, new).unwrap();
        assert!(m.contains("Subject: [PATCH 0/3] sched/fair: LAGS"), "{m}");
        assert!(m.contains("What and why.\n\nResults: 2x."));
        assert!(m.contains("A (3):") && m.contains("  three") && m.contains("base-commit: bbb"));
        assert!(!m.contains("BLURB") && !m.contains("base-commit: aaa"));
    }

    // Expect the checkpatch totals line to be parsed.
    #[test]
    fn checkpatch_output() {
        let out = "WARNING: foo\n\ntotal: 0 errors, 1 warnings, 2 checks, 120 lines checked\n";
        assert_eq!(checkpatch_totals(out), Some((0, 1, 2)));
        assert_eq!(checkpatch_totals("nothing"), None);
    }

    // Expect missing sign-off, "this patch" and a one-line changelog to be reported.
    #[test]
    fn metadata() {
        let good = "From 0 Mon Sep 17 00:00:00 2001\nFrom: A B <a@b.c>\nDate: Sat, 22 Nov 2026 16:23:32 +0000\nSubject: [PATCH 1/1] sched/fair: Add x\n\nContext.\n\nProblem.\n\nSolution.\n\nSigned-off-by: A B <a@b.c>\n---\ndiff --git a/x b/x\n";
        assert!(
            metadata_problems(good).is_empty(),
            "{:?}",
            metadata_problems(good)
        );
        let bad = good
            .replace("Signed-off-by: A B <a@b.c>\n", "")
            .replace("Problem.", "This patch fixes it.");
        let p = metadata_problems(&bad);
        assert!(p.iter().any(|s| s.contains("Signed-off-by")), "{p:?}");
        assert!(p.iter().any(|s| s.contains("this patch")), "{p:?}");
    }
}
