// SPDX-License-Identifier: GPL-2.0
//! Cgroups: v2 groups as guards that remove themselves.

use super::*;

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
