//! One module per subcommand.

pub mod audit;
pub mod check;
pub mod doctor;
pub mod exec;
pub mod run;

use std::path::Path;

use anyhow::{Context, Result};
use cordon::PathRule;

/// Parses the values of a path flag (`--read`, `--write`, `--deny`,
/// `--exec`): relative to `base`, existing, symlinks resolved. Errors name
/// the flag and carry the policy error's hint.
pub fn path_flags(flag: &str, raw: &[String], base: &Path) -> Result<Vec<PathRule>> {
    let hinted = |e: cordon::PolicyError| match e.hint() {
        Some(h) => anyhow::anyhow!("{e}\n  hint: {h}"),
        None => anyhow::anyhow!("{e}"),
    };
    raw.iter()
        .map(|r| {
            let rule = PathRule::parse(r, base).map_err(hinted).with_context(|| format!("invalid --{flag} {r}"))?;
            rule.require_exists().map_err(hinted).with_context(|| format!("invalid --{flag} {r}"))?;
            let path = std::fs::canonicalize(&rule.path).with_context(|| format!("cannot resolve --{flag} {r}"))?;
            Ok(PathRule { path })
        })
        .collect()
}
