//! Trusted publisher keys: a name, a minisign public key, an optional scope
//! (the plugin ids the key may sign) and an optional expiry.
//!
//! The store is `trust.json` under `CORDON_HOME`. A key with no scope may
//! sign any plugin; a scope entry is a plugin id (`@acme/weather`) or a
//! scope prefix (`@acme/*`). A key expires at 00:00 UTC of its expiry date:
//! from then on, every plugin it signed is Invalid, including plugins
//! installed before. Removing a key has the same effect at once, which is
//! the incident response to a leaked key.

use std::time::SystemTime;

use cordon_plugin::manifest::PluginId;
use serde::{Deserialize, Serialize};

use crate::minisign::{KeyId, PublicKey};

/// One trusted key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TrustedKey {
    /// The name `trust remove` takes.
    pub name: String,
    /// The minisign key id.
    pub key_id: KeyId,
    /// The public key's base64 line.
    pub public_key: String,
    /// Plugin ids or `@scope/*` prefixes it may sign; empty: any.
    pub scope: Vec<String>,
    /// `YYYY-MM-DD`: invalid from 00:00 UTC of that day.
    pub expires: Option<String>,
    /// When it was added (RFC 3339).
    pub added_at: String,
}

/// The store's content.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrustStore {
    /// The keys, in the order they were added.
    pub keys: Vec<TrustedKey>,
}

/// A scope or expiry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustInputError {
    /// Not a plugin id nor `@scope/*`.
    #[error("invalid scope `{0}`")]
    Scope(String),
    /// Not `YYYY-MM-DD`.
    #[error("invalid expiry date `{0}`")]
    Expires(String),
    /// Not a usable name.
    #[error("invalid key name `{0}`")]
    Name(String),
}

impl TrustInputError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            TrustInputError::Scope(_) => {
                "a scope is a plugin id (`@acme/weather`) or every plugin of a scope (`@acme/*`)"
            }
            TrustInputError::Expires(_) => "give a date as YYYY-MM-DD, e.g. 2027-01-31",
            TrustInputError::Name(_) => "names are 1 to 64 letters, digits, `-`, `_` or `.`",
        }
    }
}

/// Checks a `--scope` value.
pub fn check_scope(s: &str) -> Result<(), TrustInputError> {
    if let Some(scope) = s.strip_suffix("/*") {
        let probe = format!("{scope}/x");
        return probe.parse::<PluginId>().map(|_| ()).map_err(|_| TrustInputError::Scope(s.to_owned()));
    }
    s.parse::<PluginId>().map(|_| ()).map_err(|_| TrustInputError::Scope(s.to_owned()))
}

/// The moment a `YYYY-MM-DD` expiry takes effect.
pub fn expiry_instant(date: &str) -> Result<SystemTime, TrustInputError> {
    let ok = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    if !ok {
        return Err(TrustInputError::Expires(date.to_owned()));
    }
    humantime::parse_rfc3339(&format!("{date}T00:00:00Z")).map_err(|_| TrustInputError::Expires(date.to_owned()))
}

/// Checks a key name.
pub fn check_name(name: &str) -> Result<(), TrustInputError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(TrustInputError::Name(name.to_owned()))
    }
}

impl TrustedKey {
    /// Whether its scope admits plugin `id`.
    pub fn admits(&self, id: &PluginId) -> bool {
        self.scope.is_empty()
            || self.scope.iter().any(|s| match s.strip_suffix("/*") {
                Some(prefix) => prefix.strip_prefix('@') == Some(id.scope()),
                None => *s == id.to_string(),
            })
    }

    /// Whether it has expired at `now`.
    pub fn expired_at(&self, now: SystemTime) -> bool {
        // A stored date that no longer parses counts as expired: fail closed.
        self.expires.as_deref().is_some_and(|d| expiry_instant(d).map_or(true, |t| now >= t))
    }

    /// The public key.
    pub fn public_key(&self) -> Option<PublicKey> {
        PublicKey::from_base64(&self.public_key).ok()
    }
}

impl TrustStore {
    /// The key with id `id`.
    pub fn by_key_id(&self, id: KeyId) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.key_id == id)
    }

    /// The key named `name`.
    pub fn by_name(&self, name: &str) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scope: &[&str], expires: Option<&str>) -> TrustedKey {
        TrustedKey {
            name: "k".into(),
            key_id: "0011223344556677".parse().unwrap(),
            public_key: String::new(),
            scope: scope.iter().map(|s| s.to_string()).collect(),
            expires: expires.map(str::to_owned),
            added_at: String::new(),
        }
    }

    #[test]
    fn scope_admits_ids_and_prefixes_only() {
        let id: PluginId = "@acme/weather".parse().unwrap();
        assert!(key(&[], None).admits(&id));
        assert!(key(&["@acme/*"], None).admits(&id));
        assert!(key(&["@acme/weather"], None).admits(&id));
        assert!(!key(&["@acme/other"], None).admits(&id));
        assert!(!key(&["@acm/*"], None).admits(&id));
        assert!(!key(&["@acme-x/*"], None).admits(&id));
        assert!(check_scope("@acme/*").is_ok());
        assert!(check_scope("acme/*").is_err());
        assert!(check_scope("@acme/we*").is_err());
    }

    #[test]
    fn expiry_is_the_start_of_the_day() {
        let k = key(&[], Some("2030-01-02"));
        let day = expiry_instant("2030-01-02").unwrap();
        assert!(!k.expired_at(day - std::time::Duration::from_secs(1)));
        assert!(k.expired_at(day));
        assert!(expiry_instant("2030-1-2").is_err());
        assert!(expiry_instant("2030-02-30").is_err());
        assert!(key(&[], Some("garbage")).expired_at(SystemTime::UNIX_EPOCH));
    }
}
