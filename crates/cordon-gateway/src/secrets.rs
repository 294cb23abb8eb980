//! The two secrets the service runs on, and the rules that make it refuse
//! to start without good ones.
//!
//! - `CORDON_JWT_SECRET` signs and verifies access tokens (HS256).
//! - `CORDON_INTERNAL_SECRET` is the bearer credential of
//!   `/internal/dispatch`, and nothing else.
//!
//! Each comes from its variable or from the file named by the `_FILE`
//! variant (one trailing newline removed); setting both is an error. The
//! service refuses to start when a secret is missing, shorter than
//! [`MIN_SECRET_BYTES`], one of the values shown in cordon's documentation
//! and examples ([`DOCUMENTED_SECRETS`]), or when both secrets are equal.
//! The platform cordon replaces fell back to a built-in signing key; cordon
//! never does.
//!
//! `--insecure-dev` turns each refusal into a warning and makes up a random
//! secret for a missing one. It is for a developer's machine: the service
//! then listens on loopback only, and says so on every start and in
//! `/readyz`.

use std::path::PathBuf;

/// The variable holding the JWT signing secret.
pub const JWT_ENV: &str = "CORDON_JWT_SECRET";
/// The variable holding the internal dispatch secret.
pub const INTERNAL_ENV: &str = "CORDON_INTERNAL_SECRET";

/// The shortest secret accepted: 32 bytes, HS256's key size.
pub const MIN_SECRET_BYTES: usize = 32;

/// Every secret value that appears in cordon's README, docs and examples.
/// A service started with one of them would be signing with a published
/// key, so they are refused like a missing secret.
pub const DOCUMENTED_SECRETS: &[&str] = &[
    "change-me-change-me-change-me-change-me",
    "0123456789abcdef0123456789abcdef",
    "dev-jwt-secret-dev-jwt-secret-dev-jwt-secret",
    "dev-internal-secret-dev-internal-secret-00",
];

/// Which secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// `CORDON_JWT_SECRET`.
    Jwt,
    /// `CORDON_INTERNAL_SECRET`.
    Internal,
}

impl Which {
    /// The variable's name.
    pub fn env(self) -> &'static str {
        match self {
            Which::Jwt => JWT_ENV,
            Which::Internal => INTERNAL_ENV,
        }
    }
}

/// Why the service will not start with these secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Neither the variable nor its `_FILE` variant is set.
    #[error("{} is not set (nor {}_FILE)", which.env(), which.env())]
    Missing {
        /// Which secret.
        which: Which,
    },
    /// Both the variable and its `_FILE` variant are set.
    #[error("both {} and {}_FILE are set", which.env(), which.env())]
    Ambiguous {
        /// Which secret.
        which: Which,
    },
    /// The `_FILE` cannot be read.
    #[error("cannot read {}_FILE={}", which.env(), path.display())]
    File {
        /// Which secret.
        which: Which,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Shorter than [`MIN_SECRET_BYTES`].
    #[error("{} is {len} bytes long; at least {MIN_SECRET_BYTES} are required", which.env())]
    TooShort {
        /// Which secret.
        which: Which,
        /// Its length.
        len: usize,
    },
    /// A value printed in cordon's documentation.
    #[error("{} is a value shown in cordon's documentation or examples, which anyone can read", which.env())]
    Documented {
        /// Which secret.
        which: Which,
    },
    /// The JWT secret equals the internal secret.
    #[error("{JWT_ENV} and {INTERNAL_ENV} are the same value")]
    Equal,
}

impl SecretError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            SecretError::Ambiguous { .. } => "set only one of the two",
            SecretError::Equal => {
                "use two different random values: a leaked dispatch secret must not let anyone mint access tokens"
            }
            _ => "generate one with `head -c 48 /dev/urandom | base64` (or pass --insecure-dev on a developer machine)",
        }
    }
}

/// The two secrets, checked.
#[derive(Clone)]
pub struct Secrets {
    /// The HS256 key.
    pub jwt: Vec<u8>,
    /// The dispatch bearer secret.
    pub internal: Vec<u8>,
    /// What `--insecure-dev` let through, one sentence each (empty
    /// otherwise).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").field("warnings", &self.warnings).finish_non_exhaustive()
    }
}

/// Whether refusals become warnings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// Refuse to start (the default).
    Refuse,
    /// `--insecure-dev`: warn, and make up random secrets for missing ones.
    InsecureDev,
}

impl Secrets {
    /// Reads both secrets from `env` (name → value) and checks them.
    pub fn load(env: &dyn Fn(&str) -> Option<String>, strictness: Strictness) -> Result<Secrets, SecretError> {
        let mut warnings = vec![];
        let mut get = |which: Which| -> Result<Vec<u8>, SecretError> {
            let value = match read(env, which) {
                Err(e @ SecretError::Missing { .. }) if strictness == Strictness::InsecureDev => {
                    warnings.push(format!("{e}; using a random secret for this run"));
                    random_secret()
                }
                other => other?,
            };
            if let Err(e) = check(which, &value) {
                match strictness {
                    Strictness::Refuse => return Err(e),
                    Strictness::InsecureDev => warnings.push(e.to_string()),
                }
            }
            Ok(value)
        };
        let jwt = get(Which::Jwt)?;
        let internal = get(Which::Internal)?;
        if jwt == internal {
            match strictness {
                Strictness::Refuse => return Err(SecretError::Equal),
                Strictness::InsecureDev => warnings.push(SecretError::Equal.to_string()),
            }
        }
        Ok(Secrets { jwt, internal, warnings })
    }
}

fn read(env: &dyn Fn(&str) -> Option<String>, which: Which) -> Result<Vec<u8>, SecretError> {
    let name = which.env();
    let direct = env(name).filter(|v| !v.is_empty());
    let file = env(&format!("{name}_FILE")).filter(|v| !v.is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(SecretError::Ambiguous { which }),
        (Some(v), None) => Ok(v.into_bytes()),
        (None, Some(path)) => {
            let path = PathBuf::from(path);
            let mut bytes =
                std::fs::read(&path).map_err(|source| SecretError::File { which, path: path.clone(), source })?;
            // Out of every run of this process from now on.
            cordon::state::protect_from_now_on(cordon::Protected::file(
                &path,
                format!("this service's secret ({name}_FILE)"),
            ));
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
            }
            Ok(bytes)
        }
        (None, None) => Err(SecretError::Missing { which }),
    }
}

fn check(which: Which, value: &[u8]) -> Result<(), SecretError> {
    if DOCUMENTED_SECRETS.iter().any(|d| d.as_bytes() == value) {
        return Err(SecretError::Documented { which });
    }
    if value.len() < MIN_SECRET_BYTES {
        return Err(SecretError::TooShort { which, len: value.len() });
    }
    Ok(())
}

fn random_secret() -> Vec<u8> {
    crate::auth::random_hex(32).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_A: &str = "k3Jd9sLq0pW8xYz2vBn5mQ7rT1uE4oI6aS8dF0gH2jK";
    const GOOD_B: &str = "Zx8cV6bN4mL2kJ0hG8fD6sA4pO2iU0yT8rE6wQ4eR2t";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn good_secrets_load_and_each_bad_one_is_refused() {
        let ok = Secrets::load(&env(&[(JWT_ENV, GOOD_A), (INTERNAL_ENV, GOOD_B)]), Strictness::Refuse).unwrap();
        assert_eq!(ok.jwt, GOOD_A.as_bytes());
        assert!(ok.warnings.is_empty());
        let refused = |pairs: &[(&str, &str)]| Secrets::load(&env(pairs), Strictness::Refuse).unwrap_err();
        assert!(matches!(refused(&[(INTERNAL_ENV, GOOD_B)]), SecretError::Missing { which: Which::Jwt }));
        assert!(matches!(refused(&[(JWT_ENV, GOOD_A)]), SecretError::Missing { which: Which::Internal }));
        assert!(matches!(
            refused(&[(JWT_ENV, "short"), (INTERNAL_ENV, GOOD_B)]),
            SecretError::TooShort { which: Which::Jwt, len: 5 }
        ));
        assert!(matches!(
            refused(&[(JWT_ENV, GOOD_A), (INTERNAL_ENV, DOCUMENTED_SECRETS[0])]),
            SecretError::Documented { which: Which::Internal }
        ));
        assert!(matches!(refused(&[(JWT_ENV, GOOD_A), (INTERNAL_ENV, GOOD_A)]), SecretError::Equal));
        assert!(matches!(
            refused(&[(JWT_ENV, GOOD_A), ("CORDON_JWT_SECRET_FILE", "/x"), (INTERNAL_ENV, GOOD_B)]),
            SecretError::Ambiguous { which: Which::Jwt }
        ));
    }

    #[test]
    fn insecure_dev_warns_instead_and_invents_missing_secrets() {
        let s = Secrets::load(&env(&[(JWT_ENV, "short")]), Strictness::InsecureDev).unwrap();
        assert_eq!(s.jwt, b"short");
        assert_eq!(s.internal.len(), 64);
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
    }
}
