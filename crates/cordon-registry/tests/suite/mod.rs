//! Fixtures shared by the registry's integration tests: a store in a fresh
//! folder, plugin folders written on the fly, keys, and a raw tar writer for
//! archives the `tar` crate refuses to write.

mod hostile;
mod lifecycle;
mod signing;

use std::path::{Path, PathBuf};

use cordon_registry::{InstallOptions, Registry, Unsigned};
use cordon_testkit::Dir;

/// A registry in its own folder, with room for plugins and keys beside it.
pub struct Fixture {
    pub dir: Dir,
    pub reg: Registry,
}

impl Fixture {
    pub fn new(label: &str) -> Fixture {
        let dir = Dir::new(label);
        let reg = Registry::open(&dir.join("home")).unwrap();
        Fixture { dir, reg }
    }

    /// Writes plugin folder `src/<name>-<version>` with a manifest (`extra`
    /// appended after the handler) and returns it.
    pub fn plugin(&self, id: &str, version: &str, extra: &str) -> PathBuf {
        let name = format!("{}-{version}", id.replace(['@', '/'], "_"));
        let root = self.dir.create_dir(format!("src/{name}"));
        std::fs::write(
            root.join("cordon.toml"),
            format!("id = \"{id}\"\nversion = \"{version}\"\n[handlers.main]\ncommand = [\"./run.sh\"]\n{extra}"),
        )
        .unwrap();
        self.dir.create_executable(format!("src/{name}/run.sh"), "#!/bin/sh\necho hi\n");
        self.dir.create(format!("src/{name}/data/words.txt"), "alpha\nbeta\n");
        root
    }

    /// A new key pair `keys/<name>` (secret) and `keys/<name>.pub`.
    pub fn key(&self, name: &str) -> PathBuf {
        let path = self.dir.create_dir("keys").join(name);
        cordon_registry::generate_key(&path).unwrap();
        path
    }

    /// Trusts `key` under `name`.
    pub fn trust(&self, key: &Path, name: &str, scope: &[&str], expires: Option<&str>) {
        let scope: Vec<String> = scope.iter().map(|s| s.to_string()).collect();
        self.reg.trust_add(&pub_of(key), Some(name), &scope, expires).unwrap();
    }

    /// Packs `dir` into `pkg/<file>`.
    pub fn pack(&self, dir: &Path, file: &str) -> PathBuf {
        let out = self.dir.create_dir("pkg").join(file);
        cordon_registry::pack(dir, Some(&out)).unwrap();
        out
    }

    /// Packs and signs.
    pub fn publish(&self, dir: &Path, file: &str, key: &Path) -> PathBuf {
        let pkg = self.pack(dir, file);
        cordon_registry::sign(&pkg, key).unwrap();
        pkg
    }

    /// Every path under the store with its content (files) or mode, to
    /// compare before and after a refusal.
    pub fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        snapshot(self.reg.home())
    }
}

pub fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            use std::os::unix::fs::PermissionsExt;
            if meta.is_dir() {
                out.push((rel + "/", format!("{:o}", meta.permissions().mode()).into_bytes()));
                walk(root, &p, out);
            } else {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = vec![];
    walk(root, root, &mut out);
    out
}

pub fn pub_of(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", key.display()))
}

pub fn unsigned_ok() -> InstallOptions {
    InstallOptions { unsigned: Unsigned::Allow, ..InstallOptions::default() }
}

/// The stock minisign binary (a tool of the test machine, installed by
/// `.ci/run`; never a reason to skip).
pub fn minisign() -> std::process::Command {
    let path = "/usr/bin/minisign";
    assert!(Path::new(path).exists(), "{path} is missing; `.ci/run` must install the Debian package minisign");
    std::process::Command::new(path)
}

/// Raw ustar archives, for entries the `tar` crate will not write.
pub mod raw {
    /// One 512-byte header.
    pub fn header(name: &[u8], size: u64, kind: u8, mode: u32, link: &[u8]) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        let octal = |field: &mut [u8], v: u64| {
            let s = format!("{:0width$o}\0", v, width = field.len() - 1);
            field.copy_from_slice(s.as_bytes());
        };
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 0);
        h[156] = kind;
        h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        h
    }

    /// An archive being built.
    #[derive(Default)]
    pub struct Tar(pub Vec<u8>);

    impl Tar {
        /// A regular file (mode 644).
        pub fn file(mut self, name: &str, data: &[u8]) -> Self {
            self.entry(name.as_bytes(), b'0', 0o644, b"", data);
            self
        }
        /// Any entry; `data` is padded to 512 bytes.
        pub fn entry(&mut self, name: &[u8], kind: u8, mode: u32, link: &[u8], data: &[u8]) {
            self.0.extend_from_slice(&header(name, data.len() as u64, kind, mode, link));
            self.data(data);
        }
        /// Raw data, padded.
        pub fn data(&mut self, data: &[u8]) {
            self.0.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            self.0.extend(std::iter::repeat_n(0u8, pad));
        }
        /// A GNU long-name record for the next entry.
        pub fn long_name(&mut self, name: &[u8]) {
            let mut data = name.to_vec();
            data.push(0);
            self.entry(b"././@LongLink", b'L', 0o644, b"", &data);
        }
        /// The end-of-archive marker.
        pub fn end(mut self) -> Vec<u8> {
            self.0.extend(std::iter::repeat_n(0u8, 1024));
            self.0
        }
    }

    /// A valid manifest for crafted archives.
    pub const MANIFEST: &str =
        "id = \"@hostile/pkg\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"./run.sh\"]\n";

    /// gzip of `bytes`.
    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }
}
