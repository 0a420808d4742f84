// SPDX-License-Identifier: GPL-2.0

//! LAGS monitor and starvation watchdog.
//!
//! `/sys/kernel/debug/lags_monitor/snapshot` lists every task group with `cpu.lags` set and
//! its LAGS statistics, one consistent snapshot per `open()`. A watchdog on the system work
//! queue reports groups that stayed runnable without running for longer than `threshold_ms`.
//! The format and the watchdog are described in `Documentation/monitor.md` of the LAGS project.

use core::fmt::Write;
use core::ops::ControlFlow;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::debugfs::{self, SnapshotBuf};
use kernel::prelude::*;
use kernel::sched_lags::{self, GroupStats};
use kernel::sync::Arc;
use kernel::time::Ktime;
use kernel::workqueue::{self, Periodic, PeriodicWork};
use kernel::{c_str, module_param_uint};

module! {
    type: LagsMonitor,
    name: "lags_monitor",
    author: "LAGS developers",
    description: "LAGS monitor and starvation watchdog",
    license: "GPL",
}

module_param_uint!(
    THRESHOLD_MS,
    "threshold_ms",
    500,
    0o644,
    "Starvation watchdog threshold in ms, 0 disables the watchdog"
);

/// Version of the snapshot format, the first field of its first line.
const FORMAT_VERSION: u32 = 1;
/// Room for a path, as `PATH_MAX`.
const PATH_MAX: usize = 4096;
/// Room for the numeric fields of one snapshot row (8 numbers of up to 20 digits, separators).
const ROW_NUMBERS: usize = 8 * 21 + 2;
/// Watchdog period bounds in ms; the period is a quarter of the threshold within them.
const PERIOD_MIN_MS: u32 = 10;
const PERIOD_MAX_MS: u32 = 250;
/// Period while the watchdog is disabled (`threshold_ms=0`).
const IDLE_PERIOD_MS: u32 = 1000;
/// Rate limit of the watchdog's messages: at most `RATELIMIT_BURST` per interval.
const RATELIMIT_INTERVAL_MS: i64 = 5000;
const RATELIMIT_BURST: u32 = 10;

/// State shared by the snapshot file and the watchdog.
struct Shared {
    /// Starvation episodes seen by the watchdog since the module was loaded.
    starvations: AtomicU64,
}

/// Sums over the listed groups, for the snapshot's first line.
#[derive(Default)]
struct Totals {
    listed: u64,
    nr_running: u64,
    picks: u64,
    wakeup_preempts: u64,
    starved_picks: u64,
}

impl Totals {
    fn add(&mut self, st: &GroupStats) {
        self.listed += 1;
        self.nr_running += st.nr_running;
        self.picks += st.picks;
        self.wakeup_preempts += st.wakeup_preempts;
        self.starved_picks += st.starved_picks;
    }
}

/// Writes a cgroup path with every byte outside `!`..`~` and the backslash as `\xHH`, so that
/// the path is one whitespace-free field.
fn write_escaped(out: &mut SnapshotBuf, path: &[u8]) -> core::fmt::Result {
    for &b in path {
        if b.is_ascii_graphic() && b != b'\\' {
            out.push_bytes(&[b]).map_err(|_| core::fmt::Error)?;
        } else {
            write!(out, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

/// The producer of the snapshot file.
struct Monitor {
    shared: Arc<Shared>,
}

impl Monitor {
    /// Renders one row per group into `rows`, which must have room reserved. Returns `false`
    /// if the room ran out (more groups than expected appeared) and the walk was stopped.
    fn rows(&self, rows: &mut SnapshotBuf, path: &mut [u8], totals: &mut Totals) -> bool {
        let walk = sched_lags::for_each_group(true, |g| {
            // A removed cgroup is no longer of interest, even if not yet released.
            if g.is_removed() {
                return ControlFlow::Continue(());
            }
            let st = g.stats();
            let p = g.path(path).map(|p| p.as_bytes());
            let need = ROW_NUMBERS + p.map_or(1, |p| 4 * p.len()) + 1;
            if rows.spare() < need {
                return ControlFlow::Break(());
            }
            // Cannot fail: `need` bytes are free.
            let _ = write!(
                rows,
                "{} {} {} {} {} {} {} {} ",
                st.cgroup_id,
                st.credit_mcpu,
                st.nr_running,
                st.picks,
                st.wakeup_preempts,
                st.starved_picks,
                st.wait_max_ns,
                st.wait_now_ns
            );
            let _ = match p {
                Ok(p) => write_escaped(rows, p),
                // A path longer than `PATH_MAX` or an unreadable one: the id is still there.
                Err(_) => rows.write_str("-"),
            };
            let _ = rows.write_str("\n");
            totals.add(st);
            ControlFlow::Continue(())
        });
        // `ENODEV`: the kernel has no LAGS, so there is nothing to list.
        !matches!(walk, Ok(Some(())))
    }
}

impl debugfs::Snapshot for Monitor {
    fn snapshot(&self, buf: &mut SnapshotBuf) -> Result {
        let mut path = KVec::from_elem(0u8, PATH_MAX, GFP_KERNEL)?;
        let mut rows = SnapshotBuf::new();
        let mut expect = sched_lags::nr_groups() as usize;
        let totals = loop {
            // Room for the expected groups, plus some for groups that appear meanwhile.
            let room = (expect + expect / 8 + 16) * (ROW_NUMBERS + 64);
            rows.clear();
            rows.reserve(room, GFP_KERNEL)?;
            let mut totals = Totals::default();
            if self.rows(&mut rows, &mut path, &mut totals) {
                break totals;
            }
            expect = 2 * expect + 64;
        };

        buf.reserve(512 + rows.len(), GFP_KERNEL)?;
        writeln!(
            buf,
            "lags_monitor {} enabled={} nr_groups={} listed={} threshold_ms={} starvations={} \
             nr_running={} picks={} wakeup_preempts={} starved_picks={}",
            FORMAT_VERSION,
            u8::from(sched_lags::enabled()),
            sched_lags::nr_groups(),
            totals.listed,
            THRESHOLD_MS.get(),
            self.shared.starvations.load(Ordering::Relaxed),
            totals.nr_running,
            totals.picks,
            totals.wakeup_preempts,
            totals.starved_picks,
        )
        .map_err(|_| ENOMEM)?;
        buf.write_str(
            "cgroup_id credit_mcpu nr_running picks wakeup_preempts starved_picks \
             wait_max_ns wait_now_ns path\n",
        )
        .map_err(|_| ENOMEM)?;
        buf.push_bytes(rows.as_bytes())?;
        Ok(())
    }
}

/// A simple message rate limit: `RATELIMIT_BURST` messages per `RATELIMIT_INTERVAL_MS`.
struct RateLimit {
    begin_ms: i64,
    printed: u32,
    suppressed: u32,
}

impl RateLimit {
    /// Whether a message may be printed now; reports the suppressed ones when a new interval
    /// begins.
    fn allow(&mut self, now_ms: i64) -> bool {
        if now_ms - self.begin_ms >= RATELIMIT_INTERVAL_MS {
            if self.suppressed > 0 {
                pr_warn!("{} starvation messages suppressed\n", self.suppressed);
            }
            self.begin_ms = now_ms;
            self.printed = 0;
            self.suppressed = 0;
        }
        if self.printed < RATELIMIT_BURST {
            self.printed += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// The starvation watchdog's state, owned by its work item.
struct Watchdog {
    shared: Arc<Shared>,
    /// `(cgroup id, wait)` of the groups over the threshold at the previous run.
    prev: KVec<(u64, u64)>,
    /// The same for the current run.
    cur: KVec<(u64, u64)>,
    path: KVec<u8>,
    ratelimit: RateLimit,
}

impl Watchdog {
    fn new(shared: Arc<Shared>) -> Result<Self> {
        Ok(Self {
            shared,
            prev: KVec::new(),
            cur: KVec::new(),
            path: KVec::from_elem(0u8, PATH_MAX, GFP_KERNEL)?,
            ratelimit: RateLimit {
                begin_ms: Ktime::ktime_get().to_ms(),
                printed: 0,
                suppressed: 0,
            },
        })
    }
}

impl PeriodicWork for Watchdog {
    fn run(&mut self) -> Option<u32> {
        let threshold_ms = THRESHOLD_MS.get();
        if threshold_ms == 0 {
            self.prev = KVec::new();
            return Some(IDLE_PERIOD_MS);
        }
        let threshold_ns = u64::from(threshold_ms) * 1_000_000;
        let now_ms = Ktime::ktime_get().to_ms();

        // Best effort: entries that do not fit are pushed with `GFP_ATOMIC` below.
        self.cur = KVec::with_capacity(sched_lags::nr_groups() as usize + 16, GFP_KERNEL)
            .unwrap_or(KVec::new());
        let Self {
            shared,
            prev,
            cur,
            path,
            ratelimit,
        } = self;
        let _ = sched_lags::for_each_group(false, |g| -> ControlFlow<()> {
            let st = g.stats();
            if st.wait_now_ns <= threshold_ns || g.is_removed() {
                return ControlFlow::Continue(());
            }
            // If the allocation fails, the episode may be counted again at the next run.
            let _ = cur.push((st.cgroup_id, st.wait_now_ns), GFP_ATOMIC);
            // The same episode as at the previous run if the wait has kept growing; a new
            // wait cannot pass the threshold within one period, which is shorter.
            let same = prev
                .iter()
                .any(|&(id, wait)| id == st.cgroup_id && wait < st.wait_now_ns);
            if same {
                return ControlFlow::Continue(());
            }
            shared.starvations.fetch_add(1, Ordering::Relaxed);
            if ratelimit.allow(now_ms) {
                let wait_ms = st.wait_now_ns / 1_000_000;
                match g.path(path) {
                    Ok(p) => pr_warn!(
                        "cgroup {} (id {}) runnable without running for {} ms (threshold {} ms)\n",
                        p.to_str().unwrap_or("?"),
                        st.cgroup_id,
                        wait_ms,
                        threshold_ms
                    ),
                    Err(_) => pr_warn!(
                        "cgroup id {} runnable without running for {} ms (threshold {} ms)\n",
                        st.cgroup_id,
                        wait_ms,
                        threshold_ms
                    ),
                }
            }
            ControlFlow::Continue(())
        });
        core::mem::swap(prev, cur);
        Some((threshold_ms / 4).clamp(PERIOD_MIN_MS, PERIOD_MAX_MS))
    }
}

struct LagsMonitor {
    // Dropped in this order: the file goes first, then the watchdog is cancelled.
    _file: debugfs::SnapshotFile<Monitor>,
    _watchdog: Pin<KBox<Periodic<Watchdog>>>,
}

impl kernel::Module for LagsMonitor {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let shared = Arc::new(
            Shared {
                starvations: AtomicU64::new(0),
            },
            GFP_KERNEL,
        )?;
        let dir = debugfs::Dir::new(c_str!("lags_monitor"))?;
        let file = debugfs::SnapshotFile::new(
            &dir,
            c_str!("snapshot"),
            0o444,
            Monitor {
                shared: shared.clone(),
            },
        )?;
        let watchdog = KBox::pin_init(
            workqueue::new_periodic!(Watchdog::new(shared)?, "lags_monitor_watchdog"),
            GFP_KERNEL,
        )?;
        watchdog.start(PERIOD_MIN_MS);
        pr_info!(
            "loaded, snapshot at /sys/kernel/debug/lags_monitor/snapshot, threshold {} ms\n",
            THRESHOLD_MS.get()
        );
        Ok(Self {
            _file: file,
            _watchdog: watchdog,
        })
    }
}

impl Drop for LagsMonitor {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
