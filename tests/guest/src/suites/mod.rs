// SPDX-License-Identifier: GPL-2.0
//! The suite table and the machinery to run one suite: every suite is a static table of
//! `(name, fn)` tests, so its KTAP plan is known before anything runs; every test runs under
//! `catch_unwind`; suite-scoped state (mounts, loaded modules, results shared between
//! tests) lives in a [`Stash`] that is dropped, and so cleaned up, when the suite ends.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Display;
use std::panic::{self, AssertUnwindSafe};

use crate::ktap::{Ktap, Outcome};
use crate::util;
use crate::Config;

pub mod boot;
pub mod cgroup;
pub mod lags_behaviour;
pub mod lags_guarantees;
pub mod lags_hostile;
pub mod lags_iface;
pub mod lags_monitor;
pub mod lags_smp;
pub mod lags_stress;
pub mod lags_v1;
pub mod module;
pub mod stops;

/// All suites, in the default order. `lags_v1` must run before `cgroup` (which binds the
/// cpu controller to cgroup v2 by enabling it there).
pub const ALL: &[Suite] = &[
    boot::SUITE,
    lags_v1::SUITE,
    cgroup::SUITE,
    module::SUITE,
    lags_iface::SUITE,
    lags_smp::SUITE,
    lags_behaviour::SUITE,
    lags_guarantees::SUITE,
    lags_monitor::SUITE,
];

/// Long robustness suites (`cargo xtask robustness`): not in the default list, they run
/// only when named in `lags.suites=`.
pub const EXTRA: &[Suite] = &[lags_stress::SUITE, lags_hostile::SUITE];

/// Looks a suite up by name (default and extra suites).
pub fn find(name: &str) -> Option<&'static Suite> {
    ALL.iter().chain(EXTRA).find(|s| s.name == name)
}

pub struct Suite {
    pub name: &'static str,
    pub tests: &'static [Test],
}

pub struct Test {
    pub name: &'static str,
    pub run: fn(&mut Ctx) -> TestResult,
}

/// Why a test stopped early.
#[derive(Debug)]
pub enum Stop {
    /// The test failed; the message says what was expected and what was seen.
    Fail(String),
    /// The test does not apply; the message is the SKIP reason.
    Skip(String),
}

pub type TestResult = Result<(), Stop>;

/// Stops the test with a failure.
pub fn fail<T>(msg: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Fail(msg.into()))
}

/// Stops the test with a skip.
pub fn skip<T>(reason: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Skip(reason.into()))
}

/// `ensure!(cond, "fmt", args…)`: fail the test with the message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::suites::Stop::Fail(format!($($fmt)+)));
        }
    };
}
pub(crate) use ensure;

/// Turns errors into test failures with context: `x.or_fail("reading cpu.lags")?`.
pub trait OrFail<T> {
    fn or_fail(self, what: &str) -> Result<T, Stop>;
}

impl<T> OrFail<T> for std::io::Result<T> {
    fn or_fail(self, what: &str) -> Result<T, Stop> {
        self.map_err(|e| Stop::Fail(format!("{what}: {}", util::describe_err(&e))))
    }
}

impl<T> OrFail<T> for Result<T, String> {
    fn or_fail(self, what: &str) -> Result<T, Stop> {
        self.map_err(|e| Stop::Fail(format!("{what}: {e}")))
    }
}

impl<T> OrFail<T> for Option<T> {
    fn or_fail(self, what: &str) -> Result<T, Stop> {
        self.ok_or_else(|| Stop::Fail(what.to_owned()))
    }
}

/// Suite-scoped values, one per type.
#[derive(Default)]
pub struct Stash(HashMap<TypeId, Box<dyn Any>>);

impl Stash {
    pub fn put<T: Any>(&mut self, v: T) {
        self.0.insert(TypeId::of::<T>(), Box::new(v));
    }

    pub fn get<T: Any>(&mut self) -> Option<&mut T> {
        self.0.get_mut(&TypeId::of::<T>())?.downcast_mut()
    }

    pub fn take<T: Any>(&mut self) -> Option<T> {
        let b = self.0.remove(&TypeId::of::<T>())?;
        b.downcast().ok().map(|b| *b)
    }
}

/// What a test gets: the configuration, diagnostics output, soft checks and the stash.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub stash: &'a mut Stash,
    out: &'a mut Ktap,
    soft_failures: usize,
}

impl Ctx<'_> {
    /// A `# ` diagnostic line (measurements, context).
    pub fn diag(&mut self, msg: impl AsRef<str>) {
        self.out.diag(msg.as_ref());
    }

    /// A check that does not stop the test: on failure, print the message and mark the test
    /// failed, then carry on (so one run shows every broken case). Returns `ok`.
    pub fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) -> bool {
        if !ok {
            self.soft_failures += 1;
            self.out.diag(&format!("FAIL: {}", msg()));
        }
        ok
    }

    /// A soft check of equality, printing `what: expected …, got …` on mismatch.
    pub fn check_eq<T: PartialEq + Display>(&mut self, what: &str, got: T, expected: T) -> bool {
        let ok = got == expected;
        self.check(ok, || format!("{what}: expected {expected}, got {got}"))
    }
}

/// A one-shot callback into the runner (fault injection).
pub type Hook<'a> = Box<dyn FnOnce(&mut Ktap) + 'a>;

/// Callbacks the runner wants at certain points of the run.
pub struct RunHooks<'a> {
    /// Called once after the first test result of the run has been printed.
    pub after_first_result: Option<Hook<'a>>,
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    };
    match crate::take_panic_location() {
        Some(loc) => format!("{msg} (at {loc})"),
        None => msg,
    }
}

fn flush_warnings(out: &mut Ktap) {
    for w in util::take_warnings() {
        out.diag(&w);
    }
}

/// Runs one suite as a nested KTAP block and returns its outcome (the caller prints the
/// suite's result line).
pub fn run_suite(suite: &Suite, cfg: &Config, out: &mut Ktap, hooks: &mut RunHooks) -> Outcome {
    out.begin_suite(suite.name, suite.tests.len());
    let mut stash = Stash::default();
    let mut any_failed = false;
    let mut skip_reasons: Vec<String> = Vec::new();

    for (i, test) in suite.tests.iter().enumerate() {
        let mut ctx = Ctx {
            cfg,
            stash: &mut stash,
            out: &mut *out,
            soft_failures: 0,
        };
        if !cfg.selects(suite.name, test.name) {
            skip_reasons.push("not selected by lags.tests=".into());
            out.test_result(
                i + 1,
                test.name,
                &Outcome::Skip("not selected by lags.tests=".into()),
            );
            continue;
        }
        let started = util::now_ns();
        let result = panic::catch_unwind(AssertUnwindSafe(|| (test.run)(&mut ctx)));
        let soft = ctx.soft_failures;
        flush_warnings(out);
        let outcome = match result {
            Ok(Ok(())) if soft == 0 => Outcome::Pass,
            Ok(Ok(())) => Outcome::Fail,
            Ok(Err(Stop::Fail(msg))) => {
                out.diag(&format!("FAIL: {msg}"));
                Outcome::Fail
            }
            Ok(Err(Stop::Skip(reason))) if soft == 0 => Outcome::Skip(reason),
            Ok(Err(Stop::Skip(reason))) => {
                out.diag(&format!("(stopped early: {reason})"));
                Outcome::Fail
            }
            Err(payload) => {
                out.diag(&format!("FAIL: test panicked: {}", panic_text(&*payload)));
                Outcome::Fail
            }
        };
        let took = util::now_ns() - started;
        if took > 1_000_000_000 {
            out.diag(&format!("{} took {}", test.name, util::ms(took)));
        }
        match &outcome {
            Outcome::Fail => any_failed = true,
            Outcome::Skip(r) => skip_reasons.push(r.clone()),
            Outcome::Pass => {}
        }
        out.test_result(i + 1, test.name, &outcome);
        if let Some(hook) = hooks.after_first_result.take() {
            hook(out);
        }
    }

    // Suite-scoped guards (mounts, modules) clean up here.
    drop(stash);
    flush_warnings(out);

    if any_failed {
        Outcome::Fail
    } else if !suite.tests.is_empty() && skip_reasons.len() == suite.tests.len() {
        // The first test's reason is the root cause (later ones usually refer to it).
        Outcome::Skip(skip_reasons.swap_remove(0))
    } else {
        Outcome::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktap::Capture;

    fn t_pass(_: &mut Ctx) -> TestResult {
        Ok(())
    }
    fn t_soft(ctx: &mut Ctx) -> TestResult {
        ctx.check_eq("value", 1, 2);
        Ok(())
    }
    fn t_skip(_: &mut Ctx) -> TestResult {
        skip("not here")
    }
    fn t_panic(_: &mut Ctx) -> TestResult {
        panic!("boom");
    }
    fn t_ensure(_: &mut Ctx) -> TestResult {
        ensure!(1 + 1 == 3, "math: expected {}, got {}", 3, 2);
        Ok(())
    }

    const MIXED: Suite = Suite {
        name: "mixed",
        tests: &[
            Test {
                name: "pass",
                run: t_pass,
            },
            Test {
                name: "soft",
                run: t_soft,
            },
            Test {
                name: "skipped",
                run: t_skip,
            },
            Test {
                name: "panics",
                run: t_panic,
            },
            Test {
                name: "ensure",
                run: t_ensure,
            },
        ],
    };

    const ALL_SKIP: Suite = Suite {
        name: "allskip",
        tests: &[
            Test {
                name: "a",
                run: t_skip,
            },
            Test {
                name: "b",
                run: t_skip,
            },
        ],
    };

    // Expect soft checks, panics and ensure! to give `not ok` with diagnostics, a skip to
    // carry its reason, and the fault hook to run once, right after the first result.
    #[test]
    fn runner_outcomes() {
        let cap = Capture::default();
        let mut out = Ktap::new(Box::new(cap.clone()));
        let cfg = Config::default();
        let hook_ran = std::cell::Cell::new(0);
        let mut hooks = RunHooks {
            after_first_result: Some(Box::new(|k: &mut Ktap| {
                hook_ran.set(hook_ran.get() + 1);
                k.raw("HOOK");
            })),
        };
        let o = run_suite(&MIXED, &cfg, &mut out, &mut hooks);
        assert_eq!(o, Outcome::Fail);
        assert_eq!(hook_ran.get(), 1);
        let lines = cap.0.borrow().clone();
        let pos = |s: &str| lines.iter().position(|l| l == s).unwrap();
        assert_eq!(pos("HOOK"), pos("  ok 1 pass") + 1);
        assert!(lines.contains(&"  # FAIL: value: expected 2, got 1".to_owned()));
        assert!(lines.contains(&"  not ok 2 soft".to_owned()));
        assert!(lines.contains(&"  ok 3 skipped # SKIP not here".to_owned()));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("  # FAIL: test panicked: boom")));
        assert!(lines.contains(&"  not ok 4 panics".to_owned()));
        assert!(lines.contains(&"  # FAIL: math: expected 3, got 2".to_owned()));
        assert_eq!((out.passed, out.failed, out.skipped), (1, 3, 1));
    }

    // Expect a suite whose tests all skip to be a skipped suite with the common reason.
    #[test]
    fn all_skipped_suite() {
        let cap = Capture::default();
        let mut out = Ktap::new(Box::new(cap));
        let cfg = Config::default();
        let mut hooks = RunHooks {
            after_first_result: None,
        };
        let o = run_suite(&ALL_SKIP, &cfg, &mut out, &mut hooks);
        assert_eq!(o, Outcome::Skip("not here".into()));
    }

    // Expect every suite and test name to be lowercase snake_case and unique.
    #[test]
    fn names_are_snake_case() {
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        let mut suites = std::collections::HashSet::new();
        for s in ALL.iter().chain(EXTRA) {
            assert!(ok(s.name), "suite {}", s.name);
            assert!(suites.insert(s.name));
            let mut tests = std::collections::HashSet::new();
            for t in s.tests {
                assert!(ok(t.name), "test {}", t.name);
                assert!(tests.insert(t.name), "duplicate {}", t.name);
            }
        }
    }
}
