//! KTAP v1 parser for serial console logs.
//!
//! The guest's test runner writes KTAP (see the kernel's
//! `Documentation/dev-tools/ktap.rst`) to `/dev/kmsg`, so on the serial
//! console every KTAP line carries the printk timestamp (`[    2.104351] `)
//! and possibly a `module_name: ` prefix, and is interleaved with unrelated
//! kernel messages.  [`parse`] extracts the first KTAP document from such a
//! log and turns it into a [`Report`] tree, tolerating the usual damage:
//! missing plans, truncated logs, kernel panics and oopses mid-suite,
//! out-of-sequence numbers and `\r\n` line endings.
//!
//! Nesting follows indentation (any amount deeper than the parent opens a
//! subtest block); a block may be introduced by a version line, a
//! `# Subtest:` line, a plan, or (older kunit output) nothing at all.

use serde::Serialize;
use std::fmt::Write as _;
use std::mem::take;

use super::lines::strip_timestamp;

/// At most this many foreign console lines are kept as context per test.
const MAX_CONTEXT_LINES: usize = 200;
/// At most this many failing tests are named per suite in [`Report::summary`].
const MAX_SUMMARY_FAILURES: usize = 10;
/// At most this many (trailing) diagnostic lines are shown per failing test in the summary.
const MAX_SUMMARY_DIAGNOSTICS: usize = 8;
/// At most this many missing tests are synthesized per block (guards against absurd plans).
const MAX_SYNTHESIZED: u32 = 1000;

/// Outcome of one test case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `ok` without a directive (or with an unrecognised one, or `ok ... # TODO`).
    Pass,
    /// `not ok` without a directive, or a parent whose subtests failed.
    Fail,
    /// `# SKIP` directive (with either `ok` or `not ok`).
    Skip,
    /// `# XFAIL` directive, or `not ok ... # TODO`: an expected failure.
    Xfail,
    /// `# TIMEOUT` directive.
    Timeout,
    /// `# ERROR` directive.
    Error,
    /// Started but never finished: the kernel crashed or the log ended.
    Crashed,
    /// Planned but never started because an earlier test crashed or the block ended early.
    NotRun,
}

impl Status {
    /// True for statuses that make a parent test and the whole report fail.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Status::Fail | Status::Timeout | Status::Error | Status::Crashed | Status::NotRun
        )
    }

    /// The lowercase name used in JSON (`"pass"`, `"notrun"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
            Status::Xfail => "xfail",
            Status::Timeout => "timeout",
            Status::Error => "error",
            Status::Crashed => "crashed",
            Status::NotRun => "notrun",
        }
    }
}

/// One test (a leaf test case or a parent of nested subtests).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestCase {
    /// Test number from the result line (or the planned number for synthesized tests).
    pub number: u32,
    /// Description from the result line (or `# Subtest:`); empty if never printed.
    pub name: String,
    /// Final status, after bubbling up subtest failures.
    pub status: Status,
    /// Text after the directive (`# SKIP <reason>`), the raw `# ...` data for
    /// unknown directives, or the crash cause for `Crashed` tests.
    pub directive_reason: Option<String>,
    /// `# ...` diagnostic lines belonging to this test, without the `# `.
    pub diagnostics: Vec<String>,
    /// Nested tests, in log order.
    pub subtests: Vec<TestCase>,
    /// Plan (`1..N`) of the nested block, if it had one.
    pub plan: Option<u32>,
    /// Foreign console lines (kernel messages) printed while this test ran, for context.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernel_log: Vec<String>,
}

/// The parsed KTAP document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Version line as printed (`"KTAP version 1"`, `"TAP version 13"`); empty if none found.
    pub version: String,
    /// Top-level plan, if printed.
    pub plan: Option<u32>,
    /// Top-level tests (usually suites).
    pub tests: Vec<TestCase>,
    /// True if every planned test produced a result and nothing crashed.
    pub complete: bool,
    /// Everything odd found while parsing, human readable (with line numbers where known).
    pub problems: Vec<String>,
}

/// Leaf test counts; a failed parent without any failed leaf counts as one failure itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// `Pass` and `Xfail` leaves.
    pub passed: u32,
    /// `Fail`, `Timeout` and `Error` leaves.
    pub failed: u32,
    /// `Skip` leaves.
    pub skipped: u32,
    /// `Crashed` leaves.
    pub crashed: u32,
    /// `NotRun` leaves.
    pub not_run: u32,
    /// Sum of all of the above.
    pub total: u32,
}

impl Counts {
    fn add(&mut self, status: Status) {
        match status {
            Status::Pass | Status::Xfail => self.passed += 1,
            Status::Fail | Status::Timeout | Status::Error => self.failed += 1,
            Status::Skip => self.skipped += 1,
            Status::Crashed => self.crashed += 1,
            Status::NotRun => self.not_run += 1,
        }
        self.total += 1;
    }

    fn add_tree(&mut self, t: &TestCase) {
        if t.subtests.is_empty() {
            return self.add(t.status);
        }
        let before = self.failures();
        for s in &t.subtests {
            self.add_tree(s);
        }
        if t.status.is_failure() && self.failures() == before {
            self.add(t.status);
        }
    }

    fn failures(&self) -> u32 {
        self.failed + self.crashed + self.not_run
    }

    fn describe(&self) -> String {
        let plural = if self.total == 1 { "" } else { "s" };
        let mut s = format!("{} test{plural}", self.total);
        let parts = [
            (self.passed, "passed"),
            (self.failed, "failed"),
            (self.skipped, "skipped"),
            (self.crashed, "crashed"),
            (self.not_run, "not run"),
        ];
        for (n, what) in parts.iter().filter(|(n, _)| *n > 0) {
            let _ = write!(s, ", {n} {what}");
        }
        s
    }
}

impl TestCase {
    fn new(number: u32, name: String, status: Status, reason: Option<String>) -> Self {
        TestCase {
            number,
            name,
            status,
            directive_reason: reason,
            diagnostics: Vec::new(),
            subtests: Vec::new(),
            plan: None,
            kernel_log: Vec::new(),
        }
    }

    fn display_name(&self) -> String {
        if self.name.is_empty() {
            format!("#{}", self.number)
        } else {
            self.name.clone()
        }
    }

    /// Appends `path`-qualified names of the failures in this subtree to `out`.
    fn collect_failures<'a>(&'a self, path: &str, out: &mut Vec<(String, &'a TestCase)>) {
        let before = out.len();
        for s in &self.subtests {
            let p = format!("{path}.{}", s.display_name());
            s.collect_failures(&p, out);
        }
        if self.status.is_failure() && out.len() == before {
            match self.status {
                Status::Fail => out.push((path.to_string(), self)),
                other => out.push((format!("{path} ({})", other.as_str()), self)),
            }
        }
    }

    fn emit(&self, out: &mut String, depth: usize) {
        let ind = "  ".repeat(depth);
        if !self.subtests.is_empty() || self.plan.is_some() {
            let _ = writeln!(out, "{ind}  KTAP version 1");
            if !self.name.is_empty() {
                let _ = writeln!(out, "{ind}  # Subtest: {}", self.name);
            }
            let _ = writeln!(out, "{ind}  1..{}", self.subtests.len());
            for s in &self.subtests {
                s.emit(out, depth + 1);
            }
        }
        for d in &self.diagnostics {
            let _ = writeln!(out, "{ind}# {d}");
        }
        let name = if self.name.is_empty() {
            "unknown"
        } else {
            &self.name
        };
        let reason = self.directive_reason.as_deref();
        let (ok, directive) = match self.status {
            Status::Pass => ("ok", None),
            Status::Fail => ("not ok", None),
            Status::Skip => ("ok", Some("SKIP")),
            Status::Xfail => ("ok", Some("XFAIL")),
            Status::Timeout => ("not ok", Some("TIMEOUT")),
            Status::Error => ("not ok", Some("ERROR")),
            Status::Crashed => ("not ok", Some("ERROR crashed:")),
            Status::NotRun => ("not ok", Some("ERROR not run")),
        };
        let _ = write!(out, "{ind}{ok} {} {name}", self.number);
        match (directive, reason) {
            (Some(d), Some(r)) => writeln!(out, " # {d} {r}"),
            (Some(d), None) => writeln!(out, " # {}", d.trim_end_matches(':')),
            (None, Some(r)) => writeln!(out, " # {r}"),
            (None, None) => writeln!(out),
        }
        .unwrap_or(());
    }
}

impl Report {
    /// Leaf test counts over the whole tree.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for t in &self.tests {
            c.add_tree(t);
        }
        c
    }

    /// True if the document is complete and no top-level test failed (skips are fine).
    pub fn passed(&self) -> bool {
        self.complete && !self.tests.iter().any(|t| t.status.is_failure())
    }

    /// Re-emits the tree as a clean KTAP v1 document (no timestamps or prefixes,
    /// two-space indentation, synthesized results for crashed/not-run tests).
    pub fn to_ktap(&self) -> String {
        let mut out = String::from("KTAP version 1\n");
        let _ = writeln!(out, "1..{}", self.tests.len());
        for t in &self.tests {
            t.emit(&mut out, 0);
        }
        out
    }

    /// Human-readable summary: one line per top-level test (suite) with its
    /// counts and failing tests, a total line, then one line per problem.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        if self.version.is_empty() {
            out.push_str("no KTAP output found\n");
        }
        for t in &self.tests {
            let mut c = Counts::default();
            c.add_tree(t);
            let status = t.status.as_str().to_uppercase();
            let _ = write!(out, "{status:<7} {}: {}", t.display_name(), c.describe());
            let mut failures = Vec::new();
            for s in &t.subtests {
                s.collect_failures(&s.display_name(), &mut failures);
            }
            failures.retain(|(f, _)| !f.ends_with("(notrun)"));
            let more = failures.len().saturating_sub(MAX_SUMMARY_FAILURES);
            failures.truncate(MAX_SUMMARY_FAILURES);
            if !failures.is_empty() {
                let names: Vec<&str> = failures.iter().map(|(f, _)| f.as_str()).collect();
                let _ = write!(out, "; failing: {}", names.join(", "));
                if more > 0 {
                    let _ = write!(out, " and {more} more");
                }
            }
            out.push('\n');
            // What each failing test said about itself, so that a failure in a CI log
            // can be understood without the console log.
            for (name, case) in &failures {
                let skip = case
                    .diagnostics
                    .len()
                    .saturating_sub(MAX_SUMMARY_DIAGNOSTICS);
                if case.diagnostics.is_empty() {
                    continue;
                }
                let _ = writeln!(out, "        {name}:");
                if skip > 0 {
                    let _ = writeln!(out, "          # ({skip} earlier lines in the console log)");
                }
                for d in &case.diagnostics[skip..] {
                    let _ = writeln!(out, "          # {d}");
                }
            }
        }
        if !self.version.is_empty() {
            let verdict = if self.passed() { "PASS" } else { "FAIL" };
            let _ = write!(out, "total: {verdict}: {}", self.counts().describe());
            out.push_str(if self.complete {
                "\n"
            } else {
                " (incomplete)\n"
            });
        }
        for p in &self.problems {
            let _ = writeln!(out, "problem: {p}");
        }
        out
    }
}

/// Parses the first KTAP (or TAP 13/14) document in a serial console log.
pub fn parse(log: &str) -> Report {
    let lines: Vec<(usize, &str, &str)> = log
        .split('\n')
        .enumerate()
        .map(|(i, raw)| {
            let raw = raw.trim_matches('\r');
            (i + 1, raw, strip_timestamp(raw).unwrap_or(raw))
        })
        .collect();
    let start = lines.iter().enumerate().find_map(|(i, &(_, _, content))| {
        version_at(content.trim_end()).map(|(pos, v)| (i, &content[..pos], v))
    });
    let Some((start, prefix, version)) = start else {
        return Report {
            version: String::new(),
            plan: None,
            tests: Vec::new(),
            complete: false,
            problems: vec!["no KTAP output found".to_string()],
        };
    };
    let start_line = lines[start].0;
    let mut p = Parser {
        stack: vec![Block::default()],
        ..Parser::default()
    };
    if !matches!(
        version,
        "KTAP version 1" | "TAP version 13" | "TAP version 14"
    ) {
        p.problems.push(format!(
            "line {start_line}: unsupported version {version:?}"
        ));
    }
    for &(no, raw, content) in &lines[start + 1..] {
        if p.stopped {
            break;
        }
        match content.strip_prefix(prefix) {
            Some(rest) if rest.trim().is_empty() => {}
            Some(rest) => match classify(rest) {
                (_, Kind::Unknown) => p.foreign(no, raw, content),
                (indent, kind) => p.ktap(no, indent, kind),
            },
            None if content.trim().is_empty() => {}
            None => p.foreign(no, raw, content),
        }
    }
    p.finish(version.to_string(), start_line)
}

/// Finds a `KTAP version N` / `TAP version N` line ending; returns its offset and text.
fn version_at(s: &str) -> Option<(usize, &str)> {
    ["KTAP version ", "TAP version "].iter().find_map(|key| {
        let pos = s.find(key)?;
        let num = &s[pos + key.len()..];
        (!num.is_empty() && num.bytes().all(|b| b.is_ascii_digit())).then(|| (pos, &s[pos..]))
    })
}

/// A parsed `ok`/`not ok` line.
struct ResultLine<'a> {
    ok: bool,
    number: u32,
    name: &'a str,
    directive: Option<&'a str>,
}

/// Classification of one KTAP line (after prefix removal).
enum Kind<'a> {
    Version,
    Plan(u32),
    Subtest(&'a str),
    Result(ResultLine<'a>),
    Diag(&'a str),
    BailOut(&'a str),
    Unknown,
}

/// Splits a line into its indentation and kind.
fn classify(s: &str) -> (usize, Kind<'_>) {
    let body = s.trim_start_matches([' ', '\t']);
    let indent = s.len() - body.len();
    let body = body.trim_end();
    let kind = if matches!(version_at(body), Some((0, _))) {
        Kind::Version
    } else if let Some(n) = parse_plan(body) {
        Kind::Plan(n)
    } else if let Some(r) = parse_result(body) {
        Kind::Result(r)
    } else if let Some(d) = body.strip_prefix('#') {
        let d = d.strip_prefix(' ').unwrap_or(d);
        match d.strip_prefix("Subtest:") {
            Some(name) => Kind::Subtest(name.trim()),
            None => Kind::Diag(d),
        }
    } else if body.starts_with("Bail out!") {
        Kind::BailOut(body)
    } else {
        Kind::Unknown
    };
    (indent, kind)
}

/// Splits `s` into a leading run of ASCII digits and the rest.
fn leading_number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let rest = &s[end..];
    let delimited = rest.is_empty() || rest.starts_with([' ', '\t', '#']);
    if end == 0 || !delimited {
        return None;
    }
    Some((s[..end].parse().ok()?, rest))
}

fn parse_plan(s: &str) -> Option<u32> {
    leading_number(s.strip_prefix("1..")?).map(|(n, _)| n)
}

fn parse_result(s: &str) -> Option<ResultLine<'_>> {
    let (ok, rest) = match s.strip_prefix("not ok ") {
        Some(rest) => (false, rest),
        None => (true, s.strip_prefix("ok ")?),
    };
    let (number, tail) = leading_number(rest.trim_start())?;
    let (desc, directive) = match tail.split_once('#') {
        Some((d, x)) => (d, Some(x.trim())),
        None => (tail, None),
    };
    let desc = desc.trim();
    let name = if desc == "-" {
        ""
    } else {
        desc.strip_prefix("- ").unwrap_or(desc).trim()
    };
    Some(ResultLine {
        ok,
        number,
        name,
        directive,
    })
}

/// Maps `ok`/`not ok` plus the optional `# DIRECTIVE reason` to a status and reason.
fn directive_status(ok: bool, directive: Option<&str>) -> (Status, Option<String>) {
    let base = if ok { Status::Pass } else { Status::Fail };
    let Some(text) = directive.filter(|t| !t.is_empty()) else {
        return (base, None);
    };
    let end = text
        .find(|c: char| c.is_whitespace() || c == ':')
        .unwrap_or(text.len());
    let (word, reason) = text.split_at(end);
    let reason = reason.trim_start_matches(':').trim();
    let reason = (!reason.is_empty()).then(|| reason.to_string());
    let status = match word.to_ascii_uppercase().as_str() {
        "SKIP" | "SKIPPED" => Status::Skip,
        "XFAIL" => Status::Xfail,
        "TODO" if ok => Status::Pass,
        "TODO" => Status::Xfail,
        "TIMEOUT" => Status::Timeout,
        "ERROR" => Status::Error,
        _ => return (base, Some(text.to_string())),
    };
    (status, reason)
}

/// Does this foreign line end the test run (panic, oops)?  Tracks WARN/UBSAN
/// splats so that their `---[ end trace` does not count as a crash.
fn is_crash(content: &str, in_warning: &mut bool) -> bool {
    if content.contains("[ cut here ]")
        || content.contains("WARNING: CPU:")
        || content.starts_with("UBSAN:")
    {
        *in_warning = true;
        return false;
    }
    if content.starts_with("---[ end trace") {
        return !take(in_warning);
    }
    !content.starts_with("---[ end Kernel panic")
        && (content.contains("Kernel panic - not syncing")
            || content.contains("Oops:")
            || content.contains("Oops -")
            || content.starts_with("general protection fault"))
}

/// One open (sub)test block on the parser stack.
#[derive(Default)]
struct Block {
    indent: usize,
    name: Option<String>,
    plan: Option<u32>,
    tests: Vec<TestCase>,
    /// Diagnostics and kernel lines about the block itself (before it opened or before its plan).
    diags: Vec<String>,
    log: Vec<String>,
    /// Diagnostics and kernel lines for the next test of this block.
    pending_diags: Vec<String>,
    pending_log: Vec<String>,
    /// Name from a `# Subtest:` line for the next child block.
    pending_name: Option<String>,
}

impl Block {
    fn fresh(&self) -> bool {
        self.plan.is_none() && self.tests.is_empty()
    }
}

#[derive(Default)]
struct Parser {
    stack: Vec<Block>,
    problems: Vec<String>,
    in_warning: bool,
    crash: Option<String>,
    stopped: bool,
    incomplete: bool,
}

impl Parser {
    fn top(&mut self) -> &mut Block {
        self.stack.last_mut().expect("root block")
    }

    /// Index of the deepest open block whose indentation is <= `indent`.
    fn depth_for(&self, indent: usize) -> usize {
        self.stack
            .iter()
            .rposition(|b| b.indent <= indent)
            .unwrap_or(0)
    }

    /// Dotted path of a test called `name` (`#N` if unnamed) in the block at `depth`.
    fn path(&self, depth: usize, name: Option<&str>) -> String {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => format!("#{}", self.stack[depth].tests.len() + 1),
        };
        match depth {
            0 => name,
            d => format!("{}.{name}", self.path(d - 1, self.stack[d].name.as_deref())),
        }
    }

    /// Dotted path of the open block at `depth` (default: the innermost).
    fn block_path(&self, depth: Option<usize>) -> String {
        match depth.unwrap_or(self.stack.len() - 1) {
            0 => "top level".to_string(),
            d => self.path(d - 1, self.stack[d].name.as_deref()),
        }
    }

    fn root_done(&self) -> bool {
        let root = &self.stack[0];
        self.stack.len() == 1 && root.plan.is_some_and(|p| root.tests.len() as u32 >= p)
    }

    fn push(&mut self, indent: usize) -> &mut Block {
        let parent = self.top();
        let block = Block {
            indent,
            name: parent.pending_name.take(),
            diags: take(&mut parent.pending_diags),
            log: take(&mut parent.pending_log),
            ..Block::default()
        };
        self.stack.push(block);
        self.top()
    }

    fn foreign(&mut self, no: usize, raw: &str, content: &str) {
        if is_crash(content, &mut self.in_warning) {
            self.crashed(no, raw, content.trim());
        } else if !self.root_done() && self.top().pending_log.len() < MAX_CONTEXT_LINES {
            self.top().pending_log.push(raw.to_string());
        }
    }

    fn crashed(&mut self, no: usize, raw: &str, cause: &str) {
        if !self.root_done() {
            let path = self.block_path(None);
            self.problems
                .push(format!("line {no}: test run ended in {path}: {cause}"));
            self.top().pending_log.push(raw.to_string());
            self.crash = Some(cause.to_string());
            self.stopped = true;
        }
    }

    fn ktap(&mut self, no: usize, indent: usize, kind: Kind<'_>) {
        let nested = self.stack.len() > 1;
        let top = self.stack.last().expect("root block");
        let (deeper, same, fresh, unnamed) = (
            indent > top.indent,
            indent == top.indent,
            top.fresh(),
            top.name.is_none(),
        );
        match kind {
            Kind::Version if deeper => {
                self.push(indent);
            }
            Kind::Version if same && nested && fresh => {} // after a `# Subtest:` line
            Kind::Version if self.root_done() => {
                self.problems
                    .push(format!("line {no}: ignoring a second KTAP document"));
                self.stopped = true;
            }
            Kind::Version => {
                let path = self.block_path(None);
                self.problems
                    .push(format!("line {no}: unexpected version line in {path}"));
            }
            Kind::Subtest(name) if deeper => self.push(indent).name = Some(name.to_string()),
            Kind::Subtest(name) if same && nested && fresh && unnamed => {
                self.top().name = Some(name.to_string())
            }
            Kind::Subtest(name) => {
                let d = self.depth_for(indent);
                self.stack[d].pending_name = Some(name.to_string());
            }
            Kind::Plan(n) if deeper => self.push(indent).plan = Some(n),
            Kind::Plan(n) => {
                let d = self.depth_for(indent);
                if self.stack[d].plan.is_none() {
                    self.stack[d].plan = Some(n);
                } else {
                    let path = self.block_path(Some(d));
                    self.problems
                        .push(format!("line {no}: unexpected plan line 1..{n} in {path}"));
                }
            }
            Kind::Diag(text) => {
                let d = self.depth_for(indent);
                let b = &mut self.stack[d];
                let to = if d > 0 && b.fresh() {
                    &mut b.diags
                } else {
                    &mut b.pending_diags
                };
                to.push(text.to_string());
            }
            Kind::Result(r) => self.result(no, indent, r),
            Kind::BailOut(text) => self.crashed(no, text, text),
            Kind::Unknown => {}
        }
    }

    fn result(&mut self, no: usize, indent: usize, r: ResultLine<'_>) {
        if indent > self.top().indent {
            self.push(indent);
        }
        let k = self.depth_for(indent);
        while self.stack.len() > k + 2 {
            let path = self.block_path(None);
            self.problems
                .push(format!("line {no}: {path}: missing result line"));
            self.close_unfinished("missing result line", false);
        }
        let (status, reason) = directive_status(r.ok, r.directive);
        let mut tc = TestCase::new(r.number, r.name.to_string(), status, reason);
        if self.stack.len() == k + 2 {
            let path = self.path(k, self.stack[k + 1].name.as_deref().or(Some(r.name)));
            let block = self.stack.pop().expect("child block");
            match &block.name {
                Some(sub) if tc.name.is_empty() => tc.name = sub.clone(),
                Some(sub) if *sub != tc.name => {
                    let msg = format!("line {no}: subtest {sub:?} ended by result {:?}", tc.name);
                    self.problems.push(msg);
                }
                _ => {}
            }
            self.absorb(block, &mut tc, &path, None);
        }
        self.add(k, tc, Some(no));
    }

    /// Moves a finished block's tests and diagnostics into its parent test
    /// case, synthesizing results for planned tests that never reported.
    fn absorb(&mut self, mut b: Block, tc: &mut TestCase, path: &str, crash: Option<&str>) {
        if b.plan.is_none() {
            self.problems.push(format!("{path}: missing plan"));
        }
        self.synthesize(&mut b, crash, path);
        tc.diagnostics = [b.diags, b.pending_diags].concat();
        tc.kernel_log = [b.log, b.pending_log].concat();
        tc.subtests = b.tests;
        tc.plan = b.plan;
    }

    /// Appends results for missing planned tests: the first gets `Crashed`
    /// (plus the pending diagnostics and kernel lines) when `crash` is given,
    /// the others `NotRun`.
    fn synthesize(&mut self, b: &mut Block, crash: Option<&str>, path: &str) {
        let Some(plan) = b.plan else { return };
        let have = b.tests.len() as u32;
        if have > plan {
            self.problems
                .push(format!("{path}: {have} results but plan was 1..{plan}"));
        }
        if have >= plan {
            return;
        }
        self.problems.push(format!(
            "{path}: plan was 1..{plan} but only {have} results"
        ));
        self.incomplete = true;
        let present: Vec<u32> = b.tests.iter().map(|t| t.number).collect();
        let missing = (1..=plan).filter(|n| !present.contains(n));
        let mut crash = crash;
        for n in missing.take((plan - have).min(MAX_SYNTHESIZED) as usize) {
            let mut t = TestCase::new(n, String::new(), Status::NotRun, None);
            if let Some(cause) = crash.take() {
                t.status = Status::Crashed;
                t.directive_reason = Some(cause.to_string());
                t.diagnostics = take(&mut b.pending_diags);
                t.kernel_log = take(&mut b.pending_log);
            }
            b.tests.push(t);
        }
    }

    /// Pops the innermost block, which never printed its result line, and
    /// adds it to its parent as a `Crashed` test.  `innermost`: the block was
    /// running when the log ended, so its first missing test is `Crashed`.
    fn close_unfinished(&mut self, reason: &str, innermost: bool) {
        let path = self.block_path(None);
        let block = self.stack.pop().expect("nested block");
        let number = self.top().tests.len() as u32 + 1;
        let name = block.name.clone().unwrap_or_default();
        let mut tc = TestCase::new(number, name, Status::Crashed, Some(reason.to_string()));
        self.absorb(block, &mut tc, &path, innermost.then_some(reason));
        self.incomplete = true;
        self.add(self.stack.len() - 1, tc, None);
    }

    /// Adds a finished test to block `k`: checks numbering, attaches pending
    /// diagnostics and bubbles up subtest failures.
    fn add(&mut self, k: usize, mut tc: TestCase, line: Option<usize>) {
        let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
        let path = self.path(k, Some(&tc.display_name()));
        let b = &mut self.stack[k];
        let expected = b.tests.len() as u32 + 1;
        tc.diagnostics.append(&mut b.pending_diags);
        tc.kernel_log.append(&mut b.pending_log);
        tc.kernel_log.truncate(MAX_CONTEXT_LINES);
        if tc.number != expected {
            let n = tc.number;
            self.problems.push(format!(
                "{at}{path}: test number {n} out of sequence (expected {expected})"
            ));
        }
        if matches!(tc.status, Status::Pass | Status::Skip)
            && tc.subtests.iter().any(|s| s.status.is_failure())
        {
            let was = tc.status.as_str();
            self.problems
                .push(format!("{at}{path}: reported {was} but a subtest failed"));
            tc.status = Status::Fail;
        }
        self.stack[k].tests.push(tc);
    }

    fn finish(mut self, version: String, start_line: usize) -> Report {
        if self.crash.is_none() && self.stack.len() > 1 {
            let path = self.block_path(None);
            self.problems
                .push(format!("console log ended while {path} was running"));
        }
        let cause = self
            .crash
            .clone()
            .unwrap_or_else(|| "console log ended".to_string());
        let mut innermost = true;
        while self.stack.len() > 1 {
            self.close_unfinished(&cause, take(&mut innermost));
        }
        let mut root = self.stack.pop().expect("root block");
        if root.plan.is_none() {
            self.problems
                .push(format!("line {start_line}: top level: missing plan"));
        }
        self.synthesize(&mut root, innermost.then_some(&cause), "top level");
        Report {
            version,
            plan: root.plan,
            tests: root.tests,
            complete: !self.incomplete && self.crash.is_none(),
            problems: self.problems,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../test_data/console/", $name))
        };
    }

    const ALL_PASSED: &str = fixture!("all_passed.log");
    const FAILURE: &str = fixture!("failure.log");
    const SKIP: &str = fixture!("skip.log");
    const NESTED: &str = fixture!("nested.log");
    const MISSING_PLAN: &str = fixture!("missing_plan.log");
    const TRUNCATED: &str = fixture!("truncated.log");
    const PANIC_MID_SUITE: &str = fixture!("panic_mid_suite.log");
    const OOPS: &str = fixture!("oops.log");
    const MODULE_PREFIX: &str = fixture!("module_prefix.log");
    const INTERLEAVED: &str = fixture!("interleaved.log");
    const CRLF: &str = fixture!("crlf.log");
    const NO_KTAP: &str = fixture!("no_ktap.log");
    const TAP13: &str = fixture!("tap13.log");
    const OUT_OF_ORDER: &str = fixture!("out_of_order.log");
    const WARNING: &str = fixture!("warning.log");
    const UBSAN: &str = fixture!("ubsan.log");

    /// Every fixture with KTAP output.
    const KTAP_FIXTURES: &[&str] = &[
        ALL_PASSED,
        FAILURE,
        SKIP,
        NESTED,
        MISSING_PLAN,
        TRUNCATED,
        PANIC_MID_SUITE,
        OOPS,
        MODULE_PREFIX,
        INTERLEAVED,
        CRLF,
        TAP13,
        OUT_OF_ORDER,
        WARNING,
        UBSAN,
    ];

    /// Follows a path of test names (or `#N` for unnamed tests) from the top level.
    fn get<'a>(r: &'a Report, path: &str) -> &'a TestCase {
        let mut tests = &r.tests;
        let mut found = None;
        for part in path.split('.') {
            let t = tests
                .iter()
                .find(|t| t.display_name() == part)
                .unwrap_or_else(|| panic!("no test {part:?} in path {path:?}"));
            tests = &t.subtests;
            found = Some(t);
        }
        found.expect("empty path")
    }

    fn statuses(tests: &[TestCase]) -> Vec<Status> {
        tests.iter().map(|t| t.status).collect()
    }

    fn counts(passed: u32, failed: u32, skipped: u32, crashed: u32, not_run: u32) -> Counts {
        let total = passed + failed + skipped + crashed + not_run;
        Counts {
            passed,
            failed,
            skipped,
            crashed,
            not_run,
            total,
        }
    }

    fn line_of(log: &str, needle: &str) -> usize {
        log.lines()
            .position(|l| l.contains(needle))
            .expect("needle in log")
            + 1
    }

    fn without_kernel_log(mut tests: Vec<TestCase>) -> Vec<TestCase> {
        for t in &mut tests {
            t.kernel_log.clear();
            t.subtests = without_kernel_log(take(&mut t.subtests));
        }
        tests
    }

    #[test]
    fn all_passed() {
        let r = parse(ALL_PASSED);
        assert_eq!(r.version, "KTAP version 1");
        assert_eq!(r.plan, Some(2));
        assert!(r.complete);
        assert!(r.passed());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.counts(), counts(7, 0, 0, 0, 0));
        let names: Vec<&str> = r.tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["boot", "lags_behaviour"]);
        let boot = get(&r, "boot");
        assert_eq!(boot.plan, Some(3));
        assert_eq!(boot.subtests[2].name, "online_cpus_consistent");
        assert_eq!(boot.subtests[2].number, 3);
        assert!(
            r.summary()
                .contains("PASS    lags_behaviour: 4 tests, 4 passed\n"),
            "{}",
            r.summary()
        );
        assert!(r.summary().contains("total: PASS: 7 tests, 7 passed\n"));
    }

    #[test]
    fn failure_with_diagnostics() {
        let r = parse(FAILURE);
        assert!(r.complete);
        assert!(!r.passed());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.counts(), counts(5, 2, 0, 0, 0));
        let suite = get(&r, "lags_behaviour");
        assert_eq!(suite.status, Status::Fail);
        assert_eq!(
            suite.diagnostics,
            ["lags_behaviour: pass:2 fail:2 skip:0 total:4"]
        );
        let t = get(&r, "lags_behaviour.service_floor");
        assert_eq!(t.status, Status::Fail);
        assert_eq!(t.diagnostics.len(), 4);
        assert_eq!(
            t.diagnostics[1],
            "WARNING: CPU: 1 runqueue imbalance persisted for 3 balance intervals"
        );
        assert_eq!(
            t.diagnostics[2],
            "service_floor: expected at least 263 ms of CPU, got 171 ms"
        );
        let t = get(&r, "lags_behaviour.credit_rises_and_decays");
        assert_eq!(t.status, Status::Timeout);
        assert_eq!(t.directive_reason.as_deref(), Some("30 seconds"));
        assert_eq!(
            t.diagnostics,
            ["credit_rises_and_decays: credit never rose above 0 mcpu"]
        );
        let summary = r.summary();
        assert!(summary.contains("FAIL    lags_behaviour: 4 tests, 2 passed, 2 failed; failing: service_floor, credit_rises_and_decays (timeout)\n"), "{summary}");
        assert!(
            summary.contains("total: FAIL: 7 tests, 5 passed, 2 failed\n"),
            "{summary}"
        );
    }

    #[test]
    fn skipped_tests_and_skipped_suite() {
        let r = parse(SKIP);
        assert!(r.complete && r.passed(), "{:?}", r.problems);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.counts(), counts(2, 0, 4, 0, 0));
        assert_eq!(
            statuses(&r.tests),
            [Status::Pass, Status::Skip, Status::Skip]
        );
        let cpus = get(&r, "boot.online_cpus_consistent");
        assert_eq!(
            (cpus.status, cpus.directive_reason.as_deref()),
            (Status::Skip, Some("one CPU online"))
        );
        let cgroup = get(&r, "cgroup");
        assert_eq!(
            cgroup.directive_reason.as_deref(),
            Some("CONFIG_CGROUP_SCHED is not set")
        );
        assert_eq!(statuses(&cgroup.subtests), [Status::Skip, Status::Skip]);
        let module = get(&r, "module");
        assert_eq!((module.plan, module.subtests.len()), (Some(0), 0));
        assert!(
            r.summary().contains("SKIP    cgroup: 2 tests, 2 skipped\n"),
            "{}",
            r.summary()
        );
    }

    #[test]
    fn nested_three_levels() {
        let r = parse(NESTED);
        assert!(r.complete && !r.passed());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.counts(), counts(5, 1, 0, 0, 0));
        let behaviour = get(&r, "lags_behaviour");
        assert_eq!(behaviour.status, Status::Fail);
        assert_eq!(statuses(&behaviour.subtests), [Status::Pass, Status::Fail]);
        let light = get(&r, "lags_behaviour.light_latency_ab");
        let names: Vec<&str> = light.subtests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["stock", "lags", "flag_off"]);
        let leaf = get(&r, "lags_behaviour.service_floor.longest_wait");
        assert_eq!(leaf.status, Status::Fail);
        assert_eq!(
            leaf.diagnostics,
            ["longest_wait: busy group waited 3120 ms for CPU (bound 500 ms)"]
        );
        assert_eq!(get(&r, "lags_guarantees").status, Status::Pass);
        assert!(
            r.summary()
                .contains("failing: service_floor.longest_wait\n"),
            "{}",
            r.summary()
        );
        // The failing test's own diagnostics follow, so a CI log explains the failure.
        assert!(
            r.summary().contains(
                "        service_floor.longest_wait:\n          # longest_wait: busy group \
                 waited 3120 ms for CPU (bound 500 ms)\n"
            ),
            "{}",
            r.summary()
        );
        // Passing tests' diagnostics stay in the console log.
        assert!(
            !r.summary().contains("light_latency_ab:"),
            "{}",
            r.summary()
        );
    }

    #[test]
    fn missing_plan_is_a_problem_only() {
        let r = parse(MISSING_PLAN);
        assert_eq!(r.plan, None);
        assert!(r.complete && r.passed());
        assert_eq!(r.counts(), counts(5, 0, 0, 0, 0));
        assert_eq!(get(&r, "lags_behaviour").plan, None);
        let line = line_of(MISSING_PLAN, "KTAP version 1");
        assert!(
            r.problems
                .contains(&format!("line {line}: top level: missing plan")),
            "{:?}",
            r.problems
        );
        assert!(
            r.problems
                .contains(&"lags_behaviour: missing plan".to_string()),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn truncated_log_crashes_running_suite() {
        let r = parse(TRUNCATED);
        assert!(!r.complete && !r.passed());
        assert_eq!(r.counts(), counts(5, 0, 0, 1, 2));
        assert_eq!(
            statuses(&r.tests),
            [Status::Pass, Status::Crashed, Status::NotRun]
        );
        let suite = get(&r, "lags_behaviour");
        assert_eq!(
            statuses(&suite.subtests),
            [Status::Pass, Status::Pass, Status::Crashed, Status::NotRun]
        );
        let crashed = &suite.subtests[2];
        assert_eq!((crashed.number, crashed.name.as_str()), (3, ""));
        assert_eq!(
            crashed.directive_reason.as_deref(),
            Some("console log ended")
        );
        assert_eq!(
            crashed.diagnostics,
            ["service_floor: running 6 LAGS siblings and a SCHED_FIFO task for 3000ms"]
        );
        assert!(crashed.kernel_log[0].ends_with("random: crng init done"));
        assert_eq!(r.tests[2].number, 3);
        assert!(r
            .problems
            .contains(&"console log ended while lags_behaviour was running".to_string()));
        assert!(r.summary().contains(
            "CRASHED lags_behaviour: 4 tests, 2 passed, 1 crashed, 1 not run; failing: #3 (crashed)\n"
        ));
        assert!(r.summary().contains("(incomplete)"));
    }

    #[test]
    fn kernel_panic_mid_suite() {
        let r = parse(PANIC_MID_SUITE);
        assert!(!r.complete && !r.passed());
        assert_eq!(
            statuses(&r.tests),
            [Status::Pass, Status::Crashed, Status::NotRun]
        );
        let cause = "Kernel panic - not syncing: sysrq triggered crash";
        let suite = get(&r, "lags_behaviour");
        assert_eq!(suite.directive_reason.as_deref(), Some(cause));
        assert_eq!(
            statuses(&suite.subtests),
            [Status::Pass, Status::Pass, Status::Crashed, Status::NotRun]
        );
        let crashed = &suite.subtests[2];
        assert_eq!(crashed.directive_reason.as_deref(), Some(cause));
        assert!(crashed
            .kernel_log
            .iter()
            .any(|l| l.ends_with("sysrq: Trigger a crash")));
        let line = line_of(PANIC_MID_SUITE, "Kernel panic - not syncing");
        assert_eq!(
            r.problems[0],
            format!("line {line}: test run ended in lags_behaviour: {cause}")
        );
    }

    #[test]
    fn oops_mid_suite() {
        let r = parse(OOPS);
        assert!(!r.complete);
        let suite = get(&r, "lags_behaviour");
        assert_eq!(suite.status, Status::Crashed);
        assert_eq!(
            statuses(&suite.subtests),
            [
                Status::Pass,
                Status::Crashed,
                Status::NotRun,
                Status::NotRun
            ]
        );
        assert_eq!(
            suite.subtests[1].directive_reason.as_deref(),
            Some("Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI")
        );
        assert_eq!(r.counts(), counts(4, 0, 0, 1, 2));
    }

    #[test]
    fn warn_and_ubsan_splats_do_not_end_the_run() {
        for log in [WARNING, UBSAN] {
            let r = parse(log);
            assert!(r.complete && r.passed(), "{}", r.summary());
            assert!(r.problems.is_empty(), "{:?}", r.problems);
        }
        let r = parse(WARNING);
        let t = get(&r, "lags_behaviour.heavy_progress_bounded");
        assert!(t
            .kernel_log
            .iter()
            .any(|l| l.contains("WARNING: CPU: 1 PID: 97 at kernel/sched/lags.c:412")));
        assert!(t
            .kernel_log
            .last()
            .unwrap()
            .ends_with("---[ end trace 0000000000000000 ]---"));
    }

    #[test]
    fn module_prefix_and_timestamps() {
        let r = parse(MODULE_PREFIX);
        assert!(r.complete && r.passed(), "{:?}", r.problems);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.counts(), counts(4, 0, 1, 0, 0));
        let unload = get(&r, "module.unload_rust_minimal");
        assert_eq!(unload.status, Status::Skip);
        assert_eq!(
            unload.directive_reason.as_deref(),
            Some("module not loaded")
        );
        assert_eq!(
            unload.diagnostics,
            ["unload_rust_minimal: module still in use, retrying"]
        );
        let listed = get(&r, "module.listed_in_proc_modules");
        assert!(listed.kernel_log[0].ends_with("lags_monitor: registered 4 tracepoint probes"));
        assert!(get(&r, "module.unload_rust_minimal").kernel_log[0]
            .ends_with("lags-init: waiting for lags_monitor"));
        let ktap = r.to_ktap();
        assert!(
            !ktap.contains("lags_monitor") && !ktap.contains('['),
            "{ktap}"
        );
    }

    #[test]
    fn interleaved_kernel_messages_are_context() {
        let r = parse(INTERLEAVED);
        assert!(r.complete && r.passed());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.counts(), counts(5, 0, 0, 0, 0));
        assert!(get(&r, "boot.kernel_release_matches").kernel_log[0]
            .ends_with("random: crng init done"));
        assert!(get(&r, "boot.proc_version_matches").kernel_log[0]
            .contains("e1000: eth0 NIC Link is Up"));
        let t = get(&r, "lags_behaviour.service_floor");
        assert_eq!(
            t.diagnostics,
            ["service_floor: spinning SCHED_FIFO task for 1500ms"]
        );
        assert!(t.kernel_log[0].ends_with("sched: RT throttling activated"));
        assert_eq!(
            get(&r, "lags_behaviour.credit_rises_and_decays")
                .kernel_log
                .len(),
            2
        );
    }

    #[test]
    fn crlf_line_endings() {
        assert!(CRLF.contains("\r\n"));
        let r = parse(CRLF);
        assert_eq!(r, parse(&CRLF.replace("\r\n", "\n")));
        assert!(r.complete && !r.passed());
        assert_eq!(r.counts(), counts(4, 1, 1, 0, 0));
        assert_eq!(
            get(&r, "lags_behaviour.heavy_progress_bounded")
                .directive_reason
                .as_deref(),
            Some("single CPU")
        );
        assert!(!r.to_ktap().contains('\r'));
    }

    #[test]
    fn no_ktap_output() {
        let r = parse(NO_KTAP);
        assert_eq!(r.version, "");
        assert!(r.tests.is_empty() && !r.complete && !r.passed());
        assert_eq!(r.problems, ["no KTAP output found"]);
        assert_eq!(r.counts(), Counts::default());
        assert!(r.summary().starts_with("no KTAP output found\n"));
        assert_eq!(parse(""), r);
    }

    #[test]
    fn tap_version_13_without_nested_version_lines() {
        let r = parse(TAP13);
        assert_eq!(r.version, "TAP version 13");
        assert!(r.complete && !r.passed());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.counts(), counts(3, 1, 1, 0, 0));
        let suite = get(&r, "lags_behaviour");
        let names: Vec<&str> = suite.subtests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "light_latency_ab",
                "heavy_progress_bounded",
                "service_floor"
            ]
        );
        assert_eq!(
            statuses(&suite.subtests),
            [Status::Pass, Status::Skip, Status::Fail]
        );
        assert_eq!(
            suite.subtests[0].diagnostics,
            ["light_latency_ab: initializing"]
        );
    }

    #[test]
    fn out_of_order_numbers() {
        let r = parse(OUT_OF_ORDER);
        assert!(r.complete && r.passed());
        let numbers: Vec<u32> = get(&r, "lags_behaviour")
            .subtests
            .iter()
            .map(|t| t.number)
            .collect();
        assert_eq!(numbers, [1, 3, 2]);
        let line = line_of(OUT_OF_ORDER, "ok 3 service_floor");
        assert_eq!(
            r.problems,
            [
                format!("line {line}: lags_behaviour.service_floor: test number 3 out of sequence (expected 2)"),
                format!("line {}: lags_behaviour.heavy_progress_bounded: test number 2 out of sequence (expected 3)", line + 1),
            ]
        );
    }

    #[test]
    fn to_ktap_round_trips() {
        for log in KTAP_FIXTURES {
            let r = parse(log);
            let ktap = r.to_ktap();
            let again = parse(&ktap);
            assert_eq!(again.to_ktap(), ktap, "to_ktap is not a fixed point");
            if r.complete && r.plan.is_some() && r.version == "KTAP version 1" {
                assert_eq!(without_kernel_log(r.tests.clone()), again.tests, "{ktap}");
                assert_eq!(again.problems.len(), r.problems.len(), "{ktap}");
            }
        }
        let ktap = parse(PANIC_MID_SUITE).to_ktap();
        assert!(ktap.ends_with(
            "  not ok 3 unknown # ERROR crashed: Kernel panic - not syncing: sysrq triggered crash\n  \
             not ok 4 unknown # ERROR not run\n\
             not ok 2 lags_behaviour # ERROR crashed: Kernel panic - not syncing: sysrq triggered crash\n\
             not ok 3 unknown # ERROR not run\n"
        ));
    }

    #[test]
    fn ktap_spec_example() {
        let doc = "KTAP version 1\n1..1\n  KTAP version 1\n  1..3\n    KTAP version 1\n    1..1\n    \
                   # test_1: initializing test_1\n    ok 1 test_1\n  ok 1 example_test_1\n    KTAP version 1\n    \
                   1..2\n    ok 1 test_1 # SKIP test_1 skipped\n    ok 2 test_2\n  ok 2 example_test_2\n    \
                   KTAP version 1\n    1..3\n    ok 1 test_1\n    # test_2: FAIL\n    not ok 2 test_2\n    \
                   ok 3 test_3 # SKIP test_3 skipped\n  not ok 3 example_test_3\nnot ok 1 main_test\n";
        let r = parse(doc);
        assert!(r.complete && !r.passed());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let emitted: String = r
            .to_ktap()
            .lines()
            .filter(|l| !l.contains("# Subtest:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(emitted, doc);
        assert_eq!(
            get(&r, "main_test.example_test_1.test_1").diagnostics,
            ["test_1: initializing test_1"]
        );
        assert_eq!(
            get(&r, "main_test.example_test_3.test_2").diagnostics,
            ["test_2: FAIL"]
        );
        assert_eq!(
            statuses(&get(&r, "main_test").subtests),
            [Status::Pass, Status::Pass, Status::Fail]
        );
        assert_eq!(r.counts(), counts(3, 1, 2, 0, 0));
    }

    #[test]
    fn parent_ok_with_failed_subtest_fails() {
        let r = parse(
            "KTAP version 1\n1..1\n  KTAP version 1\n  1..2\n  ok 1 a\n  not ok 2 b\nok 1 suite\n",
        );
        assert_eq!(r.tests[0].status, Status::Fail);
        assert_eq!(
            r.problems,
            ["line 7: suite: reported pass but a subtest failed"]
        );
        let r = parse("KTAP version 1\n1..1\n  KTAP version 1\n  1..2\n  ok 1 a # SKIP\n  ok 2 b\nok 1 suite\n");
        assert_eq!(r.tests[0].status, Status::Pass);
        assert!(r.passed());
    }

    #[test]
    fn result_line_directives() {
        let doc = "KTAP version 1\n1..8\nok 1 a # skip: lowercase\nnot ok 2 - b # TODO not yet\nok 3 c # XFAIL known\n\
                   not ok 4 d # ERROR setup failed\nok 5 check return code # rcode=0\nok 6\nnot ok 7 e # TIMEOUT\n\
                   ok 8 f # SKIP \n";
        let r = parse(doc);
        let got: Vec<(&str, Status, Option<&str>)> = r
            .tests
            .iter()
            .map(|t| (t.name.as_str(), t.status, t.directive_reason.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", Status::Skip, Some("lowercase")),
                ("b", Status::Xfail, Some("not yet")),
                ("c", Status::Xfail, Some("known")),
                ("d", Status::Error, Some("setup failed")),
                ("check return code", Status::Pass, Some("rcode=0")),
                ("", Status::Pass, None),
                ("e", Status::Timeout, None),
                ("f", Status::Skip, None),
            ]
        );
        assert_eq!(r.counts(), counts(4, 2, 2, 0, 0), "xfail counts as passed");
    }

    #[test]
    fn timestamp_variants() {
        let plain = "KTAP version 1\n1..1\nok 1 a\n";
        let caller = "[    1.000001][    T1] KTAP version 1\n[    1.000002][    T1] 1..1\n[    1.000003][    T1] ok 1 a\n";
        let wide = "[12345.000001] KTAP version 1\n[12345.000002] 1..1\n[12345.000003] ok 1 a\n";
        for log in [plain, caller, wide] {
            let r = parse(log);
            assert!(
                r.complete && r.passed() && r.problems.is_empty(),
                "{log}: {:?}",
                r.problems
            );
            assert_eq!(r.tests[0].name, "a");
        }
    }

    #[test]
    fn nested_block_without_any_header() {
        let r = parse("KTAP version 1\n1..1\n  ok 1 a\n  not ok 2 b\nnot ok 1 suite\n");
        assert_eq!(
            statuses(&get(&r, "suite").subtests),
            [Status::Pass, Status::Fail]
        );
        assert!(r.complete);
        assert_eq!(r.problems, ["suite: missing plan"]);
    }

    #[test]
    fn crash_after_completion_is_ignored() {
        let log = format!(
            "{ALL_PASSED}[    9.000000] Kernel panic - not syncing: Attempted to kill init!\n"
        );
        assert_eq!(parse(&log), parse(ALL_PASSED));
    }

    #[test]
    fn second_document_is_ignored() {
        let log = format!("{ALL_PASSED}[    9.000000] KTAP version 1\n[    9.000001] 1..1\n[    9.000002] not ok 1 x\n");
        let r = parse(&log);
        assert!(r.passed());
        assert_eq!(r.tests, parse(ALL_PASSED).tests);
        assert!(r.problems[0].ends_with("ignoring a second KTAP document"));
    }

    #[test]
    fn bail_out_stops_parsing() {
        let r = parse("TAP version 14\n1..3\nok 1 a\nBail out! no /proc\nok 2 b\n");
        assert_eq!(
            statuses(&r.tests),
            [Status::Pass, Status::Crashed, Status::NotRun]
        );
        assert_eq!(
            r.tests[1].directive_reason.as_deref(),
            Some("Bail out! no /proc")
        );
        assert!(!r.complete);
    }

    #[test]
    fn missing_result_line_of_nested_block() {
        let doc = "KTAP version 1\n1..1\n  KTAP version 1\n  # Subtest: outer\n  1..2\n  ok 1 a\n    KTAP version 1\n    \
                   # Subtest: inner\n    1..1\n    ok 1 x\nok 1 outer\n";
        let r = parse(doc);
        let outer = get(&r, "outer");
        assert_eq!(outer.status, Status::Fail);
        assert_eq!(statuses(&outer.subtests), [Status::Pass, Status::Crashed]);
        assert_eq!(
            get(&r, "outer.inner").directive_reason.as_deref(),
            Some("missing result line")
        );
        assert_eq!(get(&r, "outer.inner.x").status, Status::Pass);
        assert!(!r.complete && !r.passed());
        assert_eq!(
            r.problems,
            [
                "line 11: outer.inner: missing result line",
                "line 11: outer: reported pass but a subtest failed"
            ]
        );
    }

    /// One test as the guest's runner reports it, and what the host must read back.
    struct Written {
        name: &'static str,
        outcome: crate::guest_ktap::Outcome,
        diags: &'static [&'static str],
        status: Status,
    }

    // Expect what the guest's KTAP writer (tests/guest/src/ktap.rs, compiled into this test)
    // prints, as the serial console shows it (printk timestamps, kernel lines in between,
    // the runner's own lines around it), to parse back into the tree it was driven with:
    // names (sanitised as the writer does), statuses, skip reasons, diagnostics, plans, the
    // writer's counters, and the same KTAP text again.
    #[test]
    fn guest_writer_into_host_parser() {
        use crate::guest_ktap::{Capture, Ktap, Outcome, MAX_LINE};
        let long = "x".repeat(2 * MAX_LINE);
        let long: &'static str = Box::leak(long.into_boxed_str());
        let long_diag: &'static [&'static str] = Box::leak(Box::new([long]));
        let suites: Vec<(&str, Outcome, Vec<Written>)> = vec![
            (
                "boot",
                Outcome::Fail,
                vec![
                    Written {
                        name: "kernel_release_matches",
                        outcome: Outcome::Pass,
                        diags: &["uname -r: 6.12.117"],
                        status: Status::Pass,
                    },
                    Written {
                        name: "proc_version_matches",
                        outcome: Outcome::Fail,
                        diags: &["FAIL: /proc/version: expected \"6.12.117\", got \"6.11.0\""],
                        status: Status::Fail,
                    },
                    Written {
                        name: "online_cpus_consistent",
                        outcome: Outcome::Skip("one CPU # only\nhere".into()),
                        diags: &[],
                        status: Status::Skip,
                    },
                ],
            ),
            (
                "lags_iface",
                Outcome::Pass,
                vec![
                    Written {
                        name: "cpu_lags_read#write",
                        outcome: Outcome::Pass,
                        diags: long_diag,
                        status: Status::Pass,
                    },
                    Written {
                        name: "debugfs_tunables",
                        outcome: Outcome::Pass,
                        diags: &["debugfs_tunables took 1203 ms", "# nested hash"],
                        status: Status::Pass,
                    },
                ],
            ),
            (
                "lags_monitor",
                Outcome::Skip("no lags_monitor.ko".into()),
                vec![Written {
                    name: "load_module",
                    outcome: Outcome::Skip("no lags_monitor.ko".into()),
                    diags: &[],
                    status: Status::Skip,
                }],
            ),
        ];
        let cap = Capture::default();
        let mut k = Ktap::new(Box::new(cap.clone()));
        k.raw("lags-init: start");
        k.header(suites.len() + 1);
        for (i, (suite, outcome, tests)) in suites.iter().enumerate() {
            k.begin_suite(suite, tests.len());
            for (j, t) in tests.iter().enumerate() {
                for d in t.diags {
                    k.diag(d);
                }
                k.test_result(j + 1, t.name, &t.outcome);
            }
            k.end_suite(i + 1, suite, outcome);
        }
        k.broken_suite(suites.len() + 1, "sched_nope", "unknown suite sched_nope");
        k.raw("lags-init: done passed=4 failed=2 skipped=2");
        let written = cap.0.borrow().clone();
        assert!(written.iter().all(|l| l.len() <= MAX_LINE));

        // The console: printk timestamps on every line, and kernel lines in between.
        let mut console = String::from("[    0.000000] Linux version 6.12.117\n");
        for (i, line) in written.iter().enumerate() {
            let _ = writeln!(console, "[    1.{:06}] {line}", 1000 + 7 * i);
            if i % 4 == 2 {
                console.push_str("[    1.500000] random: crng init done\n");
            }
        }
        let r = parse(&console);
        assert_eq!(r.version, "KTAP version 1");
        assert_eq!(r.plan, Some(4));
        assert!(r.complete, "{:?}", r.problems);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert!(!r.passed());
        let top: Vec<(&str, Status)> = r
            .tests
            .iter()
            .map(|t| (t.name.as_str(), t.status))
            .collect();
        assert_eq!(
            top,
            [
                ("boot", Status::Fail),
                ("lags_iface", Status::Pass),
                ("lags_monitor", Status::Skip),
                ("sched_nope", Status::Fail),
            ]
        );
        assert_eq!(
            r.tests[2].directive_reason.as_deref(),
            Some("no lags_monitor.ko")
        );
        assert_eq!(r.tests[3].diagnostics, ["unknown suite sched_nope"]);
        for (suite, (_, _, tests)) in r.tests.iter().zip(&suites) {
            assert_eq!(suite.plan, Some(tests.len() as u32), "{}", suite.name);
            assert_eq!(suite.subtests.len(), tests.len(), "{}", suite.name);
            for (j, (got, want)) in suite.subtests.iter().zip(tests).enumerate() {
                let what = format!("{}.{}", suite.name, want.name);
                assert_eq!(got.number, j as u32 + 1, "{what}");
                assert_eq!(got.name, want.name.replace('#', "_"), "{what}");
                assert_eq!(got.status, want.status, "{what}");
                let reason = match &want.outcome {
                    Outcome::Skip(r) => Some(r.replace('#', "_").replace('\n', " ")),
                    _ => None,
                };
                assert_eq!(got.directive_reason, reason, "{what}");
                let diags: Vec<String> = want
                    .diags
                    .iter()
                    .map(|d| {
                        crate::guest_ktap::truncate(&format!("  # {d}"), MAX_LINE)[4..].to_owned()
                    })
                    .collect();
                assert_eq!(got.diagnostics, diags, "{what}");
            }
        }
        let c = r.counts();
        assert_eq!(
            (c.passed, c.failed, c.skipped, c.total),
            (k.passed as u32, k.failed as u32, k.skipped as u32, 7)
        );
        // The host's own KTAP of the parsed report is the writer's text, line for line.
        let ktap: Vec<&str> = written
            .iter()
            .map(String::as_str)
            .filter(|l| !l.starts_with("lags-init:"))
            .collect();
        assert_eq!(r.to_ktap().lines().collect::<Vec<_>>(), ktap);
    }

    #[test]
    fn serializes_lowercase_statuses() {
        let json = serde_json::to_value(parse(TRUNCATED)).unwrap();
        let suite = &json["tests"][1];
        assert_eq!(suite["status"], "crashed");
        assert_eq!(suite["subtests"][0]["status"], "pass");
        assert_eq!(suite["subtests"][3]["status"], "notrun");
        assert!(suite["subtests"][0].get("kernel_log").is_none());
        assert_eq!(json["complete"], false);
    }
}
