//! The guest's initramfs, written in-process as a newc cpio archive.
//!
//! Device nodes are created inside the archive, so no root privileges are needed (the
//! virtme-ng approach). Host programs are carried with the shared libraries `ldd` reports,
//! at the same paths, so real tools (perf, stress-ng) run unchanged in the guest.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::ldd::shared_libs;
use crate::util;

/// The base layout of every guest image (see the file for its format).
const LAYOUT: &str = include_str!("../../../qemu/image/layout");

/// The files `LAYOUT` may name, by their path under `qemu/image/`.
const IMAGE_FILES: &[(&str, &[u8])] = &[
    (
        "etc/passwd",
        include_bytes!("../../../qemu/image/etc/passwd"),
    ),
    ("etc/group", include_bytes!("../../../qemu/image/etc/group")),
];

/// Parses a layout: `dir PATH`, `chardev PATH MAJOR MINOR`, `file PATH SOURCE MODE` (octal),
/// blank lines and `#` comments.
fn parse_layout(text: &str) -> Result<Vec<(String, Entry)>> {
    let mut out = Vec::new();
    for (no, line) in (1..).zip(text.lines()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let entry = match words.as_slice() {
            [] => continue,
            [w, ..] if w.starts_with('#') => continue,
            ["dir", path] => (path, Entry::Dir),
            ["chardev", path, major, minor] => (
                path,
                Entry::CharDev {
                    major: major.parse().with_context(|| format!("line {no}: major"))?,
                    minor: minor.parse().with_context(|| format!("line {no}: minor"))?,
                },
            ),
            ["file", path, source, mode] => {
                let data = IMAGE_FILES
                    .iter()
                    .find(|(name, _)| name == source)
                    .with_context(|| format!("line {no}: no image file {source}"))?
                    .1;
                let mode = u32::from_str_radix(mode, 8)
                    .with_context(|| format!("line {no}: mode {mode}"))?;
                (
                    path,
                    Entry::File {
                        data: data.to_vec(),
                        mode,
                    },
                )
            }
            _ => bail!("line {no}: cannot read {line:?}"),
        };
        if !entry.0.starts_with('/') {
            bail!("line {no}: {} is not an absolute path", entry.0);
        }
        out.push((entry.0.to_string(), entry.1));
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

/// An initramfs being assembled; paths are absolute guest paths.
#[derive(Debug, Default)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

fn key(path: &str) -> String {
    path.trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

impl Initramfs {
    /// An archive with the base layout of every guest image, `qemu/image/layout`: the
    /// standard directories, the device nodes PID 1 needs before devtmpfs is mounted, and
    /// `/etc/passwd` and `/etc/group`.
    pub fn new() -> Self {
        let mut i = Initramfs::default();
        for entry in parse_layout(LAYOUT).expect("qemu/image/layout") {
            match entry {
                (path, Entry::Dir) => i.dir(&path),
                (path, Entry::CharDev { major, minor }) => i.char_dev(&path, major, minor),
                (path, Entry::File { data, mode }) => i.file(&path, data, mode),
                (path, Entry::Symlink(target)) => i.symlink(&path, &target),
            }
        }
        i
    }

    /// Adds a directory and its parents.
    pub fn dir(&mut self, path: &str) {
        let k = key(path);
        let mut acc = String::new();
        for part in k.split('/').filter(|p| !p.is_empty()) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            self.entries.entry(acc.clone()).or_insert(Entry::Dir);
        }
    }

    fn parent(&mut self, path: &str) {
        if let Some((p, _)) = key(path).rsplit_once('/') {
            self.dir(p);
        }
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.parent(path);
        self.entries.insert(key(path), Entry::File { data, mode });
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.parent(path);
        self.entries
            .insert(key(path), Entry::Symlink(target.to_string()));
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, path: &str, major: u32, minor: u32) {
        self.parent(path);
        self.entries
            .insert(key(path), Entry::CharDev { major, minor });
    }

    /// Copies a host file (following symlinks) to `dest`, keeping its permission bits.
    pub fn host_file(&mut self, dest: &str, src: &Path) -> Result<()> {
        let data =
            fs_err::read(src).with_context(|| format!("failed to read {}", src.display()))?;
        let mode = fs_err::metadata(src)?.permissions().mode() & 0o7777;
        self.file(dest, data, mode);
        Ok(())
    }

    /// Adds static busybox as `/bin/busybox` with a symlink per applet.
    pub fn busybox(&mut self, busybox: &Path) -> Result<()> {
        self.host_file("/bin/busybox", busybox)?;
        let list = util::output(Command::new(busybox).arg("--list-full"))
            .context("`busybox --list-full` failed (is busybox-static installed?)")?;
        for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let path = format!("/{applet}");
            // Never let an applet shadow /init or a file we placed deliberately.
            if path == "/init" || self.entries.contains_key(&key(&path)) {
                continue;
            }
            self.symlink(&path, "/bin/busybox");
        }
        Ok(())
    }

    /// Adds a host program and every shared library it needs, at their host paths.
    pub fn host_program(&mut self, program: &Path) -> Result<()> {
        let program = if program.is_absolute() {
            program.to_path_buf()
        } else {
            util::which(&program.to_string_lossy())
                .with_context(|| format!("program {} not found in PATH", program.display()))?
        };
        let dest = program.to_string_lossy().into_owned();
        self.host_file(&dest, &program)?;
        for lib in shared_libs(&program)? {
            let d = lib.to_string_lossy().into_owned();
            if !self.entries.contains_key(&key(&d)) {
                self.host_file(&d, &lib)?;
            }
        }
        Ok(())
    }

    /// Writes the archive.
    pub fn write_to(&self, out: &Path) -> Result<()> {
        let mut buf = Vec::new();
        self.encode(&mut buf)?;
        util::write(out, buf)
    }

    /// Encodes the archive in the newc format (parents always precede children: the map
    /// is sorted and '/' sorts after every character allowed in our names but '-' and '.').
    pub fn encode(&self, w: &mut impl Write) -> Result<()> {
        // BTreeMap order puts "a-b" between "a" and "a/x", which is harmless: parents still
        // come first because a parent is a prefix of its children.
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match entry {
                Entry::Dir => (0o040_755, &[], (0, 0)),
                Entry::File { data, mode } => (0o100_000 | mode, data, (0, 0)),
                Entry::Symlink(t) => (0o120_777, t.as_bytes(), (0, 0)),
                Entry::CharDev { major, minor } => (0o020_600, &[], (*major, *minor)),
            };
            let nlink = if matches!(entry, Entry::Dir) { 2 } else { 1 };
            write_entry(w, ino, mode, nlink, path, data, rdev)?;
        }
        write_entry(w, 0, 0, 1, "TRAILER!!!", &[], (0, 0))?;
        Ok(())
    }
}

fn write_entry(
    w: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    name: &str,
    data: &[u8],
    rdev: (u32, u32),
) -> Result<()> {
    let namesize = name.len() + 1;
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0, // uid
        0, // gid
        0, // mtime: fixed, so identical inputs give identical archives
        data.len(),
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        0, // check
    );
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad(w, 110 + namesize)?;
    w.write_all(data)?;
    pad(w, data.len())?;
    Ok(())
}

fn pad(w: &mut impl Write, len: usize) -> Result<()> {
    let n = (4 - len % 4) % 4;
    w.write_all(&[0u8; 3][..n])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect newc headers, 4-byte alignment, parents before children and a trailer.
    #[test]
    fn newc_layout() {
        let mut i = Initramfs::default();
        i.file("/bin/x", b"hello".to_vec(), 0o755);
        i.symlink("/bin/sh", "/bin/busybox");
        i.char_dev("/dev/console", 5, 1);
        let mut buf = Vec::new();
        i.encode(&mut buf).unwrap();
        assert_eq!(buf.len() % 4, 0);
        let text = String::from_utf8_lossy(&buf);
        let names: Vec<&str> = [
            "bin\0",
            "bin/sh\0",
            "bin/x\0",
            "dev\0",
            "dev/console\0",
            "TRAILER!!!\0",
        ]
        .into_iter()
        .collect();
        let mut last = 0;
        for n in names {
            let pos = text.find(n).unwrap_or_else(|| panic!("{n:?} missing"));
            assert!(pos >= last, "{n:?} out of order");
            last = pos;
        }
        // First header: magic, inode 1, directory mode.
        assert!(text.starts_with("07070100000001000041ed"));
        // The character device carries its major/minor in rdev.
        let dev = text.find("dev/console\0").unwrap();
        let hdr = &text[dev - 110..dev];
        assert_eq!(&hdr[78..94], "0000000500000001");
        // File data follows its padded name.
        assert!(text.contains("bin/x\0hello"));
    }

    // Expect the base archive (directories, device nodes, passwd and group; what every
    // image starts from) to be byte for byte the committed one, so that a change of the
    // guest's layout shows in review (UPDATE_EXPECT=1 rewrites it).
    #[test]
    fn base_archive_is_the_committed_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/initramfs/base.cpio");
        let mut got = Vec::new();
        Initramfs::new().encode(&mut got).unwrap();
        if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            want == got,
            "{} differs from Initramfs::new() (UPDATE_EXPECT=1 rewrites it):\n{}",
            path.display(),
            String::from_utf8_lossy(&got)
        );
    }

    // Expect the layout format: every kind of line, comments, and errors that name the line.
    #[test]
    fn layout_lines() {
        let got =
            parse_layout("# c\n\ndir /a/b\nchardev /dev/x 4 65\nfile /etc/group etc/group 0640\n")
                .unwrap();
        assert_eq!(
            got,
            [
                ("/a/b".to_string(), Entry::Dir),
                (
                    "/dev/x".to_string(),
                    Entry::CharDev {
                        major: 4,
                        minor: 65
                    }
                ),
                (
                    "/etc/group".to_string(),
                    Entry::File {
                        data: b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
                        mode: 0o640
                    }
                ),
            ]
        );
        for (bad, why) in [
            (
                "dir /a\nfile /x etc/shadow 0644",
                "line 2: no image file etc/shadow",
            ),
            ("chardev /dev/x 4", "line 1: cannot read"),
            ("dir a", "line 1: a is not an absolute path"),
            ("file /x etc/group 0689", "line 1: mode 0689"),
        ] {
            let e = format!("{:#}", parse_layout(bad).unwrap_err());
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        // Every image file is used by the layout.
        for (name, _) in IMAGE_FILES {
            assert!(LAYOUT.contains(&format!(" {name} ")), "{name} unused");
        }
    }

    // Expect the image's passwd and group to give `nobody` the uid and gid the guest's
    // privilege drop uses (lags_pid1::cred::NOBODY).
    #[test]
    fn image_nobody_is_the_guests() {
        let file = |name: &str| {
            let (_, data) = IMAGE_FILES.iter().find(|(n, _)| *n == name).unwrap();
            String::from_utf8(data.to_vec()).unwrap()
        };
        let nobody = lags_pid1::cred::NOBODY.to_string();
        let passwd = file("etc/passwd");
        let user: Vec<&str> = passwd
            .lines()
            .find(|l| l.starts_with("nobody:"))
            .expect("nobody in passwd")
            .split(':')
            .collect();
        assert_eq!((user[2], user[3]), (nobody.as_str(), nobody.as_str()));
        let group = file("etc/group");
        assert!(
            group
                .lines()
                .any(|l| l.split(':').nth(2) == Some(nobody.as_str())),
            "{group}"
        );
    }

    // Expect that a real host program is carried with its loader.
    #[test]
    fn carries_host_program_with_libs() {
        let mut i = Initramfs::new();
        i.host_program(Path::new("/bin/true")).unwrap();
        assert!(i.entries.contains_key("bin/true"));
        assert!(i.entries.keys().any(|k| k.contains("ld-linux")));
    }
}
