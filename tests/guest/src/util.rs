// SPDX-License-Identifier: GPL-2.0
//! Helpers shared by the suites: file I/O that keeps the errno, time and CPU affinity,
//! statistics, cgroup guards, and forked worker processes with a pipe back to the runner.
//!
//! Everything that creates something (a cgroup, a process, a changed tunable) returns a guard
//! whose `Drop` undoes it, so a failing or panicking test still cleans up. Problems found
//! while cleaning up are queued with [`warn`] and printed by the runner as diagnostics.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// Cleanup warnings

thread_local! {
    static WARNINGS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Queues a message (typically a cleanup problem) for the runner to print as a diagnostic.
pub fn warn(msg: impl Into<String>) {
    WARNINGS.with(|w| w.borrow_mut().push(msg.into()));
}

/// Takes the queued warnings.
pub fn take_warnings() -> Vec<String> {
    WARNINGS.with(|w| std::mem::take(&mut *w.borrow_mut()))
}

// ---------------------------------------------------------------------------------------
// Errors and files

// Errno names and single-write files come from the PID-1 crate both guest programs share.
pub use lags_pid1::errno::{describe, describe_err, errno_name, errno_of};
pub use lags_pid1::fs::write_once;

/// Opens `path` the way `echo x > file` does (write-only, truncating, no create). Kernel
/// interface files ignore the truncation; regular files behave like the shell.
pub fn open_write(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new().write(true).truncate(true).open(path)
}

/// Opens `path` and writes `data` with a single `write(2)`, returning the errno on failure.
pub fn write_file(path: impl AsRef<Path>, data: impl AsRef<[u8]>) -> io::Result<()> {
    let f = open_write(path.as_ref())?;
    write_once(&f, data.as_ref())
}

/// Reads a whole (small) file as text, replacing invalid UTF-8.
pub fn read_file(path: impl AsRef<Path>) -> io::Result<String> {
    let bytes = fs::read(path.as_ref())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads a file and trims surrounding whitespace.
pub fn read_trimmed(path: impl AsRef<Path>) -> io::Result<String> {
    Ok(read_file(path)?.trim().to_owned())
}

/// Whether something exists at `path` (without following a final symlink).
pub fn exists(path: impl AsRef<Path>) -> bool {
    fs::symlink_metadata(path.as_ref()).is_ok()
}

/// Shows bytes for a diagnostic: printable ASCII as is, the rest escaped, long runs cut.
pub fn show_bytes(data: &[u8]) -> String {
    if data.len() > 48 && data.iter().all(|&b| b == data[0]) {
        return format!("{:?} x {}", data[0] as char, data.len());
    }
    let mut s = String::from("\"");
    for b in data.iter().take(64) {
        s.extend(std::ascii::escape_default(*b).map(char::from));
    }
    if data.len() > 64 {
        s.push_str("...");
    }
    s.push('"');
    s
}

/// Writes `value` back to a tunable (sysctl, debugfs knob) when dropped.
pub struct Restore {
    path: PathBuf,
    value: String,
}

impl Restore {
    /// Remembers the current (trimmed) value of `path`.
    pub fn save(path: impl AsRef<Path>) -> io::Result<Restore> {
        let path = path.as_ref().to_owned();
        let value = read_trimmed(&path)?;
        Ok(Restore { path, value })
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = write_file(&self.path, &self.value) {
            warn(format!(
                "cleanup: restoring {} to {} failed: {}",
                self.path.display(),
                self.value,
                describe_err(&e)
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Time

pub use lags_pid1::clock::{now_ns, sleep_ms, sleep_until_ns, spin_cpu_ns, spin_until_ns};

/// Formats nanoseconds as microseconds for diagnostics.
pub fn us(ns: u64) -> String {
    format!("{}us", ns / 1000)
}

/// Formats nanoseconds as milliseconds with one decimal.
pub fn ms(ns: u64) -> String {
    format!("{}.{}ms", ns / 1_000_000, (ns / 100_000) % 10)
}

// ---------------------------------------------------------------------------------------
// CPUs

/// Parses a kernel CPU list such as `0-3,5,7-8`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let num = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad CPU number {x:?} in {s:?}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("bad CPU range {part:?}"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(num(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// The online CPUs according to sysfs.
pub fn online_cpus() -> Result<Vec<usize>, String> {
    let text = read_file("/sys/devices/system/cpu/online")
        .map_err(|e| format!("/sys/devices/system/cpu/online: {}", describe_err(&e)))?;
    parse_cpu_list(&text)
}

/// The CPU affinity of `pid` (0 = the caller).
pub fn get_affinity(pid: libc::pid_t) -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zeroes is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size we pass.
    let rc = unsafe { libc::sched_getaffinity(pid, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * std::mem::size_of_val(&set);
    // SAFETY: CPU_ISSET only reads `set`, and `cpu` is below the set's capacity.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Sets the CPU affinity of `pid` (0 = the caller).
pub fn set_affinity(pid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zeroes is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: CPU_SET writes inside `set`; it ignores CPUs beyond the set's capacity.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size we pass.
    let rc = unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Restores the runner's own CPU affinity when dropped.
pub struct AffinityGuard {
    old: Vec<usize>,
}

impl AffinityGuard {
    /// Moves the calling process to `cpus`, remembering the previous affinity.
    pub fn pin_self(cpus: &[usize]) -> io::Result<AffinityGuard> {
        let old = get_affinity(0)?;
        set_affinity(0, cpus)?;
        Ok(AffinityGuard { old })
    }
}

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        if let Err(e) = set_affinity(0, &self.old) {
            warn(format!("cleanup: restoring runner affinity: {e}"));
        }
    }
}

/// The CPU the timing suites run their workers on (the first usable one), the other usable
/// CPUs, and the runner moved onto those (if there are any) so its own wake-ups stay off the
/// test CPU. Dropping `pin` restores the runner's affinity.
pub struct TestCpu {
    pub cpu: usize,
    pub others: Vec<usize>,
    pub pin: Option<AffinityGuard>,
}

/// Picks the test CPU and moves the runner off it, see [`TestCpu`].
pub fn test_cpu() -> Result<TestCpu, String> {
    let online = online_cpus()?;
    let allowed = get_affinity(0).map_err(|e| format!("sched_getaffinity: {e}"))?;
    let usable: Vec<usize> = online
        .iter()
        .copied()
        .filter(|c| allowed.contains(c))
        .collect();
    let Some(&cpu) = usable.first() else {
        return Err(format!(
            "no usable CPU (online {online:?}, allowed {allowed:?})"
        ));
    };
    let others: Vec<usize> = usable.iter().copied().filter(|&c| c != cpu).collect();
    let pin = if others.is_empty() {
        None
    } else {
        Some(
            AffinityGuard::pin_self(&others)
                .map_err(|e| format!("moving the runner off the test CPU: {e}"))?,
        )
    };
    Ok(TestCpu { cpu, others, pin })
}

// ---------------------------------------------------------------------------------------
// Statistics and parsing

/// The `p`-th percentile (0 < p <= 100) of sorted samples, nearest-rank method.
/// Returns 0 for no samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50/p90/p99/max of a set of latency samples (ns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub n: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Summary {
    pub fn of(samples: &[u64]) -> Summary {
        let mut s = samples.to_vec();
        s.sort_unstable();
        Summary {
            n: s.len(),
            p50: percentile(&s, 50.0),
            p90: percentile(&s, 90.0),
            p99: percentile(&s, 99.0),
            max: s.last().copied().unwrap_or(0),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={} p90={} p99={} max={}",
            self.n,
            us(self.p50),
            us(self.p90),
            us(self.p99),
            us(self.max)
        )
    }
}

/// The value of `key` in a flat keyed file such as `cpu.stat` (`key value` per line).
pub fn keyed_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next().unwrap_or(""))
    })
}

/// The integer value of `key` in a flat keyed file.
pub fn keyed_u64(text: &str, key: &str) -> Option<u64> {
    keyed_value(text, key)?.parse().ok()
}

/// `u64`s as little-endian bytes (worker results over a pipe).
pub fn encode_u64s(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The inverse of [`encode_u64s`]; a trailing partial value is dropped.
pub fn decode_u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("chunk of 8")))
        .collect()
}

/// `key=value` lines (worker reports) as pairs.
pub fn parse_kv_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Looks up `key` in `key=value` pairs.
pub fn kv<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------------------
// Kernel log and modules

pub use lags_pid1::cred::{drop_to_nobody, parse_cap_eff, NOBODY};
pub use lags_pid1::module::{delete_module, finit_module, finit_module_with};
pub use lags_pid1::procfs::{kernel_log, proc_state, user_processes};

/// In a forked worker: reports the identity it runs with (`uid` real/effective, `capeff`).
pub fn send_identity(io: &mut WorkerIo) {
    // SAFETY: getuid/geteuid have no preconditions.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    io.send_kv("uid", format!("{uid}/{euid}"));
    let capeff = read_file("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_eff(&s));
    io.send_kv(
        "capeff",
        capeff.map_or("unknown".to_owned(), |c| format!("{c:x}")),
    );
}

/// Suite state for a module a suite loads: whether it is loaded, so that dropping the guard
/// (at the end of the suite, whatever failed) unloads it. Update `loaded` in place; replacing
/// the guard would run the old one's Drop.
#[derive(Debug)]
pub struct ModuleGuard {
    pub name: &'static str,
    pub loaded: bool,
}

impl Drop for ModuleGuard {
    fn drop(&mut self) {
        if self.loaded {
            if let Err(e) = delete_module(self.name) {
                warn(format!(
                    "cleanup: unloading {}: {}",
                    self.name,
                    describe_err(&e)
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Mounts

pub use lags_pid1::fs::{chown, mount, umount};

// ---------------------------------------------------------------------------------------
// Cgroups

/// Mount point of the cgroup v2 hierarchy.
pub const CGROUP2_ROOT: &str = "/sys/fs/cgroup";

/// The controllers listed in a cgroup's `cgroup.controllers` or `cgroup.subtree_control`.
pub fn controller_list(path: &Path) -> io::Result<Vec<String>> {
    Ok(read_file(path)?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// Makes sure the cgroup v2 root offers `cpu` and delegates it to its children
/// (`+cpu` in the root's `cgroup.subtree_control`). Waits up to `wait` for the controller to
/// come back to v2 (it returns asynchronously after a v1 hierarchy is unmounted).
pub fn ensure_v2_cpu(wait: Duration) -> Result<(), String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    // After one timeout, fail fast: a kernel without the controller would otherwise cost
    // every cgroup test the full wait.
    static GAVE_UP: AtomicBool = AtomicBool::new(false);
    let root = Path::new(CGROUP2_ROOT);
    let wait = if GAVE_UP.load(Ordering::Relaxed) {
        Duration::ZERO
    } else {
        wait
    };
    let deadline = now_ns() + wait.as_nanos() as u64;
    loop {
        let ctrls = controller_list(&root.join("cgroup.controllers")).map_err(|e| {
            format!(
                "{CGROUP2_ROOT}/cgroup.controllers: {} (is cgroup2 mounted?)",
                describe_err(&e)
            )
        })?;
        if ctrls.iter().any(|c| c == "cpu") {
            break;
        }
        if now_ns() >= deadline {
            GAVE_UP.store(true, Ordering::Relaxed);
            return Err(format!(
                "cpu controller not available on cgroup v2 (cgroup.controllers: {:?})",
                ctrls.join(" ")
            ));
        }
        sleep_ms(50);
    }
    let sub = controller_list(&root.join("cgroup.subtree_control")).unwrap_or_default();
    if !sub.iter().any(|c| c == "cpu") {
        write_file(root.join("cgroup.subtree_control"), "+cpu").map_err(|e| {
            format!(
                "writing +cpu to {CGROUP2_ROOT}/cgroup.subtree_control: {}",
                describe_err(&e)
            )
        })?;
    }
    Ok(())
}

/// A cgroup directory that is removed (with everything below it) when dropped. Processes
/// still inside are first moved to the hierarchy's root cgroup.
pub struct Cgroup {
    path: PathBuf,
    root: PathBuf,
    removed: bool,
}

impl Cgroup {
    /// Creates `<CGROUP2_ROOT>/<name>` (removing a stale one first).
    pub fn new_v2(name: &str) -> io::Result<Cgroup> {
        Cgroup::new_in(Path::new(CGROUP2_ROOT), name)
    }

    /// Creates `<root>/<name>` in the hierarchy mounted at `root`.
    pub fn new_in(root: &Path, name: &str) -> io::Result<Cgroup> {
        Cgroup::create(root.join(name), root.to_owned())
    }

    /// Creates a child cgroup `<self>/<name>`.
    pub fn child(&self, name: &str) -> io::Result<Cgroup> {
        Cgroup::create(self.path.join(name), self.root.clone())
    }

    fn create(path: PathBuf, root: PathBuf) -> io::Result<Cgroup> {
        if path.exists() {
            remove_tree(&path, &root)?;
        }
        fs::create_dir(&path)?;
        Ok(Cgroup {
            path,
            root,
            removed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of an interface file of this cgroup.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes an interface file with one `write(2)`.
    pub fn write(&self, file: &str, data: impl AsRef<[u8]>) -> io::Result<()> {
        write_file(self.file(file), data)
    }

    /// Reads an interface file.
    pub fn read(&self, file: &str) -> io::Result<String> {
        read_file(self.file(file))
    }

    /// Moves a process into this cgroup.
    pub fn add_pid(&self, pid: libc::pid_t) -> io::Result<()> {
        self.write("cgroup.procs", pid.to_string())
    }

    /// `+cpu` in this cgroup's `cgroup.subtree_control`.
    pub fn enable_cpu_for_children(&self) -> io::Result<()> {
        self.write("cgroup.subtree_control", "+cpu")
    }

    /// An integer field of `cpu.stat`.
    pub fn cpu_stat(&self, key: &str) -> Result<u64, String> {
        let text = self
            .read("cpu.stat")
            .map_err(|e| format!("{}: {}", self.file("cpu.stat").display(), describe_err(&e)))?;
        keyed_u64(&text, key).ok_or_else(|| {
            format!(
                "{} has no integer {key:?} (content: {:?})",
                self.file("cpu.stat").display(),
                text.replace('\n', " ")
            )
        })
    }

    /// Removes the cgroup now and reports failure (the guard's `Drop` would only warn).
    pub fn remove(mut self) -> io::Result<()> {
        self.removed = true;
        remove_tree(&self.path, &self.root)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if !self.removed {
            if let Err(e) = remove_tree(&self.path, &self.root) {
                warn(format!(
                    "cleanup: removing cgroup {} failed: {}",
                    self.path.display(),
                    describe_err(&e)
                ));
            }
        }
    }
}

/// Moves every process of the cgroup at `path` to `<root>/cgroup.procs`.
pub fn evacuate(path: &Path, root: &Path) {
    let Ok(procs) = read_file(path.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.split_whitespace() {
        // ESRCH (already gone) and friends are fine here: rmdir reports what matters.
        let _ = write_file(root.join("cgroup.procs"), pid);
    }
}

/// Removes a cgroup and its descendants, deepest first, after moving their processes to the
/// root. Retries `rmdir` for a while on EBUSY (exiting tasks, dying css).
pub fn remove_tree(path: &Path, root: &Path) -> io::Result<()> {
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path(), root)?;
            }
        }
    }
    let deadline = now_ns() + 3_000_000_000;
    loop {
        evacuate(path, root);
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && now_ns() < deadline => sleep_ms(20),
            Err(e) => return Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Worker processes

/// The child's side of a [`Worker`]: a control pipe from the runner and a result pipe to it.
pub struct WorkerIo {
    ctl: File,
    out: File,
}

impl WorkerIo {
    /// Blocks until the runner sends a "go" byte; false if the runner closed the pipe.
    pub fn wait_go(&mut self) -> bool {
        let mut b = [0u8; 1];
        loop {
            match self.ctl.read(&mut b) {
                Ok(1) => return true,
                Ok(_) => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    /// Whether the runner asked us to stop (closed the control pipe or sent a byte). Does
    /// not block; cheap enough to call every millisecond from a spin loop.
    pub fn stop_requested(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.ctl.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd; a zero timeout never blocks.
        let rc = unsafe { libc::poll(&mut p, 1, 0) };
        rc > 0 && p.revents != 0
    }

    /// Sends bytes to the runner (errors ignored: the runner reports missing data).
    pub fn send(&mut self, data: &[u8]) {
        let _ = self.out.write_all(data);
    }

    /// Sends one `key=value` line.
    pub fn send_kv(&mut self, key: &str, value: impl std::fmt::Display) {
        self.send(format!("{key}={value}\n").as_bytes());
    }
}

fn pipe_cloexec() -> io::Result<(File, File)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Closes every descriptor of the calling (freshly forked) process except 0-2 and `keep`,
/// so that the child does not hold other workers' pipe ends open.
fn close_other_fds(keep: &[RawFd]) {
    let fds: Vec<RawFd> = match fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing a descriptor number we do not otherwise use in the child;
            // stale numbers just fail with EBADF.
            unsafe { libc::close(fd) };
        }
    }
}

/// How [`Worker::read_out`] stopped reading.
enum ReadEnd {
    /// The caller's condition holds.
    Done,
    /// The child closed its end.
    Eof,
    /// The timeout passed.
    Timeout,
}

/// A forked child process running a closure. The child first waits for [`Worker::go`], so
/// the runner can move it into a cgroup and pin it before it does anything. Dropping the
/// guard kills (SIGKILL) and reaps the child if it has not been reaped yet.
pub struct Worker {
    pid: libc::pid_t,
    ctl: Option<File>,
    out: Option<File>,
    reaped: bool,
}

impl Worker {
    /// Forks a child that runs `body` after the "go" byte and then exits with the returned
    /// code (101 if `body` panics). The runner is single-threaded, so the child may allocate.
    pub fn spawn<F: FnOnce(&mut WorkerIo) -> i32>(body: F) -> io::Result<Worker> {
        let (ctl_r, ctl_w) = pipe_cloexec()?;
        let (out_r, out_w) = pipe_cloexec()?;
        // SAFETY: fork has no memory-safety preconditions; the runner is single-threaded,
        // so the child's copy of the heap and locks is consistent. (Unit tests that fork run
        // alone in a process of their own, see `in_own_process`.)
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            drop(ctl_w);
            drop(out_r);
            close_other_fds(&[ctl_r.as_raw_fd(), out_w.as_raw_fd()]);
            let mut wio = WorkerIo {
                ctl: ctl_r,
                out: out_w,
            };
            let code = if wio.wait_go() {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut wio))) {
                    Ok(code) => code,
                    Err(_) => {
                        wio.send(b"\nworker_panicked=1\n");
                        101
                    }
                }
            } else {
                0
            };
            drop(wio);
            // SAFETY: _exit ends the child immediately without running the parent's
            // destructors or atexit handlers; it never returns.
            unsafe { libc::_exit(code) };
        }
        drop(ctl_r);
        drop(out_w);
        Ok(Worker {
            pid,
            ctl: Some(ctl_w),
            out: Some(out_r),
            reaped: false,
        })
    }

    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Lets the child start (or sends it a further signal byte).
    pub fn go(&mut self) -> io::Result<()> {
        match &mut self.ctl {
            Some(ctl) => ctl.write_all(b"g"),
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        }
    }

    /// Moves the child into `cg`, pins it to `cpu` (if given) and lets it start.
    pub fn start_in(&mut self, cg: &Cgroup, cpu: Option<usize>) -> Result<(), String> {
        cg.add_pid(self.pid).map_err(|e| {
            format!(
                "moving worker {} into {}: {}",
                self.pid,
                cg.path().display(),
                describe_err(&e)
            )
        })?;
        if let Some(cpu) = cpu {
            set_affinity(self.pid, &[cpu])
                .map_err(|e| format!("pinning worker {} to CPU {cpu}: {e}", self.pid))?;
        }
        self.go()
            .map_err(|e| format!("starting worker {}: {e}", self.pid))
    }

    /// Asks the child to stop by closing the control pipe.
    pub fn stop(&mut self) {
        self.ctl = None;
    }

    /// Reads what the child sends until `done(data so far)` holds, the child closes its end,
    /// or `timeout` passes; returns the data and which of the three happened.
    fn read_out(
        &mut self,
        timeout: Duration,
        done: impl Fn(&[u8]) -> bool,
    ) -> Result<(Vec<u8>, ReadEnd), String> {
        let Some(out) = self.out.as_mut() else {
            return Err("worker output already collected".into());
        };
        let deadline = now_ns() + timeout.as_nanos() as u64;
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if done(&data) {
                return Ok((data, ReadEnd::Done));
            }
            let left_ms = deadline.saturating_sub(now_ns()) / 1_000_000;
            if left_ms == 0 {
                return Ok((data, ReadEnd::Timeout));
            }
            let mut p = libc::pollfd {
                fd: out.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `p` is one valid pollfd.
            let rc = unsafe { libc::poll(&mut p, 1, left_ms.min(1000) as libc::c_int) };
            if rc <= 0 {
                continue;
            }
            match out.read(&mut buf) {
                Ok(0) => return Ok((data, ReadEnd::Eof)),
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading from worker {}: {e}", self.pid)),
            }
        }
    }

    /// Reads everything the child sends until it closes its end (normally by exiting), for
    /// at most `timeout`.
    pub fn collect(&mut self, timeout: Duration) -> Result<Vec<u8>, String> {
        match self.read_out(timeout, |_| false)? {
            (data, ReadEnd::Eof) => {
                self.out = None;
                Ok(data)
            }
            (data, _) => Err(format!(
                "worker {} sent no end of output within {}s ({} bytes so far)",
                self.pid,
                timeout.as_secs(),
                data.len()
            )),
        }
    }

    /// Reads what the running child sends until a line `key=…` has arrived (the child keeps
    /// running), for at most `timeout`. Returns the text read so far.
    pub fn read_line_until(&mut self, key: &str, timeout: Duration) -> Result<String, String> {
        let prefix = format!("{key}=");
        let (data, end) = self.read_out(timeout, |d| {
            let text = String::from_utf8_lossy(d);
            text.lines().any(|l| l.starts_with(&prefix)) && text.ends_with('\n')
        })?;
        let text = String::from_utf8_lossy(&data).into_owned();
        match end {
            ReadEnd::Done => Ok(text),
            ReadEnd::Eof => Err(format!(
                "worker {} closed its output before a {key}= line (got {text:?})",
                self.pid
            )),
            ReadEnd::Timeout => Err(format!(
                "worker {} sent no {key}= line within {}s (got {text:?})",
                self.pid,
                timeout.as_secs()
            )),
        }
    }

    /// Waits up to `timeout` for the child to exit and returns its exit code (128+signal
    /// if killed).
    pub fn wait(&mut self, timeout: Duration) -> Result<i32, String> {
        let deadline = now_ns() + timeout.as_nanos() as u64;
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child with a valid status pointer.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if rc == self.pid {
                self.reaped = true;
                return Ok(if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                });
            }
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    self.reaped = true;
                    return Err(format!("waitpid({}): {e}", self.pid));
                }
            }
            if now_ns() > deadline {
                return Err(format!(
                    "worker {} did not exit within {timeout:?}",
                    self.pid
                ));
            }
            sleep_ms(5);
        }
    }

    /// Stops the child, collects its output and reaps it.
    pub fn finish(&mut self, timeout: Duration) -> Result<Vec<u8>, String> {
        self.stop();
        let data = self.collect(timeout)?;
        let code = self.wait(timeout)?;
        if code != 0 {
            return Err(format!(
                "worker {} exited with status {code}; output: {}",
                self.pid,
                show_bytes(&data)
            ));
        }
        Ok(data)
    }

    /// Kills (SIGKILL) and reaps the child now.
    pub fn kill(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: signalling our own, not yet reaped child (its pid cannot be reused).
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        if let Err(e) = self.wait(Duration::from_secs(10)) {
            warn(format!("cleanup: {e}"));
        }
    }
}

impl Worker {
    /// Reaps the child if it has exited, without blocking: `Some(exit code)` (128+signal if
    /// killed) once it is gone, `None` while it still runs.
    pub fn try_wait(&mut self) -> Option<i32> {
        if self.reaped {
            return None;
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if rc != self.pid {
            return None;
        }
        self.reaped = true;
        Some(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.ctl = None;
        self.out = None;
        self.kill();
    }
}

/// Busy-spins until told to stop, recording the longest gap between two successive clock
/// reads after `warmup_ns` (the longest time the process was not running). Sends
/// `[max_gap_ns, loops]`. Used for "heavy" workers.
pub fn spin_recording_gaps(io: &mut WorkerIo, warmup_ns: u64) -> i32 {
    let start = now_ns();
    let warm_end = start + warmup_ns;
    let mut prev = start;
    let mut next_check = start;
    let mut max_gap = 0u64;
    let mut loops = 0u64;
    loop {
        let t = now_ns();
        if t >= warm_end {
            max_gap = max_gap.max(t - prev);
        }
        prev = t;
        loops += 1;
        if t >= next_check {
            if io.stop_requested() {
                break;
            }
            next_check = t + 1_000_000;
        }
    }
    io.send(&encode_u64s(&[max_gap, loops]));
    0
}

// ---------------------------------------------------------------------------------------
// Robustness helpers (stress and hostile-input suites)

/// One `write(2)` of `data` to a freshly opened `path`; returns the byte count the kernel
/// accepted (which may be short) or the errno.
pub fn write_count(path: impl AsRef<Path>, data: &[u8]) -> io::Result<usize> {
    let f = open_write(path.as_ref())?;
    // SAFETY: `f` is an open descriptor and `data` is valid for `data.len()` bytes.
    let n = unsafe { libc::write(f.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// A small deterministic PRNG (xorshift64*) for reproducible fuzzing: same seed, same
/// inputs.
pub use lags_pid1::rng::XorShift64Star as Rng;

/// For unit tests that fork (through [`Worker`]): [`Worker::spawn`] relies on the process
/// being single-threaded, but libtest runs tests on a pool of threads, any of which may hold
/// a lock (stdout, the output capture, an allocator arena) at the moment of `fork`. So such a
/// test starts with `if !in_own_process("path::to::test") { return; }`: in the test harness
/// this runs the same test alone in a fresh process of this test binary
/// (`--exact --test-threads=1`), asserts that it passed there and returns `false`; in that
/// process it returns `true`, and the test forks while the only other thread is libtest's
/// main thread, blocked waiting for this one test's result.
#[cfg(test)]
pub fn in_own_process(test: &str) -> bool {
    const CHILD: &str = "LAGS_GUEST_TEST_IN_OWN_PROCESS";
    if std::env::var_os(CHILD).is_some_and(|v| v == test) {
        let threads = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|st| {
                st.lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|n| n.trim().parse::<u32>().ok())
            })
            .expect("Threads: in /proc/self/status");
        assert!(
            threads <= 2,
            "{test}: {threads} threads in its own process; only libtest's main thread may \
             run beside the test"
        );
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(&exe)
        .args([test, "--exact", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .unwrap_or_else(|e| panic!("running {} {test}: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} in its own process: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect nearest-rank percentiles: p50 of 1..=100 is 50, p99 is 99, p100 the max.
    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 90.0), 90);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        // Small sets: p99 of 10 samples is the largest.
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&v, 99.0), 10);
        assert_eq!(percentile(&v, 50.0), 5);
    }

    // Expect a summary to sort its input first.
    #[test]
    fn summary_sorts() {
        let s = Summary::of(&[5, 1, 4, 2, 3]);
        assert_eq!((s.n, s.p50, s.p90, s.p99, s.max), (5, 3, 5, 5, 5));
    }

    // Expect kernel CPU lists with ranges, singles and a trailing newline.
    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0\n").unwrap(), vec![0]);
        assert_eq!(
            parse_cpu_list("0-3,5,7-8").unwrap(),
            vec![0, 1, 2, 3, 5, 7, 8]
        );
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }

    // Expect flat-keyed lookups to match whole keys only.
    #[test]
    fn keyed_files() {
        let stat = "usage_usec 1234\nuser_usec 1000\nlags_picks 7\nlags_credit_mcpu 865\n";
        assert_eq!(keyed_u64(stat, "usage_usec"), Some(1234));
        assert_eq!(keyed_u64(stat, "lags_credit_mcpu"), Some(865));
        assert_eq!(keyed_u64(stat, "usage"), None);
        assert_eq!(keyed_u64("x abc", "x"), None);
    }

    // Expect the CapEff hex mask of /proc/self/status.
    #[test]
    fn cap_eff() {
        let st = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(st), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x"), None);
    }

    // Expect u64 round trips and kv lookups for worker reports.
    #[test]
    fn worker_encodings() {
        let v = [0, 1, u64::MAX, 42];
        assert_eq!(decode_u64s(&encode_u64s(&v)), v);
        let kvs = parse_kv_lines("a=1\nnoise\nb=x=y\n");
        assert_eq!(kv(&kvs, "a"), Some("1"));
        assert_eq!(kv(&kvs, "b"), Some("x=y"));
        assert_eq!(kv(&kvs, "c"), None);
    }

    // Expect diagnostics to show control bytes and long runs readably.
    #[test]
    fn bytes_for_humans() {
        assert_eq!(show_bytes(b"1\0x"), "\"1\\x00x\"");
        assert_eq!(show_bytes(&[0xff, 0xfe]), "\"\\xff\\xfe\"");
        assert_eq!(show_bytes(&[b'1'; 4096]), "'1' x 4096");
        assert_eq!(errno_name(libc::EINVAL), "EINVAL");
        assert_eq!(errno_name(9999), "errno 9999");
    }

    // Expect a forked worker to start on "go", report over the pipe, and be reaped.
    #[test]
    fn worker_round_trip() {
        if !in_own_process("util::tests::worker_round_trip") {
            return;
        }
        let mut w = Worker::spawn(|io| {
            io.send_kv("hello", 42);
            0
        })
        .unwrap();
        w.go().unwrap();
        let out = w.finish(Duration::from_secs(10)).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "hello=42\n");
    }

    // Expect a spinning worker to notice the stop request and a dropped one to be killed.
    #[test]
    fn worker_stop_and_kill() {
        if !in_own_process("util::tests::worker_stop_and_kill") {
            return;
        }
        let mut w = Worker::spawn(|io| spin_recording_gaps(io, 0)).unwrap();
        w.go().unwrap();
        sleep_ms(50);
        let out = decode_u64s(&w.finish(Duration::from_secs(10)).unwrap());
        assert_eq!(out.len(), 2);
        assert!(out[1] > 0);

        let mut w = Worker::spawn(|_| loop {
            sleep_ms(1000);
        })
        .unwrap();
        w.go().unwrap();
        let pid = w.pid();
        drop(w);
        // SAFETY: signal 0 only checks for existence.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "worker {pid} survived its guard");
    }
}
