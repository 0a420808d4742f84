// SPDX-License-Identifier: GPL-2.0
//! Clocks in nanoseconds, absolute sleeps and busy-waits.

/// CLOCK_MONOTONIC in nanoseconds.
pub fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Reads `clock` in nanoseconds (the clocks used here always exist).
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the callers pass clocks Linux always has.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time consumed by the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Busy-loops until the calling thread has consumed `ns` of CPU time (however long that
/// takes in wall time when it has to share the CPU).
pub fn spin_cpu_ns(ns: u64) {
    let end = thread_cpu_ns() + ns;
    while thread_cpu_ns() < end {
        std::hint::spin_loop();
    }
}

/// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns` (absolute), restarting on signals.
pub fn sleep_until_ns(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: `ts` is a valid timespec; the remaining-time pointer may be null for
        // TIMER_ABSTIME sleeps.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if rc != libc::EINTR {
            return;
        }
    }
}

/// Sleeps for `ms` milliseconds.
pub fn sleep_ms(ms: u64) {
    sleep_until_ns(now_ns() + ms * 1_000_000);
}

/// Busy-waits (burning CPU) until CLOCK_MONOTONIC reaches `deadline_ns`.
pub fn spin_until_ns(deadline_ns: u64) {
    while now_ns() < deadline_ns {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect an absolute sleep to end at its deadline, not before, and not much later.
    #[test]
    fn sleeps_until_the_deadline() {
        let start = now_ns();
        sleep_until_ns(start + 20_000_000);
        let slept = now_ns() - start;
        assert!(slept >= 20_000_000, "{slept} ns");
        assert!(slept < 2_000_000_000, "{slept} ns");
        let start = now_ns();
        sleep_ms(5);
        assert!(now_ns() - start >= 5_000_000);
        // A deadline in the past returns at once.
        sleep_until_ns(0);
    }

    // Expect a CPU spin to consume at least the CPU time asked for, and a wall-clock spin
    // to reach its deadline.
    #[test]
    fn spins() {
        let cpu = thread_cpu_ns();
        spin_cpu_ns(5_000_000);
        assert!(thread_cpu_ns() - cpu >= 5_000_000);
        let deadline = now_ns() + 2_000_000;
        spin_until_ns(deadline);
        assert!(now_ns() >= deadline);
    }
}
