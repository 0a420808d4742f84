// SPDX-License-Identifier: GPL-2.0
//! The calling process's scheduling policy.

use std::io;

/// sched_setscheduler(2) on the calling process: `policy` (`libc::SCHED_FIFO`,
/// `libc::SCHED_OTHER`, ...) at `priority` (0 for the non-real-time policies).
pub fn set_scheduler(policy: libc::c_int, priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: sched_setscheduler on ourselves with a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the fair policy at priority 0 to be accepted and a real-time priority for it to
    // be refused with EINVAL.
    #[test]
    fn fair_policy() {
        set_scheduler(libc::SCHED_OTHER, 0).unwrap();
        assert_eq!(
            set_scheduler(libc::SCHED_OTHER, 10)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL)
        );
    }
}
