//! Filesystem rules: `read`, `write` and `deny` path trees, and the system set.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::{PolicyError, Result};

/// One path tree a rule applies to: a file, or a directory and everything
/// below it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathRule {
    /// Absolute and lexically normalised (no `.`, `..` or trailing `/**`).
    /// Symbolic links are resolved when the rule is enforced.
    pub path: PathBuf,
}

impl PathRule {
    /// Parses a user-supplied path: relative paths resolve against `base`, a
    /// trailing `/**` means the tree (which is what a directory means anyway),
    /// and any other wildcard is refused.
    pub fn parse(raw: &str, base: &Path) -> Result<Self> {
        if raw.is_empty() {
            return Err(PolicyError::EmptyPath);
        }
        let trimmed = raw.strip_suffix("/**").unwrap_or(raw);
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        if trimmed.contains(['*', '?', '[']) {
            return Err(PolicyError::Wildcard(raw.to_owned()));
        }
        let joined = if Path::new(trimmed).is_absolute() { PathBuf::from(trimmed) } else { base.join(trimmed) };
        Ok(PathRule { path: normalize(&joined) })
    }

    /// Fails with [`PolicyError::PathMissing`] unless the path exists
    /// (following symbolic links).
    pub fn require_exists(&self) -> Result<()> {
        if self.path.exists() {
            Ok(())
        } else {
            Err(PolicyError::PathMissing { path: self.path.display().to_string() })
        }
    }
}

/// Removes `.` and resolves `..` lexically, as `cd` in a shell would; the
/// result is absolute (a relative input is taken from `/`).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// A path and whether it is plain (absolute, with no empty or `.`
/// component and no trailing `/` but on `/` itself), worked out once for
/// many prefix tests: the components of a plain path are exactly the text
/// between its slashes, so [`Spelled::starts_with`] between two plain paths
/// is one comparison of bytes instead of [`Path::starts_with`]'s walk over
/// components. The carve-out of cordon's state tests every pair of a grant
/// and a protected path (about a thousand per run), where walking
/// components cost more than the rest of it together.
#[derive(Clone, Copy, Debug)]
pub struct Spelled<'a> {
    path: &'a Path,
    plain: bool,
}

impl<'a> Spelled<'a> {
    /// `path`, looked at once.
    pub fn new(path: &'a Path) -> Spelled<'a> {
        use std::os::unix::ffi::OsStrExt;
        Spelled { path, plain: is_plain(path.as_os_str().as_bytes()) }
    }

    /// The path.
    pub fn path(self) -> &'a Path {
        self.path
    }

    /// Exactly `self.path().starts_with(base.path())` (whole components).
    pub fn starts_with(self, base: Spelled<'_>) -> bool {
        use std::os::unix::ffi::OsStrExt;
        if !(self.plain && base.plain) {
            return self.path.starts_with(base.path);
        }
        let (p, b) = (self.path.as_os_str().as_bytes(), base.path.as_os_str().as_bytes());
        p.starts_with(b) && (b.len() == 1 || p.len() == b.len() || p[b.len()] == b'/')
    }
}

/// `path.starts_with(base)`, as [`Spelled::starts_with`] does it.
pub fn starts_with(path: &Path, base: &Path) -> bool {
    Spelled::new(path).starts_with(Spelled::new(base))
}

/// Whether `p` is absolute, with no empty or `.` component and no trailing
/// `/` (but `/` itself).
fn is_plain(p: &[u8]) -> bool {
    if p.first() != Some(&b'/') {
        return false;
    }
    if p.len() == 1 {
        return true;
    }
    // Each slash must start a component that is neither empty nor `.`.
    p.iter()
        .enumerate()
        .filter(|(_, c)| **c == b'/')
        .all(|(i, _)| !matches!((p.get(i + 1), p.get(i + 2)), (None | Some(b'/'), _) | (Some(b'.'), None | Some(b'/'))))
}

/// Whether the read-only system set is granted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SystemSet {
    /// Grant the system set (the default).
    #[default]
    Include,
    /// `--no-system`: only the paths the policy names.
    Exclude,
}

/// Filesystem access. Default: the system set read-only, a private scratch
/// directory writable, nothing else.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FsPolicy {
    /// Read and execute.
    pub read: Vec<PathRule>,
    /// Read, write, create, remove.
    pub write: Vec<PathRule>,
    /// Carve-outs inside granted trees: no access at all.
    pub deny: Vec<PathRule>,
    /// The read-only system set.
    pub system: SystemSet,
    /// Trees whose rules were resolved, symbolic links included, when the
    /// policy was made (a plugin folder). Enforcement opens the rules inside
    /// them without following any link, so a link made there after the
    /// check cannot redirect a grant: it refuses the run instead. Rules
    /// elsewhere follow links when enforced, as documented on [`PathRule`].
    /// Default: none. Not part of the policy's digest (the paths are).
    #[serde(skip)]
    pub pinned: Vec<PathBuf>,
    /// Holes in a deny: `(outer, hole)` keeps the rules inside `hole`
    /// against a deny on `outer` or on a folder between `outer` and `hole`
    /// (not `hole` itself, nor any deny elsewhere). Only cordon's carve-out
    /// of its own state makes them ([`crate::state::carve_out`]): a run's own
    /// run folder inside cordon's protected folder of run folders, which a
    /// grant covering that folder must not reach otherwise. Both paths are
    /// resolved. Default: none. Not part of the policy's digest.
    #[serde(skip)]
    pub holes: Vec<(PathBuf, PathBuf)>,
}

/// Whether `rule` (resolved) is kept against the deny `deny` (resolved)
/// by one of `holes` (see [`FsPolicy::holes`]).
pub fn in_hole(rule: &Path, deny: &Path, holes: &[(PathBuf, PathBuf)]) -> bool {
    holes.iter().any(|(outer, hole)| {
        starts_with(rule, hole) && starts_with(deny, outer) && starts_with(hole, deny) && hole.as_path() != deny
    })
}

/// Directories and files that ordinary programs need to start: loader and
/// libraries, binaries, and the non-secret parts of `/etc`.
///
/// Deliberately absent: `/etc/shadow`, `/etc/gshadow`, `/etc/sudoers*`,
/// `/etc/ssl/private`, `/root`, `/home`, `/sys`, `/dev` beyond the few
/// character devices in [`SYSTEM_DEVICES`], and other processes' `/proc`.
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/opt",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki/tls/certs",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/protocols",
    "/etc/services",
    "/etc/mime.types",
    "/etc/locale.alias",
    "/etc/locale.conf",
    "/etc/default/locale",
    "/etc/os-release",
    "/etc/debian_version",
    "/etc/lsb-release",
    "/etc/inputrc",
    "/etc/terminfo",
    "/etc/magic",
    "/etc/mailcap",
    "/etc/fonts",
    "/etc/java-17-openjdk",
    "/etc/java-21-openjdk",
    "/etc/perl",
    "/etc/python3",
    "/etc/python3.11",
    "/etc/gitconfig",
    "/etc/bash.bashrc",
    "/etc/profile",
    "/etc/environment",
    "/etc/subuid",
    "/etc/subgid",
];

/// The system library folders: with an exec allow-list they stay
/// executable (shared libraries are mapped executable) while every other
/// tree is mounted `noexec`. Executables inside them can still be started
/// through the ELF loader: the allow-list's documented gap.
pub const LIBRARY_TREES: &[&str] =
    &["/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32", "/usr/local/lib"];

/// Character devices of the system set, readable and writable.
pub const SYSTEM_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_base() {
        let r = PathRule::parse("data/../out/**", Path::new("/work/x")).unwrap();
        assert_eq!(r.path, Path::new("/work/x/out"));
    }

    #[test]
    fn trailing_double_star_is_the_tree() {
        assert_eq!(PathRule::parse("/srv/**", Path::new("/")).unwrap().path, Path::new("/srv"));
        assert_eq!(PathRule::parse("/**", Path::new("/")).unwrap().path, Path::new("/"));
    }

    #[test]
    fn other_wildcards_are_refused() {
        for bad in ["/srv/*.txt", "/srv/**/x", "/a?", "/a[bc]", "*"] {
            let err = PathRule::parse(bad, Path::new("/")).unwrap_err();
            assert!(matches!(err, PolicyError::Wildcard(_)), "{bad}: {err}");
            assert!(err.to_string().contains(bad));
        }
    }

    /// `Spelled`'s comparison of bytes answers as `Path::starts_with` does, for every
    /// pair of a set of paths made to trip it: a name that only begins like
    /// another (`/a/bc` and `/a/b`), the root, trailing, doubled and `.`
    /// components (which `Path` ignores), `..` (which it does not), and
    /// relative paths.
    #[test]
    fn starts_with_agrees_with_paths_own() {
        let paths = [
            "/",
            "//",
            "/a",
            "/a/",
            "/a//",
            "/ab",
            "/a/b",
            "/a/bc",
            "/a/b/c",
            "/a//b",
            "/a/./b",
            "/a/.",
            "/a/..",
            "/a/../b",
            "/a/b/..",
            "/.",
            "/./a",
            "/..",
            "/.a",
            "/a/.b",
            "/a/b.",
            "/a/...",
            "a",
            "a/b",
            "./a",
            "",
            ".",
            "/usr",
            "/usr/lib",
            "/usr/lib64",
            "/root/.local/state/cordon",
            "/root/.local/state/cordon/audit.key",
        ];
        for p in paths {
            for b in paths {
                let (fast, own) = (starts_with(Path::new(p), Path::new(b)), Path::new(p).starts_with(b));
                assert_eq!(fast, own, "{p:?} starts with {b:?}");
            }
        }
    }

    #[test]
    fn dotdot_cannot_climb_above_root() {
        assert_eq!(PathRule::parse("/../../etc", Path::new("/")).unwrap().path, Path::new("/etc"));
    }

    #[test]
    fn secrets_are_not_in_the_system_set() {
        for secret in ["/etc/shadow", "/etc/gshadow", "/etc/ssl/private", "/root", "/home", "/sys", "/etc"] {
            assert!(!SYSTEM_READ.contains(&secret), "{secret}");
        }
    }
}
