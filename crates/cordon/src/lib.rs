//! cordon: run a command under a kernel-enforced policy and account for it.
//!
//! This crate is the library behind the `cordon` binary: it builds the
//! policy's [`Plan`], starts the sandbox, supervises it (wall clock, output
//! capture, CPU polling, signal forwarding) and produces one
//! [`ExecutionResult`] per run, also when the run never started.
//!
//! ```no_run
//! use cordon::{Mode, Policy, RunRequest};
//! let req = RunRequest::new(Policy::default(), Mode::Process, vec!["/bin/echo".into(), "hi".into()]);
//! let result = cordon::run(&req);
//! assert!(result.ok);
//! ```

#![deny(unsafe_code)]
#![deny(missing_docs)]

mod ids;
mod result;
mod runner;

pub use cordon_core::plan::{Enforcement, LedgerEntry, Plan, PlanError};
pub use cordon_core::policy::{self, EnvPattern, Limits, Mode, NetPattern, PathRule, Policy, PolicyError, SystemSet, WriteXorExecute};
pub use cordon_core::probe::{CgroupDir, KernelSupport, ProbeError};
pub use ids::new_request_id;
pub use result::{ErrorCode, Exit, ExecutionResult, LogLine, Logs, Metrics, ResultError, Stream};
pub use runner::{resolve_program, run, Capture, Input, ResolveError, ResultChannel, RunRequest, RESULT_FD};
