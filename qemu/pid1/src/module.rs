// SPDX-License-Identifier: GPL-2.0
//! Kernel modules: finit_module(2) and delete_module(2).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Loads a module from a file with finit_module(2).
pub fn finit_module(path: &Path) -> io::Result<()> {
    finit_module_with(path, "")
}

/// Loads a module from a file with finit_module(2) and module parameters (`a=1 b=2`).
pub fn finit_module_with(path: &Path, params: &str) -> io::Result<()> {
    let f = File::open(path)?;
    let params = std::ffi::CString::new(params).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: the descriptor is open for reading and `params` is a NUL-terminated string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unloads a module with delete_module(2) (O_NONBLOCK: fail instead of waiting).
pub fn delete_module(name: &str) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a NUL-terminated string.
    let rc = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect errors that name the cause: a missing file, a name with a NUL, a module that is
    // not loaded (or no permission to unload it, or a host kernel without modules).
    #[test]
    fn errors() {
        let e = finit_module(Path::new("/nonexistent/lags-pid1.ko")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let e = finit_module_with(Path::new("/dev/null"), "a\0b").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            delete_module("a\0b").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let e = delete_module("lags_pid1_no_such_module").unwrap_err();
        assert!(
            matches!(
                e.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::EPERM) | Some(libc::ENOSYS)
            ),
            "{e}"
        );
    }
}
