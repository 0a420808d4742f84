// SPDX-License-Identifier: GPL-2.0
//! Serial ports: the raw data port (`/dev/ttyS1`, bench records and `vm --out` archives)
//! and waiting for written output to leave the port.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens a terminal write-only without making it the caller's controlling terminal.
pub fn open_write_noctty(path: impl AsRef<Path>) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
}

/// Puts a terminal in raw mode (`cfmakeraw`: bytes pass unchanged, no newline translation,
/// no echo). On failure names the call that failed (`tcgetattr` or `tcsetattr`); after a
/// failed `tcgetattr` nothing is changed.
pub fn make_raw(f: &File) -> Result<(), &'static str> {
    // SAFETY: termios is plain data; the descriptor is valid for the calls.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(f.as_raw_fd(), &mut t) != 0 {
            return Err("tcgetattr");
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(f.as_raw_fd(), libc::TCSANOW, &t) != 0 {
            return Err("tcsetattr");
        }
    }
    Ok(())
}

/// Waits until everything written to a terminal has been transmitted.
pub fn drain(f: &File) {
    // SAFETY: tcdrain only waits on a valid descriptor.
    unsafe { libc::tcdrain(f.as_raw_fd()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect a file that is not a terminal to be refused by tcgetattr and left as it was.
    #[test]
    fn not_a_terminal() {
        let path = std::env::temp_dir().join(format!("lags-pid1-tty-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let f = open_write_noctty(&path).unwrap();
        assert_eq!(make_raw(&f), Err("tcgetattr"));
        drain(&f);
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
        std::fs::remove_file(&path).unwrap();
        assert!(open_write_noctty(&path).is_err());
    }
}
