// SPDX-License-Identifier: GPL-2.0
//! Credentials: the unprivileged user the privilege tests become.

use std::io;

/// uid and gid of `nobody`, which privilege tests drop to.
pub const NOBODY: u32 = 65534;

/// Drops all privileges: no supplementary groups, uid and gid `nobody` (so no capabilities).
/// Keeps the process dumpable, so its /proc files (uid_map) stay its own.
pub fn drop_to_nobody() -> io::Result<()> {
    // SAFETY: setgroups with an empty list and a null pointer clears the supplementary
    // groups; setgid/setuid take plain ids.
    let ok = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setgid(NOBODY) == 0
            && libc::setuid(NOBODY) == 0
    };
    if !ok {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: PR_SET_DUMPABLE takes an integer argument.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The effective capability mask from `/proc/<pid>/status` text.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let v = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(v.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the CapEff hex mask of /proc/self/status.
    #[test]
    fn cap_eff() {
        let st = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(st), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x"), None);
    }
}
