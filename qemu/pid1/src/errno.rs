// SPDX-License-Identifier: GPL-2.0
//! Errors as the tests print them: `EINVAL` rather than "Invalid argument (os error 22)".

use std::io;

/// The symbolic name of an errno value (the ones our tests can meet).
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EKEYREJECTED => "EKEYREJECTED",
        libc::ENOKEY => "ENOKEY",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}

/// A short description of an I/O result: `ok`, `EINVAL`, or the error text.
pub fn describe<T>(r: &io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => describe_err(e),
    }
}

/// `EINVAL` for an OS error, the message otherwise.
pub fn describe_err(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_name(n),
        None => e.to_string(),
    }
}

/// The errno of a result, `None` for success or a non-OS error.
pub fn errno_of<T>(r: &io::Result<T>) -> Option<i32> {
    r.as_ref().err().and_then(io::Error::raw_os_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect names for OS errors, the text for other errors, `ok` for success.
    #[test]
    fn names() {
        assert_eq!(errno_name(libc::EINVAL), "EINVAL");
        assert_eq!(errno_name(9999), "errno 9999");
        let e: io::Result<()> = Err(io::Error::from_raw_os_error(libc::EBUSY));
        assert_eq!(describe(&e), "EBUSY");
        assert_eq!(errno_of(&e), Some(libc::EBUSY));
        assert_eq!(describe(&Ok(1)), "ok");
        assert_eq!(describe_err(&io::Error::other("x")), "x");
        assert_eq!(errno_of(&Ok(())), None);
    }
}
