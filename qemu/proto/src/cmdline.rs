// SPDX-License-Identifier: GPL-2.0
//! Kernel command-line helpers shared by every option set.

/// Splits a kernel command line into parameters, honouring double quotes as the kernel
/// does (`a="b c"` is one parameter `a=b c`). Stops at `--` (the rest is for init).
pub fn params(cmdline: &str) -> Vec<String> {
    let mut params = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    params.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        params.push(cur);
    }
    if let Some(end) = params.iter().position(|p| p == "--") {
        params.truncate(end);
    }
    params
}

/// Kernel-style boolean (`1/y/yes/on/true`, `0/n/no/off/false`).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "y" | "yes" | "on" | "true" => Some(true),
        "0" | "n" | "no" | "off" | "false" => Some(false),
        _ => None,
    }
}

/// The kernel's kstrtobool(): only the first one or two characters count (`y/Y/t/T/1`,
/// `n/N/f/F/0`, `on`, `off`); anything else is an error.
pub fn kstrtobool(v: &str) -> Option<bool> {
    let b = v.as_bytes();
    match b.first()? {
        b'y' | b'Y' | b't' | b'T' | b'1' => Some(true),
        b'n' | b'N' | b'f' | b'F' | b'0' => Some(false),
        b'o' | b'O' => match b.get(1)? {
            b'n' | b'N' => Some(true),
            b'f' | b'F' => Some(false),
            _ => None,
        },
        _ => None,
    }
}
