// SPDX-License-Identifier: GPL-2.0
//! Paths inside the guest image (the initramfs xtask writes) and the guest's devices.

/// The test runner, PID 1 of the `qemu-test` and `vm` images.
pub const INIT: &str = "/init";
/// The benchmark binary; its image boots with `rdinit=/bin/lags-bench`.
pub const BENCH: &str = "/bin/lags-bench";
/// Static busybox; its applets are links next to it.
pub const BUSYBOX: &str = "/bin/busybox";
/// Modules carried into the image: the kernel's `rust_minimal.ko` and the project's own.
pub const MODULES: &str = "/lib/modules/extra";
/// `cargo xtask vm`: the command as a shell script.
pub const VM_CMD: &str = "/vm/cmd";
/// `cargo xtask vm`: `key=value` lines (token, share, cwd, ...).
pub const VM_CONFIG: &str = "/vm/config";
/// `cargo xtask vm`: where the shared host directory is copied.
pub const VM_SHARE: &str = "/vm/share";
/// `cargo xtask vm`: the directory that comes back to the host as a tar archive.
pub const VM_OUT: &str = "/out";
/// The serial console (first serial port; QEMU's stdio).
pub const CONSOLE_TTY: &str = "/dev/ttyS0";
/// The data port (second serial port), a file on the host: benchmark records, `/out`.
pub const DATA_TTY: &str = "/dev/ttyS1";
/// Where the guest programs print: one `write()` per line, as `<6>line`.
pub const KMSG: &str = "/dev/kmsg";
