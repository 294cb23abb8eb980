//! The host's mount table (`/proc/self/mountinfo`), read to tell where a
//! path lies on its filesystem whatever mount it is reached through.
//!
//! A bind mount shows one folder under two names, and no resolution of
//! links sees it. Two paths name the same file when they lie on the same
//! filesystem (the mount's device) at the same place below its root: the
//! mount's root (field 4, the folder of the filesystem it shows) joined
//! with the path below the mount point. [`Place`] is that pair.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// Where a path lies on its filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The filesystem: `major:minor` as mountinfo spells it.
    pub device: String,
    /// The path from the filesystem's root.
    pub path: PathBuf,
}

/// One mount of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The mount's id (field 1), as `statx` reports it.
    pub id: u64,
    /// Where it shows its filesystem, as a [`Place`] of its mount point.
    pub root: Place,
    /// Its mount point (field 5).
    pub point: PathBuf,
    /// An overlay's layers (its `lowerdir`, `lowerdir+`, `datadir+` and
    /// `upperdir`, host paths as the mounter gave them, relative ones
    /// included: relative to the folder the mounter worked in, which
    /// mountinfo does not show): the folders whose files it shows, each
    /// under the mount point. Empty for other kinds.
    pub layers: Vec<PathBuf>,
}

impl Mount {
    /// Where `below`, a path below the mount point, lies on the filesystem.
    pub fn place_of(&self, below: &Path) -> Place {
        Place { device: self.root.device.clone(), path: join(&self.root.path, below) }
    }
}

/// The mounts of this process's mount namespace.
#[derive(Debug, Default)]
pub struct MountTable(Vec<Mount>);

impl MountTable {
    /// Reads `/proc/self/mountinfo`.
    pub fn read() -> io::Result<Self> {
        Ok(Self::parse(&std::fs::read("/proc/self/mountinfo")?))
    }

    /// The table from mountinfo's text; a line it cannot read is skipped.
    pub fn parse(text: &[u8]) -> Self {
        let mount = |line: &[u8]| -> Option<Mount> {
            let mut fields = line.split(|&b| b == b' ');
            let id = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
            let _parent = fields.next()?;
            let device = String::from_utf8(fields.next()?.to_vec()).ok()?;
            let root = unescape(fields.next()?);
            let point = unescape(fields.next()?);
            let mut rest = fields.skip_while(|f| *f != b"-").skip(1);
            let layers = match (rest.next(), rest.nth(1)) {
                (Some(b"overlay"), Some(options)) => overlay_layers(options),
                _ => vec![],
            };
            Some(Mount { id, root: Place { device, path: root }, point, layers })
        };
        Self(text.split(|&b| b == b'\n').filter_map(mount).collect())
    }

    /// Where `path`, an absolute path resolved through its links already,
    /// lies on its filesystem. `None` when it cannot be looked at (missing,
    /// or out of cordon's reach: then no rule is made on it either); an
    /// error when its mount is not in the table (one mounted since the
    /// table was read, or a path into another mount namespace such as
    /// `/proc/PID/root/…`).
    pub fn place(&self, path: &Path) -> io::Result<Option<Place>> {
        Ok(self.mount_of(path)?.map(|(m, below)| m.place_of(below)))
    }

    /// The mount `path` (as [`MountTable::place`] takes it) lies on, and
    /// its path below the mount point.
    pub fn mount_of<'a>(&self, path: &'a Path) -> io::Result<Option<(&Mount, &'a Path)>> {
        let Ok(id) = crate::sys::mount_id(path) else { return Ok(None) };
        self.0
            .iter()
            .filter(|m| m.id == id)
            .find_map(|m| Some(Some((m, path.strip_prefix(&m.point).ok()?))))
            .ok_or_else(|| {
                io::Error::other(format!(
                    "mount {id}, which {} lies on, is not in /proc/self/mountinfo as read",
                    path.display()
                ))
            })
    }

    /// The mounts whose mount point lies strictly below `dir`.
    pub fn below<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = &'a Mount> + 'a {
        self.0.iter().filter(move |m| m.point != dir && m.point.starts_with(dir))
    }
}

/// `base` joined with `rest`, without the trailing `/` an empty `rest`
/// would not add anyway.
fn join(base: &Path, rest: &Path) -> PathBuf {
    match rest.as_os_str().is_empty() {
        true => base.to_owned(),
        false => base.join(rest),
    }
}

/// The layers named in an overlay's super options (mountinfo's last
/// field): `lowerdir=a:b` (a `:` inside a name is written `\:`),
/// `lowerdir+=a`, `datadir+=a`, `upperdir=a`.
fn overlay_layers(options: &[u8]) -> Vec<PathBuf> {
    let mut layers = vec![];
    for option in options.split(|&b| b == b',') {
        let Some(eq) = option.iter().position(|&b| b == b'=') else { continue };
        let (key, value) = (&option[..eq], unescape(&option[eq + 1..]).into_os_string().into_vec());
        match key {
            b"lowerdir" => {
                let mut layer = vec![];
                let mut bytes = value.iter().copied().peekable();
                while let Some(b) = bytes.next() {
                    match b {
                        b'\\' if bytes.peek() == Some(&b':') => layer.push(bytes.next().unwrap_or(b':')),
                        b':' => layers.push(PathBuf::from(OsString::from_vec(std::mem::take(&mut layer)))),
                        _ => layer.push(b),
                    }
                }
                layers.push(PathBuf::from(OsString::from_vec(layer)));
            }
            b"lowerdir+" | b"datadir+" | b"upperdir" => layers.push(PathBuf::from(OsString::from_vec(value))),
            _ => {}
        }
    }
    layers
}

/// A mountinfo field with its octal escapes (`\040` for a space, `\011`,
/// `\012`, `\134`) decoded.
fn unescape(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal =
            field.get(i + 1..i + 4).filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_with_its_escapes_decoded() {
        let text = b"22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
            97 22 252:0 /home/alice/my\\040data /mnt/data\\134x rw - ext4 /dev/vda rw\n\
            not a line\n";
        let t = MountTable::parse(text);
        assert_eq!(t.0.len(), 2, "{t:?}");
        assert_eq!(t.0[1].id, 97);
        assert_eq!(t.0[1].root, Place { device: "252:0".into(), path: PathBuf::from("/home/alice/my data") });
        assert_eq!(t.0[1].point, PathBuf::from("/mnt/data\\x"));
        assert_eq!(t.below(Path::new("/mnt")).map(|m| m.id).collect::<Vec<_>>(), [97]);
        assert_eq!(t.below(Path::new("/mnt/data\\x")).count(), 0, "a mount is not below itself");
        assert!(t.0.iter().all(|m| m.layers.is_empty()));
        let overlay =
            b"70 47 0:40 / /m rw - overlay overlay rw,lowerdir=/l\\0403:/l2\\134\\072x,upperdir=/up,workdir=/w\n\
            71 47 0:41 / /n rw - overlay overlay rw,lowerdir+=/a,datadir+=/b\n\
            72 47 0:42 / /o rw - overlay overlay rw,lowerdir=lower,upperdir=up/per,workdir=work\n";
        let t = MountTable::parse(overlay);
        let layers: Vec<Vec<PathBuf>> = t.0.iter().map(|m| m.layers.clone()).collect();
        let want: [Vec<PathBuf>; 3] = [
            vec!["/l 3".into(), "/l2:x".into(), "/up".into()],
            vec!["/a".into(), "/b".into()],
            vec!["lower".into(), "up/per".into()],
        ];
        assert_eq!(layers, want);
    }

    /// This process's own root and a file below it: the same filesystem
    /// path as the file's own spelling when `/` is the filesystem's root.
    #[test]
    fn a_path_is_placed_on_the_mount_it_lies_on() {
        let t = MountTable::read().unwrap();
        let place = t.place(&std::fs::canonicalize("/proc/self").unwrap()).unwrap().unwrap();
        let proc = t.place(Path::new("/proc")).unwrap().unwrap();
        assert_eq!(place.device, proc.device, "/proc/self lies on /proc's filesystem");
        assert!(place.path.starts_with(&proc.path), "{place:?} {proc:?}");
        assert_eq!(t.place(Path::new("/no/such/path/here")).unwrap(), None);
    }
}
