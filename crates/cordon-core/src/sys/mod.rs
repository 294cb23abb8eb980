//! The unsafe fence: every raw syscall cordon makes, and the code that runs
//! between `clone` and `execve` ([`child`]).
//!
//! Wrappers take borrowed descriptors and C strings, return `io::Result`, and
//! turn `-1` into `io::Error::last_os_error()` at once. Nothing outside this
//! module contains `unsafe`.

pub mod child;
pub mod helper;
pub mod notify;
pub mod sockets;
pub mod spawner;
pub mod tty;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::enforce::seccomp::SockFilter;

/// `value` as `T`, or `None` when it does not fit: for the C types that
/// differ between C libraries (`msghdr.msg_controllen` and
/// `cmsghdr.cmsg_len` are `size_t` with glibc and `socklen_t` with musl; an
/// `ioctl` request is `c_ulong` with glibc and `c_int` with musl). Generic,
/// so one checked conversion is right on each target, the identity included.
/// Async-signal-safe.
fn c_fit<T: TryFrom<U>, U>(value: U) -> Option<T> {
    T::try_from(value).ok()
}

/// Converts a `-1`-on-error return value into an `io::Result`.
fn cvt(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`: the
/// ABI version, or `ENOSYS`/`EOPNOTSUPP` when Landlock is absent or disabled.
pub fn landlock_abi() -> io::Result<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: a NULL attribute pointer with size 0 is the documented way to
    // ask for the version; the kernel reads no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    cvt(rc).map(|v| u32::try_from(v).unwrap_or(0))
}

/// `landlock_add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH, {access,
/// parent})`: grants `access` (Landlock's `LANDLOCK_ACCESS_FS_*` bits) on
/// the file or tree `parent` refers to. The kernel checks the bits against
/// the ruleset's handled access and, for a file, refuses directory-only
/// bits (`EINVAL`); empty bits are `ENOMSG`. Unlike the landlock crate's
/// `add_rule`, no `fstat` of `parent` is made: the caller knows its kind.
pub fn landlock_add_path_rule(ruleset: BorrowedFd<'_>, parent: BorrowedFd<'_>, access: u64) -> io::Result<()> {
    #[repr(C, packed)]
    struct PathBeneath {
        allowed_access: u64,
        parent_fd: i32,
    }
    const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;
    let attr = PathBeneath { allowed_access: access, parent_fd: parent.as_raw_fd() };
    // SAFETY: `attr` is a live landlock_path_beneath_attr the kernel only
    // reads; both descriptors are borrowed for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const PathBeneath,
            0u32,
        )
    };
    cvt(rc).map(drop)
}

/// The seals of a filled [`program_file`]: nothing can write, grow,
/// shrink or unseal it any more.
pub(crate) const PROGRAM_FILE_SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// A new, empty memory file (`memfd`, close-on-exec, sealable) for the
/// command's seccomp program: made before the clone, so the sandbox's init
/// holds it, and filled by [`fill_program_file`] afterwards. The command's
/// process maps it before it loads the program (`sys::child`). Made
/// non-executable for good (`MFD_NOEXEC_SEAL`), as a host with
/// `vm.memfd_noexec = 2` demands; a kernel older than 6.3, which knows no
/// such flag (`EINVAL`), gets the file without it.
pub fn program_file() -> io::Result<OwnedFd> {
    const MFD_NOEXEC_SEAL: libc::c_uint = 0x8;
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: a constant C string and integer flags; the result is checked.
    let mut fd = unsafe { libc::memfd_create(c"cordon-seccomp".as_ptr(), flags | MFD_NOEXEC_SEAL) };
    if fd == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(c"cordon-seccomp".as_ptr(), flags) };
    }
    cvt(libc::c_long::from(fd))?;
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Writes `program` (each instruction as the kernel's `struct sock_filter`,
/// 8 bytes) into `file`, a [`program_file`], and seals it
/// ([`PROGRAM_FILE_SEALS`]): the command's process refuses the file
/// unsealed, so it never loads a program that is still being written, and
/// nothing changes it once sealed.
pub fn fill_program_file(file: BorrowedFd<'_>, program: &[SockFilter]) -> io::Result<()> {
    let bytes: Vec<u8> = program
        .iter()
        .flat_map(|i| {
            let mut b = [0u8; 8];
            b[..2].copy_from_slice(&i.code.to_ne_bytes());
            b[2] = i.jt;
            b[3] = i.jf;
            b[4..].copy_from_slice(&i.k.to_ne_bytes());
            b
        })
        .collect();
    let mut done = 0;
    while done < bytes.len() {
        let rest = &bytes[done..];
        // SAFETY: writes from a live slice of `rest.len()` bytes.
        let n = unsafe { libc::write(file.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
        match cvt(n as libc::c_long) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => done += usize::try_from(n).unwrap_or(rest.len()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // SAFETY: fcntl with integer arguments on a borrowed descriptor.
    cvt(libc::c_long::from(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, PROGRAM_FILE_SEALS) })).map(drop)
}

/// `prctl(PR_GET_SECCOMP)`: `EINVAL` when the kernel has no seccomp.
pub fn seccomp_mode() -> io::Result<u32> {
    // SAFETY: PR_GET_SECCOMP takes no pointer arguments.
    let rc = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    cvt(rc.into()).map(|v| u32::try_from(v).unwrap_or(0))
}

/// The effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// The metadata (`fstat`) of a descriptor we do not own, without
/// duplicating it.
pub fn metadata(fd: BorrowedFd<'_>) -> io::Result<std::fs::Metadata> {
    // SAFETY: the File is never dropped (ManuallyDrop), so the descriptor
    // it borrows stays open and owned by its owner; fd is open for the
    // borrow's lifetime.
    let file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) });
    file.metadata()
}

/// Whether `fd` is an anonymous pipe (on pipefs), as opposed to a named
/// FIFO on a filesystem.
pub fn is_anonymous_pipe(fd: BorrowedFd<'_>) -> io::Result<bool> {
    const PIPEFS_MAGIC: i64 = 0x5049_5045;
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fs` is a live, writable statfs the kernel fills in.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut fs) }.into())?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between architectures
    Ok(fs.f_type as i64 == PIPEFS_MAGIC)
}

/// The effective group id.
pub fn effective_gid() -> u32 {
    // SAFETY: getegid cannot fail and touches no memory of ours.
    unsafe { libc::getegid() }
}

/// What Rust's runtime does before `main` that cordon relies on, for a
/// binary whose entry point is the C `main` (`cordon` and `cordon-server`
/// built for glibc, see their `main.rs`; built for musl they start at
/// Rust's runtime, which does this itself): descriptors 0, 1 and 2 are open (a closed one is opened on
/// `/dev/null`, so that no file cordon opens later, the audit log say, can
/// become its stdout), and `SIGPIPE` is ignored (a closed pipe is an error
/// returned by `write`, not a signal that kills cordon; the sandbox's
/// command gets the default back before its exec).
///
/// Left out, on purpose, and what that costs:
///
/// - The stack overflow *handler* (a `SIGSEGV`/`SIGBUS` handler on an
///   alternate signal stack, which finds the main thread's guard range with
///   `pthread_getattr_np`, i.e. by reading `/proc/self/maps`, on every
///   start: about 0.1 ms). Overflow *detection* is not lost: on Linux the
///   runtime never guarded the main thread's stack itself, the kernel's
///   stack guard gap does, and the compiler's stack probes still touch every
///   page of a large frame; threads made with `std::thread` keep glibc's
///   guard page. An overflow still kills the process before it writes past
///   its stack; it is a plain `SIGSEGV` instead of "has overflowed its
///   stack" and `SIGABRT`.
/// - The main thread's name: a panic message says `thread '<unnamed>'`
///   instead of `thread 'main'`.
///
/// Kept by other means: `std::env::args` (glibc hands argc/argv to the
/// standard library's initialiser in `.init_array`, with or without the
/// runtime); stdout's flush at exit and status 101 for a panic that
/// unwinds (the caller's `main` sees to both).
pub fn runtime_init() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd { fd, events: 0, revents: 0 });
    // SAFETY: `fds` is a live array of three pollfds; a zero timeout never blocks.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    if rc != -1 {
        for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
            // SAFETY: a valid C string; the lowest free descriptor is `p.fd`,
            // since the ones below it are open.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if fd != p.fd {
                // Nothing sane to run with: the runtime aborts here too.
                std::process::abort();
            }
        }
    }
    // SAFETY: SIG_IGN involves no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Makes this program's RELRO segment (`PT_GNU_RELRO`: the relocated
/// pointers of `.data.rel.ro`, the GOT, the init and fini arrays, vtables)
/// read-only, as the start-up of a glibc static-pie program does once it
/// has relocated itself and as a dynamic loader does; musl's static-pie
/// start (`rcrt1.o`, musl 1.2.5) relocates and leaves it writable (96 KiB
/// of `cordon`, `rw-p` in `/proc/self/maps`): a memory corruption in
/// cordon could then overwrite function pointers there. Call it first
/// thing in `main`, on one thread. The program headers come from the
/// auxiliary vector; the load address from the ELF header's, as glibc's
/// start-up takes it. Errors name what was missing or refused.
pub fn protect_relro() -> io::Result<()> {
    let missing = |what: &str| io::Error::new(io::ErrorKind::NotFound, format!("cannot protect RELRO: {what}"));
    // getauxval reads the auxiliary vector; 0 means absent.
    let auxval = |kind| {
        // SAFETY: getauxval only reads the process's auxiliary vector.
        unsafe { libc::getauxval(kind) }
    };
    let (phdr, phnum, phent) = (auxval(libc::AT_PHDR), auxval(libc::AT_PHNUM), auxval(libc::AT_PHENT));
    let (Ok(phdr), Ok(phnum), Ok(phent)) = (usize::try_from(phdr), usize::try_from(phnum), usize::try_from(phent))
    else {
        return Err(missing("program headers beyond the address space"));
    };
    if phdr == 0 || phent != std::mem::size_of::<libc::Elf64_Phdr>() {
        return Err(missing("no 64-bit program headers in the auxiliary vector"));
    }
    // SAFETY: the kernel's AT_PHDR/AT_PHNUM name this program's mapped,
    // aligned program headers, `phnum` entries of `phent` bytes (checked
    // above), which stay mapped and unchanged for the process's life.
    let headers = unsafe { std::slice::from_raw_parts(phdr as *const libc::Elf64_Phdr, phnum) };
    let addr = |h: &libc::Elf64_Phdr| usize::try_from(h.p_vaddr).ok();
    extern "C" {
        /// The ELF header as loaded, which the linker names (GNU ld, gold
        /// and lld, for a program whose first segment holds it): where the
        /// segment loaded from the file's start lies, as glibc's start-up
        /// takes its load address (a static-pie program has no `PT_PHDR`).
        static __ehdr_start: u8;
    }
    // Only the symbol's address is taken; nothing is read.
    let header = std::ptr::addr_of!(__ehdr_start).addr();
    let base = headers
        .iter()
        .find(|h| h.p_type == libc::PT_LOAD && h.p_offset == 0)
        .and_then(addr)
        .and_then(|v| header.checked_sub(v))
        .ok_or_else(|| missing("no segment loaded from the file's start"))?;
    let page = page_size();
    for h in headers.iter().filter(|h| h.p_type == libc::PT_GNU_RELRO) {
        let (Some(vaddr), Ok(size)) = (addr(h), usize::try_from(h.p_memsz)) else {
            return Err(missing("a RELRO segment beyond the address space"));
        };
        let Some(end) = base.checked_add(vaddr).and_then(|a| a.checked_add(size)) else {
            return Err(missing("a RELRO segment beyond the address space"));
        };
        // As glibc's _dl_protect_relro: whole pages from the segment's
        // start, up to the last page boundary inside it (the rest of that
        // page is writable data).
        let start = (base + vaddr) / page * page;
        let end = end / page * page;
        if end > start {
            // SAFETY: whole pages of this program's own image, mapped; no
            // one writes RELRO after relocation, which is done.
            if unsafe { libc::mprotect(start as *mut libc::c_void, end - start, libc::PROT_READ) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// The global allocator of a musl `cordon`: dlmalloc (the `dlmalloc`
/// crate, the allocator of Rust's std on wasm), which keeps what it has
/// mapped where musl's own unmaps each group of small blocks as soon as it
/// empties, behind a `std::sync::Mutex` (a futex word: a compare-exchange
/// to take it, a swap to give it back) instead of the crate's global lock,
/// a `pthread_mutex_t` whose calls cost musl's general mutex code on each
/// of the ≈ 1 600 allocations and frees of a dev run (82 000 of its
/// 1 060 000 instructions). A child sharing our memory (`clone_vm`,
/// `clone_raw`) must not allocate, as before: it could find the lock
/// held by a thread that does not run in it.
#[cfg(target_env = "musl")]
pub struct Allocator(std::sync::Mutex<Heap>);

/// dlmalloc's state, handed from thread to thread behind [`Allocator`]'s
/// lock.
#[cfg(target_env = "musl")]
struct Heap(dlmalloc::Dlmalloc);

// SAFETY: the heap's pointers name its own mappings, which any thread may
// use; the mutex lets one thread at a time do so.
#[cfg(target_env = "musl")]
unsafe impl Send for Heap {}

#[cfg(target_env = "musl")]
impl Allocator {
    /// An allocator with nothing mapped yet.
    pub const fn new() -> Allocator {
        Allocator(std::sync::Mutex::new(Heap(dlmalloc::Dlmalloc::new())))
    }

    /// The heap, locked (a panic while it was held cannot leave it half
    /// changed: dlmalloc does not panic, and the release profile aborts).
    fn heap(&self) -> std::sync::MutexGuard<'_, Heap> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(target_env = "musl")]
impl Default for Allocator {
    fn default() -> Allocator {
        Allocator::new()
    }
}

// SAFETY: every block comes from dlmalloc with the layout's size and
// alignment and goes back to it with the same layout (GlobalAlloc's
// contract on the caller), one thread at a time.
#[cfg(target_env = "musl")]
unsafe impl std::alloc::GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the layout's size is non-zero (GlobalAlloc's contract).
        unsafe { self.heap().0.malloc(layout.size(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe { self.heap().0.calloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { self.heap().0.free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; `new_size`
        // is non-zero and fits the layout's alignment.
        unsafe { self.heap().0.realloc(ptr, layout.size(), layout.align(), new_size) }
    }
}

/// `clock_gettime(CLOCK_MONOTONIC)` in nanoseconds: the clock `Instant`
/// reads. Async-signal-safe (the vDSO, or one syscall).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live local that clock_gettime fills.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// `uname -r`, from `uname(2)`: one syscall, where reading
/// `/proc/sys/kernel/osrelease` takes four.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a live utsname.
    if unsafe { libc::uname(&mut u) } == -1 {
        return String::new();
    }
    let bytes: Vec<u8> = u.release.iter().take_while(|c| **c != 0).map(|c| c.to_ne_bytes()[0]).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// This host's name (`/proc/sys/kernel/hostname`), empty if unreadable.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// Whether this process may write to `path` (`access(W_OK)`).
pub fn can_write(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Whether this process may write to the folder open as `dir` (an `O_PATH`
/// descriptor will do): `faccessat2(dir, "", W_OK, AT_EMPTY_PATH)`, with the
/// real ids as [`can_write`]; through `/proc/self/fd` on kernels without
/// faccessat2. Asks about the inode the descriptor holds, not whatever a
/// path names by now.
pub fn can_write_fd(dir: BorrowedFd<'_>) -> bool {
    // SAFETY: the path is a valid empty C string; `dir` is open for the call.
    let rc =
        unsafe { libc::syscall(libc::SYS_faccessat2, dir.as_raw_fd(), c"".as_ptr(), libc::W_OK, libc::AT_EMPTY_PATH) };
    if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        return can_write(Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())));
    }
    rc == 0
}

/// `readlinkat(dir, name)`: where the symbolic link `name` of `dir` leads.
pub fn read_link_at(dir: BorrowedFd<'_>, name: &Path) -> io::Result<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let c = c_name(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `c` is a valid C string and `buf` a live buffer of the length
    // passed; the result is how many bytes were written, or -1.
    let n =
        cvt(unsafe { libc::readlinkat(dir.as_raw_fd(), c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
            as libc::c_long)?;
    buf.truncate(usize::try_from(n).unwrap_or(0));
    Ok(std::ffi::OsString::from_vec(buf).into())
}

/// `struct open_how` of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(path, O_PATH | O_CLOEXEC, RESOLVE_NO_SYMLINKS)`: a descriptor,
/// or -1 with errno set (`ELOOP` when a component of `path` is a symbolic
/// link). Async-signal-safe: the child uses it between clone and exec.
fn open_without_links(path: &std::ffi::CStr) -> libc::c_int {
    let how = OpenHow { flags: (libc::O_PATH | libc::O_CLOEXEC) as u64, mode: 0, resolve: libc::RESOLVE_NO_SYMLINKS };
    // SAFETY: `path` is a valid C string and `how` a live open_how of the
    // size passed; the result is a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    libc::c_int::try_from(fd).unwrap_or(-1)
}

/// A descriptor (`O_PATH`) for `path` only if no component of it is a
/// symbolic link (`ELOOP` otherwise). For paths whose links were resolved
/// earlier, so that a link made since cannot redirect the open.
pub fn open_path_without_links(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fd = open_without_links(&c);
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat2 succeeded, so `fd` is open and ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The id of the mount `path` lies on, its links followed: the first
/// field of that mount's line in `/proc/self/mountinfo` (`statx`'s
/// `STATX_MNT_ID`, Linux 5.8).
pub fn mount_id(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a live NUL-terminated string and `stx` a live, writable
    // statx the kernel fills in; no other memory is touched.
    cvt(unsafe { libc::syscall(libc::SYS_statx, libc::AT_FDCWD, c.as_ptr(), 0, libc::STATX_MNT_ID, &mut stx) })?;
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok(stx.stx_mnt_id)
}

fn c_name(name: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(name.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `openat2(dir, name, flags | O_CLOEXEC, mode, RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS)`: opens `name` below `dir` only if no component of
/// it is a symbolic link (`ELOOP`) and it does not climb out of `dir`
/// (`EXDEV`). With `O_CREAT | O_EXCL` a link in the last component is
/// refused too (`EEXIST`). For writing into a tree a sandbox may have
/// touched (the artifact store) without being redirected.
pub fn open_beneath(dir: BorrowedFd<'_>, name: &Path, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let c = c_name(name)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: u64::from(mode),
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    };
    // SAFETY: `c` is a valid C string and `how` a live open_how of the size
    // passed; the result is a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let fd = cvt(fd)?;
    // SAFETY: openat2 succeeded, so `fd` is open and ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(libc::c_int::try_from(fd).unwrap_or(-1)) })
}

/// `mkdirat(dir, name, mode)`: `name` is one component (a link there is
/// never followed: mkdirat fails with `EEXIST`).
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &Path, mode: u32) -> io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: `c` is a valid C string that outlives the call.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) }.into())?;
    Ok(())
}

/// `unlinkat(dir, name, 0)`: removes the file (or link) `name` of `dir`.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: `c` is a valid C string that outlives the call.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) }.into())?;
    Ok(())
}

/// `renameat2(AT_FDCWD, from, dir, name, RENAME_NOREPLACE)`: moves `from`
/// to the entry `name` of `dir`, failing with `EEXIST` when that entry
/// exists (a link included: rename never follows its last component).
/// Filesystems without `RENAME_NOREPLACE` (`EINVAL`) get a check that the
/// entry is absent, then a plain renameat, still relative to `dir`.
pub fn rename_into(from: &Path, dir: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    let (f, c) = (c_name(from)?, c_name(name)?);
    // SAFETY: both are valid C strings that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            f.as_ptr(),
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    match cvt(rc) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: `c` is a valid C string; `st` has room for a stat.
            let seen =
                unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
            if seen == 0 {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            // SAFETY: as above.
            cvt(unsafe { libc::renameat(libc::AT_FDCWD, f.as_ptr(), dir.as_raw_fd(), c.as_ptr()) }.into())?;
            Ok(())
        }
        other => other.map(drop),
    }
}

/// A pipe with both ends close-on-exec: `(read, write)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }.into())?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above, for the write end.
    let write = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((read, write))
}

/// Sets or clears `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we borrow; no pointers.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }.into())?;
    let flags = libc::c_int::try_from(flags).unwrap_or(0) | libc::O_NONBLOCK;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) }.into())?;
    Ok(())
}

/// Shrinks the pipe `fd` to one page (`F_SETPIPE_SZ`): a pipe of one
/// buffer is writable (`POLLOUT`) exactly when it is empty, i.e. when its
/// reader has taken everything written to it.
pub fn shrink_pipe(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_SETPIPE_SZ with an integer size on a descriptor we borrow.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) }.into()).map(drop)
}

/// A child made by [`spawn`]: its pid and a pidfd for it.
#[derive(Debug)]
pub struct Spawned {
    /// The pid in cordon's pid namespace.
    pub pid: libc::pid_t,
    /// A pidfd: readable when the child exits; signals go through it, so a
    /// recycled pid is never signalled.
    pub pidfd: OwnedFd,
}

/// Starts the child that runs [`child::child_main`]: `clone(flags |
/// CLONE_PIDFD | SIGCHLD)`.
///
/// With [`child::Supervision::Init`], without a new stack (fork semantics):
/// init outlives the exec of the command and keeps running cordon's code,
/// so it needs memory of its own. With [`child::Supervision::Direct`] (dev
/// mode, no namespaces) the child is the command itself and only execs, so
/// it shares our memory until then on its own stack (`CLONE_VM |
/// CLONE_VFORK`, as `posix_spawn` does): no page tables to copy, no
/// copy-on-write faults on either side, and we are suspended until the exec
/// is done, which we would wait for anyway.
///
/// With [`ParentOf::CallersParent`] (`CLONE_PARENT`) the child is a child
/// of the caller's parent, not of the caller: the sandbox spawner
/// ([`spawner`]) clones sandboxes that `cordon serve` waits for and dies with.
///
/// The child only runs async-signal-safe code on memory prepared in `spec`,
/// so this is sound even when other threads of the caller hold locks.
pub fn spawn(namespaces: libc::c_int, parent: ParentOf, spec: &child::ChildSpec) -> io::Result<Spawned> {
    let extra = match parent {
        ParentOf::Caller => 0,
        ParentOf::CallersParent => libc::CLONE_PARENT,
    };
    if spec.supervision == child::Supervision::Direct && namespaces == 0 {
        return spawn_shared(spec, extra);
    }
    match fork_with_pidfd(namespaces | extra)? {
        // It runs `child_main`, which only execs or _exits.
        Forked::Child => child::child_main(spec, HandlersCleared::No),
        Forked::Parent(spawned) => Ok(spawned),
    }
}

/// A stack for a process cordon clones to share a memory (`CLONE_VM`): an
/// anonymous private mapping whose pages are made only when first touched,
/// with one inaccessible guard page below it.
///
/// # Guarantees and limits
///
/// Nothing is written to it here: a `vec![0; N]` stack was zeroed by cordon
/// (and, once cloned into init, copied page by page on each write); these
/// pages come zeroed from the kernel when the child first uses them, in the
/// memory of the process that runs on them. A frame that runs past the
/// bottom faults on the guard page (`SIGSEGV`) instead of writing over
/// whatever lies below. The mapping is unmapped when the value is dropped;
/// a process still running on it then would fault, so the owner (the spec)
/// must outlive every such process in this memory.
#[derive(Debug)]
pub struct Stack {
    /// Start of the mapping (the guard page), as an address.
    base: usize,
    /// Length of the mapping, guard page included.
    len: usize,
}

impl Stack {
    /// Maps a stack of `bytes` (rounded up to whole pages) plus its guard
    /// page.
    pub fn new(bytes: usize) -> io::Result<Stack> {
        let page = page_size();
        let len = bytes.div_ceil(page) * page + page;
        // SAFETY: a fresh anonymous mapping at an address the kernel picks;
        // no existing memory is affected. The result is checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base: base as usize, len };
        // SAFETY: the first page of the mapping just made, which nothing
        // uses yet; on failure `stack`'s drop unmaps the whole mapping.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The 16-byte-aligned address just past the end: where a stack that
    /// grows down starts.
    pub fn top(&self) -> usize {
        (self.base + self.len) & !15
    }

    /// The guard page and the usable range, as addresses (for tests and
    /// diagnostics).
    pub fn range(&self) -> std::ops::Range<usize> {
        self.base..self.base + self.len
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `new` made, unmapped once; the owner
        // outlives every process that runs on it (see the type's docs).
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// The size of a memory page.
pub fn page_size() -> usize {
    // SAFETY: sysconf with a plain name.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Whose child a process made by [`spawn`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParentOf {
    /// The calling process's: it waits for it, and the child's death
    /// signal follows the calling thread.
    Caller,
    /// The calling process's parent's (`CLONE_PARENT`), as if that parent
    /// had cloned it from the thread that made the caller.
    CallersParent,
}

/// Which side of [`fork_with_pidfd`] returned.
pub(crate) enum Forked {
    /// The new process.
    Child,
    /// The caller, with the child.
    Parent(Spawned),
}

/// `clone(flags | CLONE_PIDFD | SIGCHLD)` with a NULL stack: the calling
/// thread duplicated like `fork()`, without glibc's fork handlers. The
/// caller must make the child run only async-signal-safe code (other
/// threads' locks are copied held) and never return into frames that
/// expect the parent: it execs or `_exit`s.
pub(crate) fn fork_with_pidfd(flags: libc::c_int) -> io::Result<Forked> {
    let flags = libc::c_ulong::try_from(flags | libc::CLONE_PIDFD | libc::SIGCHLD).unwrap_or(0);
    let mut pidfd: libc::c_int = -1;
    // SAFETY: raw clone with a NULL stack duplicates the calling thread like
    // fork(). CLONE_PIDFD makes the kernel write the pidfd to `pidfd`, which
    // lives across the call. What the child runs is the caller's duty
    // (see above).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<u8>(),
            &mut pidfd as *mut libc::c_int,
            std::ptr::null_mut::<u8>(),
            0usize,
        )
    };
    Ok(match cvt(rc)? {
        0 => Forked::Child,
        pid => Forked::Parent(Spawned {
            pid: libc::pid_t::try_from(pid).unwrap_or(-1),
            // SAFETY: the kernel just gave us this pidfd; nobody else owns it.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    })
}

/// Whether the kernel put back the default action of every signal with a
/// handler in a child that shares our memory ([`clone_vm`]), or the child
/// must do so itself before it unblocks signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandlersCleared {
    /// `CLONE_CLEAR_SIGHAND` did it.
    ByTheKernel,
    /// Not done: the child asks about each signal.
    No,
}

impl From<&AtomicBool> for HandlersCleared {
    fn from(flag: &AtomicBool) -> Self {
        if flag.load(Ordering::Relaxed) {
            HandlersCleared::ByTheKernel
        } else {
            HandlersCleared::No
        }
    }
}

/// `CLONE_CLEAR_SIGHAND` (Linux 5.5, clone3 only): in the child, every
/// signal with a handler is back at its default action; ignored ones stay
/// ignored (what `execve` does to them).
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

/// `struct clone_args` of clone3(2), as far as `cgroup`.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Starts a process sharing this memory (`CLONE_VM | flags`, `SIGCHLD`
/// when it ends) that runs `entry(arg)` on `stack`, with every signal we
/// handle back at its default action in it (clone3's
/// `CLONE_CLEAR_SIGHAND`), and stores in `cleared` whether that was done
/// (before the child can read it). Otherwise the child must put them back
/// itself before it unblocks signals, so that no handler of ours runs on
/// the memory it shares: 60 `rt_sigaction` reads (≈ 25-30 µs here, every
/// syscall is ≈ 0.45 µs on this VM) while the caller waits for its exec.
/// Where clone3 or the flag is refused (a kernel before 5.5; a seccomp
/// filter that refuses clone3, as container runtimes' and the sandbox's
/// own do), it is `clone(2)`, and `cleared` is false. With
/// `CLONE_PIDFD`, the kernel writes the child's pidfd to `pidfd`. Returns
/// the child's pid, or -1 with `errno` set.
///
/// # Safety
///
/// `entry` must never return into the caller's frames (it execs or
/// `_exit`s; were it to return, the child exits with its result);
/// `stack` must outlive every use the child makes of it; `arg` and
/// `cleared` must stay valid for as long as the child reads them; with
/// `CLONE_PIDFD`, `pidfd` must be valid for writes.
pub(crate) unsafe fn clone_vm(
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    stack: &Stack,
    flags: libc::c_int,
    pidfd: *mut libc::c_int,
    arg: *mut libc::c_void,
    cleared: &AtomicBool,
) -> libc::c_int {
    let flags = flags | libc::CLONE_VM;
    #[cfg(target_arch = "x86_64")]
    {
        let args = CloneArgs {
            flags: u64::from(flags as u32) | CLONE_CLEAR_SIGHAND,
            pidfd: pidfd as u64,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack.base as u64,
            stack_size: (stack.top() - stack.base) as u64,
            ..CloneArgs::default()
        };
        cleared.store(true, Ordering::Relaxed);
        // SAFETY: the caller's contract; `args` names a live stack mapping
        // whose top is 16-byte aligned, where the child starts.
        let rc = unsafe { clone3(&args, entry, arg) };
        if rc >= 0 {
            return libc::c_int::try_from(rc).unwrap_or(-1);
        }
        cleared.store(false, Ordering::Relaxed);
    }
    cleared.store(false, Ordering::Relaxed);
    let top = stack.top();
    // SAFETY: the caller's contract; `top` is the 16-byte-aligned end of
    // `stack`'s mapping. With CLONE_PIDFD, glibc passes `pidfd` as the
    // parent_tid argument the kernel writes.
    unsafe { libc::clone(entry, top as *mut libc::c_void, flags | libc::SIGCHLD, arg, pidfd) }
}

/// clone3(`args`): in the child (on the stack `args` names), `entry(arg)`
/// and an `_exit` with what it returned; in the caller, the raw result
/// (the child's pid, or `-errno`).
///
/// # Safety
///
/// As [`clone_vm`]; `args.stack` must be set (the child must not run on
/// the caller's stack).
#[cfg(target_arch = "x86_64")]
unsafe fn clone3(
    args: &CloneArgs,
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> i64 {
    let rc: i64;
    // SAFETY: one syscall in the caller (rax, rcx and r11 change, as
    // declared). The child returns from it with rax = 0 on its own stack
    // (aligned as a call needs), calls `entry(arg)` (kept in r12 and r13,
    // which the child inherits) and exits with its result; it never comes
    // back into this frame, so `nostack` holds for the caller's stack.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r13",
            "call r12",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone3 => rc,
            in("rdi") args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    rc
}

/// `clone(2)` itself, not the C library's wrapper: a thread or process
/// that runs `entry(arg)` on `stack` and exits with what it returned,
/// made with exactly `flags` (the exit signal in their low byte), the
/// kernel writing the child's tid to `parent_tid` and `child_tid` as those
/// flags ask. For children the C library's `clone` refuses: musl's
/// (1.2.5, Rust's musl target) returns `EINVAL` for `CLONE_THREAD` and
/// `CLONE_CHILD_CLEARTID`, which init's detacher needs (a thread of
/// init's whose end wakes a futex); glibc's makes the same syscall.
/// Not [`clone3`], whose trampoline this repeats with clone(2)'s
/// registers: container runtimes' seccomp profiles answer clone3 with
/// `ENOSYS` (so that C libraries fall back), and init's detacher must work
/// there too; [`clone_vm`] falls back to clone(2) the same way.
/// Returns the child's tid, or `-errno`.
///
/// # Safety
///
/// As [`clone_vm`]: `entry` must not return into the caller's frames
/// (returning exits the child), `stack` and `arg` must outlive the child's
/// use of them, and `parent_tid` and `child_tid` must be valid for writes
/// for as long as the flags make the kernel write them.
pub(crate) unsafe fn clone_raw(
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    stack: &Stack,
    flags: libc::c_int,
    parent_tid: *mut libc::c_int,
    child_tid: *mut libc::c_int,
    arg: *mut libc::c_void,
) -> i64 {
    #[cfg(target_arch = "x86_64")]
    {
        let rc: i64;
        // SAFETY: one syscall in the caller (rax, rcx and r11 change, as
        // declared; clone(2) on x86_64 takes flags, stack, parent_tid,
        // child_tid, tls in rdi, rsi, rdx, r10, r8). The child returns
        // from it with rax = 0 on the 16-byte-aligned top of `stack` (so
        // `call` leaves the alignment a function expects), calls
        // `entry(arg)` (kept in r12 and r13, which the child inherits)
        // and exits with its result; it never comes back into this frame,
        // so `nostack` holds for the caller's stack.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "mov rdi, r13",
                "call r12",
                "mov edi, eax",
                "mov eax, {exit}",
                "syscall",
                "ud2",
                "2:",
                exit = const libc::SYS_exit,
                inlateout("rax") libc::SYS_clone => rc,
                in("rdi") i64::from(flags),
                in("rsi") stack.top(),
                in("rdx") parent_tid,
                in("r10") child_tid,
                in("r8") 0usize,
                in("r12") entry,
                in("r13") arg,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        rc
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: the caller's contract; glibc's wrapper makes the same
        // syscall (musl's refuses thread flags there: see above).
        let pid = unsafe {
            libc::clone(
                entry,
                stack.top() as *mut libc::c_void,
                flags,
                arg,
                parent_tid,
                std::ptr::null_mut::<libc::c_void>(),
                child_tid,
            )
        };
        if pid == -1 {
            -i64::from(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL))
        } else {
            i64::from(pid)
        }
    }
}

/// [`spawn`] for a child that only execs: `CLONE_VM | CLONE_VFORK` on the
/// spec's own stack.
fn spawn_shared(spec: &child::ChildSpec, extra: libc::c_int) -> io::Result<Spawned> {
    /// What the child is given: the spec, and whether the kernel put back
    /// the default actions of our handled signals for it.
    struct Start<'a> {
        spec: &'a child::ChildSpec,
        handlers: AtomicBool,
    }
    extern "C" fn entry(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `&Start` passed to clone below; we are
        // suspended (CLONE_VFORK) in that call while the child uses it.
        let start = unsafe { &*(arg as *const Start<'_>) };
        child::child_main(start.spec, HandlersCleared::from(&start.handlers))
    }
    let start = Start { spec, handlers: AtomicBool::new(false) };
    // The child starts with every signal blocked, as under posix_spawn: until
    // it has put back the default actions, a handler of ours must not run in
    // it, on our memory (see `child::unblock_signals_with_default_handlers`).
    // SAFETY: sigset_t is plain data, filled by sigfillset before use.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above, for the mask we put back.
    let mut before: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointer.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: valid sigset pointers; only this thread's mask changes.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut before) };
    let mut pidfd: libc::c_int = -1;
    // SAFETY: the child runs `entry` on a live stack mapping the spec owns,
    // never returns into our frames (it execs or _exits) and only makes
    // syscalls; `start` (and the spec) outlive its use because we are
    // suspended until the child execs or exits. The kernel writes the
    // pidfd to `pidfd` (CLONE_PIDFD).
    let rc = unsafe {
        clone_vm(
            entry,
            &spec.command_stack,
            libc::CLONE_VFORK | libc::CLONE_PIDFD | extra,
            &mut pidfd,
            (&start as *const Start<'_>).cast_mut().cast(),
            &start.handlers,
        )
    };
    let cloned = cvt(rc.into());
    // SAFETY: the mask saved above; the old one is not needed.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
    let pid = cloned?;
    Ok(Spawned {
        pid: libc::pid_t::try_from(pid).unwrap_or(-1),
        // SAFETY: the kernel just gave us this pidfd; nobody else owns it.
        pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
    })
}

/// Sends `signal` to the process behind `pidfd`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a NULL siginfo means "as kill() would"; no memory is read.
    let rc =
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, std::ptr::null::<u8>(), 0u32) };
    cvt(rc).map(drop)
}

/// Sends `signal` to the process group `pgid` (dev mode only).
pub fn kill_process_group(pgid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes no pointers; a negative pid names a group.
    cvt(unsafe { libc::kill(-pgid, signal) }.into()).map(drop)
}

/// How a child ended, with its resource usage (its own and that of every
/// descendant it reaped).
#[derive(Clone, Copy, Debug)]
pub struct Reaped {
    /// The raw wait status.
    pub status: libc::c_int,
    /// User CPU time, microseconds.
    pub user_us: u64,
    /// System CPU time, microseconds.
    pub sys_us: u64,
    /// Largest resident set of any of them, KiB.
    pub max_rss_kb: u64,
}

/// `wait4(pid)`, blocking, retried on `EINTR`.
pub fn wait4(pid: libc::pid_t) -> io::Result<Reaped> {
    let mut status = 0;
    // SAFETY: rusage is plain data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both out-pointers refer to live locals.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        match cvt(rc.into()) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let us =
        |t: libc::timeval| u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0);
    Ok(Reaped {
        status,
        user_us: us(ru.ru_utime),
        sys_us: us(ru.ru_stime),
        max_rss_kb: u64::try_from(ru.ru_maxrss).unwrap_or(0),
    })
}

/// `poll(2)` over `fds` (fd, events) for at most `timeout_ms` (-1: forever).
/// Returns the `revents` of each, in order. `EINTR` counts as "nothing ready".
pub fn poll(fds: &[(BorrowedFd<'_>, libc::c_short)], timeout_ms: libc::c_int) -> io::Result<Vec<libc::c_short>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|(fd, ev)| libc::pollfd { fd: fd.as_raw_fd(), events: *ev, revents: 0 }).collect();
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structures.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    match cvt(rc.into()) {
        Ok(_) => Ok(pfds.iter().map(|p| p.revents).collect()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(vec![0; fds.len()]),
        Err(e) => Err(e),
    }
}

/// The highest capability number this kernel knows (what
/// `/proc/sys/kernel/cap_last_cap` says), found with
/// `prctl(PR_CAPBSET_READ)`, which fails with `EINVAL` past it: seven
/// syscalls of a binary search, no file to open, made once per process (the
/// kernel's number does not change while it runs). 63 if the probe makes no
/// sense.
pub fn last_capability() -> libc::c_int {
    static LAST: std::sync::OnceLock<libc::c_int> = std::sync::OnceLock::new();
    *LAST.get_or_init(probe_last_capability)
}

fn probe_last_capability() -> libc::c_int {
    // SAFETY: PR_CAPBSET_READ takes an integer and reads no memory.
    let known = |cap: libc::c_int| unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) } != -1;
    if !known(0) {
        return 63;
    }
    // Invariant: `lo` is known, `hi` is not (the kernel's caps are 64 bits).
    let (mut lo, mut hi) = (0, 64);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if known(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The signals the supervisor takes over while a run lasts: the requests to
/// end it (forwarded to every process of the run), job control (`SIGTSTP`,
/// `SIGTTIN` and `SIGTTOU` stop the run and then cordon; `SIGCONT` resumes
/// both) and `SIGWINCH` (the caller's terminal changed size: the run's pty
/// follows). With `SIGTTIN` blocked, a read of the controlling terminal
/// from a background process group fails with `EIO` instead of stopping
/// cordon alone; the supervisor then stops the job itself
/// ([`stop_self_with`]).
pub const SUPERVISED_SIGNALS: [libc::c_int; 9] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGCONT,
    libc::SIGWINCH,
];

/// Blocks [`SUPERVISED_SIGNALS`] for this thread and returns a signalfd that
/// reads them, so the supervisor can handle them in its loop.
pub fn block_supervised_signals() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a live sigset.
    unsafe { libc::sigemptyset(&mut set) };
    for s in SUPERVISED_SIGNALS {
        // SAFETY: valid pointer, valid signal number.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    // SAFETY: valid set pointer; old mask not requested.
    cvt(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) }.into())?;
    // SAFETY: valid set pointer; -1 asks for a new descriptor.
    let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) }.into())?;
    // SAFETY: signalfd succeeded; the descriptor is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(RawFd::try_from(fd).unwrap_or(-1)) })
}

/// Stops this process with `sig` (`SIGTSTP`, `SIGTTIN` or `SIGTTOU`, one of
/// [`SUPERVISED_SIGNALS`], blocked in the calling thread) until a
/// `SIGCONT`, as the signal's default action does, so the shell that
/// started it sees how its job stopped ("Stopped (tty input)"). The signal
/// is sent to this thread and unblocked for the moment it is delivered.
/// Returns whether the process was stopped: the kernel discards these
/// signals in an orphaned process group (no shell is left to continue it).
/// The `SIGCONT` that continued it stays pending for the signalfd.
pub fn stop_self_with(sig: libc::c_int) -> io::Result<bool> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a live sigset.
    unsafe { libc::sigemptyset(&mut set) };
    // SAFETY: valid pointer to a live sigset; valid signal number.
    unsafe { libc::sigaddset(&mut set, sig) };
    // SAFETY: gettid takes no arguments and cannot fail.
    let thread = unsafe { libc::gettid() };
    // SAFETY: integer arguments: this thread of this process. A stop signal
    // discards a pending SIGCONT, so one pending after this was sent later.
    cvt(unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), thread, sig) })?;
    // SAFETY: valid set pointer; old mask not requested. The signal is
    // delivered (its default action: stop) as the mask opens.
    cvt(unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) }.into())?;
    // SAFETY: as above.
    cvt(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) }.into())?;
    // SAFETY: plain data, filled by sigpending.
    let mut pending: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a live local sigset.
    cvt(unsafe { libc::sigpending(&mut pending) }.into())?;
    // SAFETY: a live, initialised sigset.
    Ok(unsafe { libc::sigismember(&pending, libc::SIGCONT) } == 1)
}

/// Unblocks [`SUPERVISED_SIGNALS`] for this thread: they take their
/// default actions again (one that is pending is delivered at once).
pub fn unblock_supervised_signals() -> io::Result<()> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a live sigset.
    unsafe { libc::sigemptyset(&mut set) };
    for s in SUPERVISED_SIGNALS {
        // SAFETY: valid pointer, valid signal number.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    // SAFETY: valid set pointer; old mask not requested.
    cvt(unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) }.into()).map(drop)
}

/// Reads one pending signal number from a signalfd, if any.
pub fn read_signalfd(fd: BorrowedFd<'_>) -> Option<i32> {
    // SAFETY: signalfd_siginfo is plain data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reads at most `size` bytes into a live local of that size.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
    (usize::try_from(n).ok() == Some(size)).then(|| i32::try_from(info.ssi_signo).unwrap_or(0))
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (a
/// service whose every connection and run takes descriptors should not stop
/// at the 1024 a service manager gives by default); returns the soft limit
/// now in force. A process cannot raise its hard limit without privilege,
/// so that is left as it is.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: fills a live local rlimit.
    cvt(libc::c_long::from(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }))?;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: reads a live local rlimit; changes only this process's limit.
        cvt(libc::c_long::from(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) }))?;
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// Fills `buf` with random bytes from the kernel.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: writes at most the remaining length into `buf`.
        let n = unsafe { libc::getrandom(buf[got..].as_mut_ptr().cast(), buf.len() - got, 0) };
        got += usize::try_from(cvt(n.try_into().unwrap_or(-1))?).unwrap_or(0);
    }
    Ok(())
}

/// A connected pair of `AF_UNIX` datagram sockets, close-on-exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    unix_pair(libc::SOCK_DGRAM)
}

/// A connected pair of `AF_UNIX` `SOCK_SEQPACKET` sockets, close-on-exec:
/// message boundaries are kept and descriptors travel with their message.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    unix_pair(libc::SOCK_SEQPACKET)
}

fn unix_pair(kind: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) }.into())?;
    // SAFETY: socketpair succeeded; both descriptors are ours alone.
    let a = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above.
    let b = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((a, b))
}

/// Size of one descriptor in a control message.
const INT_BYTES: u32 = 4;

/// A message header for the one-byte payload `iov` and the control buffer
/// `control` (room for one header with one descriptor, aligned as the
/// kernel wants). It points at both, so they must outlive its use.
/// Async-signal-safe.
fn one_byte_msghdr(iov: &mut libc::iovec, control: &mut [u64; 4]) -> libc::msghdr {
    // SAFETY: msghdr is plain data; the fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = c_fit(std::mem::size_of_val(control)).unwrap_or(0);
    msg
}

/// Most descriptors one message of [`send_with_fds`] carries.
pub const MAX_FDS_PER_MESSAGE: usize = 32;

/// Control buffer for [`MAX_FDS_PER_MESSAGE`] descriptors (one header and
/// 32 ints: 144 bytes), aligned as the kernel wants.
#[repr(C, align(8))]
struct FdControl([u8; 160]);

/// Sends `data` as one message with `fds` attached (`SCM_RIGHTS`), with
/// `sendmsg` flags `flags` besides `MSG_NOSIGNAL` (e.g. `MSG_DONTWAIT`).
/// Stack buffers only. More than [`MAX_FDS_PER_MESSAGE`] descriptors:
/// `EINVAL`. Returns the bytes sent.
pub fn send_with_fds<F: AsRawFd>(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[F],
    flags: libc::c_int,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut iov = libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() };
    let mut control = FdControl([0; 160]);
    // SAFETY: msghdr is plain data; the fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes = u32::try_from(fds.len() * std::mem::size_of::<libc::c_int>()).unwrap_or(0);
        msg.msg_control = control.0.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure computation.
        msg.msg_controllen = c_fit(unsafe { libc::CMSG_SPACE(bytes) }).unwrap_or(0);
        // SAFETY: msg_control points at `control`, which has room for one
        // header and MAX_FDS_PER_MESSAGE ints.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        // SAFETY: cmsghdr is plain data.
        let mut header: libc::cmsghdr = unsafe { std::mem::zeroed() };
        // SAFETY: CMSG_LEN is a pure computation.
        header.cmsg_len = c_fit(unsafe { libc::CMSG_LEN(bytes) }).unwrap_or(0);
        header.cmsg_level = libc::SOL_SOCKET;
        header.cmsg_type = libc::SCM_RIGHTS;
        // SAFETY: `cmsg` is non-null (the buffer has room) and points into `control`.
        unsafe { std::ptr::write_unaligned(cmsg, header) };
        // SAFETY: `cmsg` points at the header inside `control`.
        let data_ptr = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
        for (i, fd) in fds.iter().enumerate() {
            // SAFETY: element `i` lies inside `control` for i < MAX_FDS_PER_MESSAGE.
            let at = unsafe { data_ptr.add(i) };
            // SAFETY: `at` points at room for one int inside `control`.
            unsafe { std::ptr::write_unaligned(at, fd.as_raw_fd()) };
        }
    }
    // SAFETY: `msg` and everything it points at are live locals.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, flags | libc::MSG_NOSIGNAL) };
    cvt(n as libc::c_long).map(|n| usize::try_from(n).unwrap_or(0))
}

/// Sends one byte on `sock` with `fd` attached as `SCM_RIGHTS`.
/// Async-signal-safe (the child uses it between clone and exec): only stack
/// buffers and one syscall. Returns what `sendmsg` returned.
pub(crate) fn send_byte_with_fd(sock: RawFd, fd: RawFd) -> isize {
    send_with_fd(sock, 0, fd, libc::MSG_NOSIGNAL)
}

/// Sends the byte `payload` on `sock` with `fd` attached as `SCM_RIGHTS`,
/// with `sendmsg` flags `flags`. Async-signal-safe, like
/// [`send_byte_with_fd`]. Returns what `sendmsg` returned.
fn send_with_fd(sock: RawFd, payload: u8, fd: RawFd, flags: libc::c_int) -> isize {
    let mut byte = [payload];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut control = [0u64; 4];
    let mut msg = one_byte_msghdr(&mut iov, &mut control);
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(INT_BYTES) };
    msg.msg_controllen = c_fit(space).unwrap_or(0);
    // SAFETY: msg_control points at `control`, large enough for one header.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    // SAFETY: CMSG_LEN is a pure computation.
    let len = unsafe { libc::CMSG_LEN(INT_BYTES) };
    // SAFETY: cmsghdr is plain data; the fields are set below.
    let mut header: libc::cmsghdr = unsafe { std::mem::zeroed() };
    header.cmsg_len = c_fit(len).unwrap_or(0);
    header.cmsg_level = libc::SOL_SOCKET;
    header.cmsg_type = libc::SCM_RIGHTS;
    // SAFETY: `cmsg` points at the header inside `control` (non-null: the
    // buffer has room for one).
    unsafe { std::ptr::write_unaligned(cmsg, header) };
    // SAFETY: `cmsg` points at the header inside `control`.
    let data = unsafe { libc::CMSG_DATA(cmsg) };
    // SAFETY: `data` points at room for one int inside `control`.
    unsafe { std::ptr::write_unaligned(data.cast::<libc::c_int>(), fd) };
    // SAFETY: `msg` and everything it points at are live locals.
    unsafe { libc::sendmsg(sock, &msg, flags) }
}

/// The descriptor an `SCM_RIGHTS` message received into `msg` carries, or
/// -1. Async-signal-safe.
fn received_fd(msg: &libc::msghdr) -> RawFd {
    // SAFETY: msg_control was filled by the kernel (or has no header: NULL).
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    if cmsg.is_null() {
        return -1;
    }
    // SAFETY: `cmsg` is non-null and points at a header inside the control buffer.
    let header: libc::cmsghdr = unsafe { std::ptr::read_unaligned(cmsg) };
    if header.cmsg_level != libc::SOL_SOCKET || header.cmsg_type != libc::SCM_RIGHTS {
        return -1;
    }
    // SAFETY: `cmsg` is non-null and points into the control buffer.
    let data = unsafe { libc::CMSG_DATA(cmsg) };
    // SAFETY: an SCM_RIGHTS header carries at least one int at `data`.
    unsafe { std::ptr::read_unaligned(data.cast::<libc::c_int>()) }
}

/// Receives one descriptor sent with `SCM_RIGHTS` on `sock` (blocking).
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut control = [0u64; 4];
    let mut msg = one_byte_msghdr(&mut iov, &mut control);
    // SAFETY: `msg` points at live locals; MSG_CMSG_CLOEXEC marks the new fd.
    let n = cvt(unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) } as libc::c_long)?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the sandbox closed the proxy channel"));
    }
    // SAFETY: msg_control was filled by the kernel (or has no header: NULL).
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no descriptor in the proxy channel message"));
    }
    // SAFETY: `cmsg` is non-null and points at a header inside `control`.
    let header: libc::cmsghdr = unsafe { std::ptr::read_unaligned(cmsg) };
    let (level, kind) = (header.cmsg_level, header.cmsg_type);
    if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected control message in the proxy channel"));
    }
    // SAFETY: `cmsg` is non-null and points into `control`.
    let data = unsafe { libc::CMSG_DATA(cmsg) };
    // SAFETY: an SCM_RIGHTS header carries at least one int at `data`.
    let fd = unsafe { std::ptr::read_unaligned(data.cast::<libc::c_int>()) };
    // SAFETY: the kernel installed this descriptor for us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `flock(LOCK_EX | LOCK_NB)`: `EWOULDBLOCK` when another open file holds it.
pub fn try_lock_exclusive(file: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: flock on a descriptor the caller keeps open; no pointers.
    cvt(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }.into()).map(drop)
}

/// What [`ofd_lock_byte`] does with the byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteLock {
    /// Take a write lock on it; fails with `EAGAIN` when another open file
    /// holds one.
    Hold,
    /// Let it go.
    Release,
}

fn ofd_flock(l_type: libc::c_int, offset: u64) -> io::Result<libc::flock> {
    let overflow = |_| io::Error::from_raw_os_error(libc::EOVERFLOW);
    let start = libc::off_t::try_from(offset).map_err(overflow)?;
    // SAFETY: `flock` is plain data; all-zero is a valid value (l_pid must
    // be 0 for open-file-description locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::c_short::try_from(l_type).map_err(overflow)?;
    fl.l_whence = libc::c_short::try_from(libc::SEEK_SET).map_err(overflow)?;
    fl.l_start = start;
    fl.l_len = 1;
    Ok(fl)
}

/// An open-file-description lock (`F_OFD_SETLK`) on byte `offset` of
/// `file`: held until released, or until every descriptor of that open
/// file is closed, which the kernel does when the process dies however it
/// dies (SIGKILL included). Independent of `flock`, so a file can carry
/// both. The byte need not exist.
pub fn ofd_lock_byte(file: BorrowedFd<'_>, offset: u64, op: ByteLock) -> io::Result<()> {
    let l_type = match op {
        ByteLock::Hold => libc::F_WRLCK,
        ByteLock::Release => libc::F_UNLCK,
    };
    let fl = ofd_flock(l_type, offset)?;
    // SAFETY: `fl` lives across the call and is what F_OFD_SETLK reads.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) }.into()).map(drop)
}

/// Starts writing `file`'s dirty pages back to its device without waiting
/// for them (`sync_file_range(SYNC_FILE_RANGE_WRITE)` over the whole file):
/// an `fdatasync` right after finds them on their way and waits for less.
/// Makes nothing durable by itself: no metadata (the file's size), no
/// flush of the device's cache; only `fdatasync`/`fsync` do.
pub fn start_writeback(file: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: integer arguments only; offset 0 and length 0 mean the whole file.
    cvt(unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) }.into()).map(drop)
}

/// Whether an open file other than `file`'s holds a lock on byte `offset`
/// (`F_OFD_GETLK`).
pub fn ofd_byte_locked(file: BorrowedFd<'_>, offset: u64) -> io::Result<bool> {
    let mut fl = ofd_flock(libc::F_WRLCK, offset)?;
    // SAFETY: `fl` is valid for reads and writes for the call; F_OFD_GETLK
    // overwrites it with the conflicting lock, or sets l_type to F_UNLCK.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) }.into())?;
    Ok(i32::from(fl.l_type) != libc::F_UNLCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`clone_vm`]'s child saw of two signals' actions.
    struct Seen {
        caught: std::sync::atomic::AtomicUsize,
        ignored: std::sync::atomic::AtomicUsize,
        cleared: AtomicBool,
    }

    /// The two real-time signals the test below sets up (no other test
    /// uses them): one with a handler, one ignored.
    fn handled_and_ignored() -> (libc::c_int, libc::c_int) {
        (libc::SIGRTMIN() + 4, libc::SIGRTMIN() + 5)
    }

    extern "C" fn note(_: libc::c_int) {}

    /// Runs in the child: records its actions of the two signals.
    extern "C" fn look(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the test's `Seen`; the test is suspended
        // (CLONE_VFORK) while the child runs.
        let seen = unsafe { &*(arg as *const Seen) };
        let (caught, ignored) = handled_and_ignored();
        for (sig, slot) in [(caught, &seen.caught), (ignored, &seen.ignored)] {
            // SAFETY: plain data; a NULL new action only reads the current one.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
            slot.store(old.sa_sigaction, Ordering::Relaxed);
        }
        7
    }

    #[test]
    fn a_child_sharing_our_memory_starts_with_our_handlers_back_at_their_default() {
        let (caught, ignored) = handled_and_ignored();
        let set = |sig: libc::c_int, action: libc::sighandler_t| {
            // SAFETY: plain data, then a handler that does nothing, or
            // SIG_IGN / SIG_DFL.
            let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
            sa.sa_sigaction = action;
            // SAFETY: a live sigaction value.
            assert_eq!(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) }, 0);
        };
        set(caught, note as extern "C" fn(libc::c_int) as libc::sighandler_t);
        set(ignored, libc::SIG_IGN);
        let seen = Seen {
            caught: std::sync::atomic::AtomicUsize::new(usize::MAX),
            ignored: std::sync::atomic::AtomicUsize::new(usize::MAX),
            cleared: AtomicBool::new(false),
        };
        let stack = Stack::new(64 << 10).unwrap();
        // SAFETY: `look` returns (the child then exits) and touches only
        // `seen`, which outlives the child: we are suspended until it exits.
        let pid = unsafe {
            clone_vm(
                look,
                &stack,
                libc::CLONE_VFORK,
                std::ptr::null_mut(),
                (&seen as *const Seen).cast_mut().cast(),
                &seen.cleared,
            )
        };
        set(caught, libc::SIG_DFL);
        set(ignored, libc::SIG_DFL);
        assert!(pid > 0, "clone: {}", io::Error::last_os_error());
        let mut status = 0;
        // SAFETY: our child; `status` is a live int.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7, "the child's status: {status:#x}");
        assert_eq!(seen.ignored.load(Ordering::Relaxed), libc::SIG_IGN, "an ignored signal stays ignored");
        if !seen.cleared.load(Ordering::Relaxed) {
            let reason = "clone3 with CLONE_CLEAR_SIGHAND (Linux 5.5) was refused: the child must put back the default actions itself";
            let ci = std::env::var("CI")
                .is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"));
            assert!(!ci, "kernel feature required in CI: {reason}");
            eprintln!("SKIP a_child_sharing_our_memory_starts_with_our_handlers_back_at_their_default: {reason}");
            return;
        }
        assert_eq!(seen.caught.load(Ordering::Relaxed), libc::SIG_DFL, "our handler reached the child");
    }

    /// Writes one byte at `addr` in a forked child; its wait status.
    fn write_in_child(addr: usize) -> libc::c_int {
        // SAFETY: the child only writes one byte and `_exit`s (nothing that
        // another thread's lock could block).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: the test's point: `addr` is in a mapping of ours, and
            // the write either lands or faults this child alone.
            unsafe { std::ptr::write_volatile(addr as *mut u8, 1) };
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(0) }
        }
        let mut status = 0;
        // SAFETY: our own child; `status` is a live local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    }

    /// A filled program file holds the instructions as the kernel's
    /// `struct sock_filter` and is sealed: a write, a truncation and a
    /// growth through any descriptor of it fail with `EPERM` afterwards;
    /// control: the same write on the file before it is filled succeeds.
    #[test]
    fn a_filled_program_file_holds_the_program_and_nothing_can_change_it() {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsFd;
        let program = [
            SockFilter { code: 0x20, jt: 0, jf: 0, k: 4 },
            SockFilter { code: 0x15, jt: 1, jf: 2, k: 0xc000_003e },
            SockFilter { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 },
        ];
        let control = program_file().unwrap();
        let mut f = std::fs::File::from(control.try_clone().unwrap());
        f.write_all(b"x").expect("control: an unfilled file takes writes");
        f.set_len(0).expect("control: and truncation");

        let file = program_file().unwrap();
        fill_program_file(file.as_fd(), &program).unwrap();
        // SAFETY: fcntl with integer arguments on our own descriptor.
        let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
        // Made with MFD_NOEXEC_SEAL where the kernel knows it (6.3 and later):
        // F_SEAL_EXEC (0x20) set and no execute bit, so `vm.memfd_noexec = 2`
        // lets it be made.
        let release = kernel_release();
        let mut v = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
        let noexec = (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 3);
        let meta = std::fs::File::from(file.try_clone().unwrap()).metadata().unwrap();
        use std::os::unix::fs::PermissionsExt;
        if noexec {
            assert_eq!(seals, PROGRAM_FILE_SEALS | 0x20, "{release}");
            assert_eq!(meta.permissions().mode() & 0o111, 0, "{release}");
        } else {
            assert_eq!(seals, PROGRAM_FILE_SEALS, "{release}");
        }
        let mut f = std::fs::File::from(file.try_clone().unwrap());
        let mut bytes = vec![];
        f.rewind().unwrap(); // the offset is shared with the filling descriptor
        f.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len(), 24);
        assert_eq!(&bytes[8..16], &[0x15, 0, 1, 2, 0x3e, 0, 0, 0xc0]);
        f.rewind().unwrap();
        let errno = |r: io::Result<()>| r.unwrap_err().raw_os_error();
        assert_eq!(errno(f.write_all(b"x")), Some(libc::EPERM), "a write");
        assert_eq!(errno(f.set_len(8)), Some(libc::EPERM), "a truncation");
        assert_eq!(errno(f.set_len(4096)), Some(libc::EPERM), "a growth");
        // SAFETY: fcntl with integer arguments on our own descriptor.
        let unseal = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, 0) };
        assert_eq!((unseal, io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EPERM)), "F_SEAL_SEAL");
    }

    /// A stack costs no memory until it is used (nothing resident, where a
    /// zeroed buffer would be), ends on a 16-byte boundary, takes writes
    /// down to its lowest usable byte (control) and faults one byte below,
    /// on its guard page, instead of writing there.
    #[test]
    fn a_stack_is_untouched_until_used_and_faults_on_its_guard_page() {
        let page = page_size();
        let stack = Stack::new(64 * 1024).unwrap();
        let r = stack.range();
        assert_eq!(r.len(), 64 * 1024 + page);
        assert_eq!(stack.top() % 16, 0);
        assert!(stack.top() <= r.end && stack.top() > r.end - 16);
        let mut resident = vec![0u8; r.len() / page];
        // SAFETY: `r` is the stack's live mapping; one byte per page out.
        let rc = unsafe { libc::mincore(r.start as *mut libc::c_void, r.len(), resident.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        assert!(resident.iter().all(|p| p & 1 == 0), "pages resident before use: {resident:?}");

        let lowest = r.start + page;
        let control = write_in_child(lowest);
        assert!(libc::WIFEXITED(control) && libc::WEXITSTATUS(control) == 0, "write at the bottom: {control:#x}");
        let top = write_in_child(stack.top() - 1);
        assert!(libc::WIFEXITED(top) && libc::WEXITSTATUS(top) == 0, "write at the top: {top:#x}");
        let guard = write_in_child(lowest - 1);
        assert!(
            libc::WIFSIGNALED(guard) && libc::WTERMSIG(guard) == libc::SIGSEGV,
            "a write on the guard page must fault, got status {guard:#x}"
        );
    }
}
