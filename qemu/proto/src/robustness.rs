// SPDX-License-Identifier: GPL-2.0
//! Robustness metrics: the stress suites print one KTAP diagnostic per test,
//! `# robustness: test=<name> k=v …`, which `cargo xtask robustness` turns into a table.

use std::collections::BTreeMap;

/// The prefix of a metric line (after the KTAP `# `).
pub const MARK: &str = "robustness: ";

/// Formats a metric line: `robustness: test=<test> k=v …`, in the order given.
pub fn format_mark(test: &str, fields: &[(&str, String)]) -> String {
    let mut line = format!("{MARK}test={test}");
    for (k, v) in fields {
        line.push_str(&format!(" {k}={v}"));
    }
    line
}

/// Parses `robustness: test=x k=v …` into the test name and its fields (without `test`).
/// A token without `=` or a missing `test` is no metric line.
pub fn parse_mark(line: &str) -> Option<(String, BTreeMap<String, String>)> {
    let rest = line.trim().strip_prefix(MARK)?;
    let mut test = None;
    let mut fields = BTreeMap::new();
    for tok in rest.split_whitespace() {
        let (k, v) = tok.split_once('=')?;
        if k == "test" {
            test = Some(v.to_owned());
        } else {
            fields.insert(k.to_owned(), v.to_owned());
        }
    }
    Some((test?, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect a formatted line to parse back to the same test and fields.
    #[test]
    fn round_trip() {
        let line = format_mark(
            "cgroup_churn",
            &[("ops", "12".into()), ("faults", "0".into())],
        );
        assert_eq!(line, "robustness: test=cgroup_churn ops=12 faults=0");
        let (test, f) = parse_mark(&line).unwrap();
        assert_eq!(test, "cgroup_churn");
        assert_eq!(f["ops"], "12");
        assert_eq!(f["faults"], "0");
        assert_eq!(f.len(), 2);
        // No test name, or a bare token: not a metric line.
        assert!(parse_mark("robustness: ops=1").is_none());
        assert!(parse_mark("robustness: test=x junk").is_none());
    }
}
