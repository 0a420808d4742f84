// SPDX-License-Identifier: GPL-2.0
//! Futex wait and wake on a shared `u32`, for the guest programs' start gates and
//! hand-offs between processes or threads.

use std::sync::atomic::AtomicU32;

/// Blocks while `word` holds `val`, at most `timeout_ns`; returns at once if it does not.
/// Callers re-check their condition: wake-ups may be spurious.
pub fn futex_wait(word: &AtomicU32, val: u32, timeout_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: the word lives in a shared mapping (no FUTEX_PRIVATE_FLAG: the waker is
    // another process); `ts` is a valid relative timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            val,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0,
        )
    };
}

/// Wakes every waiter on `word`.
pub fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: as in futex_wait; waking has no memory preconditions.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0,
        )
    };
}
