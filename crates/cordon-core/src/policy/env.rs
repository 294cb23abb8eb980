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
/// (`PATH` among them), `HOME` and `TMPDIR` pointing at the sandbox's own
/// `/tmp` (the caller's in dev mode, see [`Home`]), nothing else inherited.
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

/// Variables cordon sets itself (the sandbox's own `/tmp`), or, in dev mode,
/// passes from the caller ([`Home::Caller`]).
pub const SET_BY_CORDON: &[&str] = &["HOME", "TMPDIR"];

/// Where the command's `HOME` and `TMPDIR` ([`SET_BY_CORDON`]) come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Home<'a> {
    /// Both set by cordon to this folder.
    Set(&'a str),
    /// The caller's values, passed when it has them and left unset when it
    /// has not: dev mode, which makes no folder for the run.
    Caller,
}

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
    /// `HOME` or `TMPDIR` with [`Home::Caller`], or one `allow` matches (an
    /// empty `PATH` does not: it would find nothing).
    fn passes(&self, name: &str, value: &str, home: Home<'_>) -> bool {
        (BASIC_VARS.contains(&name)
            || (home == Home::Caller && SET_BY_CORDON.contains(&name))
            || self.allow.iter().any(|p| p.matches(name)))
            && !(name == "PATH" && value.is_empty())
    }

    /// The names of `host`'s variables that reach the command with the
    /// caller's value (the rest of the environment is set by cordon or by
    /// `set`), in `host`'s order.
    pub fn passed_names(&self, host: &[(String, String)], home: Home<'_>) -> Vec<String> {
        host.iter()
            .filter(|(k, v)| self.passes(k, v, home) && !self.set.iter().any(|(s, _)| s == k))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Builds the environment from `host` (cordon's own), with `HOME` and
    /// `TMPDIR` as `home` says. Later entries win.
    pub fn build(&self, host: impl IntoIterator<Item = (String, String)>, home: Home<'_>) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = vec![("PATH".into(), DEFAULT_PATH.into())];
        if let Home::Set(dir) = home {
            out.extend(SET_BY_CORDON.iter().map(|k| ((*k).into(), dir.into())));
        }
        out.extend(host.into_iter().filter(|(k, v)| self.passes(k, v, home)));
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
    // What searching the upper-cased name finds, without making it: the
    // words are ASCII capitals, so only ASCII letters (in either case) can
    // match them, and a word can start only where its first letter is.
    // Asked of every host variable, several times per run.
    let name = name.as_bytes();
    let at = |i: usize, word: &[u8]| name.get(i..i + word.len()).is_some_and(|s| s.eq_ignore_ascii_case(word));
    (0..name.len()).any(|i| match name[i].to_ascii_uppercase() {
        b'T' => at(i, b"TOKEN"),
        b'S' => at(i, b"SECRET"),
        b'K' => at(i, b"KEY"),
        b'P' => at(i, b"PASSWORD") || at(i, b"PASSWD"),
        b'C' => at(i, b"CREDENTIAL"),
        _ => false,
    })
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
    fn looks_secret_finds_what_the_upper_cased_search_finds() {
        let searched = |name: &str| {
            let upper = name.to_ascii_uppercase();
            ["TOKEN", "SECRET", "KEY", "PASSWORD", "PASSWD", "CREDENTIAL"].iter().any(|w| upper.contains(w))
        };
        let names = [
            "GH_TOKEN",
            "gh_token",
            "Aws_Secret_Access",
            "APIKEY",
            "apikey",
            "key",
            "KE",
            "MONKEYS",
            "PASSWD",
            "db_password",
            "PassWd_x",
            "PASSWOR",
            "my_credential",
            "CREDENTIALS_FILE",
            "TOKE",
            "SECRE",
            "PATH",
            "HOME",
            "LANG",
            "",
            "K",
            "KEYK",
            "x_kEy",
            "ſecret",
            "ſECRET",
            "\u{212A}EY",
            "tokén",
            "é_TOKEN_é",
            "TOKEN\u{0}",
        ];
        for name in names {
            assert_eq!(looks_secret(name), searched(name), "{name:?}");
        }
        assert!(looks_secret("x_kEy") && !looks_secret("\u{212A}EY") && !looks_secret("PASSWOR"), "control");
    }

    #[test]
    fn default_environment_is_only_the_basics_with_the_callers_path() {
        let env = EnvPolicy::default().build(host(), Home::Set("/tmp/s"));
        let names: Vec<_> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "HOME", "TMPDIR", "LANG"]);
        assert_eq!(env[0].1, "/evil", "PATH passes from the caller");
        assert_eq!(EnvPolicy::default().passed_names(&host(), Home::Set("/tmp/s")), ["LANG", "PATH"]);
        // No PATH, or an empty one: the default.
        let no_path: Vec<_> = host().into_iter().filter(|(k, _)| k != "PATH").collect();
        assert_eq!(EnvPolicy::default().build(no_path, Home::Set("/h"))[0].1, DEFAULT_PATH);
        let empty = vec![("PATH".to_owned(), String::new())];
        assert_eq!(EnvPolicy::default().build(empty.clone(), Home::Set("/h"))[0].1, DEFAULT_PATH);
        assert!(EnvPolicy::default().passed_names(&empty, Home::Set("/h")).is_empty());
    }

    #[test]
    fn home_and_tmpdir_are_set_or_the_callers() {
        let caller = || {
            let mut h = host();
            h.push(("HOME".into(), "/home/me".into()));
            h.push(("TMPDIR".into(), "/tmp/me".into()));
            h
        };
        let get = |env: &[(String, String)], k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        // Set: the caller's values never reach the command.
        let env = EnvPolicy::default().build(caller(), Home::Set("/tmp"));
        assert_eq!((get(&env, "HOME"), get(&env, "TMPDIR")), (Some("/tmp".into()), Some("/tmp".into())));
        assert_eq!(EnvPolicy::default().passed_names(&caller(), Home::Set("/tmp")), ["LANG", "PATH"]);
        // The caller's: passed as they are, and named as passed.
        let env = EnvPolicy::default().build(caller(), Home::Caller);
        assert_eq!((get(&env, "HOME"), get(&env, "TMPDIR")), (Some("/home/me".into()), Some("/tmp/me".into())));
        assert_eq!(EnvPolicy::default().passed_names(&caller(), Home::Caller), ["LANG", "PATH", "HOME", "TMPDIR"]);
        // A caller without them: left unset, not made up.
        let env = EnvPolicy::default().build(host(), Home::Caller);
        assert_eq!((get(&env, "HOME"), get(&env, "TMPDIR")), (None, None));
        // env.set still wins.
        let p = EnvPolicy { set: vec![("HOME".into(), "/x".into())], ..EnvPolicy::default() };
        assert_eq!(get(&p.build(caller(), Home::Caller), "HOME"), Some("/x".into()));
    }

    #[test]
    fn allow_patterns_and_set_pairs() {
        let p = EnvPolicy {
            allow: vec![EnvPattern::parse("MY_*").unwrap(), EnvPattern::parse("GH_TOKEN").unwrap()],
            set: vec![("MY_A".into(), "override".into())],
            secret: vec![],
        };
        let env = p.build(host(), Home::Set("/h"));
        let passed = p.passed_names(&host(), Home::Set("/h"));
        assert_eq!(passed, ["LANG", "GH_TOKEN", "PATH", "MY_B"], "MY_A is set, not passed");
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
