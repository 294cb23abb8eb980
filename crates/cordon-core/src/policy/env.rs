//! The command's environment: a few basics, plus what the policy passes.

use serde::Serialize;

use super::{PolicyError, Result};

/// A name, or a `PREFIX*` pattern, of variables copied from cordon's own
/// environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvPattern(String);

impl EnvPattern {
    /// Parses `NAME` or `PREFIX*`.
    pub fn parse(raw: &str) -> Result<Self> {
        let name = raw.strip_suffix('*').unwrap_or(raw);
        // `PREFIX*` may have an empty prefix (`*`: every variable); a plain
        // name may not be empty.
        let valid =
            (raw.ends_with('*') || !name.is_empty()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(PolicyError::EnvPattern(raw.to_owned()));
        }
        Ok(EnvPattern(raw.to_owned()))
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == self.0,
        }
    }
}

/// The command's environment. Default: only [`BASIC_VARS`] from the caller
/// (`PATH` among them), `HOME` and `TMPDIR` pointing at the scratch
/// directory, nothing else inherited.
///
/// # Ambient authority
///
/// `allow` copies values from cordon's own environment into the sandbox.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EnvPolicy {
    /// Variables copied from cordon's environment.
    pub allow: Vec<EnvPattern>,
    /// Variables set to a fixed value (applied last, so they win).
    pub set: Vec<(String, String)>,
    /// Extra names whose values are secret (beyond [`looks_secret`]).
    pub secret: Vec<String>,
}

/// Variables passed from the caller when set there; everything else starts
/// empty. `PATH` is not secret, and its entries that are not visible inside
/// the sandbox are harmless (a lookup there fails and goes on), so tools
/// the caller picked (pyenv, nvm, `~/.cargo/bin`) are found once their
/// folder is granted. `HOME` and `TMPDIR` are always set by cordon itself.
pub const BASIC_VARS: &[&str] = &["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ"];

/// The `PATH` inside the sandbox when the caller has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables cordon sets itself (the run's scratch directory).
pub const SET_BY_CORDON: &[&str] = &["HOME", "TMPDIR"];

impl EnvPolicy {
    /// Parses a `NAME=VALUE` pair.
    pub fn parse_assignment(raw: &str) -> Result<(String, String)> {
        match raw.split_once('=') {
            Some((k, v)) if EnvPattern::parse(k).is_ok() && !k.ends_with('*') => Ok((k.to_owned(), v.to_owned())),
            _ => Err(PolicyError::EnvAssignment(raw.to_owned())),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// Whether a variable of cordon's own environment passes: a basic one,
    /// or one `allow` matches (an empty `PATH` does not: it would find
    /// nothing).
    fn passes(&self, name: &str, value: &str) -> bool {
        (BASIC_VARS.contains(&name) || self.allow.iter().any(|p| p.matches(name)))
            && !(name == "PATH" && value.is_empty())
    }

    /// The names of `host`'s variables that reach the command with the
    /// caller's value (the rest of the environment is set by cordon or by
    /// `set`), in `host`'s order.
    pub fn passed_names(&self, host: &[(String, String)]) -> Vec<String> {
        host.iter()
            .filter(|(k, v)| self.passes(k, v) && !self.set.iter().any(|(s, _)| s == k))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Builds the environment from `host` (cordon's own), with `home` as
    /// `HOME` and `TMPDIR`. Later entries win.
    pub fn build(&self, host: impl IntoIterator<Item = (String, String)>, home: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> =
            vec![("PATH".into(), DEFAULT_PATH.into()), ("HOME".into(), home.into()), ("TMPDIR".into(), home.into())];
        out.extend(host.into_iter().filter(|(k, v)| self.passes(k, v)));
        if !out.iter().any(|(k, _)| k == "LANG") {
            out.push(("LANG".into(), "C.UTF-8".into()));
        }
        out.extend(self.set.iter().cloned());
        // Keep the last value of each name, in first-seen order.
        let mut dedup: Vec<(String, String)> = Vec::with_capacity(out.len());
        for (k, v) in out {
            match dedup.iter_mut().find(|(n, _)| *n == k) {
                Some(slot) => slot.1 = v,
                None => dedup.push((k, v)),
            }
        }
        dedup
    }

    /// Values that must never appear in logs, results or audit records:
    /// those of passed variables whose names look secret or are marked so.
    pub fn secret_values(&self, env: &[(String, String)]) -> Vec<String> {
        env.iter()
            .filter(|(k, v)| v.len() >= 4 && (looks_secret(k) || self.secret.iter().any(|s| s == k)))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Whether a variable name looks like it holds a secret: it contains
/// `TOKEN`, `SECRET`, `KEY`, `PASSWORD` (any case), `PASSWD` or `CREDENTIAL`.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "KEY", "PASSWORD", "PASSWD", "CREDENTIAL"].iter().any(|w| upper.contains(w))
}

/// Replaces every occurrence of each secret in `text` with `***`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Vec<(String, String)> {
        [
            ("LANG", "de_DE.UTF-8"),
            ("AWS_SECRET", "hunter22"),
            ("GH_TOKEN", "ghp_x1"),
            ("PATH", "/evil"),
            ("MY_A", "1"),
            ("MY_B", "2"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn default_environment_is_only_the_basics_with_the_callers_path() {
        let env = EnvPolicy::default().build(host(), "/tmp/s");
        let names: Vec<_> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "HOME", "TMPDIR", "LANG"]);
        assert_eq!(env[0].1, "/evil", "PATH passes from the caller");
        assert_eq!(EnvPolicy::default().passed_names(&host()), ["LANG", "PATH"]);
        // No PATH, or an empty one: the default.
        let no_path: Vec<_> = host().into_iter().filter(|(k, _)| k != "PATH").collect();
        assert_eq!(EnvPolicy::default().build(no_path, "/h")[0].1, DEFAULT_PATH);
        let empty = vec![("PATH".to_owned(), String::new())];
        assert_eq!(EnvPolicy::default().build(empty.clone(), "/h")[0].1, DEFAULT_PATH);
        assert!(EnvPolicy::default().passed_names(&empty).is_empty());
    }

    #[test]
    fn allow_patterns_and_set_pairs() {
        let p = EnvPolicy {
            allow: vec![EnvPattern::parse("MY_*").unwrap(), EnvPattern::parse("GH_TOKEN").unwrap()],
            set: vec![("MY_A".into(), "override".into())],
            secret: vec![],
        };
        let env = p.build(host(), "/h");
        assert_eq!(p.passed_names(&host()), ["LANG", "GH_TOKEN", "PATH", "MY_B"], "MY_A is set, not passed");
        assert!(env.contains(&("MY_A".into(), "override".into())));
        assert!(env.contains(&("MY_B".into(), "2".into())));
        assert!(!env.iter().any(|(k, _)| k == "AWS_SECRET"));
        assert_eq!(p.secret_values(&env), ["ghp_x1"]);
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "A-B", "1ABC", "A*B", "A=B"] {
            assert!(EnvPattern::parse(bad).is_err(), "{bad}");
        }
        assert!(EnvPolicy::parse_assignment("NOVALUE").is_err());
        assert_eq!(EnvPolicy::parse_assignment("A=b=c").unwrap(), ("A".into(), "b=c".into()));
    }

    #[test]
    fn secrets_are_redacted() {
        assert!(looks_secret("api_key") && looks_secret("DB_PASSWORD") && !looks_secret("HOME"));
        assert_eq!(redact("token=ghp_x1!", &["ghp_x1".into()]), "token=***!");
    }
}
