// SPDX-License-Identifier: GPL-2.0
//! Kernel log and modules.

use super::*;

pub use lags_pid1::cred::{drop_to_nobody, parse_cap_eff, NOBODY};
pub use lags_pid1::module::{delete_module, finit_module, finit_module_with};
pub use lags_pid1::procfs::{kernel_log, proc_state, user_processes};

/// In a forked worker: reports the identity it runs with (`uid` real/effective, `capeff`).
pub fn send_identity(io: &mut WorkerIo) {
    // SAFETY: getuid/geteuid have no preconditions.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    io.send_kv("uid", format!("{uid}/{euid}"));
    let capeff = read_file("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_eff(&s));
    io.send_kv(
        "capeff",
        capeff.map_or("unknown".to_owned(), |c| format!("{c:x}")),
    );
}

/// Suite state for a module a suite loads: whether it is loaded, so that dropping the guard
/// (at the end of the suite, whatever failed) unloads it. Update `loaded` in place; replacing
/// the guard would run the old one's Drop.
#[derive(Debug)]
pub struct ModuleGuard {
    pub name: &'static str,
    pub loaded: bool,
}

impl Drop for ModuleGuard {
    fn drop(&mut self) {
        if self.loaded {
            if let Err(e) = delete_module(self.name) {
                warn(format!(
                    "cleanup: unloading {}: {}",
                    self.name,
                    describe_err(&e)
                ));
            }
        }
    }
}
