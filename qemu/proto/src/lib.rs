// SPDX-License-Identifier: GPL-2.0
//! The contract between the host (`cargo xtask`) and the programs it runs in the guest
//! (`lags-init`, `lags-bench`).
//!
//! Everything that crosses the VM boundary is defined here once, and both sides compile
//! it, so a renamed field or key fails to compile instead of silently reading as a default:
//!
//! * [`runner`]: the test runner's options (`lags.*` kernel parameters) and suite names;
//! * [`bench`]: the benchmark plan (`lb.*` kernel parameters) and the records the benchmark
//!   writes to its data port;
//! * [`marker`]: the lines the host looks for on the console;
//! * [`path`]: where things live in the guest image;
//! * [`robustness`]: the `robustness:` metric lines of the stress suites;
//! * [`cmdline`]: kernel command-line splitting and boolean parsing shared by all of them.
//!
//! `qemu/README.md` describes the contract in prose.

pub mod bench;
pub mod cmdline;
pub mod marker;
pub mod path;
pub mod robustness;
pub mod runner;
