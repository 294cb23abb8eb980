//! Questions a host application asks about a policy before or without
//! running anything: may this path, host or variable be used?
//!
//! The answers follow the rules the sandbox enforces, computed from the
//! [`Policy`] alone (no kernel, no file system, no DNS). They say what the
//! policy grants, not what a run will find: a granted path may not exist, a
//! granted host name may still be refused by the proxy at connect time when
//! it resolves to a private address the policy does not name literally.

use std::path::Path;

use cordon_core::policy::env::{BASIC_VARS, SET_BY_CORDON};
use cordon_core::policy::fs::{normalize, SYSTEM_DEVICES, SYSTEM_READ};
use cordon_core::policy::{Policy, SystemSet};

/// The access [`check_fs`] asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read and execute.
    Read,
    /// Read, write, create and remove.
    Write,
}

/// The grant that allows a path, host or variable, as the policy writes it
/// (`fs.read /srv/data`, `net.allow *.example.com`, `env.allow MY_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    /// The rule.
    pub rule: String,
}

/// Why the policy does not allow it, and what would.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{subject}: {reason}")]
pub struct Denied {
    /// What was asked about (`write /etc/passwd`, `example.com:443`, `HOME`).
    pub subject: String,
    /// Why not.
    pub reason: String,
    /// The carve-out that refuses it, when one does (`fs.deny /srv/data/keys`).
    pub rule: Option<String>,
}

/// Whether `policy` grants `access` to the host path `path`.
///
/// `fs.deny` carve-outs win over every grant. A write needs an `fs.write`
/// tree; a read is allowed by an `fs.read` or `fs.write` tree or the
/// read-only system set (when the policy includes it; its devices such as
/// `/dev/null` are writable too). `path` must be absolute; `.` and `..` are
/// resolved lexically, symbolic links are not followed (the kernel checks
/// the path it opens). The run's private `/tmp` is not a host path and is
/// not covered.
///
/// ```
/// use std::path::Path;
/// use cordon::{check_fs, Access, PathRule, Policy};
///
/// let mut policy = Policy::default();
/// policy.fs.write.push(PathRule::parse("/srv/data", Path::new("/")).unwrap());
/// policy.fs.deny.push(PathRule::parse("/srv/data/keys", Path::new("/")).unwrap());
///
/// assert_eq!(check_fs(&policy, Path::new("/srv/data/out.csv"), Access::Write).unwrap().rule, "fs.write /srv/data");
/// assert!(check_fs(&policy, Path::new("/usr/bin/python3"), Access::Read).is_ok()); // system set
/// assert!(check_fs(&policy, Path::new("/usr/bin/python3"), Access::Write).is_err());
/// let denied = check_fs(&policy, Path::new("/srv/data/keys/id"), Access::Read).unwrap_err();
/// assert_eq!(denied.rule.as_deref(), Some("fs.deny /srv/data/keys"));
/// assert!(check_fs(&policy, Path::new("/etc/shadow"), Access::Read).is_err());
/// ```
pub fn check_fs(policy: &Policy, path: &Path, access: Access) -> Result<Allowed, Denied> {
    let verb = match access {
        Access::Read => "read",
        Access::Write => "write",
    };
    let subject = format!("{verb} {}", path.display());
    let denied = |reason: String, rule: Option<String>| Denied { subject: subject.clone(), reason, rule };
    if !path.is_absolute() {
        return Err(denied("the path is not absolute; grants name absolute host paths".into(), None));
    }
    let path = normalize(path);
    if let Some(d) = policy.fs.deny.iter().find(|d| path.starts_with(&d.path)) {
        let rule = format!("fs.deny {}", d.path.display());
        return Err(denied(format!("carved out by `{rule}`"), Some(rule)));
    }
    if let Some(w) = policy.fs.write.iter().find(|w| path.starts_with(&w.path)) {
        return Ok(Allowed { rule: format!("fs.write {}", w.path.display()) });
    }
    let device = SYSTEM_DEVICES.iter().find(|d| path == Path::new(d));
    if policy.fs.system == SystemSet::Include {
        if let Some(d) = device {
            return Ok(Allowed { rule: format!("fs.system {d}") });
        }
    }
    if access == Access::Write {
        let read_only = policy.fs.read.iter().any(|r| path.starts_with(&r.path))
            || (policy.fs.system == SystemSet::Include && SYSTEM_READ.iter().any(|s| path.starts_with(s)));
        let reason = if read_only {
            "granted read-only; writing needs an fs.write grant (--write)".to_owned()
        } else {
            "no fs.write grant covers it (--write)".to_owned()
        };
        return Err(denied(reason, None));
    }
    if let Some(r) = policy.fs.read.iter().find(|r| path.starts_with(&r.path)) {
        return Ok(Allowed { rule: format!("fs.read {}", r.path.display()) });
    }
    if policy.fs.system == SystemSet::Include {
        if let Some(s) = SYSTEM_READ.iter().find(|s| path.starts_with(s)) {
            return Ok(Allowed { rule: format!("fs.system {s}") });
        }
    }
    Err(denied("no fs.read or fs.write grant covers it, and it is not in the system set (--read)".into(), None))
}

/// Whether `policy` lets a connection to `host:port` through the filtering
/// proxy, decided exactly as the proxy decides before resolving a name
/// (deny patterns first, then allow patterns, default deny). For an IP
/// literal the address check follows too: loopback, private, link-local
/// and metadata addresses need a pattern that names them literally.
///
/// ```
/// use cordon::{check_net, NetPattern, Policy};
///
/// let mut policy = Policy::default();
/// policy.net.allow.push(NetPattern::parse("*.example.com:443").unwrap());
/// policy.net.allow.push(NetPattern::parse("127.0.0.1:8080").unwrap());
///
/// assert_eq!(check_net(&policy, "api.example.com", 443).unwrap().rule, "net.allow *.example.com:443");
/// assert!(check_net(&policy, "api.example.com", 80).is_err());
/// assert!(check_net(&policy, "example.com", 443).is_err()); // `*.` means subdomains
/// assert!(check_net(&policy, "127.0.0.1", 8080).is_ok());
/// assert!(check_net(&policy, "127.0.0.1", 22).is_err());
/// assert!(check_net(&Policy::default(), "example.org", 443).is_err()); // no network by default
/// ```
pub fn check_net(policy: &Policy, host: &str, port: u16) -> Result<Allowed, Denied> {
    let subject = format!("{host}:{port}");
    let dest = cordon_egress::Destination::new(host, port).map_err(|e| Denied {
        subject: subject.clone(),
        reason: e.to_string(),
        rule: None,
    })?;
    let from_proxy = |d: cordon_egress::Denied| Denied {
        subject: dest.to_string(),
        reason: d.to_string(),
        rule: d.rule().map(|r| format!("net.deny {r}")),
    };
    let allowed = cordon_egress::check(&policy.net, &dest).map_err(from_proxy)?;
    if let cordon_egress::Host::Ip(ip) = dest.host() {
        cordon_egress::check_addr(&policy.net, &dest, *ip).map_err(from_proxy)?;
    }
    Ok(Allowed { rule: format!("net.allow {}", allowed.rule_text()) })
}

/// Whether the variable `name` reaches the sandbox under `policy`, and by
/// which rule. `PATH`, `HOME` and `TMPDIR` are always set by cordon (in dev
/// mode, which makes no folder for the run, `HOME` and `TMPDIR` are the
/// caller's); the basic locale and terminal variables are passed when the
/// host has them; everything else needs an `env.allow` pattern (copied from
/// the host) or an `env.set` pair. Whether the host actually has a value is
/// not checked.
///
/// ```
/// use cordon::{check_env, EnvPattern, Policy};
///
/// let mut policy = Policy::default();
/// policy.env.allow.push(EnvPattern::parse("GITHUB_*").unwrap());
///
/// assert_eq!(check_env(&policy, "GITHUB_TOKEN").unwrap().rule, "env.allow GITHUB_*");
/// assert!(check_env(&policy, "PATH").is_ok());
/// assert!(check_env(&policy, "AWS_SECRET_ACCESS_KEY").is_err());
/// ```
pub fn check_env(policy: &Policy, name: &str) -> Result<Allowed, Denied> {
    if SET_BY_CORDON.contains(&name) {
        return Ok(Allowed { rule: format!("set by cordon ({name})") });
    }
    if let Some((k, _)) = policy.env.set.iter().rev().find(|(k, _)| k == name) {
        return Ok(Allowed { rule: format!("env.set {k}") });
    }
    if let Some(p) = policy.env.allow.iter().find(|p| p.matches(name)) {
        let text = serde_json::to_value(p).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        return Ok(Allowed { rule: format!("env.allow {text}") });
    }
    if BASIC_VARS.contains(&name) {
        return Ok(Allowed { rule: format!("passed from the caller ({name})") });
    }
    Err(Denied {
        subject: name.to_owned(),
        reason: format!("not passed; add env.allow `{name}` (--env {name})"),
        rule: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_core::policy::{NetPattern, PathRule};

    fn rule(p: &str) -> PathRule {
        PathRule::parse(p, Path::new("/")).unwrap()
    }

    #[test]
    fn fs_answers_follow_grants_carve_outs_and_the_system_set() {
        let mut p = Policy::default();
        p.fs.read.push(rule("/srv/plugin"));
        p.fs.write.push(rule("/srv/data"));
        p.fs.deny.push(rule("/srv/plugin/.git"));
        let ok = |path: &str, a| check_fs(&p, Path::new(path), a).map(|a| a.rule);
        assert_eq!(ok("/srv/plugin/main.py", Access::Read).unwrap(), "fs.read /srv/plugin");
        assert!(ok("/srv/plugin/main.py", Access::Write).unwrap_err().reason.contains("read-only"));
        assert_eq!(ok("/srv/data/x", Access::Read).unwrap(), "fs.write /srv/data");
        assert_eq!(
            ok("/srv/plugin/.git/config", Access::Read).unwrap_err().rule.as_deref(),
            Some("fs.deny /srv/plugin/.git")
        );
        assert!(ok("/srv/plugin/../data/x", Access::Write).is_ok(), "`..` is resolved");
        assert!(ok("/srv/pluginx", Access::Read).is_err(), "prefixes are compared by component");
        assert_eq!(ok("/dev/null", Access::Write).unwrap(), "fs.system /dev/null");
        assert!(ok("relative/path", Access::Read).is_err());
        p.fs.system = SystemSet::Exclude;
        assert!(check_fs(&p, Path::new("/usr/bin/env"), Access::Read).is_err());
    }

    #[test]
    fn net_answers_match_the_proxy() {
        let mut p = Policy::default();
        p.net.allow.push(NetPattern::parse("*").unwrap());
        p.net.deny.push(NetPattern::parse("evil.example").unwrap());
        assert!(check_net(&p, "api.example.com", 443).is_ok());
        assert_eq!(check_net(&p, "evil.example", 443).unwrap_err().rule.as_deref(), Some("net.deny evil.example"));
        // `*` never unlocks loopback or metadata addresses.
        assert!(check_net(&p, "127.0.0.1", 80).is_err());
        assert!(check_net(&p, "169.254.169.254", 80).is_err());
        assert!(check_net(&p, "bad host", 80).is_err());
    }

    #[test]
    fn env_answers() {
        let mut p = Policy::default();
        p.env.set.push(("MODE".into(), "fast".into()));
        assert_eq!(check_env(&p, "MODE").unwrap().rule, "env.set MODE");
        assert!(check_env(&p, "LANG").is_ok());
        assert!(check_env(&p, "SECRET").unwrap_err().reason.contains("--env SECRET"));
    }
}
