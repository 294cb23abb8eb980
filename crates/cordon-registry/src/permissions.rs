//! What a plugin version asks for, in one canonical form: its digest (which
//! statements sign and the lock file records as approved) and the diff
//! between two versions (which decides whether an update needs consent).
//!
//! The canonical form covers the manifest's `extends`, `[permissions]` and
//! `[quotas]` (handlers are code, covered by the tree hash). Lists are
//! sorted and deduplicated, so two manifests that ask for the same things
//! in another order have the same digest. It is serialised as compact JSON
//! with a fixed field order; [`Permissions::digest`] is the SHA-256 of those
//! bytes.
//!
//! # Widening
//!
//! [`diff`] reports as *widening*: a read or write path not inside an
//! earlier grant of the same kind (or, for reads, a write grant), a host
//! pattern or variable pattern no earlier pattern covers (`*` never covers
//! a loopback, private, link-local or metadata address or `localhost`
//! named literally, which it never reaches at run time), a removed
//! `fs.deny` or `net.deny` entry, an added executable or a removed exec
//! allow-list, an added capability or preset, and a raised or removed
//! quota. Everything else is narrowing or unchanged and needs no consent.

use std::path::PathBuf;

use cordon_core::policy::{EnvPattern, NetPattern};
use cordon_plugin::builder::{env_covers, env_text, net_covers};
use cordon_plugin::manifest::{Manifest, ManifestPath};
use serde::{Deserialize, Serialize};

use crate::tree::Digest256;

/// The canonical permissions of one plugin version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// Presets (`extends`).
    pub extends: Vec<String>,
    /// `fs.read`: relative to the plugin folder, or absolute host paths.
    pub fs_read: Vec<String>,
    /// `fs.write`.
    pub fs_write: Vec<String>,
    /// `fs.deny`.
    pub fs_deny: Vec<String>,
    /// `net.allow`, as `host` or `host:port`.
    pub net_allow: Vec<String>,
    /// `net.deny`.
    pub net_deny: Vec<String>,
    /// `env.allow`.
    pub env_allow: Vec<String>,
    /// `exec`; `None`: any readable file.
    pub exec: Option<Vec<String>>,
    /// `capabilities`.
    pub capabilities: Vec<String>,
    /// `[quotas]`, each `None` when the manifest leaves cordon's default.
    pub quotas: Quotas,
}

/// `[quotas]` as declared. A copy of the manifest's fields rather than the
/// manifest's type: the digest must not change when that type changes
/// shape. A test fails when the manifest gains a quota this lacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Quotas {
    pub timeout_ms: Option<u64>,
    pub grace_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub pids: Option<u64>,
    pub output_bytes: Option<u64>,
    pub file_size_mb: Option<u64>,
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn path_text(p: &ManifestPath) -> String {
    match p {
        ManifestPath::InPlugin(rel) if rel.as_os_str().is_empty() => ".".into(),
        ManifestPath::InPlugin(rel) | ManifestPath::Host(rel) => rel.to_string_lossy().into_owned(),
    }
}

/// A host pattern's text: `host`, `host:port`, `[v6]:port`.
pub fn net_text(p: &NetPattern) -> String {
    match (p.host.contains(':'), p.port) {
        (false, None) => p.host.clone(),
        (false, Some(port)) => format!("{}:{port}", p.host),
        (true, None) => format!("[{}]", p.host),
        (true, Some(port)) => format!("[{}]:{port}", p.host),
    }
}

impl Permissions {
    /// The canonical permissions of `manifest`.
    pub fn of(manifest: &Manifest) -> Permissions {
        let p = &manifest.permissions;
        let q = &manifest.quotas;
        let paths = |v: &[ManifestPath]| sorted(v.iter().map(path_text).collect());
        let nets = |v: &[NetPattern]| sorted(v.iter().map(net_text).collect());
        Permissions {
            extends: sorted(manifest.extends.iter().map(|e| e.as_str().to_owned()).collect()),
            fs_read: paths(&p.fs_read),
            fs_write: paths(&p.fs_write),
            fs_deny: paths(&p.fs_deny),
            net_allow: nets(&p.net_allow),
            net_deny: nets(&p.net_deny),
            env_allow: sorted(p.env_allow.iter().map(env_text).collect()),
            exec: p.exec.clone().map(sorted),
            capabilities: sorted(p.capabilities.clone()),
            quotas: Quotas {
                timeout_ms: q.timeout_ms,
                grace_ms: q.grace_ms,
                memory_mb: q.memory_mb,
                cpu_ms: q.cpu_ms,
                pids: q.pids,
                output_bytes: q.output_bytes,
                file_size_mb: q.file_size_mb,
            },
        }
    }

    /// The canonical bytes: compact JSON, fields in declaration order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data serialises")
    }

    /// The SHA-256 of [`Permissions::canonical_bytes`].
    pub fn digest(&self) -> Digest256 {
        Digest256::of(&self.canonical_bytes())
    }

    /// One line per grant, for people (`fs.read data`, `quota memory_mb=64`).
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![];
        let mut list = |key: &str, v: &[String]| out.extend(v.iter().map(|x| format!("{key} {x}")));
        list("extends", &self.extends);
        list("fs.read", &self.fs_read);
        list("fs.write", &self.fs_write);
        list("fs.deny", &self.fs_deny);
        list("net.allow", &self.net_allow);
        list("net.deny", &self.net_deny);
        list("env.allow", &self.env_allow);
        if let Some(e) = &self.exec {
            list("exec", e);
        }
        list("capability", &self.capabilities);
        for (name, v) in self.quotas.named() {
            if let Some(v) = v {
                out.push(format!("quota {name}={v}"));
            }
        }
        out
    }
}

impl Quotas {
    fn named(&self) -> [(&'static str, Option<u64>); 7] {
        [
            ("timeout_ms", self.timeout_ms),
            ("grace_ms", self.grace_ms),
            ("memory_mb", self.memory_mb),
            ("cpu_ms", self.cpu_ms),
            ("pids", self.pids),
            ("output_bytes", self.output_bytes),
            ("file_size_mb", self.file_size_mb),
        ]
    }
}

/// One difference between two versions' permissions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The key (`fs.read`, `net.allow`, `quota memory_mb`, ...).
    pub key: String,
    /// What changed, for people (`+ /srv/data`, `64 -> 256`).
    pub what: String,
}

/// What changes between the approved permissions and a new version's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PermissionDiff {
    /// Changes that need consent.
    pub widened: Vec<Change>,
    /// Changes that do not.
    pub narrowed: Vec<Change>,
}

impl PermissionDiff {
    /// Whether the new version asks for more.
    pub fn widens(&self) -> bool {
        !self.widened.is_empty()
    }

    /// The diff for a terminal: `+` widening, `-` narrowing, one per line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.widened {
            out.push_str(&format!("  + {} {}\n", c.key, c.what));
        }
        for c in &self.narrowed {
            out.push_str(&format!("  - {} {}\n", c.key, c.what));
        }
        out
    }
}

fn under(inner: &str, outer: &str) -> bool {
    // Relative entries are relative to the plugin folder, `.` is the folder.
    if outer == "." {
        return !inner.starts_with('/');
    }
    PathBuf::from(inner).starts_with(outer)
}

/// The permission diff from `old` (the approved set) to `new`.
pub fn diff(old: &Permissions, new: &Permissions) -> PermissionDiff {
    let mut d = PermissionDiff::default();
    let mut widen = |key: &str, what: String| d.widened.push(Change { key: key.into(), what });
    // Grants.
    for p in &new.fs_read {
        if !old.fs_read.iter().chain(&old.fs_write).any(|o| under(p, o)) {
            widen("fs.read", format!("+ {p}"));
        }
    }
    for p in &new.fs_write {
        if !old.fs_write.iter().any(|o| under(p, o)) {
            widen("fs.write", format!("+ {p}"));
        }
    }
    let parse_net = |s: &String| NetPattern::parse(s).ok();
    let parse_env = |s: &String| EnvPattern::parse(s).ok();
    for p in &new.net_allow {
        let covered =
            parse_net(p).is_some_and(|n| old.net_allow.iter().filter_map(parse_net).any(|o| net_covers(&o, &n)));
        if !covered {
            widen("net.allow", format!("+ {p}"));
        }
    }
    for p in &new.env_allow {
        let covered =
            parse_env(p).is_some_and(|n| old.env_allow.iter().filter_map(parse_env).any(|o| env_covers(&o, &n)));
        if !covered {
            widen("env.allow", format!("+ {p}"));
        }
    }
    for (key, olds, news) in
        [("extends", &old.extends, &new.extends), ("capability", &old.capabilities, &new.capabilities)]
    {
        for p in news.iter().filter(|p| !olds.contains(p)) {
            widen(key, format!("+ {p}"));
        }
    }
    // Carve-outs removed.
    for (key, olds, news) in [("fs.deny", &old.fs_deny, &new.fs_deny), ("net.deny", &old.net_deny, &new.net_deny)] {
        for p in olds.iter().filter(|p| !news.contains(p)) {
            widen(key, format!("- {p} (carve-out removed)"));
        }
    }
    match (&old.exec, &new.exec) {
        (Some(_), None) => widen("exec", "allow-list removed: any readable file may be executed".into()),
        (Some(o), Some(n)) => {
            for p in n.iter().filter(|p| !o.contains(p)) {
                widen("exec", format!("+ {p}"));
            }
        }
        _ => {}
    }
    // Quotas: `None` is cordon's default, which for the limits with no
    // default is no limit at all.
    let defaults = cordon_plugin::manifest::Quotas::default().to_limits();
    let effective = |name: &str, v: Option<u64>| -> Option<u64> {
        v.or(match name {
            "grace_ms" => Some(defaults.grace_ms),
            "output_bytes" => Some(defaults.output_bytes),
            _ => None,
        })
    };
    let show = |v: Option<u64>| v.map_or("unlimited".to_owned(), |v| v.to_string());
    for ((name, o), (_, n)) in old.quotas.named().into_iter().zip(new.quotas.named()) {
        let (o, n) = (effective(name, o), effective(name, n));
        let raised = match (o, n) {
            (Some(a), Some(b)) => b > a,
            (Some(_), None) => true,
            _ => false,
        };
        if raised {
            widen(&format!("quota {name}"), format!("{} -> {}", show(o), show(n)));
        }
    }
    // Narrowing, for the record.
    let mut narrow = |key: &str, what: String| d.narrowed.push(Change { key: key.into(), what });
    for (key, olds, news) in [
        ("fs.read", &old.fs_read, &new.fs_read),
        ("fs.write", &old.fs_write, &new.fs_write),
        ("net.allow", &old.net_allow, &new.net_allow),
        ("env.allow", &old.env_allow, &new.env_allow),
        ("capability", &old.capabilities, &new.capabilities),
        ("extends", &old.extends, &new.extends),
    ] {
        for p in olds.iter().filter(|p| !news.contains(p)) {
            narrow(key, format!("- {p}"));
        }
    }
    for (key, olds, news) in [("fs.deny", &old.fs_deny, &new.fs_deny), ("net.deny", &old.net_deny, &new.net_deny)] {
        for p in news.iter().filter(|p| !olds.contains(p)) {
            narrow(key, format!("+ {p} (carve-out added)"));
        }
    }
    for ((name, o), (_, n)) in old.quotas.named().into_iter().zip(new.quotas.named()) {
        let (o, n) = (effective(name, o), effective(name, n));
        let lowered = match (o, n) {
            (Some(a), Some(b)) => b < a,
            (None, Some(_)) => true,
            _ => false,
        };
        if lowered {
            narrow(&format!("quota {name}"), format!("{} -> {}", show(o), show(n)));
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn perms(extra: &str) -> Permissions {
        let (top, rest) = match extra.strip_prefix("extends = [\"platform\"]\n") {
            Some(rest) => ("extends = [\"platform\"]\n", rest),
            None => ("", extra),
        };
        let text =
            format!("id = \"@t/p\"\nversion = \"1.0.0\"\n{top}[handlers.main]\ncommand = [\"./run.sh\"]\n{rest}");
        Permissions::of(&Manifest::parse(&text, Path::new("cordon.toml")).unwrap())
    }

    #[test]
    fn every_manifest_quota_is_covered() {
        let theirs = serde_json::to_value(cordon_plugin::manifest::Quotas::default()).unwrap();
        let ours = serde_json::to_value(Quotas::default()).unwrap();
        let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&theirs), keys(&ours));
    }

    #[test]
    fn digest_ignores_order_and_duplicates() {
        let a = perms("[permissions]\nfs.read = [\"a\", \"b\"]\nnet.allow = [\"x.example\", \"y.example:443\"]\n");
        let b =
            perms("[permissions]\nfs.read = [\"b\", \"a\", \"a/\"]\nnet.allow = [\"y.example:443\", \"x.example\"]\n");
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), perms("[permissions]\nfs.read = [\"a\"]\n").digest());
        assert_ne!(perms("").digest(), perms("[quotas]\nmemory_mb = 64\n").digest());
    }

    #[test]
    fn widening_is_found_and_narrowing_is_not() {
        let old = perms(
            "[permissions]\nfs.read = [\"data\"]\nfs.deny = [\"data/secret\"]\nnet.allow = [\"*.example.com\"]\nenv.allow = [\"WX_*\"]\nexec = [\"/bin/sh\"]\n[quotas]\nmemory_mb = 64\n",
        );
        // Inside earlier grants, and quotas lowered: no consent.
        let narrower = perms(
            "[permissions]\nfs.read = [\"data/sub\"]\nfs.deny = [\"data/secret\", \"data/x\"]\nnet.allow = [\"api.example.com:443\"]\nenv.allow = [\"WX_TOKEN\"]\nexec = []\n[quotas]\nmemory_mb = 32\ntimeout_ms = 100\n",
        );
        let d = diff(&old, &narrower);
        assert!(!d.widens(), "{d:#?}");
        assert!(!d.narrowed.is_empty());
        let wider = perms(
            "extends = [\"platform\"]\n[permissions]\nfs.read = [\"data\", \"/etc/ssl\"]\nfs.write = [\"out\"]\nnet.allow = [\"*.example.com\", \"example.com\"]\nenv.allow = [\"WX_*\", \"HOME\"]\nexec = [\"/bin/sh\", \"/bin/curl\"]\ncapabilities = [\"llm\"]\n[quotas]\nmemory_mb = 128\n",
        );
        let d = diff(&old, &wider);
        let keys: Vec<String> = d.widened.iter().map(|c| format!("{} {}", c.key, c.what)).collect();
        assert_eq!(
            keys,
            [
                "fs.read + /etc/ssl",
                "fs.write + out",
                "net.allow + example.com",
                "env.allow + HOME",
                "extends + platform",
                "capability + llm",
                "fs.deny - data/secret (carve-out removed)",
                "exec + /bin/curl",
                "quota memory_mb 64 -> 128",
            ]
        );
        let no_exec = perms("[permissions]\nfs.read = [\"data\"]\nfs.deny = [\"data/secret\"]\nnet.allow = [\"*.example.com\"]\nenv.allow = [\"WX_*\"]\n");
        let d = diff(&old, &no_exec);
        assert!(d.widened.iter().any(|c| c.key == "exec"), "{d:#?}");
        assert!(d.widened.iter().any(|c| c.key == "quota memory_mb" && c.what == "64 -> unlimited"), "{d:#?}");
    }

    #[test]
    fn a_wildcard_never_covers_a_special_address_named_literally() {
        // R12-2: `*` never reaches loopback, private, link-local or
        // metadata addresses at run time; a pattern naming one is new.
        // Nor does it cover any IP literal: one may name an address of the
        // host that runs the plugin, which only a literal reaches, and that
        // is decided at run time.
        let old = perms("[permissions]\nnet.allow = [\"*\", \"*.example.com\"]\n");
        for added in [
            "127.0.0.1:8080",
            "169.254.169.254:80",
            "10.0.0.5",
            "localhost:5432",
            "LOCALHOST.:5432",
            "127.0.0.1.",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[fe80::1]:22",
            "fd00::2",
            "[::ffff:192.0.2.2]",
            "203.0.113.9:80",
            "1.1.1.1:53",
        ] {
            let new = perms(&format!("[permissions]\nnet.allow = [\"*\", \"{added}\"]\n"));
            let d = diff(&old, &new);
            let want = format!("+ {}", net_text(&NetPattern::parse(added).unwrap()));
            assert!(d.widened.iter().any(|c| c.key == "net.allow" && c.what == want), "{added}: {d:#?}");
        }
        // Control: names stay covered by `*` (a name never unlocks a
        // special address or one of the host's, whatever it resolves to;
        // `127.1` is a name); the literal is covered by itself.
        let d = diff(&old, &perms("[permissions]\nnet.allow = [\"*\", \"127.1\", \"api.example.com\"]\n"));
        assert!(!d.widens(), "{d:#?}");
        let lit = perms("[permissions]\nnet.allow = [\"127.0.0.1\"]\n");
        assert!(!diff(&lit, &perms("[permissions]\nnet.allow = [\"127.0.0.1:8080\"]\n")).widens());
    }
}
