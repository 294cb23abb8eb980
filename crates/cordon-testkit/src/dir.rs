//! `Dir`: a fresh scratch directory under `/var/tmp`, removed on drop.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where fixtures live. Not `/tmp`: container mode mounts a tmpfs of its own
/// at `/tmp`, so a host path under `/tmp` is invisible inside the sandbox.
const FIXTURE_ROOT: &str = "/var/tmp";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A directory that exists only for one test: created empty under
/// `/var/tmp`, removed with everything in it when dropped.
///
/// Helpers take paths relative to the directory, create missing parent
/// directories, and panic on any I/O error (a fixture that cannot be built
/// is a failed test).
#[derive(Debug)]
pub struct Dir {
    root: PathBuf,
}

impl Dir {
    /// Creates `/var/tmp/cordon-test-<label>-<pid>-<n>`. `label` names the
    /// test in the path, so leftovers are easy to attribute.
    pub fn new(label: &str) -> Dir {
        Self::new_in(FIXTURE_ROOT, label)
    }

    /// Like [`Dir::new`], under the host's `/tmp`: for tests of grants that
    /// lie there, which the sandbox's private `/tmp` must not hide.
    pub fn new_in_host_tmp(label: &str) -> Dir {
        Self::new_in("/tmp", label)
    }

    fn new_in(root: &str, label: &str) -> Dir {
        let label: String =
            label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = fs::canonicalize(root).unwrap_or_else(|e| panic!("fixture root {root} is unusable: {e}"));
        let root = base.join(format!("cordon-test-{label}-{}-{n}", std::process::id()));
        fs::create_dir(&root).unwrap_or_else(|e| panic!("cannot create fixture directory {}: {e}", root.display()));
        Dir { root }
    }

    /// The directory's absolute, canonical path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `rel` inside the directory; nothing is created.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// Writes a file (mode 0644) and returns its absolute path.
    pub fn create(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Writes a file with mode 0755 and returns its absolute path.
    ///
    /// The file is written by a child process (`install`), never through a
    /// descriptor of this one. A test binary runs tests on many threads:
    /// had this thread opened the file for writing, a sibling test forking
    /// at that moment would copy the write descriptor into its child
    /// (`O_CLOEXEC` closes it only at that child's `exec`), and running the
    /// file before then fails with `ETXTBSY` ("Text file busy"). So the
    /// contents go to a staging file (whose descriptor may leak that way,
    /// but which is never executed), and `install` copies them into a new
    /// inode that only it ever opens for writing; it has exited when this
    /// returns, so no writer of the file is left anywhere.
    pub fn create_executable(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let staged = self.create(path.with_file_name(format!(".{name}.staged")), contents);
        let status = std::process::Command::new("/usr/bin/install")
            .arg("-m0755")
            .arg(&staged)
            .arg(&path)
            .status()
            .unwrap_or_else(|e| panic!("cannot run /usr/bin/install (coreutils) for {}: {e}", path.display()));
        assert!(status.success(), "install of {} failed: {status}", path.display());
        fs::remove_file(&staged).unwrap_or_else(|e| panic!("cannot remove {}: {e}", staged.display()));
        path
    }

    /// Creates a directory (and its parents) and returns its absolute path.
    pub fn create_dir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.join(rel);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        path
    }

    /// Reads a file as UTF-8.
    pub fn read(&self, rel: impl AsRef<Path>) -> String {
        let path = self.join(rel);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // A sandboxed command may have left read-only directories behind
        // (e.g. git objects); make them writable so removal does not stop.
        let _ = make_tree_writable(&self.root);
        if let Err(e) = fs::remove_dir_all(&self.root) {
            eprintln!("warning: cannot remove fixture directory {}: {e}", self.root.display());
        }
    }
}

fn make_tree_writable(dir: &Path) -> std::io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_tree_writable(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_is_fresh_under_var_tmp_and_removed_on_drop() {
        let dir = Dir::new("self test");
        let root = dir.path().to_owned();
        assert!(root.starts_with("/var/tmp") || root.starts_with(fs::canonicalize(FIXTURE_ROOT).unwrap()));
        assert!(root.file_name().unwrap().to_str().unwrap().starts_with("cordon-test-self-test-"));
        let f = dir.create("a/b/c.txt", "hi");
        assert_eq!(dir.read("a/b/c.txt"), "hi");
        assert_eq!(f, root.join("a/b/c.txt"));
        drop(dir);
        assert!(!root.exists());
    }

    /// What `ETXTBSY` needs: any descriptor open for writing on the file,
    /// such as the copy a sibling's fork holds until its `exec`.
    #[test]
    fn an_executable_is_never_left_with_a_writer() {
        use std::io::Write;
        let dir = Dir::new("exec-writer");
        let script = "#!/bin/sh\necho ran\n";
        // Control: a copy of the write descriptor outliving the write (as
        // in a forked child) makes the exec fail with ETXTBSY.
        let path = dir.join("in-process.sh");
        let mut f = fs::File::create(&path).unwrap();
        f.write_all(script.as_bytes()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        let leaked = f.try_clone().unwrap();
        drop(f);
        let e = std::process::Command::new(&path).output().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ETXTBSY), "{e}");
        drop(leaked);
        // create_executable, with sibling threads forking all along: every
        // run execs.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let forkers: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let _ = std::process::Command::new("/bin/true").status();
                    }
                })
            })
            .collect();
        for i in 0..50 {
            let path = dir.create_executable(format!("s{i}.sh"), script);
            let out = std::process::Command::new(&path).output().unwrap_or_else(|e| panic!("run {i}: {e}"));
            assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o755);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        forkers.into_iter().for_each(|t| t.join().unwrap());
        // No staging file is left behind.
        assert!(!fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".staged")));
    }
}
