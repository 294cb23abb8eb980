//! [`PolicyBuilder`]: combines permission sets into one [`Policy`].
//!
//! Two operations matter for plugins. [`PolicyBuilder::union`] adds the
//! grants of another set (a preset and a manifest's own permissions).
//! [`PolicyBuilder::narrow`] keeps only what a host policy allows as well:
//! the host may narrow what a manifest asks for, never widen it.
//!
//! ```
//! use std::path::{Path, PathBuf};
//! use cordon_core::policy::{NetPattern, PathRule, Policy};
//! use cordon_plugin::builder::PolicyBuilder;
//!
//! let manifest = PolicyBuilder::new()
//!     .read(PathRule::parse("/srv/plugin", Path::new("/")).unwrap())
//!     .allow_host(NetPattern::parse("*.example.com").unwrap());
//! // The operator allows only one host, but any path.
//! let mut host = PolicyBuilder::unrestricted();
//! host.net.allow = vec![NetPattern::parse("api.example.com:443").unwrap()];
//! let policy = manifest.narrow(&host).build();
//! assert_eq!(policy.fs.read[0].path, PathBuf::from("/srv/plugin"));
//! assert_eq!(policy.net.allow, [NetPattern::parse("api.example.com:443").unwrap()]);
//! ```

use std::path::{Path, PathBuf};

use cordon_core::policy::{
    EnvPattern, FsPolicy, Limits, NetPattern, NetPolicy, PathRule, Policy, SystemSet, WriteXorExecute,
};

/// Builds a [`Policy`] step by step.
///
/// [`PolicyBuilder::new`] starts from the least privilege of DESIGN.md
/// ([`Policy::default`]): the system set read-only, no other path, no
/// network, only the basic environment, any readable file executable,
/// [`Limits::default`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct PolicyBuilder {
    policy: Policy,
}

impl PolicyBuilder {
    /// The least privilege: see the type's documentation.
    pub fn new() -> Self {
        PolicyBuilder::default()
    }

    /// Continues from an existing policy.
    pub fn from_policy(policy: Policy) -> Self {
        PolicyBuilder { policy }
    }

    /// A host policy that restricts nothing: every path writable, every
    /// destination reachable ([`any_destination`]: more than `*`, which
    /// never reaches a special address), every variable passed, any file
    /// executable, no quotas. It is the neutral element of
    /// [`PolicyBuilder::narrow`]: start from it and replace only the parts
    /// the operator restricts.
    ///
    /// # Ambient authority
    ///
    /// Never run anything under this policy itself; it exists to be
    /// intersected with a plugin's.
    pub fn unrestricted() -> Policy {
        let everything = PathRule { path: PathBuf::from("/") };
        Policy {
            fs: FsPolicy {
                read: vec![everything.clone()],
                write: vec![everything],
                deny: vec![],
                system: SystemSet::Include,
                pinned: vec![],
                holes: vec![],
            },
            net: NetPolicy { allow: vec![any_destination()], ..NetPolicy::default() },
            env: cordon_core::policy::EnvPolicy {
                allow: vec![EnvPattern::parse("*").expect("`*` is a valid pattern")],
                set: vec![],
                secret: vec![],
            },
            exec: None,
            limits: Limits {
                timeout_ms: None,
                grace_ms: u64::MAX,
                memory_mb: None,
                cpu_ms: None,
                pids: None,
                output_bytes: u64::MAX,
                file_size_mb: None,
            },
            wx: WriteXorExecute::Allow,
        }
    }

    /// Grants read and execute on a file or tree.
    pub fn read(mut self, rule: PathRule) -> Self {
        self.policy.fs.read.push(rule);
        self
    }

    /// Grants read, write, create and remove on a file or tree.
    pub fn write(mut self, rule: PathRule) -> Self {
        self.policy.fs.write.push(rule);
        self
    }

    /// Carves a file or tree out of every grant.
    pub fn deny(mut self, rule: PathRule) -> Self {
        self.policy.fs.deny.push(rule);
        self
    }

    /// Includes or excludes the read-only system set.
    pub fn system(mut self, system: SystemSet) -> Self {
        self.policy.fs.system = system;
        self
    }

    /// Allows egress to hosts matching `pattern`.
    pub fn allow_host(mut self, pattern: NetPattern) -> Self {
        self.policy.net.allow.push(pattern);
        self
    }

    /// Denies egress to hosts matching `pattern`, even when allowed.
    pub fn deny_host(mut self, pattern: NetPattern) -> Self {
        self.policy.net.deny.push(pattern);
        self
    }

    /// Copies variables matching `pattern` from the host's environment.
    ///
    /// # Ambient authority
    ///
    /// The values come from cordon's own environment.
    pub fn inherit_env(mut self, pattern: EnvPattern) -> Self {
        self.policy.env.allow.push(pattern);
        self
    }

    /// Sets a variable to a fixed value (set last, so it wins).
    pub fn set_env(mut self, name: &str, value: &str) -> Self {
        self.policy.env.set.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Marks a variable's value as secret: redacted wherever it would show.
    pub fn secret_env(mut self, name: &str) -> Self {
        self.policy.env.secret.push(name.to_owned());
        self
    }

    /// Turns on the exec allow-list (empty unless [`PolicyBuilder::allow_exec`]
    /// adds to it). Without this, any readable file may be executed.
    pub fn restrict_exec(mut self) -> Self {
        self.policy.exec.get_or_insert_with(Vec::new);
        self
    }

    /// Adds an executable to the allow-list, turning the list on if it was
    /// off.
    pub fn allow_exec(mut self, path: PathBuf) -> Self {
        self.policy.exec.get_or_insert_with(Vec::new).push(path);
        self
    }

    /// Replaces the quotas.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.policy.limits = limits;
        self
    }

    /// Sets the W^X rule.
    pub fn wx(mut self, wx: WriteXorExecute) -> Self {
        self.policy.wx = wx;
        self
    }

    /// The policy so far.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Adds every grant of `other`: paths, hosts, variables and executables
    /// of both. Carve-outs (`fs.deny`, `net.deny`) of both still hold. The
    /// system set is included if either includes it; W^X is enforced only if
    /// both ask for it. An exec allow-list holds only if both have one.
    /// Quotas: a quota set on one side only is kept, and where both set one,
    /// the larger wins.
    pub fn union(mut self, other: &Policy) -> Self {
        let p = &mut self.policy;
        p.fs.read.extend(other.fs.read.iter().cloned());
        p.fs.write.extend(other.fs.write.iter().cloned());
        p.fs.deny.extend(other.fs.deny.iter().cloned());
        if other.fs.system == SystemSet::Include {
            p.fs.system = SystemSet::Include;
        }
        p.net.allow.extend(other.net.allow.iter().cloned());
        p.net.deny.extend(other.net.deny.iter().cloned());
        p.env.allow.extend(other.env.allow.iter().cloned());
        p.env.set.extend(other.env.set.iter().cloned());
        p.env.secret.extend(other.env.secret.iter().cloned());
        p.exec = match (p.exec.take(), &other.exec) {
            (Some(mut a), Some(b)) => {
                a.extend(b.iter().cloned());
                Some(a)
            }
            _ => None,
        };
        let either_max = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let (a, b) = (&mut p.limits, &other.limits);
        a.timeout_ms = either_max(a.timeout_ms, b.timeout_ms);
        a.memory_mb = either_max(a.memory_mb, b.memory_mb);
        a.cpu_ms = either_max(a.cpu_ms, b.cpu_ms);
        a.pids = either_max(a.pids, b.pids);
        a.file_size_mb = either_max(a.file_size_mb, b.file_size_mb);
        a.grace_ms = a.grace_ms.max(b.grace_ms);
        a.output_bytes = a.output_bytes.max(b.output_bytes);
        if other.wx == WriteXorExecute::Allow {
            p.wx = WriteXorExecute::Allow;
        }
        self
    }

    /// Keeps only what `host` allows too. Paths: the deeper of two nested
    /// trees, write only where both grant write. Hosts: the narrower of two
    /// overlapping patterns. Variables: the narrower of two overlapping
    /// patterns. Executables: those on both lists (no list = any file).
    /// Quotas: the smaller of each (`None` = no limit). Carve-outs and secret
    /// names of both hold; `set` pairs of the host are applied after this
    /// policy's; W^X is enforced if either asks for it; the system set only
    /// if both include it.
    pub fn narrow(mut self, host: &Policy) -> Self {
        let p = &mut self.policy;

        // Filesystem: write needs write on both sides; read needs any
        // access on both sides.
        let m_any: Vec<&PathRule> = p.fs.read.iter().chain(&p.fs.write).collect();
        let h_any: Vec<&PathRule> = host.fs.read.iter().chain(&host.fs.write).collect();
        let write = intersect_trees(&p.fs.write.iter().collect::<Vec<_>>(), &host.fs.write.iter().collect::<Vec<_>>());
        let read = intersect_trees(&m_any, &h_any);
        p.fs.read = read.into_iter().filter(|r| !write.contains(r)).collect();
        p.fs.write = write;
        p.fs.deny.extend(host.fs.deny.iter().cloned());
        if host.fs.system == SystemSet::Exclude {
            p.fs.system = SystemSet::Exclude;
        }

        // A host that names no destination keeps every pattern, literals
        // of special addresses included; a host `*` does not (see
        // `intersect_net`).
        if !host.net.allow.contains(&any_destination()) {
            let mut allow = Vec::new();
            for a in &p.net.allow {
                for b in &host.net.allow {
                    if let Some(both) = intersect_net(a, b) {
                        allow.push(both);
                    }
                }
            }
            p.net.allow = allow;
        }
        p.net.deny.extend(host.net.deny.iter().cloned());
        // The route out is the host's choice, not the plugin's.
        p.net.via = host.net.via;

        let mut env_allow = Vec::new();
        for a in &p.env.allow {
            for b in &host.env.allow {
                if let Some(both) = intersect_env(a, b) {
                    env_allow.push(both);
                }
            }
        }
        p.env.allow = env_allow;
        p.env.set.extend(host.env.set.iter().cloned());
        p.env.secret.extend(host.env.secret.iter().cloned());

        p.exec = match (p.exec.take(), &host.exec) {
            (None, None) => None,
            (Some(a), None) => Some(a),
            (None, Some(b)) => Some(b.clone()),
            (Some(a), Some(b)) => {
                let within = |x: &PathBuf, list: &[PathBuf]| list.iter().any(|y| x.starts_with(y));
                let mut both: Vec<PathBuf> = a.iter().filter(|x| within(x, b)).cloned().collect();
                both.extend(b.iter().filter(|x| within(x, &a)).cloned());
                Some(both)
            }
        };

        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let (a, b) = (&mut p.limits, &host.limits);
        a.timeout_ms = min(a.timeout_ms, b.timeout_ms);
        a.memory_mb = min(a.memory_mb, b.memory_mb);
        a.cpu_ms = min(a.cpu_ms, b.cpu_ms);
        a.pids = min(a.pids, b.pids);
        a.file_size_mb = min(a.file_size_mb, b.file_size_mb);
        a.grace_ms = a.grace_ms.min(b.grace_ms);
        a.output_bytes = a.output_bytes.min(b.output_bytes);
        if host.wx == WriteXorExecute::Deny {
            p.wx = WriteXorExecute::Deny;
        }
        self
    }

    /// The policy, with exact duplicates removed (first occurrence kept).
    pub fn build(mut self) -> Policy {
        let p = &mut self.policy;
        dedup(&mut p.fs.read);
        dedup(&mut p.fs.write);
        dedup(&mut p.fs.deny);
        dedup(&mut p.net.allow);
        dedup(&mut p.net.deny);
        dedup(&mut p.env.allow);
        dedup(&mut p.env.secret);
        if let Some(exec) = &mut p.exec {
            dedup(exec);
        }
        self.policy
    }
}

fn dedup<T: PartialEq>(v: &mut Vec<T>) {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v.drain(..) {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    *v = out;
}

/// The trees both sides grant: of two nested trees, the deeper one.
fn intersect_trees(a: &[&PathRule], b: &[&PathRule]) -> Vec<PathRule> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let deeper = if x.path.starts_with(&y.path) {
                Some(&x.path)
            } else if y.path.starts_with(&x.path) {
                Some(&y.path)
            } else {
                None
            };
            if let Some(path) = deeper {
                let rule = PathRule { path: path.clone() };
                if !out.contains(&rule) {
                    out.push(rule);
                }
            }
        }
    }
    out
}

/// The network part of [`PolicyBuilder::unrestricted`]: a host that does
/// not narrow the network, so [`PolicyBuilder::narrow`] keeps every pattern
/// of the plugin's, including a literal naming a loopback, private or
/// metadata address or one of this host's own, which a host `*` (`cordon
/// exec --net '*'`) never keeps, as `*` never reaches them. No flag or
/// manifest can spell it (`**` does not parse), and as an allow pattern of
/// a policy run it matches nothing.
pub fn any_destination() -> NetPattern {
    NetPattern { host: "**".into(), port: None }
}

/// Hosts both patterns match, as one pattern, if they overlap.
fn intersect_net(a: &NetPattern, b: &NetPattern) -> Option<NetPattern> {
    let port = match (a.port, b.port) {
        (Some(x), Some(y)) if x != y => return None,
        (x, y) => x.or(y),
    };
    // What a wildcard never reaches at run time it does not share with a
    // pattern naming it: a special address named literally (loopback,
    // private, link-local, metadata, `localhost`, or an address of this
    // host: the egress policy's own classification, asked now, as the run
    // that follows will) is reached only through a pattern naming it, and
    // `*.suffix` matches names, never an IP literal.
    for (wild, other) in [(a, b), (b, a)] {
        let special = cordon_egress::names_special_address(other);
        let ip = cordon_egress::pattern_address(other).is_some();
        if (wild.host == "*" && special) || (wild.host.starts_with("*.") && (special || ip)) {
            return None;
        }
    }
    let host = intersect_host(&a.host, &b.host)?;
    Some(NetPattern { host, port })
}

fn intersect_host(a: &str, b: &str) -> Option<String> {
    // `*.s` matches proper subdomains of `s`, not `s` itself.
    let under = |name: &str, suffix: &str| {
        name.len() > suffix.len() + 1 && name.ends_with(suffix) && name[..name.len() - suffix.len()].ends_with('.')
    };
    match (a, b) {
        ("*", other) | (other, "*") => Some(other.to_owned()),
        _ => match (a.strip_prefix("*."), b.strip_prefix("*.")) {
            (None, None) => (a == b).then(|| a.to_owned()),
            (Some(s), None) => under(b, s).then(|| b.to_owned()),
            (None, Some(t)) => under(a, t).then(|| a.to_owned()),
            (Some(s), Some(t)) => {
                if s == t || under(s, t) {
                    Some(a.to_owned())
                } else if under(t, s) {
                    Some(b.to_owned())
                } else {
                    None
                }
            }
        },
    }
}

/// The text of an environment pattern. cordon-core keeps it private; its
/// serde form is the text itself.
pub fn env_text(p: &EnvPattern) -> String {
    match serde_json::to_value(p) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Names both patterns match, as one pattern, if they overlap.
fn intersect_env(a: &EnvPattern, b: &EnvPattern) -> Option<EnvPattern> {
    let (ta, tb) = (env_text(a), env_text(b));
    let narrower = match (ta.strip_suffix('*'), tb.strip_suffix('*')) {
        (None, None) => (ta == tb).then_some(a),
        (Some(_), None) => a.matches(&tb).then_some(b),
        (None, Some(_)) => b.matches(&ta).then_some(a),
        (Some(pa), Some(pb)) => {
            if pa.starts_with(pb) {
                Some(a)
            } else if pb.starts_with(pa) {
                Some(b)
            } else {
                None
            }
        }
    };
    narrower.cloned()
}

/// Whether every destination `inner` reaches, `outer` reaches too, on any
/// host at any time (the registry's consent diff asks this when a plugin is
/// installed, for every later run). A wildcard never covers an IP literal
/// or `localhost`: a literal unlocks a special address it names, which `*`
/// never reaches, and an IP literal may name an address of the host that
/// runs the plugin (decided at run time: addresses change, and a lock file
/// is not tied to one host), which only a literal reaches.
pub fn net_covers(outer: &NetPattern, inner: &NetPattern) -> bool {
    let literal = cordon_egress::pattern_address(inner).is_some() || cordon_egress::names_special_address(inner);
    if literal && outer.host.starts_with('*') {
        return false;
    }
    intersect_net(outer, inner).as_ref() == Some(inner)
}

/// Whether every variable `inner` matches, `outer` matches too.
pub fn env_covers(outer: &EnvPattern, inner: &EnvPattern) -> bool {
    intersect_env(outer, inner).as_ref() == Some(inner)
}

/// Whether `path` lies in a tree of `rules` (component-wise).
pub fn covered_by(path: &Path, rules: &[PathRule]) -> bool {
    rules.iter().any(|r| path.starts_with(&r.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(p: &str) -> PathRule {
        PathRule::parse(p, Path::new("/")).unwrap()
    }
    fn net(p: &str) -> NetPattern {
        NetPattern::parse(p).unwrap()
    }
    fn env(p: &str) -> EnvPattern {
        EnvPattern::parse(p).unwrap()
    }

    #[test]
    fn union_adds_grants_and_keeps_carve_outs() {
        let a = PolicyBuilder::new().read(rule("/a")).deny(rule("/a/secret")).allow_host(net("x.com"));
        let b = PolicyBuilder::new()
            .write(rule("/b"))
            .read(rule("/a"))
            .limits(Limits { memory_mb: Some(64), ..Limits::default() });
        let p = a.union(b.policy()).build();
        assert_eq!(p.fs.read, [rule("/a")]);
        assert_eq!(p.fs.write, [rule("/b")]);
        assert_eq!(p.fs.deny, [rule("/a/secret")]);
        assert_eq!(p.net.allow, [net("x.com")]);
        assert_eq!(p.limits.memory_mb, Some(64));
    }

    #[test]
    fn union_of_exec_lists_is_none_when_either_side_has_none() {
        let a = PolicyBuilder::new().allow_exec("/bin/a".into());
        assert_eq!(a.clone().union(&Policy::default()).build().exec, None);
        let b = PolicyBuilder::new().allow_exec("/bin/b".into()).build();
        assert_eq!(a.union(&b).build().exec, Some(vec!["/bin/a".into(), "/bin/b".into()]));
    }

    #[test]
    fn narrow_keeps_the_deeper_tree_and_downgrades_write() {
        let m = PolicyBuilder::new().write(rule("/srv/data")).read(rule("/srv/plugin")).read(rule("/etc/other"));
        let host =
            PolicyBuilder::new().read(rule("/srv")).write(rule("/srv/data/out")).deny(rule("/srv/plugin/.git")).build();
        let p = m.narrow(&host).build();
        assert_eq!(p.fs.write, [rule("/srv/data/out")]);
        assert_eq!(p.fs.read, [rule("/srv/plugin"), rule("/srv/data")]);
        assert_eq!(p.fs.deny, [rule("/srv/plugin/.git")]);
    }

    #[test]
    fn narrow_never_widens() {
        // Whatever the host grants, nothing the manifest lacks appears.
        let m = PolicyBuilder::new().read(rule("/p")).allow_host(net("a.com:443")).inherit_env(env("A"));
        let p = m.narrow(&PolicyBuilder::unrestricted()).build();
        assert_eq!(p.fs.read, [rule("/p")]);
        assert!(p.fs.write.is_empty());
        assert_eq!(p.net.allow, [net("a.com:443")]);
        assert_eq!(p.env.allow, [env("A")]);
        assert_eq!(p.exec, None);
        assert_eq!(p.limits.timeout_ms, None);
        assert_eq!(p.limits.grace_ms, Limits::default().grace_ms);
        assert_eq!(p.limits.output_bytes, Limits::default().output_bytes);
    }

    #[test]
    fn an_unrestricted_host_keeps_literals_a_host_wildcard_drops() {
        // R12-2: the host's `*` (`cordon exec --net '*'`) reaches no
        // special address, so it keeps no literal naming one; a host that
        // narrows nothing keeps them all.
        let m = PolicyBuilder::new().allow_host(net("a.com:443")).allow_host(net("127.0.0.1:5432"));
        let p = m.clone().narrow(&PolicyBuilder::unrestricted()).build();
        assert_eq!(p.net.allow, [net("a.com:443"), net("127.0.0.1:5432")]);
        let mut star = PolicyBuilder::unrestricted();
        star.net.allow = vec![net("*")];
        assert_eq!(m.clone().narrow(&star).build().net.allow, [net("a.com:443")]);
        star.net.allow.push(net("127.0.0.1"));
        assert_eq!(m.narrow(&star).build().net.allow, [net("a.com:443"), net("127.0.0.1:5432")]);
        assert!(NetPattern::parse(&any_destination().host).is_err(), "no flag spells it");
    }

    #[test]
    fn narrow_net_patterns() {
        let cases = [
            ("*", "api.x.com", Some("api.x.com")),
            ("*.x.com", "api.x.com:443", Some("api.x.com:443")),
            ("*.x.com", "x.com", None),
            ("*.x.com", "*.eu.x.com", Some("*.eu.x.com")),
            ("*.x.com", "*.y.com", None),
            ("a.com:80", "a.com:443", None),
            ("a.com", "b.com", None),
            ("*.x.com", "evilx.com", None),
            // R12-2: a wildcard never reaches a special address named
            // literally, nor does `*.suffix` an IP literal; the literal
            // itself does, and `*` still covers a public address.
            ("*", "127.0.0.1:8080", None),
            ("*", "169.254.169.254:80", None),
            ("*", "10.1.2.3", None),
            ("*", "localhost:5432", None),
            ("*", "[::1]:80", None),
            ("*", "::ffff:127.0.0.1", None),
            ("*.0.1", "127.0.0.1", None),
            ("*.0.0.1", "10.0.0.1", None),
            ("*.1.1", "1.1.1.1", None),
            ("127.0.0.1", "127.0.0.1:8080", Some("127.0.0.1:8080")),
            ("localhost", "localhost:5432", Some("localhost:5432")),
            ("*", "1.1.1.1:53", Some("1.1.1.1:53")),
        ];
        for (a, b, want) in cases {
            for (l, r) in [(a, b), (b, a)] {
                let got = intersect_net(&net(l), &net(r));
                assert_eq!(got, want.map(net), "{l} ∩ {r}");
            }
        }
    }

    #[test]
    fn narrow_env_patterns() {
        let cases = [
            ("MY_*", "MY_A", Some("MY_A")),
            ("MY_*", "MY_A*", Some("MY_A*")),
            ("MY_*", "OTHER", None),
            ("A", "A", Some("A")),
            ("A", "B", None),
            ("*", "TOKEN", Some("TOKEN")),
        ];
        for (a, b, want) in cases {
            for (l, r) in [(a, b), (b, a)] {
                assert_eq!(intersect_env(&env(l), &env(r)), want.map(env), "{l} ∩ {r}");
            }
        }
    }

    #[test]
    fn narrow_limits_exec_wx_and_system() {
        let m = PolicyBuilder::new()
            .limits(Limits { timeout_ms: Some(30_000), memory_mb: None, ..Limits::default() })
            .allow_exec("/p/bin/tool".into())
            .allow_exec("/usr/bin/git".into());
        let host = PolicyBuilder::new()
            .limits(Limits { timeout_ms: Some(60_000), memory_mb: Some(128), ..Limits::default() })
            .allow_exec("/p/bin".into())
            .wx(WriteXorExecute::Deny)
            .system(SystemSet::Exclude)
            .build();
        let p = m.narrow(&host).build();
        assert_eq!(p.limits.timeout_ms, Some(30_000));
        assert_eq!(p.limits.memory_mb, Some(128));
        assert_eq!(p.exec, Some(vec![PathBuf::from("/p/bin/tool")]));
        assert_eq!(p.wx, WriteXorExecute::Deny);
        assert_eq!(p.fs.system, SystemSet::Exclude);
    }

    #[test]
    fn restrict_exec_without_entries_allows_nothing() {
        assert_eq!(PolicyBuilder::new().restrict_exec().build().exec, Some(vec![]));
        assert_eq!(PolicyBuilder::new().build().exec, None);
    }
}
