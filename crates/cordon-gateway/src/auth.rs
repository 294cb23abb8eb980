//! Who is calling: access tokens, static service tokens, client
//! credentials, refresh-token families and the internal secret (RFC 9700
//! and RFC 8725 practice).
//!
//! # Access tokens
//!
//! HS256 JWTs with header `typ: at+jwt` and the claims `iss`, `aud`, `sub`,
//! `tenant`, `iat`, `exp`, `jti` (plus `fam`, the refresh family, when the
//! token came from a refresh). [`Keys::verify_access`] pins the algorithm
//! (no `none`, no HS384/HS512, no RS256 with the HMAC secret as its "public
//! key"), requires every claim, checks `iss` and `aud`, refuses `exp - iat`
//! over one hour, an `iat` or `nbf` in the future, and tokens whose `jti` or
//! family was revoked. Each refusal names its reason.
//!
//! # Static credentials
//!
//! Service tokens and client secrets are configured as SHA-256 hashes; the
//! presented value is hashed and compared with *every* configured hash in
//! constant time ([`subtle`]), so the time taken says nothing about which
//! one, or how much of one, matched. A refresh token or the internal secret
//! presented as a bearer token is refused with a reason saying so.
//!
//! # Refresh tokens ([`RefreshStore`])
//!
//! Opaque (`crt_` + 64 hex digits), stored as their SHA-256, one-time use.
//! Each refresh rotates the token; the family keeps the absolute expiry of
//! its first token. Presenting a rotated token again within
//! [`REFRESH_GRACE`] returns the same successor (a client retrying a lost
//! response); later, it is taken as theft: the whole family is revoked,
//! with its access tokens, and the caller records one audit record. Other
//! families are untouched. The store is one mutex, so concurrent refreshes
//! of one token rotate it exactly once.
//!
//! The store is bounded per client: a client (tenant and principal) has at
//! most [`MAX_FAMILIES_PER_CLIENT`] live families, signing in once more
//! ends its oldest (its refresh token is refused, its access tokens run out
//! on their own), and a family remembers its last [`MAX_ROTATED`] rotated
//! tokens for reuse detection. Each family lists its tokens, so revoking
//! one removes those without walking the others. Every grant and refresh
//! also spends its tenant's rate (the route's business).
//!
//! State lives **in memory**: a restart forgets every refresh family, so
//! every client signs in again with its client credentials (access tokens
//! stay valid until they expire, and revocations are forgotten with them —
//! the reason access tokens live at most an hour, 15 minutes by default).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, MAX_ACCESS_TTL_S};

/// The `typ` header of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The prefix of refresh tokens, so one presented as a bearer token is told
/// apart.
pub const REFRESH_PREFIX: &str = "crt_";

/// The longest time a rotated refresh token still returns its successor
/// (the default of `[server] refresh_grace_ms`).
pub const REFRESH_GRACE: Duration = Duration::from_secs(10);

/// Clock skew tolerated on `iat`, `nbf` and `exp`, seconds.
pub const LEEWAY_S: u64 = 5;

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the kernel's random source is available");
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `value`.
pub fn sha256(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

/// Seconds since the epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// An authenticated caller of a `/v1` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The tenant.
    pub tenant: String,
    /// `client:NAME` or `token:NAME` (and `dispatch` for the internal seam).
    pub principal: String,
    /// The access token's `jti`; for a static token, `static:NAME`.
    pub jti: String,
}

/// Why a bearer credential is refused (401 with
/// `WWW-Authenticate: Bearer error="invalid_token"`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unauthorized(pub String);

/// The claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The principal.
    pub sub: String,
    /// The tenant.
    pub tenant: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Token id.
    pub jti: String,
    /// The refresh family, when issued from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
}

/// Claims as presented: every field optional, so a missing one is named.
#[derive(Deserialize)]
struct PresentedClaims {
    iss: Option<serde_json::Value>,
    aud: Option<serde_json::Value>,
    sub: Option<serde_json::Value>,
    tenant: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    jti: Option<serde_json::Value>,
    fam: Option<String>,
}

/// The keys and credentials the service checks against.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    internal_hash: [u8; 32],
    issuer: String,
    audience: String,
    access_ttl_s: u64,
    /// (hash, tenant, principal) of every static token.
    static_tokens: Vec<([u8; 32], String, String)>,
    /// client name → (tenant, secret hash).
    clients: HashMap<String, (String, [u8; 32])>,
    /// Revoked access-token ids and refresh families.
    revoked: Mutex<Revoked>,
}

/// Revoked ids, each with the time (seconds since the epoch) after which
/// every access token it can match has expired: then `exp` refuses them,
/// and [`Keys::sweep_revoked`] forgets the id.
#[derive(Default)]
struct Revoked {
    jtis: HashMap<String, u64>,
    families: HashMap<String, u64>,
}

impl Keys {
    /// Keys from the secrets and the configuration's credentials.
    pub fn new(jwt_secret: &[u8], internal_secret: &[u8], config: &Config) -> Keys {
        let mut static_tokens = vec![];
        let mut clients = HashMap::new();
        for t in &config.tenants {
            for (name, hash) in &t.tokens {
                static_tokens.push((*hash, t.name.clone(), format!("token:{name}")));
            }
            for (name, hash) in &t.clients {
                clients.insert(name.clone(), (t.name.clone(), *hash));
            }
        }
        Keys {
            encoding: EncodingKey::from_secret(jwt_secret),
            decoding: DecodingKey::from_secret(jwt_secret),
            internal_hash: sha256(internal_secret),
            issuer: config.server.issuer.clone(),
            audience: config.server.audience.clone(),
            access_ttl_s: config.server.access_ttl_s.min(MAX_ACCESS_TTL_S),
            static_tokens,
            clients,
            revoked: Mutex::new(Revoked::default()),
        }
    }

    /// The access token lifetime, seconds.
    pub fn access_ttl_s(&self) -> u64 {
        self.access_ttl_s
    }

    /// Issues an access token for `sub` of `tenant`.
    pub fn issue_access(&self, tenant: &str, sub: &str, fam: Option<&str>) -> (String, Claims) {
        let iat = now_s();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: sub.to_owned(),
            tenant: tenant.to_owned(),
            iat,
            exp: iat + self.access_ttl_s,
            jti: cordon::new_request_id(),
            fam: fam.map(str::to_owned),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding).expect("HS256 signing cannot fail");
        (token, claims)
    }

    /// Checks client credentials; returns the tenant. Compares in constant
    /// time, also for an unknown client id.
    pub fn check_client(&self, client_id: &str, secret: &str) -> Option<String> {
        let presented = sha256(secret.as_bytes());
        match self.clients.get(client_id) {
            Some((tenant, hash)) => bool::from(presented.ct_eq(hash)).then(|| tenant.clone()),
            None => {
                // The same work as a known client, so timing does not tell
                // which client ids exist.
                let _ = bool::from(presented.ct_eq(&[0u8; 32]));
                None
            }
        }
    }

    /// Whether `presented` is the internal dispatch secret (constant time).
    pub fn is_internal_secret(&self, presented: &str) -> bool {
        bool::from(sha256(presented.as_bytes()).ct_eq(&self.internal_hash))
    }

    /// Who `bearer` (an `Authorization: Bearer` value) is, for the `/v1`
    /// endpoints.
    pub fn authenticate(&self, bearer: &str) -> Result<Caller, Unauthorized> {
        if bearer.starts_with(REFRESH_PREFIX) {
            return Err(Unauthorized(
                "a refresh token is not an access token; exchange it at POST /v1/token (grant_type=refresh_token)"
                    .into(),
            ));
        }
        if bearer.split('.').count() == 3 {
            return self.verify_access(bearer);
        }
        let presented = sha256(bearer.as_bytes());
        // Every hash is compared, whichever matches.
        let mut found: Option<&(_, String, String)> = None;
        for entry in &self.static_tokens {
            if bool::from(presented.ct_eq(&entry.0)) {
                found = Some(entry);
            }
        }
        if let Some((_, tenant, principal)) = found {
            let name = principal.trim_start_matches("token:");
            return Ok(Caller { tenant: tenant.clone(), principal: principal.clone(), jti: format!("static:{name}") });
        }
        if self.is_internal_secret(bearer) {
            return Err(Unauthorized("the internal secret is accepted only at /internal/dispatch".into()));
        }
        Err(Unauthorized("unknown token: neither an access token (JWT) nor a configured service token".into()))
    }

    /// Verifies an access token; see the module docs for every check.
    pub fn verify_access(&self, token: &str) -> Result<Caller, Unauthorized> {
        let deny = |m: &str| Err(Unauthorized(m.to_owned()));
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(e) => {
                return Err(Unauthorized(format!(
                    "malformed token header ({e}); only HS256 access tokens are accepted (alg `none` and others are refused)"
                )))
            }
        };
        if header.alg != Algorithm::HS256 {
            return Err(Unauthorized(format!("algorithm {:?} is not accepted; access tokens are HS256", header.alg)));
        }
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return Err(Unauthorized(format!(
                "header typ is {}; access tokens have typ `{ACCESS_TOKEN_TYP}`",
                header.typ.as_deref().map_or("missing".into(), |t| format!("`{t}`"))
            )));
        }
        // Signature first, with every claim check of the library off: the
        // claims are checked below, one by one, so each refusal has a name.
        let mut v = Validation::new(Algorithm::HS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        let data = match jsonwebtoken::decode::<PresentedClaims>(token, &self.decoding, &v) {
            Ok(d) => d,
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                return match e.kind() {
                    ErrorKind::InvalidSignature => deny("signature does not verify with the service's key"),
                    _ => Err(Unauthorized(format!("malformed token: {e}"))),
                };
            }
        };
        let c = data.claims;
        let string = |name: &str, v: &Option<serde_json::Value>| -> Result<String, Unauthorized> {
            match v {
                None => Err(Unauthorized(format!("claim `{name}` is missing"))),
                Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => Err(Unauthorized(format!("claim `{name}` must be a non-empty string"))),
            }
        };
        let number = |name: &str, v: &Option<serde_json::Value>| -> Result<u64, Unauthorized> {
            match v {
                None => Err(Unauthorized(format!("claim `{name}` is missing"))),
                Some(v) => v.as_u64().ok_or_else(|| Unauthorized(format!("claim `{name}` must be a whole number"))),
            }
        };
        let iss = string("iss", &c.iss)?;
        let aud = string("aud", &c.aud)?;
        let sub = string("sub", &c.sub)?;
        let tenant = string("tenant", &c.tenant)?;
        let jti = string("jti", &c.jti)?;
        let iat = number("iat", &c.iat)?;
        let exp = number("exp", &c.exp)?;
        if iss != self.issuer {
            return Err(Unauthorized(format!("issuer (iss) `{iss}` is not `{}`", self.issuer)));
        }
        if aud != self.audience {
            return Err(Unauthorized(format!("audience (aud) `{aud}` is not `{}`", self.audience)));
        }
        if exp <= iat {
            return deny("exp is not after iat");
        }
        if exp - iat > MAX_ACCESS_TTL_S {
            return Err(Unauthorized(format!("lifetime exp - iat = {} s exceeds {MAX_ACCESS_TTL_S} s", exp - iat)));
        }
        let now = now_s();
        if iat > now + LEEWAY_S {
            return deny("issued in the future (iat)");
        }
        if exp + LEEWAY_S <= now {
            return deny("token expired (exp)");
        }
        if let Some(nbf) = &c.nbf {
            let nbf = nbf.as_u64().ok_or_else(|| Unauthorized("claim `nbf` must be a whole number".into()))?;
            if nbf > now + LEEWAY_S {
                return deny("token not valid yet (nbf is in the future)");
            }
        }
        {
            let revoked = self.revoked.lock().expect("revocation set lock");
            if revoked.jtis.contains_key(&jti) || c.fam.as_ref().is_some_and(|f| revoked.families.contains_key(f)) {
                return deny("token revoked");
            }
        }
        Ok(Caller { tenant, principal: sub, jti })
    }

    /// Revokes a refresh family's access tokens (and `jtis` by id).
    pub fn revoke(&self, family: &str, jtis: &[String]) {
        self.revoke_at(family, jtis, now_s());
    }

    fn revoke_at(&self, family: &str, jtis: &[String], now: u64) {
        // Every token of the family was issued by now, so it expires
        // (leeway included) before this.
        let forget_after = now + self.access_ttl_s + LEEWAY_S;
        let mut r = self.revoked.lock().expect("revocation set lock");
        r.families.insert(family.to_owned(), forget_after);
        r.jtis.extend(jtis.iter().map(|j| (j.clone(), forget_after)));
    }

    /// Forgets revocations whose tokens have all expired (the revocation
    /// set would otherwise grow until a restart). The service calls it
    /// every minute.
    pub fn sweep_revoked(&self) {
        self.sweep_revoked_at(now_s());
    }

    fn sweep_revoked_at(&self, now: u64) {
        let mut r = self.revoked.lock().expect("revocation set lock");
        r.jtis.retain(|_, t| *t >= now);
        r.families.retain(|_, t| *t >= now);
    }
}

/// A token response (RFC 6749 §5.1).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access token lifetime, seconds.
    pub expires_in: u64,
    /// The next refresh token.
    pub refresh_token: String,
}

/// What happened to a presented refresh token.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    /// Rotated (or a retry within the grace window): the new pair.
    Rotated(TokenResponse),
    /// Not a refresh token the store knows (or one whose family was
    /// revoked or has expired): `invalid_grant`, with the reason.
    Invalid(&'static str),
    /// A rotated token came back after the grace window: the family and
    /// its access tokens are revoked. The caller writes one audit record.
    ReuseDetected {
        /// The family.
        family: String,
        /// Its tenant.
        tenant: String,
        /// Its principal.
        principal: String,
    },
}

struct Family {
    tenant: String,
    /// The key of its client in [`Store::clients`].
    client: String,
    principal: String,
    /// Absolute expiry, seconds since the epoch; rotation never moves it.
    expires: u64,
    /// The hashes of its tokens in [`Store::tokens`], oldest first: at most
    /// [`MAX_ROTATED`] rotated ones, then the current one. Revoking the
    /// family removes these, without walking every token of every family.
    tokens: VecDeque<[u8; 32]>,
}

enum TokenState {
    /// The family's current token.
    Current,
    /// Replaced at `at` (ms since the epoch clock used by the store) by
    /// `successor`, whose response is kept for the grace window only.
    Rotated { at_ms: u64, response: Option<TokenResponse> },
}

struct Entry {
    family: String,
    state: TokenState,
}

/// Why a refresh token the store does not hold is refused.
const UNKNOWN_REFRESH: &str = "unknown refresh token: revoked, past its session's lifetime, rotated long ago, or its \
     session was ended because the client signed in more than 100 times since (or never issued); sign in again with \
     the client credentials";

/// The most refresh families one client (tenant and principal) has live:
/// signing in once more ends its oldest (its refresh token is refused
/// from then on; its access tokens run out within `access_ttl_s`). A
/// client that signs in again and again without refreshing, or many
/// instances sharing one client id, stay within this; a flood of grants
/// does not grow the store.
pub const MAX_FAMILIES_PER_CLIENT: usize = 100;

/// The most rotated tokens a family remembers, so that one presented again
/// is seen as reuse (theft) and revokes the family. A token rotated more
/// than this many times ago is no longer known: `invalid_grant`, and the
/// family lives on. A refresh family rotated every few minutes over its
/// whole lifetime stays within a few kilobytes.
pub const MAX_ROTATED: usize = 32;

#[derive(Default)]
struct Store {
    /// By the token's SHA-256.
    tokens: HashMap<[u8; 32], Entry>,
    families: HashMap<String, Family>,
    /// The live families of each client, oldest first.
    clients: HashMap<String, VecDeque<String>>,
}

impl Store {
    /// Forgets `family` and its tokens; returns it.
    fn remove(&mut self, family: &str) -> Option<Family> {
        let f = self.families.remove(family)?;
        for hash in &f.tokens {
            self.tokens.remove(hash);
        }
        if let Some(live) = self.clients.get_mut(&f.client) {
            live.retain(|id| id != family);
            if live.is_empty() {
                self.clients.remove(&f.client);
            }
        }
        Some(f)
    }
}

/// Refresh-token families, in memory (see the module docs).
pub struct RefreshStore {
    inner: Mutex<Store>,
    grace_ms: u64,
}

impl Default for RefreshStore {
    fn default() -> Self {
        RefreshStore::new(REFRESH_GRACE)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl RefreshStore {
    /// A store whose rotated tokens return their successor for `grace`
    /// (capped at [`REFRESH_GRACE`]).
    pub fn new(grace: Duration) -> RefreshStore {
        let grace = grace.min(REFRESH_GRACE);
        RefreshStore { inner: Mutex::default(), grace_ms: u64::try_from(grace.as_millis()).unwrap_or(10_000) }
    }

    /// Starts a family for a client that signed in; returns the first pair.
    /// The client's oldest family ends if it has
    /// [`MAX_FAMILIES_PER_CLIENT`] already.
    pub fn start(&self, keys: &Keys, tenant: &str, principal: &str, lifetime_s: u64) -> TokenResponse {
        self.start_at(keys, tenant, principal, lifetime_s, now_ms())
    }

    fn start_at(&self, keys: &Keys, tenant: &str, principal: &str, lifetime_s: u64, now_ms: u64) -> TokenResponse {
        let family = cordon::new_request_id();
        // Tenant names are tokens (no `/`), so the key is unambiguous.
        let client = format!("{tenant}/{principal}");
        let (access, _) = keys.issue_access(tenant, principal, Some(&family));
        let refresh = format!("{REFRESH_PREFIX}{}", random_hex(32));
        let hash = sha256(refresh.as_bytes());
        let mut store = self.inner.lock().expect("refresh store lock");
        while store.clients.get(&client).is_some_and(|live| live.len() >= MAX_FAMILIES_PER_CLIENT) {
            let Some(oldest) = store.clients.get(&client).and_then(|live| live.front().cloned()) else { break };
            store.remove(&oldest);
        }
        store.families.insert(
            family.clone(),
            Family {
                tenant: tenant.into(),
                client: client.clone(),
                principal: principal.into(),
                expires: now_ms / 1000 + lifetime_s,
                tokens: VecDeque::from([hash]),
            },
        );
        store.clients.entry(client).or_default().push_back(family.clone());
        store.tokens.insert(hash, Entry { family, state: TokenState::Current });
        TokenResponse {
            access_token: access,
            token_type: "Bearer",
            expires_in: keys.access_ttl_s(),
            refresh_token: refresh,
        }
    }

    /// The tenant whose family `token` belongs to, if the store knows it
    /// (live, not expired): whose rate bucket a refresh spends.
    pub fn tenant_of(&self, token: &str) -> Option<String> {
        let now_s = now_ms() / 1000;
        let store = self.inner.lock().expect("refresh store lock");
        let entry = store.tokens.get(&sha256(token.as_bytes()))?;
        store.families.get(&entry.family).filter(|f| now_s < f.expires).map(|f| f.tenant.clone())
    }

    /// Exchanges `token`; see [`Refresh`].
    pub fn refresh(&self, keys: &Keys, token: &str) -> Refresh {
        self.refresh_at(keys, token, now_ms())
    }

    fn refresh_at(&self, keys: &Keys, token: &str, now_ms: u64) -> Refresh {
        let hash = sha256(token.as_bytes());
        let mut store = self.inner.lock().expect("refresh store lock");
        let Store { tokens, families, .. } = &mut *store;
        let Some(entry) = tokens.get_mut(&hash) else { return Refresh::Invalid(UNKNOWN_REFRESH) };
        let Some(family) = families.get_mut(&entry.family) else { return Refresh::Invalid(UNKNOWN_REFRESH) };
        if now_ms / 1000 >= family.expires {
            return Refresh::Invalid("this session reached its absolute lifetime; sign in again");
        }
        match &mut entry.state {
            TokenState::Rotated { at_ms, response } => {
                if now_ms.saturating_sub(*at_ms) < self.grace_ms {
                    if let Some(r) = response {
                        return Refresh::Rotated(r.clone());
                    }
                }
                // Reuse after the grace window: someone holds a copy. Every
                // access token of the family carries it (`fam`).
                let fam = entry.family.clone();
                keys.revoke(&fam, &[]);
                let out = Refresh::ReuseDetected {
                    family: fam.clone(),
                    tenant: family.tenant.clone(),
                    principal: family.principal.clone(),
                };
                store.remove(&fam);
                out
            }
            TokenState::Current => {
                let (access, _) = keys.issue_access(&family.tenant, &family.principal, Some(&entry.family));
                let refresh = format!("{REFRESH_PREFIX}{}", random_hex(32));
                let response = TokenResponse {
                    access_token: access,
                    token_type: "Bearer",
                    expires_in: keys.access_ttl_s(),
                    refresh_token: refresh.clone(),
                };
                entry.state = TokenState::Rotated { at_ms: now_ms, response: Some(response.clone()) };
                let next = sha256(refresh.as_bytes());
                let fam = entry.family.clone();
                family.tokens.push_back(next);
                // The current token and at most MAX_ROTATED rotated ones.
                while family.tokens.len() > MAX_ROTATED + 1 {
                    if let Some(old) = family.tokens.pop_front() {
                        tokens.remove(&old);
                    }
                }
                tokens.insert(next, Entry { family: fam, state: TokenState::Current });
                Refresh::Rotated(response)
            }
        }
    }

    /// Revokes the family of `token` (RFC 7009); unknown tokens are
    /// ignored. Returns the family if one was revoked now.
    pub fn revoke(&self, keys: &Keys, token: &str) -> Option<String> {
        let hash = sha256(token.as_bytes());
        let mut store = self.inner.lock().expect("refresh store lock");
        let fam = store.tokens.get(&hash)?.family.clone();
        store.remove(&fam)?;
        keys.revoke(&fam, &[]);
        Some(fam)
    }

    /// Drops families past their absolute lifetime, and the successor
    /// responses kept for retries once their grace window is over. The
    /// service calls it every minute.
    pub fn sweep(&self) {
        let now_ms = now_ms();
        let mut store = self.inner.lock().expect("refresh store lock");
        let expired: Vec<String> =
            store.families.iter().filter(|(_, f)| f.expires <= now_ms / 1000).map(|(id, _)| id.clone()).collect();
        for id in expired {
            store.remove(&id);
        }
        for e in store.tokens.values_mut() {
            if let TokenState::Rotated { at_ms, response } = &mut e.state {
                if now_ms.saturating_sub(*at_ms) >= self.grace_ms {
                    *response = None;
                }
            }
        }
    }

    /// Live families and tokens held (for tests).
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let store = self.inner.lock().expect("refresh store lock");
        (store.families.len(), store.tokens.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&[7u8; 32], &[8u8; 32], &Config::empty())
    }

    #[test]
    fn rotation_is_one_time_with_a_grace_window_and_reuse_kills_only_that_family() {
        let k = keys();
        let store = RefreshStore::default();
        let t0 = 1_000_000_000;
        let a1 = store.start_at(&k, "acme", "client:ci", 3600, t0);
        let b1 = store.start_at(&k, "acme", "client:ci", 3600, t0);
        let Refresh::Rotated(a2) = store.refresh_at(&k, &a1.refresh_token, t0 + 1000) else { panic!() };
        assert_ne!(a2.refresh_token, a1.refresh_token);
        // A retry inside the grace window gets the very same successor.
        let Refresh::Rotated(again) = store.refresh_at(&k, &a1.refresh_token, t0 + 5000) else { panic!() };
        assert_eq!(again, a2);
        // After it: reuse, the family dies with its access tokens.
        let reuse = store.refresh_at(&k, &a1.refresh_token, t0 + 1000 + 10_000);
        assert!(matches!(reuse, Refresh::ReuseDetected { .. }), "{reuse:?}");
        assert!(matches!(store.refresh_at(&k, &a2.refresh_token, t0 + 12_000), Refresh::Invalid(_)));
        assert_eq!(k.verify_access(&a2.access_token).unwrap_err().0, "token revoked");
        assert_eq!(k.verify_access(&a1.access_token).unwrap_err().0, "token revoked");
        // The other family is untouched.
        assert!(k.verify_access(&b1.access_token).is_ok());
        assert!(matches!(store.refresh_at(&k, &b1.refresh_token, t0 + 12_000), Refresh::Rotated(_)));
    }

    #[test]
    fn rotation_never_extends_the_family_lifetime() {
        let k = keys();
        let store = RefreshStore::default();
        let t0 = 2_000_000_000;
        let mut r = store.start_at(&k, "acme", "client:ci", 60, t0);
        for i in 1..6 {
            match store.refresh_at(&k, &r.refresh_token, t0 + i * 10_000) {
                Refresh::Rotated(next) => r = next,
                other => panic!("rotation {i}: {other:?}"),
            }
        }
        assert_eq!(
            store.refresh_at(&k, &r.refresh_token, t0 + 60_000),
            Refresh::Invalid("this session reached its absolute lifetime; sign in again")
        );
    }

    #[test]
    fn revocations_are_forgotten_once_every_token_they_match_has_expired() {
        let k = keys();
        let t0 = 1_000_000_000;
        k.revoke_at("early-family", &["early-jti".to_owned()], t0);
        k.revoke_at("later-family", &["later-jti".to_owned()], t0 + 10);
        let held = |k: &Keys, jti: &str, fam: &str| {
            let r = k.revoked.lock().unwrap();
            (r.jtis.contains_key(jti), r.families.contains_key(fam))
        };
        // Not while a token could still pass `exp` (leeway included)...
        k.sweep_revoked_at(t0 + k.access_ttl_s() + LEEWAY_S);
        assert_eq!(held(&k, "early-jti", "early-family"), (true, true));
        // ... then yes, and only the revocations whose tokens all expired.
        k.sweep_revoked_at(t0 + k.access_ttl_s() + LEEWAY_S + 1);
        assert_eq!(held(&k, "early-jti", "early-family"), (false, false));
        assert_eq!(held(&k, "later-jti", "later-family"), (true, true));
    }

    #[test]
    fn a_client_keeps_at_most_max_families_the_oldest_ending_first() {
        let k = keys();
        let store = RefreshStore::default();
        let first = store.start(&k, "acme", "client:ci", 3600);
        let second = store.start(&k, "acme", "client:ci", 3600);
        let other = store.start(&k, "beta", "client:ci", 3600);
        for _ in 0..MAX_FAMILIES_PER_CLIENT - 1 {
            store.start(&k, "acme", "client:ci", 3600);
        }
        // acme's client has MAX + 1 started: the first ended, the second not.
        assert_eq!(store.refresh(&k, &first.refresh_token), Refresh::Invalid(UNKNOWN_REFRESH));
        assert!(matches!(store.refresh(&k, &second.refresh_token), Refresh::Rotated(_)));
        // Another tenant's client of the same name is another client.
        assert!(matches!(store.refresh(&k, &other.refresh_token), Refresh::Rotated(_)));
        // Ending a family for room is not a revocation: its access token
        // runs out on its own.
        assert!(k.verify_access(&first.access_token).is_ok());
        for _ in 0..10 * MAX_FAMILIES_PER_CLIENT {
            store.start(&k, "acme", "client:ci", 3600);
        }
        // acme's MAX, beta's one, each with its current and one rotated token
        // at most.
        let (families, tokens) = store.held();
        assert_eq!(families, MAX_FAMILIES_PER_CLIENT + 1);
        assert!(tokens <= families + 2, "{tokens}");
        assert!(UNKNOWN_REFRESH.contains(&format!("more than {MAX_FAMILIES_PER_CLIENT} times")));
    }

    #[test]
    fn a_family_remembers_its_last_rotated_tokens_and_revoking_it_forgets_them_all() {
        let k = keys();
        let store = RefreshStore::default();
        let t0 = 1_000_000_000;
        let mut seen = vec![store.start_at(&k, "acme", "client:ci", 86_400, t0)];
        let bystander = store.start_at(&k, "acme", "client:ops", 86_400, t0);
        for i in 1..=(MAX_ROTATED as u64 + 5) {
            match store.refresh_at(&k, &seen.last().unwrap().refresh_token, t0 + i * 20_000) {
                Refresh::Rotated(next) => seen.push(next),
                other => panic!("rotation {i}: {other:?}"),
            }
        }
        // One current and MAX_ROTATED rotated tokens, plus the bystander's.
        assert_eq!(store.held(), (2, MAX_ROTATED + 1 + 1));
        let late = t0 + 10_000_000;
        // Rotated long ago: forgotten, refused, the family lives on.
        assert_eq!(store.refresh_at(&k, &seen[0].refresh_token, late), Refresh::Invalid(UNKNOWN_REFRESH));
        // Among the last MAX_ROTATED: reuse, the family and its access
        // tokens are revoked, its tokens forgotten; the bystander stays.
        let recent = &seen[seen.len() - 2];
        assert!(matches!(store.refresh_at(&k, &recent.refresh_token, late), Refresh::ReuseDetected { .. }));
        assert_eq!(store.held(), (1, 1));
        assert_eq!(k.verify_access(&seen[0].access_token).unwrap_err().0, "token revoked");
        assert_eq!(store.refresh_at(&k, &seen.last().unwrap().refresh_token, late), Refresh::Invalid(UNKNOWN_REFRESH));
        assert!(store.revoke(&k, &bystander.refresh_token).is_some());
        assert_eq!(store.held(), (0, 0));
    }

    #[test]
    fn revocation_covers_the_family_and_ignores_unknown_tokens() {
        let k = keys();
        let store = RefreshStore::default();
        let a = store.start(&k, "acme", "client:ci", 3600);
        assert!(store.revoke(&k, "crt_unknown").is_none());
        assert!(store.revoke(&k, &a.refresh_token).is_some());
        assert!(matches!(store.refresh(&k, &a.refresh_token), Refresh::Invalid(_)));
        assert_eq!(k.verify_access(&a.access_token).unwrap_err().0, "token revoked");
    }
}
