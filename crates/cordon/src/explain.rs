//! Explaining a failed run from its own output: which paths it reported
//! missing or refused that exist on the host outside the grants.
//!
//! Container mode shows an ungranted path as missing (`ENOENT`), process
//! mode as refused (`EACCES`); either way the command's message names the
//! path but not the reason. [`not_granted`] reads the captured lines for
//! the usual shapes (`prog: PATH: No such file or directory`, Python's
//! `[Errno 2] No such file or directory: 'PATH'`, quoted or absolute
//! paths), and keeps a path only when it exists on the host and the policy
//! does not grant the access the message is about. It guesses from text
//! the command chose: it may miss a path, and it never names one the
//! policy grants or the host lacks.

use std::path::{Path, PathBuf};

use cordon_core::policy::fs::normalize;
use cordon_core::policy::Policy;
use serde::Serialize;

use crate::checks::{check_fs, Access};
use crate::result::Logs;

/// A path a run's output reported missing or refused, which exists on the
/// host but which the policy does not grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotGranted {
    /// The host path (relative ones resolved against the run's working
    /// directory).
    pub path: PathBuf,
    /// The access the message was about: `read` (missing, permission
    /// denied) or `write` (read-only file system).
    pub access: &'static str,
    /// The error the command printed (`No such file or directory`, ...).
    pub reported: &'static str,
}

/// At most this many paths are named.
const MAX_PATHS: usize = 3;

/// The errors that, for a path outside the grants, mean "not granted".
const MARKERS: &[(&str, Access)] = &[
    ("No such file or directory", Access::Read),
    ("Permission denied", Access::Read),
    ("Read-only file system", Access::Write),
];

/// The paths `logs` reports missing or refused that exist on the host and
/// that `policy` does not grant for that access; at most three, each once.
pub fn not_granted(policy: &Policy, cwd: &Path, logs: &Logs) -> Vec<NotGranted> {
    let mut out: Vec<NotGranted> = vec![];
    for line in &logs.lines {
        for (marker, access) in MARKERS {
            if !line.text.contains(marker) {
                continue;
            }
            for candidate in candidates(&line.text, marker) {
                let path = normalize(&cwd.join(candidate));
                if out.iter().any(|n| n.path == path) || std::fs::symlink_metadata(&path).is_err() {
                    continue;
                }
                if check_fs(policy, &path, *access).is_err() {
                    let access = if *access == Access::Read { "read" } else { "write" };
                    out.push(NotGranted { path, access, reported: marker });
                    if out.len() == MAX_PATHS {
                        return out;
                    }
                }
            }
        }
    }
    out
}

/// Path-like words of an error line: the field before `: MARKER`
/// (`cat: data.csv: No such file or directory`), quoted strings, and
/// words that start with `/`, `./` or `../`.
fn candidates<'a>(line: &'a str, marker: &str) -> Vec<&'a str> {
    let mut out = vec![];
    if let Some(before) = line.split(&format!(": {marker}")).next().filter(|b| b.len() < line.len()) {
        out.extend(before.rsplit(": ").next());
    }
    for quote in ['\'', '"', '`'] {
        out.extend(line.split(quote).skip(1).step_by(2));
    }
    out.extend(
        line.split_whitespace().map(trim).filter(|w| w.starts_with('/') || w.starts_with("./") || w.starts_with("../")),
    );
    out.into_iter()
        .map(trim)
        .filter(|c| !c.is_empty() && !c.contains(char::is_control) && c.len() < 4096 && !c.contains(marker))
        .collect()
}

/// `word` without the punctuation and quotes messages put around paths.
fn trim(word: &str) -> &str {
    word.trim_matches(|ch: char| matches!(ch, ':' | ',' | ';' | '(' | ')' | '[' | ']' | '\'' | '"' | '`'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_cover_the_usual_shapes() {
        let m = "No such file or directory";
        assert_eq!(candidates("cat: data.csv: No such file or directory", m)[0], "data.csv");
        assert!(candidates("FileNotFoundError: [Errno 2] No such file or directory: '/srv/x.csv'", m)
            .contains(&"/srv/x.csv"));
        assert!(candidates("python3: can't open file '/srv/main.py': [Errno 2] No such file or directory", m)
            .contains(&"/srv/main.py"));
        assert!(candidates("ls: cannot access '/srv/d': No such file or directory", m).contains(&"/srv/d"));
        assert!(candidates("open /srv/y failed (No such file or directory)", m).contains(&"/srv/y"));
    }
}
