//! Named platform capabilities: what a host application grants a plugin
//! beyond the sandbox policy (`llm`, `cache:results`, ...).
//!
//! cordon does not enforce capabilities itself; the host application that
//! offers them does. This module owns their names and the check whether a
//! plugin's required capabilities are granted.
//!
//! # Grammar
//!
//! ```text
//! name    = segment *( ":" segment )        at most 128 characters
//! segment = [a-z0-9] *[a-z0-9_-]            1 to 64 characters
//! ```
//!
//! Lowercase only, no empty segments, no wildcards. The first segment is
//! the namespace. Cordon reserves two namespaces whose names it knows:
//! `fs` (`fs:read`, `fs:write`) and `net` (`net:fetch`); any other name in
//! them is an error, so a typo is caught. `cache` needs a prefix
//! (`cache:<prefix>`). Every other namespace (`llm`, `queue:jobs`, ...) is
//! the host application's to define.
//!
//! ```
//! use cordon_plugin::capabilities::{validate_name, check_capabilities};
//!
//! assert!(validate_name("cache:results").is_ok());
//! assert!(validate_name("fs:raed").is_err());
//!
//! let required = ["llm".to_string(), "cache:results:v2".to_string()];
//! let granted = ["cache:results".to_string()];
//! let check = check_capabilities(&required, &granted);
//! assert_eq!(check.granted, ["cache:results:v2"]);
//! assert_eq!(check.missing, ["llm"]);
//! assert!(!check.is_satisfied());
//! ```

use serde::Serialize;

/// Capabilities cordon itself knows, with what they mean.
pub const KNOWN: &[(&str, &str)] = &[
    ("fs:read", "read files the host application exposes"),
    ("fs:write", "write files the host application exposes"),
    ("net:fetch", "make HTTP requests through the host application"),
    ("llm", "call the host application's language model"),
    ("cache:<prefix>", "read and write the host's cache under <prefix>"),
];

/// Namespaces whose every name cordon knows.
const CLOSED_NAMESPACES: &[(&str, &[&str])] = &[("fs", &["read", "write"]), ("net", &["fetch"])];

/// Why a capability name is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapabilityError {
    /// The name does not follow the grammar.
    #[error("invalid capability name `{name}`: {reason}")]
    Syntax {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The name is in a namespace cordon knows, but is not one of its names.
    #[error("unknown capability `{name}` in namespace `{namespace}`")]
    Unknown {
        /// The name as given.
        name: String,
        /// Its namespace.
        namespace: String,
        /// The names the namespace has.
        known: Vec<String>,
    },
}

impl CapabilityError {
    /// A suggestion for the user.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            CapabilityError::Syntax { .. } => Some(
                "capability names are lowercase segments separated by `:`, such as `fs:read`, `llm` or `cache:results`",
            ),
            CapabilityError::Unknown { namespace, .. } => match namespace.as_str() {
                "fs" => Some("the `fs` capabilities are `fs:read` and `fs:write`"),
                "net" => Some("the `net` capability is `net:fetch`"),
                _ => None,
            },
        }
    }
}

/// Checks a capability name against the grammar in the module docs.
///
/// ```
/// use cordon_plugin::capabilities::validate_name;
/// for ok in ["fs:read", "net:fetch", "llm", "cache:results", "cache:a:b-1", "queue:jobs_v2"] {
///     assert!(validate_name(ok).is_ok(), "{ok}");
/// }
/// for bad in ["", "FS:read", "fs::read", "cache", "cache:", "cache:*", "llm ", ":x", "fs:exec"] {
///     assert!(validate_name(bad).is_err(), "{bad:?}");
/// }
/// ```
pub fn validate_name(name: &str) -> Result<(), CapabilityError> {
    let bad = |reason| Err(CapabilityError::Syntax { name: name.to_owned(), reason });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 128 {
        return bad("it is longer than 128 characters");
    }
    let segments: Vec<&str> = name.split(':').collect();
    for seg in &segments {
        if seg.is_empty() {
            return bad("it has an empty segment");
        }
        if seg.len() > 64 {
            return bad("a segment is longer than 64 characters");
        }
        if !seg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
            return bad("segments may contain only lowercase letters, digits, `_` and `-`");
        }
        if !seg.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return bad("a segment must start with a letter or digit");
        }
    }
    let namespace = segments[0];
    if namespace == "cache" && segments.len() < 2 {
        return bad("`cache` needs a prefix, as in `cache:results`");
    }
    if let Some((_, names)) = CLOSED_NAMESPACES.iter().find(|(ns, _)| *ns == namespace) {
        if segments.len() != 2 || !names.contains(&segments[1]) {
            return Err(CapabilityError::Unknown {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                known: names.iter().map(|n| format!("{namespace}:{n}")).collect(),
            });
        }
    }
    Ok(())
}

/// The outcome of [`check_capabilities`]: every required name lands in
/// exactly one list, in the order required (duplicates removed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CapabilityCheck {
    /// Required and granted.
    pub granted: Vec<String>,
    /// Required and not granted.
    pub missing: Vec<String>,
}

impl CapabilityCheck {
    /// Whether nothing is missing.
    pub fn is_satisfied(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Splits `required` into what `granted` covers and what it does not.
///
/// A granted name covers the same name, and, when it has two or more
/// segments, every name below it: `cache:a` covers `cache:a:b` but not
/// `cache:ab`. A single-segment grant covers only itself (`llm` does not
/// cover `llm:big`), so a namespace is never granted wholesale. Names are
/// compared as given; invalid names are never covered, whatever is granted.
///
/// ```
/// use cordon_plugin::capabilities::check_capabilities;
/// let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
/// let c = check_capabilities(&s(&["fs:read", "cache:ab", "cache:a:b"]), &s(&["fs:read", "cache:a"]));
/// assert_eq!(c.granted, ["fs:read", "cache:a:b"]);
/// assert_eq!(c.missing, ["cache:ab"]);
/// ```
pub fn check_capabilities(required: &[String], granted: &[String]) -> CapabilityCheck {
    let mut out = CapabilityCheck::default();
    for name in required {
        if out.granted.contains(name) || out.missing.contains(name) {
            continue;
        }
        let covered = validate_name(name).is_ok() && granted.iter().any(|g| covers(g, name));
        if covered {
            out.granted.push(name.clone());
        } else {
            out.missing.push(name.clone());
        }
    }
    out
}

fn covers(grant: &str, name: &str) -> bool {
    if validate_name(grant).is_err() {
        return false;
    }
    grant == name || (grant.contains(':') && name.strip_prefix(grant).is_some_and(|rest| rest.starts_with(':')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn exact_and_nested_grants() {
        let c =
            check_capabilities(&s(&["llm", "llm:big", "cache:a:b", "cache:a", "net:fetch"]), &s(&["llm", "cache:a"]));
        assert_eq!(c.granted, ["llm", "cache:a:b", "cache:a"]);
        assert_eq!(c.missing, ["llm:big", "net:fetch"]);
    }

    #[test]
    fn duplicates_are_listed_once() {
        let c = check_capabilities(&s(&["llm", "llm", "x", "x"]), &s(&["llm"]));
        assert_eq!(c.granted, ["llm"]);
        assert_eq!(c.missing, ["x"]);
    }

    #[test]
    fn invalid_names_are_never_covered() {
        // A malformed grant cannot cover anything, a malformed requirement
        // is never satisfied, even by an identical string.
        let c = check_capabilities(&s(&["Cache:A", "cache:a:b"]), &s(&["Cache:A", "cache:a:"]));
        assert_eq!(c.missing, ["Cache:A", "cache:a:b"]);
    }

    #[test]
    fn closed_namespaces_name_the_known_capabilities() {
        let e = validate_name("fs:exec").unwrap_err();
        assert_eq!(e.to_string(), "unknown capability `fs:exec` in namespace `fs`");
        assert_eq!(e.hint(), Some("the `fs` capabilities are `fs:read` and `fs:write`"));
        assert!(validate_name("fs:read:x").is_err());
        assert!(validate_name("net").is_err());
    }

    #[test]
    fn syntax_errors_say_what_is_wrong() {
        let cases = [
            ("", "it is empty"),
            ("a::b", "it has an empty segment"),
            ("LLM", "segments may contain only lowercase letters, digits, `_` and `-`"),
            ("cache:*", "segments may contain only lowercase letters, digits, `_` and `-`"),
            ("-x", "a segment must start with a letter or digit"),
            ("cache", "`cache` needs a prefix, as in `cache:results`"),
        ];
        for (name, reason) in cases {
            match validate_name(name) {
                Err(CapabilityError::Syntax { reason: r, .. }) => assert_eq!(r, reason, "{name:?}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
        assert!(validate_name(&"a".repeat(65)).is_err());
        assert!(validate_name(&["a"; 65].join(":")).is_err());
    }
}
