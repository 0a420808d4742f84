//! Console log lines: the printk timestamp that tells a kernel line from the rest.

/// Strips the printk timestamp `[    1.234567] ` (and an optional caller id
/// `[    T1] `); `None` if the line has no timestamp.
///
/// The one definition of a kernel console timestamp: the console scan, the KTAP parser, the
/// progress echo of `qemu-test` and `bench` use it (`strip_timestamp(l).unwrap_or(l)` where a
/// line without one is kept as it is).
pub(crate) fn strip_timestamp(line: &str) -> Option<&str> {
    fn bracket(s: &str, ok: impl Fn(&str) -> bool) -> Option<&str> {
        let rest = s.strip_prefix('[')?;
        let end = rest.find(']')?;
        ok(rest[..end].trim_start()).then(|| &rest[end + 1..])
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let rest = bracket(line, |t| {
        t.split_once('.')
            .is_some_and(|(a, b)| digits(a) && digits(b))
    })?;
    let rest = bracket(rest, |t| {
        t.len() > 1 && t.starts_with(['T', 'C']) && digits(&t[1..])
    })
    .unwrap_or(rest);
    Some(rest.strip_prefix(' ').unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the one timestamp stripper to take what every caller relied on: the plain,
    // wide and caller-id printk timestamps (console scan, KTAP parser, vm, progress echo),
    // and nothing from a line without one.
    #[test]
    fn strip_timestamp_cases() {
        let cases = [
            ("[    1.234567] lags-init: start", Some("lags-init: start")),
            ("[12345.000001] KTAP version 1", Some("KTAP version 1")),
            (
                "[    1.000001][    T1] KTAP version 1",
                Some("KTAP version 1"),
            ),
            ("[    1.000000][    C0] Kernel panic", Some("Kernel panic")),
            ("[ 1.0] boot noise", Some("boot noise")),
            ("[    1.1] lags-init: start", Some("lags-init: start")),
            ("[    1.234567]  two spaces", Some(" two spaces")),
            ("[    1.234567] ", Some("")),
            (
                "[    1.234567][    X1] not a caller id",
                Some("[    X1] not a caller id"),
            ),
            (
                "[    1.234567] sysrq: Trigger a crash",
                Some("sysrq: Trigger a crash"),
            ),
            ("[x] not a timestamp", None),
            ("[] empty", None),
            ("[1.] half", None),
            ("plain output", None),
            ("KTAP version 1", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(strip_timestamp(line), want, "{line:?}");
        }
    }
}
