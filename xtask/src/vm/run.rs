//! Running a VM: spawn QEMU, capture the console line by line into a log, stop it at the
//! silence or hard limit, and never let it outlive xtask (`PR_SET_PDEATHSIG`, a guard that
//! kills and reaps it on every exit path).

use std::io::{BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::args::{interactive_console, qemu_args, qemu_binary, VmSpec};

/// Makes the kernel send SIGKILL to the child when the thread that spawned it ends, so no
/// QEMU outlives xtask even when xtask itself is killed (SIGKILL, or a signal whose default
/// action ends the process) and no `Drop` runs. [`ChildGuard`] covers the ordinary exits.
///
/// The signal follows the spawning *thread*, not the process: spawn from a thread that lives
/// as long as the child is needed (every caller spawns from the thread that then waits).
pub fn die_with_parent(cmd: &mut Command) {
    signal_on_parent_death(cmd, libc::SIGKILL);
}

/// As [`die_with_parent`], with the signal of the caller's choice (the host benchmark gets
/// SIGTERM, which it handles by removing its cgroups).
pub fn signal_on_parent_death(cmd: &mut Command, sig: libc::c_int) {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid is async-signal-safe and touches no memory.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and calls only the
    // async-signal-safe functions prctl, getppid and _exit; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then nobody would send
            // the signal.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Kills and reaps the child when dropped, so no QEMU outlives xtask's stack frame.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Why a VM run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// QEMU exited by itself (guest reboot/poweroff, or a QEMU error).
    Exited,
    /// No console output for the silence limit.
    Silent,
    /// The hard time limit passed.
    HardTimeout,
}

/// What a VM run produced.
#[derive(Debug)]
pub struct VmRun {
    pub console: String,
    pub ending: Ending,
    pub qemu_status: Option<i32>,
    pub qemu_stderr: String,
    pub elapsed: Duration,
}

impl VmRun {
    /// QEMU itself failing (bad option, missing firmware) is a host problem, not a boot
    /// failure: a guest reset under -no-reboot exits with status 0, and a guest that ran
    /// printed something. Every command that boots checks this before its verdict.
    pub fn ensure_qemu_ran(&self) -> Result<()> {
        if self.ending == Ending::Exited
            && self.qemu_status != Some(0)
            && self.console.trim().is_empty()
        {
            bail!(
                "QEMU failed ({:?}): {}",
                self.qemu_status,
                self.qemu_stderr.trim()
            );
        }
        Ok(())
    }
}

/// Time limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub hard: Duration,
    pub silence: Duration,
}

/// Boots the VM, copies the console into `log`, calls `on_line` for each console line,
/// and stops it at the first of: QEMU exit, silence, hard timeout.
pub fn run_vm(
    spec: &VmSpec,
    log: &Path,
    limits: Limits,
    on_line: impl FnMut(&str),
) -> Result<VmRun> {
    run_vm_with(spec, log, limits, Terminal::Captured, on_line)
}

/// How the guest console meets the user.
pub enum Terminal<'a> {
    /// QEMU's stdin is /dev/null; the console is only captured (tests, `vm -- CMD`).
    Captured,
    /// QEMU reads the user's terminal (stdin inherited, Ctrl-C goes to the guest, Ctrl-A X
    /// quits QEMU) and every console byte is also passed to `echo` as it arrives, so prompts
    /// without a newline show at once (`vm` without a command).
    Interactive { echo: &'a mut dyn FnMut(&[u8]) },
}

/// [`run_vm`] with a choice of [`Terminal`].
pub fn run_vm_with(
    spec: &VmSpec,
    log: &Path,
    limits: Limits,
    mut terminal: Terminal<'_>,
    mut on_line: impl FnMut(&str),
) -> Result<VmRun> {
    let mut args = qemu_args(spec);
    let mut cmd = Command::new(qemu_binary());
    if matches!(terminal, Terminal::Interactive { .. }) {
        args = interactive_console(args);
        cmd.stdin(Stdio::inherit());
    } else {
        cmd.stdin(Stdio::null());
    }
    cmd.args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut logf =
        fs_err::File::create(log).with_context(|| format!("failed to create {}", log.display()))?;
    writeln!(logf, "# {}", crate::util::display_cmd(&cmd))?;
    let child = cmd.spawn().with_context(|| {
        format!(
            "failed to start {}: is qemu-system-x86 installed? (cargo xtask setup)",
            qemu_binary()
        )
    })?;
    let mut guard = ChildGuard(child);
    let stdout = guard.0.stdout.take().context("no QEMU stdout")?;
    let stderr = guard.0.stderr.take().context("no QEMU stderr")?;
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    // Chunks, not lines: an interactive prompt has no newline.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut stdout = stdout;
        let mut buf = vec![0u8; 8192];
        loop {
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let start = Instant::now();
    let mut last_output = Instant::now();
    let mut console = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut take_line = |bytes: &[u8], console: &mut String| -> Result<()> {
        let line = String::from_utf8_lossy(bytes);
        let line = line.trim_end_matches('\r');
        logf.write_all(line.as_bytes())?;
        logf.write_all(b"\n")?;
        console.push_str(line);
        console.push('\n');
        on_line(line);
        Ok(())
    };
    let ending = loop {
        let left = limits.hard.saturating_sub(start.elapsed());
        let quiet = limits.silence.saturating_sub(last_output.elapsed());
        if left.is_zero() {
            break Ending::HardTimeout;
        }
        if quiet.is_zero() {
            break Ending::Silent;
        }
        match rx.recv_timeout(left.min(quiet).min(Duration::from_millis(500))) {
            Ok(bytes) => {
                last_output = Instant::now();
                if let Terminal::Interactive { echo } = &mut terminal {
                    echo(&bytes);
                }
                pending.extend_from_slice(&bytes);
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    take_line(&line[..i], &mut console)?;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break Ending::Exited,
        }
    };
    if !pending.is_empty() {
        take_line(&std::mem::take(&mut pending), &mut console)?;
    }
    if ending != Ending::Exited {
        let _ = guard.0.kill();
    }
    let status = guard.0.wait().ok().and_then(|s| s.code());
    drop(guard);
    let qemu_stderr = err_thread.join().unwrap_or_default();
    if !qemu_stderr.trim().is_empty() {
        writeln!(logf, "# qemu stderr:\n{qemu_stderr}")?;
    }
    Ok(VmRun {
        console,
        ending,
        qemu_status: status,
        qemu_stderr,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect QEMU exiting non-zero without any console output to be a host error, and a
    // guest that printed or a clean exit (reset under -no-reboot) not to be.
    #[test]
    fn qemu_failure_is_a_host_error() {
        let run = |console: &str, status| VmRun {
            console: console.into(),
            ending: Ending::Exited,
            qemu_status: status,
            qemu_stderr: "qemu-system-x86_64: -accel foo: invalid accelerator foo\n".into(),
            elapsed: Duration::from_millis(10),
        };
        let err = run("", Some(1)).ensure_qemu_ran().unwrap_err().to_string();
        assert!(err.contains("invalid accelerator"), "{err}");
        run("[0.0] Linux version\n", Some(1))
            .ensure_qemu_ran()
            .unwrap();
        run("", Some(0)).ensure_qemu_ran().unwrap();
    }

    // Expect a child spawned with die_with_parent to be killed by SIGKILL when the thread
    // that spawned it ends, long before its own 30 s would pass.
    #[test]
    fn child_dies_with_spawning_thread() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = std::thread::spawn(|| {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            die_with_parent(&mut cmd);
            cmd.spawn().unwrap()
        })
        .join()
        .unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("child still alive 10 s after its spawning thread ended");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }
}
