//! Write grants are pinned trees: no rule is taken through a symbolic link
//! that lies inside one (review s11 S1).
//!
//! A rule's path is resolved through its links when a run is set up, and a
//! write grant lets the run make, remove and re-point links in its tree.
//! So a rule spelled through such a link, or below a folder the run could
//! replace by one, is the previous run's to redirect: a manifest asking for
//! `fs.write = ["W"]` and `fs.read = ["W/ref"]` replaced `W/ref` by a link
//! to `/` in its first execution and read the host's root in its second; a
//! nested write grant re-pointed the same way wrote outside every grant; a
//! deny spelled through a link in a write grant was carved out of whatever
//! the link then named.
//!
//! [`pin_write_grants`] resolves every rule (read, write, deny, exec) the
//! way `realpath(3)` does, except that meeting a link in a folder inside a
//! write grant refuses the run, naming the rule, the link and the grant.
//! The rules are then spelled as resolved and the write grants are added to
//! the policy's pinned trees: enforcement opens what lies inside them
//! without following any link (`RESOLVE_NO_SYMLINKS`), so a link a run
//! running beside this one makes after the check fails this run's setup
//! instead of redirecting it.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crate::policy::{PathRule, Policy};

/// A rule that passes through a symbolic link inside a write grant.
#[derive(Debug, thiserror::Error)]
#[error(
    "{field} path {path} passes through the symbolic link {link} (to {target}), which lies inside the write grant \
     {grant}: a run may make or re-point links there, so cordon does not follow it"
)]
pub struct LinkInWriteGrant {
    /// Which list the rule is in: `fs.read`, `fs.write`, `fs.deny`, `exec`.
    pub field: &'static str,
    /// The rule's path as declared.
    pub path: PathBuf,
    /// The link met on the way.
    pub link: PathBuf,
    /// What the link points at.
    pub target: PathBuf,
    /// The write grant (resolved) the link lies in.
    pub grant: PathBuf,
}

impl LinkInWriteGrant {
    /// What to do.
    pub fn hint(&self) -> String {
        format!(
            "grant or deny the link's target by its own path (not through {}), or remove the link",
            self.link.display()
        )
    }
}

/// `policy` with its write grants pinned (see the module docs), or `None`
/// when it has no write grant and nothing changes. Rules inside a tree the
/// policy pinned already are left as they are.
pub fn pin_write_grants(policy: &Policy) -> Result<Option<Policy>, LinkInWriteGrant> {
    if policy.fs.write.is_empty() {
        return Ok(None);
    }
    // Trees pinned already (a plugin folder) were resolved when the policy
    // was made: their rules are kept as they are (enforcement opens them
    // without following links and refuses a link made there since), and
    // no link inside them is followed on the way to another rule either.
    let already = &policy.fs.pinned;
    let inside_pinned = |p: &Path| already.iter().any(|t| p.starts_with(t));
    // Where the write grants lead today. A grant reached through a link
    // inside another one is refused below, so a root that link chose (it
    // may be `/`) never lets a run start.
    let roots: Vec<PathBuf> = policy
        .fs
        .write
        .iter()
        .map(|r| if inside_pinned(&r.path) { r.path.clone() } else { super::resolved(&r.path) })
        .collect();
    let fenced: Vec<PathBuf> = roots.iter().chain(already).cloned().collect();
    let mut pinned = policy.clone();
    let lists: [(&'static str, &mut Vec<PathRule>); 3] =
        [("fs.write", &mut pinned.fs.write), ("fs.read", &mut pinned.fs.read), ("fs.deny", &mut pinned.fs.deny)];
    for (field, rules) in lists {
        for rule in rules.iter_mut().filter(|r| !inside_pinned(&r.path)) {
            rule.path = resolve(field, &rule.path, &fenced)?;
        }
    }
    if let Some(exec) = &mut pinned.exec {
        for path in exec.iter_mut().filter(|p| !inside_pinned(p)) {
            *path = resolve("exec", path, &fenced)?;
        }
    }
    pinned.fs.pinned.extend(roots);
    Ok(Some(pinned))
}

/// How many links one path may pass through, as the kernel allows.
const MAX_LINKS: usize = 40;

/// `path` resolved through its links as far as it exists (the rest kept
/// as written, `..` taken lexically), or the first link met in a folder
/// inside one of `roots` (the write grants and the trees pinned already).
fn resolve(field: &'static str, path: &Path, roots: &[PathBuf]) -> Result<PathBuf, LinkInWriteGrant> {
    walk(path, |folder, link, target| match roots.iter().find(|r| folder.starts_with(r)) {
        Some(grant) => Err(LinkInWriteGrant {
            field,
            path: path.to_owned(),
            link: link.to_owned(),
            target: target.to_owned(),
            grant: grant.clone(),
        }),
        None => Ok(()),
    })
}

/// `path` resolved through its links as far as it exists (the rest kept
/// as written, `..` taken lexically), the way `realpath(3)` does, calling
/// `on_link(folder, link, target)` for each link met before following it:
/// `folder` is the (resolved) folder the link lies in. Its error stops the
/// walk. A path through more than [`MAX_LINKS`] links is kept as written
/// (the kernel refuses it: `ELOOP`).
pub(crate) fn walk<E>(
    path: &Path,
    mut on_link: impl FnMut(&Path, &Path, &Path) -> Result<(), E>,
) -> Result<PathBuf, E> {
    let mut done = PathBuf::from("/");
    let mut todo: Vec<OsString> = components(path);
    todo.reverse(); // popped from the end: the next component is last
    let mut links = 0;
    let mut exists = true;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&c);
        if !exists {
            done = next;
            continue;
        }
        // One syscall tells all three apart: a link's target, EINVAL for
        // anything else that exists, another error for what does not.
        let target = match std::fs::read_link(&next) {
            Ok(target) => target,
            Err(e) => {
                exists = e.raw_os_error() == Some(libc::EINVAL);
                done = next;
                continue;
            }
        };
        on_link(&done, &next, &target)?;
        links += 1;
        if links > MAX_LINKS {
            // The kernel would refuse it (ELOOP): keep it as written.
            return Ok(path.to_owned());
        }
        if target.is_absolute() {
            done = PathBuf::from("/");
        }
        let mut more = components(&target);
        more.reverse();
        todo.extend(more);
    }
    Ok(done)
}

/// The normal and `..` components of `path` (`.` and the root dropped).
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(p: &Path) -> PathRule {
        PathRule { path: p.to_owned() }
    }

    #[test]
    fn resolves_like_realpath_outside_write_grants_and_refuses_links_inside_them() {
        let dir = std::env::temp_dir().join(format!("cordon-pin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real/work/sub")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("alias")).unwrap();
        std::os::unix::fs::symlink("../../data", dir.join("real/work/link")).unwrap();
        std::os::unix::fs::symlink("sub", dir.join("real/work/rel")).unwrap();

        // A link outside every write grant is followed, the rest kept.
        let roots = [dir.join("real/work")];
        assert_eq!(resolve("fs.read", &dir.join("alias/work/sub/x"), &roots).unwrap(), dir.join("real/work/sub/x"));
        assert_eq!(resolve("fs.read", &dir.join("alias/missing/y"), &roots).unwrap(), dir.join("real/missing/y"));
        // Inside a write grant, any link is refused, however it is reached.
        for p in [dir.join("real/work/link/f"), dir.join("alias/work/rel"), dir.join("alias/work/link")] {
            let e = resolve("fs.read", &p, &roots).unwrap_err();
            assert!(e.link.starts_with(dir.join("real/work")), "{e}");
            assert_eq!(e.grant, dir.join("real/work"));
            assert!(e.to_string().contains("inside the write grant"), "{e}");
        }
        // Inside a tree pinned already, a rule is kept as it is (its link
        // is refused when the rule is opened), and its link is not
        // followed on the way to another rule.
        let mut policy = Policy::default();
        policy.fs.pinned.push(dir.join("real/work"));
        policy.fs.write.push(rule(&dir.join("real/work/link")));
        let kept = pin_write_grants(&policy).unwrap().unwrap();
        assert_eq!(kept.fs.write[0].path, dir.join("real/work/link"));
        assert!(kept.fs.pinned.contains(&dir.join("real/work/link")));
        policy.fs.read.push(rule(&dir.join("alias/work/link")));
        assert_eq!(pin_write_grants(&policy).unwrap_err().field, "fs.read");
        // Without the grant, they resolve as realpath does.
        assert_eq!(resolve("fs.read", &dir.join("real/work/link"), &[]).unwrap(), dir.join("data"));
        assert_eq!(resolve("fs.read", &dir.join("alias/work/rel"), &[]).unwrap(), dir.join("real/work/sub"));

        let mut policy = Policy::default();
        policy.fs.write.push(rule(&dir.join("alias/work")));
        policy.fs.read.push(rule(&dir.join("alias/work/sub")));
        let pinned = pin_write_grants(&policy).unwrap().unwrap();
        assert_eq!(pinned.fs.write[0].path, dir.join("real/work"));
        assert_eq!(pinned.fs.read[0].path, dir.join("real/work/sub"));
        assert_eq!(pinned.fs.pinned, vec![dir.join("real/work")]);
        policy.fs.deny.push(rule(&dir.join("real/work/link/secret")));
        let e = pin_write_grants(&policy).unwrap_err();
        assert_eq!((e.field, e.link.clone()), ("fs.deny", dir.join("real/work/link")), "{e}");
        // A nested write grant through a link in the outer one.
        let mut policy = Policy::default();
        policy.fs.write.push(rule(&dir.join("real/work")));
        policy.fs.write.push(rule(&dir.join("real/work/link")));
        assert_eq!(pin_write_grants(&policy).unwrap_err().field, "fs.write");
        assert!(pin_write_grants(&Policy::default()).unwrap().is_none(), "no write grant, nothing to pin");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
