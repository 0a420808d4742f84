//! `cargo xtask fetch`: a pristine kernel tree as a git repository.
//!
//! The tree lands in `work/linux`; its first commit is the unmodified source and is tagged
//! `lags-base`. `cargo xtask patch` applies the series on top of that tag.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use git2::{build::CheckoutBuilder, FetchOptions, IndexAddOption, Repository, Signature, Time};

use crate::util::{self, Paths};

/// Name of the tag marking the pristine base commit.
pub const BASE_TAG: &str = "lags-base";

/// Where a kernel tree comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A git URL and the tag to check out.
    Git { url: String, tag: String },
    /// A `.tar.xz`/`.tar.gz` archive with one top-level directory.
    Tarball(PathBuf),
    /// An unpacked tree.
    Dir(PathBuf),
}

impl Source {
    /// Parses `--from`: an existing path is a tarball or directory, anything else a git URL
    /// with an optional `@tag` suffix (default: the pinned tag).
    pub fn parse(s: &str) -> Source {
        let p = Path::new(s);
        if p.is_dir() {
            return Source::Dir(p.to_path_buf());
        }
        if p.is_file() {
            return Source::Tarball(p.to_path_buf());
        }
        match s.rsplit_once('@') {
            // user@host:path URLs have no tag after the last path component.
            Some((url, tag)) if !tag.contains('/') && !tag.contains(':') && !url.is_empty() => {
                Source::Git {
                    url: url.to_string(),
                    tag: tag.to_string(),
                }
            }
            _ => Source::Git {
                url: s.to_string(),
                tag: util::KERNEL_TAG.to_string(),
            },
        }
    }
}

/// Arguments of `cargo xtask fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Kernel source: `<git-url[@tag]>`, a tarball or a directory. Default: the pinned
    /// upstream tag if git.kernel.org is reachable, else Debian's linux-source-6.12 tarball.
    #[arg(long)]
    pub from: Option<String>,
    /// Accept a tree whose Makefile version differs from the version the series is based on.
    #[arg(long)]
    pub allow_version_mismatch: bool,
    /// Replace an existing tree.
    #[arg(long)]
    pub force: bool,
}

impl FetchArgs {
    pub fn run(&self, paths: &Paths) -> Result<()> {
        let _lock = util::WorkLock::acquire(paths, "fetch")?;
        let src = paths.src();
        if src.join(".git").is_dir() && !self.force {
            let repo = Repository::open(&src)?;
            if repo.revparse_single(BASE_TAG).is_ok() {
                let v = makefile_version(&src)?;
                check_version(&v, self.allow_version_mismatch)?;
                eprintln!(
                    "[fetch] {} already holds Linux {v} (tag {BASE_TAG}); use --force to replace",
                    src.display()
                );
                return Ok(());
            }
        }
        let source = match &self.from {
            Some(s) => Source::parse(s),
            None => default_source()?,
        };
        fetch(paths, &source, self.allow_version_mismatch)
    }
}

/// The default source: upstream if reachable, else Debian's tarball.
fn default_source() -> Result<Source> {
    if reachable("git.kernel.org", 443) {
        return Ok(Source::Git {
            url: util::KERNEL_GIT_URL.to_string(),
            tag: util::KERNEL_TAG.to_string(),
        });
    }
    let tarball = PathBuf::from(util::DEBIAN_TARBALL);
    if tarball.is_file() {
        eprintln!(
            "[fetch] git.kernel.org is not reachable: using Debian's {}",
            tarball.display()
        );
        return Ok(Source::Tarball(tarball));
    }
    bail!(
        "git.kernel.org is not reachable and {} is missing: install it with \
         `cargo xtask setup` (package linux-source-6.12) or pass --from <tarball|dir|git-url>",
        util::DEBIAN_TARBALL
    )
}

/// A quick network probe: DNS plus a TCP connect with a short timeout.
fn reachable(host: &str, port: u16) -> bool {
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .take(2)
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok())
}

/// Reads `VERSION.PATCHLEVEL.SUBLEVEL[EXTRAVERSION]` from a tree's top Makefile.
pub fn makefile_version(tree: &Path) -> Result<String> {
    let text = util::read(&tree.join("Makefile"))?;
    parse_makefile_version(&text)
        .with_context(|| format!("no kernel version in {}/Makefile", tree.display()))
}

/// Parses the version variables at the top of a kernel Makefile.
pub fn parse_makefile_version(text: &str) -> Option<String> {
    let get = |key: &str| {
        text.lines().take(20).find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let v = get("VERSION")?;
    let p = get("PATCHLEVEL")?;
    let s = get("SUBLEVEL")?;
    let e = get("EXTRAVERSION").unwrap_or_default();
    Some(format!("{v}.{p}.{s}{e}"))
}

/// Refuses a tree whose version is not the series' base, unless overridden.
pub fn check_version(found: &str, allow_mismatch: bool) -> Result<()> {
    if found == util::KERNEL_VERSION {
        return Ok(());
    }
    let msg = format!(
        "kernel tree is Linux {found}, but the LAGS series is based on Linux {}",
        util::KERNEL_VERSION
    );
    if allow_mismatch {
        eprintln!("[fetch] warning: {msg} (continuing: --allow-version-mismatch)");
        return Ok(());
    }
    bail!(
        "{msg}; fetch {} or pass --allow-version-mismatch",
        util::KERNEL_TAG
    )
}

/// Fetches `source` into `work/linux` (via a temporary directory, so a failure leaves no
/// half-made tree behind).
pub fn fetch(paths: &Paths, source: &Source, allow_mismatch: bool) -> Result<()> {
    fs_err::create_dir_all(&paths.work)?;
    let dest = paths.src();
    let tmp = paths.work.join("linux.tmp");
    remove_dir(&tmp)?;
    match source {
        Source::Git { url, tag } => clone_tag(url, tag, &tmp)?,
        Source::Tarball(t) => {
            fs_err::create_dir_all(&tmp)?;
            eprintln!("[fetch] extracting {} ...", t.display());
            util::run(
                Command::new("tar")
                    .arg("-xf")
                    .arg(t)
                    .arg("-C")
                    .arg(&tmp)
                    .arg("--strip-components=1"),
            )?;
        }
        Source::Dir(d) => {
            fs_err::create_dir_all(&tmp)?;
            eprintln!("[fetch] copying {} ...", d.display());
            util::run(Command::new("cp").arg("-a").arg(d.join(".")).arg(&tmp))?;
            remove_dir(&tmp.join(".git"))?;
        }
    }
    let version = makefile_version(&tmp)?;
    if let Err(e) = check_version(&version, allow_mismatch) {
        remove_dir(&tmp)?;
        return Err(e);
    }
    if !matches!(source, Source::Git { .. }) {
        let what = match source {
            Source::Tarball(t) => t
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            Source::Dir(d) => d.display().to_string(),
            Source::Git { .. } => unreachable!(),
        };
        commit_tree(
            &tmp,
            &format!("Linux {version} (pristine source from {what})"),
        )?;
    }
    remove_dir(&dest)?;
    fs_err::rename(&tmp, &dest)?;
    eprintln!(
        "[fetch] Linux {version} ready in {} (tag {BASE_TAG})",
        dest.display()
    );
    Ok(())
}

fn remove_dir(p: &Path) -> Result<()> {
    if p.exists() {
        fs_err::remove_dir_all(p).with_context(|| format!("failed to remove {}", p.display()))?;
    }
    Ok(())
}

/// The fixed identity of base commits, so the same source always gives the same commit id.
fn base_signature() -> Result<Signature<'static>> {
    Ok(Signature::new(
        "LAGS xtask",
        "xtask@lags.invalid",
        &Time::new(1_700_000_000, 0),
    )?)
}

/// Turns an unpacked tree into a repository with one commit, tagged [`BASE_TAG`].
/// Everything is added, ignoring `.gitignore` (Debian's adds `/*`).
pub fn commit_tree(dir: &Path, message: &str) -> Result<git2::Oid> {
    eprintln!("[fetch] recording the pristine tree as the base commit ...");
    let repo = Repository::init(dir)?;
    let mut index = repo.index()?;
    index.add_all(["*"], IndexAddOption::FORCE, None)?;
    index.write()?;
    let tree_id = index.write_tree()?;
    let tree = repo.find_tree(tree_id)?;
    let sig = base_signature()?;
    let oid = repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &[])?;
    repo.tag_lightweight(BASE_TAG, &repo.find_object(oid, None)?, true)?;
    Ok(oid)
}

/// Shallow-clones one tag with git2 and tags it [`BASE_TAG`].
fn clone_tag(url: &str, tag: &str, dir: &Path) -> Result<()> {
    eprintln!("[fetch] cloning {url} at {tag} (depth 1) ...");
    let repo = Repository::init(dir)?;
    let mut remote = repo.remote("origin", url)?;
    let mut cb = git2::RemoteCallbacks::new();
    let mut last = std::time::Instant::now();
    cb.transfer_progress(move |p| {
        if last.elapsed() > Duration::from_secs(5) {
            last = std::time::Instant::now();
            eprintln!(
                "[fetch] {}/{} objects, {} MiB",
                p.received_objects(),
                p.total_objects(),
                p.received_bytes() >> 20
            );
        }
        true
    });
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(cb).depth(1);
    let refspec = format!("+refs/tags/{tag}:refs/tags/{tag}");
    remote
        .fetch(&[refspec.as_str()], Some(&mut fo), None)
        .with_context(|| format!("failed to fetch {tag} from {url}"))?;
    let commit = repo
        .revparse_single(&format!("refs/tags/{tag}"))?
        .peel_to_commit()?;
    repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().force()))?;
    repo.set_head_detached(commit.id())?;
    repo.tag_lightweight(BASE_TAG, commit.as_object(), true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect that --from distinguishes URLs with and without a tag.
    #[test]
    fn parses_sources() {
        assert_eq!(
            Source::parse("https://example.org/linux.git@v6.12.1"),
            Source::Git {
                url: "https://example.org/linux.git".into(),
                tag: "v6.12.1".into()
            }
        );
        assert_eq!(
            Source::parse("git@github.com:torvalds/linux.git"),
            Source::Git {
                url: "git@github.com:torvalds/linux.git".into(),
                tag: util::KERNEL_TAG.into()
            }
        );
        assert_eq!(Source::parse("/"), Source::Dir("/".into()));
    }

    /// A scratch work directory with a tiny "kernel" tarball whose Makefile says `version`.
    fn tarball_fixture(name: &str, version: (&str, &str, &str)) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("xtask-fetch-{name}-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&dir);
        let tree = dir.join("src/linux-x");
        fs_err::create_dir_all(tree.join("kernel/sched")).unwrap();
        let mk = format!(
            "# SPDX-License-Identifier: GPL-2.0\nVERSION = {}\nPATCHLEVEL = {}\nSUBLEVEL = {}\nEXTRAVERSION =\n",
            version.0, version.1, version.2
        );
        fs_err::write(tree.join("Makefile"), mk).unwrap();
        fs_err::write(tree.join("kernel/sched/fair.c"), "int x;\n").unwrap();
        // Debian's tarball ignores everything at the top level; the base must not.
        fs_err::write(tree.join(".gitignore"), "/*\n").unwrap();
        let tarball = dir.join("linux.tar.gz");
        let ok = Command::new("tar")
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(dir.join("src"))
            .arg("linux-x")
            .status()
            .unwrap()
            .success();
        assert!(ok, "tar failed");
        (dir.join("work"), tarball)
    }

    // Expect a tarball to become a repository whose tagged base commit holds every file
    // (ignored ones too), with the same commit id for the same content.
    #[test]
    fn fetches_tarball_as_pristine_base() {
        let (v, p, s) = {
            let mut it = util::KERNEL_VERSION.split('.');
            (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
        };
        let (work, tarball) = tarball_fixture("ok", (v, p, s));
        let paths = Paths::new(Some(work.clone()));
        fetch(&paths, &Source::Tarball(tarball.clone()), false).unwrap();
        let repo = Repository::open(paths.src()).unwrap();
        let base = repo
            .revparse_single(BASE_TAG)
            .unwrap()
            .peel_to_commit()
            .unwrap();
        let tree = base.tree().unwrap();
        assert!(tree.get_path(Path::new("kernel/sched/fair.c")).is_ok());
        assert!(tree.get_path(Path::new("Makefile")).is_ok());
        assert!(
            repo.statuses(None).unwrap().is_empty(),
            "tree not clean after fetch"
        );
        assert!(!work.join("linux.tmp").exists());
        let first = base.id();
        fetch(&paths, &Source::Tarball(tarball), false).unwrap();
        let again = Repository::open(paths.src())
            .unwrap()
            .revparse_single(BASE_TAG)
            .unwrap()
            .id();
        assert_eq!(first, again, "same source, different base commit");
        let _ = fs_err::remove_dir_all(work.parent().unwrap());
    }

    // Expect a tree of another version to be refused with both versions named, leaving no
    // tree behind; and accepted with the override.
    #[test]
    fn refuses_other_version() {
        let (work, tarball) = tarball_fixture("mismatch", ("6", "13", "2"));
        let paths = Paths::new(Some(work.clone()));
        let err = fetch(&paths, &Source::Tarball(tarball.clone()), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("6.13.2") && err.contains(util::KERNEL_VERSION),
            "{err}"
        );
        assert!(!paths.src().exists() && !work.join("linux.tmp").exists());
        fetch(&paths, &Source::Tarball(tarball), true).unwrap();
        assert!(paths.src().join("Makefile").is_file());
        let _ = fs_err::remove_dir_all(work.parent().unwrap());
    }

    // Expect that the version comes from the Makefile header and mismatches name both.
    #[test]
    fn version_check() {
        let mk = "# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION =\nNAME = Baby Opossum Posse\n";
        assert_eq!(parse_makefile_version(mk).as_deref(), Some("6.12.117"));
        let mk2 = mk
            .replace("SUBLEVEL = 117", "SUBLEVEL = 3")
            .replace("EXTRAVERSION =", "EXTRAVERSION = -rc1");
        assert_eq!(parse_makefile_version(&mk2).as_deref(), Some("6.12.3-rc1"));
        let err = check_version("6.13.0", false).unwrap_err().to_string();
        assert!(
            err.contains("6.13.0") && err.contains(util::KERNEL_VERSION),
            "{err}"
        );
        assert!(check_version("6.13.0", true).is_ok());
        assert!(check_version(util::KERNEL_VERSION, false).is_ok());
    }
}
