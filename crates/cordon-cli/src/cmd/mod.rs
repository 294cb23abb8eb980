//! One module per subcommand.

pub mod audit;
pub mod check;
pub mod docs;
pub mod doctor;
pub mod exec;
pub mod key;
pub mod plugin;
pub mod queue;
pub mod run;
pub mod serve;
pub mod trust;

use std::path::Path;

use anyhow::{Context, Result};
use cordon::PathRule;

/// Parses the values of a path flag (`--read`, `--write`, `--deny`,
/// `--exec`): relative to `base`, existing. Symbolic links are resolved
/// when the run is set up, as a policy file's are, where a link inside a
/// write grant refuses the run (`cordon_core::enforce::pin`): resolved
/// here, a link a previous run made there would go unseen. Errors name the
/// flag and carry the policy error's hint.
pub fn path_flags(flag: &str, raw: &[String], base: &Path) -> Result<Vec<PathRule>> {
    let hinted = |e: cordon::PolicyError| match e.hint() {
        Some(h) => anyhow::anyhow!("{e}\n  hint: {h}"),
        None => anyhow::anyhow!("{e}"),
    };
    raw.iter()
        .map(|r| {
            let rule = PathRule::parse(r, base).map_err(hinted).with_context(|| format!("invalid --{flag} {r}"))?;
            rule.require_exists().map_err(hinted).with_context(|| format!("invalid --{flag} {r}"))?;
            Ok(rule)
        })
        .collect()
}

/// [`path_flags`] with symbolic links resolved now, for `cordon exec`'s
/// narrowing flags. A link in a folder a run may write refuses the flag
/// unless `follow` (`--follow-links`, which names each link followed), as
/// a rule's would when the run is set up ([`cordon::links`]).
pub fn resolved_path_flags(flag: &'static str, raw: &[String], base: &Path, follow: bool) -> Result<Vec<PathRule>> {
    use cordon::links;
    let field = match flag {
        "read" => "fs.read",
        _ => "fs.write",
    };
    path_flags(flag, raw, base)?
        .into_iter()
        .map(|rule| {
            let followed = links::check_path(field, links::RuleSource::Flags, &rule.path, follow)
                .map_err(|e| anyhow::anyhow!("{e}\n  hint: {}", e.hint()))?;
            for f in followed {
                let (link, target) = (f.link.display(), f.target.display());
                crate::render::message(
                    "notice",
                    &format!("--{flag} {} follows the symbolic link {link} (to {target}) in a folder a run may write (--follow-links)", rule.path.display()),
                );
            }
            let path = std::fs::canonicalize(&rule.path)
                .with_context(|| format!("cannot resolve --{flag} {}", rule.path.display()))?;
            Ok(PathRule { path })
        })
        .collect()
}

/// The exit status of a registry command (DESIGN.md): 0 done, 1 refused
/// (the reason and a hint on stderr), 2 usage error (a malformed id).
pub fn registry_status<T>(result: Result<T, cordon_registry::RegistryError>) -> i32 {
    match result {
        Ok(_) => 0,
        Err(e) => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            // `transparent` variants: the first source is the error itself.
            if cause.is_some_and(|c| c.to_string() == text) {
                cause = cause.and_then(std::error::Error::source);
            }
            while let Some(c) = cause {
                text.push_str(&format!("\ncaused by: {c}"));
                cause = c.source();
            }
            if let Some(h) = e.hint() {
                text.push_str(&format!("\nhint: {h}"));
            }
            let usage = matches!(e, cordon_registry::RegistryError::Id(_));
            crate::render::message(if usage { "usage" } else { "refused" }, &text);
            if usage {
                2
            } else {
                1
            }
        }
    }
}

/// Prints one JSON value on its own line.
pub fn json_line<T: serde::Serialize>(value: &T) {
    match crate::render::json(value) {
        Ok(s) => println!("{s}"),
        Err(e) => crate::render::message("error", &format!("cannot serialise the output: {e}")),
    }
}
