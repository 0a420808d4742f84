//! Helpers shared by the tasks: paths, running commands, hashing, progress.

use std::ffi::OsStr;
use std::fmt;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Kernel version the patch series is based on (`VERSION.PATCHLEVEL.SUBLEVEL`).
pub const KERNEL_VERSION: &str = "6.12.117";
/// Upstream stable tag matching [`KERNEL_VERSION`].
pub const KERNEL_TAG: &str = "v6.12.117";
/// Upstream stable tree used when the network allows.
pub const KERNEL_GIT_URL: &str = "https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git";
/// Debian's offline copy of the 6.12 source (package `linux-source-6.12`).
pub const DEBIAN_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";
/// The Rust compiler the kernel is built with (Debian `rustc-web`, paired with `rust-web-src`).
pub const KERNEL_RUSTC: &str = "/usr/bin/rustc";
/// bindgen-cli version installed by `cargo xtask setup`.
pub const BINDGEN_VERSION: &str = "0.73.2";

/// Exit codes of the xtask binary. Documented in `Documentation/xtask.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything passed.
    Ok = 0,
    /// The guest ran the tests and at least one failed (or a check failed).
    TestsFailed = 1,
    // 2 is clap's own code for a bad command line.
    /// Host-side infrastructure failure: missing tool, fetch, patch or build error.
    Infra = 3,
    /// The kernel panicked, oopsed or warned (BUG/WARNING/lockdep/...).
    KernelFault = 10,
    /// The guest never reached the test runner.
    BootFailure = 11,
    /// The guest stopped producing output or exceeded the hard time limit.
    Timeout = 12,
}

/// An error that carries the process exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Returns an error that makes xtask exit with `exit`.
pub fn failure(exit: Exit, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        exit,
        message: message.into(),
    })
}

/// Maps an error chain to the exit code: the first [`Failure`] found wins, anything else is
/// an infrastructure error.
pub fn exit_code_of(err: &anyhow::Error) -> Exit {
    err.chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .map_or(Exit::Infra, |f| f.exit)
}

/// The project's fixed directories.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Repository root (the workspace directory).
    pub root: PathBuf,
    /// Scratch space for the kernel tree, builds and results (`work/` by default).
    pub work: PathBuf,
}

impl Paths {
    pub fn new(work: Option<PathBuf>) -> Self {
        let root = project_root();
        let work = work.unwrap_or_else(|| root.join("work"));
        let work = if work.is_absolute() {
            work
        } else {
            root.join(work)
        };
        Paths { root, work }
    }

    /// The kernel source tree (a git repository).
    pub fn src(&self) -> PathBuf {
        self.work.join("linux")
    }

    /// The out-of-tree build directory of one kernel profile.
    pub fn build(&self, profile: crate::config::Profile) -> PathBuf {
        self.work.join("build").join(profile.name())
    }

    /// The cached answer of the KVM probe boot (see `vm::accel::choose_accel`).
    pub fn kvm_probe(&self) -> PathBuf {
        self.work.join("kvm-probe")
    }

    pub fn patches(&self) -> PathBuf {
        self.root.join("patches")
    }

    pub fn configs(&self) -> PathBuf {
        self.root.join("configs")
    }

    pub fn results(&self) -> PathBuf {
        self.work.join("results")
    }
}

/// The workspace root, derived from this crate's manifest directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Formats a command line for logs, quoting arguments with spaces.
pub fn display_cmd(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        s.push(' ');
        if a.contains(' ') || a.is_empty() {
            s.push('\'');
            s.push_str(&a);
            s.push('\'');
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// An exclusive lock on the work directory, held while a step changes the kernel tree or a
/// build directory, so two xtask processes never patch or build the same tree at once.
#[derive(Debug)]
pub struct WorkLock(#[allow(dead_code)] std::fs::File);

impl WorkLock {
    /// Blocks until the lock is free, saying what it waits for.
    pub fn acquire(paths: &Paths, step: &str) -> Result<WorkLock> {
        fs_err::create_dir_all(&paths.work)?;
        let path = paths.work.join(".xtask.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                eprintln!(
                    "[{step}] another xtask holds {}; waiting ...",
                    path.display()
                );
                file.lock()
                    .with_context(|| format!("failed to lock {}", path.display()))?;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("failed to lock {}", path.display()))
            }
        }
        Ok(WorkLock(file))
    }
}

/// Runs a command with inherited stdio; a non-zero exit is an error naming the command.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = display_cmd(cmd);
    eprintln!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("failed to start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed with {status}");
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout; on failure the error includes stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let line = display_cmd(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to start `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program args...` and returns the first line of its combined output, if it ran.
pub fn tool_version(program: impl AsRef<OsStr>, args: &[&str]) -> Option<String> {
    tool_first_line(program, args, false)
}

/// The first non-empty line of what `program args...` printed (stdout, else stderr); `None`
/// if it could not be started, printed nothing, or (with `require_success`) exited non-zero.
pub fn tool_first_line(
    program: impl AsRef<OsStr>,
    args: &[&str],
    require_success: bool,
) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if require_success && !out.status.success() {
        return None;
    }
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

/// Looks a program up in `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Where `bindgen` is: `$BINDGEN`, then `PATH`, then `~/.cargo/bin`.
pub fn bindgen_path() -> PathBuf {
    if let Some(p) = std::env::var_os("BINDGEN") {
        return PathBuf::from(p);
    }
    if let Some(p) = which("bindgen") {
        return p;
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin").join("bindgen")
}

/// Pins the toolchain of a kernel `make`: the variables go on the command line because the
/// kernel Makefile's own assignments (`RUSTC = rustc`) override the environment.
pub fn kernel_make_env(cmd: &mut Command) -> &mut Command {
    cmd.arg(format!("RUSTC={KERNEL_RUSTC}"))
        .arg(format!("HOSTRUSTC={KERNEL_RUSTC}"))
        .arg(format!("BINDGEN={}", bindgen_path().display()))
        // Never let a rustup toolchain override leak into the kernel's rustc.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
}

/// `make -C <kernel source> O=<out> -j<jobs>` with the kernel's Rust toolchain
/// ([`kernel_make_env`]); the caller adds the variables and targets.
pub fn kernel_make(paths: &Paths, out: &Path) -> Command {
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(paths.src())
        .arg(format!("O={}", out.display()))
        .arg(format!("-j{}", jobs()));
    kernel_make_env(&mut cmd);
    cmd
}

/// Number of CPUs to build with.
pub fn jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// 64-bit FNV-1a, used for "did anything change" stamps (not for security).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // Separate fields so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        self
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// Runs a long command, streaming its combined output into `log`, showing a one-line
/// progress display, and returning the exit status. `label` names the step.
pub fn run_logged(cmd: &mut Command, log: &Path, label: &str) -> Result<bool> {
    let line = display_cmd(cmd);
    eprintln!("$ {line}\n  (full log: {})", log.display());
    let mut file =
        fs_err::File::create(log).with_context(|| format!("failed to create {}", log.display()))?;
    writeln!(file, "$ {line}")?;
    // Merge stderr into stdout through a pipe so the log keeps the order.
    let (reader, writer) = std::io::pipe().context("failed to create a pipe")?;
    let writer2 = writer.try_clone()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn()
        .with_context(|| format!("failed to start `{line}`"))?;
    // The command still owns the pipe's write ends; replace them so the reader sees EOF
    // when the child exits.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last_print = Instant::now();
    let mut lines = 0u64;
    let mut last_step = String::new();
    for l in BufReader::new(reader).split(b'\n') {
        let l = l?;
        file.write_all(&l)?;
        file.write_all(b"\n")?;
        lines += 1;
        let text = String::from_utf8_lossy(&l);
        let t = text.trim();
        if !t.is_empty() && t.len() < 160 {
            last_step = t.to_string();
        }
        let every = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(30)
        };
        if last_print.elapsed() >= every {
            last_print = Instant::now();
            let el = start.elapsed().as_secs();
            let msg = format!(
                "[{label}] {:>3}m{:02}s {lines:>6} lines  {}",
                el / 60,
                el % 60,
                truncate(&last_step, 70)
            );
            if tty {
                eprint!("\r\x1b[K{msg}");
            } else {
                eprintln!("{msg}");
            }
        }
    }
    let status = child.wait()?;
    if tty {
        eprint!("\r\x1b[K");
    }
    let el = start.elapsed().as_secs();
    eprintln!(
        "[{label}] {} in {}m{:02}s",
        if status.success() { "done" } else { "FAILED" },
        el / 60,
        el % 60
    );
    Ok(status.success())
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Returns the first compiler/linker error in a build log with a little context.
pub fn first_error(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().collect();
    let is_err = |l: &str| {
        l.contains("error:")
            || l.contains("error[E")
            || l.starts_with("ld: ")
            || l.contains("undefined reference")
            || l.contains("*** No rule to make target")
    };
    let i = lines.iter().position(|l| is_err(l))?;
    let start = i.saturating_sub(2);
    let end = (i + 6).min(lines.len());
    Some(lines[start..end].join("\n"))
}

/// Reads `path` to a string, with the path in the error.
pub fn read(path: &Path) -> Result<String> {
    fs_err::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))
}

/// Creates `dir` and its parents, with the path in the error.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs_err::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))
}

/// Writes `contents` to `path`, creating parent directories.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    fs_err::write(path, contents).with_context(|| format!("failed to write {}", path.display()))
}

/// Seconds since the Unix epoch formatted as a sortable UTC timestamp (YYYYmmdd-HHMMSS).
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil conversion.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Howard Hinnant's civil-to-days conversion, the inverse of [`civil_from_days`]: days
/// since 1970-01-01 of year `y`, month `m` (1-12), day `d` (1-31).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect that the first Failure in a chain decides the exit code.
    #[test]
    fn exit_code_mapping() {
        let e = failure(Exit::Timeout, "guest hung").context("qemu-test");
        assert_eq!(exit_code_of(&e), Exit::Timeout);
        let plain = anyhow::anyhow!("gcc missing");
        assert_eq!(exit_code_of(&plain), Exit::Infra);
        assert_eq!(Exit::KernelFault as i32, 10);
        assert_eq!(Exit::BootFailure as i32, 11);
    }

    // Expect that the first compiler error is found, with context.
    #[test]
    fn first_error_in_log() {
        let log = "  CC kernel/a.o\n  CC kernel/sched/fair.o\nkernel/sched/fair.c:10:5: error: expected ';'\n   10 | int x\n";
        let e = first_error(log).unwrap();
        assert!(e.contains("fair.c:10:5: error"));
        assert!(first_error("  CC a.o\n  LD vmlinux\n").is_none());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
    }

    // Expect the two calendar conversions to be each other's inverse, across leap years,
    // century rules and dates before 1970.
    #[test]
    fn civil_days_round_trip() {
        for z in (-800_000..800_000).step_by(97).chain(-800..800) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(
                days_from_civil(y, i64::from(m), i64::from(d)),
                z,
                "{y}-{m}-{d}"
            );
        }
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn fnv_separates_fields() {
        let a = Fnv::default().update(b"ab").update(b"c").hex();
        let b = Fnv::default().update(b"a").update(b"bc").hex();
        assert_ne!(a, b);
    }
}
