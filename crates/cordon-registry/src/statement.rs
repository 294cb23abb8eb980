//! The statement a signature covers: plugin id, version, tree hash and
//! permissions digest, as a few lines of text.
//!
//! ```text
//! cordon plugin statement v1
//! id: @examples/hello-sh
//! version: 1.0.0
//! tree: sha256:...
//! permissions: sha256:...
//! ```
//!
//! The signed bytes are exactly [`Statement::text`]; `cordon plugin
//! statement FILE` prints them, so `minisign -V` can check a signature
//! against them. Because all four fields are signed, a signature cannot be
//! moved to another plugin, another version, other files or another
//! permission set. The trusted comment that cordon writes repeats the
//! fields ([`Statement::trusted_comment`]) only to explain a mismatch; what
//! is verified is the statement.

use cordon_plugin::manifest::PluginId;

use crate::tree::Digest256;

/// What a signature binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The plugin id.
    pub id: PluginId,
    /// Its version.
    pub version: semver::Version,
    /// The tree hash.
    pub tree: Digest256,
    /// The digest of its canonical permissions.
    pub permissions: Digest256,
}

const HEADER: &str = "cordon plugin statement v1";

impl Statement {
    /// The signed text.
    pub fn text(&self) -> String {
        format!(
            "{HEADER}\nid: {}\nversion: {}\ntree: {}\npermissions: {}\n",
            self.id, self.version, self.tree, self.permissions
        )
    }

    /// The trusted comment cordon signs along: the fields on one line.
    pub fn trusted_comment(&self, timestamp: u64, file: &str) -> String {
        format!(
            "timestamp:{timestamp}\tfile:{file}\tcordon:{} {} tree={} permissions={}",
            self.id, self.version, self.tree, self.permissions
        )
    }

    /// The fields a cordon trusted comment claims, if it is one: for saying
    /// what a signature was made for when it does not match.
    pub fn claimed_by(comment: &str) -> Option<(String, String, String, String)> {
        let rest = comment.split('\t').find_map(|f| f.strip_prefix("cordon:"))?;
        let mut parts = rest.split(' ');
        let id = parts.next()?.to_owned();
        let version = parts.next()?.to_owned();
        let tree = parts.next()?.strip_prefix("tree=")?.to_owned();
        let permissions = parts.next()?.strip_prefix("permissions=")?.to_owned();
        Some((id, version, tree, permissions))
    }

    /// How `self` differs from what a trusted comment claims, for people:
    /// `version 1.0.0 (signed: 1.1.0)`.
    pub fn mismatch_with(&self, comment: &str) -> Option<String> {
        let (id, version, tree, permissions) = Statement::claimed_by(comment)?;
        let mut out = vec![];
        let mut field = |name: &str, ours: String, theirs: String| {
            if ours != theirs {
                out.push(format!("{name} {ours} (signed: {theirs})"));
            }
        };
        field("id", self.id.to_string(), id);
        field("version", self.version.to_string(), version);
        field("tree", self.tree.to_string(), tree);
        field("permissions", self.permissions.to_string(), permissions);
        (!out.is_empty()).then(|| out.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_comment_name_every_field() {
        let s = Statement {
            id: "@a/b".parse().unwrap(),
            version: semver::Version::new(1, 2, 3),
            tree: Digest256::of(b"t"),
            permissions: Digest256::of(b"p"),
        };
        let text = s.text();
        assert!(text.starts_with("cordon plugin statement v1\nid: @a/b\nversion: 1.2.3\ntree: sha256:"));
        let c = s.trusted_comment(7, "x.tar.gz");
        assert_eq!(s.mismatch_with(&c), None);
        let other = Statement { version: semver::Version::new(1, 2, 4), ..s.clone() };
        assert_eq!(other.mismatch_with(&c).unwrap(), "version 1.2.4 (signed: 1.2.3)");
        assert_eq!(s.mismatch_with("timestamp:1\tfile:s"), None);
    }
}
