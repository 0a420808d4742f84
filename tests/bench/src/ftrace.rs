//! The ftrace function profiler over a measured window: the CPU time inside the scheduler,
//! the quantity the prototype measured (`lb.rd_ftrace`; a kernel built with the `ftrace`
//! profile, `CONFIG_FUNCTION_PROFILER` with the function graph tracer).
//!
//! `__schedule()` itself is `notrace`; the profiler traces its callers that tasks and the
//! idle loop use, `schedule()` (voluntary switches and preemption on the way back to user
//! space) and `schedule_idle()`, and nothing else (`set_ftrace_filter`). Not seen: a task's
//! last switch when it exits and `cond_resched()` in the kernel (and, with full
//! preemption, kernel preemption, which this project's kernels do not use). With
//! `sleep-time` off the time a task spends switched out inside them is not charged to it;
//! their callees are not traced, so their time counts whatever `graph-time` says (it only
//! subtracts traced callees). What remains is the CPU time the scheduler itself took, on
//! behalf of every task and of the idle loop, plus interrupts that arrive inside. Switching
//! the profiler on resets its counts; switching it off keeps them readable in
//! `trace_stat/function<N>`, one file per CPU.

use std::fs;
use std::path::{Path, PathBuf};

use lags_bench::{parse_function_stat, SchedFtrace};

use crate::mount;

/// The traced functions.
const FUNCS: [&str; 2] = ["schedule", "schedule_idle"];

/// Where tracefs is: its own mount, or the automount under debugfs.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

pub(crate) struct Ftrace {
    dir: PathBuf,
}

impl Ftrace {
    /// Finds tracefs (mounting it if it is not), checks that the kernel has the function
    /// profiler, and sets it up for [`FUNCS`]. The error says what is missing.
    pub(crate) fn setup() -> Result<Ftrace, String> {
        let _ = mount("tracefs", TRACEFS[0], "tracefs");
        let dir = TRACEFS
            .iter()
            .map(PathBuf::from)
            .find(|d| d.join("function_profile_enabled").exists())
            .ok_or_else(|| {
                "no ftrace function profiler (function_profile_enabled) in tracefs: the \
                 kernel needs CONFIG_FUNCTION_PROFILER and CONFIG_FUNCTION_GRAPH_TRACER \
                 (cargo xtask build-kernel --profile ftrace)"
                    .to_string()
            })?;
        let f = Ftrace { dir };
        f.set("function_profile_enabled", "0")?;
        f.set("set_ftrace_filter", &FUNCS.join(" "))?;
        let filter = fs::read_to_string(f.dir.join("set_ftrace_filter")).unwrap_or_default();
        let mut traced: Vec<&str> = filter.split_whitespace().collect();
        traced.sort_unstable();
        if traced != FUNCS {
            return Err(format!(
                "set_ftrace_filter reads {:?} after writing {FUNCS:?}: not every function \
                 is traceable in this kernel",
                filter.trim()
            ));
        }
        f.set("options/sleep-time", "0")?;
        Ok(f)
    }

    fn set(&self, file: &str, v: &str) -> Result<(), String> {
        let p = self.dir.join(file);
        fs::write(&p, v).map_err(|e| format!("write {v:?} to {}: {e}", p.display()))
    }

    /// Starts profiling from zero: the kernel clears the counts only when the profiler goes
    /// from off to on, so it is switched off first, whatever an earlier window left.
    pub(crate) fn start(&self) -> Result<(), String> {
        self.set("function_profile_enabled", "0")?;
        self.set("function_profile_enabled", "1")
    }

    /// Stops profiling and sums [`FUNCS`] over the CPUs.
    pub(crate) fn finish(&self) -> Result<SchedFtrace, String> {
        self.set("function_profile_enabled", "0")?;
        sum_cpus(&self.dir.join("trace_stat"))
    }
}

/// The profiler's lines of [`FUNCS`] in every CPU's `function<N>` file, summed; a CPU that
/// never ran one has no line for it, but a window in which no CPU ran either (not even the
/// idle loop) or a line that does not parse is an error, not a zero.
pub(crate) fn sum_cpus(stat: &Path) -> Result<SchedFtrace, String> {
    let entries = fs::read_dir(stat).map_err(|e| format!("{}: {e}", stat.display()))?;
    let mut total = SchedFtrace::default();
    let mut files = 0;
    let mut lines = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with("function") {
            continue;
        }
        files += 1;
        let text =
            fs::read_to_string(e.path()).map_err(|err| format!("{}: {err}", e.path().display()))?;
        for l in text.lines() {
            let Some(f) = FUNCS
                .iter()
                .find(|f| l.split_whitespace().next() == Some(**f))
            else {
                continue;
            };
            let s = parse_function_stat(l, f)
                .ok_or_else(|| format!("{}: cannot parse {l:?}", e.path().display()))?;
            total.calls += s.calls;
            total.time_ns += s.time_ns;
            lines += 1;
        }
    }
    if files == 0 {
        return Err(format!("no function<N> files in {}", stat.display()));
    }
    if lines == 0 {
        return Err(format!(
            "no CPU ran {FUNCS:?} in the window ({})",
            stat.display()
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `trace_stat` directory with one file per entry.
    fn stat_dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lags-ftrace-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        for (f, text) in files {
            fs::write(d.join(f), text).unwrap();
        }
        d
    }

    const HEAD: &str = "  Function                               Hit    Time            Avg             s^2\n  --------                               ---    ----            ---             ---\n";

    // Expect both functions summed over every CPU's file, other functions and files ignored,
    // a CPU without a line contributing nothing; no line anywhere, an unparsable line or no
    // function<N> file at all is an error.
    #[test]
    fn sums_every_cpu() {
        let cpu0 = format!("{HEAD}  schedule                              100    1234.567 us     12.345 us       1.000 us    \n  schedule_idle                          10    12345.67 us     1234.567 us     0.000 us    \n  do_idle                                 5    1.000 us     0.200 us        0.000 us    \n");
        let cpu1 = format!("{HEAD}  schedule                                3    123456.7 us     41152.23 us     0.000 us    \n");
        let d = stat_dir(
            "sum",
            &[
                ("function0", &cpu0),
                ("function1", &cpu1),
                ("function2", HEAD),
                ("other", "  schedule  999  1.000 us  1.000 us  0.000 us\n"),
            ],
        );
        assert_eq!(
            sum_cpus(&d),
            Ok(SchedFtrace {
                calls: 113,
                time_ns: 1_234_567 + 12_345_670 + 123_456_700,
            })
        );
        let empty = stat_dir("empty", &[("function0", HEAD)]);
        assert!(sum_cpus(&empty).unwrap_err().contains("no CPU ran"));
        let bad = stat_dir(
            "bad",
            &[("function0", "  schedule   12   1,5 us   1 us   0 us\n")],
        );
        assert!(sum_cpus(&bad).unwrap_err().contains("cannot parse"));
        let none = stat_dir("none", &[]);
        assert!(sum_cpus(&none)
            .unwrap_err()
            .contains("no function<N> files"));
        for d in [d, empty, bad, none] {
            fs::remove_dir_all(d).unwrap();
        }
    }
}
