//! `cargo xtask patch`: apply `patches/` on the pristine base, `git am` style.
//!
//! Each patch becomes a commit with its author, date and message. The applied series is
//! recorded (content hash and resulting HEAD) in `.git/lags-series`, so re-running on an
//! up-to-date tree does nothing and a changed series is re-applied from the base. A patch
//! that does not apply is reported by name, file and hunk, and the tree is reset to the base.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use git2::{
    build::CheckoutBuilder, ApplyLocation, ApplyOptions, Diff, Oid, Repository, Signature, Time,
};

use crate::fetch::BASE_TAG;
use crate::util::{self, Fnv, Paths};

/// The series files in application order (the cover letter excluded).
pub fn series(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs_err::read_dir(dir)
        .with_context(|| format!("failed to list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.ends_with(".patch") && !name.starts_with("0000-")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Content hash of the series (names and bytes).
pub fn series_hash(files: &[PathBuf]) -> Result<String> {
    let mut h = Fnv::default();
    for f in files {
        h.update(f.file_name().unwrap_or_default().as_encoded_bytes());
        h.update(&fs_err::read(f).with_context(|| format!("failed to read {}", f.display()))?);
    }
    Ok(h.hex())
}

/// One patch of a `git format-patch` mbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxPatch {
    pub author_name: String,
    pub author_email: String,
    /// Seconds since the epoch and UTC offset in minutes.
    pub date: (i64, i32),
    /// Subject without the `[PATCH n/m]` prefix.
    pub subject: String,
    /// Full commit message: subject, blank line, body (trailers included).
    pub message: String,
    /// The unified diff.
    pub diff: String,
}

/// Parses a `git format-patch` file.
pub fn parse_mbox(text: &str) -> Result<MboxPatch> {
    let text = text.replace("\r\n", "\n");
    let (headers, body) = text
        .split_once("\n\n")
        .context("no blank line after the mail headers")?;
    // Unfold continuation lines.
    let mut unfolded: Vec<String> = Vec::new();
    for line in headers.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = unfolded.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
                continue;
            }
        }
        unfolded.push(line.to_string());
    }
    let header = |name: &str| {
        unfolded.iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let from = header("From").context("no From: header")?;
    let (author_name, author_email) = parse_from(&from)?;
    let date = parse_rfc2822(&header("Date").context("no Date: header")?)?;
    let subject = strip_patch_prefix(&header("Subject").context("no Subject: header")?);
    let diff_start = body
        .find("\ndiff --git ")
        .map(|i| i + 1)
        .or_else(|| body.starts_with("diff --git ").then_some(0))
        .context("no diff in patch")?;
    let msg_part = &body[..diff_start];
    // The message ends at the "---" separator before the diffstat.
    let msg_body = match msg_part.find("\n---\n") {
        Some(i) => &msg_part[..i],
        None if msg_part.starts_with("---\n") => "",
        None => msg_part,
    };
    let mut message = subject.clone();
    let msg_body = msg_body.trim();
    if !msg_body.is_empty() {
        message.push_str("\n\n");
        message.push_str(msg_body);
    }
    message.push('\n');
    let mut diff = body[diff_start..].to_string();
    // Drop the "-- \n2.x.y" signature format-patch appends.
    if let Some(i) = diff.rfind("\n-- \n") {
        diff.truncate(i + 1);
    }
    Ok(MboxPatch {
        author_name,
        author_email,
        date,
        subject,
        message,
        diff,
    })
}

fn parse_from(from: &str) -> Result<(String, String)> {
    match (from.find('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => Ok((
            from[..a].trim().trim_matches('"').to_string(),
            from[a + 1..b].trim().to_string(),
        )),
        _ => bail!("cannot parse From: {from}"),
    }
}

fn strip_patch_prefix(subject: &str) -> String {
    let s = subject.trim();
    if s.starts_with('[') {
        if let Some(end) = s.find(']') {
            if s[1..end].to_ascii_uppercase().contains("PATCH") {
                return s[end + 1..].trim().to_string();
            }
        }
    }
    s.to_string()
}

/// Parses an RFC 2822 date such as `Sat, 22 Nov 2026 16:23:32 +0100`.
pub fn parse_rfc2822(s: &str) -> Result<(i64, i32)> {
    let s = s.split_once(',').map_or(s, |(_, r)| r).trim();
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() < 5 {
        bail!("cannot parse date {s:?}");
    }
    let day: i64 = parts[0].parse()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m.eq_ignore_ascii_case(parts[1]))
    .with_context(|| format!("bad month in {s:?}"))? as i64
        + 1;
    let year: i64 = parts[2].parse()?;
    let hms: Vec<i64> = parts[3]
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let tz = parts[4];
    let sign = if tz.starts_with('-') { -1 } else { 1 };
    let tzd: i32 = tz.trim_start_matches(['+', '-']).parse()?;
    let offset = sign * ((tzd / 100) * 60 + tzd % 100);
    let days = util::days_from_civil(year, month, day);
    let local = days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms.get(2).copied().unwrap_or(0);
    Ok((local - i64::from(offset) * 60, offset))
}

/// Arguments of `cargo xtask patch`.
#[derive(Debug, clap::Args)]
pub struct PatchArgs {
    /// Re-apply from the base even if the tree is up to date.
    #[arg(long)]
    pub force: bool,
}

impl PatchArgs {
    pub fn run(&self, paths: &Paths) -> Result<()> {
        let _lock = util::WorkLock::acquire(paths, "patch")?;
        let files = series(&paths.patches())?;
        match apply_series(&paths.src(), &files, self.force)? {
            Applied::UpToDate => eprintln!(
                "[patch] series already applied ({} patches), nothing to do",
                files.len()
            ),
            Applied::Applied(n) => eprintln!("[patch] applied {n} patches on {BASE_TAG}"),
        }
        Ok(())
    }
}

/// What [`apply_series`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    UpToDate,
    Applied(usize),
}

fn state_file(repo: &Repository) -> PathBuf {
    repo.path().join("lags-series")
}

/// Applies `files` on top of the base tag of the repository at `tree`.
pub fn apply_series(tree: &Path, files: &[PathBuf], force: bool) -> Result<Applied> {
    let repo = Repository::open(tree).with_context(|| {
        format!(
            "no kernel tree at {}; run `cargo xtask fetch` first",
            tree.display()
        )
    })?;
    let base = repo
        .revparse_single(BASE_TAG)
        .with_context(|| format!("tag {BASE_TAG} missing in {}", tree.display()))?
        .peel_to_commit()?;
    let hash = series_hash(files)?;
    let head = repo.head().ok().and_then(|h| h.target());
    if !force {
        if let Ok(state) = fs_err::read_to_string(state_file(&repo)) {
            let mut it = state.split_whitespace();
            let (h, id) = (it.next(), it.next());
            if h == Some(hash.as_str())
                && id.and_then(|s| Oid::from_str(s).ok()) == head
                && is_clean(&repo)?
            {
                return Ok(Applied::UpToDate);
            }
        }
    }
    let _ = fs_err::remove_file(state_file(&repo));
    reset_to(&repo, &base)?;
    for (i, f) in files.iter().enumerate() {
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if let Err(e) = apply_one(&repo, f) {
            reset_to(&repo, &base)?;
            return Err(e.context(format!(
                "patch {}/{} {name} does not apply; the tree was reset to {BASE_TAG}",
                i + 1,
                files.len()
            )));
        }
        eprintln!("[patch] {}/{} {name}", i + 1, files.len());
    }
    let new_head = repo.head()?.target().context("HEAD has no target")?;
    util::write(&state_file(&repo), format!("{hash} {new_head}\n"))?;
    Ok(Applied::Applied(files.len()))
}

/// No tracked file differs from HEAD (untracked and ignored files do not count).
pub(crate) fn is_clean(repo: &Repository) -> Result<bool> {
    let mut opts = git2::StatusOptions::new();
    // update_index: write the refreshed stat data back, so the next call does not hash
    // every file whose stat data went stale (a patched tree: seconds each time).
    opts.include_untracked(false)
        .include_ignored(false)
        .update_index(true);
    Ok(repo.statuses(Some(&mut opts))?.is_empty())
}

fn reset_to(repo: &Repository, commit: &git2::Commit) -> Result<()> {
    let mut co = CheckoutBuilder::new();
    co.force();
    repo.reset(commit.as_object(), git2::ResetType::Hard, Some(&mut co))?;
    Ok(())
}

fn apply_one(repo: &Repository, file: &Path) -> Result<()> {
    let p = parse_mbox(&util::read(file)?)?;
    let diff = Diff::from_buffer(p.diff.as_bytes()).context("malformed diff")?;
    let current_file = std::cell::RefCell::new(String::new());
    let current_hunk = std::cell::RefCell::new(String::new());
    let mut opts = ApplyOptions::new();
    opts.delta_callback(|d| {
        if let Some(d) = d {
            let path = d.new_file().path().or_else(|| d.old_file().path());
            *current_file.borrow_mut() = path.map(|p| p.display().to_string()).unwrap_or_default();
            current_hunk.borrow_mut().clear();
        }
        true
    });
    opts.hunk_callback(|h| {
        if let Some(h) = h {
            *current_hunk.borrow_mut() = String::from_utf8_lossy(h.header()).trim().to_string();
        }
        true
    });
    if let Err(e) = repo.apply(&diff, ApplyLocation::Both, Some(&mut opts)) {
        drop(opts);
        let hunk = current_hunk.borrow();
        bail!(
            "\"{}\": {} failed at {}{}",
            p.subject,
            e.message(),
            current_file.borrow(),
            if hunk.is_empty() {
                String::new()
            } else {
                format!(", hunk {hunk}")
            }
        );
    }
    drop(opts);
    let mut index = repo.index()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let author = Signature::new(
        &p.author_name,
        &p.author_email,
        &Time::new(p.date.0, p.date.1),
    )?;
    let parent = repo.head()?.peel_to_commit()?;
    repo.commit(
        Some("HEAD"),
        &author,
        &author,
        &p.message,
        &tree,
        &[&parent],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Kept as a raw string: a `\` line continuation would eat the diff's leading spaces.
    const PATCH: &str = r#"From 1234567890abcdef1234567890abcdef12345678 Mon Sep 17 00:00:00 2001
From: Ada Lovelace <ada@example.org>
Date: Sat, 22 Nov 2026 16:23:32 +0100
Subject: [PATCH 1/2] sched/fair: Add a thing that is long
 enough to fold

Context paragraph.

Signed-off-by: Ada Lovelace <ada@example.org>
---
 a.txt | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/a.txt b/a.txt
index 0000000..1111111 100644
--- a/a.txt
+++ b/a.txt
@@ -1,3 +1,3 @@
 one
-two
+TWO
 three
-- 
2.39.5

"#;

    // Expect that headers, folded subject, message and diff are split like git am does.
    #[test]
    fn parses_format_patch() {
        let p = parse_mbox(PATCH).unwrap();
        assert_eq!(p.author_name, "Ada Lovelace");
        assert_eq!(p.author_email, "ada@example.org");
        assert_eq!(
            p.subject,
            "sched/fair: Add a thing that is long enough to fold"
        );
        assert!(p.message.starts_with("sched/fair: Add a thing"));
        assert!(p
            .message
            .ends_with("Signed-off-by: Ada Lovelace <ada@example.org>\n"));
        assert!(!p.message.contains("1 file changed"));
        assert!(p.diff.starts_with("diff --git a/a.txt"));
        assert!(!p.diff.contains("2.39.5"));
        // 16:23:32 at +0100 is 15:23:32 UTC.
        assert_eq!(p.date, (1_795_364_612 - 3600, 60));
    }

    struct Fixture {
        dir: PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs_err::remove_dir_all(&self.dir);
        }
    }

    /// A small git tree with one base commit tagged like `fetch` does, and a patches dir.
    fn fixture(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("xtask-patch-{name}-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&dir);
        fs_err::create_dir_all(dir.join("tree")).unwrap();
        fs_err::create_dir_all(dir.join("patches")).unwrap();
        fs_err::write(dir.join("tree/a.txt"), "one\ntwo\nthree\n").unwrap();
        fs_err::write(dir.join("tree/b.txt"), "alpha\nbeta\n").unwrap();
        crate::fetch::commit_tree(&dir.join("tree"), "base").unwrap();
        Fixture { dir }
    }

    fn second_patch(b_context: &str) -> String {
        PATCH
            .replace(
                "[PATCH 1/2] sched/fair: Add a thing that is long\n enough to fold",
                "[PATCH 2/2] sched/core: Change b",
            )
            .replace("a.txt", "b.txt")
            .replace(
                " one\n-two\n+TWO\n three\n",
                &format!(" alpha\n-{b_context}\n+BETA\n"),
            )
            .replace("@@ -1,3 +1,3 @@", "@@ -1,2 +1,2 @@")
    }

    fn head_subjects(tree: &Path) -> Vec<String> {
        let repo = Repository::open(tree).unwrap();
        let mut walk = repo.revwalk().unwrap();
        walk.push_head().unwrap();
        walk.map(|id| {
            repo.find_commit(id.unwrap())
                .unwrap()
                .summary()
                .unwrap()
                .to_string()
        })
        .collect()
    }

    // Expect that patches apply in file order as commits, and a re-run does nothing.
    #[test]
    fn applies_in_order_and_is_idempotent() {
        let fx = fixture("order");
        let p = fx.dir.join("patches");
        // Written in reverse order on purpose: order comes from the file names.
        fs_err::write(p.join("0002-b.patch"), second_patch("beta")).unwrap();
        fs_err::write(p.join("0001-a.patch"), PATCH).unwrap();
        fs_err::write(p.join("0000-cover-letter.patch"), "not a patch").unwrap();
        let files = series(&p).unwrap();
        assert_eq!(files.len(), 2);
        let tree = fx.dir.join("tree");
        assert_eq!(
            apply_series(&tree, &files, false).unwrap(),
            Applied::Applied(2)
        );
        assert_eq!(
            head_subjects(&tree),
            [
                "sched/core: Change b",
                "sched/fair: Add a thing that is long enough to fold",
                "base"
            ]
        );
        let repo = Repository::open(&tree).unwrap();
        let c = repo.head().unwrap().peel_to_commit().unwrap();
        assert_eq!(c.author().name(), Some("Ada Lovelace"));
        assert_eq!(c.author().when().seconds(), 1_795_364_612 - 3600);
        assert_eq!(
            fs_err::read_to_string(tree.join("b.txt")).unwrap(),
            "alpha\nBETA\n"
        );
        assert_eq!(
            apply_series(&tree, &files, false).unwrap(),
            Applied::UpToDate
        );
        // A changed series is re-applied from the base, not stacked on the old one.
        fs_err::remove_file(p.join("0002-b.patch")).unwrap();
        let files = series(&p).unwrap();
        assert_eq!(
            apply_series(&tree, &files, false).unwrap(),
            Applied::Applied(1)
        );
        assert_eq!(head_subjects(&tree).len(), 2);
        assert_eq!(
            fs_err::read_to_string(tree.join("b.txt")).unwrap(),
            "alpha\nbeta\n"
        );
    }

    // Expect that a failing patch is named with file and hunk, and the tree is left at base.
    #[test]
    fn failed_patch_resets_to_base() {
        let fx = fixture("fail");
        let p = fx.dir.join("patches");
        fs_err::write(p.join("0001-a.patch"), PATCH).unwrap();
        fs_err::write(p.join("0002-b.patch"), second_patch("gamma")).unwrap();
        let tree = fx.dir.join("tree");
        let err = apply_series(&tree, &series(&p).unwrap(), false).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("0002-b.patch"), "{msg}");
        assert!(msg.contains("b.txt"), "{msg}");
        assert!(msg.contains("@@ -1,2 +1,2 @@"), "{msg}");
        assert_eq!(head_subjects(&tree), ["base"]);
        assert_eq!(
            fs_err::read_to_string(tree.join("a.txt")).unwrap(),
            "one\ntwo\nthree\n"
        );
    }
}
