//! cordon-plugin: what turns a sandboxed command into a plugin execution.
//!
//! A plugin is a folder with a `cordon.toml` manifest that declares its
//! handlers, the permissions it needs and its quotas. This crate reads and
//! validates manifests, builds the effective [`Policy`](cordon_core::policy::Policy)
//! from them, and keeps the records around an execution. It does not run
//! anything: the `cordon` crate runs a handler under the policy built here.
//!
//! - [`manifest`]: strict `cordon.toml` parsing with file, line and column in
//!   every error; presets; [`Manifest::policy`](manifest::Manifest::policy).
//! - [`builder`]: [`PolicyBuilder`](builder::PolicyBuilder) combines permission
//!   sets (`union`) and lets a host narrow a manifest, never widen it
//!   (`narrow`).
//! - [`capabilities`]: named platform capabilities, their grammar, and
//!   [`check_capabilities`](capabilities::check_capabilities).
//! - [`audit`]: the append-only, hash-chained JSON-lines audit log, its
//!   verification and filtering, and recovery of runs cordon did not see end.
//! - [`traceparent`]: W3C `traceparent` parsing and generation.
//! - [`artifacts`]: moving a run's output files into an artifact store
//!   without following symbolic links, within size caps.
//!
//! # What it protects
//!
//! The manifest is untrusted input: it is size-checked before parsing, and
//! every value cordon cannot enforce exactly is refused rather than
//! approximated. The audit log makes edits, removals and reordering of
//! records detectable, and accounts for runs whose supervisor was killed.
//! Artifact collection never reads through a link a handler planted.
//!
//! # Current limitations
//!
//! - The audit chain has no external anchor, so truncating the newest
//!   records is not detectable from the file alone.
//! - Capabilities are names; the host application that grants one enforces
//!   it.
//!
//! # Test strategy
//!
//! Everything here is pure or file-based and unit-tested next to the code
//! with temporary folders: a table of malformed manifests pinning message and
//! line:column, audit logs edited, truncated, reordered and appended to by
//! several threads and processes at once (including one SIGKILLed mid-run),
//! and artifact folders with links pointing outside.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod artifacts;
pub mod audit;
pub mod builder;
pub mod capabilities;
pub mod manifest;
pub mod traceparent;

#[cfg(test)]
pub(crate) mod testdir;
