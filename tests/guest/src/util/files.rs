// SPDX-License-Identifier: GPL-2.0
//! Errors and files: file I/O that keeps the errno, and mounts.

use super::*;

// Errno names, single-write files and reading text files come from the PID-1 crate both
// guest programs share.
pub use lags_pid1::errno::{describe, describe_err, errno_name, errno_of};
pub use lags_pid1::fs::{read_file, write_once};

/// Opens `path` the way `echo x > file` does (write-only, truncating, no create). Kernel
/// interface files ignore the truncation; regular files behave like the shell.
pub fn open_write(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new().write(true).truncate(true).open(path)
}

/// Opens `path` and writes `data` with a single `write(2)`, returning the errno on failure.
pub fn write_file(path: impl AsRef<Path>, data: impl AsRef<[u8]>) -> io::Result<()> {
    let f = open_write(path.as_ref())?;
    write_once(&f, data.as_ref())
}

/// Reads a file and trims surrounding whitespace.
pub fn read_trimmed(path: impl AsRef<Path>) -> io::Result<String> {
    Ok(read_file(path)?.trim().to_owned())
}

/// Whether something exists at `path` (without following a final symlink).
pub fn exists(path: impl AsRef<Path>) -> bool {
    fs::symlink_metadata(path.as_ref()).is_ok()
}

/// Shows bytes for a diagnostic: printable ASCII as is, the rest escaped, long runs cut.
pub fn show_bytes(data: &[u8]) -> String {
    if data.len() > 48 && data.iter().all(|&b| b == data[0]) {
        return format!("{:?} x {}", data[0] as char, data.len());
    }
    let mut s = String::from("\"");
    for b in data.iter().take(64) {
        s.extend(std::ascii::escape_default(*b).map(char::from));
    }
    if data.len() > 64 {
        s.push_str("...");
    }
    s.push('"');
    s
}

/// Writes `value` back to a tunable (sysctl, debugfs knob) when dropped.
pub struct Restore {
    path: PathBuf,
    value: String,
}

impl Restore {
    /// Remembers the current (trimmed) value of `path`.
    pub fn save(path: impl AsRef<Path>) -> io::Result<Restore> {
        let path = path.as_ref().to_owned();
        let value = read_trimmed(&path)?;
        Ok(Restore { path, value })
    }

    /// Remembers the current value of `path`, then writes `value` to it.
    pub fn set(path: impl AsRef<Path>, value: &str) -> io::Result<Restore> {
        let saved = Restore::save(path)?;
        write_file(&saved.path, value)?;
        Ok(saved)
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = write_file(&self.path, &self.value) {
            warn(format!(
                "cleanup: restoring {} to {} failed: {}",
                self.path.display(),
                self.value,
                describe_err(&e)
            ));
        }
    }
}

/// A scheduler feature (debugfs `sched/features`) set for a test and put back on drop.
pub struct SchedFeature {
    name: &'static str,
    was_on: bool,
}

impl SchedFeature {
    pub const FILE: &'static str = "/sys/kernel/debug/sched/features";

    /// Turns feature `name` on or off, remembering its current state.
    pub fn set(name: &'static str, on: bool) -> io::Result<SchedFeature> {
        let list = read_trimmed(Self::FILE)?;
        let no = format!("NO_{name}");
        let was_on = match list.split_whitespace().find(|f| *f == name || *f == no) {
            Some(f) => f == name,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{}: no feature {name}", Self::FILE),
                ))
            }
        };
        write_file(Self::FILE, if on { name } else { &no })?;
        Ok(SchedFeature { name, was_on })
    }
}

impl Drop for SchedFeature {
    fn drop(&mut self) {
        let value = if self.was_on {
            self.name.to_owned()
        } else {
            format!("NO_{}", self.name)
        };
        if let Err(e) = write_file(Self::FILE, &value) {
            warn(format!(
                "cleanup: restoring {value} in {} failed: {}",
                Self::FILE,
                describe_err(&e)
            ));
        }
    }
}

// Mounts

pub use lags_pid1::fs::{chown, mount, umount};
