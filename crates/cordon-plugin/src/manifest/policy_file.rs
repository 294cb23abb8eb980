//! `cordon run --policy FILE.toml`: a manifest's `[permissions]` and
//! `[quotas]` without a plugin, so an ad-hoc run can keep its policy in a
//! file.
//!
//! ```toml
//! [permissions]
//! fs.read = ["src"]
//! fs.write = ["out"]
//! net.allow = ["api.example.com:443"]
//!
//! [quotas]
//! timeout_ms = 60000
//! memory_mb = 512
//! ```
//!
//! The file is read by the manifest's own parser, so it has the same keys,
//! types, ranges and errors (file, line, column, the line with a caret, a
//! hint). What differs:
//!
//! - Only `[permissions]` and `[quotas]`: the other keys of a manifest
//!   (`id`, `version`, `handlers` …) are refused with a message saying they
//!   belong in a plugin's `cordon.toml`, and unknown keys as in a manifest.
//! - `permissions.capabilities` is refused: capabilities are what a host
//!   application grants a plugin, and `cordon run` runs a command, not a
//!   plugin.
//! - Relative paths are relative to the folder that holds the file, not to
//!   the working directory, so the file means the same wherever it is used
//!   from. As in a manifest they stay inside that folder, `..` and
//!   symbolic links included ([`OutsidePlugin`] with [`FileKind::Policy`]);
//!   an absolute path names a host path outright.
//! - Nothing is implied: not even the file's own folder is readable unless
//!   the file grants it.

use std::path::{Path, PathBuf};

use cordon_core::policy::Policy;
use serde::{Deserialize, Serialize};

use super::{
    absolute, read_bounded, resolve_links, with_text, FileKind, OutsidePlugin, Permissions, Quotas, RawPermissions,
    RawQuotas, Result, Source,
};
use crate::builder::PolicyBuilder;

/// A parsed and validated policy file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyFile {
    /// The file it was read from, as given.
    pub path: PathBuf,
    /// `[permissions]`; `capabilities` is always empty.
    pub permissions: Permissions,
    /// `[quotas]`.
    pub quotas: Quotas,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyFile {
    #[serde(default)]
    permissions: RawPermissions,
    #[serde(default)]
    quotas: RawQuotas,
}

impl PolicyFile {
    /// Reads `path`, refusing files over
    /// [`MAX_MANIFEST_BYTES`](super::MAX_MANIFEST_BYTES) before parsing them.
    pub fn load(path: &Path) -> Result<PolicyFile> {
        let bytes = read_bounded(path, FileKind::Policy)?;
        with_text(&bytes, path, FileKind::Policy, |text| PolicyFile::parse(text, path))
    }

    /// Parses policy-file text; `path` names the file in messages and gives
    /// the folder relative paths are relative to.
    pub fn parse(text: &str, path: &Path) -> Result<PolicyFile> {
        let src = Source { path, text, kind: FileKind::Policy };
        let raw: RawPolicyFile = src.deserialize()?;
        if let Some(c) = raw.permissions.capabilities.first() {
            return Err(src.error(
                c.span(),
                "`capabilities` has no meaning in a policy file".into(),
                Some(
                    "capabilities are what a host application grants a plugin (`cordon exec --capability NAME`); \
                     `cordon run` gives the command the permissions of this file and nothing else: remove it"
                        .into(),
                ),
            ));
        }
        Ok(PolicyFile {
            path: path.to_owned(),
            permissions: raw.permissions.validate(&src)?,
            quotas: raw.quotas.validate(&src)?,
        })
    }

    /// The folder relative entries are relative to: the file's, made
    /// absolute against the current directory, links resolved.
    pub fn folder(&self) -> PathBuf {
        let parent = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        resolve_links(&absolute(parent))
    }

    /// The policy this file describes, over the least privilege of
    /// [`PolicyBuilder::new`] (the system set included), as a builder.
    /// Entries inside [`PolicyFile::folder`] are named with their links
    /// resolved; one leading out of it is [`OutsidePlugin`].
    pub fn builder(&self) -> std::result::Result<PolicyBuilder, OutsidePlugin> {
        let b = PolicyBuilder::new().limits(self.quotas.to_limits());
        self.permissions.grant(b, &self.folder(), FileKind::Policy)
    }

    /// [`PolicyFile::builder`], built.
    pub fn policy(&self) -> std::result::Result<Policy, OutsidePlugin> {
        Ok(self.builder()?.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestError;
    use crate::testdir::TempDir;

    fn invalid(text: &str) -> (usize, usize, String, Option<String>) {
        match PolicyFile::parse(text, Path::new("/srv/p/policy.toml")) {
            Err(ManifestError::Invalid { line, column, message, hint, .. }) => (line, column, message, hint),
            other => panic!("expected an invalid policy file, got {other:?}"),
        }
    }

    #[test]
    fn a_policy_file_has_the_manifests_permissions_and_quotas_with_paths_from_its_folder() {
        let dir = TempDir::new("policy");
        std::fs::create_dir(dir.path().join("out")).unwrap();
        let text = "[permissions]\nfs.read = [\"src\", \"/opt/tool\"]\nfs.write = [\"out/**\"]\n\
                    net.allow = [\"api.example.com:443\"]\nenv.allow = [\"MY_*\"]\n[quotas]\npids = 8\nmemory_mb = 64\n";
        let file = PolicyFile::parse(text, &dir.path().join("policy.toml")).unwrap();
        let policy = file.policy().unwrap();
        let root = resolve_links(dir.path());
        let reads: Vec<_> = policy.fs.read.iter().map(|r| r.path.clone()).collect();
        assert_eq!(reads, [root.join("src"), PathBuf::from("/opt/tool")]);
        assert_eq!(policy.fs.write[0].path, root.join("out"));
        assert_eq!(policy.net.allow, [cordon_core::policy::NetPattern::parse("api.example.com:443").unwrap()]);
        assert_eq!(policy.limits.pids, Some(8));
        assert_eq!(policy.limits.memory_mb, Some(64));
        // Unset quotas keep cordon's defaults; nothing else is implied.
        assert_eq!(policy.limits.grace_ms, cordon_core::policy::Limits::default().grace_ms);
        assert_eq!(policy.limits.timeout_ms, None);
        assert!(policy.exec.is_none());
        assert_eq!(policy.fs.system, cordon_core::policy::SystemSet::Include);
        // An empty file is the least privilege (the control for the above).
        let empty = PolicyFile::parse("", &dir.path().join("p.toml")).unwrap().policy().unwrap();
        let json = |p: &Policy| serde_json::to_value(p).unwrap();
        assert_eq!(json(&empty), json(&Policy::default()));
    }

    #[test]
    fn a_relative_entry_that_leads_out_of_the_files_folder_is_refused() {
        let dir = TempDir::new("policy");
        std::os::unix::fs::symlink("/etc", dir.path().join("conf")).unwrap();
        let file = PolicyFile::parse("[permissions]\nfs.read = [\"conf\"]\n", &dir.path().join("p.toml")).unwrap();
        let err = file.policy().unwrap_err();
        assert_eq!(err.kind, FileKind::Policy);
        assert_eq!(
            err.to_string(),
            format!(
                "fs.read `conf` resolves to /etc, outside the policy file's folder {}",
                resolve_links(dir.path()).display()
            )
        );
        assert!(err.hint().contains("write the absolute path"), "{}", err.hint());
        // Control: the same link named by its absolute target is granted.
        let file = PolicyFile::parse("[permissions]\nfs.read = [\"/etc\"]\n", &dir.path().join("p.toml")).unwrap();
        assert_eq!(file.policy().unwrap().fs.read[0].path, PathBuf::from("/etc"));
        // `..` is refused while parsing, with the folder named.
        let (line, column, message, hint) = invalid("[permissions]\nfs.write = [\"../x\"]\n");
        assert_eq!((line, column), (2, 13));
        assert_eq!(message, "fs.write entry `../x` leaves the policy file's folder");
        assert!(hint.unwrap().starts_with("relative paths stay inside the policy file's folder"));
    }

    #[test]
    fn manifest_keys_capabilities_and_unknown_keys_are_refused_where_they_are() {
        let (line, column, message, hint) =
            invalid("[permissions]\nfs.read = []\n\n[handlers.main]\ncommand = [\"x\"]\n");
        assert_eq!((line, column), (4, 2));
        assert_eq!(
            message,
            "`handlers` belongs in a plugin's cordon.toml; a policy file holds only [permissions] and [quotas]"
        );
        assert_eq!(hint.unwrap(), "remove it; to run a plugin's handler, use `cordon exec DIR HANDLER`");
        let (line, column, message, _) = invalid("id = \"@a/b\"\n");
        assert_eq!((line, column, message.starts_with("`id` belongs in")), (1, 1, true));

        let (line, column, message, hint) = invalid("[permissions]\ncapabilities = [\"llm\"]\n");
        assert_eq!((line, column), (2, 17));
        assert_eq!(message, "`capabilities` has no meaning in a policy file");
        assert!(hint.unwrap().contains("cordon exec --capability NAME"));

        let (line, column, message, hint) = invalid("[quotas]\npids = 8\nmemroy_mb = 5\n");
        assert_eq!((line, column), (3, 1));
        assert!(message.starts_with("unknown field `memroy_mb`"), "{message}");
        assert_eq!(hint.unwrap(), "did you mean `memory_mb`?");
        let (line, column, message, hint) = invalid("[quotas]\npids = \"8\"\n");
        assert_eq!((line, column), (2, 8));
        assert!(message.starts_with("invalid type: string \"8\", expected u64"), "{message}");
        assert_eq!(hint.unwrap(), "quotas are whole, non-negative numbers without quotes");
        let (_, _, message, _) = invalid("[quotas]\npids = 0\n");
        assert_eq!(message, "quotas.pids = 0 is out of range");
    }

    #[test]
    fn a_missing_or_oversized_policy_file_is_named_with_a_hint_for_policy_files() {
        let dir = TempDir::new("policy");
        let missing = dir.path().join("nope.toml");
        let err = PolicyFile::load(&missing).unwrap_err();
        assert_eq!(err.to_string(), format!("cannot read {}", missing.display()));
        assert!(err.hint().unwrap().starts_with("--policy takes a TOML file"), "{:?}", err.hint());
        assert!(err.render().contains("caused by: No such file or directory"), "{}", err.render());
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "#".repeat(70_000)).unwrap();
        let err = PolicyFile::load(&big).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is 70000 bytes; a policy file may have at most 65536 bytes", big.display())
        );
    }
}
