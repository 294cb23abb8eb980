//! Test fixtures for cordon's kernel-dependent tests. A dev-dependency only.
//!
//! # What it offers
//!
//! - [`require!`]: the only way a test may skip. The condition must come from
//!   [`KernelSupport::detect`] (through [`kernel_support`]), the probe behind
//!   `cordon doctor`. When the condition is unmet and the `CI` variable is set
//!   to anything other than `""`, `"0"` or `"false"`, the test panics with
//!   `kernel feature required in CI: ...`; elsewhere it prints
//!   `SKIP <test>: ...` straight to stderr (past libtest's output capture) and
//!   returns.
//! - [`sandbox_modes!`]: the sandboxing modes (`process`, `container`) this
//!   host can run, each one gated like [`require!`], so a test can loop over
//!   them and skip (loudly) only the mode the kernel cannot offer.
//! - [`each_mode`]: runs a check once per mode and fails naming every mode
//!   that failed, so one broken mode does not hide the other's result.
//! - [`Dir`]: a fresh directory under `/var/tmp`, removed on drop. Not under
//!   `/tmp`: container mode mounts its own tmpfs there, which hides host paths.
//! - [`TestCommand`] and [`Outcome`]: run a program, capture its status,
//!   stdout and stderr, parse cordon's `--json` result, and panic with the
//!   whole transcript when an assertion fails.
//! - [`Pty`]: a real pseudo-terminal to run cordon on
//!   ([`TestCommand::run_on_pty`]), type keys into and read back, with its
//!   modes and window size checked from the host side.
//! - [`processes_with_argv`], [`processes_mentioning`] and [`poll_until`]:
//!   find host processes by their command line and wait for a condition
//!   without fixed sleeps.
//!
//! # Not offered
//!
//! Skipping because of "am I root" or "is tool X on `PATH`": a missing tool is
//! a broken test machine, not an unsupported kernel, and must fail the test.
//!
//! The path of the `cordon` binary is known only to the `cordon-cli` crate's
//! own integration tests (`env!("CARGO_BIN_EXE_cordon")` is set at compile
//! time for them alone), so those tests define `cordon_bin()` and hand it to
//! [`TestCommand::new`].

#![deny(missing_docs)]

mod command;
mod dir;
mod gate;
mod http;
mod procs;
mod pty;

pub use command::{Outcome, Spawned, TestCommand};
pub use cordon::{KernelSupport, Mode};
pub use dir::Dir;
pub use gate::{
    ci_requires_kernel_features, each_mode, kernel_support, mode_unavailable_reason, report_unmet_requirement,
    sandbox_modes_for, short_test_name,
};
pub use http::{HttpServer, StaticServer};
pub use procs::{poll_until, processes_mentioning, processes_with_argv};
pub use pty::{Modes, Pty, WindowSize};
