// SPDX-License-Identifier: GPL-2.0
//! Console markers: lines the guest programs print and the host looks for.

/// First line of every guest program once it runs as PID 1 (`lags-bench` appends
/// ` (lags-bench)`). Its absence on the console means the boot failed.
pub const RUNNER_START: &str = "lags-init: start";

/// Prefix of the runner's last line (`lags-init: done passed=N failed=N skipped=N`, or
/// `status=… errors=…` from the benchmark).
pub const RUNNER_DONE: &str = "lags-init: done";

/// Prefix of every line of the runner itself (as opposed to KTAP or kernel lines).
pub const RUNNER_PREFIX: &str = "lags-init:";

/// Prefix of the benchmark's progress lines.
pub const BENCH_PREFIX: &str = "lags-bench:";

/// VM mode: printed before the command runs (`lags-vm: ready token=T`).
pub const VM_READY: &str = "lags-vm: ready token=";

/// VM mode: printed after the command (`lags-vm: exit=N token=T`).
pub const VM_EXIT: &str = "lags-vm: exit=";

/// The first line of the runner's start, as `lags-bench` prints it.
pub fn bench_start() -> String {
    format!("{RUNNER_START} (lags-bench)")
}

/// `lags-vm: ready token=T`.
pub fn vm_ready(token: &str) -> String {
    format!("{VM_READY}{token}")
}

/// `lags-vm: exit=N token=T`.
pub fn vm_exit(code: i32, token: &str) -> String {
    format!("{VM_EXIT}{code} token={token}")
}

/// Parses a line that ends with `lags-vm: exit=N token=T` (a console prefix may come
/// before it) into N, if T is `token`.
pub fn parse_vm_exit(line: &str, token: &str) -> Option<i32> {
    let rest = &line[line.find(VM_EXIT)? + VM_EXIT.len()..];
    rest.strip_suffix(&format!(" token={token}"))?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the VM exit marker to round-trip, and a wrong token or a garbled code to be
    // no marker at all.
    #[test]
    fn vm_exit_round_trip() {
        let line = format!("[    3.1] {}", vm_exit(7, "abc"));
        assert_eq!(parse_vm_exit(&line, "abc"), Some(7));
        assert_eq!(parse_vm_exit(&vm_exit(-1, "abc"), "abc"), Some(-1));
        assert_eq!(parse_vm_exit(&line, "abd"), None);
        assert_eq!(parse_vm_exit("lags-vm: exit=x token=abc", "abc"), None);
        assert!(vm_ready("t1").starts_with(VM_READY));
        assert!(bench_start().starts_with(RUNNER_START));
    }
}
