// SPDX-License-Identifier: GPL-2.0
//! Reading the kernel's view of processes: `/proc/<pid>/stat` and the kernel log.

use std::fs;
use std::io::{self, Read};

use crate::fs::read_file;

/// All records currently in the kernel log, read from `/dev/kmsg` without blocking.
pub fn kernel_log() -> io::Result<Vec<String>> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblock()
        .open("/dev/kmsg")?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                // "<prefix>;<text>\n" followed by optional " KEY=value" continuation lines.
                if let Some((_, text)) = rec.split_once(';') {
                    out.push(text.lines().next().unwrap_or("").to_owned());
                }
            }
            // EPIPE: records were overwritten while reading; carry on with the next one.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

/// The state letter and parent pid of `/proc/<pid>/stat` (the comm field may contain
/// spaces and parentheses, so parse from the last `)`).
pub fn proc_state(pid: libc::pid_t) -> Option<(char, libc::pid_t)> {
    let text = read_file(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// User-space processes other than PID 1 and the caller (kernel threads, which are
/// children of kthreadd, pid 2, are left out), with their state letter.
pub fn user_processes() -> Vec<(libc::pid_t, char)> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if pid == 1 || pid == 2 || pid == me {
            continue;
        }
        if let Some((state, ppid)) = proc_state(pid) {
            if ppid != 2 {
                out.push((pid, state));
            }
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect this thread's own stat line to parse (running, with the process's parent),
    // and a pid that does not exist to give nothing.
    #[test]
    fn own_state() {
        // SAFETY: getpid/gettid/getppid have no preconditions.
        let (me, tid, parent) = unsafe { (libc::getpid(), libc::gettid(), libc::getppid()) };
        assert_eq!(proc_state(tid), Some(('R', parent)));
        assert_eq!(proc_state(-1), None);
        assert!(!user_processes().iter().any(|(p, _)| *p == me || *p == 1));
    }
}
