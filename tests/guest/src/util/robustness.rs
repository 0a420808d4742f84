// SPDX-License-Identifier: GPL-2.0
//! Helpers of the stress and hostile-input suites.

use super::*;

/// One `write(2)` of `data` to a freshly opened `path`; returns the byte count the kernel
/// accepted (which may be short) or the errno.
pub fn write_count(path: impl AsRef<Path>, data: &[u8]) -> io::Result<usize> {
    let f = open_write(path.as_ref())?;
    // SAFETY: `f` is an open descriptor and `data` is valid for `data.len()` bytes.
    let n = unsafe { libc::write(f.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// A small deterministic PRNG (xorshift64*) for reproducible fuzzing: same seed, same
/// inputs.
pub use lags_pid1::rng::XorShift64Star as Rng;
