//! cordon-plugin: what turns a sandboxed command into a plugin execution.
//!
//! A plugin is a folder with a `cordon.toml` manifest that declares its
//! handlers, the permissions it needs and its quotas. This crate reads and
//! validates manifests, builds the effective [`Policy`](cordon_core::policy::Policy)
//! from them, and handles what an execution leaves behind (artifacts). It
//! does not run anything: the `cordon` crate runs a handler under the policy
//! built here, and the audit trail lives in `cordon-audit`.
//!
//! - [`manifest`]: strict `cordon.toml` parsing with file, line and column in
//!   every error; presets; [`Manifest::policy`](manifest::Manifest::policy).
//! - [`builder`]: [`PolicyBuilder`](builder::PolicyBuilder) combines permission
//!   sets (`union`) and lets a host narrow a manifest, never widen it
//!   (`narrow`).
//! - [`capabilities`]: named platform capabilities, their grammar, and
//!   [`check_capabilities`](capabilities::check_capabilities).
//! - [`traceparent`]: W3C `traceparent` parsing and generation.
//! - [`artifacts`]: moving a run's output files into an artifact store
//!   without following symbolic links, within size caps.
//!
//! # What it protects
//!
//! The manifest is untrusted input: it is size-checked before parsing, and
//! every value cordon cannot enforce exactly is refused rather than
//! approximated. Artifact collection never reads through a link a handler
//! planted.
//!
//! # Current limitations
//!
//! - Capabilities are names; the host application that grants one enforces
//!   it.
//!
//! # Test strategy
//!
//! Everything here is pure or file-based and unit-tested next to the code
//! with temporary folders: a table of malformed manifests pinning message and
//! line:column, and artifact folders with links pointing outside.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod artifacts;
pub mod builder;
pub mod capabilities;
pub mod manifest;
pub mod traceparent;

#[cfg(test)]
pub(crate) mod testdir;
