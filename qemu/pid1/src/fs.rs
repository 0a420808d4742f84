// SPDX-License-Identifier: GPL-2.0
//! Mounts, ownership, single-`write(2)` files and reading small text files.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A path as a C string (an error if it contains a NUL).
pub fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Exactly one `write(2)` of `data` (which may be empty or contain NULs) to an open file.
/// A short write is reported as an error.
pub fn write_once(file: &File, data: &[u8]) -> io::Result<()> {
    // SAFETY: `file` is an open descriptor and `data` is a valid buffer of `data.len()`
    // bytes for the duration of the call.
    let n = unsafe { libc::write(file.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != data.len() {
        return Err(io::Error::other(format!(
            "short write: {n} of {} bytes",
            data.len()
        )));
    }
    Ok(())
}

/// Reads a whole (small) file as text, replacing invalid UTF-8.
pub fn read_file(path: impl AsRef<Path>) -> io::Result<String> {
    let bytes = std::fs::read(path.as_ref())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// mount(2) with Rust strings.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let source = CString::new(source)?;
    let target = cstring(target)?;
    let fstype = CString::new(fstype)?;
    let data = CString::new(data)?;
    // SAFETY: all pointers are NUL-terminated strings that live across the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// umount2(2).
pub fn umount(target: &Path) -> io::Result<()> {
    let target = cstring(target)?;
    // SAFETY: `target` is a NUL-terminated path.
    if unsafe { libc::umount2(target.as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// chown(2) with numeric ids.
pub fn chown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let p = cstring(path)?;
    // SAFETY: `p` is a NUL-terminated path.
    if unsafe { libc::chown(p.as_ptr(), uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect one write per call with the bytes as given, and errno-carrying errors.
    #[test]
    fn single_writes_and_errors() {
        let path = std::env::temp_dir().join(format!("lags-pid1-{}", std::process::id()));
        let f = File::create(&path).unwrap();
        write_once(&f, b"1\0x").unwrap();
        write_once(&f, b"").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"1\0x");
        let ro = File::open(&path).unwrap();
        let e = write_once(&ro, b"y").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            chown(&path, 0, 0).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        assert_eq!(
            umount(&path).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        let nul = Path::new("a\0b");
        assert_eq!(
            cstring(nul).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(mount("x", nul, "tmpfs", 0, "").is_err());
    }
}
