//! The filter compiler of 46a8e70, kept verbatim as the reference the
//! current one is compared with (see `tests::every_plan_gives_the_reference_verdicts`):
//! its rule set and its program, instruction for instruction as every run
//! loaded them before the program was made shorter. Test-only.

#![allow(clippy::all, clippy::pedantic, clippy::cast_possible_truncation, missing_docs, dead_code)]

use super::{
    BpfProgram, ConnectRule, FileWatches, MemfdExec, SeccompPlan, SockFilter, UnixSockets, Verdict, ALLOWED,
    CREATING_FLAGS, DENIED, HELPER_ALLOWED, MFD_NOEXEC_SEAL, NAMESPACE_FLAGS, PERSONALITY_OK, SETID_MODE, TIOCLINUX,
    TIOCSTI, UNSUPPORTED,
};
use super::{AUDIT_ARCH, BPF_AND_K, BPF_JA, BPF_JEQ_K, BPF_JGE_K, BPF_JSET_K, BPF_LD_W_ABS, BPF_RET_K};
use super::{OFF_ARCH, OFF_ARGS, OFF_NR, X32_SYSCALL_BIT};
use crate::policy::WriteXorExecute;

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
    /// Sorted by syscall number.
    pub rules: std::collections::BTreeMap<u32, SyscallRule>,
    /// For syscalls not listed.
    pub default: Verdict,
}

pub const EPERM: Verdict = Verdict::Errno(libc::EPERM as u32);
const ENOSYS: Verdict = Verdict::Errno(libc::ENOSYS as u32);
const EACCES: Verdict = Verdict::Errno(libc::EACCES as u32);
const EOPNOTSUPP: Verdict = Verdict::Errno(libc::EOPNOTSUPP as u32);
const EAFNOSUPPORT: Verdict = Verdict::Errno(libc::EAFNOSUPPORT as u32);
/// `SO_BINDTOIFINDEX` (Linux 5.0), which the `libc` crate does not name.
const SO_BINDTOIFINDEX: i32 = 62;

pub fn plain(v: Verdict) -> SyscallRule {
    SyscallRule { when: vec![], otherwise: v }
}

/// cordon's rule set.
pub fn rules(plan: SeccompPlan) -> RuleSet {
    let wx = plan.wx;
    let nr = |n: i64| u32::try_from(n).expect("syscall numbers are small");
    let mut rules: std::collections::BTreeMap<u32, SyscallRule> =
        ALLOWED.iter().map(|(n, _)| (nr(*n), plain(Verdict::Allow))).collect();
    rules.extend(DENIED.iter().map(|(n, _)| (nr(*n), plain(EPERM))));
    rules.extend(UNSUPPORTED.iter().map(|(n, _)| (nr(*n), plain(EOPNOTSUPP))));
    for (n, mode, flags) in SETID_MODE {
        let mut when = vec![];
        for bit in [libc::S_ISUID, libc::S_ISGID] {
            let setid = ArgTest::Masked { arg: *mode, mask: bit, value: bit };
            match flags {
                None => when.push((vec![setid], EPERM)),
                Some(f) => when.extend(
                    CREATING_FLAGS
                        .iter()
                        .map(|c| (vec![ArgTest::Masked { arg: *f, mask: *c, value: *c }, setid], EPERM)),
                ),
            }
        }
        rules.insert(nr(*n), SyscallRule { when, otherwise: Verdict::Allow });
    }
    if plan.watches == FileWatches::Refuse {
        for n in [libc::SYS_inotify_init, libc::SYS_inotify_init1] {
            rules.insert(nr(n), plain(ENOSYS));
        }
    }
    if plan.memfd == MemfdExec::RequireNoexecSeal {
        rules.insert(
            nr(libc::SYS_memfd_create),
            SyscallRule {
                when: vec![(vec![ArgTest::Masked { arg: 1, mask: MFD_NOEXEC_SEAL, value: 0 }], EACCES)],
                otherwise: Verdict::Allow,
            },
        );
    }
    let ns: Vec<(Vec<ArgTest>, Verdict)> =
        NAMESPACE_FLAGS.iter().map(|f| (vec![ArgTest::Masked { arg: 0, mask: *f, value: *f }], EPERM)).collect();
    rules.insert(nr(libc::SYS_clone), SyscallRule { when: ns.clone(), otherwise: Verdict::Allow });
    rules.insert(nr(libc::SYS_unshare), SyscallRule { when: ns, otherwise: Verdict::Allow });
    let refused_ioctls = [TIOCSTI, TIOCLINUX];
    rules.insert(
        nr(libc::SYS_ioctl),
        SyscallRule {
            when: refused_ioctls.iter().map(|c| (vec![ArgTest::Eq { arg: 1, value: *c }], EPERM)).collect(),
            otherwise: Verdict::Allow,
        },
    );
    rules.insert(
        nr(libc::SYS_personality),
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
        nr(libc::SYS_socket),
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
    rules.insert(nr(libc::SYS_socketpair), SyscallRule { when: pairs, otherwise: EAFNOSUPPORT });
    if plan.connect == ConnectRule::Notify {
        rules.insert(nr(libc::SYS_connect), plain(Verdict::Notify));
        rules.insert(nr(libc::SYS_bind), plain(Verdict::Notify));
        let fastopen = libc::MSG_FASTOPEN as u32;
        for (n, flags_arg) in [(libc::SYS_sendto, 3), (libc::SYS_sendmsg, 2), (libc::SYS_sendmmsg, 3)] {
            rules.insert(
                nr(n),
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
            nr(libc::SYS_setsockopt),
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
                nr(n),
                SyscallRule {
                    when: vec![(vec![ArgTest::Masked { arg: 2, mask: bits, value: bits }], EPERM)],
                    otherwise: Verdict::Allow,
                },
            );
        }
    }
    RuleSet { rules, default: ENOSYS }
}

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter { code, jt: 0, jf: 0, k }
}
fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}
/// A run of syscall numbers with one rule.
struct Segment<'a> {
    start: u32,
    rule: std::borrow::Cow<'a, SyscallRule>,
}

/// Compiles a rule set: architecture check (anything foreign is killed,
/// which covers the i386 entry points), x32 numbers to `ENOSYS`, then a
/// binary search over runs of syscall numbers sharing a rule.
pub fn compile(set: &RuleSet) -> Result<BpfProgram, super::SeccompError> {
    if AUDIT_ARCH == 0 {
        return Err(super::SeccompError::Architecture(std::env::consts::ARCH));
    }
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, Verdict::Kill.ret()),
        stmt(BPF_LD_W_ABS, OFF_NR),
        jump(BPF_JSET_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, set.default.ret()),
    ];
    // Segments cover 0..: listed syscalls, and the gaps between them.
    let default = plain(set.default);
    let mut segs: Vec<Segment<'_>> = vec![];
    let mut next = 0u32;
    for (nr, rule) in &set.rules {
        if *nr > next {
            segs.push(Segment { start: next, rule: std::borrow::Cow::Borrowed(&default) });
        }
        segs.push(Segment { start: *nr, rule: std::borrow::Cow::Borrowed(rule) });
        next = nr + 1;
    }
    segs.push(Segment { start: next, rule: std::borrow::Cow::Borrowed(&default) });
    // Merge neighbours with the same rule.
    let mut merged: Vec<Segment<'_>> = vec![];
    for s in segs {
        match merged.last() {
            Some(last) if last.rule == s.rule => {}
            _ => merged.push(s),
        }
    }
    prog.extend(tree(&merged));
    if prog.len() > 4096 {
        return Err(super::SeccompError::TooLong(prog.len()));
    }
    Ok(prog)
}

/// The search over `segs` (the accumulator holds the syscall number).
/// A node is one `jge` over the left half when that half is short enough
/// for a conditional jump's 8-bit offset (every node but those near the
/// root): fewer instructions for the kernel to check and JIT when the
/// command loads it, and fewer for each of its syscalls to run through.
fn tree(segs: &[Segment<'_>]) -> Vec<SockFilter> {
    if segs.len() == 1 {
        return leaf(&segs[0].rule);
    }
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

fn leaf(rule: &SyscallRule) -> Vec<SockFilter> {
    let mut out = vec![];
    for (tests, verdict) in &rule.when {
        let sizes: Vec<usize> = tests.iter().map(|t| if matches!(t, ArgTest::Masked { .. }) { 3 } else { 2 }).collect();
        for (i, t) in tests.iter().enumerate() {
            // Instructions after this test's jump: later tests, then the ret.
            let rest = u8::try_from(sizes[i + 1..].iter().sum::<usize>() + 1).expect("rules are short");
            let (arg, value, on_eq_continue) = match *t {
                ArgTest::Masked { arg, mask, value } => {
                    out.push(stmt(BPF_LD_W_ABS, OFF_ARGS + 8 * u32::from(arg)));
                    out.push(stmt(BPF_AND_K, mask));
                    (arg, value, true)
                }
                ArgTest::Eq { arg, value } => (arg, value, true),
                ArgTest::Ne { arg, value } => (arg, value, false),
            };
            if !matches!(t, ArgTest::Masked { .. }) {
                out.push(stmt(BPF_LD_W_ABS, OFF_ARGS + 8 * u32::from(arg)));
            }
            out.push(if on_eq_continue { jump(BPF_JEQ_K, value, 0, rest) } else { jump(BPF_JEQ_K, value, rest, 0) });
        }
        out.push(stmt(BPF_RET_K, verdict.ret()));
    }
    out.push(stmt(BPF_RET_K, rule.otherwise.ret()));
    out
}

/// The connect helper's program as 46a8e70 compiled it.
pub fn helper() -> BpfProgram {
    let nr = |n: i64| u32::try_from(n).expect("syscall numbers are small");
    let rules = HELPER_ALLOWED.iter().map(|(n, _)| (nr(*n), plain(Verdict::Allow))).collect();
    compile(&RuleSet { rules, default: Verdict::Kill }).expect("46a8e70 compiled it")
}
