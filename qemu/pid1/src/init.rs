// SPDX-License-Identifier: GPL-2.0
//! Starting and ending PID 1: the kernel filesystems, standard descriptors, power-off.

use std::io;
use std::path::Path;

use crate::clock::{now_ns, sleep_ms};
use crate::errno::describe_err;
use crate::fs::mount;

/// A kernel filesystem PID 1 mounts, and the config option that provides it.
pub struct MountSpec {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: libc::c_ulong,
    pub data: &'static str,
    pub config: &'static str,
}

/// The filesystems the test runner mounts, in this order.
pub const MOUNTS: &[MountSpec] = &[
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: "",
        config: "CONFIG_PROC_FS",
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: "",
        config: "CONFIG_SYSFS",
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: libc::MS_NOSUID,
        data: "mode=0755",
        config: "CONFIG_DEVTMPFS",
    },
    MountSpec {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=1777",
        config: "CONFIG_TMPFS",
    },
    MountSpec {
        source: "debugfs",
        target: "/sys/kernel/debug",
        fstype: "debugfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: "",
        config: "CONFIG_DEBUG_FS",
    },
    MountSpec {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: "",
        config: "CONFIG_CGROUPS",
    },
];

/// Mounts one filesystem, creating its mount point first. EBUSY means "already mounted"
/// (devtmpfs may be auto-mounted) and is success.
pub fn mount_one(m: &MountSpec) -> io::Result<()> {
    let target = Path::new(m.target);
    // Errors ignored: sysfs directories cannot be created, and mount reports the rest.
    let _ = std::fs::create_dir_all(target);
    match mount(m.source, target, m.fstype, m.flags, m.data) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        r => r,
    }
}

/// Mounts `table` in order with [`mount_one`]; returns one message (starting with
/// `program: `) per mount that failed.
pub fn mount_all(program: &str, table: &[MountSpec]) -> Vec<String> {
    let mut msgs = Vec::new();
    for m in table {
        if let Err(e) = mount_one(m) {
            msgs.push(format!(
                "{program}: mounting {} on {} failed: {} ({} might be missing from the kernel config)",
                m.fstype,
                m.target,
                describe_err(&e),
                m.config
            ));
        }
    }
    msgs
}

/// Makes sure descriptors 0-2 are open (the kernel leaves them closed if the initramfs has
/// no /dev/console), so that later files and pipes never land on them.
pub fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // SAFETY: opening /dev/null with a NUL-terminated literal path; the lowest free
            // descriptor (this one) is used.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

/// Syncs, kills and reaps every other process, and reboots (QEMU exits on reboot because of
/// `-no-reboot`); falls back to power-off, then to sleeping. Never returns.
pub fn power_off() -> ! {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    // SAFETY: as PID 1, kill(-1) signals every other process; none of them matters now.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    let deadline = now_ns() + 2_000_000_000;
    loop {
        // SAFETY: reaping any child, status pointer may be null.
        let rc = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if rc < 0 || now_ns() > deadline {
            break;
        }
        if rc == 0 {
            sleep_ms(10);
        }
    }
    // SAFETY: reboot(2) has no memory-safety preconditions; on success it does not return.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    // SAFETY: as above.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    loop {
        // SAFETY: pause only sleeps until a signal arrives.
        unsafe { libc::pause() };
    }
}
