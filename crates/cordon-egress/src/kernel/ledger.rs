//! What transparent egress did, for the result's `network` list: one record
//! per handed-over connection, one per distinct refusal (identical ones are
//! counted, not repeated), and the live notices cordon prints on stderr.
//!
//! Bounded: at most `max_records` records per run; past that, one summary
//! record counts what was not recorded.

use std::collections::HashMap;

use crate::record::{ConnectionRecord, Protocol};

/// How a refusal's fix is phrased.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HintStyle {
    /// `add --net HOST` (`cordon run`).
    Flag,
    /// `add "HOST" to net.allow in cordon.toml` (`cordon exec`).
    Manifest,
}

/// A refusal as cordon reports it: what, who, why and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// What was refused: `connect` or `lookup`.
    pub kind: &'static str,
    /// The destination (`host:port`) or name.
    pub target: String,
    /// The process that asked (`curl, pid 7`), if known.
    pub process: Option<String>,
    /// Why, for people.
    pub reason: String,
    /// The pattern that would allow it.
    pub suggestion: Option<String>,
    /// Why, in short, when the fix alone does not say (a special address).
    pub detail: Option<String>,
}

impl Notice {
    /// The line cordon prints:
    /// `cordon: network: refused registry.npmjs.org:443 (npm, pid 7) — add --net registry.npmjs.org:443`.
    pub fn render(&self, style: HintStyle) -> String {
        let who = self.process.as_deref().map(|p| format!(" ({p})")).unwrap_or_default();
        let what = match self.kind {
            "lookup" => format!("refused lookup of {}", self.target),
            "lookups" => "refused name lookups".to_owned(),
            "hint" => self.target.clone(),
            _ => format!("refused {}", self.target),
        };
        let fix = match (&self.suggestion, style) {
            (Some(s), HintStyle::Flag) => format!("add --net {s}"),
            (Some(s), HintStyle::Manifest) => format!("add \"{s}\" to net.allow in cordon.toml"),
            (None, HintStyle::Flag) if self.kind == "lookups" => {
                format!("{}; add --net HOST to allow one", self.reason)
            }
            (None, HintStyle::Manifest) if self.kind == "lookups" => {
                format!("{}; add it to net.allow in cordon.toml", self.reason)
            }
            (None, _) => self.reason.clone(),
        };
        let detail = self.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
        format!("cordon: network: {what}{who}{detail} — {fix}")
    }
}

/// Identical refusals share a key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RefusalKey {
    kind: &'static str,
    target: String,
    reason: String,
}

/// The run's records.
#[derive(Debug)]
pub(crate) struct Ledger {
    max_records: usize,
    records: Vec<ConnectionRecord>,
    refusals: HashMap<RefusalKey, usize>,
    unrecorded: u64,
}

impl Ledger {
    pub fn new(max_records: usize) -> Self {
        Ledger { max_records, records: vec![], refusals: HashMap::new(), unrecorded: 0 }
    }

    /// Whether a refusal with these facts was seen before (then it is
    /// counted and `false` is returned: nothing to print).
    pub fn count_if_known(&mut self, kind: &'static str, target: &str, reason: &str) -> bool {
        let key = RefusalKey { kind, target: target.to_owned(), reason: reason.to_owned() };
        match self.refusals.get(&key) {
            Some(i) => {
                self.records[*i].count += 1;
                true
            }
            None => false,
        }
    }

    /// Whether a refusal with these facts was seen before (nothing is
    /// counted).
    pub fn is_known(&self, kind: &'static str, target: &str, reason: &str) -> bool {
        self.refusals.contains_key(&RefusalKey { kind, target: target.to_owned(), reason: reason.to_owned() })
    }

    /// Files a first refusal.
    pub fn refused(
        &mut self,
        protocol: Protocol,
        notice: &Notice,
        name: Option<String>,
        port: u16,
        rule: Option<String>,
    ) {
        let key = RefusalKey { kind: notice.kind, target: notice.target.clone(), reason: notice.reason.clone() };
        let record = ConnectionRecord {
            protocol,
            host: match notice.kind {
                // Every name: none in particular.
                "lookups" => String::new(),
                _ => {
                    notice.target.rsplit_once(':').filter(|_| port != 0).map_or(notice.target.clone(), |(h, _)| {
                        h.trim_start_matches('[').trim_end_matches(']').to_owned()
                    })
                }
            },
            name,
            port,
            allowed: false,
            rule,
            error: Some(notice.reason.clone()),
            process: notice.process.clone(),
            suggestion: notice.suggestion.clone(),
            duration_ms: 0.0,
            ..ConnectionRecord::new()
        };
        if let Some(i) = self.push(record) {
            self.refusals.insert(key, i);
        }
    }

    /// Files a record; returns its index, or `None` past the limit.
    pub fn push(&mut self, record: ConnectionRecord) -> Option<usize> {
        if self.records.len() >= self.max_records {
            self.unrecorded += 1;
            return None;
        }
        self.records.push(record);
        Some(self.records.len() - 1)
    }

    /// The record at `i`, to complete it.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut ConnectionRecord> {
        self.records.get_mut(i)
    }

    /// The records, plus a summary when some could not be kept.
    pub fn take(&mut self) -> Vec<ConnectionRecord> {
        let mut out = std::mem::take(&mut self.records);
        if self.unrecorded > 0 {
            out.push(ConnectionRecord::note(format!(
                "{} further connection(s) and refusal(s) were not recorded: the limit of {} records per run was reached",
                self.unrecorded, self.max_records
            )));
        }
        out
    }
}

/// Control characters in text the sandbox chose (process names) shown as
/// `\xNN`, so they cannot drive cordon's terminal.
pub(crate) fn escape_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Notice {
        Notice {
            kind: "connect",
            target: "registry.npmjs.org:443".into(),
            process: Some("npm, pid 7".into()),
            reason: "registry.npmjs.org:443 is not allowed by the network policy".into(),
            suggestion: Some("registry.npmjs.org:443".into()),
            detail: None,
        }
    }

    #[test]
    fn notices_say_what_who_and_the_fix() {
        let n = notice();
        assert_eq!(
            n.render(HintStyle::Flag),
            "cordon: network: refused registry.npmjs.org:443 (npm, pid 7) — add --net registry.npmjs.org:443"
        );
        assert_eq!(
            n.render(HintStyle::Manifest),
            "cordon: network: refused registry.npmjs.org:443 (npm, pid 7) — add \"registry.npmjs.org:443\" to net.allow in cordon.toml"
        );
        let lookup = Notice {
            kind: "lookup",
            target: "x.test".into(),
            process: None,
            suggestion: None,
            detail: None,
            reason: "refused by the deny rule `x.test`".into(),
        };
        assert_eq!(
            lookup.render(HintStyle::Flag),
            "cordon: network: refused lookup of x.test — refused by the deny rule `x.test`"
        );
        let special = Notice {
            kind: "lookup",
            target: "evil.test".into(),
            process: Some("curl, pid 3".into()),
            suggestion: Some("127.0.0.1".into()),
            detail: Some("it resolves to a loopback address (127.0.0.1), which a name never unlocks".into()),
            reason: String::new(),
        };
        assert_eq!(
            special.render(HintStyle::Flag),
            "cordon: network: refused lookup of evil.test (curl, pid 3): it resolves to a loopback address (127.0.0.1), which a name never unlocks — add --net 127.0.0.1"
        );
    }

    #[test]
    fn identical_refusals_are_counted_and_records_are_bounded() {
        let mut l = Ledger::new(2);
        let n = notice();
        assert!(!l.count_if_known(n.kind, &n.target, &n.reason));
        l.refused(Protocol::Tcp, &n, Some("registry.npmjs.org".into()), 443, None);
        assert!(l.count_if_known(n.kind, &n.target, &n.reason));
        assert!(l.count_if_known(n.kind, &n.target, &n.reason));
        let other = Notice { target: "a.test:80".into(), ..notice() };
        l.refused(Protocol::Tcp, &other, None, 80, None);
        let third = Notice { target: "b.test:80".into(), ..notice() };
        l.refused(Protocol::Tcp, &third, None, 80, None);
        let records = l.take();
        assert_eq!(records.len(), 3);
        assert_eq!((records[0].host.as_str(), records[0].port, records[0].count), ("registry.npmjs.org", 443, 3));
        assert_eq!(records[0].suggestion.as_deref(), Some("registry.npmjs.org:443"));
        assert!(records[2].error.as_deref().unwrap().contains("limit of 2 records"));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_control("ab\u{1b}]0;x\u{7}\r\n"), "ab\\x1b]0;x\\x07\\x0d\\x0a");
        assert_eq!(escape_control("curl"), "curl");
    }
}
