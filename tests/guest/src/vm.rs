// SPDX-License-Identifier: GPL-2.0
//! VM mode (`lags.vm=1` on the kernel command line), used by `cargo xtask vm`: instead of
//! running the test suites, PID 1 prepares the guest like the runner does (kernel
//! filesystems, the cpu controller enabled at the cgroup v2 root), then runs the user's
//! command (`/vm/cmd`, a shell script the host wrote into the initramfs) or an interactive
//! shell on the serial console, and powers off.
//!
//! Protocol with the host (all lines on the first serial port, `/dev/ttyS0`):
//!
//! * `lags-vm: ready token=T` just before the command starts; everything the command
//!   prints follows;
//! * `lags-vm: exit=N token=T` after the command ended and its output was drained (`N` is
//!   its exit status, 128+signal if a signal killed it). The line is written to the serial
//!   port and to `/dev/kmsg`.
//!
//! `T` is a random token from `/vm/config`, so output that merely looks like a marker (a
//! log of an earlier run printed by the command) is never taken for one. With `out=1` the
//! contents of `/out` are sent as a tar archive over the second serial port (`/dev/ttyS1`,
//! raw mode) before the exit line.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use lags_pid1::tty::{drain, make_raw, open_write_noctty};

use crate::ktap::Ktap;
use crate::util;

/// The kernel command-line parameter that selects VM mode.
pub use lags_proto::runner::VM_PARAM;
/// Directory in the initramfs with the host's instructions.
const VM_DIR: &str = "/vm";
/// Where the shared host directory sits in the initramfs (`/vm/share/<host path>`).
const SHARE_STORE: &str = "/vm/share";
/// The guest directory whose contents go back to the host with `out=1`.
const OUT_DIR: &str = "/out";
/// The serial console the command's output goes to.
const CONSOLE_TTY: &str = "/dev/ttyS0";
/// The bulk data channel.
const DATA_TTY: &str = "/dev/ttyS1";
/// `PATH` of the command: the busybox applets and programs carried with `--with`.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the host asked for, from `/vm/config` (`key=value` lines).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct VmConfig {
    /// Marker token.
    pub token: String,
    /// Host directory shown read-only at this path (the files are under `/vm/share`).
    pub share: Option<PathBuf>,
    /// Working directory of the command.
    pub cwd: Option<PathBuf>,
    /// Send `/out` back over the data port.
    pub out: bool,
    /// Interactive shell instead of `/vm/cmd`.
    pub interactive: bool,
    /// The host terminal's `TERM` and size, for the interactive shell.
    pub term: Option<String>,
    pub rows: Option<u16>,
    pub cols: Option<u16>,
    /// Keys this runner does not know or values it cannot read.
    pub warnings: Vec<String>,
}

impl VmConfig {
    /// Parses `/vm/config`. Unknown keys and bad values become warnings.
    pub fn parse(text: &str) -> VmConfig {
        let mut c = VmConfig::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let Some((k, v)) = line.split_once('=') else {
                c.warnings.push(format!("ignoring config line {line:?}"));
                continue;
            };
            let abs = |v: &str| Path::new(v).is_absolute().then(|| PathBuf::from(v));
            match k {
                "token" => c.token = v.to_owned(),
                "share" => match abs(v) {
                    Some(p) => c.share = Some(p),
                    None => c.warnings.push(format!("share={v:?} is not absolute")),
                },
                "cwd" => match abs(v) {
                    Some(p) => c.cwd = Some(p),
                    None => c.warnings.push(format!("cwd={v:?} is not absolute")),
                },
                "out" => c.out = v == "1",
                "interactive" => c.interactive = v == "1",
                "term" if !v.is_empty() => c.term = Some(v.to_owned()),
                "rows" => c.rows = v.parse().ok(),
                "cols" => c.cols = v.parse().ok(),
                _ => c.warnings.push(format!("ignoring config key {k:?}")),
            }
        }
        c
    }
}

/// True if the kernel command line selects VM mode.
pub fn requested(cmdline: &str) -> bool {
    crate::cmdline_params(cmdline).iter().any(|p| p == VM_PARAM)
}

/// The exit status the host reports: the code, or 128 + the signal that killed the command
/// (as shells do).
pub fn status_code(status: std::process::ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 255,
    }
}

/// Writes one protocol line to the serial port, after the output before it has drained,
/// and to the kernel log. The port is opened afresh: when an interactive shell (the
/// session leader) exits, the kernel hangs up every descriptor open on its terminal.
fn say(out: &mut Ktap, line: &str) {
    if let Ok(t) = open_tty(CONSOLE_TTY, false).or_else(|_| open_tty("/dev/console", false)) {
        drain(&t);
        let _ = util::write_once(&t, format!("{line}\n").as_bytes());
        drain(&t);
    }
    out.raw(line);
}

/// Bind-mounts `/vm/share/<path>` read-only at `<path>`.
fn mount_share(path: &Path) -> Result<(), String> {
    let store = Path::new(SHARE_STORE).join(path.strip_prefix("/").unwrap_or(path));
    std::fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
    let src = store.to_string_lossy();
    util::mount(&src, path, "", libc::MS_BIND | libc::MS_REC, "")
        .map_err(|e| format!("bind {} on {}: {e}", src, path.display()))?;
    util::mount(
        "",
        path,
        "",
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
        "",
    )
    .map_err(|e| format!("read-only remount of {}: {e}", path.display()))
}

/// Opens the console terminal for the command (or for the interactive shell).
fn open_tty(path: &str, ctty: bool) -> std::io::Result<File> {
    let flags = if ctty { 0 } else { libc::O_NOCTTY };
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(path)
}

/// Sends `/out` as a tar archive (busybox `tar`) over the raw data port.
fn send_out() -> Result<(), String> {
    let port = open_write_noctty(DATA_TTY).map_err(|e| format!("{DATA_TTY}: {e}"))?;
    make_raw(&port).map_err(|call| format!("{call} {DATA_TTY} failed"))?;
    let stdout = port.try_clone().map_err(|e| e.to_string())?;
    let status = Command::new("/bin/tar")
        .args(["-c", "-f", "-", "-C", OUT_DIR, "."])
        .stdin(Stdio::null())
        .stdout(stdout)
        .status()
        .map_err(|e| format!("tar: {e}"))?;
    drain(&port);
    if !status.success() {
        return Err(format!("tar -C {OUT_DIR} exited with {status}"));
    }
    Ok(())
}

/// Runs the command or the shell and returns its exit status.
fn run_command(cfg: &VmConfig, out: &mut Ktap, tty: Option<&File>) -> i32 {
    let mut cmd = Command::new("/bin/sh");
    if cfg.interactive {
        cmd.arg("-i");
    } else {
        cmd.arg(Path::new(VM_DIR).join("cmd"));
    }
    let cwd = cfg
        .cwd
        .clone()
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/root"));
    cmd.current_dir(&cwd)
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", "/root")
        .env("USER", "root")
        .env("LOGNAME", "root")
        .env("SHELL", "/bin/sh")
        .env("PWD", &cwd)
        .env("TERM", cfg.term.as_deref().unwrap_or("linux"))
        .env("PS1", "lags-vm:\\w# ");
    if cfg.out {
        cmd.env("LAGS_VM_OUT", OUT_DIR);
    }
    let interactive = cfg.interactive;
    if interactive {
        // The shell gets the serial port as its controlling terminal (job control, ^C).
        match open_tty(CONSOLE_TTY, true) {
            Ok(t) => {
                if let (Some(rows), Some(cols)) = (cfg.rows, cfg.cols) {
                    let ws = libc::winsize {
                        ws_row: rows,
                        ws_col: cols,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
                    unsafe { libc::ioctl(t.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
                let (a, b) = (t.try_clone(), t.try_clone());
                if let (Ok(a), Ok(b)) = (a, b) {
                    cmd.stdin(t).stdout(a).stderr(b);
                }
            }
            Err(e) => out.raw(&format!("lags-vm: warning: {CONSOLE_TTY}: {e}")),
        }
    } else {
        cmd.stdin(Stdio::null());
        if let Some(t) = tty {
            if let (Ok(a), Ok(b)) = (t.try_clone(), t.try_clone()) {
                cmd.stdout(a).stderr(b);
            }
        }
    }
    // SAFETY: setsid and ioctl are async-signal-safe and touch no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if interactive {
                libc::ioctl(0, libc::TIOCSCTTY, 1);
            }
            Ok(())
        });
    }
    match cmd.status() {
        Ok(s) => status_code(s),
        Err(e) => {
            out.raw(&format!("lags-vm: could not start /bin/sh: {e}"));
            127
        }
    }
}

/// VM mode: prepare, run, report, power off. Never returns.
pub fn run(out: &mut Ktap) -> ! {
    let text = util::read_file(Path::new(VM_DIR).join("config")).unwrap_or_default();
    let cfg = VmConfig::parse(&text);
    for w in &cfg.warnings {
        out.raw(&format!("lags-vm: warning: {w}"));
    }
    // Programs carried with `--with` keep their host paths, which may be under /tmp: take
    // away the runner's tmpfs there (the initramfs is in RAM and writable anyway).
    if util::umount(Path::new("/tmp")).is_ok() {
        let _ = std::fs::set_permissions("/tmp", std::fs::Permissions::from_mode(0o1777));
    }
    if let Err(e) = util::ensure_v2_cpu(Duration::from_secs(2)) {
        out.raw(&format!("lags-vm: warning: {e}"));
    }
    if let Some(share) = &cfg.share {
        if let Err(e) = mount_share(share) {
            out.raw(&format!(
                "lags-vm: warning: sharing {}: {e}",
                share.display()
            ));
        }
    }
    if cfg.out {
        if let Err(e) = std::fs::create_dir_all(OUT_DIR) {
            out.raw(&format!("lags-vm: warning: mkdir {OUT_DIR}: {e}"));
        }
    }
    if cfg.interactive {
        // Only warnings and worse on the shell's terminal (the host still sees every
        // fault: panics, oopses, BUG and WARNING reports are all at least KERN_WARNING).
        if let Err(e) = util::write_file("/proc/sys/kernel/printk", "5") {
            out.raw(&format!("lags-vm: warning: console loglevel: {e}"));
        }
    }
    let tty = open_tty(CONSOLE_TTY, false)
        .or_else(|_| open_tty("/dev/console", false))
        .ok();
    say(out, &lags_proto::marker::vm_ready(&cfg.token));
    let code = run_command(&cfg, out, tty.as_ref());
    if cfg.out {
        if let Err(e) = send_out() {
            out.raw(&format!(
                "lags-vm: warning: sending {OUT_DIR} back failed: {e}"
            ));
        }
    }
    say(out, &lags_proto::marker::vm_exit(code, &cfg.token));
    crate::power_off()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect every key to be read, relative paths refused and unknown keys reported.
    #[test]
    fn parses_config() {
        let c = VmConfig::parse(
            "token=ab12\nshare=/work/main\ncwd=/work/main/x\nout=1\ninteractive=0\n\
             term=xterm\nrows=40\ncols=120\n",
        );
        assert_eq!(c.token, "ab12");
        assert_eq!(c.share.as_deref(), Some(Path::new("/work/main")));
        assert_eq!(c.cwd.as_deref(), Some(Path::new("/work/main/x")));
        assert!(c.out && !c.interactive);
        assert_eq!(c.term.as_deref(), Some("xterm"));
        assert_eq!((c.rows, c.cols), (Some(40), Some(120)));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        let bad = VmConfig::parse("share=rel/dir\ncolour=red\nnonsense\ninteractive=1\n");
        assert_eq!(bad.share, None);
        assert!(bad.interactive && !bad.out);
        assert_eq!(bad.warnings.len(), 3, "{:?}", bad.warnings);
    }

    // Expect VM mode only for the exact parameter, anywhere before `--`.
    #[test]
    fn detects_vm_mode() {
        assert!(requested("console=ttyS0 lags.vm=1 panic=-1"));
        assert!(!requested("console=ttyS0 lags.vm=0"));
        assert!(!requested("console=ttyS0 xlags.vm=1"));
        assert!(!requested("console=ttyS0 -- lags.vm=1"));
    }

    // Expect an exit code to pass through and a signal to become 128 + signal.
    #[test]
    fn status_codes() {
        let st = |cmd: &str| {
            status_code(
                Command::new("/bin/sh")
                    .args(["-c", cmd])
                    .status()
                    .expect("sh"),
            )
        };
        assert_eq!(st("exit 7"), 7);
        assert_eq!(st("exit 0"), 0);
        assert_eq!(st("kill -TERM $$"), 128 + libc::SIGTERM);
    }
}
