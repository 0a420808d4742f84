// SPDX-License-Identifier: GPL-2.0
//! `lags-init`: the in-guest test runner for LAGS.
//!
//! In the QEMU guest this binary is `/init` (PID 1 of an initramfs). It mounts the kernel
//! filesystems, reads its options from the kernel command line (`lags.*` keys, see
//! [`Config::from_cmdline`]), runs the selected suites against the booted kernel, prints KTAP
//! v1 to `/dev/kmsg` (which the host reads from the serial console), and reboots, which
//! makes QEMU (`-no-reboot`) exit. PID 1 must never return, so every path ends in
//! [`power_off`].
//!
//! With `lags.vm=1` on the command line it runs a command or shell for `cargo xtask vm`
//! instead (see [`vm`]).
//!
//! On a development host, `lags-init --no-pid1 --suites boot,cgroup` runs the same suites
//! without mounting or rebooting and prints KTAP to stdout.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

mod ktap;
mod suites;
mod util;
mod vm;

use ktap::{Ktap, Sink};
use lags_pid1::init::{ensure_std_fds, power_off};

// ---------------------------------------------------------------------------------------
// Configuration

pub use lags_proto::runner::{Fault, RunnerOptions};

/// Runner options: the contract's [`RunnerOptions`] from the kernel command line (and,
/// off-guest, from arguments), read through `Deref`, plus what only the runner knows.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub opts: RunnerOptions,
    /// Running as PID 1 in the test guest: allowed to do things that would disturb a real
    /// system (freeing the cpu controller from cgroup v2, crashing the kernel).
    pub in_guest: bool,
}

impl std::ops::Deref for Config {
    type Target = RunnerOptions;
    fn deref(&self) -> &RunnerOptions {
        &self.opts
    }
}

impl std::ops::DerefMut for Config {
    fn deref_mut(&mut self) -> &mut RunnerOptions {
        &mut self.opts
    }
}

/// Splits a kernel command line into parameters (kernel quoting; stops at `--`).
pub use lags_proto::cmdline::params as cmdline_params;

impl Config {
    /// Reads the runner options from a kernel command line (see [`RunnerOptions`] and
    /// `tests/guest/README.md`).
    pub fn from_cmdline(cmdline: &str) -> Config {
        Config {
            opts: RunnerOptions::from_cmdline(cmdline),
            in_guest: false,
        }
    }

    /// Applies the options of a command line on top of the current ones (later wins).
    pub fn apply_cmdline(&mut self, cmdline: &str) {
        self.opts.apply_cmdline(cmdline);
    }

    /// The suites to run, resolving "all". A list of only `-name` entries means "all but
    /// these" (the host runs the timing-sensitive suite in a boot of its own that way).
    pub fn suite_names(&self) -> Vec<String> {
        match &self.suites {
            Some(list) if !list.is_empty() && list.iter().all(|s| s.starts_with('-')) => {
                suites::ALL
                    .iter()
                    .map(|s| s.name.to_owned())
                    .filter(|n| !list.iter().any(|x| x[1..] == *n))
                    .collect()
            }
            Some(list) => list.clone(),
            None => suites::ALL.iter().map(|s| s.name.to_owned()).collect(),
        }
    }

    fn summary(&self) -> String {
        format!(
            "suites={} tests={} expect_version={} expect_lags={} fault={:?} sched_lags_off={}",
            self.suite_names().join(","),
            self.tests.as_ref().map_or("all".into(), |t| t.join(",")),
            self.expect_version.as_deref().unwrap_or("(none)"),
            u8::from(self.expect_lags),
            self.fault,
            self.sched_lags_off
        )
        .to_lowercase()
    }
}

// ---------------------------------------------------------------------------------------
// Panic hook: remember where a test panicked instead of printing to the console

thread_local! {
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the default panic hook (which prints to stderr, i.e. the raw console) with one
/// that only records the location; the runner prints it as a KTAP diagnostic.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        PANIC_LOCATION.with(|p| *p.borrow_mut() = loc);
    }));
}

/// The location of the last panic on this thread, if the hook recorded one.
pub fn take_panic_location() -> Option<String> {
    PANIC_LOCATION.with(|p| p.borrow_mut().take())
}

// ---------------------------------------------------------------------------------------
// Output sinks

/// Guest output: one `write()` per line to `/dev/kmsg` as `<6>line`, or plain lines to
/// `/dev/console` if kmsg is unavailable.
struct GuestSink {
    kmsg: Option<File>,
    console: Option<File>,
}

impl Sink for GuestSink {
    fn line(&mut self, line: &str) {
        if let Some(k) = &self.kmsg {
            if util::write_once(k, format!("<6>{line}\n").as_bytes()).is_ok() {
                return;
            }
        }
        if let Some(c) = &self.console {
            let _ = util::write_once(c, format!("{line}\n").as_bytes());
        }
    }
}

/// Development output: stdout, flushed per line.
struct StdoutSink;

impl Sink for StdoutSink {
    fn line(&mut self, line: &str) {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

// ---------------------------------------------------------------------------------------
// Guest set-up

/// Mounts the kernel filesystems (`lags_pid1::init::MOUNTS`); returns messages for the ones
/// that failed. Makes sure `/mnt` and `/tmp` exist.
fn mount_all() -> Vec<String> {
    let msgs = lags_pid1::init::mount_all("lags-init", lags_pid1::init::MOUNTS);
    for dir in ["/mnt", "/tmp"] {
        let _ = std::fs::create_dir_all(dir);
    }
    msgs
}

/// `/dev/kmsg` writes from user space are rate-limited unless `printk.devkmsg=on`; if the
/// host forgot it, switch it on (it is locked only when set on the command line).
/// Returns whether kmsg is usable (not rate-limited) and a message if something was done.
fn ensure_devkmsg_on() -> (bool, Option<String>) {
    let path = "/proc/sys/kernel/printk_devkmsg";
    let Ok(cur) = util::read_trimmed(path) else {
        return (true, None);
    };
    if cur == "on" {
        return (true, None);
    }
    match util::write_file(path, "on") {
        Ok(()) => (
            true,
            Some(format!("lags-init: printk_devkmsg was {cur:?}; switched it on")),
        ),
        Err(e) => (
            false,
            Some(format!(
                "lags-init: printk_devkmsg is {cur:?} and cannot be changed ({}); writing to /dev/console instead (pass printk.devkmsg=on)",
                util::describe_err(&e)
            )),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Fault injection

fn inject_fault(fault: Fault, in_guest: bool, out: &mut Ktap) {
    match fault {
        Fault::None => {}
        Fault::Hang => loop {
            // "Stops printing": no message, just never come back.
            util::sleep_ms(60_000);
        },
        Fault::Panic | Fault::Oops if !in_guest => {
            out.raw(&format!(
                "lags-init: fault={fault:?} ignored outside the guest (not PID 1)"
            ));
        }
        Fault::Panic => {
            out.raw("lags-init: fault=panic: writing 'c' to /proc/sysrq-trigger");
            let r = util::write_file("/proc/sysrq-trigger", "c");
            // Only reached if the crash did not happen (e.g. no CONFIG_MAGIC_SYSRQ): exiting
            // PID 1 panics the kernel too ("Attempted to kill init!").
            out.raw(&format!(
                "lags-init: sysrq crash did not happen ({}); exiting PID 1 to panic instead",
                util::describe(&r)
            ));
            std::process::exit(1);
        }
        Fault::Oops => {
            let direct = "/sys/kernel/debug/provoke-crash/DIRECT";
            if !util::exists(direct) {
                out.raw(&format!(
                    "lags-init: fault=oops unsupported by this kernel (no {direct}; needs CONFIG_LKDTM); continuing"
                ));
                return;
            }
            out.raw("lags-init: fault=oops: LKDTM EXCEPTION in a child process");
            match util::Worker::spawn(move |_| {
                let _ = util::write_file(direct, "EXCEPTION");
                0
            }) {
                Ok(mut w) => {
                    let _ = w.go();
                    let status = w.wait(Duration::from_secs(30));
                    out.raw(&format!("lags-init: oops child ended: {status:?}"));
                }
                Err(e) => out.raw(&format!("lags-init: fork for oops failed: {e}")),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running

/// Prints the KTAP document for the configured suites.
fn run(cfg: &Config, out: &mut Ktap) {
    let names = cfg.suite_names();
    // A lags.tests= entry that selects nothing is an error, not an all-skipped run.
    let unmatched: Vec<&String> = cfg
        .tests
        .iter()
        .flatten()
        .filter(|t| {
            !names.iter().filter_map(|n| suites::find(n)).any(|s| {
                s.tests
                    .iter()
                    .any(|x| lags_proto::runner::test_entry_matches(t, s.name, x.name))
            })
        })
        .collect();
    let first = usize::from(!unmatched.is_empty());
    out.header(names.len() + first);
    if !unmatched.is_empty() {
        let list: Vec<&str> = unmatched.iter().map(|s| s.as_str()).collect();
        out.broken_suite(
            1,
            "lags.tests",
            &format!(
                "lags.tests: {} selects no test of the suites {} (`lags-init --list` lists them)",
                list.join(","),
                names.join(",")
            ),
        );
    }
    let (fault, in_guest) = (cfg.fault, cfg.in_guest);
    let mut hooks = suites::RunHooks {
        after_first_result: (fault != Fault::None).then(|| {
            Box::new(move |k: &mut Ktap| inject_fault(fault, in_guest, k)) as suites::Hook
        }),
    };
    for (i, name) in names.iter().enumerate() {
        match suites::find(name) {
            Some(suite) => {
                let outcome = suites::run_suite(suite, cfg, out, &mut hooks);
                out.end_suite(i + 1 + first, name, &outcome);
            }
            None => {
                let known: Vec<_> = suites::ALL
                    .iter()
                    .chain(suites::EXTRA)
                    .map(|s| s.name)
                    .collect();
                out.broken_suite(
                    i + 1 + first,
                    name,
                    &format!("unknown suite {name:?}; known: {}", known.join(",")),
                );
            }
        }
    }
}

/// Runs everything, surviving a bug in the runner itself, and prints the done line.
fn run_and_summarise(cfg: &Config, out: &mut Ktap) {
    for w in &cfg.warnings {
        out.raw(&format!("lags-init: warning: {w}"));
    }
    out.raw(&format!("lags-init: config {}", cfg.summary()));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cfg, out)));
    if let Err(p) = r {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        out.raw(&format!(
            "lags-init: runner bug: panicked outside a test: {msg} (at {})",
            take_panic_location().unwrap_or_default()
        ));
        out.failed += 1;
    }
    out.raw(&format!(
        "{} passed={} failed={} skipped={}",
        lags_proto::marker::RUNNER_DONE,
        out.passed,
        out.failed,
        out.skipped
    ));
}

fn guest_main() -> ! {
    install_panic_hook();
    ensure_std_fds();
    let mut msgs = mount_all();
    let (kmsg_ok, msg) = ensure_devkmsg_on();
    msgs.extend(msg);
    // A rate-limited kmsg drops lines; the console is the better fallback then.
    let kmsg = if kmsg_ok {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .ok()
    } else {
        None
    };
    let console = if kmsg.is_none() {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/console")
            .ok()
    } else {
        None
    };
    let mut out = Ktap::new(Box::new(GuestSink { kmsg, console }));
    for m in &msgs {
        out.raw(m);
    }
    // LAGS_CMDLINE exists only to try PID 1 mode in a PID namespace on a development host
    // (`unshare --pid --fork --mount`), where /proc/cmdline is the host's.
    let cmdline = std::env::var("LAGS_CMDLINE")
        .unwrap_or_else(|_| util::read_trimmed("/proc/cmdline").unwrap_or_default());
    let mut cfg = Config::from_cmdline(&cmdline);
    cfg.in_guest = true;
    out.raw(lags_proto::marker::RUNNER_START);
    if vm::requested(&cmdline) {
        // `cargo xtask vm`: run the user's command instead of the suites.
        vm::run(&mut out);
    }
    run_and_summarise(&cfg, &mut out);
    power_off()
}

const USAGE: &str = "\
lags-init: LAGS in-guest test runner (KTAP v1)

As /init (PID 1) it takes its options from the kernel command line:
  lags.suites=a,b,c  lags.tests=t,suite.t  lags.expect_version=V  lags.expect_lags=1|0
  lags.fault=panic|hang|oops|none  (and honours sched_lags=off)

For development, not as PID 1:
  lags-init --no-pid1 [--suites a,b] [--tests t,suite.t] [--expect-version V]
                      [--expect-lags 1|0]
                      [--fault hang] [--cmdline 'kernel command line']
  lags-init --list     list suites and tests
Options given as arguments override the command line (default: /proc/cmdline).
";

fn dev_main(args: &[String]) -> i32 {
    install_panic_hook();
    let mut cmdline: Option<String> = None;
    let mut overrides: Vec<String> = Vec::new();
    let mut no_pid1 = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let r = match a.as_str() {
            "--no-pid1" => {
                no_pid1 = true;
                Ok(())
            }
            "--suites" => value(a).map(|v| overrides.push(format!("lags.suites={v}"))),
            "--tests" => value(a).map(|v| overrides.push(format!("lags.tests={v}"))),
            "--expect-version" => {
                value(a).map(|v| overrides.push(format!("lags.expect_version={v}")))
            }
            "--expect-lags" => value(a).map(|v| overrides.push(format!("lags.expect_lags={v}"))),
            "--fault" => value(a).map(|v| overrides.push(format!("lags.fault={v}"))),
            "--cmdline" => value(a).map(|v| cmdline = Some(v)),
            "--list" => {
                for s in suites::ALL.iter().chain(suites::EXTRA) {
                    println!("{}", s.name);
                    for t in s.tests {
                        println!("  {}", t.name);
                    }
                }
                return 0;
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return 0;
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(e) = r {
            eprintln!("lags-init: {e}\n\n{USAGE}");
            return 2;
        }
    }
    if !no_pid1 {
        eprintln!("lags-init: not PID 1; pass --no-pid1 to run the suites here\n\n{USAGE}");
        return 2;
    }
    let base = cmdline.unwrap_or_else(|| util::read_trimmed("/proc/cmdline").unwrap_or_default());
    let mut cfg = Config::from_cmdline(&base);
    // Arguments override the command line; quote them for the tokenizer.
    let args_cmdline = overrides
        .iter()
        .map(|o| format!("\"{o}\""))
        .collect::<Vec<_>>()
        .join(" ");
    cfg.apply_cmdline(&args_cmdline);
    let mut out = Ktap::new(Box::new(StdoutSink));
    out.raw(lags_proto::marker::RUNNER_START);
    run_and_summarise(&cfg, &mut out);
    i32::from(out.failed > 0)
}

fn main() {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } == 1 {
        guest_main();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = dev_main(&args);
    let _ = io::stdout().flush();
    // Keep stdout's descriptor referenced so the flush above is the last write.
    let _ = io::stdout().as_raw_fd();
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect the defaults when the command line has no runner options.
    #[test]
    fn cmdline_defaults() {
        let c = Config::from_cmdline("console=ttyS0 printk.devkmsg=on panic=-1 rdinit=/init");
        assert!(c.suites.is_none());
        assert_eq!(c.expect_version, None);
        assert!(c.expect_lags);
        assert_eq!(c.fault, Fault::None);
        assert!(!c.sched_lags_off);
        assert!(c.warnings.is_empty());
        assert_eq!(c.suite_names()[0], "boot");
        assert_eq!(c.suite_names().len(), suites::ALL.len());
    }

    // Expect every runner key to be read, in any position.
    #[test]
    fn cmdline_all_keys() {
        let c = Config::from_cmdline(
            "console=ttyS0 lags.suites=cgroup,boot lags.expect_version=6.12.117 \
             lags.expect_lags=0 lags.fault=hang sched_lags=off loglevel=7\n",
        );
        assert_eq!(c.suite_names(), vec!["cgroup", "boot"]);
        // "none": a boot check that runs no suite (plan 1..0); an empty value means all.
        // "-name" entries exclude suites from the default list.
        let names = Config::from_cmdline("lags.suites=-lags_behaviour,-module").suite_names();
        assert_eq!(names.len(), suites::ALL.len() - 2);
        assert!(!names.iter().any(|n| n == "lags_behaviour" || n == "module"));
        assert_eq!(names[0], "boot");
        assert!(Config::from_cmdline("lags.suites=none")
            .suite_names()
            .is_empty());
        assert_eq!(
            Config::from_cmdline("lags.suites=").suite_names().len(),
            suites::ALL.len()
        );
        assert_eq!(c.expect_version.as_deref(), Some("6.12.117"));
        assert!(!c.expect_lags);
        assert_eq!(c.fault, Fault::Hang);
        assert!(c.sched_lags_off);
    }

    // Expect the boot flag to be read as the kernel's kstrtobool() reads it: off for
    // off/0/n/no/false, on for on/1/y, and an invalid value ignored (default on).
    #[test]
    fn cmdline_sched_lags_flag() {
        let off = |v: &str| Config::from_cmdline(&format!("sched_lags={v}")).sched_lags_off;
        for v in ["off", "0", "n", "N", "no", "false", "OFF"] {
            assert!(off(v), "{v}");
        }
        for v in ["on", "1", "y", "bogus", "o", ""] {
            assert!(!off(v), "{v}");
        }
        // The last occurrence wins, as in the kernel.
        assert!(!Config::from_cmdline("sched_lags=off sched_lags=on").sched_lags_off);
        // A similar-looking parameter is not the flag.
        assert!(!Config::from_cmdline("xsched_lags=off").sched_lags_off);
    }

    // Expect bad values and unknown keys to be reported, not silently taken.
    #[test]
    fn cmdline_warnings() {
        let c = Config::from_cmdline("lags.expect_lags=maybe lags.fault=boom lags.colour=red");
        assert!(c.expect_lags);
        assert_eq!(c.fault, Fault::None);
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    }

    // Expect the runner's suite list and the contract's default list to be the same.
    #[test]
    fn default_suites_match_contract() {
        let names: Vec<&str> = suites::ALL.iter().map(|s| s.name).collect();
        assert_eq!(names, lags_proto::runner::DEFAULT_SUITES);
        let extra: Vec<&str> = suites::EXTRA.iter().map(|s| s.name).collect();
        assert_eq!(extra, lags_proto::runner::ROBUSTNESS_SUITES);
    }

    // Expect kernel-style quoting, empty list items dropped, and `--` to end parsing.
    #[test]
    fn cmdline_quoting() {
        assert_eq!(
            cmdline_params(r#"a=1 b="x y" "c=z"  d"#),
            vec!["a=1", "b=x y", "c=z", "d"]
        );
        let c = Config::from_cmdline("lags.suites=boot,,module, -- lags.suites=cgroup");
        assert_eq!(c.suite_names(), vec!["boot", "module"]);
        // Later keys win (dev mode appends argument overrides).
        let c = Config::from_cmdline(r#"lags.suites=boot "lags.suites=cgroup""#);
        assert_eq!(c.suite_names(), vec!["cgroup"]);
    }
}
