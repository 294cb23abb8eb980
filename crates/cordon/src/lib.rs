//! cordon: run a command under a kernel-enforced policy and account for it.
//!
//! This crate is the library behind the `cordon` binary: it builds the
//! policy's [`Plan`], starts the sandbox, supervises it (wall clock, output
//! capture, CPU polling, signal forwarding) and produces one
//! [`ExecutionResult`] per run, also when the run never started.
//!
//! On top of that:
//!
//! - [`plugin`]: run a handler of a plugin folder under its `cordon.toml`
//!   ([`run_handler`], what `cordon exec` does) and show how each declared
//!   permission is enforced here ([`check_plugin`], `cordon check`).
//! - [`audit`]: one hash-chained audit record per execution (`cordon-audit`,
//!   re-exported, and [`audit::run_audited`]), also for runs
//!   that fail to start, hit a limit, or whose cordon is killed.
//! - [`check_fs`], [`check_net`], [`check_env`]: what a policy allows, for
//!   host applications that decide before they run anything;
//!   [`check_capabilities`] and [`validate_capability_name`] for the named
//!   capabilities a host grants.
//!
//! ```no_run
//! use cordon::{Mode, Policy, RunRequest};
//! let req = RunRequest::new(Policy::default(), Mode::Process, vec!["/bin/echo".into(), "hi".into()]);
//! let result = cordon::run(&req);
//! assert!(result.ok);
//! ```

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
mod checks;
pub mod explain;
mod ids;
mod locked_dir;
pub mod plugin;
mod result;
mod runner;
mod sink;
pub mod text;
mod tty;

pub use checks::{check_env, check_fs, check_net, Access, Allowed, Denied};
pub use cordon_core::enforce::links;
pub use cordon_core::enforce::{spawner_entry, spawner_state, start_spawner, SpawnerState};
pub use cordon_core::plan::{Enforcement, LedgerEntry, Plan, PlanError, EXEC_LIST_GAP};
pub use cordon_core::policy::{
    self, EnvPattern, Limits, Mode, NetPattern, PathRule, Policy, PolicyError, SystemSet, WriteXorExecute,
};
pub use cordon_core::probe::{Availability, CgroupDir, CgroupProbe, KernelSupport, ProbeError};
pub use cordon_core::state::{self, Protected};
#[cfg(target_env = "musl")]
pub use cordon_core::sys::Allocator;
pub use cordon_core::sys::{protect_relro, raise_open_files_limit, runtime_init};

/// Asks the kernel to report the TCP socket `sock` writable whenever fewer
/// than `bytes` of what was written are still unsent (`TCP_NOTSENT_LOWAT`),
/// rather than once a third of its send buffer is free: a blocked write then
/// goes through as soon as the peer takes a little, however large the send
/// buffer has autotuned to (`cordon serve`'s `send_timeout_ms` counts those
/// writes as progress).
pub fn set_tcp_notsent_lowat(sock: std::os::fd::BorrowedFd<'_>, bytes: i32) -> std::io::Result<()> {
    cordon_core::sys::notify::setsockopt_int(sock, libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, bytes)
}
pub use cordon_core::trace;
pub use cordon_egress::kernel::MAX_NOTICES as MAX_NETWORK_NOTICES;
pub use cordon_egress::{ConnectionRecord, Protocol};
pub use cordon_plugin::capabilities::{
    check_capabilities, validate_name as validate_capability_name, CapabilityCheck, CapabilityError,
};
pub use ids::{check_request_id, new_request_id, BadRequestId};
pub use locked_dir::{Sweep, SWEEP_INTERVAL};
pub use plugin::{check_plugin, run_handler, HandlerRequest, HandlerResult, PluginCheck, PolicyBuilder};
pub use result::{EnvNames, ErrorCode, ExecutionResult, Exit, LogLine, Logs, Metrics, ResultError, Stream};
pub use runner::{
    park, release_signals, resolve_program, run, run_answering, Aftermath, Cancel, CancelReason, Capture, Input,
    OnExec, Parked, ResolveError, ResultChannel, RunRequest, Signals, Start, RESULT_FD,
};
pub use tty::{Tty, RELAY_BUFFER};
