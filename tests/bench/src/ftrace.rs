//! The ftrace function profiler over a measured window: the CPU time inside the scheduler,
//! the quantity the prototype measured (`lb.rd_ftrace`; a kernel built with the `ftrace`
//! profile, `CONFIG_FUNCTION_PROFILER` with the function graph tracer).
//!
//! `__schedule()` itself is `notrace`; the profiler traces its callers that tasks and the
//! idle loop use, `schedule()` (voluntary switches and preemption on the way back to user
//! space) and `schedule_idle()`, and nothing else (`set_ftrace_filter`). Not seen: a task's
//! last switch when it exits and `cond_resched()` in the kernel (and, with full
//! preemption, kernel preemption, which this project's kernels do not use). With
//! `sleep-time` off the time a task spends switched out inside them is not charged to it,
//! and with `graph-time` on the callees' time is: what remains is the CPU time the
//! scheduler itself took, on behalf of every task and of the idle loop. Switching the profiler on resets its
//! counts; switching it off keeps them readable in `trace_stat/function<N>`, one file per
//! CPU.

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
        f.set("options/graph-time", "1")?;
        Ok(f)
    }

    fn set(&self, file: &str, v: &str) -> Result<(), String> {
        let p = self.dir.join(file);
        fs::write(&p, v).map_err(|e| format!("write {v:?} to {}: {e}", p.display()))
    }

    /// Starts profiling from zero.
    pub(crate) fn start(&self) -> Result<(), String> {
        self.set("function_profile_enabled", "1")
    }

    /// Stops profiling and sums [`FUNCS`] over the CPUs.
    pub(crate) fn finish(&self) -> Result<SchedFtrace, String> {
        self.set("function_profile_enabled", "0")?;
        sum_cpus(&self.dir.join("trace_stat"))
    }
}

/// The profiler's lines of [`FUNCS`] in every CPU's `function<N>` file, summed; a CPU that
/// never ran one has no line for it.
fn sum_cpus(stat: &Path) -> Result<SchedFtrace, String> {
    let entries = fs::read_dir(stat).map_err(|e| format!("{}: {e}", stat.display()))?;
    let mut total = SchedFtrace::default();
    let mut files = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with("function") {
            continue;
        }
        files += 1;
        let text =
            fs::read_to_string(e.path()).map_err(|err| format!("{}: {err}", e.path().display()))?;
        for s in FUNCS.iter().filter_map(|f| parse_function_stat(&text, f)) {
            total.calls += s.calls;
            total.time_ns += s.time_ns;
        }
    }
    if files == 0 {
        return Err(format!("no function<N> files in {}", stat.display()));
    }
    Ok(total)
}
