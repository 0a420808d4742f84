// SPDX-License-Identifier: GPL-2.0
//! Time: clocks, sleeps, CPU spinning and formatting.

pub use lags_pid1::clock::{now_ns, sleep_ms, sleep_until_ns, spin_cpu_ns, spin_until_ns};

/// Formats nanoseconds as microseconds for diagnostics.
pub fn us(ns: u64) -> String {
    format!("{}us", ns / 1000)
}

/// Formats nanoseconds as milliseconds with one decimal.
pub fn ms(ns: u64) -> String {
    format!("{}.{}ms", ns / 1_000_000, (ns / 100_000) % 10)
}
