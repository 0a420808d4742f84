// SPDX-License-Identifier: GPL-2.0
//! Worker processes: forked children with a control pipe from the runner and a result pipe back.

use super::*;

/// The child's side of a [`Worker`]: a control pipe from the runner and a result pipe to it.
pub struct WorkerIo {
    ctl: File,
    out: File,
}

impl WorkerIo {
    /// Blocks until the runner sends a "go" byte; false if the runner closed the pipe.
    pub fn wait_go(&mut self) -> bool {
        let mut b = [0u8; 1];
        loop {
            match self.ctl.read(&mut b) {
                Ok(1) => return true,
                Ok(_) => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    /// Whether the runner asked us to stop (closed the control pipe or sent a byte). Does
    /// not block; cheap enough to call every millisecond from a spin loop.
    pub fn stop_requested(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.ctl.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd; a zero timeout never blocks.
        let rc = unsafe { libc::poll(&mut p, 1, 0) };
        rc > 0 && p.revents != 0
    }

    /// Sends bytes to the runner (errors ignored: the runner reports missing data).
    pub fn send(&mut self, data: &[u8]) {
        let _ = self.out.write_all(data);
    }

    /// Sends one `key=value` line.
    pub fn send_kv(&mut self, key: &str, value: impl std::fmt::Display) {
        self.send(format!("{key}={value}\n").as_bytes());
    }
}

fn pipe_cloexec() -> io::Result<(File, File)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Closes every descriptor of the calling (freshly forked) process except 0-2 and `keep`,
/// so that the child does not hold other workers' pipe ends open.
fn close_other_fds(keep: &[RawFd]) {
    let fds: Vec<RawFd> = match fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing a descriptor number we do not otherwise use in the child;
            // stale numbers just fail with EBADF.
            unsafe { libc::close(fd) };
        }
    }
}

/// How [`Worker::read_out`] stopped reading.
enum ReadEnd {
    /// The caller's condition holds.
    Done,
    /// The child closed its end.
    Eof,
    /// The timeout passed.
    Timeout,
}

/// A forked child process running a closure. The child first waits for [`Worker::go`], so
/// the runner can move it into a cgroup and pin it before it does anything. Dropping the
/// guard kills (SIGKILL) and reaps the child if it has not been reaped yet.
pub struct Worker {
    pid: libc::pid_t,
    ctl: Option<File>,
    out: Option<File>,
    reaped: bool,
}

impl Worker {
    /// Forks a child that runs `body` after the "go" byte and then exits with the returned
    /// code (101 if `body` panics). The runner is single-threaded, so the child may allocate.
    pub fn spawn<F: FnOnce(&mut WorkerIo) -> i32>(body: F) -> io::Result<Worker> {
        let (ctl_r, ctl_w) = pipe_cloexec()?;
        let (out_r, out_w) = pipe_cloexec()?;
        // SAFETY: fork has no memory-safety preconditions; the runner is single-threaded,
        // so the child's copy of the heap and locks is consistent. (Unit tests that fork run
        // alone in a process of their own, see `in_own_process`.)
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            drop(ctl_w);
            drop(out_r);
            close_other_fds(&[ctl_r.as_raw_fd(), out_w.as_raw_fd()]);
            let mut wio = WorkerIo {
                ctl: ctl_r,
                out: out_w,
            };
            let code = if wio.wait_go() {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut wio))) {
                    Ok(code) => code,
                    Err(_) => {
                        wio.send(b"\nworker_panicked=1\n");
                        101
                    }
                }
            } else {
                0
            };
            drop(wio);
            // SAFETY: _exit ends the child immediately without running the parent's
            // destructors or atexit handlers; it never returns.
            unsafe { libc::_exit(code) };
        }
        drop(ctl_r);
        drop(out_w);
        Ok(Worker {
            pid,
            ctl: Some(ctl_w),
            out: Some(out_r),
            reaped: false,
        })
    }

    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Lets the child start (or sends it a further signal byte).
    pub fn go(&mut self) -> io::Result<()> {
        match &mut self.ctl {
            Some(ctl) => ctl.write_all(b"g"),
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        }
    }

    /// Moves the child into `cg`, pins it to `cpu` (if given) and lets it start.
    pub fn start_in(&mut self, cg: &Cgroup, cpu: Option<usize>) -> Result<(), String> {
        cg.add_pid(self.pid).map_err(|e| {
            format!(
                "moving worker {} into {}: {}",
                self.pid,
                cg.path().display(),
                describe_err(&e)
            )
        })?;
        if let Some(cpu) = cpu {
            set_affinity(self.pid, &[cpu])
                .map_err(|e| format!("pinning worker {} to CPU {cpu}: {e}", self.pid))?;
        }
        self.go()
            .map_err(|e| format!("starting worker {}: {e}", self.pid))
    }

    /// Asks the child to stop by closing the control pipe.
    pub fn stop(&mut self) {
        self.ctl = None;
    }

    /// Reads what the child sends until `done(data so far)` holds, the child closes its end,
    /// or `timeout` passes; returns the data and which of the three happened.
    fn read_out(
        &mut self,
        timeout: Duration,
        done: impl Fn(&[u8]) -> bool,
    ) -> Result<(Vec<u8>, ReadEnd), String> {
        let Some(out) = self.out.as_mut() else {
            return Err("worker output already collected".into());
        };
        let deadline = now_ns() + timeout.as_nanos() as u64;
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if done(&data) {
                return Ok((data, ReadEnd::Done));
            }
            let left_ms = deadline.saturating_sub(now_ns()) / 1_000_000;
            if left_ms == 0 {
                return Ok((data, ReadEnd::Timeout));
            }
            let mut p = libc::pollfd {
                fd: out.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `p` is one valid pollfd.
            let rc = unsafe { libc::poll(&mut p, 1, left_ms.min(1000) as libc::c_int) };
            if rc <= 0 {
                continue;
            }
            match out.read(&mut buf) {
                Ok(0) => return Ok((data, ReadEnd::Eof)),
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading from worker {}: {e}", self.pid)),
            }
        }
    }

    /// Reads everything the child sends until it closes its end (normally by exiting), for
    /// at most `timeout`.
    pub fn collect(&mut self, timeout: Duration) -> Result<Vec<u8>, String> {
        match self.read_out(timeout, |_| false)? {
            (data, ReadEnd::Eof) => {
                self.out = None;
                Ok(data)
            }
            (data, _) => Err(format!(
                "worker {} sent no end of output within {}s ({} bytes so far)",
                self.pid,
                timeout.as_secs(),
                data.len()
            )),
        }
    }

    /// Reads what the running child sends until a line `key=…` has arrived (the child keeps
    /// running), for at most `timeout`. Returns the text read so far.
    pub fn read_line_until(&mut self, key: &str, timeout: Duration) -> Result<String, String> {
        let prefix = format!("{key}=");
        let (data, end) = self.read_out(timeout, |d| {
            let text = String::from_utf8_lossy(d);
            text.lines().any(|l| l.starts_with(&prefix)) && text.ends_with('\n')
        })?;
        let text = String::from_utf8_lossy(&data).into_owned();
        match end {
            ReadEnd::Done => Ok(text),
            ReadEnd::Eof => Err(format!(
                "worker {} closed its output before a {key}= line (got {text:?})",
                self.pid
            )),
            ReadEnd::Timeout => Err(format!(
                "worker {} sent no {key}= line within {}s (got {text:?})",
                self.pid,
                timeout.as_secs()
            )),
        }
    }

    /// Waits up to `timeout` for the child to exit and returns its exit code (128+signal
    /// if killed).
    pub fn wait(&mut self, timeout: Duration) -> Result<i32, String> {
        let deadline = now_ns() + timeout.as_nanos() as u64;
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child with a valid status pointer.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if rc == self.pid {
                self.reaped = true;
                return Ok(if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                });
            }
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    self.reaped = true;
                    return Err(format!("waitpid({}): {e}", self.pid));
                }
            }
            if now_ns() > deadline {
                return Err(format!(
                    "worker {} did not exit within {timeout:?}",
                    self.pid
                ));
            }
            sleep_ms(5);
        }
    }

    /// Stops the child, collects its output and reaps it.
    pub fn finish(&mut self, timeout: Duration) -> Result<Vec<u8>, String> {
        self.stop();
        let data = self.collect(timeout)?;
        let code = self.wait(timeout)?;
        if code != 0 {
            return Err(format!(
                "worker {} exited with status {code}; output: {}",
                self.pid,
                show_bytes(&data)
            ));
        }
        Ok(data)
    }

    /// Kills (SIGKILL) and reaps the child now.
    pub fn kill(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: signalling our own, not yet reaped child (its pid cannot be reused).
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        if let Err(e) = self.wait(Duration::from_secs(10)) {
            warn(format!("cleanup: {e}"));
        }
    }
}

impl Worker {
    /// Reaps the child if it has exited, without blocking: `Some(exit code)` (128+signal if
    /// killed) once it is gone, `None` while it still runs.
    pub fn try_wait(&mut self) -> Option<i32> {
        if self.reaped {
            return None;
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if rc != self.pid {
            return None;
        }
        self.reaped = true;
        Some(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.ctl = None;
        self.out = None;
        self.kill();
    }
}

/// Busy-spins until told to stop, recording the longest gap between two successive clock
/// reads after `warmup_ns` (the longest time the process was not running). Sends
/// `[max_gap_ns, loops]`. Used for "heavy" workers.
pub fn spin_recording_gaps(io: &mut WorkerIo, warmup_ns: u64) -> i32 {
    let start = now_ns();
    let warm_end = start + warmup_ns;
    let mut prev = start;
    let mut next_check = start;
    let mut max_gap = 0u64;
    let mut loops = 0u64;
    loop {
        let t = now_ns();
        if t >= warm_end {
            max_gap = max_gap.max(t - prev);
        }
        prev = t;
        loops += 1;
        if t >= next_check {
            if io.stop_requested() {
                break;
            }
            next_check = t + 1_000_000;
        }
    }
    io.send(&encode_u64s(&[max_gap, loops]));
    0
}
