//! The seccomp-bpf filters: a default-deny allow-list, and explicit `EPERM`
//! rules for the dangerous families.
//!
//! One filter: the syscalls in [`ALLOWED`] pass, those in [`DENIED`] and the
//! dangerous argument patterns of allowed ones (namespace flags for
//! `clone`/`unshare`, `TIOCSTI` and `TIOCLINUX`, W^X mappings) get `EPERM`, and everything
//! else gets `ENOSYS`, so a syscall added to the kernel next year is refused
//! and libc falls back as on an older kernel (`clone3` to `clone`).
//!
//! The rules are data; [`compile`] turns them into a binary search over
//! syscall numbers (about 9 comparisons per call instead of hundreds in a
//! linear chain), which also keeps the kernel's load-time work small: a
//! linear filter of ~1500 instructions cost over a millisecond to install,
//! and every instruction is checked and JIT-compiled at each load, so the
//! search jumps straight to one shared `ret` per verdict and argument
//! checks load each argument once (about 200 instructions).
//! Calls whose verdict does not depend on arguments are cached by the kernel
//! (the seccomp action cache) and never run the filter at all.
//!
//! Traps covered, each tested by a probe in the suite:
//! - architecture: both filters kill the process for any `arch` but the
//!   native one, so the i386 (`int 0x80`) entry cannot bypass them. x32 calls
//!   carry `__X32_SYSCALL_BIT` and match no allowed number.
//! - `ioctl` commands are compared on their low 32 bits (the kernel truncates
//!   the command to `unsigned int`), so `0xffffffff00005412` is still `TIOCSTI`.
//! - `clone3` takes its flags in memory a filter cannot read: it gets `ENOSYS`
//!   and libc falls back to `clone`, whose flags are checked.
//! - `io_uring` performs I/O without the filtered syscalls: it is denied.
//! - setuid/setgid files: a file the sandbox creates in a write grant is
//!   owned by the invoking user (root, when cordon runs as root), and
//!   `nosuid` holds only inside the sandbox, so the mode arguments of
//!   `chmod`, `fchmod`, `fchmodat`, `fchmodat2`, `creat`, `open`/`openat`
//!   (with `O_CREAT` or `O_TMPFILE`), `mkdir`/`mkdirat` and
//!   `mknod`/`mknodat` may not carry `S_ISUID` or `S_ISGID` ([`SETID_MODE`]):
//!   `EPERM`. `openat2` carries its mode in a struct a filter cannot read:
//!   it gets `ENOSYS`, as on kernels before 5.6, and callers fall back to
//!   `openat`.
//! - extended attributes: their names are pointers a filter cannot read, and
//!   they carry file capabilities (`security.capability`) and POSIX ACLs
//!   (`system.posix_acl_*`). Setting or removing any is answered
//!   `EOPNOTSUPP`, as by a filesystem without them ([`UNSUPPORTED`]);
//!   `cp -a`, `tar --xattrs` and Python's `shutil.copystat` carry on.
//!   Reading them stays allowed.
//!
//! Argument rules make the kernel run the filter for those syscalls (the
//! action cache holds only verdicts that ignore arguments): `open` and
//! `openat` cost a few more BPF instructions each.
//! - socket families: only `AF_UNIX`, `AF_INET`, `AF_INET6` and
//!   `AF_NETLINK` sockets can be made; the rest get `EAFNOSUPPORT`.
//!   `AF_VSOCK` in particular is not namespaced: it reaches the hypervisor
//!   (and whatever listens there) from any network namespace.
//! - transparent egress ([`ConnectRule::Notify`]): every `connect()` stops
//!   at cordon's supervisor, which performs it (see `cordon-egress`), and so
//!   does every `bind()` (a socket the supervisor connected in the host's
//!   namespace would otherwise bind a host port once its connection ended);
//!   `MSG_FASTOPEN` on `sendto`/`sendmsg`/`sendmmsg` would connect without
//!   a `connect()` call and gets `EOPNOTSUPP` (programs fall back to a plain
//!   connect); `SO_BINDTODEVICE`/`SO_BINDTOIFINDEX` would move a socket the
//!   supervisor connected onto another of the host's interfaces and get
//!   `EPERM` (the sandbox's own namespace has only `lo`).

use crate::policy::WriteXorExecute;

/// A seccomp filter could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// This CPU architecture has no syscall table here.
    #[error("seccomp filters are not available for this CPU architecture ({0})")]
    Architecture(&'static str),
    /// The program does not fit the kernel's 4096-instruction limit.
    #[error("the seccomp filter has {0} instructions, more than the kernel's 4096")]
    TooLong(usize),
}

/// One classic-BPF instruction, as `struct sock_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

/// A compiled filter program.
pub type BpfProgram = Vec<SockFilter>;

/// x86_64 numbers the `libc` crate does not name.
#[cfg(target_arch = "x86_64")]
mod nr {
    pub const CREATE_MODULE: i64 = 174;
    pub const GET_KERNEL_SYMS: i64 = 177;
    pub const QUERY_MODULE: i64 = 178;
    pub const IO_PGETEVENTS: i64 = 333;
    pub const MAP_SHADOW_STACK: i64 = 453;
    pub const FUTEX_WAKE: i64 = 454;
    pub const FUTEX_WAIT: i64 = 455;
    pub const FUTEX_REQUEUE: i64 = 456;
    pub const SETXATTRAT: i64 = 463;
    pub const REMOVEXATTRAT: i64 = 466;
}

/// Syscalls allowed with any arguments (some are narrowed by [`DENIED`]-style
/// argument rules in the second filter). One line each says why.
#[cfg(target_arch = "x86_64")]
pub const ALLOWED: &[(i64, &str)] = &[
    (libc::SYS_read, "I/O"),
    (libc::SYS_write, "I/O"),
    (libc::SYS_readv, "I/O"),
    (libc::SYS_writev, "I/O"),
    (libc::SYS_pread64, "I/O"),
    (libc::SYS_pwrite64, "I/O"),
    (libc::SYS_preadv, "I/O"),
    (libc::SYS_pwritev, "I/O"),
    (libc::SYS_preadv2, "I/O"),
    (libc::SYS_pwritev2, "I/O"),
    (libc::SYS_sendfile, "I/O"),
    (libc::SYS_splice, "I/O"),
    (libc::SYS_tee, "I/O"),
    (libc::SYS_vmsplice, "I/O"),
    (libc::SYS_copy_file_range, "I/O"),
    (libc::SYS_lseek, "I/O"),
    (libc::SYS_open, "files; Landlock decides which"),
    (libc::SYS_openat, "files"),
    (libc::SYS_creat, "files"),
    (libc::SYS_close, "files"),
    (libc::SYS_close_range, "files"),
    (libc::SYS_stat, "metadata"),
    (libc::SYS_fstat, "metadata"),
    (libc::SYS_lstat, "metadata"),
    (libc::SYS_newfstatat, "metadata"),
    (libc::SYS_statx, "metadata"),
    (libc::SYS_statfs, "metadata"),
    (libc::SYS_fstatfs, "metadata"),
    (libc::SYS_access, "metadata"),
    (libc::SYS_faccessat, "metadata"),
    (libc::SYS_faccessat2, "metadata"),
    (libc::SYS_readlink, "metadata"),
    (libc::SYS_readlinkat, "metadata"),
    (libc::SYS_getdents, "directories"),
    (libc::SYS_getdents64, "directories"),
    (libc::SYS_getcwd, "directories"),
    (libc::SYS_chdir, "directories"),
    (libc::SYS_fchdir, "directories"),
    (libc::SYS_mkdir, "directories"),
    (libc::SYS_mkdirat, "directories"),
    (libc::SYS_rmdir, "directories"),
    (libc::SYS_rename, "files"),
    (libc::SYS_renameat, "files"),
    (libc::SYS_renameat2, "files"),
    (libc::SYS_link, "files"),
    (libc::SYS_linkat, "files"),
    (libc::SYS_unlink, "files"),
    (libc::SYS_unlinkat, "files"),
    (libc::SYS_symlink, "files"),
    (libc::SYS_symlinkat, "files"),
    (libc::SYS_chmod, "files"),
    (libc::SYS_fchmod, "files"),
    (libc::SYS_fchmodat, "files"),
    (libc::SYS_fchmodat2, "files"),
    (libc::SYS_chown, "files"),
    (libc::SYS_fchown, "files"),
    (libc::SYS_lchown, "files"),
    (libc::SYS_fchownat, "files"),
    (libc::SYS_umask, "files"),
    (libc::SYS_truncate, "files"),
    (libc::SYS_ftruncate, "files"),
    (libc::SYS_fallocate, "files"),
    (libc::SYS_utime, "files"),
    (libc::SYS_utimes, "files"),
    (libc::SYS_utimensat, "files"),
    (libc::SYS_futimesat, "files"),
    (libc::SYS_mknod, "fifos; device nodes need CAP_MKNOD, which is dropped"),
    (libc::SYS_mknodat, "fifos"),
    (libc::SYS_fsync, "files"),
    (libc::SYS_fdatasync, "files"),
    (libc::SYS_sync, "files"),
    (libc::SYS_syncfs, "files"),
    (libc::SYS_sync_file_range, "files"),
    (libc::SYS_fadvise64, "files"),
    (libc::SYS_readahead, "files"),
    (libc::SYS_flock, "files"),
    (libc::SYS_fcntl, "files"),
    (libc::SYS_dup, "files"),
    (libc::SYS_dup2, "files"),
    (libc::SYS_dup3, "files"),
    (libc::SYS_pipe, "files"),
    (libc::SYS_pipe2, "files"),
    (libc::SYS_ioctl, "terminals; TIOCSTI/TIOCLINUX denied"),
    (libc::SYS_getxattr, "xattrs"),
    (libc::SYS_lgetxattr, "xattrs"),
    (libc::SYS_fgetxattr, "xattrs"),
    (libc::SYS_listxattr, "xattrs"),
    (libc::SYS_llistxattr, "xattrs"),
    (libc::SYS_flistxattr, "xattrs"),
    (libc::SYS_name_to_handle_at, "file handles (opening one is denied)"),
    (libc::SYS_inotify_init, "watches; refused in process mode (see `FileWatches`)"),
    (libc::SYS_inotify_init1, "watches; refused in process mode"),
    (libc::SYS_inotify_add_watch, "watches"),
    (libc::SYS_inotify_rm_watch, "watches"),
    (libc::SYS_mmap, "memory; W^X rule optional"),
    (libc::SYS_mprotect, "memory"),
    (libc::SYS_munmap, "memory"),
    (libc::SYS_mremap, "memory"),
    (libc::SYS_msync, "memory"),
    (libc::SYS_mincore, "memory"),
    (libc::SYS_madvise, "memory"),
    (libc::SYS_brk, "memory"),
    (libc::SYS_mlock, "memory"),
    (libc::SYS_mlock2, "memory"),
    (libc::SYS_munlock, "memory"),
    (libc::SYS_mlockall, "memory"),
    (libc::SYS_munlockall, "memory"),
    (libc::SYS_memfd_create, "memory; executable ones refused with an exec allow-list (see `MemfdExec`)"),
    (libc::SYS_memfd_secret, "memory"),
    (libc::SYS_membarrier, "memory"),
    (libc::SYS_mbind, "NUMA"),
    (libc::SYS_get_mempolicy, "NUMA"),
    (libc::SYS_set_mempolicy, "NUMA"),
    (libc::SYS_pkey_alloc, "memory keys"),
    (libc::SYS_pkey_free, "memory keys"),
    (libc::SYS_pkey_mprotect, "memory keys"),
    (nr::MAP_SHADOW_STACK, "CET"),
    (libc::SYS_shmget, "SysV IPC (private IPC namespace in container mode)"),
    (libc::SYS_shmat, "SysV IPC"),
    (libc::SYS_shmdt, "SysV IPC"),
    (libc::SYS_shmctl, "SysV IPC"),
    (libc::SYS_semget, "SysV IPC"),
    (libc::SYS_semop, "SysV IPC"),
    (libc::SYS_semtimedop, "SysV IPC"),
    (libc::SYS_semctl, "SysV IPC"),
    (libc::SYS_msgget, "SysV IPC"),
    (libc::SYS_msgsnd, "SysV IPC"),
    (libc::SYS_msgrcv, "SysV IPC"),
    (libc::SYS_msgctl, "SysV IPC"),
    (libc::SYS_mq_open, "POSIX mq"),
    (libc::SYS_mq_unlink, "POSIX mq"),
    (libc::SYS_mq_timedsend, "POSIX mq"),
    (libc::SYS_mq_timedreceive, "POSIX mq"),
    (libc::SYS_mq_notify, "POSIX mq"),
    (libc::SYS_mq_getsetattr, "POSIX mq"),
    (libc::SYS_poll, "events"),
    (libc::SYS_ppoll, "events"),
    (libc::SYS_select, "events"),
    (libc::SYS_pselect6, "events"),
    (libc::SYS_epoll_create, "events"),
    (libc::SYS_epoll_create1, "events"),
    (libc::SYS_epoll_ctl, "events"),
    (libc::SYS_epoll_wait, "events"),
    (libc::SYS_epoll_pwait, "events"),
    (libc::SYS_epoll_pwait2, "events"),
    (libc::SYS_eventfd, "events"),
    (libc::SYS_eventfd2, "events"),
    (libc::SYS_signalfd, "events"),
    (libc::SYS_signalfd4, "events"),
    (libc::SYS_timerfd_create, "timers"),
    (libc::SYS_timerfd_settime, "timers"),
    (libc::SYS_timerfd_gettime, "timers"),
    (libc::SYS_io_setup, "AIO"),
    (libc::SYS_io_destroy, "AIO"),
    (libc::SYS_io_submit, "AIO"),
    (libc::SYS_io_cancel, "AIO"),
    (libc::SYS_io_getevents, "AIO"),
    (nr::IO_PGETEVENTS, "AIO"),
    (libc::SYS_socket, "sockets; the network namespace is empty"),
    (libc::SYS_socketpair, "sockets"),
    (libc::SYS_connect, "sockets"),
    (libc::SYS_accept, "sockets"),
    (libc::SYS_accept4, "sockets"),
    (libc::SYS_bind, "sockets"),
    (libc::SYS_listen, "sockets"),
    (libc::SYS_sendto, "sockets"),
    (libc::SYS_recvfrom, "sockets"),
    (libc::SYS_sendmsg, "sockets"),
    (libc::SYS_recvmsg, "sockets"),
    (libc::SYS_sendmmsg, "sockets"),
    (libc::SYS_recvmmsg, "sockets"),
    (libc::SYS_shutdown, "sockets"),
    (libc::SYS_getsockname, "sockets"),
    (libc::SYS_getpeername, "sockets"),
    (libc::SYS_setsockopt, "sockets"),
    (libc::SYS_getsockopt, "sockets"),
    (libc::SYS_clone, "threads and processes; namespace flags denied"),
    (libc::SYS_fork, "processes"),
    (libc::SYS_vfork, "processes"),
    (libc::SYS_execve, "processes"),
    (libc::SYS_execveat, "processes"),
    (libc::SYS_exit, "processes"),
    (libc::SYS_exit_group, "processes"),
    (libc::SYS_wait4, "processes"),
    (libc::SYS_waitid, "processes"),
    (libc::SYS_kill, "signals; Landlock scopes them"),
    (libc::SYS_tkill, "signals"),
    (libc::SYS_tgkill, "signals"),
    (libc::SYS_pidfd_open, "processes"),
    (libc::SYS_pidfd_send_signal, "signals"),
    (libc::SYS_rt_sigaction, "signals"),
    (libc::SYS_rt_sigprocmask, "signals"),
    (libc::SYS_rt_sigreturn, "signals"),
    (libc::SYS_rt_sigpending, "signals"),
    (libc::SYS_rt_sigtimedwait, "signals"),
    (libc::SYS_rt_sigqueueinfo, "signals"),
    (libc::SYS_rt_tgsigqueueinfo, "signals"),
    (libc::SYS_rt_sigsuspend, "signals"),
    (libc::SYS_sigaltstack, "signals"),
    (libc::SYS_pause, "signals"),
    (libc::SYS_restart_syscall, "signals"),
    (libc::SYS_getpid, "identity"),
    (libc::SYS_getppid, "identity"),
    (libc::SYS_gettid, "identity"),
    (libc::SYS_getuid, "identity"),
    (libc::SYS_geteuid, "identity"),
    (libc::SYS_getgid, "identity"),
    (libc::SYS_getegid, "identity"),
    (libc::SYS_getresuid, "identity"),
    (libc::SYS_getresgid, "identity"),
    (libc::SYS_getgroups, "identity"),
    (libc::SYS_setuid, "identity; no capabilities, so only to ids held"),
    (libc::SYS_setgid, "identity"),
    (libc::SYS_setreuid, "identity"),
    (libc::SYS_setregid, "identity"),
    (libc::SYS_setresuid, "identity"),
    (libc::SYS_setresgid, "identity"),
    (libc::SYS_setfsuid, "identity"),
    (libc::SYS_setfsgid, "identity"),
    (libc::SYS_setgroups, "identity"),
    (libc::SYS_capget, "identity"),
    (libc::SYS_capset, "dropping capabilities further"),
    (libc::SYS_getpgid, "sessions"),
    (libc::SYS_setpgid, "sessions"),
    (libc::SYS_getpgrp, "sessions"),
    (libc::SYS_getsid, "sessions"),
    (libc::SYS_setsid, "sessions"),
    (libc::SYS_prctl, "process attributes"),
    (libc::SYS_arch_prctl, "TLS"),
    (libc::SYS_set_tid_address, "threads"),
    (libc::SYS_set_robust_list, "threads"),
    (libc::SYS_get_robust_list, "threads"),
    (libc::SYS_rseq, "threads"),
    (libc::SYS_futex, "threads"),
    (libc::SYS_futex_waitv, "threads"),
    (nr::FUTEX_WAKE, "threads"),
    (nr::FUTEX_WAIT, "threads"),
    (nr::FUTEX_REQUEUE, "threads"),
    (libc::SYS_set_thread_area, "threads"),
    (libc::SYS_get_thread_area, "threads"),
    (libc::SYS_sched_yield, "scheduling"),
    (libc::SYS_sched_getaffinity, "scheduling"),
    (libc::SYS_sched_setaffinity, "scheduling"),
    (libc::SYS_sched_getparam, "scheduling"),
    (libc::SYS_sched_setparam, "scheduling"),
    (libc::SYS_sched_getscheduler, "scheduling"),
    (libc::SYS_sched_setscheduler, "scheduling"),
    (libc::SYS_sched_get_priority_max, "scheduling"),
    (libc::SYS_sched_get_priority_min, "scheduling"),
    (libc::SYS_sched_rr_get_interval, "scheduling"),
    (libc::SYS_sched_getattr, "scheduling"),
    (libc::SYS_sched_setattr, "scheduling"),
    (libc::SYS_getpriority, "scheduling"),
    (libc::SYS_setpriority, "scheduling"),
    (libc::SYS_getcpu, "scheduling"),
    (libc::SYS_getrlimit, "limits"),
    (libc::SYS_setrlimit, "limits (lowering, or raising to the hard limit)"),
    (libc::SYS_prlimit64, "limits; other processes are outside the pid namespace"),
    (libc::SYS_getrusage, "accounting"),
    (libc::SYS_times, "accounting"),
    (libc::SYS_sysinfo, "accounting"),
    (libc::SYS_uname, "identity"),
    (libc::SYS_time, "clocks"),
    (libc::SYS_gettimeofday, "clocks"),
    (libc::SYS_clock_gettime, "clocks"),
    (libc::SYS_clock_getres, "clocks"),
    (libc::SYS_clock_nanosleep, "clocks"),
    (libc::SYS_nanosleep, "clocks"),
    (libc::SYS_alarm, "timers"),
    (libc::SYS_getitimer, "timers"),
    (libc::SYS_setitimer, "timers"),
    (libc::SYS_timer_create, "timers"),
    (libc::SYS_timer_settime, "timers"),
    (libc::SYS_timer_gettime, "timers"),
    (libc::SYS_timer_getoverrun, "timers"),
    (libc::SYS_timer_delete, "timers"),
    (libc::SYS_getrandom, "randomness"),
    (libc::SYS_seccomp, "adding stricter filters"),
    (libc::SYS_landlock_create_ruleset, "restricting itself further"),
    (libc::SYS_landlock_add_rule, "restricting itself further"),
    (libc::SYS_landlock_restrict_self, "restricting itself further"),
    (libc::SYS_unshare, "CLONE_FS/CLONE_FILES; namespace flags denied"),
    (libc::SYS_personality, "querying; changes denied"),
];

/// Syscalls refused with `EPERM`, whatever their arguments.
#[cfg(target_arch = "x86_64")]
pub const DENIED: &[(i64, &str)] = &[
    (libc::SYS_init_module, "kernel modules"),
    (libc::SYS_finit_module, "kernel modules"),
    (libc::SYS_delete_module, "kernel modules"),
    (nr::CREATE_MODULE, "kernel modules"),
    (nr::QUERY_MODULE, "kernel modules"),
    (nr::GET_KERNEL_SYMS, "kernel modules"),
    (libc::SYS_kexec_load, "kexec"),
    (libc::SYS_kexec_file_load, "kexec"),
    (libc::SYS_reboot, "reboot"),
    (libc::SYS_bpf, "eBPF"),
    (libc::SYS_perf_event_open, "perf: kernel profiling, side channels"),
    (libc::SYS_io_uring_setup, "io_uring does I/O without the filtered syscalls"),
    (libc::SYS_io_uring_enter, "io_uring"),
    (libc::SYS_io_uring_register, "io_uring"),
    (libc::SYS_userfaultfd, "userfaultfd: kernel race amplifier"),
    (libc::SYS_add_key, "keyrings are not namespaced"),
    (libc::SYS_request_key, "keyrings"),
    (libc::SYS_keyctl, "keyrings"),
    (libc::SYS_mount, "mount family"),
    (libc::SYS_umount2, "mount family"),
    (libc::SYS_pivot_root, "mount family"),
    (libc::SYS_chroot, "mount family"),
    (libc::SYS_open_tree, "new mount API"),
    (libc::SYS_move_mount, "new mount API"),
    (libc::SYS_fsopen, "new mount API"),
    (libc::SYS_fsconfig, "new mount API"),
    (libc::SYS_fsmount, "new mount API"),
    (libc::SYS_fspick, "new mount API"),
    (libc::SYS_mount_setattr, "new mount API"),
    (libc::SYS_setns, "entering namespaces"),
    (libc::SYS_open_by_handle_at, "bypasses path checks (the shocker escape)"),
    (libc::SYS_swapon, "swap"),
    (libc::SYS_swapoff, "swap"),
    (libc::SYS_acct, "process accounting"),
    (libc::SYS_quotactl, "quotas"),
    (libc::SYS_quotactl_fd, "quotas"),
    (libc::SYS_syslog, "kernel log"),
    (libc::SYS_settimeofday, "clock setting"),
    (libc::SYS_clock_settime, "clock setting"),
    (libc::SYS_clock_adjtime, "clock setting"),
    (libc::SYS_adjtimex, "clock setting"),
    (libc::SYS_sethostname, "host name"),
    (libc::SYS_setdomainname, "host name"),
    (libc::SYS_ptrace, "tracing (other processes are out of reach anyway)"),
    (libc::SYS_process_vm_readv, "reading other processes"),
    (libc::SYS_process_vm_writev, "writing other processes"),
    (libc::SYS_kcmp, "comparing other processes' resources"),
    (libc::SYS_pidfd_getfd, "stealing descriptors"),
    (libc::SYS_process_madvise, "other processes' memory"),
    (libc::SYS_process_mrelease, "other processes' memory"),
    (libc::SYS_iopl, "port I/O"),
    (libc::SYS_ioperm, "port I/O"),
    (libc::SYS_vhangup, "terminals"),
    (libc::SYS_lookup_dcookie, "profiling"),
    (libc::SYS_uselib, "obsolete"),
    (libc::SYS__sysctl, "obsolete"),
    (libc::SYS_ustat, "obsolete"),
    (libc::SYS_sysfs, "obsolete"),
    (libc::SYS_nfsservctl, "obsolete"),
    (libc::SYS_move_pages, "other processes' memory"),
    (libc::SYS_migrate_pages, "other processes' memory"),
    (libc::SYS_fanotify_init, "system-wide file watching"),
    (libc::SYS_fanotify_mark, "system-wide file watching"),
    (libc::SYS_remap_file_pages, "deprecated, racy"),
    (libc::SYS_modify_ldt, "16-bit segments"),
    (libc::SYS_set_mempolicy_home_node, "NUMA of other processes"),
];

/// Syscalls answered with `EOPNOTSUPP`, as a filesystem without extended
/// attributes answers (see the module docs: the attribute's name cannot be
/// read by a filter, and file capabilities and ACLs are among them).
#[cfg(target_arch = "x86_64")]
pub const UNSUPPORTED: &[(i64, &str)] = &[
    (libc::SYS_setxattr, "xattrs: file capabilities, ACLs"),
    (libc::SYS_lsetxattr, "xattrs"),
    (libc::SYS_fsetxattr, "xattrs"),
    (nr::SETXATTRAT, "xattrs (6.13)"),
    (libc::SYS_removexattr, "xattrs"),
    (libc::SYS_lremovexattr, "xattrs"),
    (libc::SYS_fremovexattr, "xattrs"),
    (nr::REMOVEXATTRAT, "xattrs (6.13)"),
];

/// Syscalls that take a file mode: (syscall, mode argument, flags argument
/// when the mode only counts with `O_CREAT` or `O_TMPFILE` there). The mode
/// may not carry `S_ISUID` or `S_ISGID`.
#[cfg(target_arch = "x86_64")]
pub const SETID_MODE: &[(i64, u8, Option<u8>)] = &[
    (libc::SYS_chmod, 1, None),
    (libc::SYS_fchmod, 1, None),
    (libc::SYS_fchmodat, 2, None),
    (libc::SYS_fchmodat2, 2, None),
    (libc::SYS_creat, 1, None),
    (libc::SYS_open, 2, Some(1)),
    (libc::SYS_openat, 3, Some(2)),
    (libc::SYS_mkdir, 1, None),
    (libc::SYS_mkdirat, 2, None),
    (libc::SYS_mknod, 1, None),
    (libc::SYS_mknodat, 2, None),
];

/// `O_CREAT`, and the bit of `O_TMPFILE` that `O_DIRECTORY` does not have.
const CREATING_FLAGS: [u32; 2] = [libc::O_CREAT as u32, (libc::O_TMPFILE & !libc::O_DIRECTORY) as u32];

/// `memfd_create`'s flag that makes the memfd non-executable for good.
const MFD_NOEXEC_SEAL: u32 = 0x8;

/// Namespace flags `clone` and `unshare` may not carry.
const NAMESPACE_FLAGS: [u32; 8] = [
    libc::CLONE_NEWNS as u32,
    libc::CLONE_NEWUTS as u32,
    libc::CLONE_NEWIPC as u32,
    libc::CLONE_NEWUSER as u32,
    libc::CLONE_NEWPID as u32,
    libc::CLONE_NEWNET as u32,
    libc::CLONE_NEWCGROUP as u32,
    0x80, /* CLONE_NEWTIME */
];

/// `personality` values that only query or select Linux behaviour.
const PERSONALITY_OK: [u32; 5] = [0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541C;

/// What the filter answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Run the syscall.
    Allow,
    /// Stop the calling thread and ask the supervisor
    /// (`SECCOMP_RET_USER_NOTIF`).
    Notify,
    /// Fail it with this errno (the kernel keeps its low 16 bits).
    Errno(u32),
    /// Kill the process (foreign architecture).
    Kill,
}

impl Verdict {
    fn ret(self) -> u32 {
        match self {
            Verdict::Allow => libc::SECCOMP_RET_ALLOW,
            Verdict::Notify => libc::SECCOMP_RET_USER_NOTIF,
            Verdict::Errno(e) => libc::SECCOMP_RET_ERRNO | (e & libc::SECCOMP_RET_DATA),
            Verdict::Kill => libc::SECCOMP_RET_KILL_PROCESS,
        }
    }
}

/// A test on the low 32 bits of one argument (the kernel truncates the
/// `int`/`unsigned int` arguments cordon tests, so the high half is ignored
/// on purpose: `0xffffffff00005412` is `TIOCSTI` to the kernel and here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgTest {
    /// `(arg & mask) == value`.
    Masked {
        /// Argument index.
        arg: u8,
        /// Mask.
        mask: u32,
        /// Expected value.
        value: u32,
    },
    /// `arg == value`.
    Eq {
        /// Argument index.
        arg: u8,
        /// Value.
        value: u32,
    },
    /// `arg != value`.
    Ne {
        /// Argument index.
        arg: u8,
        /// Value.
        value: u32,
    },
    /// `(arg & bits) != 0`: any of the bits is set.
    AnyOf {
        /// Argument index.
        arg: u8,
        /// The bits.
        bits: u32,
    },
}

/// A syscall's rule: the first argument rule whose tests all hold decides,
/// else the default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallRule {
    /// (tests, verdict) pairs, in order.
    pub when: Vec<(Vec<ArgTest>, Verdict)>,
    /// Verdict when no argument rule matches.
    pub otherwise: Verdict,
}

/// The whole rule set: a rule per listed syscall, a verdict for the rest.
#[derive(Clone, Debug)]
pub struct RuleSet {
    /// (syscall number, its rule), sorted by number, each number once.
    pub rules: Vec<(u32, SyscallRule)>,
    /// For syscalls not listed.
    pub default: Verdict,
}

const EPERM: Verdict = Verdict::Errno(libc::EPERM as u32);
const ENOSYS: Verdict = Verdict::Errno(libc::ENOSYS as u32);
const EACCES: Verdict = Verdict::Errno(libc::EACCES as u32);
const EOPNOTSUPP: Verdict = Verdict::Errno(libc::EOPNOTSUPP as u32);
const EAFNOSUPPORT: Verdict = Verdict::Errno(libc::EAFNOSUPPORT as u32);
/// `SO_BINDTOIFINDEX` (Linux 5.0), which the `libc` crate does not name.
const SO_BINDTOIFINDEX: i32 = 62;

fn plain(v: Verdict) -> SyscallRule {
    SyscallRule { when: vec![], otherwise: v }
}

/// `fcntl` commands refused (`EPERM`) in every plan: each turns a read of a
/// granted file or folder into a hold on the host or a report from it.
/// `F_SETLEASE` takes a lease on a file the sandbox opened (a read grant
/// is enough, on a file its uid owns): every host open-for-write of the
/// file then blocks until the sandbox lets go, up to
/// `/proc/sys/fs/lease-break-time` (45 s) per open, and the sandbox is
/// signalled for each (a timing oracle on host writes). `F_NOTIFY`
/// (dnotify) reports changes the host makes in a granted folder, which
/// the sandbox is not to watch. `F_GETLEASE` and every other command stay.
pub const REFUSED_FCNTL: &[(u32, &str)] = &[
    (libc::F_SETLEASE as u32, "F_SETLEASE: holds host writers of a granted file up to 45 s each"),
    (libc::F_NOTIFY as u32, "F_NOTIFY: dnotify, reports host changes in a granted folder"),
];

fn fcntl_rule() -> SyscallRule {
    SyscallRule {
        when: REFUSED_FCNTL.iter().map(|(cmd, _)| (vec![ArgTest::Eq { arg: 1, value: *cmd }], EPERM)).collect(),
        otherwise: Verdict::Allow,
    }
}

/// Whether the sandbox may create `AF_UNIX` sockets with `socket()`.
///
/// Landlock restricts connecting to named unix sockets only from ABI 9
/// (`RESOLVE_UNIX`). Below that, a process-mode sandbox could reach a host
/// service by its socket path (`/run/docker.sock`, `/run/systemd/private`),
/// since path lookup is not checked. Process mode therefore refuses
/// `socket(AF_UNIX, ...)`, and `socketpair(AF_UNIX, ...)` of any type but
/// `SOCK_STREAM` and `SOCK_SEQPACKET` (with `SOCK_NONBLOCK`/`SOCK_CLOEXEC`):
/// a datagram socket sends to any path with `sendto()`/`sendmsg()`, no
/// `connect()` needed, and once its peer is gone it can be bound and
/// `connect()`ed like a new one. A connected stream or seqpacket pair cannot
/// address anyone else (`EISCONN`, or the address is ignored), so pipes
/// between a program's own processes keep working. Container mode has no
/// host socket in view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnixSockets {
    /// `socket(AF_UNIX)` allowed.
    Allow,
    /// Only `socketpair`, of `SOCK_STREAM` or `SOCK_SEQPACKET`.
    SocketpairOnly,
}

/// Whether the sandbox may create inotify instances.
///
/// A watch is added by path, which a filter cannot read, and Landlock does
/// not check watches: in process mode, where the host's folders stay in view,
/// a watch on a folder outside the grants would report the names of files
/// created, opened and changed there by anyone. Process mode therefore
/// answers `inotify_init`/`inotify_init1` with `ENOSYS`, as a kernel without
/// inotify does; tools fall back to polling (`tail -f`) or report that
/// watching is unavailable. Container mode shows only the granted paths, so
/// watches stay allowed there. fanotify is denied in both modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileWatches {
    /// inotify allowed.
    Allow,
    /// `inotify_init`/`inotify_init1` answer `ENOSYS`.
    Refuse,
}

/// Whether `memfd_create` must make non-executable memfds.
///
/// With an exec allow-list, a memfd is a file that no Landlock rule covers:
/// `memfd_create` + `execveat(AT_EMPTY_PATH)` (or `fexecve`) would start any
/// program. Where cordon runs as root, init sets `vm.memfd_noexec = 2` in
/// the run's own pid namespace (a per-namespace sysctl since 6.3), so every
/// memfd is sealed non-executable and `MFD_EXEC` is refused; elsewhere the
/// filter refuses (`EACCES`) a `memfd_create` without `MFD_NOEXEC_SEAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemfdExec {
    /// Any memfd.
    Allow,
    /// `memfd_create` without `MFD_NOEXEC_SEAL` answers `EACCES`.
    RequireNoexecSeal,
}

/// What happens to `connect()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectRule {
    /// The kernel connects, in the sandbox's own network namespace.
    Allow,
    /// The supervisor decides and performs every connect and bind
    /// (transparent egress); `MSG_FASTOPEN` and interface binding are
    /// refused.
    Notify,
}

/// The seccomp choices a plan makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SeccompPlan {
    /// The opt-in W^X rule.
    pub wx: WriteXorExecute,
    /// Named unix sockets.
    pub unix: UnixSockets,
    /// inotify.
    pub watches: FileWatches,
    /// Executable memfds.
    pub memfd: MemfdExec,
    /// `connect()`.
    pub connect: ConnectRule,
}

/// cordon's rule set.
pub fn rules(plan: SeccompPlan) -> RuleSet {
    let wx = plan.wx;
    let mut rules = Table(Vec::with_capacity(512));
    for (n, _) in ALLOWED {
        rules.insert(*n, plain(Verdict::Allow));
    }
    for (n, _) in DENIED {
        rules.insert(*n, plain(EPERM));
    }
    for (n, _) in UNSUPPORTED {
        rules.insert(*n, plain(EOPNOTSUPP));
    }
    // A mode with S_ISUID or S_ISGID, where the mode counts (with O_CREAT
    // or O_TMPFILE, for the calls that take flags): one test per argument.
    let setid: u32 = libc::S_ISUID | libc::S_ISGID;
    let creating = CREATING_FLAGS[0] | CREATING_FLAGS[1];
    for (n, mode, flags) in SETID_MODE {
        let mode = ArgTest::AnyOf { arg: *mode, bits: setid };
        let tests = match flags {
            None => vec![mode],
            Some(f) => vec![ArgTest::AnyOf { arg: *f, bits: creating }, mode],
        };
        rules.insert(*n, SyscallRule { when: vec![(tests, EPERM)], otherwise: Verdict::Allow });
    }
    if plan.watches == FileWatches::Refuse {
        for n in [libc::SYS_inotify_init, libc::SYS_inotify_init1] {
            rules.insert(n, plain(ENOSYS));
        }
    }
    if plan.memfd == MemfdExec::RequireNoexecSeal {
        rules.insert(
            libc::SYS_memfd_create,
            SyscallRule {
                when: vec![(vec![ArgTest::Masked { arg: 1, mask: MFD_NOEXEC_SEAL, value: 0 }], EACCES)],
                otherwise: Verdict::Allow,
            },
        );
    }
    rules.insert(libc::SYS_fcntl, fcntl_rule());
    let ns = vec![(vec![ArgTest::AnyOf { arg: 0, bits: NAMESPACE_FLAGS.iter().fold(0, |all, f| all | f) }], EPERM)];
    rules.insert(libc::SYS_clone, SyscallRule { when: ns.clone(), otherwise: Verdict::Allow });
    rules.insert(libc::SYS_unshare, SyscallRule { when: ns, otherwise: Verdict::Allow });
    let refused_ioctls = [TIOCSTI, TIOCLINUX];
    rules.insert(
        libc::SYS_ioctl,
        SyscallRule {
            when: refused_ioctls.iter().map(|c| (vec![ArgTest::Eq { arg: 1, value: *c }], EPERM)).collect(),
            otherwise: Verdict::Allow,
        },
    );
    rules.insert(
        libc::SYS_personality,
        SyscallRule {
            when: vec![(PERSONALITY_OK.iter().map(|v| ArgTest::Ne { arg: 0, value: *v }).collect(), EPERM)],
            otherwise: Verdict::Allow,
        },
    );
    let unix = match plan.unix {
        UnixSockets::Allow => Verdict::Allow,
        UnixSockets::SocketpairOnly => EPERM,
    };
    let family = |f: i32, v: Verdict| (vec![ArgTest::Eq { arg: 0, value: f as u32 }], v);
    rules.insert(
        libc::SYS_socket,
        SyscallRule {
            when: vec![
                family(libc::AF_UNIX, unix),
                family(libc::AF_INET, Verdict::Allow),
                family(libc::AF_INET6, Verdict::Allow),
                family(libc::AF_NETLINK, Verdict::Allow),
            ],
            otherwise: EAFNOSUPPORT,
        },
    );
    let pairs = match plan.unix {
        UnixSockets::Allow => vec![family(libc::AF_UNIX, Verdict::Allow)],
        UnixSockets::SocketpairOnly => {
            // The type without its two flags must be exactly one of the two
            // connection-oriented types; any other bit set (or DGRAM) falls
            // through to EPERM.
            let kind = !((libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u32);
            let unix = ArgTest::Eq { arg: 0, value: libc::AF_UNIX as u32 };
            vec![
                (vec![unix, ArgTest::Masked { arg: 1, mask: kind, value: libc::SOCK_STREAM as u32 }], Verdict::Allow),
                (
                    vec![unix, ArgTest::Masked { arg: 1, mask: kind, value: libc::SOCK_SEQPACKET as u32 }],
                    Verdict::Allow,
                ),
                family(libc::AF_UNIX, EPERM),
            ]
        }
    };
    rules.insert(libc::SYS_socketpair, SyscallRule { when: pairs, otherwise: EAFNOSUPPORT });
    if plan.connect == ConnectRule::Notify {
        rules.insert(libc::SYS_connect, plain(Verdict::Notify));
        rules.insert(libc::SYS_bind, plain(Verdict::Notify));
        let fastopen = libc::MSG_FASTOPEN as u32;
        for (n, flags_arg) in [(libc::SYS_sendto, 3), (libc::SYS_sendmsg, 2), (libc::SYS_sendmmsg, 3)] {
            rules.insert(
                n,
                SyscallRule {
                    when: vec![(vec![ArgTest::Masked { arg: flags_arg, mask: fastopen, value: fastopen }], EOPNOTSUPP)],
                    otherwise: Verdict::Allow,
                },
            );
        }
        let sockopt = |name: i32| {
            (
                vec![
                    ArgTest::Eq { arg: 1, value: libc::SOL_SOCKET as u32 },
                    ArgTest::Eq { arg: 2, value: name as u32 },
                ],
                EPERM,
            )
        };
        rules.insert(
            libc::SYS_setsockopt,
            SyscallRule {
                when: vec![sockopt(libc::SO_BINDTODEVICE), sockopt(SO_BINDTOIFINDEX)],
                otherwise: Verdict::Allow,
            },
        );
    }
    if wx == WriteXorExecute::Deny {
        let bits = (libc::PROT_WRITE | libc::PROT_EXEC) as u32;
        for n in [libc::SYS_mmap, libc::SYS_mprotect, libc::SYS_pkey_mprotect] {
            rules.insert(
                n,
                SyscallRule {
                    when: vec![(vec![ArgTest::Masked { arg: 2, mask: bits, value: bits }], EPERM)],
                    otherwise: Verdict::Allow,
                },
            );
        }
    }
    RuleSet { rules: rules.in_order(), default: ENOSYS }
}

/// Rules by syscall number while [`rules`] sets them (a later one replaces
/// an earlier one): a table indexed by number, cheaper to fill and to read
/// in order than a map.
struct Table(Vec<Option<SyscallRule>>);

impl Table {
    fn insert(&mut self, n: i64, rule: SyscallRule) {
        let i = usize::try_from(n).expect("syscall numbers are small");
        if i >= self.0.len() {
            self.0.resize_with(i + 1, || None);
        }
        self.0[i] = Some(rule);
    }

    fn in_order(self) -> Vec<(u32, SyscallRule)> {
        let nr = |i: usize| u32::try_from(i).expect("syscall numbers are small");
        self.0.into_iter().enumerate().filter_map(|(i, rule)| Some((nr(i), rule?))).collect()
    }
}

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_JA: u16 = 0x05;
const BPF_RET_K: u16 = 0x06;
const BPF_AND_K: u16 = 0x54;
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(not(target_arch = "x86_64"))]
const AUDIT_ARCH: u32 = 0;

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// A run of syscall numbers with one rule, and that rule's argument checks
/// (none for a rule without argument tests: the search jumps straight to
/// its verdict's `ret`).
struct Segment<'a> {
    start: u32,
    rule: &'a SyscallRule,
    checks: Vec<Ins>,
}

/// Where a jump goes while the program is laid out: an instruction (its
/// index in the code being laid out), or the `ret` of a verdict, one per
/// verdict, after the code of the region that jumps to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum To {
    At(usize),
    Ret(Verdict),
}

/// An instruction whose jump targets are not offsets yet.
#[derive(Clone, Copy, Debug)]
enum Ins {
    Stmt(SockFilter),
    Jump { code: u16, k: u32, jt: To, jf: To },
}

impl Ins {
    /// The same instruction `base` places further on.
    fn shifted(self, base: usize) -> Ins {
        let to = |t: To| match t {
            To::At(i) => To::At(i + base),
            ret => ret,
        };
        match self {
            Ins::Jump { code, k, jt, jf } => Ins::Jump { code, k, jt: to(jt), jf: to(jf) },
            stmt => stmt,
        }
    }
}

/// Compiles a rule set: architecture check (anything foreign is killed,
/// which covers the i386 entry points), then a binary search over runs of
/// syscall numbers sharing a rule. x32 numbers (`__X32_SYSCALL_BIT` set)
/// are above every listed number, in the last run, which has the default
/// verdict; an explicit x32 check is made only when a listed number is that
/// high.
///
/// The program is kept short, since the kernel checks and JITs every
/// instruction when the command loads it, and runs it for every syscall
/// whose verdict depends on arguments: a verdict is one `ret` shared by
/// every jump to it within reach (a subtree of at most 256 instructions),
/// so the search's last comparisons jump straight to it; and an argument
/// check loads its argument only when the accumulator does not hold it
/// already, and tests a single bit or any of several with `jset`.
pub fn compile(set: &RuleSet) -> Result<BpfProgram, SeccompError> {
    if AUDIT_ARCH == 0 {
        return Err(SeccompError::Architecture(std::env::consts::ARCH));
    }
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, Verdict::Kill.ret()),
        stmt(BPF_LD_W_ABS, OFF_NR),
    ];
    assert!(set.rules.windows(2).all(|w| w[0].0 < w[1].0), "a rule set's syscalls are sorted, each once");
    if set.rules.last().is_some_and(|(nr, _)| *nr >= X32_SYSCALL_BIT) {
        prog.extend([jump(BPF_JSET_K, X32_SYSCALL_BIT, 0, 1), stmt(BPF_RET_K, set.default.ret())]);
    }
    // Runs cover 0..: listed syscalls, and the gaps between them; neighbours
    // with the same rule are one run.
    let default = plain(set.default);
    let mut segs: Vec<Segment<'_>> = Vec::with_capacity(2 * set.rules.len() + 1);
    fn push<'a>(start: u32, rule: &'a SyscallRule, segs: &mut Vec<Segment<'a>>) {
        if segs.last().is_none_or(|last| *last.rule != *rule) {
            segs.push(Segment { start, rule, checks: vec![] });
        }
    }
    let mut next = 0u32;
    for (nr, rule) in &set.rules {
        if *nr > next {
            push(next, &default, &mut segs);
        }
        push(*nr, rule, &mut segs);
        next = nr + 1;
    }
    push(next, &default, &mut segs);
    for seg in &mut segs {
        seg.checks = checks(seg.rule);
    }
    prog.extend(tree(&segs));
    if prog.len() > 4096 {
        return Err(SeccompError::TooLong(prog.len()));
    }
    Ok(prog)
}

/// The search over `segs` (the accumulator holds the syscall number): one
/// region with its own `ret`s when every jump in it reaches, else a node
/// over two such searches. A node is one `jge` over the left half when that
/// half is short enough for a conditional jump's 8-bit offset, else a `jge`
/// and a `ja` (near the root of a long search only).
fn tree(segs: &[Segment<'_>]) -> Vec<SockFilter> {
    if let Some(code) = region(segs) {
        return code;
    }
    assert!(segs.len() > 1, "one syscall's argument checks are longer than a conditional jump reaches");
    let mid = segs.len() / 2;
    let left = tree(&segs[..mid]);
    let right = tree(&segs[mid..]);
    let mut out = match u8::try_from(left.len()) {
        // jge start(mid) -> over the left half, into the right one.
        Ok(skip) => vec![jump(BPF_JGE_K, segs[mid].start, skip, 0)],
        // jge start(mid) -> the `ja` to the right half; else skip it into the left.
        Err(_) => {
            vec![jump(BPF_JGE_K, segs[mid].start, 0, 1), stmt(BPF_JA, u32::try_from(left.len()).unwrap_or(u32::MAX))]
        }
    };
    out.extend(left);
    out.extend(right);
    out
}

/// The search over `segs` followed by one `ret` per verdict it jumps to, or
/// `None` when a jump would have to reach more than 255 instructions on.
fn region(segs: &[Segment<'_>]) -> Option<Vec<SockFilter>> {
    let mut code: Vec<Ins> = Vec::with_capacity(2 * segs.len());
    if let To::Ret(v) = lay(segs, &mut code) {
        // A single run without argument checks.
        return Some(vec![stmt(BPF_RET_K, v.ret())]);
    }
    let mut rets: Vec<Verdict> = vec![];
    let mut out = Vec::with_capacity(code.len() + 4);
    for (i, ins) in code.iter().enumerate() {
        out.push(match *ins {
            Ins::Stmt(s) => s,
            Ins::Jump { code: op, k, jt, jf } => {
                let mut offset = |to: To| {
                    let at = match to {
                        To::At(at) => at,
                        To::Ret(v) => {
                            code.len()
                                + rets.iter().position(|r| *r == v).unwrap_or_else(|| {
                                    rets.push(v);
                                    rets.len() - 1
                                })
                        }
                    };
                    u8::try_from(at.checked_sub(i + 1).expect("jumps go forward")).ok()
                };
                jump(op, k, offset(jt)?, offset(jf)?)
            }
        });
    }
    out.extend(rets.iter().map(|v| stmt(BPF_RET_K, v.ret())));
    Some(out)
}

/// Lays out the search over `segs` at the end of `code`; returns where it
/// starts (a run without argument checks lays out nothing: its verdict).
fn lay(segs: &[Segment<'_>], code: &mut Vec<Ins>) -> To {
    if let [seg] = segs {
        if seg.checks.is_empty() {
            return To::Ret(seg.rule.otherwise);
        }
        let base = code.len();
        code.extend(seg.checks.iter().map(|i| i.shifted(base)));
        return To::At(base);
    }
    let mid = segs.len() / 2;
    let node = code.len();
    code.push(Ins::Stmt(stmt(BPF_JA, 0)));
    // The left half follows the node; the right one comes after it.
    let jf = lay(&segs[..mid], code);
    let jt = lay(&segs[mid..], code);
    code[node] = Ins::Jump { code: BPF_JGE_K, k: segs[mid].start, jt, jf };
    To::At(node)
}

/// What the accumulator holds within a syscall's argument checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Acc {
    /// Not an argument (the syscall number, on entry).
    Other,
    /// An argument's low 32 bits.
    Arg(u8),
    /// An argument's low 32 bits and a mask.
    Masked(u8, u32),
}

/// A syscall's argument checks: its rules in order, the first whose tests
/// all hold jumps to its verdict's `ret`, and a `ret` of the default after
/// them; nothing for a rule without argument tests.
fn checks(rule: &SyscallRule) -> Vec<Ins> {
    fn load(out: &mut Vec<Ins>, acc: &mut Acc, arg: u8) {
        if *acc != Acc::Arg(arg) {
            out.push(Ins::Stmt(stmt(BPF_LD_W_ABS, OFF_ARGS + 8 * u32::from(arg))));
            *acc = Acc::Arg(arg);
        }
    }
    if rule.when.is_empty() {
        return vec![];
    }
    /// The failing branch of a test, until the next rule's place is known.
    const FAIL: To = To::At(usize::MAX);
    let mut out = vec![];
    let mut acc = Acc::Other;
    for (tests, verdict) in &rule.when {
        if tests.is_empty() {
            // Always holds: the rules after it never decide.
            out.push(Ins::Stmt(stmt(BPF_RET_K, verdict.ret())));
            return out;
        }
        let mut fails = vec![];
        // What the accumulator holds at the next rule: the same at every
        // failing jump, or unknown.
        let mut at_next: Option<Acc> = None;
        for (i, t) in tests.iter().enumerate() {
            // (jump, its operand, whether taking it means the test holds)
            let (op, k, holds_if_taken) = match *t {
                ArgTest::Eq { arg, value } => {
                    load(&mut out, &mut acc, arg);
                    (BPF_JEQ_K, value, true)
                }
                ArgTest::Ne { arg, value } => {
                    load(&mut out, &mut acc, arg);
                    (BPF_JEQ_K, value, false)
                }
                ArgTest::AnyOf { arg, bits } => {
                    load(&mut out, &mut acc, arg);
                    (BPF_JSET_K, bits, true)
                }
                ArgTest::Masked { arg, mask, value: 0 } => {
                    load(&mut out, &mut acc, arg);
                    (BPF_JSET_K, mask, false)
                }
                ArgTest::Masked { arg, mask, value } if value == mask && mask.is_power_of_two() => {
                    load(&mut out, &mut acc, arg);
                    (BPF_JSET_K, mask, true)
                }
                ArgTest::Masked { arg, mask, value } => {
                    if acc != Acc::Masked(arg, mask) {
                        load(&mut out, &mut acc, arg);
                        out.push(Ins::Stmt(stmt(BPF_AND_K, mask)));
                        acc = Acc::Masked(arg, mask);
                    }
                    (BPF_JEQ_K, value, true)
                }
            };
            let holds = if i + 1 == tests.len() { To::Ret(*verdict) } else { To::At(out.len() + 1) };
            let (jt, jf) = if holds_if_taken { (holds, FAIL) } else { (FAIL, holds) };
            fails.push(out.len());
            out.push(Ins::Jump { code: op, k, jt, jf });
            at_next = Some(match at_next {
                Some(a) if a != acc => Acc::Other,
                _ => acc,
            });
        }
        let next = To::At(out.len());
        for j in fails {
            if let Ins::Jump { jt, jf, .. } = &mut out[j] {
                for to in [jt, jf] {
                    if *to == FAIL {
                        *to = next;
                    }
                }
            }
        }
        acc = at_next.unwrap_or(Acc::Other);
    }
    out.push(Ins::Stmt(stmt(BPF_RET_K, rule.otherwise.ret())));
    out
}

/// Builds cordon's filter for `plan`. The program is a function of the
/// plan alone (and the architecture, fixed at build time), so each plan's
/// is compiled once per process and kept (there are 64 plans at most).
pub fn build_filter(plan: SeccompPlan) -> Result<BpfProgram, SeccompError> {
    static BUILT: std::sync::Mutex<Vec<(SeccompPlan, BpfProgram)>> = std::sync::Mutex::new(Vec::new());
    let built = |b: &[(SeccompPlan, BpfProgram)]| b.iter().find(|(p, _)| *p == plan).map(|(_, prog)| prog.clone());
    if let Some(prog) = built(&BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner)) {
        return Ok(prog);
    }
    let prog = compile(&rules(plan))?;
    let mut b = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if built(&b).is_none() {
        b.push((plan, prog.clone()));
    }
    Ok(prog)
}

/// Syscalls the connect helper's loop makes (see `sys::helper`).
#[cfg(target_arch = "x86_64")]
const HELPER_ALLOWED: &[(i64, &str)] = &[
    (libc::SYS_recvmsg, "a request and its descriptors"),
    (libc::SYS_sendto, "the reply (send)"),
    (libc::SYS_connect, "the one thing it is for"),
    (libc::SYS_getsockopt, "the type and the listener's credentials of a unix connect"),
    (libc::SYS_shutdown, "cutting a unix connect that reached a listener outside the sandbox"),
    (libc::SYS_bind, "the other: every bind of the sandbox"),
    (libc::SYS_umask, "the caller's mask, for the file of a unix socket it binds"),
    (libc::SYS_fchdir, "the caller's working directory, for relative unix socket paths"),
    (libc::SYS_close, "the descriptors of a served request"),
    (libc::SYS_exit, "leaving"),
    (libc::SYS_exit_group, "leaving"),
    (libc::SYS_rt_sigreturn, "signal return (none is expected: all are blocked)"),
    (libc::SYS_restart_syscall, "restarting an interrupted call"),
];

/// The connect helper's filter: its loop's syscalls, and death for any
/// other. The helper connects and binds in the sandbox's network
/// namespace; nothing else is its business.
pub fn helper_filter() -> Result<BpfProgram, SeccompError> {
    // A constant program: compiled once per process.
    static BUILT: std::sync::OnceLock<BpfProgram> = std::sync::OnceLock::new();
    if let Some(prog) = BUILT.get() {
        return Ok(prog.clone());
    }
    let nr = |n: i64| u32::try_from(n).expect("syscall numbers are small");
    let mut rules: Vec<(u32, SyscallRule)> =
        HELPER_ALLOWED.iter().map(|(n, _)| (nr(*n), plain(Verdict::Allow))).collect();
    rules.sort_unstable_by_key(|(n, _)| *n);
    let prog = compile(&RuleSet { rules, default: Verdict::Kill })?;
    Ok(BUILT.get_or_init(|| prog).clone())
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every one of the 64 plans gets its own program from the kept ones:
    /// asked for in one order and again in another, each equals a fresh
    /// compile of its own rules, and the programs of two plans that differ
    /// are not the same (so a kept program found under the wrong plan would
    /// show). The connect helper's kept program equals a fresh compile too.
    #[test]
    fn kept_programs_are_each_plans_own() {
        let plans = all_plans();
        let fresh: Vec<BpfProgram> = plans.iter().map(|p| compile(&rules(*p)).unwrap()).collect();
        for round in [plans.clone(), plans.iter().rev().copied().collect()] {
            for p in round {
                let i = plans.iter().position(|q| *q == p).unwrap();
                assert_eq!(build_filter(p).unwrap(), fresh[i], "{p:?}");
            }
        }
        let distinct: std::collections::HashSet<Vec<(u16, u8, u8, u32)>> =
            fresh.iter().map(|prog| prog.iter().map(|f| (f.code, f.jt, f.jf, f.k)).collect()).collect();
        assert_eq!(distinct.len(), plans.len(), "two plans compile to the same program");
        let nr = |n: i64| u32::try_from(n).unwrap();
        let mut rules: Vec<(u32, SyscallRule)> =
            HELPER_ALLOWED.iter().map(|(n, _)| (nr(*n), plain(Verdict::Allow))).collect();
        rules.sort_unstable_by_key(|(n, _)| *n);
        let helper = compile(&RuleSet { rules, default: Verdict::Kill }).unwrap();
        assert_eq!((helper_filter().unwrap(), helper_filter().unwrap()), (helper.clone(), helper));
    }

    fn all_plans() -> Vec<SeccompPlan> {
        let mut plans = vec![];
        for wx in [WriteXorExecute::Allow, WriteXorExecute::Deny] {
            for unix in [UnixSockets::Allow, UnixSockets::SocketpairOnly] {
                for watches in [FileWatches::Allow, FileWatches::Refuse] {
                    for memfd in [MemfdExec::Allow, MemfdExec::RequireNoexecSeal] {
                        for connect in [ConnectRule::Allow, ConnectRule::Notify] {
                            plans.push(SeccompPlan { wx, unix, watches, memfd, connect });
                        }
                    }
                }
            }
        }
        plans
    }

    /// Values of one argument that sit on and around the edges of a test of
    /// it (`mask` and `value`, each bit of the mask flipped, all and none),
    /// with the high half clear and set (the filter reads the low half).
    fn edges(mask: u32, value: u32, into: &mut std::collections::BTreeSet<u64>) {
        let mut low =
            vec![0, !0, value, mask, !mask, value | !mask, !value, value.wrapping_add(1), value.wrapping_sub(1)];
        for bit in (0..32).map(|b| 1u32 << b).filter(|b| mask & b != 0) {
            low.extend([value ^ bit, bit, mask & !bit]);
        }
        for l in low {
            into.extend([u64::from(l), 0xffff_ffff_0000_0000 | u64::from(l), 0x1_0000_0000 | u64::from(l)]);
        }
    }

    /// The argument vectors worth trying for a syscall whose rule tests
    /// arguments: every combination of the edge values of the arguments
    /// either rule set tests (the others zero), and pseudo-random ones.
    fn argument_patterns(tests: &[(u8, u32, u32)], seed: u64) -> Vec<[u64; 6]> {
        let mut per_arg: Vec<(usize, Vec<u64>)> = vec![];
        for arg in 0..6u8 {
            let mut values = std::collections::BTreeSet::new();
            for (_, mask, value) in tests.iter().filter(|(a, _, _)| *a == arg) {
                edges(*mask, *value, &mut values);
            }
            if !values.is_empty() {
                per_arg.push((usize::from(arg), values.into_iter().collect()));
            }
        }
        let mut out = vec![[0u64; 6]];
        for (arg, values) in &per_arg {
            out = out
                .iter()
                .flat_map(|args| {
                    values.iter().map(move |v| {
                        let mut a = *args;
                        a[*arg] = *v;
                        a
                    })
                })
                .collect();
        }
        let mut x = seed | 1;
        for _ in 0..256 {
            let mut a = [0u64; 6];
            for v in &mut a {
                // xorshift64
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *v = x;
            }
            out.push(a);
        }
        out
    }

    /// Every argument test of a rule as (argument, mask, value).
    fn tested(when: &[(Vec<ArgTest>, Verdict)]) -> Vec<(u8, u32, u32)> {
        when.iter()
            .flat_map(|(tests, _)| tests)
            .map(|t| match *t {
                ArgTest::Masked { arg, mask, value } => (arg, mask, value),
                ArgTest::Eq { arg, value } | ArgTest::Ne { arg, value } => (arg, !0, value),
                ArgTest::AnyOf { arg, bits } => (arg, bits, bits),
            })
            .collect()
    }

    fn reference_tested(when: &[(Vec<reference::ArgTest>, Verdict)]) -> Vec<(u8, u32, u32)> {
        when.iter()
            .flat_map(|(tests, _)| tests)
            .map(|t| match *t {
                reference::ArgTest::Masked { arg, mask, value } => (arg, mask, value),
                reference::ArgTest::Eq { arg, value } | reference::ArgTest::Ne { arg, value } => (arg, !0, value),
            })
            .collect()
    }

    /// Exactness: for each of the 64 plans and the connect helper, the
    /// program gives the verdict 46a8e70's program gave (its compiler is
    /// kept in `reference`) for every syscall number 0..=520, the same with
    /// the x32 bit, a few far above, under the native architecture and four
    /// foreign or malformed ones, with arguments all clear, all set and
    /// pseudo-random; and, for every syscall either rule set tests the
    /// arguments of, every combination of the edge values of the tested
    /// arguments. A syscall whose verdict never depended on its arguments
    /// still reaches its verdict without loading one (so the kernel's
    /// action cache keeps skipping the filter for it). And each program is
    /// shorter than the reference one.
    #[test]
    fn every_plan_gives_the_reference_verdicts() {
        let helper_rules: std::collections::BTreeMap<u32, reference::SyscallRule> = HELPER_ALLOWED
            .iter()
            .map(|(n, _)| (u32::try_from(*n).unwrap(), reference::plain(Verdict::Allow)))
            .collect();
        let mut cases = vec![(
            "the connect helper".to_owned(),
            helper_filter().unwrap(),
            reference::helper(),
            std::collections::BTreeMap::new(),
            helper_rules,
        )];
        // The one change since the reference: fcntl's refused commands
        // (R12-6), added to the reference's rule set as it would have
        // written them, so everything else is compared as it was.
        let fcntl = reference::SyscallRule {
            when: REFUSED_FCNTL
                .iter()
                .map(|(cmd, _)| (vec![reference::ArgTest::Eq { arg: 1, value: *cmd }], reference::EPERM))
                .collect(),
            otherwise: Verdict::Allow,
        };
        for p in all_plans() {
            let (new, mut old) = (rules(p), reference::rules(p));
            assert_eq!(
                old.rules.get(&u32::try_from(libc::SYS_fcntl).unwrap()),
                Some(&reference::plain(Verdict::Allow))
            );
            old.rules.insert(u32::try_from(libc::SYS_fcntl).unwrap(), fcntl.clone());
            cases.push((
                format!("{p:?}"),
                compile(&new).unwrap(),
                reference::compile(&old).unwrap(),
                new.rules.into_iter().collect(),
                old.rules,
            ));
        }
        let numbers: Vec<u32> = (0..=520u32)
            .chain((0..=520).map(|n| n | X32_SYSCALL_BIT))
            .chain([0x3fff_ffff, 0x7fff_ffff, 0x8000_0000, 0xbfff_ffff, 0xffff_ffff])
            .collect();
        let foreign = [3 | 0x4000_0000, 0xc000_00b7, 0, AUDIT_ARCH & !0x4000_0000, AUDIT_ARCH ^ 1];
        for (name, new, old, new_rules, old_rules) in &cases {
            assert!(new.len() < old.len(), "{name}: {} instructions, {} before", new.len(), old.len());
            for &nr in &numbers {
                for args in [[0; 6], [!0; 6], [u64::from(nr).wrapping_mul(0x9e37_79b9_7f4a_7c15); 6]] {
                    let (verdict, loaded) = trace(new, AUDIT_ARCH, nr, args);
                    assert_eq!(verdict, run(old, AUDIT_ARCH, nr, args), "{name}: syscall {nr:#x} args {args:x?}");
                    if old_rules.get(&nr).is_none_or(|r| r.when.is_empty()) {
                        assert!(!loaded, "{name}: syscall {nr:#x} loads an argument");
                    }
                }
                for arch in foreign {
                    assert_eq!(run(new, arch, nr, [0; 6]), run(old, arch, nr, [0; 6]), "{name}: arch {arch:#x} {nr}");
                }
            }
            let argument_tested: std::collections::BTreeSet<u32> = new_rules
                .iter()
                .filter(|(_, r)| !r.when.is_empty())
                .map(|(n, _)| *n)
                .chain(old_rules.iter().filter(|(_, r)| !r.when.is_empty()).map(|(n, _)| *n))
                .collect();
            for nr in argument_tested {
                let mut tests = new_rules.get(&nr).map(|r| tested(&r.when)).unwrap_or_default();
                tests.extend(old_rules.get(&nr).map(|r| reference_tested(&r.when)).unwrap_or_default());
                for args in argument_patterns(&tests, u64::from(nr)) {
                    assert_eq!(
                        run(new, AUDIT_ARCH, nr, args),
                        run(old, AUDIT_ARCH, nr, args),
                        "{name}: syscall {nr} args {args:x?}"
                    );
                }
            }
        }
    }

    /// A classic-BPF interpreter for the instructions `compile` emits.
    fn run(prog: &[SockFilter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        trace(prog, arch, nr, args).0
    }

    /// [`run`], and whether the program loaded an argument on the way.
    fn trace(prog: &[SockFilter], arch: u32, nr: u32, args: [u64; 6]) -> (u32, bool) {
        let mut loaded = false;
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = prog[pc];
            pc += 1;
            match ins.code {
                BPF_LD_W_ABS => {
                    let o = ins.k as usize;
                    loaded |= ins.k >= OFF_ARGS;
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                }
                BPF_AND_K => acc &= ins.k,
                BPF_JA => pc += ins.k as usize,
                BPF_JEQ_K => pc += usize::from(if acc == ins.k { ins.jt } else { ins.jf }),
                BPF_JGE_K => pc += usize::from(if acc >= ins.k { ins.jt } else { ins.jf }),
                BPF_JSET_K => pc += usize::from(if acc & ins.k != 0 { ins.jt } else { ins.jf }),
                BPF_RET_K => return (ins.k, loaded),
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn plan(wx: WriteXorExecute) -> SeccompPlan {
        SeccompPlan {
            wx,
            unix: UnixSockets::Allow,
            watches: FileWatches::Allow,
            memfd: MemfdExec::Allow,
            connect: ConnectRule::Allow,
        }
    }

    fn verdict(prog: &[SockFilter], nr: i64, args: [u64; 6]) -> u32 {
        run(prog, AUDIT_ARCH, u32::try_from(nr).expect("syscall numbers fit in u32"), args)
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const DENY: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const NOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    const NOTSUP: u32 = libc::SECCOMP_RET_ERRNO | libc::EOPNOTSUPP as u32;
    const ACCES: u32 = libc::SECCOMP_RET_ERRNO | libc::EACCES as u32;

    #[test]
    fn setuid_and_setgid_modes_are_refused_wherever_a_mode_is_given() {
        let prog = compile(&rules(plan(WriteXorExecute::Allow))).unwrap();
        let with_mode = |nr: i64, mode_arg: u8, mode: u64, flags: Option<(u8, u64)>| {
            let mut args = [0u64; 6];
            args[usize::from(mode_arg)] = mode;
            if let Some((f, v)) = flags {
                args[usize::from(f)] = v;
            }
            verdict(&prog, nr, args)
        };
        let creat = libc::O_CREAT as u64 | libc::O_WRONLY as u64;
        let tmpfile = libc::O_TMPFILE as u64 | libc::O_RDWR as u64;
        for (nr, mode_arg, flags_arg) in SETID_MODE {
            let flags = |v| flags_arg.map(|f| (f, v));
            for bad in [0o4755, 0o2755, 0o6777, 0o104755, 0xffff_0000_0000_0800] {
                assert_eq!(with_mode(*nr, *mode_arg, bad, flags(creat)), DENY, "syscall {nr} mode {bad:o}");
            }
            for ok in [0o755, 0o1777, 0o644, 0o100644] {
                assert_eq!(with_mode(*nr, *mode_arg, ok, flags(creat)), ALLOW, "syscall {nr} mode {ok:o}");
            }
            if flags_arg.is_some() {
                assert_eq!(with_mode(*nr, *mode_arg, 0o4755, flags(tmpfile)), DENY, "O_TMPFILE {nr}");
                // Without O_CREAT/O_TMPFILE the kernel ignores the mode.
                assert_eq!(with_mode(*nr, *mode_arg, 0o4755, flags(libc::O_RDONLY as u64)), ALLOW, "{nr}");
            }
        }
        // openat2's mode is in memory: the whole call is refused, so libc uses openat.
        assert_eq!(verdict(&prog, libc::SYS_openat2, [0; 6]), NOSYS);
    }

    #[test]
    fn process_mode_refuses_inotify_and_an_exec_list_refuses_executable_memfds() {
        let open = compile(&rules(plan(WriteXorExecute::Allow))).unwrap();
        assert_eq!(verdict(&open, libc::SYS_inotify_init1, [0; 6]), ALLOW);
        assert_eq!(verdict(&open, libc::SYS_memfd_create, [0, 1, 0, 0, 0, 0]), ALLOW);
        let strict = compile(&rules(SeccompPlan {
            watches: FileWatches::Refuse,
            memfd: MemfdExec::RequireNoexecSeal,
            ..plan(WriteXorExecute::Allow)
        }))
        .unwrap();
        assert_eq!(verdict(&strict, libc::SYS_inotify_init, [0; 6]), NOSYS);
        assert_eq!(verdict(&strict, libc::SYS_inotify_init1, [0o2000000, 0, 0, 0, 0, 0]), NOSYS);
        for flags in [0, 1, 0x10, 0x11] {
            assert_eq!(verdict(&strict, libc::SYS_memfd_create, [0, flags, 0, 0, 0, 0]), ACCES, "flags {flags:#x}");
        }
        assert_eq!(verdict(&strict, libc::SYS_memfd_create, [0, 0x9, 0, 0, 0, 0]), ALLOW);
    }

    /// A search with halves too long for a conditional jump's offset
    /// (600 single-syscall segments: the nodes near the root need the
    /// two-instruction form, the others take one) still gives every
    /// syscall its own verdict and the default past the last one; and it
    /// is shorter than the two-instruction form everywhere would be
    /// (6 + 600 leaves + 2 per node).
    #[test]
    fn a_search_of_either_node_form_gives_every_syscall_its_verdict() {
        let verdict_of = |nr: u32| if nr % 2 == 0 { Verdict::Allow } else { Verdict::Errno(1 + nr % 7) };
        let rules = (0..600).map(|nr| (nr, plain(verdict_of(nr)))).collect();
        let prog = compile(&RuleSet { rules, default: Verdict::Errno(libc::ENOSYS as u32) }).unwrap();
        assert!(prog.iter().any(|i| i.code == BPF_JA), "the long form is used near the root");
        assert!(prog.len() < 6 + 600 + 2 * 599 - 500, "{} instructions", prog.len());
        for nr in 0..600 {
            assert_eq!(run(&prog, AUDIT_ARCH, nr, [0; 6]), verdict_of(nr).ret(), "{nr}");
        }
        for nr in [600, 601, 1000, 0x3fff_ffff] {
            assert_eq!(run(&prog, AUDIT_ARCH, nr, [0; 6]), NOSYS, "{nr}");
        }
    }

    /// The search is built over rules in syscall order: a rule set out of
    /// order (or naming a syscall twice) is refused, not compiled into a
    /// search that skips some of its rules.
    #[test]
    #[should_panic(expected = "sorted, each once")]
    fn a_rule_set_out_of_order_is_refused() {
        let rules = vec![(5, plain(Verdict::Allow)), (3, plain(EPERM))];
        let _ = compile(&RuleSet { rules, default: ENOSYS });
    }

    #[test]
    fn every_listed_syscall_gets_its_verdict_and_everything_else_enosys() {
        let prog = compile(&rules(plan(WriteXorExecute::Allow))).unwrap();
        assert!(prog.len() < 1000, "{}", prog.len());
        for (nr, why) in ALLOWED {
            // Argument rules: all-zero arguments are refused (see their own tests).
            if [libc::SYS_personality, libc::SYS_socket, libc::SYS_socketpair].contains(nr) {
                continue;
            }
            assert_eq!(verdict(&prog, *nr, [0; 6]), ALLOW, "{nr} ({why})");
        }
        for (nr, why) in DENIED {
            assert_eq!(verdict(&prog, *nr, [0; 6]), DENY, "{nr} ({why})");
        }
        for (nr, why) in UNSUPPORTED {
            assert_eq!(verdict(&prog, *nr, [0; 6]), NOTSUP, "{nr} ({why})");
        }
        let listed: std::collections::BTreeSet<i64> =
            ALLOWED.iter().chain(DENIED).chain(UNSUPPORTED).map(|(n, _)| *n).collect();
        for nr in 0..600 {
            if !listed.contains(&nr) {
                assert_eq!(verdict(&prog, nr, [0; 6]), NOSYS, "{nr}");
            }
        }
    }

    #[test]
    fn traps_that_bit_other_sandboxes() {
        let prog = compile(&rules(plan(WriteXorExecute::Allow))).unwrap();
        // Foreign architecture (i386 via int 0x80): killed.
        assert_eq!(run(&prog, 3 | 0x4000_0000, 20, [0; 6]), libc::SECCOMP_RET_KILL_PROCESS);
        // x32 numbering of an allowed call: ENOSYS.
        assert_eq!(verdict(&prog, libc::SYS_getpid | 0x4000_0000, [0; 6]), NOSYS);
        // ioctl compares the low 32 bits only.
        assert_eq!(verdict(&prog, libc::SYS_ioctl, [0, 0xffff_ffff_0000_5412, 0, 0, 0, 0]), DENY);
        assert_eq!(verdict(&prog, libc::SYS_ioctl, [0, 0x5413, 0, 0, 0, 0]), ALLOW);
        // clone3 cannot be inspected: ENOSYS, so libc uses clone.
        assert_eq!(verdict(&prog, libc::SYS_clone3, [0; 6]), NOSYS);
        assert_eq!(verdict(&prog, libc::SYS_clone, [libc::CLONE_NEWUSER as u64 | 17, 0, 0, 0, 0, 0]), DENY);
        assert_eq!(verdict(&prog, libc::SYS_clone, [0x3d0f00, 0, 0, 0, 0, 0]), ALLOW, "pthread_create flags");
        assert_eq!(verdict(&prog, libc::SYS_unshare, [libc::CLONE_NEWNET as u64, 0, 0, 0, 0, 0]), DENY);
        assert_eq!(verdict(&prog, libc::SYS_unshare, [libc::CLONE_FILES as u64, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(verdict(&prog, libc::SYS_io_uring_setup, [0; 6]), DENY);
        assert_eq!(verdict(&prog, libc::SYS_personality, [0x0400000, 0, 0, 0, 0, 0]), DENY);
        assert_eq!(verdict(&prog, libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]), ALLOW);
    }

    #[test]
    fn process_mode_refuses_named_unix_sockets_and_datagram_socketpairs() {
        let prog =
            compile(&rules(SeccompPlan { unix: UnixSockets::SocketpairOnly, ..plan(WriteXorExecute::Allow) })).unwrap();
        assert_eq!(verdict(&prog, libc::SYS_socket, [libc::AF_UNIX as u64, 1, 0, 0, 0, 0]), DENY);
        assert_eq!(verdict(&prog, libc::SYS_socket, [libc::AF_INET as u64, 1, 0, 0, 0, 0]), ALLOW);
        let pair = |kind: i32| verdict(&prog, libc::SYS_socketpair, [libc::AF_UNIX as u64, kind as u64, 0, 0, 0, 0]);
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        for kind in [libc::SOCK_STREAM, libc::SOCK_SEQPACKET] {
            for f in [0, libc::SOCK_NONBLOCK, libc::SOCK_CLOEXEC, flags] {
                assert_eq!(pair(kind | f), ALLOW, "type {kind} flags {f:#x}");
            }
        }
        // Datagram pairs send to any path (review s9 F2); so would any other
        // type, and unknown flag bits do not hide a type.
        for kind in
            [libc::SOCK_DGRAM, libc::SOCK_DGRAM | flags, libc::SOCK_RAW, libc::SOCK_RDM, libc::SOCK_STREAM | 0x100]
        {
            assert_eq!(pair(kind), DENY, "type {kind:#x}");
        }
        assert_eq!(
            verdict(&prog, libc::SYS_socketpair, [libc::AF_INET as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0]),
            libc::SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32
        );
        let open = compile(&rules(plan(WriteXorExecute::Allow))).unwrap();
        assert_eq!(verdict(&open, libc::SYS_socket, [libc::AF_UNIX as u64, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(verdict(&open, libc::SYS_socketpair, [libc::AF_UNIX as u64, 2, 0, 0, 0, 0]), ALLOW);
    }

    #[test]
    fn only_four_socket_families_exist() {
        let prog = compile(&rules(plan(WriteXorExecute::Allow))).unwrap();
        let afnosupport = libc::SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32;
        for f in [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6, libc::AF_NETLINK] {
            assert_eq!(verdict(&prog, libc::SYS_socket, [f as u64, 1, 0, 0, 0, 0]), ALLOW, "family {f}");
        }
        for f in
            [libc::AF_VSOCK, libc::AF_PACKET, libc::AF_ALG, libc::AF_KEY, libc::AF_BLUETOOTH, 0xffff_0002_u32 as i32]
        {
            assert_eq!(verdict(&prog, libc::SYS_socket, [f as u64, 1, 0, 0, 0, 0]), afnosupport, "family {f}");
        }
        // The family is compared on the low 32 bits, as the kernel reads it.
        assert_eq!(verdict(&prog, libc::SYS_socket, [0xffff_ffff_0000_0002, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(verdict(&prog, libc::SYS_socketpair, [libc::AF_INET as u64, 1, 0, 0, 0, 0]), afnosupport);
    }

    #[test]
    fn notified_connects_come_with_fastopen_and_interface_binding_refused() {
        let notify = SeccompPlan { connect: ConnectRule::Notify, ..plan(WriteXorExecute::Allow) };
        let prog = compile(&rules(notify)).unwrap();
        let open = compile(&rules(plan(WriteXorExecute::Allow))).unwrap();
        assert_eq!(verdict(&prog, libc::SYS_connect, [3, 0, 16, 0, 0, 0]), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(verdict(&open, libc::SYS_connect, [3, 0, 16, 0, 0, 0]), ALLOW);
        assert_eq!(verdict(&prog, libc::SYS_bind, [3, 0, 16, 0, 0, 0]), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(verdict(&open, libc::SYS_bind, [3, 0, 16, 0, 0, 0]), ALLOW);
        let eopnotsupp = libc::SECCOMP_RET_ERRNO | libc::EOPNOTSUPP as u32;
        let fastopen = libc::MSG_FASTOPEN as u64;
        for (n, arg) in [(libc::SYS_sendto, 3), (libc::SYS_sendmsg, 2), (libc::SYS_sendmmsg, 3)] {
            let mut args = [3, 0, 0, 0, 0, 0];
            args[arg] = fastopen | libc::MSG_NOSIGNAL as u64;
            assert_eq!(verdict(&prog, n, args), eopnotsupp, "{n}");
            assert_eq!(verdict(&open, n, args), ALLOW, "{n}");
            args[arg] = libc::MSG_NOSIGNAL as u64 | libc::MSG_DONTWAIT as u64;
            assert_eq!(verdict(&prog, n, args), ALLOW, "{n}");
        }
        let sol = libc::SOL_SOCKET as u64;
        assert_eq!(verdict(&prog, libc::SYS_setsockopt, [3, sol, libc::SO_BINDTODEVICE as u64, 0, 0, 0]), DENY);
        assert_eq!(verdict(&prog, libc::SYS_setsockopt, [3, sol, 62, 0, 0, 0]), DENY);
        assert_eq!(verdict(&prog, libc::SYS_setsockopt, [3, sol, libc::SO_KEEPALIVE as u64, 0, 0, 0]), ALLOW);
        // TCP_NODELAY (1) at IPPROTO_TCP is not SO_... at SOL_SOCKET.
        assert_eq!(verdict(&prog, libc::SYS_setsockopt, [3, 6, 25, 0, 0, 0]), ALLOW);
    }

    #[test]
    fn the_connect_helper_may_do_its_job_and_nothing_else() {
        let prog = helper_filter().unwrap();
        for (n, why) in HELPER_ALLOWED {
            assert_eq!(verdict(&prog, *n, [0; 6]), ALLOW, "{why}");
        }
        for n in
            [libc::SYS_socket, libc::SYS_execve, libc::SYS_open, libc::SYS_openat, libc::SYS_ptrace, libc::SYS_listen]
        {
            assert_eq!(verdict(&prog, n, [0; 6]), libc::SECCOMP_RET_KILL_PROCESS, "{n}");
        }
    }

    #[test]
    fn leases_and_dnotify_are_refused_in_every_plan_and_other_fcntl_commands_are_not() {
        for p in all_plans() {
            let prog = compile(&rules(p)).unwrap();
            for (cmd, why) in REFUSED_FCNTL {
                assert_eq!(verdict(&prog, libc::SYS_fcntl, [3, u64::from(*cmd), 1, 0, 0, 0]), DENY, "{p:?} {why}");
                // The kernel reads the command as an unsigned int.
                let high = 0xffff_ffff_0000_0000 | u64::from(*cmd);
                assert_eq!(verdict(&prog, libc::SYS_fcntl, [3, high, 1, 0, 0, 0]), DENY, "{p:?} {why}");
            }
            for cmd in
                [libc::F_GETLEASE, libc::F_GETFL, libc::F_SETFL, libc::F_DUPFD_CLOEXEC, libc::F_SETLK, libc::F_GETOWN]
            {
                let cmd = u64::try_from(cmd).unwrap();
                assert_eq!(verdict(&prog, libc::SYS_fcntl, [3, cmd, 0, 0, 0, 0]), ALLOW, "{p:?} {cmd}");
            }
        }
    }

    #[test]
    fn wx_rule_is_opt_in() {
        let rwx = [0, 4096, (libc::PROT_WRITE | libc::PROT_EXEC) as u64, 0, 0, 0];
        assert_eq!(verdict(&compile(&rules(plan(WriteXorExecute::Allow))).unwrap(), libc::SYS_mmap, rwx), ALLOW);
        let prog = compile(&rules(plan(WriteXorExecute::Deny))).unwrap();
        assert_eq!(verdict(&prog, libc::SYS_mmap, rwx), DENY);
        assert_eq!(verdict(&prog, libc::SYS_mprotect, rwx), DENY);
        assert_eq!(verdict(&prog, libc::SYS_mmap, [0, 4096, libc::PROT_READ as u64, 0, 0, 0]), ALLOW);
    }

    #[test]
    fn at_least_fifty_dangerous_calls_are_denied_and_none_is_also_allowed() {
        assert!(DENIED.len() >= 50, "{}", DENIED.len());
        for (nr, why) in DENIED {
            assert!(!ALLOWED.iter().any(|(a, _)| a == nr), "syscall {nr} ({why}) is both allowed and denied");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (nr, why) in ALLOWED {
            assert!(!why.is_empty());
            assert!(seen.insert(nr), "syscall {nr} listed twice");
        }
    }
}
