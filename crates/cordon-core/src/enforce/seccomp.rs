//! The seccomp-bpf filters: a default-deny allow-list, and explicit `EPERM`
//! rules for the dangerous families.
//!
//! Two filters are stacked. The first allows the syscalls in [`ALLOWED`] and
//! answers `ENOSYS` to everything else, so a syscall added to the kernel next
//! year is refused, and libc falls back as it does on an older kernel (`clone3`
//! to `clone`, for example). The second answers `EPERM` to the calls in
//! [`DENIED`] and to the dangerous argument patterns of otherwise allowed calls
//! (namespace flags for `clone`/`unshare`, `TIOCSTI`, W^X mappings). The kernel
//! runs both and takes the most restrictive action; between two `ERRNO`
//! answers the later filter's errno wins, so denied calls get `EPERM`.
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

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::policy::WriteXorExecute;

/// A seccomp filter could not be compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// seccompiler refused the rule set.
    #[error("failed to compile the seccomp filter")]
    Compile(#[source] seccompiler::BackendError),
    /// This CPU architecture has no syscall table here.
    #[error("seccomp filters are not available for this CPU architecture ({0})")]
    Architecture(&'static str),
}

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
}

/// Syscalls allowed with any arguments (some are narrowed by [`DENIED`]-style
/// argument rules in the second filter). One line each says why.
#[cfg(target_arch = "x86_64")]
pub const ALLOWED: &[(i64, &str)] = &[
    (libc::SYS_read, "I/O"), (libc::SYS_write, "I/O"), (libc::SYS_readv, "I/O"), (libc::SYS_writev, "I/O"),
    (libc::SYS_pread64, "I/O"), (libc::SYS_pwrite64, "I/O"), (libc::SYS_preadv, "I/O"), (libc::SYS_pwritev, "I/O"),
    (libc::SYS_preadv2, "I/O"), (libc::SYS_pwritev2, "I/O"), (libc::SYS_sendfile, "I/O"), (libc::SYS_splice, "I/O"),
    (libc::SYS_tee, "I/O"), (libc::SYS_vmsplice, "I/O"), (libc::SYS_copy_file_range, "I/O"), (libc::SYS_lseek, "I/O"),
    (libc::SYS_open, "files; Landlock decides which"), (libc::SYS_openat, "files"), (libc::SYS_openat2, "files"),
    (libc::SYS_creat, "files"), (libc::SYS_close, "files"), (libc::SYS_close_range, "files"),
    (libc::SYS_stat, "metadata"), (libc::SYS_fstat, "metadata"), (libc::SYS_lstat, "metadata"),
    (libc::SYS_newfstatat, "metadata"), (libc::SYS_statx, "metadata"), (libc::SYS_statfs, "metadata"),
    (libc::SYS_fstatfs, "metadata"), (libc::SYS_access, "metadata"), (libc::SYS_faccessat, "metadata"),
    (libc::SYS_faccessat2, "metadata"), (libc::SYS_readlink, "metadata"), (libc::SYS_readlinkat, "metadata"),
    (libc::SYS_getdents, "directories"), (libc::SYS_getdents64, "directories"), (libc::SYS_getcwd, "directories"),
    (libc::SYS_chdir, "directories"), (libc::SYS_fchdir, "directories"), (libc::SYS_mkdir, "directories"),
    (libc::SYS_mkdirat, "directories"), (libc::SYS_rmdir, "directories"), (libc::SYS_rename, "files"),
    (libc::SYS_renameat, "files"), (libc::SYS_renameat2, "files"), (libc::SYS_link, "files"), (libc::SYS_linkat, "files"),
    (libc::SYS_unlink, "files"), (libc::SYS_unlinkat, "files"), (libc::SYS_symlink, "files"), (libc::SYS_symlinkat, "files"),
    (libc::SYS_chmod, "files"), (libc::SYS_fchmod, "files"), (libc::SYS_fchmodat, "files"), (libc::SYS_fchmodat2, "files"),
    (libc::SYS_chown, "files"), (libc::SYS_fchown, "files"), (libc::SYS_lchown, "files"), (libc::SYS_fchownat, "files"),
    (libc::SYS_umask, "files"), (libc::SYS_truncate, "files"), (libc::SYS_ftruncate, "files"), (libc::SYS_fallocate, "files"),
    (libc::SYS_utime, "files"), (libc::SYS_utimes, "files"), (libc::SYS_utimensat, "files"), (libc::SYS_futimesat, "files"),
    (libc::SYS_mknod, "fifos; device nodes need CAP_MKNOD, which is dropped"), (libc::SYS_mknodat, "fifos"),
    (libc::SYS_fsync, "files"), (libc::SYS_fdatasync, "files"), (libc::SYS_sync, "files"), (libc::SYS_syncfs, "files"),
    (libc::SYS_sync_file_range, "files"), (libc::SYS_fadvise64, "files"), (libc::SYS_readahead, "files"),
    (libc::SYS_flock, "files"), (libc::SYS_fcntl, "files"), (libc::SYS_dup, "files"), (libc::SYS_dup2, "files"),
    (libc::SYS_dup3, "files"), (libc::SYS_pipe, "files"), (libc::SYS_pipe2, "files"), (libc::SYS_ioctl, "terminals; TIOCSTI/TIOCLINUX denied"),
    (libc::SYS_getxattr, "xattrs"), (libc::SYS_lgetxattr, "xattrs"), (libc::SYS_fgetxattr, "xattrs"),
    (libc::SYS_listxattr, "xattrs"), (libc::SYS_llistxattr, "xattrs"), (libc::SYS_flistxattr, "xattrs"),
    (libc::SYS_setxattr, "xattrs"), (libc::SYS_lsetxattr, "xattrs"), (libc::SYS_fsetxattr, "xattrs"),
    (libc::SYS_removexattr, "xattrs"), (libc::SYS_lremovexattr, "xattrs"), (libc::SYS_fremovexattr, "xattrs"),
    (libc::SYS_name_to_handle_at, "file handles (opening one is denied)"),
    (libc::SYS_inotify_init, "watches"), (libc::SYS_inotify_init1, "watches"), (libc::SYS_inotify_add_watch, "watches"),
    (libc::SYS_inotify_rm_watch, "watches"),
    (libc::SYS_mmap, "memory; W^X rule optional"), (libc::SYS_mprotect, "memory"), (libc::SYS_munmap, "memory"),
    (libc::SYS_mremap, "memory"), (libc::SYS_msync, "memory"), (libc::SYS_mincore, "memory"), (libc::SYS_madvise, "memory"),
    (libc::SYS_brk, "memory"), (libc::SYS_mlock, "memory"), (libc::SYS_mlock2, "memory"), (libc::SYS_munlock, "memory"),
    (libc::SYS_mlockall, "memory"), (libc::SYS_munlockall, "memory"), (libc::SYS_memfd_create, "memory"),
    (libc::SYS_memfd_secret, "memory"), (libc::SYS_membarrier, "memory"), (libc::SYS_mbind, "NUMA"),
    (libc::SYS_get_mempolicy, "NUMA"), (libc::SYS_set_mempolicy, "NUMA"), (libc::SYS_pkey_alloc, "memory keys"),
    (libc::SYS_pkey_free, "memory keys"), (libc::SYS_pkey_mprotect, "memory keys"), (nr::MAP_SHADOW_STACK, "CET"),
    (libc::SYS_shmget, "SysV IPC (private IPC namespace in container mode)"), (libc::SYS_shmat, "SysV IPC"),
    (libc::SYS_shmdt, "SysV IPC"), (libc::SYS_shmctl, "SysV IPC"), (libc::SYS_semget, "SysV IPC"), (libc::SYS_semop, "SysV IPC"),
    (libc::SYS_semtimedop, "SysV IPC"), (libc::SYS_semctl, "SysV IPC"), (libc::SYS_msgget, "SysV IPC"),
    (libc::SYS_msgsnd, "SysV IPC"), (libc::SYS_msgrcv, "SysV IPC"), (libc::SYS_msgctl, "SysV IPC"),
    (libc::SYS_mq_open, "POSIX mq"), (libc::SYS_mq_unlink, "POSIX mq"), (libc::SYS_mq_timedsend, "POSIX mq"),
    (libc::SYS_mq_timedreceive, "POSIX mq"), (libc::SYS_mq_notify, "POSIX mq"), (libc::SYS_mq_getsetattr, "POSIX mq"),
    (libc::SYS_poll, "events"), (libc::SYS_ppoll, "events"), (libc::SYS_select, "events"), (libc::SYS_pselect6, "events"),
    (libc::SYS_epoll_create, "events"), (libc::SYS_epoll_create1, "events"), (libc::SYS_epoll_ctl, "events"),
    (libc::SYS_epoll_wait, "events"), (libc::SYS_epoll_pwait, "events"), (libc::SYS_epoll_pwait2, "events"),
    (libc::SYS_eventfd, "events"), (libc::SYS_eventfd2, "events"), (libc::SYS_signalfd, "events"), (libc::SYS_signalfd4, "events"),
    (libc::SYS_timerfd_create, "timers"), (libc::SYS_timerfd_settime, "timers"), (libc::SYS_timerfd_gettime, "timers"),
    (libc::SYS_io_setup, "AIO"), (libc::SYS_io_destroy, "AIO"), (libc::SYS_io_submit, "AIO"), (libc::SYS_io_cancel, "AIO"),
    (libc::SYS_io_getevents, "AIO"), (nr::IO_PGETEVENTS, "AIO"),
    (libc::SYS_socket, "sockets; the network namespace is empty"), (libc::SYS_socketpair, "sockets"),
    (libc::SYS_connect, "sockets"), (libc::SYS_accept, "sockets"), (libc::SYS_accept4, "sockets"), (libc::SYS_bind, "sockets"),
    (libc::SYS_listen, "sockets"), (libc::SYS_sendto, "sockets"), (libc::SYS_recvfrom, "sockets"), (libc::SYS_sendmsg, "sockets"),
    (libc::SYS_recvmsg, "sockets"), (libc::SYS_sendmmsg, "sockets"), (libc::SYS_recvmmsg, "sockets"),
    (libc::SYS_shutdown, "sockets"), (libc::SYS_getsockname, "sockets"), (libc::SYS_getpeername, "sockets"),
    (libc::SYS_setsockopt, "sockets"), (libc::SYS_getsockopt, "sockets"),
    (libc::SYS_clone, "threads and processes; namespace flags denied"), (libc::SYS_fork, "processes"),
    (libc::SYS_vfork, "processes"), (libc::SYS_execve, "processes"), (libc::SYS_execveat, "processes"),
    (libc::SYS_exit, "processes"), (libc::SYS_exit_group, "processes"), (libc::SYS_wait4, "processes"),
    (libc::SYS_waitid, "processes"), (libc::SYS_kill, "signals; Landlock scopes them"), (libc::SYS_tkill, "signals"),
    (libc::SYS_tgkill, "signals"), (libc::SYS_pidfd_open, "processes"), (libc::SYS_pidfd_send_signal, "signals"),
    (libc::SYS_rt_sigaction, "signals"), (libc::SYS_rt_sigprocmask, "signals"), (libc::SYS_rt_sigreturn, "signals"),
    (libc::SYS_rt_sigpending, "signals"), (libc::SYS_rt_sigtimedwait, "signals"), (libc::SYS_rt_sigqueueinfo, "signals"),
    (libc::SYS_rt_tgsigqueueinfo, "signals"), (libc::SYS_rt_sigsuspend, "signals"), (libc::SYS_sigaltstack, "signals"),
    (libc::SYS_pause, "signals"), (libc::SYS_restart_syscall, "signals"),
    (libc::SYS_getpid, "identity"), (libc::SYS_getppid, "identity"), (libc::SYS_gettid, "identity"),
    (libc::SYS_getuid, "identity"), (libc::SYS_geteuid, "identity"), (libc::SYS_getgid, "identity"),
    (libc::SYS_getegid, "identity"), (libc::SYS_getresuid, "identity"), (libc::SYS_getresgid, "identity"),
    (libc::SYS_getgroups, "identity"), (libc::SYS_setuid, "identity; no capabilities, so only to ids held"),
    (libc::SYS_setgid, "identity"), (libc::SYS_setreuid, "identity"), (libc::SYS_setregid, "identity"),
    (libc::SYS_setresuid, "identity"), (libc::SYS_setresgid, "identity"), (libc::SYS_setfsuid, "identity"),
    (libc::SYS_setfsgid, "identity"), (libc::SYS_setgroups, "identity"), (libc::SYS_capget, "identity"),
    (libc::SYS_capset, "dropping capabilities further"), (libc::SYS_getpgid, "sessions"), (libc::SYS_setpgid, "sessions"),
    (libc::SYS_getpgrp, "sessions"), (libc::SYS_getsid, "sessions"), (libc::SYS_setsid, "sessions"),
    (libc::SYS_prctl, "process attributes"), (libc::SYS_arch_prctl, "TLS"), (libc::SYS_set_tid_address, "threads"),
    (libc::SYS_set_robust_list, "threads"), (libc::SYS_get_robust_list, "threads"), (libc::SYS_rseq, "threads"),
    (libc::SYS_futex, "threads"), (libc::SYS_futex_waitv, "threads"), (nr::FUTEX_WAKE, "threads"),
    (nr::FUTEX_WAIT, "threads"), (nr::FUTEX_REQUEUE, "threads"),
    (libc::SYS_set_thread_area, "threads"), (libc::SYS_get_thread_area, "threads"),
    (libc::SYS_sched_yield, "scheduling"), (libc::SYS_sched_getaffinity, "scheduling"), (libc::SYS_sched_setaffinity, "scheduling"),
    (libc::SYS_sched_getparam, "scheduling"), (libc::SYS_sched_setparam, "scheduling"), (libc::SYS_sched_getscheduler, "scheduling"),
    (libc::SYS_sched_setscheduler, "scheduling"), (libc::SYS_sched_get_priority_max, "scheduling"),
    (libc::SYS_sched_get_priority_min, "scheduling"), (libc::SYS_sched_rr_get_interval, "scheduling"),
    (libc::SYS_sched_getattr, "scheduling"), (libc::SYS_sched_setattr, "scheduling"), (libc::SYS_getpriority, "scheduling"),
    (libc::SYS_setpriority, "scheduling"), (libc::SYS_getcpu, "scheduling"),
    (libc::SYS_getrlimit, "limits"), (libc::SYS_setrlimit, "limits (lowering, or raising to the hard limit)"),
    (libc::SYS_prlimit64, "limits; other processes are outside the pid namespace"), (libc::SYS_getrusage, "accounting"),
    (libc::SYS_times, "accounting"), (libc::SYS_sysinfo, "accounting"), (libc::SYS_uname, "identity"),
    (libc::SYS_time, "clocks"), (libc::SYS_gettimeofday, "clocks"), (libc::SYS_clock_gettime, "clocks"),
    (libc::SYS_clock_getres, "clocks"), (libc::SYS_clock_nanosleep, "clocks"), (libc::SYS_nanosleep, "clocks"),
    (libc::SYS_alarm, "timers"), (libc::SYS_getitimer, "timers"), (libc::SYS_setitimer, "timers"),
    (libc::SYS_timer_create, "timers"), (libc::SYS_timer_settime, "timers"), (libc::SYS_timer_gettime, "timers"),
    (libc::SYS_timer_getoverrun, "timers"), (libc::SYS_timer_delete, "timers"),
    (libc::SYS_getrandom, "randomness"), (libc::SYS_seccomp, "adding stricter filters"),
    (libc::SYS_landlock_create_ruleset, "restricting itself further"), (libc::SYS_landlock_add_rule, "restricting itself further"),
    (libc::SYS_landlock_restrict_self, "restricting itself further"),
    (libc::SYS_unshare, "CLONE_FS/CLONE_FILES; namespace flags denied"), (libc::SYS_personality, "querying; changes denied"),
];

/// Syscalls refused with `EPERM`, whatever their arguments.
#[cfg(target_arch = "x86_64")]
pub const DENIED: &[(i64, &str)] = &[
    (libc::SYS_init_module, "kernel modules"), (libc::SYS_finit_module, "kernel modules"),
    (libc::SYS_delete_module, "kernel modules"), (nr::CREATE_MODULE, "kernel modules"),
    (nr::QUERY_MODULE, "kernel modules"), (nr::GET_KERNEL_SYMS, "kernel modules"),
    (libc::SYS_kexec_load, "kexec"), (libc::SYS_kexec_file_load, "kexec"), (libc::SYS_reboot, "reboot"),
    (libc::SYS_bpf, "eBPF"), (libc::SYS_perf_event_open, "perf: kernel profiling, side channels"),
    (libc::SYS_io_uring_setup, "io_uring does I/O without the filtered syscalls"),
    (libc::SYS_io_uring_enter, "io_uring"), (libc::SYS_io_uring_register, "io_uring"),
    (libc::SYS_userfaultfd, "userfaultfd: kernel race amplifier"), (libc::SYS_add_key, "keyrings are not namespaced"),
    (libc::SYS_request_key, "keyrings"), (libc::SYS_keyctl, "keyrings"), (libc::SYS_mount, "mount family"),
    (libc::SYS_umount2, "mount family"), (libc::SYS_pivot_root, "mount family"), (libc::SYS_chroot, "mount family"),
    (libc::SYS_open_tree, "new mount API"), (libc::SYS_move_mount, "new mount API"), (libc::SYS_fsopen, "new mount API"),
    (libc::SYS_fsconfig, "new mount API"), (libc::SYS_fsmount, "new mount API"), (libc::SYS_fspick, "new mount API"),
    (libc::SYS_mount_setattr, "new mount API"), (libc::SYS_setns, "entering namespaces"),
    (libc::SYS_open_by_handle_at, "bypasses path checks (the shocker escape)"), (libc::SYS_swapon, "swap"),
    (libc::SYS_swapoff, "swap"), (libc::SYS_acct, "process accounting"), (libc::SYS_quotactl, "quotas"),
    (libc::SYS_quotactl_fd, "quotas"), (libc::SYS_syslog, "kernel log"), (libc::SYS_settimeofday, "clock setting"),
    (libc::SYS_clock_settime, "clock setting"), (libc::SYS_clock_adjtime, "clock setting"), (libc::SYS_adjtimex, "clock setting"),
    (libc::SYS_sethostname, "host name"), (libc::SYS_setdomainname, "host name"),
    (libc::SYS_ptrace, "tracing (other processes are out of reach anyway)"), (libc::SYS_process_vm_readv, "reading other processes"),
    (libc::SYS_process_vm_writev, "writing other processes"), (libc::SYS_kcmp, "comparing other processes' resources"),
    (libc::SYS_pidfd_getfd, "stealing descriptors"), (libc::SYS_process_madvise, "other processes' memory"),
    (libc::SYS_process_mrelease, "other processes' memory"), (libc::SYS_iopl, "port I/O"), (libc::SYS_ioperm, "port I/O"),
    (libc::SYS_vhangup, "terminals"), (libc::SYS_lookup_dcookie, "profiling"), (libc::SYS_uselib, "obsolete"),
    (libc::SYS__sysctl, "obsolete"), (libc::SYS_ustat, "obsolete"), (libc::SYS_sysfs, "obsolete"),
    (libc::SYS_nfsservctl, "obsolete"), (libc::SYS_move_pages, "other processes' memory"),
    (libc::SYS_migrate_pages, "other processes' memory"), (libc::SYS_fanotify_init, "system-wide file watching"),
    (libc::SYS_fanotify_mark, "system-wide file watching"), (libc::SYS_remap_file_pages, "deprecated, racy"),
    (libc::SYS_modify_ldt, "16-bit segments"), (libc::SYS_set_mempolicy_home_node, "NUMA of other processes"),
];

/// Namespace flags `clone` and `unshare` may not carry.
const NAMESPACE_FLAGS: [u64; 8] = [
    libc::CLONE_NEWNS as u64, libc::CLONE_NEWUTS as u64, libc::CLONE_NEWIPC as u64, libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64, libc::CLONE_NEWNET as u64, libc::CLONE_NEWCGROUP as u64, 0x80, /* CLONE_NEWTIME */
];

/// `personality` values that only query or select Linux behaviour.
const PERSONALITY_OK: [u64; 5] = [0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541C;

fn arch() -> Result<TargetArch, SeccompError> {
    if cfg!(target_arch = "x86_64") { Ok(TargetArch::x86_64) } else { Err(SeccompError::Architecture(std::env::consts::ARCH)) }
}

fn cond(arg: u8, len: Len, op: Op, value: u64) -> Cond {
    Cond::new(arg, len, op, value).expect("argument index below 6")
}

fn rule(conds: Vec<Cond>) -> SeccompRule {
    SeccompRule::new(conds).expect("at least one condition")
}

/// Builds the two filters, in load order.
pub fn build_filters(wx: WriteXorExecute) -> Result<Vec<BpfProgram>, SeccompError> {
    let arch = arch()?;
    let allow: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED.iter().map(|(nr, _)| (*nr, vec![])).collect();
    let allow = SeccompFilter::new(allow, SeccompAction::Errno(libc::ENOSYS as u32), SeccompAction::Allow, arch)
        .map_err(SeccompError::Compile)?;

    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|(nr, _)| (*nr, vec![])).collect();
    let ns_rules = |_| NAMESPACE_FLAGS.iter().map(|f| rule(vec![cond(0, Len::Dword, Op::MaskedEq(*f), *f)])).collect();
    deny.insert(libc::SYS_clone, ns_rules(()));
    deny.insert(libc::SYS_unshare, ns_rules(()));
    deny.insert(
        libc::SYS_ioctl,
        [TIOCSTI, TIOCLINUX].iter().map(|c| rule(vec![cond(1, Len::Dword, Op::Eq, *c)])).collect(),
    );
    deny.insert(
        libc::SYS_personality,
        vec![rule(PERSONALITY_OK.iter().map(|v| cond(0, Len::Dword, Op::Ne, *v)).collect())],
    );
    if wx == WriteXorExecute::Deny {
        let wx_bits = (libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        for nr in [libc::SYS_mmap, libc::SYS_mprotect, libc::SYS_pkey_mprotect] {
            deny.insert(nr, vec![rule(vec![cond(2, Len::Dword, Op::MaskedEq(wx_bits), wx_bits)])]);
        }
    }
    let deny = SeccompFilter::new(deny, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
        .map_err(SeccompError::Compile)?;

    let compile = |f: SeccompFilter| BpfProgram::try_from(f).map_err(SeccompError::Compile);
    Ok(vec![compile(allow)?, compile(deny)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_with_and_without_wx() {
        assert_eq!(build_filters(WriteXorExecute::Allow).unwrap().len(), 2);
        assert_eq!(build_filters(WriteXorExecute::Deny).unwrap().len(), 2);
    }

    #[test]
    fn at_least_fifty_dangerous_calls_are_denied_and_none_is_also_allowed() {
        assert!(DENIED.len() >= 50, "{}", DENIED.len());
        for (nr, why) in DENIED {
            assert!(!ALLOWED.iter().any(|(a, _)| a == nr), "syscall {nr} ({why}) is both allowed and denied");
        }
    }

    #[test]
    fn every_allowed_call_is_justified_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (nr, why) in ALLOWED {
            assert!(!why.is_empty());
            assert!(seen.insert(nr), "syscall {nr} listed twice");
        }
        for gone in [libc::SYS_clone3, libc::SYS_io_uring_setup, libc::SYS_ptrace, libc::SYS_bpf] {
            assert!(!seen.contains(&gone));
        }
    }
}
