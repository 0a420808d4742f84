// SPDX-License-Identifier: GPL-2.0
//! The test runner's options (`lags.*` kernel parameters) and suite names.
//!
//! The host writes [`RunnerOptions::to_cmdline`]; the runner reads
//! [`RunnerOptions::from_cmdline`]. `tests/guest/README.md` lists the keys for people.

use crate::cmdline::{kstrtobool, params, parse_bool};

/// The default suites, in the order the runner runs them (`lags.suites=` absent).
/// `lags_v1` comes before `cgroup`: the cpu controller can be mounted on cgroup v1 only
/// while v2 does not use it.
pub const DEFAULT_SUITES: &[&str] = &[
    "boot",
    "lags_v1",
    "cgroup",
    "module",
    "lags_iface",
    "lags_smp",
    "lags_behaviour",
    "lags_guarantees",
    "lags_monitor",
];

/// The timing-sensitive suites: `qemu-test` runs them in a boot of their own.
pub const TIMING_SUITES: &[&str] = &["lags_behaviour", "lags_guarantees"];

/// The long robustness suites: never in the default list, run only when named.
pub const ROBUSTNESS_SUITES: &[&str] = &["lags_stress", "lags_hostile"];

/// The suite the `sched_lags=off` boot runs.
pub const IFACE_SUITE: &str = "lags_iface";

/// `lags.vm=1`: VM mode for `cargo xtask vm` (no suites; run `/vm/cmd`).
pub const VM_PARAM: &str = "lags.vm=1";

/// Fault injection for testing the host side (`lags.fault=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    #[default]
    None,
    /// Crash the kernel (sysrq `c`) after the first test result.
    Panic,
    /// Print nothing more and sleep forever after the first test result.
    Hang,
    /// Oops in a child process (needs CONFIG_LKDTM) after the first result, then carry on.
    Oops,
}

impl Fault {
    /// The value of `lags.fault=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Panic => "panic",
            Fault::Hang => "hang",
            Fault::Oops => "oops",
        }
    }

    fn parse(v: &str) -> Option<Fault> {
        match v {
            "panic" => Some(Fault::Panic),
            "hang" => Some(Fault::Hang),
            "oops" => Some(Fault::Oops),
            "none" | "" => Some(Fault::None),
            _ => None,
        }
    }
}

/// Runner options, from the kernel command line.
#[derive(Clone, Debug, PartialEq)]
pub struct RunnerOptions {
    /// Suites to run in this order (`lags.suites=`); `None` means all, in the default
    /// order; an empty list (`none`) runs no suite. Entries `-name` exclude a suite from
    /// the default list.
    pub suites: Option<Vec<String>>,
    /// Tests to run (`lags.tests=`), each `test` or `suite.test`; `None` runs every test
    /// of the selected suites. The others are reported as skipped.
    pub tests: Option<Vec<String>>,
    /// Expected prefix of the kernel release (`lags.expect_version=`).
    pub expect_version: Option<String>,
    /// Whether the kernel is built with CONFIG_SCHED_LAGS (`lags.expect_lags=`, default 1).
    pub expect_lags: bool,
    /// `lags.fault=`.
    pub fault: Fault,
    /// The kernel was booted with `sched_lags=off` (or `=0`, `=n`): the kernel's own flag,
    /// read as its kstrtobool() reads it.
    pub sched_lags_off: bool,
    /// Timed phases per robustness suite in seconds, in total (`lags.stress_secs=`).
    pub stress_secs: u64,
    /// PRNG seed of the hostile-input suite (`lags.seed=`; default: from the clock).
    pub seed: Option<u64>,
    /// Problems found while parsing, printed by the runner at start-up. Never written.
    pub warnings: Vec<String>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            suites: None,
            tests: None,
            expect_version: None,
            expect_lags: true,
            fault: Fault::None,
            sched_lags_off: false,
            stress_secs: 20,
            seed: None,
            warnings: Vec::new(),
        }
    }
}

impl RunnerOptions {
    /// Reads the options from a kernel command line on top of the defaults.
    pub fn from_cmdline(cmdline: &str) -> RunnerOptions {
        let mut o = RunnerOptions::default();
        o.apply_cmdline(cmdline);
        o
    }

    /// Applies the options of a command line on top of the current ones (later wins).
    /// Bad values and unknown `lags.*` keys are reported in `warnings`.
    pub fn apply_cmdline(&mut self, cmdline: &str) {
        for param in params(cmdline) {
            let (key, value) = match param.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (param.as_str(), None),
            };
            match (key, value) {
                ("lags.suites", Some(v)) => {
                    let list: Vec<String> = v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty() && *s != "none")
                        .map(str::to_owned)
                        .collect();
                    // An empty value means the default (all); "none" means no suites.
                    self.suites = (!list.is_empty() || v.trim() == "none").then_some(list);
                }
                ("lags.tests", Some(v)) => {
                    let list = test_list(v);
                    if list.is_empty() {
                        self.warnings
                            .push("ignoring an empty lags.tests= (want test or suite.test)".into());
                    } else {
                        self.tests = Some(list);
                    }
                }
                ("lags.expect_version", Some(v)) if !v.is_empty() => {
                    self.expect_version = Some(v.to_owned());
                }
                ("lags.expect_lags", Some(v)) => match parse_bool(v) {
                    Some(b) => self.expect_lags = b,
                    None => self
                        .warnings
                        .push(format!("ignoring lags.expect_lags={v:?} (want 1 or 0)")),
                },
                ("lags.fault", Some(v)) => match Fault::parse(v) {
                    Some(f) => self.fault = f,
                    None => self.warnings.push(format!(
                        "ignoring lags.fault={v:?} (want panic, hang, oops or none)"
                    )),
                },
                ("lags.stress_secs", Some(v)) => match v.parse() {
                    Ok(n) if n > 0 => self.stress_secs = n,
                    _ => self.warnings.push(format!(
                        "ignoring lags.stress_secs={v:?} (want seconds > 0)"
                    )),
                },
                ("lags.seed", Some(v)) => match v.parse() {
                    Ok(n) => self.seed = Some(n),
                    Err(_) => self
                        .warnings
                        .push(format!("ignoring lags.seed={v:?} (want an integer)")),
                },
                ("sched_lags", Some(v)) => {
                    if let Some(on) = kstrtobool(v) {
                        self.sched_lags_off = !on;
                    }
                }
                (k, _) if k.starts_with("lags.") => {
                    self.warnings
                        .push(format!("ignoring unknown runner option {param:?}"));
                }
                _ => {}
            }
        }
    }

    /// The kernel parameters that give these options, in a fixed order:
    /// `lags.expect_version`, `lags.expect_lags` (always written, so every boot's command
    /// line says which kernel the runner expects), then `lags.fault`, `lags.stress_secs`,
    /// `lags.seed`, `sched_lags=off`, `lags.suites` and `lags.tests` where they differ from
    /// the defaults.
    pub fn to_cmdline(&self) -> Vec<String> {
        let d = RunnerOptions::default();
        let mut v = Vec::new();
        if let Some(x) = &self.expect_version {
            v.push(format!("lags.expect_version={x}"));
        }
        v.push(format!("lags.expect_lags={}", u8::from(self.expect_lags)));
        if self.fault != d.fault {
            v.push(format!("lags.fault={}", self.fault.as_str()));
        }
        if self.stress_secs != d.stress_secs {
            v.push(format!("lags.stress_secs={}", self.stress_secs));
        }
        if let Some(s) = self.seed {
            v.push(format!("lags.seed={s}"));
        }
        if self.sched_lags_off {
            v.push("sched_lags=off".into());
        }
        if let Some(list) = &self.suites {
            v.push(suites_param(list));
        }
        if let Some(list) = &self.tests {
            v.push(format!("lags.tests={}", list.join(",")));
        }
        v
    }

    /// Whether `lags.tests=` selects test `test` of suite `suite` (everything without it).
    pub fn selects(&self, suite: &str, test: &str) -> bool {
        self.tests
            .as_ref()
            .is_none_or(|list| list.iter().any(|t| test_entry_matches(t, suite, test)))
    }
}

/// The entries of a `lags.tests=` value (or of `qemu-test --tests`), empty ones dropped.
pub fn test_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether one `lags.tests=` entry (`test` or `suite.test`) names test `test` of `suite`.
pub fn test_entry_matches(entry: &str, suite: &str, test: &str) -> bool {
    match entry.split_once('.') {
        Some((s, n)) => s == suite && n == test,
        None => entry == test,
    }
}

/// `lags.suites=a,b` (or `lags.suites=none` for an empty list).
pub fn suites_param<S: AsRef<str>>(list: &[S]) -> String {
    if list.is_empty() {
        return "lags.suites=none".into();
    }
    let names: Vec<&str> = list.iter().map(AsRef::as_ref).collect();
    format!("lags.suites={}", names.join(","))
}

/// `lags.suites=-a,-b`: the default list without these suites.
pub fn excluding_param<S: AsRef<str>>(list: &[S]) -> String {
    let names: Vec<String> = list.iter().map(|s| format!("-{}", s.as_ref())).collect();
    format!("lags.suites={}", names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect options written by the host to read back the same in the guest.
    #[test]
    fn round_trip() {
        let cases = [
            RunnerOptions::default(),
            RunnerOptions {
                suites: Some(vec!["cgroup".into(), "boot".into()]),
                expect_version: Some("6.12.117".into()),
                expect_lags: false,
                fault: Fault::Hang,
                sched_lags_off: true,
                stress_secs: 5,
                seed: Some(7),
                tests: Some(vec!["lags_guarantees.weights_respected".into(), "x".into()]),
                warnings: vec![],
            },
            RunnerOptions {
                suites: Some(vec![]),
                fault: Fault::Oops,
                ..RunnerOptions::default()
            },
            RunnerOptions {
                suites: Some(vec!["-lags_behaviour".into(), "-lags_guarantees".into()]),
                fault: Fault::Panic,
                ..RunnerOptions::default()
            },
        ];
        for o in cases {
            let line = o.to_cmdline().join(" ");
            assert_eq!(RunnerOptions::from_cmdline(&line), o, "{line}");
        }
        assert_eq!(
            RunnerOptions::default().to_cmdline(),
            ["lags.expect_lags=1"]
        );
    }

    // Expect the exact parameters qemu-test has always written.
    #[test]
    fn parameter_spelling() {
        let o = RunnerOptions {
            expect_version: Some("6.12.117".into()),
            expect_lags: true,
            ..RunnerOptions::default()
        };
        assert_eq!(
            o.to_cmdline(),
            ["lags.expect_version=6.12.117", "lags.expect_lags=1"]
        );
        assert_eq!(
            suites_param(TIMING_SUITES),
            "lags.suites=lags_behaviour,lags_guarantees"
        );
        assert_eq!(
            excluding_param(TIMING_SUITES),
            "lags.suites=-lags_behaviour,-lags_guarantees"
        );
        assert_eq!(suites_param::<&str>(&[]), "lags.suites=none");
    }

    // Expect bad values and unknown keys to be reported, not silently taken.
    #[test]
    fn warnings() {
        let o = RunnerOptions::from_cmdline(
            "lags.expect_lags=maybe lags.fault=boom lags.colour=red lags.seed=x",
        );
        assert_eq!(o.warnings.len(), 4, "{:?}", o.warnings);
        assert!(o.expect_lags);
        assert_eq!(o.fault, Fault::None);
    }

    // Expect lags.tests= to select by test name or by suite.test, and nothing else.
    #[test]
    fn test_selection() {
        let all = RunnerOptions::default();
        assert!(all.selects("boot", "anything"));
        let o = RunnerOptions::from_cmdline(
            "lags.tests=lags_guarantees.lag_bounded_extreme_weights,kernel_version",
        );
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);
        assert!(o.selects("lags_guarantees", "lag_bounded_extreme_weights"));
        assert!(!o.selects("lags_behaviour", "lag_bounded_extreme_weights"));
        assert!(!o.selects("lags_guarantees", "weights_respected"));
        assert!(o.selects("boot", "kernel_version"));
        assert!(o.selects("other", "kernel_version"));
        let empty = RunnerOptions::from_cmdline("lags.tests=,");
        assert_eq!(empty.tests, None);
        assert_eq!(empty.warnings.len(), 1, "{:?}", empty.warnings);
    }
}
