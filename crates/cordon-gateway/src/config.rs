//! The service's configuration file: tenants, their clients, service tokens
//! and quotas (DESIGN.md "Gateway contract"), plus the service's own limits
//! under `[server]`.
//!
//! Parsing is strict: an unknown key, a value of the wrong type, a quota out
//! of range or a hash that is not 64 hex digits is an error naming the file,
//! the line and the column, with a hint. Every `[server]` key has a default,
//! listed on [`Server`].
//!
//! ```toml
//! [server]
//! home = "/var/lib/cordon"        # plugins installed with `cordon plugin install`
//!
//! [tenants.acme]
//! max_concurrent = 4
//! rate_per_sec = 50
//! [tenants.acme.clients.ci]
//! secret_sha256 = "<64 hex digits>"
//! [tenants.acme.tokens.deploy]
//! sha256 = "<64 hex digits>"
//!
//! [queue]                          # with `cordon serve --queue`
//! result_keys = "/etc/cordon/result-keys"   # *.pub of each worker's --result-key
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// The configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the configuration {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key or value is wrong.
    #[error("{}:{line}:{column}: {message}\n  {line} | {source_line}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
        /// The offending line.
        source_line: String,
        /// What to do.
        hint: Option<String>,
    },
}

impl ConfigError {
    /// What to do about it.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => Some("pass --config FILE with a readable TOML file"),
            ConfigError::Invalid { hint, .. } => hint.as_deref(),
        }
    }
}

/// A tenant's quotas and credentials.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// Its name (the key under `[tenants]`).
    pub name: String,
    /// Executions queued or running at once; more are answered 429.
    pub max_concurrent: u32,
    /// Requests per second (token bucket; the bucket holds one second's worth).
    pub rate_per_sec: u32,
    /// Client credentials: name and SHA-256 of the secret.
    pub clients: Vec<(String, [u8; 32])>,
    /// Static service tokens: name and SHA-256 of the token.
    pub tokens: Vec<(String, [u8; 32])>,
}

/// The service's own settings (`[server]`). Every field has a default.
#[derive(Clone, Debug)]
pub struct Server {
    /// Where installed plugins come from: cordon's home (`cordon plugin
    /// install`), default `$CORDON_HOME`, else `$XDG_DATA_HOME/cordon`.
    pub home: Option<PathBuf>,
    /// Instead of the registry: a folder of plugin folders (each holding a
    /// `cordon.toml`), run unsigned; for development and tests.
    pub plugins: Option<PathBuf>,
    /// With `plugins`: ids that are listed but refused (`enabled: false`).
    /// Registry plugins are disabled with `cordon plugin disable`.
    pub disabled: Vec<String>,
    /// The audit log. Default: as `cordon exec` (`$CORDON_AUDIT_LOG`, else
    /// the state directory).
    pub audit_log: Option<PathBuf>,
    /// Where runs create their own folders, in its `cordon-runs-UID`
    /// (protected from every run but for each run's own folder). Default:
    /// cordon's state folder, else `/var/tmp`
    /// ([`cordon::state::default_run_root`]).
    pub run_root: PathBuf,
    /// The sandbox tier; default: container where the host supports the
    /// plugin's policy, else process.
    pub mode: Option<cordon::Mode>,
    /// Executions running at once, service-wide (worker threads). Default 4.
    pub workers: u32,
    /// Accepted executions waiting for a worker; beyond it, 503. Default 256.
    pub queue: u32,
    /// `iss` and `aud` of the access tokens. Default `cordon`.
    pub issuer: String,
    /// `aud` of the access tokens. Default `cordon`.
    pub audience: String,
    /// Access token lifetime, seconds, at most 3600. Default 900.
    pub access_ttl_s: u64,
    /// Absolute lifetime of a refresh-token family, seconds; rotation never
    /// extends it. Default 86400.
    pub refresh_ttl_s: u64,
    /// How long a rotated refresh token still returns its successor
    /// (a client retrying a lost response), ms; at most 10000, the default.
    pub refresh_grace_ms: u64,
    /// Largest request body, bytes. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers), bytes; beyond it,
    /// 431. Default 16 KiB.
    pub max_header_bytes: usize,
    /// A client must send its whole request head within this, ms; also the
    /// idle time of a kept-alive connection. Default 10000.
    pub header_timeout_ms: u64,
    /// A client must send a request's whole body within this, ms, from the
    /// end of its head; past it, 408 and the connection is closed.
    /// Default 10000.
    pub body_timeout_ms: u64,
    /// Connections served at once; more wait in the listen backlog until
    /// one closes. Default (`None`): half the open files limit (which the
    /// service raises to its hard limit at start), at least 16 and at most
    /// 65536, so the other half stays for executions (pipes, pidfds,
    /// memory files, run folders) and the audit log.
    pub max_connections: Option<u32>,
    /// Connections one peer may have open at once (an IPv4 address, or the
    /// /64 of an IPv6 address); more are answered 503 `too_many_connections`
    /// and closed. Default (`None`): an eighth of `max_connections`, at
    /// least 16 (and at most `max_connections`), so no one peer holds every
    /// connection the service serves.
    pub max_connections_per_peer: Option<u32>,
    /// Peers not held to `max_connections_per_peer` (addresses or ranges
    /// such as `"10.0.0.0/8"`). Default: loopback (`127.0.0.0/8`, `::1`):
    /// a reverse proxy on the same host (how the README serves TLS) is one
    /// peer for all its clients, and a peer on the host could do more harm
    /// than hold connections. `[]` holds every peer to the cap; list a
    /// reverse proxy on another host here.
    pub peer_cap_exempt: Vec<crate::conn::Net>,
    /// A response the client takes no byte of for this long (its receive
    /// window stays shut) closes the connection, ms; every byte it takes
    /// starts the wait over, so a slow client that keeps reading is never
    /// cut. Default 10000.
    pub send_timeout_ms: u64,
    /// Longest `wait_ms` a request may ask for. Default 60000.
    pub max_wait_ms: u64,
    /// Results kept per tenant; the oldest finished ones go first. Default 1000.
    pub results_per_tenant: u32,
    /// How long a finished result is kept, seconds. Default 3600.
    pub result_ttl_s: u64,
    /// How long SIGTERM waits for in-flight executions before cancelling
    /// them, ms. Default 30000.
    pub shutdown_timeout_ms: u64,
    /// Sandboxes kept parked per plugin version and handler in use (the
    /// warm pool, see `crate::pool`); 0, the default, turns the pool off.
    pub pool_size: u32,
    /// A parked sandbox unused this long is killed, and a plugin handler
    /// unused this long is no longer kept parked, ms. Default 60000.
    pub pool_ttl_ms: u64,
}

/// The queue's settings in the file (`[queue]`, used with `--queue`).
#[derive(Clone, Debug, Default)]
pub struct QueueConfig {
    /// A folder of public keys (`*.pub`, from `cordon key gen`): a stored
    /// result is answered only when one of them (or the gateway's own
    /// `--result-key`) signed it. Required with `--queue` unless
    /// `--insecure-dev`.
    pub result_keys: Option<PathBuf>,
}

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (for messages).
    pub path: Option<PathBuf>,
    /// `[server]`.
    pub server: Server,
    /// `[queue]`.
    pub queue: QueueConfig,
    /// `[tenants.*]`, sorted by name.
    pub tenants: Vec<Tenant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: Option<RawServer>,
    #[serde(default)]
    tenants: BTreeMap<Spanned<String>, RawTenant>,
    #[serde(default)]
    queue: Option<RawQueue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    result_keys: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    home: Option<PathBuf>,
    plugins: Option<PathBuf>,
    #[serde(default)]
    disabled: Vec<String>,
    audit_log: Option<PathBuf>,
    run_root: Option<Spanned<PathBuf>>,
    mode: Option<Spanned<String>>,
    workers: Option<Spanned<u64>>,
    queue: Option<Spanned<u64>>,
    issuer: Option<String>,
    audience: Option<String>,
    access_ttl_s: Option<Spanned<u64>>,
    refresh_ttl_s: Option<Spanned<u64>>,
    refresh_grace_ms: Option<Spanned<u64>>,
    max_body_bytes: Option<Spanned<u64>>,
    max_header_bytes: Option<Spanned<u64>>,
    header_timeout_ms: Option<Spanned<u64>>,
    body_timeout_ms: Option<Spanned<u64>>,
    max_connections: Option<Spanned<u64>>,
    max_connections_per_peer: Option<Spanned<u64>>,
    peer_cap_exempt: Option<Vec<Spanned<String>>>,
    send_timeout_ms: Option<Spanned<u64>>,
    max_wait_ms: Option<Spanned<u64>>,
    results_per_tenant: Option<Spanned<u64>>,
    result_ttl_s: Option<Spanned<u64>>,
    shutdown_timeout_ms: Option<Spanned<u64>>,
    pool_size: Option<Spanned<u64>>,
    pool_ttl_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    max_concurrent: Spanned<u64>,
    rate_per_sec: Spanned<u64>,
    #[serde(default)]
    clients: BTreeMap<Spanned<String>, RawClient>,
    #[serde(default)]
    tokens: BTreeMap<Spanned<String>, RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    secret_sha256: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    sha256: Spanned<String>,
}

struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>, hint: Option<&str>) -> ConfigError {
        let (line, column, source_line) = cordon::plugin::locate(self.text, span.start);
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            message: message.into(),
            source_line,
            hint: hint.map(str::to_owned),
        }
    }

    fn ranged(
        &self,
        v: &Option<Spanned<u64>>,
        name: &str,
        min: u64,
        max: u64,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) if (min..=max).contains(s.get_ref()) => Ok(*s.get_ref()),
            Some(s) => Err(self.error(
                s.span(),
                format!("{name} = {} is out of range", s.get_ref()),
                Some(&format!("{name} accepts {min} to {max}")),
            )),
        }
    }
}

/// The longest access token lifetime RFC 9700 practice and DESIGN.md allow.
pub const MAX_ACCESS_TTL_S: u64 = 3600;

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        // It names the clients' secrets' hashes and what each tenant may
        // run: out of every run of this process from now on.
        cordon::state::protect_from_now_on(cordon::Protected::file(path, "this service's configuration"));
        Config::parse(&text, path)
    }

    /// A configuration with no tenants and every default (only
    /// `/internal/dispatch` and the open endpoints are useful with it).
    pub fn empty() -> Config {
        Config::parse("", Path::new("(defaults)")).expect("the empty configuration is valid")
    }

    /// Validates `text`, read from `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let src = Source { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end().to_owned();
            let hint = if message.starts_with("unknown field") {
                Some("remove it, or check its spelling against the keys listed")
            } else if message.starts_with("missing field") {
                Some("each [tenants.NAME] needs max_concurrent and rate_per_sec; clients need secret_sha256, tokens sha256")
            } else {
                None
            };
            src.error(e.span().unwrap_or(0..0), message, hint)
        })?;
        let s = raw.server.unwrap_or_else(|| toml::from_str("").expect("all [server] keys are optional"));
        let mode = match &s.mode {
            None => None,
            Some(m) => Some(m.get_ref().parse::<cordon::Mode>().map_err(|_| {
                src.error(
                    m.span(),
                    format!("mode = \"{}\" is not a mode", m.get_ref()),
                    Some("use \"container\" or \"process\""),
                )
            })?),
        };
        if mode == Some(cordon::Mode::Dev) {
            let m = s.mode.as_ref().expect("set");
            return Err(src.error(
                m.span(),
                "mode = \"dev\" enforces nothing and is refused for a service",
                Some("use \"container\" or \"process\""),
            ));
        }
        let run_root = match &s.run_root {
            None => cordon::state::default_run_root(),
            Some(r) => {
                if let Some(mode) = writable_by_everyone(r.get_ref()) {
                    return Err(src.error(
                        r.span(),
                        format!(
                            "run_root = \"{}\" is a folder every user may write (mode {mode:o}): a run of any cordon whose grant covers it (`cordon run --write {}`) could list and change this service's run folders, which only this service's own runs are kept out of, and another user could make their folder first",
                            r.get_ref().display(),
                            r.get_ref().display()
                        ),
                        Some("leave run_root out (the default, cordon's state folder, is out of every run's reach), or name a folder only this user may write, outside every grant (e.g. /var/lib/cordon/runs)"),
                    ));
                }
                r.get_ref().clone()
            }
        };
        let usize_of = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let server = Server {
            home: s.home.clone(),
            plugins: s.plugins.clone(),
            disabled: s.disabled.clone(),
            audit_log: s.audit_log.clone(),
            run_root,
            mode,
            workers: u32::try_from(src.ranged(&s.workers, "workers", 1, 256, 4)?).unwrap_or(4),
            queue: u32::try_from(src.ranged(&s.queue, "queue", 1, 1_000_000, 256)?).unwrap_or(256),
            issuer: s.issuer.clone().unwrap_or_else(|| "cordon".into()),
            audience: s.audience.clone().unwrap_or_else(|| "cordon".into()),
            access_ttl_s: src.ranged(&s.access_ttl_s, "access_ttl_s", 1, MAX_ACCESS_TTL_S, 900)?,
            refresh_ttl_s: src.ranged(&s.refresh_ttl_s, "refresh_ttl_s", 1, 90 * 86400, 86400)?,
            refresh_grace_ms: src.ranged(&s.refresh_grace_ms, "refresh_grace_ms", 0, 10_000, 10_000)?,
            max_body_bytes: usize_of(src.ranged(&s.max_body_bytes, "max_body_bytes", 1024, 64 << 20, 1 << 20)?),
            max_header_bytes: usize_of(src.ranged(&s.max_header_bytes, "max_header_bytes", 8192, 1 << 20, 16 << 10)?),
            header_timeout_ms: src.ranged(&s.header_timeout_ms, "header_timeout_ms", 100, 600_000, 10_000)?,
            body_timeout_ms: src.ranged(&s.body_timeout_ms, "body_timeout_ms", 100, 600_000, 10_000)?,
            max_connections: match &s.max_connections {
                None => None,
                Some(_) => u32::try_from(src.ranged(&s.max_connections, "max_connections", 1, 1 << 20, 0)?).ok(),
            },
            max_connections_per_peer: match &s.max_connections_per_peer {
                None => None,
                Some(_) => {
                    u32::try_from(src.ranged(&s.max_connections_per_peer, "max_connections_per_peer", 1, 1 << 20, 0)?)
                        .ok()
                }
            },
            peer_cap_exempt: match &s.peer_cap_exempt {
                None => vec!["127.0.0.0/8".parse().expect("a range"), "::1".parse().expect("an address")],
                Some(list) => list
                    .iter()
                    .map(|n| {
                        n.get_ref().parse().map_err(|e: String| {
                            src.error(
                                n.span(),
                                format!("peer_cap_exempt: {e}"),
                                Some("write an address (\"10.1.2.3\", \"::1\") or a range (\"10.0.0.0/8\")"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            },
            send_timeout_ms: src.ranged(&s.send_timeout_ms, "send_timeout_ms", 100, 600_000, 10_000)?,
            max_wait_ms: src.ranged(&s.max_wait_ms, "max_wait_ms", 0, 3_600_000, 60_000)?,
            results_per_tenant: u32::try_from(src.ranged(
                &s.results_per_tenant,
                "results_per_tenant",
                1,
                10_000_000,
                1000,
            )?)
            .unwrap_or(1000),
            result_ttl_s: src.ranged(&s.result_ttl_s, "result_ttl_s", 1, 30 * 86400, 3600)?,
            shutdown_timeout_ms: src.ranged(&s.shutdown_timeout_ms, "shutdown_timeout_ms", 0, 3_600_000, 30_000)?,
            pool_size: u32::try_from(src.ranged(&s.pool_size, "pool_size", 0, 64, 0)?).unwrap_or(0),
            pool_ttl_ms: src.ranged(&s.pool_ttl_ms, "pool_ttl_ms", 100, 3_600_000, 60_000)?,
        };
        let mut tenants = vec![];
        let mut client_names: BTreeMap<String, String> = BTreeMap::new();
        for (name, t) in raw.tenants {
            check_name(&src, &name, "tenant")?;
            // A tenant's name names its data folders (tenants/<name>/…).
            if let Err(e) = cordon::plugin::tenant_folder_name(name.get_ref()) {
                return Err(src.error(name.span(), e.to_string(), Some("a tenant's name must not be `.` or `..`")));
            }
            let max_concurrent =
                u32::try_from(src.ranged(&Some(t.max_concurrent), "max_concurrent", 1, 100_000, 1)?).unwrap_or(1);
            let rate_per_sec =
                u32::try_from(src.ranged(&Some(t.rate_per_sec), "rate_per_sec", 1, 1_000_000, 1)?).unwrap_or(1);
            let mut clients = vec![];
            for (cname, c) in t.clients {
                check_name(&src, &cname, "client")?;
                if let Some(other) = client_names.insert(cname.get_ref().clone(), name.get_ref().clone()) {
                    return Err(src.error(
                        cname.span(),
                        format!("client `{}` is already a client of tenant `{other}`", cname.get_ref()),
                        Some("client ids are unique across tenants: they are what `client_id` names"),
                    ));
                }
                clients.push((cname.into_inner(), parse_hash(&src, &c.secret_sha256, "secret_sha256")?));
            }
            let mut tokens = vec![];
            for (tname, tok) in t.tokens {
                check_name(&src, &tname, "token")?;
                tokens.push((tname.into_inner(), parse_hash(&src, &tok.sha256, "sha256")?));
            }
            tenants.push(Tenant { name: name.into_inner(), max_concurrent, rate_per_sec, clients, tokens });
        }
        let queue = QueueConfig { result_keys: raw.queue.and_then(|q| q.result_keys) };
        Ok(Config { path: Some(path.to_owned()), server, queue, tenants })
    }

    /// The tenant called `name`.
    pub fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.name == name)
    }
}

/// The mode of `path` (links followed) when every user may write it (a
/// shared folder such as `/tmp` or `/var/tmp`, sticky or not); `None` when
/// not, or when it does not exist yet (cordon makes it `0700`).
fn writable_by_everyone(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o002 != 0).then_some(mode & 0o7777)
}

fn check_name(src: &Source<'_>, name: &Spanned<String>, what: &str) -> Result<(), ConfigError> {
    let n = name.get_ref();
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(src.error(
            name.span(),
            format!("{what} name `{n}` is not allowed"),
            Some("names are 1 to 64 characters of a-z, A-Z, 0-9, `-`, `_` and `.`"),
        ))
    }
}

fn parse_hash(src: &Source<'_>, v: &Spanned<String>, key: &str) -> Result<[u8; 32], ConfigError> {
    let s = v.get_ref();
    let mut out = [0u8; 32];
    let valid = s.len() == 64
        && s.as_bytes().chunks(2).zip(out.iter_mut()).all(|(pair, o)| {
            let hex = std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok());
            hex.map(|b| *o = b).is_some()
        });
    if valid {
        Ok(out)
    } else {
        Err(src.error(
            v.span(),
            format!("{key} must be 64 hex digits (a SHA-256), not `{s}`"),
            Some("compute it with `printf %s \"$SECRET\" | sha256sum`"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn the_design_example_parses_with_defaults() {
        let text = format!(
            "[tenants.acme]\nmax_concurrent = 4\nrate_per_sec = 50\n[tenants.acme.clients.ci]\nsecret_sha256 = \"{HASH}\"\n[tenants.acme.tokens.deploy]\nsha256 = \"{HASH}\"\n"
        );
        let c = Config::parse(&text, Path::new("c.toml")).unwrap();
        let t = c.tenant("acme").unwrap();
        assert_eq!((t.max_concurrent, t.rate_per_sec), (4, 50));
        assert_eq!(t.clients[0].0, "ci");
        assert_eq!(t.tokens[0].0, "deploy");
        assert_eq!(c.server.access_ttl_s, 900);
        assert_eq!(c.server.workers, 4);
        assert_eq!((c.server.pool_size, c.server.pool_ttl_ms), (0, 60_000));
        assert_eq!((c.server.send_timeout_ms, c.server.max_connections_per_peer), (10_000, None));
        let lo = |a: &str| c.server.peer_cap_exempt.iter().any(|n| n.contains(a.parse().unwrap()));
        assert!(lo("127.0.0.1") && lo("127.0.0.2") && lo("::1") && !lo("10.0.0.1"));
    }

    #[test]
    fn connection_limits_parse_and_a_bad_range_is_named() {
        let text =
            "[server]\nsend_timeout_ms = 500\nmax_connections_per_peer = 3\npeer_cap_exempt = [\"10.0.0.0/8\"]\n";
        let c = Config::parse(text, Path::new("c.toml")).unwrap();
        assert_eq!((c.server.send_timeout_ms, c.server.max_connections_per_peer), (500, Some(3)));
        assert!(c.server.peer_cap_exempt.iter().any(|n| n.contains("10.9.9.9".parse().unwrap())));
        assert!(!c.server.peer_cap_exempt.iter().any(|n| n.contains("127.0.0.1".parse().unwrap())));
        let e = Config::parse("[server]\npeer_cap_exempt = [\"::1\", \"10.0.0.0/40\"]\n", Path::new("c.toml"));
        match e {
            Err(ConfigError::Invalid { line, column, message, .. }) => {
                assert_eq!((line, column), (2, 27), "{message}");
                assert!(message.contains("10.0.0.0/40") && message.contains("0 to 32"), "{message}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(Config::parse("[server]\nsend_timeout_ms = 5\n", Path::new("c.toml")).is_err());
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = |text: &str| match Config::parse(text, Path::new("c.toml")) {
            Err(ConfigError::Invalid { line, column, message, .. }) => (line, column, message),
            other => panic!("expected an error for {text:?}, got {other:?}"),
        };
        let (line, col, msg) = err("[tenants.a]\nmax_concurrent = 4\nrate_per_sec = 5\nrate = 1\n");
        assert_eq!((line, col), (4, 1), "{msg}");
        assert!(msg.contains("unknown field `rate`"), "{msg}");
        let (line, col, msg) =
            err("[tenants.a]\nmax_concurrent = 4\nrate_per_sec = 5\n[tenants.a.clients.c]\nsecret_sha256 = \"abc\"\n");
        assert_eq!((line, col), (5, 17), "{msg}");
        assert!(msg.contains("64 hex digits"), "{msg}");
        let (line, _, msg) = err("[server]\naccess_ttl_s = 7200\n");
        assert_eq!(line, 2);
        assert!(msg.contains("access_ttl_s = 7200 is out of range"), "{msg}");
        let (_, _, msg) = err("[server]\nmode = \"dev\"\n");
        assert!(msg.contains("refused"), "{msg}");
        let dup = format!(
            "[tenants.a]\nmax_concurrent = 1\nrate_per_sec = 1\n[tenants.a.clients.c]\nsecret_sha256 = \"{HASH}\"\n[tenants.b]\nmax_concurrent = 1\nrate_per_sec = 1\n[tenants.b.clients.c]\nsecret_sha256 = \"{HASH}\"\n"
        );
        let (line, _, msg) = err(&dup);
        assert_eq!(line, 9);
        assert!(msg.contains("already a client of tenant `a`"), "{msg}");
    }

    /// A tenant's name names its data folders (`tenants/<name>/…`): `.`
    /// and `..` are refused at load, naming the line; capitals are written
    /// so that no two names share a folder where case folds.
    #[test]
    fn a_tenant_name_cannot_name_another_folder() {
        for name in [".", ".."] {
            let text = format!("[tenants.\"{name}\"]\nmax_concurrent = 1\nrate_per_sec = 1\n");
            match Config::parse(&text, Path::new("c.toml")) {
                Err(ConfigError::Invalid { line, message, .. }) => {
                    assert_eq!(line, 1, "{message}");
                    assert!(message.contains(&format!("tenant name `{name}`")), "{message}");
                }
                other => panic!("tenant {name:?} was accepted: {other:?}"),
            }
        }
        let folder = |n: &str| cordon::plugin::tenant_folder_name(n).unwrap();
        assert_eq!(folder("acme"), "acme");
        assert_eq!(folder("Acme"), "+acme");
        assert_eq!(folder("a.b-C_d"), "a.b-+c_d");
        let names = ["acme", "Acme", "ACME", "aCme", "a.cme", ".acme", "acme."];
        let folders: std::collections::HashSet<String> = names.iter().map(|n| folder(n).to_lowercase()).collect();
        assert_eq!(folders.len(), names.len(), "two names share a folder when case folds: {folders:?}");
        for bad in ["", ".", "..", "a/b", "a\0b", "é", &"a".repeat(65)] {
            assert!(cordon::plugin::tenant_folder_name(bad).is_err(), "{bad:?}");
        }
    }
}
