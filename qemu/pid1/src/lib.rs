// SPDX-License-Identifier: GPL-2.0
//! What a program needs to run as PID 1 of the project's QEMU guests, written once for both
//! of them (`lags-init` from `tests/guest`, `lags-bench` from `tests/bench`):
//!
//! * [`clock`]: CLOCK_MONOTONIC and thread CPU time in nanoseconds, absolute sleeps, spins;
//! * [`cred`]: `nobody` (65534) and dropping to it, the effective capability mask;
//! * [`errno`]: errors as the tests print them (`EINVAL`);
//! * [`fs`]: mount(2), umount2(2), chown(2) with Rust paths, and single-`write(2)` files
//!   (a kernel interface file takes one write as one value; `/dev/kmsg` one write as one
//!   record);
//! * [`init`]: the kernel filesystems PID 1 mounts, standard descriptors, power-off;
//! * [`module`]: finit_module(2) and delete_module(2);
//! * [`procfs`]: process states from `/proc/<pid>/stat`, the kernel log from `/dev/kmsg`;
//! * [`sched`]: the calling process's scheduling policy;
//! * [`rng`]: the seeded generators (the runner's and the benchmark's, each replayable);
//! * [`stats`]: percentiles of sorted samples (the runner's nearest rank, the benchmark's
//!   interpolation);
//! * [`tty`]: the raw data port and draining a serial port.
//!
//! `qemu/README.md` describes the guest side of the host/guest contract.

pub mod clock;
pub mod cred;
pub mod errno;
pub mod fs;
pub mod futex;
pub mod init;
pub mod module;
pub mod procfs;
pub mod rng;
pub mod sched;
pub mod stats;
pub mod tty;
