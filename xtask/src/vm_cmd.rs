//! `cargo xtask vm`: run a command, a script or a shell in the built kernel (what `vng --`
//! and `vmtest` do), with the project's image and the same boot engine, console classifier
//! and verdict as `qemu-test`.
//!
//! The host writes everything the guest needs into the initramfs under `/vm/`: `cmd` (a
//! shell script; the user's argv quoted word by word), `config` (`key=value` lines), the
//! shared directory's files under `share/`. The kernel command line only carries
//! `lags.vm=1`, so no quoting or length limit applies to the command. The guest
//! (`tests/guest/src/vm.rs`) prints `lags-vm: ready token=T` before the command and
//! `lags-vm: exit=N token=T` after it; `T` is random per run.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::build::{self, ProfileArgs};
use crate::image::{self, Initramfs};
use crate::results::verdict::{self, Verdict};
use crate::util::{self, failure, Exit, Paths};
use crate::vm::{self, Accel, Ending, Limits, MachineArgs, Terminal, VmSpec};
use lags_proto::marker;

/// Largest shared directory copied into the image (the initramfs lives in guest RAM, twice
/// while it is unpacked).
pub const SHARE_LIMIT: u64 = 128 << 20;
/// The kernel parameter that puts the guest runner in VM mode.
pub use lags_proto::runner::VM_PARAM;
/// Guest directory whose contents come back with `--out`.
pub const GUEST_OUT: &str = "/out";
/// Guest paths a share must not cover.
const RESERVED: &[&str] = &["/proc", "/sys", "/dev", "/vm", GUEST_OUT];

/// A command-line mistake: `cargo xtask` exits with 2 for it, like clap's own errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// Arguments of `cargo xtask vm`.
#[derive(Debug, Clone, clap::Args)]
pub struct VmArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Host programs to carry into the guest with their shared libraries (repeatable).
    #[arg(long = "with", value_name = "PROGRAM")]
    pub with: Vec<PathBuf>,
    /// Extra kernel command-line parameters (repeatable).
    #[arg(long = "cmdline", value_name = "PARAM")]
    pub cmdline: Vec<String>,
    /// Run this host shell script in the guest (with /bin/sh; arguments after `--`).
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// Host directory copied read-only into the guest at the same path (default: the
    /// current directory without what git ignores; 128 MiB at most).
    #[arg(long, value_name = "DIR")]
    pub share: Option<PathBuf>,
    /// Share no host directory.
    #[arg(long, conflicts_with = "share")]
    pub no_share: bool,
    /// Bring the guest's /out back into this host directory after the command.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Hard time limit in seconds (0: none).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Treat a console silent this long as a hang, seconds (0: never).
    #[arg(long, default_value_t = 0)]
    pub silence: u64,
    /// Also show the kernel's console messages (on stderr).
    #[arg(long, short)]
    pub verbose: bool,
    /// The command and its arguments, run as root in the guest.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// What `vm` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// The guest script `/vm/cmd`, plus the user's script file when there is one.
    Command {
        cmd: String,
        script: Option<Vec<u8>>,
    },
    /// A shell on the serial console.
    Shell,
}

/// The shared directory: its (canonical) path and whether git-ignored files are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub dir: PathBuf,
    pub skip_ignored: bool,
}

/// How a `vm` run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "status")]
pub enum Outcome {
    /// The command ran to its end marker; its exit status.
    Command(i32),
    /// Boot failure, kernel fault or timeout (the `qemu-test` verdict).
    Infra(Verdict),
}

impl Outcome {
    /// The process exit code: the command's status, or the project's infrastructure code.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Command(n) => n,
            Outcome::Infra(v) => v.exit() as i32,
        }
    }
}

/// The result of one `vm` run.
#[derive(Debug, Serialize)]
pub struct VmReport {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub message: String,
    /// Everything the command printed (stdout and stderr, merged on the serial console).
    pub output: String,
    pub accel: Accel,
    pub accel_reason: String,
    pub cpus: u32,
    /// From `cargo xtask vm` starting to the command starting in the guest.
    pub ready_s: Option<f64>,
    /// QEMU's wall time.
    pub boot_s: f64,
    pub ending: Ending,
    pub cmdline: Vec<String>,
    pub faults: Vec<crate::results::console::Fault>,
    pub console_log: PathBuf,
    /// Host directory `/out` was unpacked into.
    pub out_dir: Option<PathBuf>,
}

/// Quotes one word for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./=:,+@%".contains(&b))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The guest's `/vm/cmd`: runs argv exactly as given (no word splitting or globbing), or
/// the user's script (`/vm/script`) with argv as its arguments.
pub fn guest_cmd(command: &[String], script: bool) -> String {
    let mut words: Vec<String> = Vec::new();
    if script {
        words.push("/bin/sh".into());
        words.push("/vm/script".into());
    }
    words.extend(command.iter().map(|w| shell_quote(w)));
    format!("exec {}\n", words.join(" "))
}

/// The guest's `/vm/config`.
pub fn guest_config(
    token: &str,
    share: Option<&Path>,
    cwd: Option<&Path>,
    out: bool,
    shell: Option<(String, Option<(u16, u16)>)>,
) -> String {
    let mut s = format!("token={token}\n");
    if let Some(p) = share {
        s.push_str(&format!("share={}\n", p.display()));
    }
    if let Some(p) = cwd {
        s.push_str(&format!("cwd={}\n", p.display()));
    }
    if out {
        s.push_str("out=1\n");
    }
    if let Some((term, size)) = shell {
        s.push_str("interactive=1\n");
        s.push_str(&format!("term={term}\n"));
        if let Some((rows, cols)) = size {
            s.push_str(&format!("rows={rows}\ncols={cols}\n"));
        }
    }
    s
}

/// Finds the markers of run `token`: whether the command started, and its exit status.
pub fn parse_markers(console: &str, token: &str) -> (bool, Option<i32>) {
    let ready = marker::vm_ready(token);
    let mut started = false;
    let mut exit = None;
    for line in console.lines() {
        let line = line.trim_end();
        if line.ends_with(&ready) {
            started = true;
        } else if let Some(n) = marker::parse_vm_exit(line, token) {
            exit.get_or_insert(n);
        }
    }
    (started, exit)
}

/// The outcome of a finished boot: the `qemu-test` infrastructure verdict (boot failure,
/// kernel fault, timeout) if there is one, else the command's status.
pub fn decide(console: &str, ending: Ending, token: &str) -> (Outcome, String) {
    let scan = crate::results::console::scan(console);
    let (_, exit) = parse_markers(console, token);
    match (verdict::classify_infra(&scan, ending, exit.is_some()), exit) {
        (Some((v, msg)), _) => (Outcome::Infra(v), msg),
        (None, Some(n)) => (Outcome::Command(n), format!("the command exited with {n}")),
        // classify_infra returns a verdict whenever the end marker is missing.
        (None, None) => unreachable!("no end marker but no verdict"),
    }
}

/// True for a kernel console line: it starts with a printk timestamp `[   1.234567] `
/// (the console scan's definition, [`crate::results::lines::strip_timestamp`]).
fn is_kernel_line(line: &str) -> bool {
    crate::results::lines::strip_timestamp(line).is_some()
}

/// Kernel lines worth showing even without `-v`.
fn is_alarming(line: &str) -> bool {
    [
        "Kernel panic",
        "Oops",
        "BUG:",
        "WARNING:",
        "cut here",
        "general protection fault",
        "INFO: task",
        "rcu_sched self-detected stall",
    ]
    .iter()
    .any(|p| line.contains(p))
}

/// Collects the shared directory's files, refusing more than `limit` bytes. Returns the
/// entries (path relative to `dir`, kind) and the total size.
pub fn collect_share(share: &Share, limit: u64) -> Result<(Vec<(PathBuf, ShareEntry)>, u64)> {
    let repo = if share.skip_ignored {
        git2::Repository::discover(&share.dir).ok()
    } else {
        None
    };
    let workdir = repo
        .as_ref()
        .and_then(|r| r.workdir())
        .and_then(|w| w.canonicalize().ok());
    let ignored = |path: &Path, is_dir: bool| -> bool {
        let (Some(repo), Some(wd)) = (&repo, &workdir) else {
            return false;
        };
        let Ok(rel) = path.strip_prefix(wd) else {
            return false;
        };
        let mut rel = rel.to_string_lossy().into_owned();
        if is_dir {
            rel.push('/');
        }
        repo.is_path_ignored(Path::new(&rel)).unwrap_or(false)
    };
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![share.dir.clone()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = fs_err::read_dir(&d)
            .with_context(|| format!("failed to read {}", d.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let ft = e.file_type()?;
            if e.file_name() == ".git" || ignored(&p, ft.is_dir()) {
                continue;
            }
            let rel = p.strip_prefix(&share.dir)?.to_path_buf();
            if ft.is_dir() {
                out.push((rel, ShareEntry::Dir));
                stack.push(p);
            } else if ft.is_symlink() {
                let target = fs_err::read_link(&p)?;
                out.push((rel, ShareEntry::Symlink(target)));
            } else if ft.is_file() {
                let md = e.metadata()?;
                total += md.len();
                if total > limit {
                    return Err(usage(format!(
                        "{} holds more than the {} MiB that --share copies into the guest (at {}); \
                         share a smaller directory with --share DIR, carry programs with --with, or pass --no-share",
                        share.dir.display(),
                        limit >> 20,
                        p.display()
                    )));
                }
                out.push((rel, ShareEntry::File(md.permissions().mode() & 0o7777)));
            }
            // Sockets, FIFOs and device nodes are not copied.
        }
    }
    Ok((out, total))
}

/// A share and its collected entries and size.
type SharedFiles<'a> = (&'a Share, (Vec<(PathBuf, ShareEntry)>, u64));

/// One entry of the shared directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareEntry {
    Dir,
    File(u32),
    Symlink(PathBuf),
}

/// The guest path a host directory is shared at, or why it cannot be.
pub fn check_share_path(dir: &Path) -> Result<()> {
    let s = dir.to_string_lossy();
    if dir == Path::new("/") {
        return Err(usage("cannot share / (use --share DIR or --no-share)"));
    }
    if s.contains('\n') {
        return Err(usage(format!("cannot share {s:?}: newline in the path")));
    }
    if let Some(r) = RESERVED.iter().find(|r| dir.starts_with(r)) {
        return Err(usage(format!(
            "cannot share {}: {r} is the guest's own",
            dir.display()
        )));
    }
    Ok(())
}

/// The terminal size (rows, columns), from `stty size`.
fn terminal_size() -> Option<(u16, u16)> {
    let out = Command::new("stty")
        .arg("size")
        .stdin(Stdio::inherit())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|x| x.parse().ok());
    let size = (it.next()??, it.next()??);
    (size.0 > 0 && size.1 > 0).then_some(size)
}

/// A random-enough token for the markers of one run.
fn new_token() -> String {
    let mut h = util::Fnv::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(format!("{}{:?}", std::process::id(), now).as_bytes());
    h.hex()
}

impl VmArgs {
    /// What to run: the command, the script, or (only at a terminal) a shell.
    pub fn job(&self, stdin_is_terminal: bool) -> Result<Job> {
        if let Some(path) = &self.script {
            let data = fs_err::read(path)
                .map_err(|e| usage(format!("--script {}: {e}", path.display())))?;
            return Ok(Job::Command {
                cmd: guest_cmd(&self.command, true),
                script: Some(data),
            });
        }
        if !self.command.is_empty() {
            return Ok(Job::Command {
                cmd: guest_cmd(&self.command, false),
                script: None,
            });
        }
        if stdin_is_terminal {
            return Ok(Job::Shell);
        }
        Err(usage(
            "no command: give one after `--` (cargo xtask vm -- CMD ARGS), or --script FILE; \
             without either, vm opens a shell, which needs stdin to be a terminal",
        ))
    }

    /// The shared directory, given the current directory.
    pub fn share_dir(&self, cwd: &Path) -> Result<Option<Share>> {
        if self.no_share {
            return Ok(None);
        }
        let (dir, skip_ignored) = match &self.share {
            Some(d) => (d.clone(), false),
            None => (cwd.to_path_buf(), true),
        };
        let dir = dir
            .canonicalize()
            .map_err(|e| usage(format!("--share {}: {e}", dir.display())))?;
        if !dir.is_dir() {
            return Err(usage(format!("--share {}: not a directory", dir.display())));
        }
        check_share_path(&dir)?;
        Ok(Some(Share { dir, skip_ignored }))
    }

    /// Kernel parameters after the fixed ones: VM mode, then the user's.
    pub fn kernel_params(&self) -> Vec<String> {
        let mut v = vec![VM_PARAM.to_string()];
        v.extend(self.cmdline.iter().cloned());
        v
    }

    /// Time limits: none for a shell.
    pub fn limits(&self, job: &Job) -> Limits {
        let never = Duration::from_secs(100 * 365 * 86_400);
        let secs = |s: u64| {
            if s == 0 {
                never
            } else {
                Duration::from_secs(s)
            }
        };
        match job {
            Job::Shell => Limits {
                hard: never,
                silence: never,
            },
            Job::Command { .. } => Limits {
                hard: secs(self.timeout),
                silence: secs(self.silence),
            },
        }
    }

    /// `cargo xtask vm`: returns the process exit code.
    pub fn run(&self, paths: &Paths) -> Result<i32> {
        let cwd = std::env::current_dir()?;
        let report = self.execute(paths, &cwd, std::io::stdin().is_terminal())?;
        let code = report.outcome.exit_code();
        match report.outcome {
            Outcome::Command(n) => eprintln!(
                "[vm] exit {n} = the command's own status (console: {})",
                report.console_log.display()
            ),
            Outcome::Infra(v) => eprintln!(
                "[vm] exit {code} = {v:?}, not the command's status: {} (console: {})",
                report.message,
                report.console_log.display()
            ),
        }
        Ok(code)
    }

    /// Boots, runs the job, and returns the report (also written as `vm.json`).
    pub fn execute(&self, paths: &Paths, cwd: &Path, stdin_is_terminal: bool) -> Result<VmReport> {
        let t0 = Instant::now();
        let job = self.job(stdin_is_terminal)?;
        let share = self.share_dir(cwd)?;
        // Size check before anything is built or written.
        let shared = match &share {
            Some(s) => Some((s, collect_share(s, SHARE_LIMIT)?)),
            None => None,
        };
        let profile = self.profile.profile();
        let kernel = build::bzimage(paths, profile);
        if !kernel.is_file() {
            bail!(
                "{} missing: run `cargo xtask run` (or build-kernel --profile {})",
                kernel.display(),
                profile.name()
            );
        }
        let dir = paths
            .results()
            .join(format!("{}-vm-{}", util::timestamp(), std::process::id()));
        fs_err::create_dir_all(&dir)?;
        let token = new_token();

        let modules = build::guest_modules(paths, profile)?;
        let mut fs = image::guest_image(paths, &modules, &self.with)?;
        self.add_vm_files(&mut fs, &job, shared, cwd, &token)?;
        let initrd = dir.join("initramfs.cpio");
        fs.write_to(&initrd)?;
        drop(fs);

        let data = dir.join("out.tar");
        let mut spec = VmSpec {
            kernel,
            initrd,
            extra_cmdline: Vec::new(),
            cpus: self.machine.cpus,
            mem_mib: self.machine.mem,
            accel: Accel::Tcg,
            data_out: self.out.as_ref().map(|_| data.clone()),
        };
        let (accel, why) =
            vm::apply_accel(self.machine.accel, &mut spec, &paths.kvm_probe(), "vm")?;
        spec.extra_cmdline = self.kernel_params();
        let log = dir.join("vm.console.log");
        let limits = self.limits(&job);

        let mut ready_at: Option<f64> = None;
        let mut output = String::new();
        let ready_marker = marker::vm_ready(&token);
        let exit_marker = marker::VM_EXIT;
        let verbose = self.verbose;
        let mut running = false;
        let on_line = |line: &str| {
            let kernel = is_kernel_line(line);
            if line.ends_with(&ready_marker) {
                running = true;
                ready_at = Some(t0.elapsed().as_secs_f64());
                return;
            }
            if kernel {
                if verbose || is_alarming(line) {
                    eprintln!("  | {line}");
                }
                return;
            }
            if !running {
                if verbose {
                    eprintln!("  | {line}");
                }
                return;
            }
            if line.contains(exit_marker) && line.ends_with(&token) {
                running = false;
                return;
            }
            output.push_str(line);
            output.push('\n');
            if !matches!(job, Job::Shell) {
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{line}");
                let _ = o.flush();
            }
        };
        eprintln!(
            "[vm] booting {} ({} vCPUs, {} MiB, {})",
            spec.kernel.display(),
            spec.cpus,
            spec.mem_mib,
            accel.name()
        );
        let run = match job {
            Job::Shell => {
                eprintln!("[vm] shell on the serial console; `exit` or Ctrl-D powers off, Ctrl-A X kills QEMU");
                let saved = Command::new("stty")
                    .arg("-g")
                    .stdin(Stdio::inherit())
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
                let mut echo = ShellEcho::new(&ready_marker);
                let mut echo_fn = |b: &[u8]| echo.feed(b);
                let r = vm::run_vm_with(
                    &spec,
                    &log,
                    limits,
                    Terminal::Interactive { echo: &mut echo_fn },
                    on_line,
                );
                if let Some(s) = saved {
                    let _ = Command::new("stty").arg(s).stdin(Stdio::inherit()).status();
                }
                r?
            }
            Job::Command { .. } => vm::run_vm(&spec, &log, limits, on_line)?,
        };
        run.ensure_qemu_ran()?;
        let (outcome, message) = decide(&run.console, run.ending, &token);
        let scan = crate::results::console::scan(&run.console);
        let mut out_dir = None;
        if let (Some(host_out), Outcome::Command(_)) = (&self.out, outcome) {
            unpack_out(&data, host_out)?;
            out_dir = Some(host_out.clone());
        }
        let report = VmReport {
            outcome,
            message,
            output,
            accel,
            accel_reason: why,
            cpus: spec.cpus,
            ready_s: ready_at,
            boot_s: run.elapsed.as_secs_f64(),
            ending: run.ending,
            cmdline: spec.extra_cmdline.clone(),
            faults: scan.faults,
            console_log: log,
            out_dir,
        };
        util::write(&dir.join("vm.json"), serde_json::to_string_pretty(&report)?)?;
        if let Some(r) = report.ready_s {
            eprintln!(
                "[vm] command started {r:.1}s after `cargo xtask vm` started; VM ran {:.1}s",
                report.boot_s
            );
        }
        Ok(report)
    }

    /// Adds `/vm/cmd`, `/vm/script`, `/vm/config` and the shared files.
    fn add_vm_files(
        &self,
        fs: &mut Initramfs,
        job: &Job,
        shared: Option<SharedFiles<'_>>,
        cwd: &Path,
        token: &str,
    ) -> Result<()> {
        fs.dir("/vm");
        let shell = match job {
            Job::Command { cmd, script } => {
                fs.file("/vm/cmd", cmd.clone().into_bytes(), 0o755);
                if let Some(s) = script {
                    fs.file("/vm/script", s.clone(), 0o755);
                }
                None
            }
            Job::Shell => Some((
                std::env::var("TERM").unwrap_or_else(|_| "linux".into()),
                terminal_size(),
            )),
        };
        let mut guest_cwd = None;
        let share = shared.as_ref().map(|(s, _)| *s);
        if let Some((share, (entries, total))) = &shared {
            let base = format!("/vm/share{}", share.dir.display());
            fs.dir(&base);
            for (rel, e) in entries {
                let dest = format!("{base}/{}", rel.display());
                match e {
                    ShareEntry::Dir => fs.dir(&dest),
                    ShareEntry::Symlink(t) => fs.symlink(&dest, &t.to_string_lossy()),
                    ShareEntry::File(mode) => {
                        let src = share.dir.join(rel);
                        let data = fs_err::read(&src)
                            .with_context(|| format!("failed to read {}", src.display()))?;
                        fs.file(&dest, data, *mode);
                    }
                }
            }
            eprintln!(
                "[vm] sharing {} read-only: {} entries, {:.1} MiB{}",
                share.dir.display(),
                entries.len(),
                *total as f64 / f64::from(1u32 << 20),
                if share.skip_ignored {
                    " (git-ignored files skipped)"
                } else {
                    ""
                }
            );
            let cwd = cwd.canonicalize().unwrap_or_else(|_| cwd.to_path_buf());
            guest_cwd = Some(if cwd.starts_with(&share.dir) {
                cwd
            } else {
                share.dir.clone()
            });
        }
        let config = guest_config(
            token,
            share.map(|s| s.dir.as_path()),
            guest_cwd.as_deref(),
            self.out.is_some(),
            shell,
        );
        fs.file("/vm/config", config.into_bytes(), 0o644);
        Ok(())
    }
}

/// Passes the interactive console through to the terminal from the ready marker on.
struct ShellEcho {
    marker: Vec<u8>,
    seen: Vec<u8>,
    started: bool,
}

impl ShellEcho {
    fn new(marker: &str) -> Self {
        ShellEcho {
            marker: marker.as_bytes().to_vec(),
            seen: Vec::new(),
            started: false,
        }
    }

    /// Returns the bytes to show for one console chunk.
    fn filter(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.started {
            return bytes.to_vec();
        }
        self.seen.extend_from_slice(bytes);
        let Some(i) = self
            .seen
            .windows(self.marker.len())
            .position(|w| w == self.marker.as_slice())
        else {
            // Keep only what a marker split across chunks needs.
            let keep = self.seen.len().saturating_sub(self.marker.len());
            self.seen.drain(..keep);
            return Vec::new();
        };
        self.started = true;
        let mut rest = self.seen.split_off(i + self.marker.len());
        self.seen.clear();
        // The marker's own line end.
        while rest.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
            rest.remove(0);
        }
        rest
    }

    fn feed(&mut self, bytes: &[u8]) {
        let show = self.filter(bytes);
        if !show.is_empty() {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&show);
            let _ = o.flush();
        }
    }
}

/// Unpacks the guest's `/out` archive into `dest`.
fn unpack_out(archive: &Path, dest: &Path) -> Result<()> {
    let len = fs_err::metadata(archive).map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Err(failure(
            Exit::Infra,
            format!(
                "the guest sent no /out archive ({} is empty); see the console log",
                archive.display()
            ),
        ));
    }
    fs_err::create_dir_all(dest)?;
    let mut cmd = Command::new("tar");
    cmd.arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(dest)
        .arg("--no-same-owner");
    util::output(&mut cmd).with_context(|| {
        format!(
            "failed to unpack the guest's /out ({}) into {}",
            archive.display(),
            dest.display()
        )
    })?;
    eprintln!("[vm] /out copied to {}", dest.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        vm: VmArgs,
    }

    fn parse(args: &[&str]) -> VmArgs {
        Cli::try_parse_from(std::iter::once("vm").chain(args.iter().copied()))
            .unwrap()
            .vm
    }

    // Expect argv after `--` to reach the guest word for word: no splitting, no globbing,
    // no expansion, quotes inside words kept.
    #[test]
    fn command_is_quoted_word_by_word() {
        let a = parse(&["--cpus", "1", "--", "sh", "-c", "exit 7"]);
        assert_eq!(a.machine.cpus, 1);
        assert_eq!(a.command, ["sh", "-c", "exit 7"]);
        let Job::Command { cmd, script } = a.job(false).unwrap() else {
            panic!("not a command job");
        };
        assert_eq!(cmd, "exec sh -c 'exit 7'\n");
        assert!(script.is_none());
        assert_eq!(shell_quote("it's $HOME *"), r"'it'\''s $HOME *'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            shell_quote("/sys/fs/cgroup/cpu.stat"),
            "/sys/fs/cgroup/cpu.stat"
        );
        // The quoted line means the same argv to a real shell.
        let argv = ["printf", "%s|", "a b", "it's", "$HOME", "*", ""];
        let line = guest_cmd(&argv.map(String::from), false);
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|it's|$HOME|*||");
    }

    // Expect options to be parsed and kernel parameters to start with VM mode.
    #[test]
    fn options_and_kernel_params() {
        let a = parse(&[
            "--debug",
            "--mem",
            "512",
            "--with",
            "/usr/bin/perf",
            "--cmdline",
            "sched_lags=off",
            "--cmdline",
            "nosmt",
            "--out",
            "res",
            "--timeout",
            "0",
            "--",
            "true",
        ]);
        assert_eq!(a.profile.profile(), crate::config::Profile::Debug);
        assert_eq!(a.machine.mem, 512);
        assert_eq!(a.with, [PathBuf::from("/usr/bin/perf")]);
        assert_eq!(a.kernel_params(), ["lags.vm=1", "sched_lags=off", "nosmt"]);
        assert_eq!(a.out.as_deref(), Some(Path::new("res")));
        let l = a.limits(&a.job(false).unwrap());
        assert!(
            l.hard > Duration::from_secs(10 * 365 * 86_400),
            "0 = no limit"
        );
        let d = parse(&["--", "true"]);
        let l = d.limits(&d.job(false).unwrap());
        assert_eq!(l.hard, Duration::from_secs(600));
        assert!(
            l.silence > Duration::from_secs(86_400),
            "no silence limit by default"
        );
        assert!(Cli::try_parse_from(["vm", "--share", "/x", "--no-share"]).is_err());
        // Issue 11 names the deterministic mode `--clock icount`.
        let c = parse(&["--clock", "icount", "--cpus", "1", "--", "true"]);
        assert_eq!(c.machine.accel, Some(Accel::Icount));
    }

    // Expect a script to be carried and run with /bin/sh, argv becoming its arguments.
    #[test]
    fn script_job() {
        let dir = std::env::temp_dir().join(format!("lags-vm-test-{}", std::process::id()));
        fs_err::create_dir_all(&dir).unwrap();
        let script = dir.join("s.sh");
        fs_err::write(&script, "echo c > /proc/sysrq-trigger\n").unwrap();
        let a = parse(&["--script", script.to_str().unwrap(), "--", "x y"]);
        assert_eq!(
            a.job(false).unwrap(),
            Job::Command {
                cmd: "exec /bin/sh /vm/script 'x y'\n".into(),
                script: Some(b"echo c > /proc/sysrq-trigger\n".to_vec()),
            }
        );
        // A missing script is a usage error (exit 2).
        let bad = parse(&["--script", "/nonexistent/s.sh"]);
        let e = bad.job(false).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e}");
        fs_err::remove_dir_all(&dir).unwrap();
    }

    // Expect a shell only when stdin is a terminal, a usage error otherwise.
    #[test]
    fn shell_needs_a_terminal() {
        let a = parse(&[]);
        assert_eq!(a.job(true).unwrap(), Job::Shell);
        let e = a.job(false).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some());
        assert!(e.to_string().contains("terminal"), "{e}");
        let l = a.limits(&Job::Shell);
        assert!(l.hard > Duration::from_secs(86_400) && l.silence > Duration::from_secs(86_400));
    }

    // Expect the config to carry exactly what was asked for.
    #[test]
    fn config_text() {
        assert_eq!(guest_config("t1", None, None, false, None), "token=t1\n");
        assert_eq!(
            guest_config(
                "t2",
                Some(Path::new("/src")),
                Some(Path::new("/src/a")),
                true,
                Some(("xterm".into(), Some((40, 100))))
            ),
            "token=t2\nshare=/src\ncwd=/src/a\nout=1\ninteractive=1\nterm=xterm\nrows=40\ncols=100\n"
        );
    }

    // Expect the markers of this run only, the exit status read from either copy.
    #[test]
    fn markers() {
        let console = "[    1.0] lags-init: start\nlags-vm: ready token=abc\nhello\n\
                       lags-vm: exit=3 token=old\nlags-vm: exit=7 token=abc\n\
                       [    2.0] lags-vm: exit=7 token=abc\n";
        assert_eq!(parse_markers(console, "abc"), (true, Some(7)));
        assert_eq!(parse_markers(console, "zzz"), (false, None));
        assert_eq!(
            parse_markers("lags-vm: exit=x token=abc\n", "abc"),
            (false, None)
        );
    }

    // Expect the verdict order of qemu-test: boot failure, kernel fault, timeout; then the
    // command's own status, whatever its value.
    #[test]
    fn outcomes() {
        let boot = "[    0.0] Linux version 6.12.117\n[    1.0] lags-init: start\n\
                    lags-vm: ready token=t\n";
        let done = format!("{boot}out\nlags-vm: exit=10 token=t\n");
        let (o, _) = decide(&done, Ending::Exited, "t");
        assert_eq!(o, Outcome::Command(10));
        assert_eq!(o.exit_code(), 10);
        let panic = format!(
            "{boot}[    2.0] sysrq: Trigger a crash\n[    2.0] Kernel panic - not syncing: sysrq triggered crash\n"
        );
        let (o, msg) = decide(&panic, Ending::Exited, "t");
        assert_eq!(o, Outcome::Infra(Verdict::KernelFault));
        assert_eq!(o.exit_code(), 10);
        assert!(msg.contains("Panic"), "{msg}");
        // A fault during the command wins over its status.
        let warned = done.replace(
            "out\n",
            "[    1.5] WARNING: CPU: 0 PID: 9 at kernel/sched/fair.c:1 f+0x1/0x2\nout\n",
        );
        assert_eq!(
            decide(&warned, Ending::Exited, "t").0,
            Outcome::Infra(Verdict::KernelFault)
        );
        // Output that looks like a kernel fault is the command's, not the kernel's.
        let echoed = done.replace("out\n", "Kernel panic - not syncing: just a string\n");
        assert_eq!(decide(&echoed, Ending::Exited, "t").0, Outcome::Command(10));
        assert_eq!(
            decide(boot, Ending::HardTimeout, "t").0,
            Outcome::Infra(Verdict::Timeout)
        );
        assert_eq!(
            decide(boot, Ending::Exited, "t").0,
            Outcome::Infra(Verdict::BootFailure)
        );
        assert_eq!(
            decide("[    0.0] Linux version\n", Ending::Exited, "t").0,
            Outcome::Infra(Verdict::BootFailure)
        );
        assert_eq!(Outcome::Infra(Verdict::Timeout).exit_code(), 12);
        assert_eq!(Outcome::Infra(Verdict::BootFailure).exit_code(), 11);
    }

    // Expect kernel lines to be told from command output by their printk timestamp.
    #[test]
    fn kernel_lines() {
        assert!(is_kernel_line("[    1.234567] sysrq: Trigger a crash"));
        assert!(!is_kernel_line("[x] not a timestamp"));
        assert!(!is_kernel_line("plain output"));
        assert!(!is_kernel_line("[] empty"));
        // A shell's job line or a bracketed counter from the command is its output.
        assert!(!is_kernel_line("[1] 1234"));
        assert!(!is_kernel_line("[1.2.3] version"));
        assert!(is_kernel_line("[    1.000000][    T1] caller id"));
    }

    // Expect the shell echo to start after the marker, even when it is split across chunks.
    #[test]
    fn shell_echo_starts_after_marker() {
        let mut e = ShellEcho::new("lags-vm: ready token=t");
        assert!(e.filter(b"[ 1.0] boot noise\nlags-vm: rea").is_empty());
        assert_eq!(e.filter(b"dy token=t\r\nlags-vm:/# "), b"lags-vm:/# ");
        assert_eq!(e.filter(b"ls\r\n"), b"ls\r\n");
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lags-vm-{name}-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&d);
        fs_err::create_dir_all(&d).unwrap();
        d.canonicalize().unwrap()
    }

    // Expect the share to include files, directories and symlinks, skip .git and (for the
    // default share) what git ignores, and refuse a directory over the limit.
    #[test]
    fn share_collection() {
        let d = tempdir("share");
        git2::Repository::init(&d).unwrap();
        fs_err::write(d.join(".gitignore"), "/target/\n*.o\n").unwrap();
        fs_err::create_dir_all(d.join("src")).unwrap();
        fs_err::create_dir_all(d.join("target/debug")).unwrap();
        fs_err::write(d.join("src/main.c"), "int main;\n").unwrap();
        fs_err::write(d.join("src/main.o"), "obj").unwrap();
        fs_err::write(d.join("target/debug/big"), vec![0u8; 4096]).unwrap();
        std::os::unix::fs::symlink("src/main.c", d.join("link")).unwrap();
        let names = |skip: bool| -> Vec<String> {
            let s = Share {
                dir: d.clone(),
                skip_ignored: skip,
            };
            collect_share(&s, 1 << 20)
                .unwrap()
                .0
                .iter()
                .map(|(p, _)| p.to_string_lossy().into_owned())
                .collect()
        };
        let mut filtered = names(true);
        filtered.sort();
        assert_eq!(filtered, [".gitignore", "link", "src", "src/main.c"]);
        let all = names(false);
        assert!(all.contains(&"target/debug/big".to_string()), "{all:?}");
        assert!(all.contains(&"src/main.o".to_string()));
        assert!(!all.iter().any(|p| p.starts_with(".git/")), "{all:?}");
        let s = Share {
            dir: d.clone(),
            skip_ignored: false,
        };
        let e = collect_share(&s, 1024).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e}");
        assert!(e.to_string().contains("--no-share"), "{e}");
        let (entries, _) = collect_share(&s, 1 << 20).unwrap();
        assert!(
            entries
                .iter()
                .any(|(p, e)| p == Path::new("link")
                    && *e == ShareEntry::Symlink("src/main.c".into()))
        );
        fs_err::remove_dir_all(&d).unwrap();
    }

    // Expect the share's path to be checked, and the default share to skip ignored files.
    #[test]
    fn share_paths() {
        assert!(check_share_path(Path::new("/")).is_err());
        assert!(check_share_path(Path::new("/proc/self")).is_err());
        assert!(check_share_path(Path::new("/out")).is_err());
        assert!(check_share_path(Path::new("/work/main")).is_ok());
        assert!(check_share_path(Path::new("/tmp/x")).is_ok());
        let d = tempdir("sharepath");
        let a = parse(&["--", "true"]);
        assert_eq!(
            a.share_dir(&d).unwrap(),
            Some(Share {
                dir: d.clone(),
                skip_ignored: true
            })
        );
        let b = parse(&["--share", d.to_str().unwrap(), "--", "true"]);
        assert!(!b.share_dir(Path::new("/")).unwrap().unwrap().skip_ignored);
        assert_eq!(
            parse(&["--no-share", "--", "true"]).share_dir(&d).unwrap(),
            None
        );
        let e = parse(&["--share", "/nonexistent-lags", "--", "true"])
            .share_dir(&d)
            .unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some());
        fs_err::remove_dir_all(&d).unwrap();
    }
}
