// SPDX-License-Identifier: GPL-2.0
//! CPUs: CPU lists, affinity, and the CPU the timing suites run on.

use super::*;

/// Parses a kernel CPU list such as `0-3,5,7-8`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let num = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad CPU number {x:?} in {s:?}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("bad CPU range {part:?}"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(num(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// The online CPUs according to sysfs.
pub fn online_cpus() -> Result<Vec<usize>, String> {
    let text = read_file("/sys/devices/system/cpu/online")
        .map_err(|e| format!("/sys/devices/system/cpu/online: {}", describe_err(&e)))?;
    parse_cpu_list(&text)
}

/// The CPU affinity of `pid` (0 = the caller).
pub fn get_affinity(pid: libc::pid_t) -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zeroes is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size we pass.
    let rc = unsafe { libc::sched_getaffinity(pid, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * std::mem::size_of_val(&set);
    // SAFETY: CPU_ISSET only reads `set`, and `cpu` is below the set's capacity.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Sets the CPU affinity of `pid` (0 = the caller).
pub fn set_affinity(pid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zeroes is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: CPU_SET writes inside `set`; it ignores CPUs beyond the set's capacity.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size we pass.
    let rc = unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Restores the runner's own CPU affinity when dropped.
pub struct AffinityGuard {
    old: Vec<usize>,
}

impl AffinityGuard {
    /// Moves the calling process to `cpus`, remembering the previous affinity.
    pub fn pin_self(cpus: &[usize]) -> io::Result<AffinityGuard> {
        let old = get_affinity(0)?;
        set_affinity(0, cpus)?;
        Ok(AffinityGuard { old })
    }
}

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        if let Err(e) = set_affinity(0, &self.old) {
            warn(format!("cleanup: restoring runner affinity: {e}"));
        }
    }
}

/// The CPU the timing suites run their workers on (the first usable one), the other usable
/// CPUs, and the runner moved onto those (if there are any) so its own wake-ups stay off the
/// test CPU. Dropping `pin` restores the runner's affinity.
pub struct TestCpu {
    pub cpu: usize,
    pub others: Vec<usize>,
    pub pin: Option<AffinityGuard>,
}

/// Picks the test CPU and moves the runner off it, see [`TestCpu`].
pub fn test_cpu() -> Result<TestCpu, String> {
    let online = online_cpus()?;
    let allowed = get_affinity(0).map_err(|e| format!("sched_getaffinity: {e}"))?;
    let usable: Vec<usize> = online
        .iter()
        .copied()
        .filter(|c| allowed.contains(c))
        .collect();
    let Some(&cpu) = usable.first() else {
        return Err(format!(
            "no usable CPU (online {online:?}, allowed {allowed:?})"
        ));
    };
    let others: Vec<usize> = usable.iter().copied().filter(|&c| c != cpu).collect();
    let pin = if others.is_empty() {
        None
    } else {
        Some(
            AffinityGuard::pin_self(&others)
                .map_err(|e| format!("moving the runner off the test CPU: {e}"))?,
        )
    };
    Ok(TestCpu { cpu, others, pin })
}

/// Makes the calling process SCHED_FIFO at `priority`.
pub fn set_fifo(priority: i32) -> io::Result<()> {
    lags_pid1::sched::set_scheduler(libc::SCHED_FIFO, priority)
}

/// A task's `/proc/PID/schedstat` line: time on the CPU, time waiting on a runqueue (both
/// ns) and the number of times it was switched in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedStat {
    pub exec_ns: u64,
    pub wait_ns: u64,
    pub switched_in: u64,
}

impl SchedStat {
    pub fn parse(text: &str) -> Result<SchedStat, String> {
        let fields: Vec<u64> = text
            .split_whitespace()
            .map(|f| f.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("schedstat: expected three numbers, got {text:?}"))?;
        match fields[..] {
            [exec_ns, wait_ns, switched_in] => Ok(SchedStat {
                exec_ns,
                wait_ns,
                switched_in,
            }),
            _ => Err(format!("schedstat: expected three numbers, got {text:?}")),
        }
    }

    /// The line of `pid` (a number or `self`).
    pub fn of(pid: impl std::fmt::Display) -> Result<SchedStat, String> {
        let path = format!("/proc/{pid}/schedstat");
        let text = read_file(&path).map_err(|e| format!("{path}: {}", describe_err(&e)))?;
        SchedStat::parse(&text)
    }
}

/// Sets the calling process's policy back to SCHED_OTHER (nice unchanged).
pub fn set_other() -> io::Result<()> {
    lags_pid1::sched::set_scheduler(libc::SCHED_OTHER, 0)
}

/// The sysfs switch of a CPU's online state.
pub fn cpu_online_path(cpu: usize) -> PathBuf {
    PathBuf::from(format!("/sys/devices/system/cpu/cpu{cpu}/online"))
}

/// Brings every CPU in the list back online when dropped.
pub struct OnlineGuard(pub Vec<usize>);

impl Drop for OnlineGuard {
    fn drop(&mut self) {
        for &c in &self.0 {
            if read_trimmed(cpu_online_path(c)).ok().as_deref() != Some("1") {
                if let Err(e) = write_file(cpu_online_path(c), "1") {
                    warn(format!(
                        "cleanup: bringing CPU {c} online: {}",
                        describe_err(&e)
                    ));
                }
            }
        }
    }
}

/// Takes `cpus` offline, those that can be (CPU 0 and CPUs without an `online` switch
/// cannot), until the returned guard is dropped. Returns the guard and the CPUs it took
/// offline; a CPU that refuses stays online, with the reason in the list of failures.
pub fn offline_cpus(cpus: &[usize]) -> (OnlineGuard, Vec<usize>, Vec<String>) {
    let mut guard = OnlineGuard(Vec::new());
    let mut failed = Vec::new();
    for &c in cpus {
        let path = cpu_online_path(c);
        if c == 0 || !path.exists() {
            continue;
        }
        guard.0.push(c);
        if let Err(e) = write_file(&path, "0") {
            failed.push(format!("CPU {c}: {}", describe_err(&e)));
        }
    }
    let off: Vec<usize> = guard
        .0
        .iter()
        .copied()
        .filter(|&c| read_trimmed(cpu_online_path(c)).ok().as_deref() == Some("0"))
        .collect();
    (guard, off, failed)
}
