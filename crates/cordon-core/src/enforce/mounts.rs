//! The container root: a tmpfs with read-only binds of the system set and the
//! `read` paths, read-write binds of the `write` paths, carve-outs for `deny`,
//! a private `/proc`, a minimal `/dev`, a size-capped `/tmp`; `nosuid` and
//! `nodev` everywhere but on the device binds.
//!
//! The steps run in init, inside the new user and mount namespaces:
//!
//! 1. make every mount private, so nothing propagates back to the host;
//! 2. mount a staging tmpfs on `/tmp` and `pivot_root` into it, the host root
//!    landing on `/oldroot` (the move uncovers the host's `/tmp` there);
//! 3. build `/newroot`: mount points first, read-only binds, one recursive
//!    read-only `mount_setattr`, then everything writable on top;
//! 4. `pivot_root(".", ".")` in `/newroot` and detach the old root, so no
//!    host path stays reachable.
//!
//! Sources are `/oldroot` plus the host path with symlinks resolved, because
//! an absolute link would otherwise resolve against the staging root.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::plan::{FsAccess, RootPlan};
use crate::sys::child::MountOp;

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// Options of the sandbox's `/proc`: processes the reader may not ptrace are
/// not listed. Init (pid 1, a fork of cordon outside the Landlock domain)
/// is one, so cordon's own command line stays out of view. `ptraceable`
/// rather than `invisible`: the latter exempts members of the mount's `gid`
/// (root's group by default), which the sandbox's processes may well be.
const HIDE_INIT: &str = "hidepid=ptraceable";

/// Options of the run's own devpts instance: `newinstance` (never the
/// host's ptys), a `ptmx` anyone in the run may open, slaves private to
/// their owner and group.
const DEVPTS: &str = "newinstance,ptmxmode=0666,mode=0620";

/// Devices bound from the host into the minimal `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn c(p: impl AsRef<Path>) -> CString {
    CString::new(p.as_ref().as_os_str().as_bytes()).expect("paths come from the OS and have no NUL")
}

fn cs(s: &str) -> CString {
    CString::new(s).expect("static strings have no NUL")
}

fn under(root: &str, p: &Path) -> PathBuf {
    Path::new(root).join(p.strip_prefix("/").unwrap_or(p))
}

/// The steps, and the directories already made (many grants share parents).
struct Ops(Vec<MountOp>, std::collections::BTreeSet<PathBuf>);

impl Ops {
    fn mount(&mut self, src: &str, target: impl AsRef<Path>, fstype: &str, flags: libc::c_ulong, data: &str) {
        self.0.push(MountOp::Mount { src: cs(src), target: c(target), fstype: cs(fstype), flags, data: cs(data) });
    }
    fn bind(&mut self, src: impl AsRef<Path>, target: impl AsRef<Path>) {
        self.0.push(MountOp::Mount {
            src: c(src),
            target: c(target),
            fstype: cs(""),
            flags: libc::MS_BIND | libc::MS_REC,
            data: cs(""),
        });
    }
    fn setattr(&mut self, path: impl AsRef<Path>, attr: u64, recursive: bool) {
        self.0.push(MountOp::SetAttr { path: c(path), attr, recursive });
    }
    fn mkdir_p(&mut self, path: &Path) {
        let mut acc = PathBuf::from("/");
        for comp in path.components().skip(1) {
            acc.push(comp);
            if self.1.insert(acc.clone()) {
                self.0.push(MountOp::Mkdir { path: c(&acc), mode: 0o755 });
            }
        }
    }
    fn mountpoint(&mut self, path: &Path, is_dir: bool) {
        match (is_dir, path.parent()) {
            (true, _) => self.mkdir_p(path),
            (false, Some(parent)) => {
                self.mkdir_p(parent);
                self.0.push(MountOp::Touch { path: c(path) });
            }
            (false, None) => {}
        }
    }
    fn symlink(&mut self, target: impl AsRef<Path>, path: impl AsRef<Path>) {
        self.0.push(MountOp::Symlink { target: c(target), path: c(path) });
    }
}

/// A host path as it will be bound: where it shows inside, and its source.
enum Entry {
    Bind { inside: PathBuf, source: PathBuf, is_dir: bool, access: FsAccess },
    Link { inside: PathBuf, target: PathBuf },
}

fn resolve(path: &Path, access: FsAccess, system: bool) -> Option<Entry> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if system {
        // System entries are recreated as links when they are links, and
        // bound where they are otherwise: their parents (`/`, `/etc`, ...)
        // are real directories, so resolving each component again (a
        // readlink per component, for ~50 entries) would buy nothing.
        if meta.file_type().is_symlink() {
            return Some(Entry::Link { inside: path.to_owned(), target: std::fs::read_link(path).ok()? });
        }
        return Some(Entry::Bind { inside: path.to_owned(), source: path.to_owned(), is_dir: meta.is_dir(), access });
    }
    let source = std::fs::canonicalize(path).ok()?;
    let is_dir = if source == path { meta.is_dir() } else { source.is_dir() };
    Some(Entry::Bind { inside: source.clone(), source, is_dir, access })
}

/// Process mode's mounts, after making every mount private so nothing
/// propagates to the host: the run's own `/proc` (its pid namespace only:
/// other processes are not listed), a private tmpfs on `/dev/shm`
/// (POSIX semaphores and shared memory live there), and a devpts instance
/// of its own on `/dev/pts` with its `ptmx` bound on `/dev/ptmx`, so
/// `openpty` works and allocates nowhere but there.
///
/// With `tmp_size_mb`, also a private tmpfs on `/tmp` (and the working
/// directory inside it, when it lies there and no grant provides it).
pub fn process_mode_ops(tmp_size_mb: Option<u64>, cwd: &Path) -> Vec<MountOp> {
    let mut ops = Ops(vec![], Default::default());
    ops.mount("", "/", "", libc::MS_REC | libc::MS_PRIVATE, "");
    ops.mount("proc", "/proc", "proc", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, HIDE_INIT);
    if Path::new("/dev/shm").is_dir() {
        ops.mount("tmpfs", "/dev/shm", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=1777,size=64m");
    }
    if Path::new("/dev/pts").is_dir() && Path::new("/dev/ptmx").exists() {
        ops.mount("devpts", "/dev/pts", "devpts", libc::MS_NOSUID | libc::MS_NOEXEC, DEVPTS);
        ops.mount("/dev/pts/ptmx", "/dev/ptmx", "", libc::MS_BIND, "");
    }
    if let Some(mb) = tmp_size_mb {
        ops.mount("tmpfs", "/tmp", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, &format!("mode=1777,size={mb}m"));
        if cwd.starts_with("/tmp") {
            ops.mkdir_p(cwd);
        }
    }
    ops.0
}

/// Mount points (or links) for `entries` in `/newroot`.
fn mountpoints(ops: &mut Ops, entries: &[Entry]) {
    for e in entries {
        match e {
            Entry::Bind { inside, is_dir, .. } => ops.mountpoint(&under("/newroot", inside), *is_dir),
            Entry::Link { inside, target } => {
                if let Some(parent) = inside.parent() {
                    ops.mkdir_p(&under("/newroot", parent));
                }
                ops.symlink(target, under("/newroot", inside));
            }
        }
    }
}

/// Read-write binds of the writable `entries`.
fn bind_writable(ops: &mut Ops, entries: &[Entry]) {
    for e in entries {
        if let Entry::Bind { inside, source, access: FsAccess::Write | FsAccess::Device, .. } = e {
            let target = under("/newroot", inside);
            ops.bind(under("/oldroot", source), &target);
            ops.setattr(&target, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
        }
    }
}

/// Turns the root plan into mount steps, reading the host to tell files,
/// directories and symbolic links apart. Paths that do not exist are skipped.
/// `cwd` is created (empty) when no grant provides it, so the command starts
/// where it was asked to and relative grants below it resolve.
pub fn build_mount_ops(root: &RootPlan, system: &[&str], cwd: &Path) -> Vec<MountOp> {
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    let mut ops = Ops(vec![], Default::default());
    ops.mount("", "/", "", libc::MS_REC | libc::MS_PRIVATE, "");
    ops.mount("tmpfs", "/tmp", "tmpfs", nosuid_nodev, "mode=0755,size=64k,nr_inodes=64");
    ops.0.push(MountOp::Chdir { path: cs("/tmp") });
    ops.0.push(MountOp::Mkdir { path: cs("/tmp/oldroot"), mode: 0o755 });
    ops.0.push(MountOp::Mkdir { path: cs("/tmp/newroot"), mode: 0o755 });
    ops.0.push(MountOp::PivotRoot { new_root: cs("."), put_old: cs("oldroot") });
    ops.0.push(MountOp::Chdir { path: cs("/") });
    ops.mount("tmpfs", "/newroot", "tmpfs", nosuid_nodev, "mode=0755,size=1m,nr_inodes=4096");

    // Grants under /tmp are mounted after the private /tmp, on top of it.
    let (in_tmp, entries): (Vec<Entry>, Vec<Entry>) = root
        .binds
        .iter()
        .filter_map(|b| resolve(&b.path, b.access, system.contains(&b.path.to_str().unwrap_or(""))))
        .partition(|e| matches!(e, Entry::Bind { inside, .. } if inside.starts_with("/tmp")));
    // Mount points first, while the root is still writable.
    for dir in ["/dev", "/proc", "/tmp"] {
        ops.0.push(MountOp::Mkdir { path: c(under("/newroot", Path::new(dir))), mode: 0o755 });
    }
    let cwd_in_tmp = cwd.starts_with("/tmp");
    if !cwd_in_tmp {
        ops.mkdir_p(&under("/newroot", cwd));
    }
    mountpoints(&mut ops, &entries);
    let denied: Vec<(PathBuf, bool)> = root
        .deny
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .map(|d| {
            let dir = d.is_dir();
            (d, dir)
        })
        .collect();
    let deny_in = |ops: &mut Ops, entries: &[Entry], access: FsAccess| {
        for (d, is_dir) in &denied {
            let inside_of =
                |e: &Entry| matches!(e, Entry::Bind { inside, access: a, .. } if d.starts_with(inside) && *a == access);
            if !entries.iter().any(inside_of) {
                continue;
            }
            let target = under("/newroot", d);
            if *is_dir {
                ops.mount(
                    "tmpfs",
                    &target,
                    "tmpfs",
                    libc::MS_RDONLY | nosuid_nodev | libc::MS_NOEXEC,
                    "mode=000,size=4k,nr_inodes=1",
                );
            } else {
                ops.bind("/oldroot/dev/null", &target);
                ops.setattr(
                    &target,
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
                    false,
                );
            }
        }
    };
    for e in &entries {
        if let Entry::Bind { inside, source, access: FsAccess::Read, .. } = e {
            ops.bind(under("/oldroot", source), under("/newroot", inside));
        }
    }
    deny_in(&mut ops, &entries, FsAccess::Read);
    ops.setattr("/newroot", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
    bind_writable(&mut ops, &entries);
    deny_in(&mut ops, &entries, FsAccess::Write);

    // A minimal /dev.
    ops.mount("tmpfs", "/newroot/dev", "tmpfs", libc::MS_NOSUID | libc::MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64");
    for d in DEVICES {
        let host = Path::new("/dev").join(d);
        if host.exists() {
            let target = under("/newroot", &host);
            ops.0.push(MountOp::Touch { path: c(&target) });
            // No nosuid/noexec needed on a character device: neither applies.
            ops.bind(under("/oldroot", &host), &target);
        }
    }
    ops.0.push(MountOp::Mkdir { path: cs("/newroot/dev/pts"), mode: 0o755 });
    ops.mount("devpts", "/newroot/dev/pts", "devpts", libc::MS_NOSUID | libc::MS_NOEXEC, DEVPTS);
    ops.symlink("pts/ptmx", "/newroot/dev/ptmx");
    ops.0.push(MountOp::Mkdir { path: cs("/newroot/dev/shm"), mode: 0o1777 });
    ops.mount("tmpfs", "/newroot/dev/shm", "tmpfs", nosuid_nodev, "mode=1777,size=64m");
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.symlink(target, Path::new("/newroot/dev").join(name));
    }
    ops.setattr("/newroot/dev", MOUNT_ATTR_RDONLY, false);

    // The pid namespace's own /proc, with the global knobs read-only.
    ops.mount("proc", "/newroot/proc", "proc", nosuid_nodev | libc::MS_NOEXEC, HIDE_INIT);
    for knob in ["sys", "sysrq-trigger", "irq", "bus"] {
        if !Path::new("/proc").join(knob).exists() {
            continue;
        }
        let knob = Path::new("/newroot/proc").join(knob);
        ops.bind(&knob, &knob);
        ops.setattr(&knob, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, true);
    }
    ops.mount("tmpfs", "/newroot/tmp", "tmpfs", nosuid_nodev, &format!("mode=1777,size={}m", root.tmp_size_mb));
    if cwd_in_tmp {
        ops.mkdir_p(&under("/newroot", cwd));
    }
    mountpoints(&mut ops, &in_tmp);
    for e in &in_tmp {
        if let Entry::Bind { inside, source, access: FsAccess::Read, .. } = e {
            let target = under("/newroot", inside);
            ops.bind(under("/oldroot", source), &target);
            ops.setattr(&target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
        }
    }
    deny_in(&mut ops, &in_tmp, FsAccess::Read);
    bind_writable(&mut ops, &in_tmp);
    deny_in(&mut ops, &in_tmp, FsAccess::Write);

    ops.0.push(MountOp::Chdir { path: cs("/newroot") });
    ops.0.push(MountOp::PivotRoot { new_root: cs("."), put_old: cs(".") });
    ops.0.push(MountOp::Detach { path: cs(".") });
    ops.0.push(MountOp::Chdir { path: cs("/") });
    ops.0
}
