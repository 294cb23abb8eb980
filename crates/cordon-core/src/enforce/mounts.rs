//! The sandbox's mounts, built by init in the run's mount namespace.
//!
//! Container mode gets a fresh root: a tmpfs with read-only binds of the
//! system set and the `read` paths, read-write binds of the `write` paths,
//! carve-outs for `deny`, a private `/proc`, a minimal `/dev`, a size-capped
//! `/tmp`; `nosuid` and `nodev` everywhere but on the device binds, which
//! are read-only (a device node stays writable on a read-only mount, but its
//! mode, owner and times cannot change). The steps:
//!
//! 1. make every mount private, so nothing propagates back to the host;
//! 2. take a detached copy (`open_tree`) of every grant's tree, while the
//!    host's `/tmp` (where grants may live) is still in view;
//! 3. mount the new root, a tmpfs, on `/tmp` ([`NEW_ROOT`]) and build it
//!    there from the host's paths: mount points first, read-only binds, one
//!    recursive read-only `mount_setattr`, then everything writable on top;
//! 4. `pivot_root(".", ".")` in it and detach the old root, so no host path
//!    stays reachable. The detach waits for an RCU grace period, so init
//!    has a thread of its own make it while it goes on; the command's
//!    process waits for it before the command can run (`sys::child`'s
//!    `start_detach` and `await_detach`).
//!
//! One `pivot_root` per run: each scans every task of the host
//! (`chroot_fs_refs`), and the root is built where the host's paths are
//! still the sources, so no staging root is needed to reach them.
//! Grants are bound from the host path with symlinks resolved; having been
//! resolved, a grant's source and mount point are opened in the
//! child without following any link (`RESOLVE_NO_SYMLINKS`, then
//! `open_tree` + `move_mount` on the descriptors), in both modes: a link
//! made on the path after it was resolved fails the run rather than bind
//! another tree. Paths inside a pinned tree (a plugin folder, resolved when
//! its policy was made) are not resolved again.
//!
//! Process mode keeps the host's mounts in view ([`host_view_ops`]), because
//! Landlock alone cannot stop `chmod`, `chown`, `utimes` or `setxattr`
//! (Landlock up to ABI 7 has no rights for them): propagation from the host
//! is cut, every inherited mount is made read-only with one recursive
//! `mount_setattr` (mounts the host adds later cannot propagate in, so they
//! cannot bring a writable tree), and the write grants are bound read-write
//! on top. In a user namespace the inherited mounts are locked, which forbids
//! clearing a read-only flag the host set but not setting one.
//!
//! With an exec allow-list ([`ExecMounts::ListedOnly`]) both modes mount
//! every tree `noexec` except the system library folders and the listed
//! files, so the ELF loader cannot map an unlisted program.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::plan::{ExecMounts, FsAccess, RootPlan};
use crate::sys::child::MountOp;
use crate::system_entries::{Kind, SystemEntries, SystemEntry};

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

/// Where container mode builds the new root in the run's mount namespace,
/// before `pivot_root` makes it `/`: the host's `/tmp`, which the tmpfs
/// hides from the run (its grants there are copied before, step 2 of the
/// module docs).
pub const NEW_ROOT: &str = "/tmp";

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
struct Ops(Vec<MountOp>, std::collections::HashSet<PathBuf>);

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
    /// A recursive bind of a path cordon resolved (no links left on it),
    /// made without following links at either end: a link made on the path
    /// since it was resolved fails the run instead of redirecting the bind.
    fn bind_resolved(&mut self, src: impl AsRef<Path>, target: impl AsRef<Path>) {
        let slot = self.0.iter().filter(|op| matches!(op, MountOp::CloneTree { .. })).count();
        self.0.push(MountOp::CloneTree { path: c(src), slot });
        self.0.push(MountOp::AttachTree { slot, target: c(target), attr: 0 });
    }
    fn setattr(&mut self, path: impl AsRef<Path>, attr: u64, recursive: bool) {
        self.0.push(MountOp::SetAttr { path: c(path), attr, recursive });
    }
    /// Hides a denied path: an empty, read-only tmpfs (mode 000) on a
    /// directory, `/dev/null` read-only on a file (`null` is where that is).
    fn hide(&mut self, target: &Path, is_dir: bool, null: &str) {
        if is_dir {
            self.mount(
                "tmpfs",
                target,
                "tmpfs",
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                "mode=000,size=4k,nr_inodes=1",
            );
        } else {
            self.bind(null, target);
            self.setattr(target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false);
        }
    }
    /// Hides the denied folder `d` (a host path) in the new root as
    /// [`Ops::hide`] does, but for `kept`, binds in a hole of it
    /// ([`crate::policy::FsPolicy::holes`]): the tmpfs is made with their
    /// mount points (it and its folders `0111`: passed through, never
    /// listed, by a run without capabilities), they are bound on them, then
    /// it goes read-only. Made again on each hiding of
    /// `d`, so the last one on top has them.
    fn hide_but(&mut self, d: &Path, kept: &[&Entry], exec: ExecMounts) {
        let target = under(NEW_ROOT, d);
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        self.mount("tmpfs", &target, "tmpfs", flags, "mode=0111,size=4k,nr_inodes=64");
        for e in kept {
            let Entry::Bind { inside, source, is_dir, access } = e else { continue };
            let Ok(rest) = inside.strip_prefix(d) else { continue };
            let mut at = target.clone();
            let parts: Vec<_> = rest.components().collect();
            for (i, part) in parts.iter().enumerate() {
                at.push(part);
                if i + 1 == parts.len() && !*is_dir {
                    self.0.push(MountOp::Touch { path: c(&at) });
                } else {
                    self.0.push(MountOp::Mkdir { path: c(&at), mode: 0o111 });
                }
            }
            self.bind_resolved(source, &at);
            self.setattr(&at, bind_attrs(*access, exec), true);
        }
        self.setattr(&target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, false);
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

/// `path` as it will be bound. A path inside a `pinned` tree was resolved
/// when the policy was made and is taken as it is (a link on it now means it
/// changed since: it is not bound, and Landlock refuses the run). A system
/// entry (`system`, as the run looked at it) is recreated as a link when it
/// is one, and bound where it is otherwise: its parents (`/`, `/etc`, ...)
/// are the host's own folders, so resolving each component again would buy
/// nothing.
fn resolve(path: &Path, access: FsAccess, system: Option<&SystemEntry>, pinned: &[PathBuf]) -> Option<Entry> {
    let is_pinned = pinned.iter().any(|p| path.starts_with(p));
    if let (Some(e), false) = (system, is_pinned) {
        let is_dir = match &e.kind {
            Kind::Missing => return None,
            Kind::Link(target) => return Some(Entry::Link { inside: path.to_owned(), target: target.clone() }),
            Kind::Dir => true,
            Kind::File => false,
        };
        return Some(Entry::Bind { inside: path.to_owned(), source: path.to_owned(), is_dir, access });
    }
    let meta = std::fs::symlink_metadata(path).ok()?;
    if is_pinned {
        if meta.file_type().is_symlink() {
            return None;
        }
        return Some(Entry::Bind { inside: path.to_owned(), source: path.to_owned(), is_dir: meta.is_dir(), access });
    }
    let source = std::fs::canonicalize(path).ok()?;
    let is_dir = if source == path { meta.is_dir() } else { source.is_dir() };
    Some(Entry::Bind { inside: source.clone(), source, is_dir, access })
}

/// The `MOUNT_ATTR_*` bits `exec` adds to mounts that hold no listed file.
fn noexec(exec: ExecMounts) -> u64 {
    match exec {
        ExecMounts::Everywhere => 0,
        ExecMounts::ListedOnly => MOUNT_ATTR_NOEXEC,
    }
}

/// `MS_NOEXEC` when `exec` makes unlisted trees non-executable.
fn ms_noexec(exec: ExecMounts) -> libc::c_ulong {
    match exec {
        ExecMounts::Everywhere => 0,
        ExecMounts::ListedOnly => libc::MS_NOEXEC,
    }
}

/// `MOUNT_ATTR_*` bits a bind with `access` gets: only write grants are
/// writable; only `Exec` binds stay executable under an exec allow-list.
/// Binds are copies of the host's mounts (taken before anything was made
/// read-only or `noexec`), so nothing needs clearing: clearing a flag the
/// host locked on a submount would fail.
fn bind_attrs(access: FsAccess, exec: ExecMounts) -> u64 {
    let base = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    match access {
        FsAccess::Write => base | noexec(exec),
        FsAccess::Exec => base | MOUNT_ATTR_RDONLY,
        FsAccess::List | FsAccess::Read | FsAccess::Device | FsAccess::Terminal => {
            base | MOUNT_ATTR_RDONLY | noexec(exec)
        }
    }
}

/// A bind of process mode: its resolved path, whether it is a directory,
/// and its access.
struct Resolved {
    path: PathBuf,
    is_dir: bool,
    access: FsAccess,
}

/// Resolves `binds` (symlinks included; those inside `pinned` trees were
/// resolved already and are taken as they are) and drops those that do not
/// exist or repeat an earlier resolved path with the same access.
fn resolve_all(binds: &[crate::plan::Bind], pinned: &[PathBuf]) -> Vec<Resolved> {
    let mut out: Vec<Resolved> = vec![];
    for b in binds {
        let path = if pinned.iter().any(|p| b.path.starts_with(p)) {
            match std::fs::symlink_metadata(&b.path) {
                Ok(m) if !m.file_type().is_symlink() => b.path.clone(),
                _ => continue,
            }
        } else {
            let Ok(path) = std::fs::canonicalize(&b.path) else { continue };
            path
        };
        if out.iter().any(|r| r.path == path && r.access == b.access) {
            continue;
        }
        out.push(Resolved { is_dir: path.is_dir(), path, access: b.access });
    }
    out
}

/// Files cordon writes for a sandbox with transparent egress: its resolver
/// configuration, pointing at the stub DNS, at the paths in [`NET_FILES`].
/// Nothing is written to the host: container mode's init writes them into
/// the sandbox's root before it goes read-only, unless a grant's bind covers
/// them there (`/etc`, `/`); process mode, and container mode with such a
/// grant, into a small tmpfs that the run's `/proc` then covers, bound
/// read-only over the files after every grant's bind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetFiles {
    /// `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// `/etc/hosts`.
    pub hosts: String,
}

/// Where [`NetFiles`] appear inside the sandbox.
pub const NET_FILES: [&str; 2] = ["/etc/resolv.conf", "/etc/hosts"];

impl NetFiles {
    /// The stub DNS on 127.0.0.1 as the only name server; `localhost` (IPv4
    /// only, so that programs trying both families do not first knock on
    /// the sandbox's empty `::1`) and the sandbox's own host name in
    /// `hosts`; every other name goes through the stub, so the policy sees
    /// the name rather than an address the host's `/etc/hosts` gave it.
    pub fn for_stub(hostname: &str) -> Self {
        NetFiles {
            resolv_conf: "# Written by cordon: names are answered by cordon's stub DNS, which applies the run's network rules.\nnameserver 127.0.0.1\n".into(),
            hosts: format!(
                "# Written by cordon: every other name goes to the stub DNS.\n127.0.0.1\tlocalhost\n::1\tip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
            ),
        }
    }

    fn contents(&self) -> [(&'static str, &str); 2] {
        [(NET_FILES[0], &self.resolv_conf), (NET_FILES[1], &self.hosts)]
    }
}

impl Ops {
    /// Writes `files` into a tmpfs on `staging` (a directory that a mount
    /// covers right after, so they are reachable only through the binds)
    /// and binds each read-only over its path below `root`, where a bind of
    /// the host's tree shows the host's file: process mode (`root` is `/`),
    /// and container mode when a grant's bind covers the files (its root is
    /// [`NEW_ROOT`]; otherwise they are written into the root itself). A
    /// path the host lacks is skipped: nothing is created in the host's
    /// `/etc`, and a resolver with no `resolv.conf` asks 127.0.0.1, the stub.
    fn net_files(&mut self, files: &NetFiles, staging: &str, root: &str) {
        self.mount(
            "tmpfs",
            staging,
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            "mode=0755,size=64k,nr_inodes=8",
        );
        let mut binds = vec![];
        for (path, contents) in files.contents() {
            let target = under(root, Path::new(path));
            if std::fs::metadata(path).is_err() {
                continue;
            }
            let name = Path::new(path).file_name().map(PathBuf::from).unwrap_or_default();
            let staged = Path::new(staging).join(name);
            self.0.push(MountOp::WriteFile { path: c(&staged), contents: contents.as_bytes().to_vec() });
            binds.push((staged, target));
        }
        // Written, the folder goes read-only in one step; a bind copies the
        // flags of the mount it is taken from, so each file's is read-only,
        // nosuid, nodev and noexec from the start (one setattr per file
        // before).
        self.setattr(staging, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, false);
        for (staged, target) in binds {
            self.bind(&staged, &target);
        }
    }
}

/// Process mode's mounts (see the module docs): after making every mount
/// private and cloning the grants under `/tmp` (which the private `/tmp`
/// will hide), every inherited mount becomes read-only; write grants are
/// bound read-write on top, carve-outs inside them read-only; then the
/// run's own `/proc` (its pid namespace only), a private tmpfs on
/// `/dev/shm` (POSIX semaphores and shared memory live there), a devpts
/// instance of its own, a private tmpfs on `/tmp` (with the working
/// directory inside it, when it lies there and no grant provides it), and
/// the cloned `/tmp` grants on top of it, with carve-outs inside them
/// hidden. With `net_files`, the resolver configuration is bound over the
/// host's (see [`NetFiles`]).
pub fn host_view_ops(view: &RootPlan, cwd: &Path, net_files: Option<&NetFiles>) -> Vec<MountOp> {
    let mut ops = Ops(vec![], Default::default());
    let exec = view.exec;
    ops.mount("", "/", "", libc::MS_REC | libc::MS_PRIVATE, "");
    // A write grant of `/` leaves the host's mounts writable: a tree
    // mounted on top of `/` would not be seen (the process's root stays
    // the mount below).
    let root_writable = view.binds.iter().any(|b| b.access == FsAccess::Write && b.path == Path::new("/"));
    // The host's mounts already show read grants outside /tmp, read-only.
    let binds: Vec<Resolved> = resolve_all(&view.binds, &view.pinned)
        .into_iter()
        .filter(|r| r.access != FsAccess::Read || r.path.starts_with("/tmp"))
        .filter(|r| r.path != Path::new("/"))
        .collect();
    // Copies of the grants' mounts as the host has them, before the
    // recursive read-only below (and the private /tmp) reaches them.
    for (slot, r) in binds.iter().enumerate() {
        ops.0.push(MountOp::CloneTree { path: c(&r.path), slot });
    }
    let root_attr = if root_writable { 0 } else { MOUNT_ATTR_RDONLY } | noexec(exec);
    if root_attr != 0 {
        ops.setattr("/", root_attr, true);
    }
    let attach = |ops: &mut Ops, slot: usize, r: &Resolved| {
        ops.0.push(MountOp::AttachTree { slot, target: c(&r.path), attr: bind_attrs(r.access, exec) });
    };
    let in_tmp = |r: &&Resolved| r.path.starts_with("/tmp");
    let denied = resolve_denies(&view.deny);
    let holes = resolve_holes(&view.holes);
    // Binds in a hole of a deny go on top of the deny's read-only copy.
    let holed = |r: &Resolved| denied.iter().any(|(d, _)| crate::policy::fs::in_hole(&r.path, d, &holes));
    for (slot, r) in binds.iter().enumerate().filter(|(_, r)| !in_tmp(r) && !holed(r)) {
        attach(&mut ops, slot, r);
    }
    let writable =
        |d: &Path| root_writable || binds.iter().any(|r| r.access == FsAccess::Write && d.starts_with(&r.path));
    for (d, _) in denied.iter().filter(|(d, _)| !d.starts_with("/tmp") && writable(d)) {
        // Landlock refuses the content; the mount refuses metadata changes.
        ops.bind(d, d);
        ops.setattr(d, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | noexec(exec), true);
    }
    for (slot, r) in binds.iter().enumerate().filter(|(_, r)| !in_tmp(r) && holed(r)) {
        attach(&mut ops, slot, r);
    }
    if let Some(files) = net_files {
        ops.net_files(files, "/proc", "/");
    }
    ops.mount("proc", "/proc", "proc", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, HIDE_INIT);
    let tmpfs = libc::MS_NOSUID | libc::MS_NODEV | ms_noexec(exec);
    if Path::new("/dev/shm").is_dir() {
        ops.mount("tmpfs", "/dev/shm", "tmpfs", tmpfs, "mode=1777,size=64m");
    }
    // A devpts instance of its own, its `ptmx` bound on `/dev/ptmx`, so
    // `openpty` works and allocates nowhere but there.
    if Path::new("/dev/pts").is_dir() && Path::new("/dev/ptmx").exists() {
        ops.mount("devpts", "/dev/pts", "devpts", libc::MS_NOSUID | libc::MS_NOEXEC, DEVPTS);
        ops.mount("/dev/pts/ptmx", "/dev/ptmx", "", libc::MS_BIND, "");
    }
    ops.mount("tmpfs", "/tmp", "tmpfs", tmpfs, &format!("mode=1777,size={}m", view.tmp_size_mb));
    // The private /tmp is there: no mkdir for it.
    ops.1.insert(PathBuf::from("/tmp"));
    if cwd.starts_with("/tmp") {
        ops.mkdir_p(cwd);
    }
    for (slot, r) in binds.iter().enumerate().filter(|(_, r)| in_tmp(r)) {
        ops.mountpoint(&r.path, r.is_dir);
        attach(&mut ops, slot, r);
    }
    // The private /tmp is granted writable as a whole (a Landlock rule on
    // its root covers the trees mounted on it), so carve-outs there are
    // hidden by mounts.
    for (d, is_dir) in
        denied.iter().filter(|(d, _)| d.starts_with("/tmp") && binds.iter().any(|r| d.starts_with(&r.path)))
    {
        ops.hide(d, *is_dir, "/dev/null");
    }
    ops.0
}

/// The holes of denies ([`crate::policy::FsPolicy::holes`]), resolved as
/// far as they exist.
fn resolve_holes(holes: &[(PathBuf, PathBuf)]) -> Vec<(PathBuf, PathBuf)> {
    let r = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
    holes.iter().map(|(outer, hole)| (r(outer), r(hole))).collect()
}

/// The carve-outs that exist, resolved, and whether each is a directory.
fn resolve_denies(deny: &[PathBuf]) -> Vec<(PathBuf, bool)> {
    deny.iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .map(|d| {
            let dir = d.is_dir();
            (d, dir)
        })
        .collect()
}

/// Mount points (or links) for `entries` in the new root.
fn mountpoints(ops: &mut Ops, entries: &[Entry]) {
    for e in entries {
        match e {
            Entry::Bind { inside, is_dir, .. } => ops.mountpoint(&under(NEW_ROOT, inside), *is_dir),
            Entry::Link { inside, target } => {
                if let Some(parent) = inside.parent() {
                    ops.mkdir_p(&under(NEW_ROOT, parent));
                }
                ops.symlink(target, under(NEW_ROOT, inside));
            }
        }
    }
}

/// Binds of the writable and `Exec` `entries`, after the root went
/// read-only: write grants read-write, then the executable ones.
fn bind_on_top(ops: &mut Ops, entries: &[Entry], exec: ExecMounts) {
    for wanted in [FsAccess::Write, FsAccess::Exec] {
        for e in entries {
            if let Entry::Bind { inside, source, access, .. } = e {
                if *access == wanted {
                    let target = under(NEW_ROOT, inside);
                    ops.bind_resolved(source, &target);
                    ops.setattr(&target, bind_attrs(*access, exec), true);
                }
            }
        }
    }
}

/// Turns the root plan into mount steps, reading the host to tell files,
/// directories and symbolic links apart (for the system set's entries,
/// `system` says it: the run looked at them once). Paths that do not exist
/// are skipped. `cwd` is created (empty) when no grant provides it, so the
/// command starts where it was asked to and relative grants below it
/// resolve.
pub fn build_mount_ops(
    root: &RootPlan,
    system: &SystemEntries,
    cwd: &Path,
    net_files: Option<&NetFiles>,
) -> Vec<MountOp> {
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    let mut ops = Ops(vec![], Default::default());
    ops.mount("", "/", "", libc::MS_REC | libc::MS_PRIVATE, "");
    ops.mount("tmpfs", NEW_ROOT, "tmpfs", nosuid_nodev, "mode=0755,size=1m,nr_inodes=4096");
    // The root's own folder exists: no mkdir for it.
    ops.1.insert(PathBuf::from(NEW_ROOT));

    // Grants under /tmp are mounted after the private /tmp, on top of it.
    // (Sets and string compares rather than `Path` equality in nested
    // loops: `Path ==` walks components from the back, and ~50 entries
    // against ~50 system paths made it a good part of a run's set-up.)
    let mut resolved: Vec<Entry> = vec![];
    let mut bound: std::collections::HashSet<(PathBuf, FsAccess)> = Default::default();
    for b in &root.binds {
        let entry = if b.access == FsAccess::Read { b.path.to_str().and_then(|p| system.get(p)) } else { None };
        let Some(e) = resolve(&b.path, b.access, entry, &root.pinned) else { continue };
        if let Entry::Bind { inside, access, .. } = &e {
            if !bound.insert((inside.clone(), *access)) {
                continue;
            }
        }
        resolved.push(e);
    }
    // Read binds at a system path are bound as they are (see `resolve`).
    let at_system_path = |inside: &Path| inside.to_str().is_some_and(|i| system.get(i).is_some());
    // Generated files replace the host's, whatever those are (a symbolic
    // link into /run, for systemd-resolved).
    if net_files.is_some() {
        resolved.retain(|e| match e {
            Entry::Bind { inside, .. } | Entry::Link { inside, .. } => {
                !NET_FILES.iter().any(|f| inside == Path::new(f))
            }
        });
    }
    // A deny takes its whole tree away: nothing inside it is bound or
    // linked, the system set's entries included (`--deny /etc` binds no
    // `/etc/passwd`). A deny inside a bind is hidden below (`deny_in`).
    let denied = resolve_denies(&root.deny);
    let holes = resolve_holes(&root.holes);
    resolved.retain(|e| match e {
        Entry::Bind { inside, .. } => {
            !denied.iter().any(|(d, _)| inside.starts_with(d) && !crate::policy::fs::in_hole(inside, d, &holes))
        }
        Entry::Link { inside, .. } => !denied.iter().any(|(d, _)| inside.starts_with(d)),
    });
    // Binds in a hole of a deny are mounted inside its hiding (`deny_in`).
    let (holed, resolved): (Vec<Entry>, Vec<Entry>) = resolved
        .into_iter()
        .partition(|e| matches!(e, Entry::Bind { inside, .. } if denied.iter().any(|(d, _)| inside.starts_with(d))));
    let (in_tmp, entries): (Vec<Entry>, Vec<Entry>) =
        resolved.into_iter().partition(|e| matches!(e, Entry::Bind { inside, .. } if inside.starts_with("/tmp")));
    // Mount points first, while the root is still writable.
    for dir in ["/dev", "/proc", "/tmp"] {
        ops.mkdir_p(&under(NEW_ROOT, Path::new(dir)));
    }
    // The generated resolver files are written into the root itself, where
    // the host's would be bound: the root's one read-only step below covers
    // them (no tmpfs, binds or step of their own, as process mode needs).
    // A grant whose bind covers them (`--read /etc`, `--read /`, `--write
    // /etc`) would hide files written there with the host's: then they are
    // staged and bound over the bind's, after every bind outside `/tmp`
    // (none inside it can cover `/etc`).
    let covered = net_files.is_some()
        && entries.iter().any(|e| match e {
            Entry::Bind { inside, .. } | Entry::Link { inside, .. } => {
                NET_FILES.iter().any(|f| Path::new(f).starts_with(inside))
            }
        });
    if let (Some(files), false) = (net_files, covered) {
        for (path, contents) in files.contents() {
            let inside = under(NEW_ROOT, Path::new(path));
            if let Some(parent) = inside.parent() {
                ops.mkdir_p(parent);
            }
            ops.0.push(MountOp::WriteFile { path: c(&inside), contents: contents.as_bytes().to_vec() });
        }
    }
    let cwd_in_tmp = cwd.starts_with("/tmp");
    if !cwd_in_tmp {
        ops.mkdir_p(&under(NEW_ROOT, cwd));
    }
    mountpoints(&mut ops, &entries);
    let deny_in = |ops: &mut Ops, entries: &[Entry], access: FsAccess| {
        for (d, is_dir) in &denied {
            let inside_of =
                |e: &Entry| matches!(e, Entry::Bind { inside, access: a, .. } if d.starts_with(inside) && *a == access);
            if !entries.iter().any(inside_of) {
                continue;
            }
            let kept: Vec<&Entry> =
                holed.iter().filter(|e| matches!(e, Entry::Bind { inside, .. } if inside.starts_with(d))).collect();
            if kept.is_empty() || !*is_dir {
                ops.hide(&under(NEW_ROOT, d), *is_dir, "/dev/null");
            } else {
                ops.hide_but(d, &kept, root.exec);
            }
        }
    };
    for e in &entries {
        if let Entry::Bind { inside, source, access: FsAccess::Read, .. } = e {
            if at_system_path(inside) {
                // Taken as it is (see `resolve`): its parents are the host's own.
                ops.bind(source, under(NEW_ROOT, inside));
            } else {
                ops.bind_resolved(source, under(NEW_ROOT, inside));
            }
        }
    }
    deny_in(&mut ops, &entries, FsAccess::Read);
    ops.setattr(NEW_ROOT, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | noexec(root.exec), true);
    bind_on_top(&mut ops, &entries, root.exec);
    deny_in(&mut ops, &entries, FsAccess::Write);

    // A minimal /dev: its files, folders and links made while it is
    // writable, the devices bound, then one recursive step makes the tmpfs
    // and every device bind read-only, nosuid and noexec (a device stays
    // writable on a read-only mount: the flag only keeps its mode, owner
    // and times the host's). devpts and /dev/shm are mounted after it, on
    // their folders, and keep their own flags.
    let dev = under(NEW_ROOT, Path::new("/dev"));
    ops.mount("tmpfs", &dev, "tmpfs", libc::MS_NOSUID | libc::MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64");
    let devices: Vec<PathBuf> = DEVICES.iter().map(|d| Path::new("/dev").join(d)).filter(|h| h.exists()).collect();
    for host in &devices {
        ops.0.push(MountOp::Touch { path: c(under(NEW_ROOT, host)) });
    }
    ops.0.push(MountOp::Mkdir { path: c(dev.join("pts")), mode: 0o755 });
    ops.symlink("pts/ptmx", dev.join("ptmx"));
    ops.0.push(MountOp::Mkdir { path: c(dev.join("shm")), mode: 0o1777 });
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.symlink(target, dev.join(name));
    }
    for host in &devices {
        ops.bind(host, under(NEW_ROOT, host));
    }
    ops.setattr(&dev, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, true);
    ops.mount("devpts", dev.join("pts"), "devpts", libc::MS_NOSUID | libc::MS_NOEXEC, DEVPTS);
    ops.mount("tmpfs", dev.join("shm"), "tmpfs", nosuid_nodev | ms_noexec(root.exec), "mode=1777,size=64m");

    if let (Some(files), true) = (net_files, covered) {
        ops.net_files(files, &format!("{NEW_ROOT}/proc"), NEW_ROOT);
    }
    // The pid namespace's own /proc, with the global knobs read-only.
    let proc = under(NEW_ROOT, Path::new("/proc"));
    ops.mount("proc", &proc, "proc", nosuid_nodev | libc::MS_NOEXEC, HIDE_INIT);
    for knob in ["sys", "sysrq-trigger", "irq", "bus"] {
        if !Path::new("/proc").join(knob).exists() {
            continue;
        }
        let knob = proc.join(knob);
        ops.bind(&knob, &knob);
        ops.setattr(&knob, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, true);
    }
    ops.mount(
        "tmpfs",
        under(NEW_ROOT, Path::new("/tmp")),
        "tmpfs",
        nosuid_nodev | ms_noexec(root.exec),
        &format!("mode=1777,size={}m", root.tmp_size_mb),
    );
    if cwd_in_tmp {
        ops.mkdir_p(&under(NEW_ROOT, cwd));
    }
    mountpoints(&mut ops, &in_tmp);
    for e in &in_tmp {
        if let Entry::Bind { inside, source, access: FsAccess::Read, .. } = e {
            let target = under(NEW_ROOT, inside);
            ops.bind_resolved(source, &target);
            ops.setattr(&target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | noexec(root.exec), true);
        }
    }
    deny_in(&mut ops, &in_tmp, FsAccess::Read);
    bind_on_top(&mut ops, &in_tmp, root.exec);
    deny_in(&mut ops, &in_tmp, FsAccess::Write);

    ops.0.push(MountOp::Chdir { path: cs(NEW_ROOT) });
    ops.0.push(MountOp::PivotRoot { new_root: cs("."), put_old: cs(".") });
    ops.0.push(MountOp::Detach { path: cs(".") });
    ops.0.push(MountOp::Chdir { path: cs("/") });
    // The detached copies of grants the new root hides (inside the host's
    // `/tmp`, or above it: `/`) are taken right after the first step
    // (making the mounts private), before the root is mounted there, so
    // they show what the host has. Each attach keeps its place; the other
    // copies are taken where they were built (so `/` stays the first mount
    // of `/proc/self/mountinfo` unless a grant lies in `/tmp`).
    let tmp = std::fs::canonicalize(NEW_ROOT).unwrap_or_else(|_| PathBuf::from(NEW_ROOT));
    let hidden = |op: &MountOp| match op {
        MountOp::CloneTree { path, .. } => {
            let p = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
            p.starts_with(&tmp) || tmp.starts_with(p)
        }
        _ => false,
    };
    let (early, mut steps): (Vec<MountOp>, Vec<MountOp>) = ops.0.into_iter().partition(hidden);
    let rest = steps.split_off(1);
    steps.extend(early);
    steps.extend(rest);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Bind;

    /// How many steps mount something on `target`.
    fn mounts_on(ops: &[MountOp], target: &str) -> usize {
        ops.iter()
            .filter(|op| match op {
                MountOp::Mount { target: t, .. } | MountOp::AttachTree { target: t, .. } => {
                    t.to_bytes() == target.as_bytes()
                }
                _ => false,
            })
            .count()
    }

    /// The root is built where the host's paths are the sources, with one
    /// `pivot_root` (each scans every task of the host): no staging root.
    /// A grant inside the host's `/tmp`, which the new root covers, is
    /// copied before the root is mounted there and attached where it was;
    /// a grant elsewhere is copied where it is attached.
    #[test]
    fn the_root_is_built_in_place_with_one_pivot_and_tmp_grants_copied_first() {
        let in_tmp = PathBuf::from(format!("/tmp/cordon-mounts-onepivot-{}", std::process::id()));
        std::fs::create_dir_all(&in_tmp).unwrap();
        let elsewhere = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap();
        let plan = RootPlan {
            binds: vec![
                Bind { path: "/usr".into(), access: FsAccess::Read },
                Bind { path: in_tmp.clone(), access: FsAccess::Read },
                Bind { path: elsewhere.clone(), access: FsAccess::Write },
            ],
            deny: vec![],
            tmp_size_mb: 64,
            exec: ExecMounts::Everywhere,
            pinned: vec![],
            holes: vec![],
        };
        let ops = build_mount_ops(&plan, &SystemEntries::look_at(&["/usr"]), Path::new("/"), None);
        std::fs::remove_dir_all(&in_tmp).unwrap();
        let pivots = ops.iter().filter(|op| matches!(op, MountOp::PivotRoot { .. })).count();
        assert_eq!(pivots, 1, "{ops:#?}");
        let position = |f: &dyn Fn(&MountOp) -> bool| ops.iter().position(f).unwrap_or_else(|| panic!("{ops:#?}"));
        let root = position(
            &|op| matches!(op, MountOp::Mount { target, fstype, .. } if target.to_bytes() == NEW_ROOT.as_bytes() && fstype.to_bytes() == b"tmpfs"),
        );
        let copied = |p: &Path| {
            let p = p.as_os_str().as_bytes().to_vec();
            move |op: &MountOp| matches!(op, MountOp::CloneTree { path, .. } if path.to_bytes() == p.as_slice())
        };
        let attached = |p: &Path| {
            let target = format!("{NEW_ROOT}{}", p.display());
            move |op: &MountOp| matches!(op, MountOp::AttachTree { target: t, .. } if t.to_bytes() == target.as_bytes())
        };
        assert!(position(&copied(&in_tmp)) < root, "{ops:#?}");
        assert!(position(&attached(&in_tmp)) > root, "{ops:#?}");
        assert!(position(&copied(&elsewhere)) > root, "{ops:#?}");
        assert_eq!(position(&copied(&elsewhere)) + 1, position(&attached(&elsewhere)), "{ops:#?}");
        // The sources are the host's paths.
        let usr = format!("{NEW_ROOT}/usr");
        assert!(ops.iter().any(|op| matches!(op, MountOp::Mount { src, target, .. } if src.to_bytes() == b"/usr" && target.to_bytes() == usr.as_bytes())), "{ops:#?}");
    }

    /// The generated resolver files: process mode writes them into a
    /// staging tmpfs that goes read-only with one step, after both are
    /// written and before their binds (which copy its flags); container
    /// mode writes them into its root before the root's one recursive
    /// read-only step, with no mount, bind or step of their own. In both,
    /// no folder is made twice or made where one is known to exist (the
    /// new root, the private /tmp), with the working directory inside /tmp.
    #[test]
    fn resolver_files_take_one_setattr_and_no_folder_is_made_twice() {
        let files = NetFiles::for_stub("cordon");
        let plan = RootPlan {
            binds: vec![],
            deny: vec![],
            tmp_size_mb: 64,
            exec: ExecMounts::Everywhere,
            pinned: vec![],
            holes: vec![],
        };
        let cwd = Path::new("/tmp/work/here");
        let container = build_mount_ops(&plan, &SystemEntries::look_at(&[]), cwd, Some(&files));
        let process = host_view_ops(&plan, cwd, Some(&files));
        let writes = |ops: &[MountOp]| -> Vec<(usize, String)> {
            ops.iter()
                .enumerate()
                .filter_map(|(i, op)| match op {
                    MountOp::WriteFile { path, .. } => Some((i, path.to_string_lossy().into_owned())),
                    _ => None,
                })
                .collect()
        };
        // Process mode: one setattr on the staging folder (none on the files).
        let staging = "/proc";
        let setattrs: Vec<usize> = process
            .iter()
            .enumerate()
            .filter(|(_, op)| match op {
                MountOp::SetAttr { path, .. } => {
                    path.to_bytes() == staging.as_bytes() || NET_FILES.iter().any(|f| path.to_bytes() == f.as_bytes())
                }
                _ => false,
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(setattrs.len(), 1, "{process:#?}");
        let at = setattrs[0];
        assert!(
            matches!(&process[at], MountOp::SetAttr { path, attr, recursive: false } if path.to_bytes() == staging.as_bytes() && *attr & MOUNT_ATTR_RDONLY != 0),
            "{process:#?}"
        );
        let staged = writes(&process);
        let binds: Vec<usize> = process
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op, MountOp::Mount { src, .. } if [format!("{staging}/resolv.conf"), format!("{staging}/hosts")].iter().any(|f| src.to_bytes() == f.as_bytes())))
            .map(|(i, _)| i)
            .collect();
        assert!(!staged.is_empty() && staged.iter().all(|(w, _)| *w < at), "{process:#?}");
        assert_eq!(binds.len(), staged.len(), "{process:#?}");
        assert!(binds.iter().all(|b| *b > at), "{process:#?}");
        // Container mode: both files written at their place in the root,
        // before the root's recursive read-only step; nothing mounted on
        // them and no tmpfs of their own.
        let root_readonly = container
            .iter()
            .position(|op| matches!(op, MountOp::SetAttr { path, attr, recursive: true } if path.to_bytes() == NEW_ROOT.as_bytes() && *attr & MOUNT_ATTR_RDONLY != 0))
            .unwrap_or_else(|| panic!("{container:#?}"));
        let written = writes(&container);
        let expected: Vec<String> = NET_FILES.iter().map(|f| format!("{NEW_ROOT}{f}")).collect();
        assert_eq!(written.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(), expected, "{container:#?}");
        assert!(written.iter().all(|(w, _)| *w < root_readonly), "{container:#?}");
        for f in &expected {
            assert_eq!(mounts_on(&container, f), 0, "{container:#?}");
        }
        let tmpfs_mounts = |ops: &[MountOp]| {
            ops.iter().filter(|op| matches!(op, MountOp::Mount { fstype, .. } if fstype.to_bytes() == b"tmpfs")).count()
        };
        let without = build_mount_ops(&plan, &SystemEntries::look_at(&[]), cwd, None);
        assert_eq!(tmpfs_mounts(&container), tmpfs_mounts(&without), "{container:#?}");
        for ops in [&container, &process] {
            let made: Vec<&[u8]> = ops
                .iter()
                .filter_map(|op| match op {
                    MountOp::Mkdir { path, .. } => Some(path.to_bytes()),
                    _ => None,
                })
                .collect();
            let unique: std::collections::HashSet<&[u8]> = made.iter().copied().collect();
            assert_eq!(unique.len(), made.len(), "{made:?}");
            assert!(!made.contains(&NEW_ROOT.as_bytes()) && !made.contains(&b"/tmp".as_slice()), "{made:?}");
        }
    }

    /// A grant whose bind covers the resolver files' place in container
    /// mode (`/etc` or `/`, read or write) would hide files written into
    /// the root with the host's: then nothing is written there and they are
    /// bound over the grant's, from a staging tmpfs, after its bind (and
    /// after a deny's `/dev/null` on one of them). A grant beside them
    /// (`/usr`) keeps them in the root.
    #[test]
    fn resolver_files_covered_by_a_grant_are_bound_over_it() {
        let files = NetFiles::for_stub("cordon");
        let bind = |p: &str, access| Bind { path: p.into(), access };
        let plan = |binds, deny| RootPlan {
            binds,
            deny,
            tmp_size_mb: 64,
            exec: ExecMounts::Everywhere,
            pinned: vec![],
            holes: vec![],
        };
        let host_has = |f: &&&str| Path::new(f).exists();
        for (grant, deny) in [
            (bind("/etc", FsAccess::Read), vec![]),
            (bind("/", FsAccess::Read), vec![]),
            (bind("/etc", FsAccess::Write), vec![]),
            (bind("/etc", FsAccess::Read), vec![PathBuf::from("/etc/resolv.conf")]),
        ] {
            let covering = under(NEW_ROOT, &grant.path).to_string_lossy().into_owned();
            let ops = build_mount_ops(
                &plan(vec![grant.clone()], deny),
                &SystemEntries::look_at(&[]),
                Path::new("/"),
                Some(&files),
            );
            let position = |what: &dyn Fn(&MountOp) -> bool| ops.iter().rposition(what);
            let grant_at = position(&|op| match op {
                MountOp::Mount { target, .. } | MountOp::AttachTree { target, .. } => {
                    target.to_bytes() == covering.as_bytes()
                }
                _ => false,
            })
            .unwrap_or_else(|| panic!("{grant:?}: no bind of the grant\n{ops:#?}"));
            for f in NET_FILES.iter().filter(host_has) {
                let inside = format!("{NEW_ROOT}{f}");
                assert!(
                    !ops.iter().any(
                        |op| matches!(op, MountOp::WriteFile { path, .. } if path.to_bytes() == inside.as_bytes())
                    ),
                    "{grant:?}: {f} written where the grant's bind hides it\n{ops:#?}"
                );
                let last = position(&|op| matches!(op, MountOp::Mount { target, .. } | MountOp::AttachTree { target, .. } if target.to_bytes() == inside.as_bytes()))
                    .unwrap_or_else(|| panic!("{grant:?}: nothing bound on {f}\n{ops:#?}"));
                assert!(last > grant_at, "{grant:?}: {f} bound before the grant\n{ops:#?}");
                assert!(
                    matches!(&ops[last], MountOp::Mount { src, .. } if src.to_bytes() == format!("{NEW_ROOT}/proc{}", &f[4..]).as_bytes()),
                    "{grant:?}: the last mount on {f} is not cordon's file\n{ops:#?}"
                );
            }
        }
        // Control: a grant beside /etc leaves them written into the root.
        let ops = build_mount_ops(
            &plan(vec![bind("/usr", FsAccess::Read)], vec![]),
            &SystemEntries::look_at(&[]),
            Path::new("/"),
            Some(&files),
        );
        for f in NET_FILES {
            let inside = format!("{NEW_ROOT}{f}");
            assert!(
                ops.iter()
                    .any(|op| matches!(op, MountOp::WriteFile { path, .. } if path.to_bytes() == inside.as_bytes())),
                "{ops:#?}"
            );
            assert_eq!(mounts_on(&ops, &inside), 0, "{ops:#?}");
        }
    }

    #[test]
    fn a_repeated_grant_is_bound_once_and_a_system_path_as_it_is() {
        let dir = std::env::temp_dir().join(format!("cordon-mounts-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        let bind = |p: &Path, access| Bind { path: p.to_owned(), access };
        let plan = |binds| RootPlan {
            binds,
            deny: vec![],
            tmp_size_mb: 64,
            exec: ExecMounts::Everywhere,
            pinned: vec![],
            holes: vec![],
        };
        let usr = Path::new("/usr");
        let inside = format!("{NEW_ROOT}{}", dir.display());
        let twice = plan(vec![
            bind(usr, FsAccess::Read),
            bind(&dir, FsAccess::Read),
            bind(&dir, FsAccess::Read),
            bind(usr, FsAccess::Read),
        ]);
        let ops = build_mount_ops(&twice, &SystemEntries::look_at(&["/usr"]), Path::new("/"), None);
        assert_eq!(mounts_on(&ops, &format!("{NEW_ROOT}/usr")), 1, "{ops:#?}");
        assert_eq!(mounts_on(&ops, &inside), 1, "{ops:#?}");
        // The system path is bound as it is; the grant without following links.
        let plain = |op: &MountOp| matches!(op, MountOp::Mount { src, target, .. } if src.to_bytes() == b"/usr" && target.to_bytes() == format!("{NEW_ROOT}/usr").as_bytes());
        assert!(ops.iter().any(plain), "{ops:#?}");
        let attached =
            |op: &MountOp| matches!(op, MountOp::AttachTree { target, .. } if target.to_bytes() == inside.as_bytes());
        assert!(ops.iter().any(attached), "{ops:#?}");
        // Control: the same path with another access is a bind of its own.
        let both = plan(vec![bind(&dir, FsAccess::Read), bind(&dir, FsAccess::Write)]);
        assert_eq!(
            mounts_on(&build_mount_ops(&both, &SystemEntries::look_at(&["/usr"]), Path::new("/"), None), &inside),
            2
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
