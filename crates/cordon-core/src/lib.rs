//! cordon-core: the policy model and its enforcement by the Linux kernel.
//!
//! # What is enforced
//!
//! A [`Policy`](policy::Policy) says what one execution may do. [`Plan::build`](plan::Plan::build)
//! decides, from the policy and the host's [`KernelSupport`](probe::KernelSupport), which
//! mechanism enforces each entry, and [`enforce::spawn`] applies the plan to
//! a new process:
//!
//! - filesystem: Landlock rules (read = read + execute, write = everything,
//!   deny = carve-outs), and mounts: in container mode a fresh root of bind
//!   mounts, in process mode the host's mounts made read-only with the write
//!   grants bound on top; either way nothing outside the write grants can
//!   change, its metadata included (see [`enforce::mounts`]);
//! - file privileges: no set-id modes, no extended attributes (file
//!   capabilities, ACLs) are set, by seccomp; with an exec allow-list,
//!   unlisted trees are `noexec` and memfds are not executable;
//! - processes: a pid namespace with a minimal init and its own `/proc`;
//!   every process of the run dies with it, and it dies with cordon
//!   (`PR_SET_PDEATHSIG`);
//! - signals and abstract unix sockets: Landlock scopes (ABI 6);
//! - network: an empty network namespace (loopback only);
//! - syscalls: a default-deny seccomp allow-list, with the dangerous families
//!   refused with `EPERM` (see [`enforce::seccomp`]);
//! - privileges: all capabilities dropped (bounding set included) and
//!   `no_new_privs`;
//! - quotas: per-run cgroups where this process may create them, rlimits
//!   otherwise; the wall clock is the supervisor's job;
//! - cordon's own state (audit log, keys, registry): carved out of every
//!   grant before planning ([`state`]).
//!
//! # What is not
//!
//! Process mode does not hide the host's filesystem layout: names outside
//! the grants can be looked up and `stat`ed, not opened or changed; inotify
//! is refused there, since a watch names a path no rule checks. Landlock
//! below ABI 9 does not check unix socket paths, so process mode refuses
//! `socket(AF_UNIX)` and datagram `socketpair`s (stream and seqpacket
//! pairs work). An exec allow-list does not
//! confine what a listed program does, nor the ELF loader's start of files
//! in the system library folders ([`plan::EXEC_LIST_GAP`]). Covert channels,
//! CPU side channels and kernel bugs are out of scope.
//!
//! # Compatibility
//!
//! Nothing is silently weakened: when the kernel lacks what a mode needs,
//! `Plan::build` fails with a [`PlanError`](plan::PlanError) naming the feature. Process mode
//! needs Landlock ABI 6 and seccomp, and user namespaces unless run as root.
//! Container mode needs user namespaces and Landlock ABI 3.
//!
//! # Test strategy
//!
//! Plans are pure and tested against `KernelSupport::fixture_*` values for
//! older kernels. Enforcement is tested in `tests/` of the `cordon` crate by
//! doing the forbidden thing in a real sandbox, with a control run that
//! shows the same probe succeeds without the restriction.

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod enforce;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod state;
#[allow(unsafe_code)]
pub mod sys;
pub mod system_entries;
pub mod trace;
