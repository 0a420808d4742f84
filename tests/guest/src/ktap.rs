// SPDX-License-Identifier: GPL-2.0
//! A small KTAP v1 emitter (see the kernel's `Documentation/dev-tools/ktap.rst`).
//!
//! The output has two levels: the top level has one result per suite, and each suite is a
//! nested block indented by two spaces with one result per test:
//!
//! ```text
//! KTAP version 1
//! 1..2
//!   KTAP version 1
//!   # Subtest: boot
//!   1..2
//!   ok 1 kernel_release_matches
//!   # expected "6.12.117", got "6.11.0"
//!   not ok 2 proc_version_matches
//! not ok 1 boot
//! ```
//!
//! Lines go to a [`Sink`]; in the guest that is `/dev/kmsg` (one `write()` per line), on a
//! development host it is stdout, in unit tests a vector.

#[cfg(test)]
use std::cell::RefCell;
#[cfg(test)]
use std::rc::Rc;

/// Longest line we emit, in bytes, without the kmsg `<6>` prefix and the newline. The kernel
/// truncates `/dev/kmsg` records somewhat below 1 KiB; stay well under it.
pub const MAX_LINE: usize = 896;

/// Where KTAP lines go. `line` never contains a newline.
pub trait Sink {
    fn line(&mut self, line: &str);
}

/// A sink that keeps the lines in memory (shared, so a test can inspect it afterwards).
#[cfg(test)]
#[derive(Clone, Default)]
pub struct Capture(pub Rc<RefCell<Vec<String>>>);

#[cfg(test)]
impl Sink for Capture {
    fn line(&mut self, line: &str) {
        self.0.borrow_mut().push(line.to_owned());
    }
}

/// The result of one test or one suite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip(String),
}

/// The KTAP writer. It also counts test-level results for the final summary line.
pub struct Ktap {
    sink: Box<dyn Sink>,
    indent: &'static str,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Makes a test/suite name or a directive reason safe for one KTAP result line: no newlines,
/// and no `#` (which would start a directive).
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            '#' => '_',
            c => c,
        })
        .collect()
}

impl Ktap {
    pub fn new(sink: Box<dyn Sink>) -> Self {
        Ktap {
            sink,
            indent: "",
            passed: 0,
            failed: 0,
            skipped: 0,
        }
    }

    fn emit(&mut self, line: &str) {
        let line = truncate(line, MAX_LINE);
        self.sink.line(line);
    }

    /// A line outside the KTAP structure (boot/done markers, runner messages).
    pub fn raw(&mut self, line: &str) {
        for l in line.lines() {
            self.emit(l);
        }
    }

    /// The top-level header: version line and plan.
    pub fn header(&mut self, suites: usize) {
        self.emit("KTAP version 1");
        self.emit(&format!("1..{suites}"));
    }

    /// Opens a nested suite block with a plan of `tests` tests.
    pub fn begin_suite(&mut self, name: &str, tests: usize) {
        self.indent = "  ";
        self.emit("  KTAP version 1");
        self.emit(&format!("  # Subtest: {}", clean(name)));
        self.emit(&format!("  1..{tests}"));
    }

    /// A diagnostic at the current level; multi-line messages give one `# ` line each.
    pub fn diag(&mut self, msg: &str) {
        let indent = self.indent;
        if msg.is_empty() {
            self.emit(&format!("{indent}#"));
        }
        for l in msg.lines() {
            self.emit(&format!("{indent}# {l}"));
        }
    }

    fn result_line(indent: &str, idx: usize, name: &str, outcome: &Outcome) -> String {
        match outcome {
            Outcome::Pass => format!("{indent}ok {idx} {}", clean(name)),
            Outcome::Fail => format!("{indent}not ok {idx} {}", clean(name)),
            Outcome::Skip(reason) => {
                format!("{indent}ok {idx} {} # SKIP {}", clean(name), clean(reason))
            }
        }
    }

    /// A test result inside the current suite; counted for the summary.
    pub fn test_result(&mut self, idx: usize, name: &str, outcome: &Outcome) {
        match outcome {
            Outcome::Pass => self.passed += 1,
            Outcome::Fail => self.failed += 1,
            Outcome::Skip(_) => self.skipped += 1,
        }
        let line = Self::result_line(self.indent, idx, name, outcome);
        self.emit(&line);
    }

    /// Closes the suite block with the suite's result line at the top level.
    pub fn end_suite(&mut self, idx: usize, name: &str, outcome: &Outcome) {
        self.indent = "";
        let line = Self::result_line("", idx, name, outcome);
        self.emit(&line);
    }

    /// A top-level result for something that is not a suite we can run (an unknown suite
    /// name); counted as one failed test.
    pub fn broken_suite(&mut self, idx: usize, name: &str, why: &str) {
        self.indent = "";
        self.failed += 1;
        self.diag(why);
        let line = Self::result_line("", idx, name, &Outcome::Fail);
        self.emit(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture() -> (Ktap, Capture) {
        let cap = Capture::default();
        (Ktap::new(Box::new(cap.clone())), cap)
    }

    // Expect the exact nested layout of ktap.rst: version, plan, indented subtest block,
    // suite result at the top level, and correct counters.
    #[test]
    fn nested_suite_layout() {
        let (mut k, cap) = capture();
        k.header(2);
        k.begin_suite("boot", 3);
        k.test_result(1, "a", &Outcome::Pass);
        k.diag("expected 1, got 2\nsecond line");
        k.test_result(2, "b", &Outcome::Fail);
        k.test_result(3, "c", &Outcome::Skip("no module".into()));
        k.end_suite(1, "boot", &Outcome::Fail);
        k.broken_suite(2, "nope", "unknown suite");
        let lines = cap.0.borrow().clone();
        assert_eq!(
            lines,
            vec![
                "KTAP version 1",
                "1..2",
                "  KTAP version 1",
                "  # Subtest: boot",
                "  1..3",
                "  ok 1 a",
                "  # expected 1, got 2",
                "  # second line",
                "  not ok 2 b",
                "  ok 3 c # SKIP no module",
                "not ok 1 boot",
                "# unknown suite",
                "not ok 2 nope",
            ]
        );
        assert_eq!((k.passed, k.failed, k.skipped), (1, 2, 1));
    }

    // Expect a skipped suite to carry the directive on the top-level line.
    #[test]
    fn skipped_suite() {
        let (mut k, cap) = capture();
        k.end_suite(3, "lags", &Outcome::Skip("kernel without LAGS".into()));
        assert_eq!(cap.0.borrow()[0], "ok 3 lags # SKIP kernel without LAGS");
    }

    // Expect names and reasons never to break the line structure.
    #[test]
    fn names_are_sanitised() {
        let (mut k, cap) = capture();
        k.test_result(1, "x#y\nz", &Outcome::Skip("a\nb # c".into()));
        assert_eq!(cap.0.borrow()[0], "ok 1 x_y z # SKIP a b _ c");
    }

    // Expect long lines to be cut below the kmsg record limit, on a char boundary.
    #[test]
    fn long_lines_are_truncated() {
        let (mut k, cap) = capture();
        let long = "é".repeat(1000);
        k.diag(&long);
        let line = cap.0.borrow()[0].clone();
        assert!(line.len() <= MAX_LINE);
        assert!(line.starts_with("# é"));
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("aé", 2), "a");
    }
}
