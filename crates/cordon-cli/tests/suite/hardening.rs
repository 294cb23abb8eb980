//! Issue #9 ("hardening"): the classes an attacker's review got through,
//! each with the review's probe and the variants it did not try. Every test
//! checks the host side (mode, owner, times and extended attributes of the
//! host file, what exists on the host) after the attempt, and has a control
//! that shows the same probe working where nothing stops it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Dir, Mode, Outcome, TestCommand};

use super::{run_in, tool};

/// Python's name for `EOPNOTSUPP` (95), which it calls `ENOTSUP`.
const NOT_SUPPORTED: &str = "ENOTSUP";

/// Performs named operations on a path and prints `<name> ok` or
/// `<name> <ERRNO>` for each: `python3 -c PROBE PATH OP...`.
const METADATA_PROBE: &str = r#"
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
path = sys.argv[1]
def fchmodat2_empty_path():
    fd = os.open(path, os.O_PATH)
    if libc.syscall(452, fd, b"", 0o600, 0x1000) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
ops = {
    "chmod": lambda: os.chmod(path, 0o600),
    "chown": lambda: os.chown(path, os.stat(path).st_uid, os.stat(path).st_gid),
    "utime": lambda: os.utime(path, (1e9, 1e9)),
    "setxattr": lambda: os.setxattr(path, "user.cordon", b"1"),
    "chmod-via-proc-fd": lambda: os.chmod("/proc/self/fd/%d" % os.open(path, os.O_PATH), 0o600),
    "utime-via-proc-fd": lambda: os.utime("/proc/self/fd/%d" % os.open(path, os.O_PATH), (1e9, 1e9)),
    "fchmodat2-empty-path": fchmodat2_empty_path,
}
for name in sys.argv[2:]:
    try:
        ops[name]()
        print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
"#;

const METADATA_OPS: [&str; 7] =
    ["chmod", "chown", "utime", "setxattr", "chmod-via-proc-fd", "utime-via-proc-fd", "fchmodat2-empty-path"];

/// What the host shows of a file: mode, owner, group, mtime and ctime
/// (seconds and nanoseconds), and its extended attributes.
#[derive(Debug, PartialEq, Eq)]
struct HostView {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    ctime: (i64, i64),
    xattrs: String,
}

fn host_view(path: &Path) -> HostView {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    HostView {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        xattrs: xattrs(path),
    }
}

/// Every extended attribute of `path` (and below, for a directory), as
/// `getfattr` on the host prints them.
fn xattrs(path: &Path) -> String {
    let out = TestCommand::new(tool("/usr/bin/getfattr"))
        .args(["--absolute-names", "-R", "-d", "-m", "-", "-h"])
        .arg(path)
        .run();
    out.assert_success();
    out.stdout
}

/// The probe's verdict per operation, e.g. `{"chmod": "EROFS"}`.
fn verdicts(out: &Outcome) -> std::collections::BTreeMap<String, String> {
    out.assert_success();
    out.stdout.lines().filter_map(|l| l.split_once(' ')).map(|(op, v)| (op.to_owned(), v.to_owned())).collect()
}

fn metadata_probe(mode: Mode, grants: &[&str], path: &Path, ops: &[&str]) -> Outcome {
    run_in(mode).args(grants).args(["--", tool("/usr/bin/python3"), "-c", METADATA_PROBE]).arg(path).args(ops).run()
}

/// Finding 1: process mode changed the mode, owner, times and extended
/// attributes of host files it was never granted (Landlock up to ABI 7 has
/// no rights for them), and so did a path carved out of a write grant.
/// Variants: through `/proc/self/fd` of an `O_PATH` descriptor, and
/// `fchmodat2(AT_EMPTY_PATH)`, a directory, and a carve-out.
#[test]
fn metadata_of_host_files_outside_the_write_grants_cannot_change() {
    let support = kernel_support();
    let dir = Dir::new("meta");
    let d = dir.path().to_str().unwrap();
    each_mode(sandbox_modes!(support), |mode| {
        let victim = dir.create(format!("{}/victim", mode.as_str()), "host file\n");
        let folder = dir.create_dir(format!("{}/folder", mode.as_str()));
        let own = dir.create(format!("{}/grant/own", mode.as_str()), "granted\n");
        let secret = dir.create(format!("{}/grant/secret/file", mode.as_str()), "carved out\n");
        let grant = own.parent().unwrap().to_str().unwrap().to_owned();
        let carve = secret.parent().unwrap().to_str().unwrap().to_owned();
        let grants = ["--read", d, "--write", &grant, "--deny", &carve];
        // Control: in the write grant every operation works (xattrs aside,
        // which no sandbox may set).
        let control = verdicts(&metadata_probe(mode, &grants, &own, &METADATA_OPS));
        for op in METADATA_OPS {
            let expected = if op == "setxattr" { NOT_SUPPORTED } else { "ok" };
            assert_eq!(control[op], expected, "[{}] control {op} in the write grant", mode.as_str());
        }
        assert_eq!(host_view(&own).mode & 0o777, 0o600, "[{}] control: the grant's file changed", mode.as_str());
        for target in [&victim, &folder, &secret] {
            let before = host_view(target);
            let got = verdicts(&metadata_probe(mode, &grants, target, &METADATA_OPS));
            let carved_in_container = mode == Mode::Container && target == &secret;
            for op in METADATA_OPS {
                let expected = match op {
                    // Refused by the filter before the path is looked up.
                    "setxattr" => NOT_SUPPORTED,
                    // Container mode hides a carve-out behind an empty mode-000 folder.
                    _ if carved_in_container => "EACCES",
                    _ => "EROFS",
                };
                assert_eq!(got[op], expected, "[{}] {op} {}", mode.as_str(), target.display());
            }
            assert_eq!(host_view(target), before, "[{}] {} changed on the host", mode.as_str(), target.display());
        }
    });
}

/// Finding 4: container mode changed the host's device nodes through their
/// binds (`chmod 000 /dev/null` breaks the host). Both modes now show the
/// devices on read-only mounts: still readable and writable, but their mode,
/// owner and times are the host's. The probe sets each device's current
/// mode, so even a failure of this test leaves the host's devices working.
#[test]
fn device_nodes_keep_their_mode_owner_and_times() {
    let support = kernel_support();
    let devices = ["/dev/null", "/dev/zero", "/dev/full", "/dev/urandom"];
    let script = devices
        .iter()
        .map(|d| {
            let mode = std::fs::metadata(d).unwrap().mode() & 0o7777;
            format!("chmod {mode:o} {d}; chown 0:0 {d}; touch {d}; ")
        })
        .collect::<String>()
        + "echo still-writable > /dev/null && head -c 4 /dev/zero | wc -c";
    each_mode(sandbox_modes!(support), |mode| {
        let before: Vec<HostView> = devices.iter().map(|d| host_view(Path::new(d))).collect();
        let out = run_in(mode).args(["--", "sh", "-c", &script]).run();
        out.assert_success().assert_stdout_eq("4\n");
        for d in devices {
            for what in ["chmod: changing permissions of", "chown: changing ownership of", "touch: setting times of"] {
                out.assert_stderr_contains(&format!("{what} '{d}': Read-only file system"));
            }
        }
        let after: Vec<HostView> = devices.iter().map(|d| host_view(Path::new(d))).collect();
        assert_eq!(after, before, "[{}] a host device node changed", mode.as_str());
    });
    // Control: the same commands change a file where writing is granted.
    let dir = Dir::new("dev-control");
    let f = dir.create("f", "");
    let before = host_view(&f);
    run_in(Mode::Process)
        .arg("--write")
        .arg(dir.path())
        .args(["--", "sh", "-c", &format!("chmod 600 {0} && touch -d 2001-01-01 {0}", f.display())])
        .run()
        .assert_success();
    assert_ne!(host_view(&f), before, "control: chmod and touch work in a write grant");
}

/// The container's `/dev`, as its own mount table shows it: the tmpfs and
/// every device bind read-only, nosuid and noexec (devices keep working:
/// nodev is not set on them), devpts and `/dev/shm` writable with their own
/// flags. Nothing can be created in `/dev` (EROFS, named); control: the same
/// `touch` in `/dev/shm` works.
#[test]
fn the_containers_dev_is_read_only_but_its_devices_pts_and_shm_work() {
    let support = kernel_support();
    let modes = sandbox_modes!(support).into_iter().filter(|m| *m == Mode::Container).collect();
    each_mode(modes, |mode| {
        let script = "cat /proc/self/mountinfo; touch /dev/new; touch /dev/shm/new && echo shm-ok; \
                      echo x > /dev/null && head -c 3 /dev/zero | wc -c";
        let out = run_in(mode).args(["--", "sh", "-c", script]).run();
        out.assert_success();
        out.assert_stderr_contains("touch: cannot touch '/dev/new': Read-only file system");
        let stdout = &out.stdout;
        assert!(stdout.contains("shm-ok\n3\n"), "control: /dev/shm not writable or a device broken\n{out}");
        // Per-mount options: field 6 of mountinfo; the mount point is field 5.
        let options = |point: &str| -> Vec<String> {
            let line = stdout
                .lines()
                .rfind(|l| l.split(' ').nth(4) == Some(point))
                .unwrap_or_else(|| panic!("no mount on {point}\n{out}"));
            line.split(' ').nth(5).unwrap_or_default().split(',').map(String::from).collect()
        };
        let has = |point: &str, want: &[&str], not: &[&str]| {
            let o = options(point);
            for w in want {
                assert!(o.iter().any(|x| x == w), "{point}: {w} missing in {o:?}");
            }
            for n in not {
                assert!(!o.iter().any(|x| x == n), "{point}: {n} set in {o:?}");
            }
        };
        has("/dev", &["ro", "nosuid", "noexec"], &[]);
        for d in ["null", "zero", "full", "random", "urandom", "tty"] {
            if Path::new("/dev").join(d).exists() {
                has(&format!("/dev/{d}"), &["ro", "nosuid", "noexec"], &["nodev"]);
            }
        }
        has("/dev/pts", &["rw", "nosuid", "noexec"], &[]);
        has("/dev/shm", &["rw", "nosuid", "nodev"], &[]);
    });
}

/// The resolver files cordon writes for a run with transparent egress (the
/// default): `/etc/resolv.conf` names the stub DNS and `/etc/hosts` the
/// sandbox's own name; the command reads them and can neither append to,
/// truncate, chmod, touch, move nor remove them, in both modes (process
/// mode binds them over the host's files, where the host has both). In
/// container mode they are written into the sandbox's root before it goes
/// read-only, so no mount of their own shows in its mount table (there
/// was a staging tmpfs and a bind each). Control: the host's files are
/// unchanged and are not cordon's.
#[test]
fn the_generated_resolver_files_are_read_only_and_in_the_containers_own_root() {
    let files = ["/etc/resolv.conf", "/etc/hosts"];
    let host: Vec<Option<Vec<u8>>> = files.iter().map(|f| std::fs::read(f).ok()).collect();
    let support = kernel_support();
    let modes = sandbox_modes!(support)
        .into_iter()
        .filter(|m| *m == Mode::Container || host.iter().all(Option::is_some))
        .collect();
    let script = "for f in /etc/resolv.conf /etc/hosts; do \
                    cat $f; \
                    (echo x >> $f) 2>/dev/null && echo \"$f appended\"; \
                    (: > $f) 2>/dev/null && echo \"$f truncated\"; \
                    chmod 600 $f 2>/dev/null && echo \"$f chmodded\"; \
                    touch $f 2>/dev/null && echo \"$f touched\"; \
                    mv $f $f.moved 2>/dev/null && echo \"$f moved\"; \
                    rm -f $f 2>/dev/null && echo \"$f removed\"; \
                    cat $f; \
                  done; cat /proc/self/mountinfo";
    each_mode(modes, |mode| {
        let out = run_in(mode).args(["--", "sh", "-c", script]).run();
        out.assert_success();
        let resolv = "nameserver 127.0.0.1\n";
        let hosts = "127.0.0.1\tlocalhost\n";
        assert_eq!(out.stdout.matches(resolv).count(), 2, "resolv.conf not cordon's, or changed\n{out}");
        assert_eq!(out.stdout.matches(hosts).count(), 2, "hosts not cordon's, or changed\n{out}");
        for what in ["appended", "truncated", "chmodded", "touched", "moved", "removed"] {
            assert!(!out.stdout.contains(&format!(" {what}\n")), "a resolver file was {what}\n{out}");
        }
        if mode == Mode::Container {
            let points: Vec<&str> = out.stdout.lines().filter_map(|l| l.split(' ').nth(4)).collect();
            for f in files {
                assert!(!points.contains(&f), "{f} has a mount of its own\n{out}");
            }
        }
    });
    let after: Vec<Option<Vec<u8>>> = files.iter().map(|f| std::fs::read(f).ok()).collect();
    assert_eq!(after, host, "a host resolver file changed");
    for contents in host.iter().flatten() {
        assert!(
            !String::from_utf8_lossy(contents).contains("Written by cordon"),
            "control: the host's file is its own"
        );
    }
}

/// A grant whose bind covers the resolver files' place (`--read /etc`,
/// `--read /`, `--write /etc`, a manifest's `fs.read = ["/etc"]`, and
/// `--read /etc` with a deny on `/etc/resolv.conf`) still shows cordon's
/// files in both modes, so a name lookup goes to the stub DNS, which
/// refuses it by name and reports it, rather than to the host's resolver
/// as a raw datagram (whose refusal would suggest opening that resolver to
/// the sandbox). Control: the grant is in force (the command reads a file
/// of the host's `/etc` that no default grant gives).
#[test]
fn a_grant_covering_etc_keeps_cordons_resolver_files_and_lookups_go_through_the_stub() {
    let support = kernel_support();
    let getent = tool("/usr/bin/getent");
    let marker = ["/etc/debian_version", "/etc/os-release"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("this test machine has /etc/debian_version or /etc/os-release");
    let host_marker = std::fs::read_to_string(marker).unwrap();
    let host_marker = host_marker.lines().next().unwrap();
    let script = format!(
        "head -n 2 /etc/resolv.conf; grep -c 'Written by cordon' /etc/hosts; head -n 1 {marker}; \
         {getent} hosts blocked.example; echo getent=$?"
    );
    let plugin = Dir::new("etc-grant-plugin");
    plugin.create(
        "cordon.toml",
        "id = \"@t/etc-grant\"\nversion = \"1.0.0\"\n[handlers.look]\ncommand = [\"./look.sh\"]\n\
         [permissions]\nfs.read = [\"/etc\"]\nnet.allow = [\"allowed.example\"]\n",
    );
    plugin.create_executable("look.sh", format!("#!/bin/sh\n{script}\n"));
    let grants: [&[&str]; 4] = [
        &["--read", "/etc"],
        &["--read", "/"],
        &["--write", "/etc"],
        &["--read", "/etc", "--deny", "/etc/resolv.conf"],
    ];
    each_mode(sandbox_modes!(support), |mode| {
        let mut outs: Vec<(String, Outcome)> = grants
            .iter()
            .map(|g| {
                let out =
                    run_in(mode).args(*g).args(["--net", "allowed.example", "--", "/bin/sh", "-c", &script]).run();
                (g.join(" "), out)
            })
            .collect();
        outs.push(("fs.read = [\"/etc\"]".into(), super::plugins::exec(mode, plugin.path(), "look", "{}").run()));
        for (grant, out) in &outs {
            let seen = format!("{}{}", out.stdout, out.stderr);
            assert!(
                seen.contains("# Written by cordon: names are answered by cordon's stub DNS")
                    && seen.contains("\nnameserver 127.0.0.1\n"),
                "{grant}: /etc/resolv.conf is not cordon's\n{out}"
            );
            assert!(seen.contains("\n1\n"), "{grant}: /etc/hosts is not cordon's\n{out}");
            assert!(seen.contains(host_marker), "{grant}: control: the grant is not in force ({marker})\n{out}");
            assert!(seen.contains("getent=2"), "{grant}\n{out}");
            out.assert_stderr_contains("cordon: network: refused lookup of blocked.example (getent, pid ");
        }
    });
}

/// The host's root is gone from the container before the command's first
/// instruction: the mount table the command reads first thing has one
/// mount on `/`, the sandbox's tmpfs, and none of the host's mounts that no
/// grant binds (`/sys` and below). `pivot_root` leaves the host's root
/// stacked on the new one; a thread of init's detaches it while init
/// and the command's process go on, and the command's process waits for it
/// before the exec. Control: the host's own table has a mount on `/sys`.
#[test]
fn the_hosts_root_is_detached_before_the_command_starts() {
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(host.lines().any(|l| l.split(' ').nth(4) == Some("/sys")), "control: the host mounts /sys\n{host}");
    let support = kernel_support();
    let modes = sandbox_modes!(support).into_iter().filter(|m| *m == Mode::Container).collect();
    each_mode(modes, |mode| {
        let out = run_in(mode).args(["--", "cat", "/proc/self/mountinfo"]).run();
        out.assert_success();
        // The mount point is field 5; the file system type follows " - ".
        let mounts: Vec<(&str, &str)> = out
            .stdout
            .lines()
            .map(|l| {
                let point = l.split(' ').nth(4).unwrap_or_default();
                let fstype = l.split(" - ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or_default();
                (point, fstype)
            })
            .collect();
        let roots: Vec<&(&str, &str)> = mounts.iter().filter(|(p, _)| *p == "/").collect();
        assert_eq!(roots, [&("/", "tmpfs")], "one mount on /, the sandbox's own\n{out}");
        assert!(!mounts.iter().any(|(p, _)| *p == "/sys" || p.starts_with("/sys/")), "a host mount is left\n{out}");
    });
}

/// Creates files with set-id modes (and capabilities, ACLs, other owners)
/// in the current folder, one way per line: `<name> ok` or `<name> ERRNO`.
const SETID_PROBE: &str = r#"
import ctypes, errno, os, shutil, struct, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
def check(rc):
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
shutil.copy("/usr/bin/true", "prog")
os.mkdir("plain-dir")
dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
def tool(*argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise OSError(errno.EOPNOTSUPP if "not supported" in r.stderr else errno.EPERM, r.stderr.strip())
ops = [
    ("chmod-4755", lambda: os.chmod("prog", 0o4755)),
    ("chmod-2755", lambda: os.chmod("prog", 0o2755)),
    ("fchmod-4755", lambda: os.fchmod(os.open("prog", os.O_RDONLY), 0o4755)),
    ("fchmodat-6755", lambda: os.chmod("prog", 0o6755, dir_fd=dfd)),
    ("fchmodat2-4755", lambda: check(libc.syscall(452, dfd, b"prog", 0o4755, 0))),
    ("open-creat-4755", lambda: os.close(os.open("created", os.O_CREAT | os.O_WRONLY, 0o4755))),
    ("openat-creat-2755", lambda: os.close(os.open("created-at", os.O_CREAT | os.O_WRONLY, 0o2755, dir_fd=dfd))),
    ("creat-4755", lambda: check(libc.creat(b"creat", 0o4755))),
    ("o-tmpfile-4755", lambda: check(libc.linkat(-100, b"/proc/self/fd/%d" % os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o4755), -100, b"tmpfile", 0x400))),
    ("mkdir-2755", lambda: os.mkdir("setgid-dir", 0o2755)),
    ("chmod-dir-g+s", lambda: os.chmod("plain-dir", 0o2775)),
    ("mknod-4755", lambda: os.mknod("node", 0o100000 | 0o4755)),
    # VFS_CAP_REVISION_2 | effective, CAP_NET_RAW permitted.
    ("security.capability", lambda: os.setxattr("prog", "security.capability", struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0))),
    ("setcap-tool", lambda: tool("/usr/sbin/setcap", "cap_net_raw+ep", "prog")),
    ("setfacl", lambda: tool("/usr/bin/setfacl", "-m", "u:65534:rwx", "prog")),
    ("setfacl-default", lambda: tool("/usr/bin/setfacl", "-d", "-m", "u:65534:rwx", "plain-dir")),
    ("user-xattr", lambda: os.setxattr("prog", "user.cordon", b"1")),
    ("chgrp-other", lambda: os.chown("prog", -1, 65534)),
    ("chown-other", lambda: os.chown("prog", 65534, -1)),
]
for name, f in ops:
    try:
        f()
        print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
"#;

/// Finding 2 and the ACL item: a file created in a write grant belongs to
/// the invoking user (root here), and `nosuid` holds only inside the
/// sandbox, so a set-id mode, a file capability or an ACL there is a
/// privilege on the host. Every way to give a mode, and both xattr tools,
/// are refused; the host shows no set-id bit, no capability, no ACL, and
/// no file given away. Control: outside a sandbox every probe works.
#[test]
fn setuid_files_capabilities_and_acls_cannot_be_planted_in_a_write_grant() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    tool("/usr/sbin/setcap");
    tool("/usr/bin/setfacl");
    let control = Dir::new("setid-control");
    let out = run_in(Mode::Dev).arg("--cwd").arg(control.path()).args(["--", python, "-c", SETID_PROBE]).run();
    for (op, v) in verdicts(&out) {
        assert_eq!(v, "ok", "control: {op} works outside a sandbox\n{out}");
    }
    // (The later chown cleared setcap's capability, as the kernel does.)
    assert!(xattrs(control.path()).contains("system.posix_acl_default"), "control: setfacl left an ACL");
    assert_eq!(std::fs::metadata(control.join("prog")).unwrap().uid(), 65534, "control: chown gave the file away");
    // The run's user namespace maps only the invoking user; without one,
    // the dropped capabilities refuse.
    let unmapped = if support.user_namespaces.is_available() { "EINVAL" } else { "EPERM" };
    each_mode(sandbox_modes!(support), |mode| {
        let dir = Dir::new("setid");
        let out = run_in(mode)
            .arg("--write")
            .arg(dir.path())
            .arg("--cwd")
            .arg(dir.path())
            .args(["--", python, "-c", SETID_PROBE])
            .run();
        let got = verdicts(&out);
        for (op, v) in &got {
            let expected = match op.as_str() {
                "security.capability" | "setfacl" | "setfacl-default" | "user-xattr" => NOT_SUPPORTED,
                // The tool first asks for CAP_SETFCAP, which the sandbox lacks.
                "setcap-tool" => "EPERM",
                "chgrp-other" | "chown-other" => unmapped,
                _ => "EPERM",
            };
            assert_eq!(v, expected, "[{}] {op}\n{out}", mode.as_str());
        }
        assert_eq!(got.len(), 19, "[{}] every probe ran\n{out}", mode.as_str());
        let owner = std::fs::metadata(dir.path()).unwrap();
        for entry in walk(dir.path()) {
            let m = std::fs::symlink_metadata(&entry).unwrap();
            assert_eq!(m.mode() & 0o6000, 0, "[{}] {} has a set-id bit on the host", mode.as_str(), entry.display());
            assert_eq!(
                (m.uid(), m.gid()),
                (owner.uid(), owner.gid()),
                "[{}] {} was given away",
                mode.as_str(),
                entry.display()
            );
        }
        assert_eq!(xattrs(dir.path()), "", "[{}] extended attributes were set on the host", mode.as_str());
    });
}

/// Every path below `dir`, depth first.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// A setuid program of the base system.
fn setuid_program() -> &'static str {
    ["/usr/bin/gpasswd", "/usr/bin/chfn", "/usr/bin/newgrp"]
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.mode() & 0o4000 != 0))
        .expect("a setuid program of the base system")
}

/// Finding 2, the other ways in: a hard link of a host setuid program into
/// a write grant (the kernel refuses links across mounts), and the calls a
/// filter cannot inspect: `openat2` (its mode is in a struct: `ENOSYS`, so
/// libc falls back to `openat`) and the 6.13 `setxattrat`/`removexattrat`.
#[test]
fn setuid_links_and_uninspectable_calls_are_refused() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let setuid = setuid_program();
    let probe = |mode: Mode, args: &[&str]| {
        let out = run_in(mode).args(["--", python, "-c", super::SYSCALL_PROBE]).args(args).run();
        out.assert_success();
        out.stdout.trim().to_owned()
    };
    // Bad arguments: where the call exists, the kernel looks at them.
    let calls: [(&str, &[&str]); 3] = [
        ("openat2", &["437", "-100", "0", "0", "24"]),
        ("setxattrat", &["463", "-1", "0", "0", "0", "0", "0"]),
        ("removexattrat", &["466", "-1", "0", "0", "0"]),
    ];
    for (name, args) in calls {
        let control = probe(Mode::Dev, args);
        assert!(!["ok", "ENOSYS", NOT_SUPPORTED, "EPERM"].contains(&control.as_str()), "control: {name} ({control})");
    }
    each_mode(sandbox_modes!(support), |mode| {
        assert_eq!(probe(mode, calls[0].1), "ENOSYS", "[{}] openat2", mode.as_str());
        assert_eq!(probe(mode, calls[1].1), NOT_SUPPORTED, "[{}] setxattrat", mode.as_str());
        assert_eq!(probe(mode, calls[2].1), NOT_SUPPORTED, "[{}] removexattrat", mode.as_str());
        let dir = Dir::new("setid-link");
        let w = dir.path().to_str().unwrap();
        let out = run_in(mode).args(["--write", w, "--cwd", w, "--", "ln", setuid, "linked"]).run();
        out.assert_code(1).assert_stderr_contains("Invalid cross-device link");
        assert!(!dir.join("linked").exists(), "[{}] a setuid program was linked into the grant", mode.as_str());
        // Control: a link inside the grant works.
        run_in(mode).args(["--write", w, "--cwd", w, "--", "sh", "-c", "echo x > a && ln a b"]).run().assert_success();
        assert!(dir.join("b").exists());
    });
}

/// Watches a folder and prints `watching`, or the errno of the step that failed.
const WATCH_PROBE: &str = r#"
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
how, path = sys.argv[1], sys.argv[2]
def fail():
    print(errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno())); sys.exit(0)
if how == "inotify":
    fd = libc.inotify_init1(0)
    if fd < 0: fail()
    if libc.inotify_add_watch(fd, path.encode(), 0xfff) < 0: fail()
elif how == "inotify-legacy":
    fd = libc.syscall(253)
    if fd < 0: fail()
    if libc.inotify_add_watch(fd, path.encode(), 0xfff) < 0: fail()
elif how == "fanotify":
    # FAN_CLASS_NOTIF | FAN_REPORT_FID: the unprivileged flavour (5.13+).
    fd = libc.fanotify_init(0x200, 0)
    if fd < 0: fail()
    if libc.fanotify_mark(fd, 1, ctypes.c_uint64(0x20), -100, path.encode()) < 0: fail()
elif how == "dnotify":
    import fcntl
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.fcntl(fd, fcntl.F_NOTIFY, fcntl.DN_CREATE | fcntl.DN_MULTISHOT)
    except OSError as e:
        print(errno.errorcode[e.errno]); sys.exit(0)
print("watching")
"#;

/// Finding 6: process mode watched host folders it was not granted and
/// learnt file names and access patterns. Process mode refuses inotify
/// (`ENOSYS`, as a kernel without it; tools fall back to polling), fanotify
/// is refused in both modes, and dnotify needs the folder opened, which
/// Landlock refuses. Container mode shows only granted paths, where
/// watching stays allowed. Control: outside a sandbox every way watches.
#[test]
fn host_folders_outside_the_grants_cannot_be_watched() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let dir = Dir::new("watch");
    let d = dir.path().to_str().unwrap();
    let probe = |mode: Mode, grants: &[&str], how: &str| {
        let out = run_in(mode).args(grants).args(["--", python, "-c", WATCH_PROBE, how, d]).run();
        out.assert_success();
        out.stdout.trim().to_owned()
    };
    for how in ["inotify", "inotify-legacy", "fanotify", "dnotify"] {
        assert_eq!(probe(Mode::Dev, &[], how), "watching", "control: {how} outside a sandbox");
    }
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let (inotify, dnotify) = match mode {
            Mode::Container => ("ENOENT", "ENOENT"),
            _ => ("ENOSYS", "EACCES"),
        };
        assert_eq!(probe(mode, &[], "inotify"), inotify, "[{m}] inotify");
        assert_eq!(probe(mode, &[], "inotify-legacy"), inotify, "[{m}] inotify_init");
        assert_eq!(probe(mode, &[], "fanotify"), "EPERM", "[{m}] fanotify");
        assert_eq!(probe(mode, &[], "dnotify"), dnotify, "[{m}] dnotify");
        // A granted folder: container mode may watch it (it shows nothing
        // else); process mode refuses inotify as such.
        let granted = if mode == Mode::Container { "watching" } else { "ENOSYS" };
        assert_eq!(probe(mode, &["--read", d], "inotify"), granted, "[{m}] inotify on a granted folder");
    });
}

/// Finding 6, what a program sees: `tail -f` falls back to polling in
/// process mode and still follows the file.
#[test]
fn tail_follow_still_works_without_inotify() {
    let support = kernel_support();
    let dir = Dir::new("tail");
    let f = dir.create("log", "first line\n");
    let script = format!(
        "tail -f {} > /tmp/out 2>/dev/null & t=$!; until grep -q first /tmp/out; do sleep 0.05; done; kill $t; cat /tmp/out",
        f.display()
    );
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode).arg("--read").arg(dir.path()).args(["--", "sh", "-c", &script]).run();
        out.assert_success().assert_stdout_eq("first line\n");
    });
}

/// Issue #10 item 5 (the same code as finding 1): process mode always has a
/// private `/tmp`; grants under the host's `/tmp` are mounted on top of it,
/// with their own access. (A deny inside them is refused, review s9 F1:
/// `denies_inside_grants_under_the_host_tmp_are_refused`.)
#[test]
fn grants_under_the_host_tmp_sit_on_a_private_tmp() {
    let support = kernel_support();
    let host = Dir::new_in_host_tmp("tmp-grants");
    let w = host.create_dir("work");
    let r = host.create("ro/data", "read only\n");
    let (w, ro) = (w.to_str().unwrap(), r.parent().unwrap().to_str().unwrap());
    each_mode(sandbox_modes!(support), |mode| {
        let marker = format!("/tmp/cordon-private-{}-{}", std::process::id(), mode.as_str());
        let script = format!(
            "echo private > {marker} && cat {marker} && echo granted > {w}/out && cat {ro}/data; \
             echo x > {ro}/new; chmod 600 {ro}/data; true"
        );
        let out = run_in(mode).args(["--write", w, "--read", ro, "--cwd", w, "--", "sh", "-c", &script]).run();
        out.assert_success().assert_stdout_eq("private\nread only\n");
        out.assert_stderr_contains(&format!("{ro}/new: Read-only file system"));
        out.assert_stderr_contains(&format!("changing permissions of '{ro}/data': Read-only file system"));
        assert!(!Path::new(&marker).exists(), "[{}] the sandbox's /tmp is the host's", mode.as_str());
        assert_eq!(host.read("work/out"), "granted\n", "[{}] the write grant under /tmp", mode.as_str());
        assert_eq!(host_view(&r).mode & 0o777, 0o644);
    });
}

/// Runs `script` under an exec allow-list of `sh`, `cp` and `grep`, with
/// `dir` writable.
fn with_exec_list(mode: Mode, dir: &Dir, extra: &[&str], script: &str) -> Outcome {
    run_in(mode)
        .args(["--exec", "/bin/sh", "--exec", "/usr/bin/cp", "--exec", "/usr/bin/grep"])
        .args(extra)
        .arg("--write")
        .arg(dir.path())
        .arg("--cwd")
        .arg(dir.path())
        .args(["--", "sh", "-c", script])
        .run()
}

const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// Finding 5, the loader route: `ld.so PROGRAM` maps an unlisted program
/// without `execve`ing it. With an exec list, every tree but the system
/// library folders and the listed files is mounted `noexec`, which forbids
/// the loader's executable mappings. Variants: a program copied to `/tmp`,
/// `/dev/shm` or the write grant, through the loader or directly.
#[test]
fn the_elf_loader_does_not_bypass_an_exec_list() {
    let support = kernel_support();
    tool(LOADER);
    let dir = Dir::new("exec-loader");
    let script = format!(
        "for p in /usr/bin/id /tmp/id /dev/shm/id ./id; do \
           [ $p = /usr/bin/id ] || cp /usr/bin/id $p; \
           echo \"$p $({LOADER} $p -u 2>&1 >/dev/null | grep -o 'failed to map segment' || echo ran)\"; \
           echo \"$p direct $($p -u 2>&1 >/dev/null | grep -o 'Permission denied' || echo ran)\"; \
         done"
    );
    each_mode(sandbox_modes!(support), |mode| {
        // Control: without an exec list every route runs the program.
        let free = run_in(mode)
            .arg("--write")
            .arg(dir.path())
            .arg("--cwd")
            .arg(dir.path())
            .args(["--", "sh", "-c", &script])
            .run();
        free.assert_success();
        assert_eq!(free.stdout.matches(" ran").count(), 8, "[{}] control\n{free}", mode.as_str());
        let out = with_exec_list(mode, &dir, &[], &script);
        out.assert_success();
        for p in ["/usr/bin/id", "/tmp/id", "/dev/shm/id", "./id"] {
            out.assert_stdout_contains(&format!("{p} failed to map segment\n"));
            out.assert_stdout_contains(&format!("{p} direct Permission denied\n"));
        }
        // Listed programs still run, directly and through the loader.
        let listed = with_exec_list(
            mode,
            &dir,
            &["--exec", "/usr/bin/id"],
            &format!("/usr/bin/id -u && {LOADER} /usr/bin/id -u"),
        );
        listed.assert_success();
        assert_eq!(listed.stdout.lines().count(), 2, "[{}]\n{listed}", mode.as_str());
    });
}

/// Starts a copy of `/usr/bin/id` from a file no path names, and prints
/// `<route> ran` or `<route> ERRNO`: a memfd (plain, `MFD_EXEC`) with
/// `fexecve`, an `O_TMPFILE` in `/tmp` with `execveat(AT_EMPTY_PATH)`, and
/// `os.execv` of an unlisted program (the interpreter route).
pub(super) const FD_EXEC_PROBE: &str = r#"
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
code = open("/usr/bin/id", "rb").read()
def check(rc):
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc
def memfd(flags):
    fd = check(libc.memfd_create(b"prog", flags))
    os.write(fd, code)
    os.execve(fd, ["id", "-u"], {})
def tmpfile():
    writer = os.open("/tmp", os.O_TMPFILE | os.O_RDWR, 0o755)
    os.write(writer, code)
    # A file open for writing cannot be executed (ETXTBSY): keep a reader.
    fd = os.open("/proc/self/fd/%d" % writer, os.O_RDONLY)
    os.close(writer)
    argv = (ctypes.c_char_p * 3)(b"id", b"-u", None)
    envp = (ctypes.c_char_p * 1)(None)
    check(libc.syscall(322, fd, b"", argv, envp, 0x1000))
routes = [
    ("memfd", lambda: memfd(0)),
    ("memfd-exec", lambda: memfd(0x10)),
    ("o-tmpfile", tmpfile),
    ("execv-unlisted", lambda: os.execv("/usr/bin/id", ["id", "-u"])),
]
for route, start in routes:
    pid = os.fork()
    if pid == 0:
        try:
            start()
        except OSError as e:
            print(route, errno.errorcode.get(e.errno, e.errno), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
"#;

/// Finding 5, the descriptor routes: `memfd_create` + `fexecve`, an
/// `O_TMPFILE` + `execveat(AT_EMPTY_PATH)`, and an interpreter's
/// `os.execv`. Each started an unlisted program; with an exec list none
/// does (the run's pid namespace has `vm.memfd_noexec = 2`, `/tmp` is
/// `noexec`, Landlock refuses the unlisted file). Control: without a list,
/// every route runs the program.
#[test]
fn descriptor_and_interpreter_routes_do_not_bypass_an_exec_list() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        let free = run_in(mode).args(["--", python, "-c", FD_EXEC_PROBE]).run();
        free.assert_success();
        // Each route ran `id -u`, which printed a number; none printed an errno.
        let ran = free.stdout.lines().filter(|l| l.parse::<u32>().is_ok()).count();
        assert_eq!(ran, 4, "[{}] control\n{free}", mode.as_str());
        let out = run_in(mode).args(["--exec", python, "--", python, "-c", FD_EXEC_PROBE]).run();
        let got = verdicts(&out);
        for route in ["memfd", "memfd-exec", "o-tmpfile", "execv-unlisted"] {
            assert_eq!(got.get(route).map(String::as_str), Some("EACCES"), "[{}] {route}\n{out}", mode.as_str());
        }
    });
}

/// Finding 5: where the list stops is said, in the result's ledger and by
/// `cordon check`'s source (the plan): `Partial`, the gap named.
#[test]
fn the_exec_list_says_where_it_stops() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode).args(["--json", "--exec", "/usr/bin/true", "--", "/usr/bin/true"]).run();
        out.assert_success();
        let v = out.json();
        let entry = v["enforcement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["rule"].as_str().is_some_and(|r| r.starts_with("exec [")))
            .unwrap_or_else(|| panic!("no exec entry\n{out}"));
        assert_eq!(entry["enforcement"], "partial", "[{}]", mode.as_str());
        let mech = entry["mechanism"].as_str().unwrap();
        assert!(mech.contains(cordon::EXEC_LIST_GAP), "[{}] {mech}", mode.as_str());
        assert!(mech.contains("vm.memfd_noexec=2") || mech.contains("MFD_NOEXEC_SEAL"), "{mech}");
    });
}

/// Characters a terminal acts on, as a handler might print them: a title
/// change, clear screen, `\r` + a fake cordon message, a C1 `CSI`, a
/// right-to-left override, `DEL`, `BEL`.
const HOSTILE: [char; 7] = ['\x1b', '\r', '\x07', '\u{9b}', '\u{202e}', '\x7f', '\u{200b}'];

#[track_caller]
fn assert_no_terminal_controls(what: &str, text: &str) {
    for c in HOSTILE {
        assert!(!text.contains(c), "{what} holds {c:?} unescaped:\n{text:?}");
    }
}

/// A plugin whose handler prints every kind of terminal control, writes
/// them into its result and an artifact's name, and whose manifest carries
/// them in its descriptions.
fn noisy_plugin() -> Dir {
    let dir = Dir::new("escapes");
    dir.create(
        "cordon.toml",
        "id = \"@t/escapes\"\nversion = \"1.0.0\"\ndescription = \"desc\\u001b[2J\\u009b31m\\u202efdp.exe\"\n\
         [handlers.noisy]\ncommand = [\"./noisy.sh\"]\ndescription = \"title\\u001b]0;owned\\u0007\"\n\
         [handlers.fail]\ncommand = [\"./fail.sh\"]\n",
    );
    dir.create_executable(
        "noisy.sh",
        "#!/bin/sh\nprintf '\\033]0;pwned\\007title\\n'\nprintf 'wipe\\033[2J\\n'\n\
         printf 'progress\\rcordon: run ok\\n'\nprintf 'csi\\302\\23331mred\\n'\n\
         printf 'bidi\\342\\200\\256txt.exe\\n'\nprintf 'del\\177x zero\\342\\200\\213width\\n' >&2\n\
         : > \"$CORDON_ARTIFACTS/$(printf 'evil\\033[2Jname.txt')\"\n\
         printf '{\"msg\":\"\\\\u001b[2Jdata\\\\u009b\\\\u202e\"}' >&3\n",
    );
    dir.create_executable(
        "fail.sh",
        "#!/bin/sh\nprintf 'cat: x: Permission denied\\r\\033[2Kcordon: run ok\\n' >&2\nexit 1\n",
    );
    dir
}

/// Finding 8: `cordon exec` re-printed a handler's terminal controls
/// verbatim. Everything cordon prints on a sandbox's (or a manifest's)
/// behalf is escaped: the re-printed log lines, the result, the failure
/// summary quoting a log line, `cordon check`'s listing, `--json` output,
/// and `cordon audit`'s listing. Control: a command's own output in
/// pass-through mode is its own and stays raw.
#[test]
fn terminal_controls_from_a_sandbox_are_escaped_wherever_cordon_prints_them() {
    let support = kernel_support();
    let plugin = noisy_plugin();
    let raw = run_in(Mode::Process).args(["--", "printf", "\\033[2J"]).run();
    raw.assert_success();
    assert_eq!(raw.stdout, "\x1b[2J", "control: pass-through output is the command's own");
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let out = super::plugins::exec(mode, plugin.path(), "noisy", "{}").run();
        out.assert_success();
        assert_no_terminal_controls(&format!("[{m}] exec stdout"), &out.stdout);
        assert_no_terminal_controls(&format!("[{m}] exec stderr"), &out.stderr);
        for escaped in [
            "\\x1b]0;pwned\\x07title",
            "wipe\\x1b[2J",
            "progress\\rcordon: run ok",
            "csi\\u{009b}31mred",
            "bidi\\u{202e}txt.exe",
            "del\\x7fx zero\\u{200b}width",
        ] {
            out.assert_stderr_contains(escaped);
        }
        let data: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        assert_eq!(data["msg"], "\x1b[2Jdata\u{9b}\u{202e}", "[{m}] the result keeps its value");

        let json = super::plugins::exec(mode, plugin.path(), "noisy", "{}").arg("--json").run();
        assert_no_terminal_controls(&format!("[{m}] exec --json"), &json.stdout);
        let v = json.json();
        assert!(v["artifacts"].to_string().contains("evil\\u001b[2Jname.txt"), "[{m}] {v}");
        assert!(v["logs"]["lines"].as_array().unwrap().iter().any(|l| l["text"] == "bidi\u{202e}txt.exe"), "{v}");

        let fail = super::plugins::exec(mode, plugin.path(), "fail", "{}").run();
        fail.assert_code(1);
        assert_no_terminal_controls(&format!("[{m}] failure summary"), &fail.stderr);
        fail.assert_stderr_contains("the handler reported: cat: x: Permission denied\\r\\x1b[2Kcordon: run ok");
    });
    let check = super::cordon().arg("check").arg(plugin.path()).run();
    assert_no_terminal_controls("check", &check.stdout);
    check.assert_stdout_contains("desc\\x1b[2J\\u{009b}31m\\u{202e}fdp.exe");
    check.assert_stdout_contains("title\\x1b]0;owned\\x07");
    let check_json = super::cordon().arg("check").arg(plugin.path()).arg("--json").run();
    assert_no_terminal_controls("check --json", &check_json.stdout);
}

/// Finding 8, the audit listing: a command line chosen by whoever ran it
/// (or a plugin's handler) is one line of the listing, escaped.
#[test]
fn the_audit_listing_escapes_what_the_records_quote() {
    let dir = Dir::new("audit-escapes");
    let log = dir.join("audit.jsonl");
    let log = log.to_str().unwrap();
    let hostile = "x\x1b]0;pwned\x07\nfake record\u{202e}";
    run_in(Mode::Process).args(["--audit-log", log, "--", "true", hostile]).run().assert_success();
    let listing = super::cordon().args(["audit", "--audit-log", log]).run();
    listing.assert_success();
    assert_no_terminal_controls("audit listing", &listing.stdout);
    assert_eq!(listing.stdout.lines().count(), 1, "one record, one line\n{listing}");
    listing.assert_stdout_contains("true x\\x1b]0;pwned\\x07\\nfake record\\u{202e}");
    let json = super::cordon().args(["audit", "--audit-log", log, "--json"]).run();
    assert_no_terminal_controls("audit --json", &json.stdout);
    assert_eq!(json.json()[0]["command"][1], hostile, "the record keeps its value");
}

/// A plugin folder with `manifest` (its `[permissions]` and handlers after
/// the id), a `show` handler printing the file named by its argument, and
/// whatever `setup` adds (symbolic links, mostly).
fn plugin_with(label: &str, body: &str, setup: impl FnOnce(&Dir)) -> Dir {
    let dir = Dir::new(label);
    dir.create("cordon.toml", format!("id = \"@t/links\"\nversion = \"1.0.0\"\n{body}"));
    setup(&dir);
    dir
}

const SECRET: &str = "the host's secret\n";

/// Finding 3: a plugin's relative grant could be a symbolic link it ships
/// (`data -> /var/tmp/secret`), so `fs.read = ["data/**"]` read a host
/// folder while `cordon check` showed `<plugin>/data`. Every path relative
/// to the plugin folder must lead inside it, links included, at every
/// component: `check` and `exec` refuse (125) naming where it leads. The
/// variants: a link deeper down the path, a write grant, an exec entry, a
/// handler's program, and the host's own narrowing flag through the link.
/// Control: the same plugins with the link leading inside the folder run,
/// and the ledger shows the resolved path.
#[test]
fn plugin_paths_that_lead_out_of_the_plugin_folder_are_refused() {
    let support = kernel_support();
    let host = Dir::new("links-secret");
    let key = host.create("secret/key", SECRET);
    let secret = key.parent().unwrap().to_owned();
    let link = |to: &Path, at: &Path| std::os::unix::fs::symlink(to, at).unwrap();
    let show = "[handlers.show]\ncommand = [\"sh\", \"-c\", \"cat \\\"$0\\\"; echo '{}' >&3\"";
    // (label, manifest body, where the link is)
    let cases: Vec<(&str, String, &str)> = vec![
        ("data", format!("[permissions]\nfs.read = [\"data/**\"]\n{show}, \"data/key\"]\n"), "data"),
        ("deep", format!("[permissions]\nfs.read = [\"a/b/key\"]\n{show}, \"a/b/key\"]\n"), "a/b"),
        ("write", format!("[permissions]\nfs.write = [\"out\"]\n{show}, \"out/key\"]\n"), "out"),
        // A relative link that climbs out with `..`.
        ("climb", format!("[permissions]\nfs.read = [\"up/**\"]\n{show}, \"up/key\"]\n"), "up"),
        (
            "exec",
            format!("[permissions]\nexec = [\"bin/key\", \"/bin/sh\", \"/usr/bin/cat\"]\n{show}, \"bin/key\"]\n"),
            "bin",
        ),
        ("program", "[handlers.show]\ncommand = [\"./run\"]\n".to_owned(), "run"),
    ];
    for (label, body, at) in &cases {
        let to_secret = plugin_with(&format!("links-{label}"), body, |d| {
            d.create_dir("a");
            let target = match *label {
                "program" => key.clone(),
                // Both folders are in /var/tmp: `../<host folder>/secret`.
                "climb" => {
                    Path::new("..").join(secret.strip_prefix(secret.parent().unwrap().parent().unwrap()).unwrap())
                }
                _ => secret.clone(),
            };
            link(&target, &d.join(at));
        });
        let check = super::cordon().arg("check").arg(to_secret.path()).run();
        check.assert_code(125);
        // Where the entry leads: the folder, or the file inside it it names.
        let leads =
            if ["data", "write", "climb"].contains(label) { secret.display() } else { key.display() }.to_string();
        let words = format!("resolves to {leads}, outside the plugin folder {}", to_secret.path().display());
        assert!(check.stdout.contains(&words) || check.stderr.contains(&words), "[{label}] check\n{check}");
        each_mode(sandbox_modes!(support), |mode| {
            let out = super::plugins::exec(mode, to_secret.path(), "show", "{}").run();
            out.assert_code(125).assert_stderr_contains(&words);
            assert!(!out.stdout.contains("secret") && !out.stderr.contains(SECRET.trim()), "[{label}]\n{out}");
        });
    }
    // The host's narrowing flag names a path through the link: refused too.
    let narrowed =
        plugin_with("links-narrow", &format!("[permissions]\nfs.read = [\"data\"]\n{show}, \"data/key\"]\n"), |d| {
            d.create_dir("data");
        });
    std::fs::remove_dir(narrowed.join("data")).unwrap();
    link(&secret, &narrowed.join("data"));
    let flag = narrowed.join("data").to_str().unwrap().to_owned();
    let out = super::cordon().arg("check").arg(narrowed.path()).args(["--read", &flag]).run();
    out.assert_code(125);
    // Control: a link that stays inside the folder is fine, shown resolved.
    let inside =
        plugin_with("links-inside", &format!("[permissions]\nfs.read = [\"data/**\"]\n{show}, \"data/key\"]\n"), |d| {
            d.create("real-data/key", "the plugin's own\n");
            link(&d.join("real-data"), &d.join("data"));
        });
    let check = super::cordon().arg("check").arg(inside.path()).run();
    check.assert_success().assert_stdout_contains(&format!("fs.read {}", inside.join("real-data").display()));
    each_mode(sandbox_modes!(support), |mode| {
        super::plugins::exec(mode, inside.path(), "show", "{}")
            .run()
            .assert_success()
            .assert_stderr_contains("the plugin's own");
    });
}

/// Finding 3, the time between check and run: a link made after `cordon
/// check` passed (the path did not exist yet) is caught when `exec`
/// prepares the run. Within one run, the rule is made from the path the
/// check resolved, and enforcement refuses it if a link appeared on it by
/// then (`a_pinned_grant_whose_path_became_a_link_refuses_the_run`).
#[test]
fn a_link_made_after_the_check_is_refused_at_run_time() {
    let support = kernel_support();
    let host = Dir::new("late-secret");
    let key = host.create("secret/key", SECRET);
    let show = "[handlers.show]\ncommand = [\"sh\", \"-c\", \"cat data/key; echo '{}' >&3\"]\n";
    let plugin = plugin_with("late-link", &format!("[permissions]\nfs.read = [\"data\"]\n{show}"), |_| {});
    super::cordon().arg("check").arg(plugin.path()).run().assert_success();
    std::os::unix::fs::symlink(key.parent().unwrap(), plugin.join("data")).unwrap();
    each_mode(sandbox_modes!(support), |mode| {
        let out = super::plugins::exec(mode, plugin.path(), "show", "{}").run();
        out.assert_code(125).assert_stderr_contains("outside the plugin folder");
        assert!(!out.stderr.contains(SECRET.trim()), "{out}");
    });
}

/// Finding 3's class in a carve-out: with `--deny` inside a granted folder,
/// process mode grants the folder's entries one by one, and a symbolic link
/// among them was granted as its target. Links are not part of the tree
/// they sit in. Control: granting the target itself shows the probe works.
#[test]
fn a_carve_out_does_not_grant_what_a_link_beside_it_points_to() {
    let support = kernel_support();
    let host = Dir::new("carve-secret");
    let key = host.create("secret/key", SECRET);
    let tree = Dir::new("carve-tree");
    tree.create("sub/hidden", "carved\n");
    tree.create("open/file", "open\n");
    std::os::unix::fs::symlink(key.parent().unwrap(), tree.join("link")).unwrap();
    let (t, sub) = (tree.path().to_str().unwrap(), tree.join("sub"));
    let via = tree.join("link/key");
    each_mode(sandbox_modes!(support), |mode| {
        let s = key.parent().unwrap().to_str().unwrap();
        run_in(mode)
            .args(["--read", t, "--read", s, "--deny"])
            .arg(&sub)
            .args(["--", "cat"])
            .arg(&via)
            .run()
            .assert_success()
            .assert_stdout_eq(SECRET);
        let out = run_in(mode)
            .args(["--read", t, "--deny"])
            .arg(&sub)
            .args(["--", "cat"])
            .arg(&via)
            .arg(tree.join("open/file"))
            .run();
        out.assert_code(1).assert_stdout_eq("open\n");
        let refused = if mode == Mode::Container { "No such file or directory" } else { "Permission denied" };
        out.assert_stderr_contains(&format!("{}: {refused}", via.display()));
    });
}

/// A policy granting `read` and `write` trees, pinned to `pinned` or not.
fn pinned_policy(read: &[&Path], write: &[&Path], pinned: Option<&Path>) -> cordon::Policy {
    let mut b = cordon::PolicyBuilder::new();
    for r in read {
        b = b.read(cordon::PathRule { path: r.to_path_buf() });
    }
    for w in write {
        b = b.write(cordon::PathRule { path: w.to_path_buf() });
    }
    let mut policy = b.build();
    policy.fs.pinned.extend(pinned.map(Path::to_path_buf));
    policy
}

/// Runs `script` under `policy` through the library, output captured.
fn run_policy(policy: cordon::Policy, mode: Mode, script: &str) -> cordon::ExecutionResult {
    let mut req = cordon::RunRequest::new(policy, mode, vec!["sh".into(), "-c".into(), script.into()]);
    req.capture = cordon::Capture::Logs;
    req.cwd = "/".into();
    // The links are the test's own, in a folder a run may write: followed
    // where a rule is not pinned (the control), as `--follow-links` does.
    req.follow_links = true;
    cordon::run(&req)
}

fn logs(r: &cordon::ExecutionResult) -> String {
    r.logs.lines.iter().map(|l| format!("{}\n", l.text)).collect()
}

/// Finding 3, between the check and the enforcement: the plugin folder's
/// grants are resolved when the policy is made and the folder is pinned;
/// enforcement then opens them without following any link, so a link that
/// appeared on the path since (final component, intermediate component, a
/// write grant) refuses the run (125, naming the path) instead of granting
/// where it points. Controls: the real folder runs, and the same policy
/// unpinned (how the operator's own flags behave) follows the link, which
/// shows the probe would read the secret.
#[test]
fn a_pinned_grant_whose_path_became_a_link_refuses_the_run() {
    let support = kernel_support();
    let host = Dir::new("pin-secret");
    let key = host.create("secret/key", SECRET);
    let secret = key.parent().unwrap().to_owned();
    let plugin = Dir::new("pin-plugin");
    plugin.create("real/key", "own\n");
    let root = std::fs::canonicalize(plugin.path()).unwrap();
    std::os::unix::fs::symlink(&secret, root.join("data")).unwrap();
    std::os::unix::fs::symlink(&secret, root.join("mid")).unwrap();
    let (real, data, deep) = (root.join("real"), root.join("data"), root.join("mid/key"));
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let ok = run_policy(pinned_policy(&[&real], &[], Some(&root)), mode, &format!("cat {}/key", real.display()));
        assert_eq!((ok.exit_status(), logs(&ok).as_str()), (0, "own\n"), "[{m}] control: {ok:?}");
        // (Container mode binds the link's target at its own path.)
        let followed = run_policy(pinned_policy(&[&data], &[], None), mode, &format!("cat {}", key.display()));
        assert_eq!(logs(&followed), SECRET, "[{m}] control: unpinned rules follow links: {followed:?}");
        for (read, write, probe) in [
            (vec![data.as_path()], vec![], format!("cat {}/key", data.display())),
            (vec![deep.as_path()], vec![], format!("cat {}", deep.display())),
            (vec![], vec![data.as_path()], format!("chmod 0777 {0}/key; touch {0}/planted", data.display())),
        ] {
            let r = run_policy(pinned_policy(&read, &write, Some(&root)), mode, &probe);
            let message = r.error.as_ref().map(|e| e.message.clone()).unwrap_or_default();
            assert_eq!(r.exit_status(), 125, "[{m}] {probe}: {r:?}");
            let path = if read.is_empty() { &data } else { read[0] };
            let words = format!(
                "refusing the grant on {}: a symbolic link was made on its path after the check",
                path.display()
            );
            assert!(message.contains(&words), "[{m}] {probe}: {message}");
            assert!(!logs(&r).contains(SECRET.trim()), "[{m}] {probe}");
        }
        let meta = std::fs::metadata(&key).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644, "[{m}] the host's file kept its mode");
        assert!(!secret.join("planted").exists(), "[{m}] nothing was created in the host folder");
    });
}

/// Finding 3, the race itself: while another process flips a granted
/// folder of the plugin between its real self and a link to a host folder,
/// `cordon exec` runs again and again. Whatever the interleaving, a run
/// reads the plugin's own file, fails to find it, or is refused; the host
/// folder is never read, written or re-moded. (On the code before the fix
/// the link was followed at every step; with resolution at check time only,
/// about one run in four granted the link's target.)
#[test]
fn a_link_flipped_in_and_out_during_exec_never_redirects_a_grant() {
    let support = kernel_support();
    let host = Dir::new("flip-secret");
    let key = host.create("secret/key", SECRET);
    let secret = key.parent().unwrap().to_owned();
    let plugin = plugin_with(
        "flip",
        "[permissions]\nfs.read = [\"data\"]\nfs.write = [\"out\"]\n[handlers.go]\ncommand = [\"sh\", \"-c\", \
         \"cat data/key; chmod 0777 out/f; touch out/planted; echo '{}' >&3\"]\n",
        |d| {
            d.create("data/key", "own\n");
            d.create("out/f", "");
        },
    );
    let root = std::fs::canonicalize(plugin.path()).unwrap();
    for name in ["data", "out"] {
        std::os::unix::fs::symlink(&secret, root.join(format!("{name}.evil"))).unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (stop, root) = (stop.clone(), root.clone());
        std::thread::spawn(move || {
            let mv = |a: &str, b: &str| std::fs::rename(root.join(a), root.join(b)).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for name in ["data", "out"] {
                    mv(name, &format!("{name}.real"));
                    mv(&format!("{name}.evil"), name);
                }
                std::thread::yield_now();
                for name in ["data", "out"] {
                    mv(name, &format!("{name}.evil"));
                    mv(&format!("{name}.real"), name);
                }
                std::thread::yield_now();
            }
        })
    };
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    each_mode(sandbox_modes!(support), |mode| {
        for _ in 0..12 {
            let out = super::plugins::exec(mode, plugin.path(), "go", "{}").run();
            assert!(!out.stdout.contains(SECRET.trim()) && !out.stderr.contains(SECRET.trim()), "{out}");
            seen.lock().unwrap().insert(out.code());
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    let seen = seen.into_inner().unwrap();
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o644, "the host's file kept its mode (codes seen: {seen:?})");
    assert!(!secret.join("planted").exists(), "nothing was created in the host folder (codes seen: {seen:?})");
    assert!(seen.iter().all(|c| [Some(0), Some(1), Some(125)].contains(c)), "{seen:?}");
}

/// More ways into the metadata and planting classes (findings 1, 2, 4),
/// each with a host file the run was not granted and the setuid program
/// of the base system: a file handle, io_uring, `renameat2(RENAME_EXCHANGE)`
/// and `rename`/`link` of the host file into the grant, `copy_file_range`
/// out of it, a `/proc/self/fd` link of a setuid program, a device node and
/// a FIFO, `chown` to another uid, and `chmod`/`fchmodat2`/`utime`/
/// `setxattr`/`chown` through an `O_PATH` descriptor (which Landlock does
/// not check). Prints `<name> ok` or `<name> ERRNO`.
const MORE_WAYS_PROBE: &str = r#"
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
host, setuid = sys.argv[1], sys.argv[2]
def check(rc):
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
with open("mine", "w") as f:
    f.write("x")
def handle():
    buf = ctypes.create_string_buffer(8 + 128)
    ctypes.memmove(buf, (128).to_bytes(4, "little"), 4)
    mnt = ctypes.c_int()
    check(libc.syscall(303, -100, b".", buf, ctypes.byref(mnt), 0))
    check(libc.syscall(304, os.open(".", os.O_RDONLY), buf, os.O_RDONLY))
def uring():
    params = ctypes.create_string_buffer(120)
    check(libc.syscall(425, 1, params))
def host_path_fd():
    return os.open(host, os.O_PATH)
ops = [
    ("open_by_handle_at", handle),
    ("io_uring_setup", uring),
    ("link-host-into-grant", lambda: os.link(host, "stolen-link")),
    ("copy_file_range-host", lambda: os.copy_file_range(os.open(host, os.O_RDONLY), os.open("mine", os.O_WRONLY), 64)),
    ("link-setuid-via-procfd", lambda: check(libc.linkat(-100, b"/proc/self/fd/%d" % os.open(setuid, os.O_PATH), -100, b"linked", 0x400))),
    ("mknod-chr", lambda: os.mknod("dev", 0o020666, os.makedev(1, 3))),
    ("mknod-fifo", lambda: os.mkfifo("fifo")),
    ("fchown-other", lambda: os.fchown(os.open("mine", os.O_RDONLY), 65534, -1)),
    ("chmod-setuid-via-procfd", lambda: os.chmod("/proc/self/fd/%d" % os.open("mine", os.O_RDONLY), 0o4755)),
    ("chmod-host-via-opath", lambda: os.chmod("/proc/self/fd/%d" % host_path_fd(), 0o666)),
    ("fchmodat2-host-empty-path", lambda: check(libc.syscall(452, host_path_fd(), b"", 0o666, 0x1000))),
    ("utime-host-via-opath", lambda: os.utime("/proc/self/fd/%d" % host_path_fd(), (0, 0))),
    ("setxattr-host-via-opath", lambda: os.setxattr("/proc/self/fd/%d" % host_path_fd(), "user.x", b"1")),
    ("chown-host-via-opath", lambda: os.chown("/proc/self/fd/%d" % host_path_fd(), os.getuid(), os.getgid())),
    ("renameat2-exchange", lambda: check(libc.syscall(316, -100, b"mine", -100, host.encode(), 2))),
    ("rename-host-into-grant", lambda: os.rename(host, "stolen")),
]
for name, f in ops:
    try:
        f()
        print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
"#;

#[test]
fn more_ways_to_reach_host_metadata_or_plant_files_are_refused() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let setuid = setuid_program();
    let probe = |mode: Mode, grant: &Dir, host: &Path| {
        let g = grant.path().to_str().unwrap();
        let mut cmd = run_in(mode);
        if mode != Mode::Dev {
            cmd.args(["--write", g]);
        }
        let out = cmd.args(["--cwd", g, "--", python, "-c", MORE_WAYS_PROBE]).arg(host).arg(setuid).run();
        out.assert_success();
        verdicts(&out)
    };
    // Control: outside a sandbox (root) every way works.
    let (host, grant) = (Dir::new("more-host"), Dir::new("more-grant"));
    let got = probe(Mode::Dev, &grant, &host.create("key", SECRET));
    let uring_off = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").is_ok_and(|v| v.trim() != "0");
    for (op, v) in &got {
        if !(op == "io_uring_setup" && uring_off) {
            assert_eq!(v, "ok", "control: {op} works outside a sandbox");
        }
    }
    assert_eq!(got.len(), 16, "{got:?}");
    let unmapped = if support.user_namespaces.is_available() { "EINVAL" } else { "EPERM" };
    each_mode(sandbox_modes!(support), |mode| {
        let (host, grant) = (Dir::new("more-host"), Dir::new("more-grant"));
        let key = host.create("key", SECRET);
        let before = host_view(&key);
        let got = probe(mode, &grant, &key);
        let container = mode == Mode::Container;
        for (op, v) in &got {
            let expected = match op.as_str() {
                "mknod-fifo" => "ok",
                "open_by_handle_at" | "io_uring_setup" | "mknod-chr" | "chmod-setuid-via-procfd" => "EPERM",
                "fchown-other" => unmapped,
                "link-setuid-via-procfd" => "EXDEV",
                // Container mode: the host file is not there at all.
                _ if container => "ENOENT",
                "copy_file_range-host" => "EACCES",
                "link-host-into-grant" | "renameat2-exchange" | "rename-host-into-grant" => "EXDEV",
                "setxattr-host-via-opath" => NOT_SUPPORTED,
                _ => "EROFS",
            };
            assert_eq!(v, expected, "[{}] {op}", mode.as_str());
        }
        assert_eq!(got.len(), 16, "[{}] every probe ran: {got:?}", mode.as_str());
        assert_eq!(host_view(&key), before, "[{}] the host file changed", mode.as_str());
        assert_eq!(std::fs::read_to_string(&key).unwrap(), SECRET);
        let mut names: Vec<String> =
            std::fs::read_dir(grant.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["fifo", "mine"], "[{}] only the run's own files are in the grant", mode.as_str());
        assert_eq!(
            std::fs::read_to_string(grant.join("mine")).unwrap(),
            "x",
            "[{}] nothing was copied in",
            mode.as_str()
        );
    });
}

/// Review (session 7) F1: init's memory is a copy of cordon's (its whole
/// environment; in `cordon serve` the spawner's, with the service's
/// secrets; in `cordon worker` the worker's, with its result-signing key),
/// and the connect helper shares it under the command's credentials. Until
/// the helper's own `prctl(PR_SET_DUMPABLE, 0)` the command, just exec'd,
/// could open `/proc/<helper>/mem` (and keep reading it), `environ` and
/// `fd/N` (init's pipes: a forged status record). Init makes the memory
/// non-dumpable itself before the command exists. The probe scans `/proc`
/// from its first instruction on; the caller's environment holds a value
/// cordon does not pass. Control: the same opens of the probe's own child
/// work, in the same sandbox.
#[test]
fn the_command_cannot_open_the_memory_environment_or_descriptors_of_init_or_the_connect_helper() {
    let support = kernel_support();
    let dir = Dir::new("init-memory-probe");
    let src = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/probes/init_memory_probe.c");
    let bin = dir.join("init_memory_probe");
    let out =
        std::process::Command::new(tool("/usr/bin/gcc")).arg("-O").arg("-o").arg(&bin).arg(&src).output().expect("gcc");
    assert!(out.status.success(), "gcc: {}", String::from_utf8_lossy(&out.stderr));
    let secret = format!("CORDON_REVIEW_SECRET_{}", std::process::id());
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode)
            .env("CORDON_REVIEW_SECRET", &secret)
            .arg("--read")
            .arg(dir.path())
            .arg("--")
            .arg(&bin)
            .arg(&secret)
            .run();
        out.assert_success();
        out.assert_stdout_contains("foreign opened 0\n");
        out.assert_stdout_contains("control mem ok\ncontrol environ ok\n");
        assert!(!out.stdout.contains("seen SECRET"), "[{}] the caller's environment was read: {out}", mode.as_str());
    });
}

/// One of review s9 F1's sequences, in a base folder: its flags and the
/// command of its first run, which leaves `ran` in `marker` on the host.
struct DenySequence {
    name: &'static str,
    /// The denied path the refusal names, relative to the base.
    denied: &'static str,
    flags: Vec<String>,
    script: String,
}

fn deny_sequences(base: &Path, marker: &Path) -> Vec<DenySequence> {
    let (b, m) = (base.display(), marker.display());
    let flags = |f: &[String]| [f, &["--write".to_owned(), marker.display().to_string()]].concat();
    vec![
        // The sandbox moves the denied file's folder (its mask moves along).
        DenySequence {
            name: "deny-under-tmp-mv",
            denied: "app/conf/secret.key",
            flags: flags(&["--write".into(), format!("{b}/app"), "--deny".into(), format!("{b}/app/conf/secret.key")]),
            script: format!("echo ran > {m}/ran; cd {b}/app && mv conf conf.moved && echo moved"),
        },
        // A read grant: the host's atomic replace of the file lifts the mask.
        DenySequence {
            name: "deny-under-tmp",
            denied: "data/secret",
            flags: flags(&["--read".into(), format!("{b}/data"), "--deny".into(), format!("{b}/data/secret")]),
            script: format!("echo ran > {m}/ran; cat {b}/data/secret"),
        },
        // cordon's own audit log, carved out of a write grant.
        DenySequence {
            name: "audit-under-tmp",
            denied: "a/logs/audit.jsonl",
            flags: flags(&[
                "--audit-log".into(),
                format!("{b}/a/logs/audit.jsonl"),
                "--write".into(),
                format!("{b}/a"),
            ]),
            script: format!("echo ran > {m}/ran; cd {b}/a && mv logs logs.hidden && echo moved"),
        },
    ]
}

fn deny_fixture(dir: &Dir) {
    dir.create("app/conf/secret.key", "TOPSECRET\n");
    dir.create("app/conf/other", "x\n");
    dir.create("data/secret", "TOPSECRET\n");
    dir.create_dir("a/logs");
}

/// Review s9 F1: a deny (or cordon's own carved-out audit log) inside a
/// grant under the host's `/tmp` had no Landlock side: the run's own `/tmp`
/// write rule covers every grant mounted below it, and the mask alone held
/// the path, which a rename of a folder above it lifts (the sandbox moved
/// `conf` and read the secret in its next run). Such runs are refused before
/// anything starts: exit 125, naming the denied path, the grant and why; the
/// command never ran (its marker is absent on the host). Control: the same
/// sequences under `/var/tmp` start, and the deny holds (the move is
/// refused, on the host nothing moved).
#[test]
fn denies_inside_grants_under_the_host_tmp_are_refused() {
    let support = kernel_support();
    let marker = Dir::new("deny-tmp-marker");
    each_mode(sandbox_modes!(support), |mode| {
        let host_tmp = Dir::new_in_host_tmp("deny-tmp");
        deny_fixture(&host_tmp);
        for seq in deny_sequences(host_tmp.path(), marker.path()) {
            let out = run_in(mode).args(&seq.flags).args(["--", "sh", "-c", &seq.script]).run();
            out.assert_code(125);
            out.assert_stderr_contains("which is below /tmp: the run's own /tmp has a write rule");
            out.assert_stderr_contains(
                "hint: move the granted folder out of /tmp (e.g. to /var/tmp), or drop the deny",
            );
            out.assert_stderr_contains(&format!("the denied path {}", host_tmp.join(seq.denied).display()));
            assert!(!marker.join("ran").exists(), "[{}] {}: the command ran", mode.as_str(), seq.name);
        }
        assert!(host_tmp.join("app/conf/secret.key").exists() && host_tmp.join("a/logs").exists());
        // Control: the same under /var/tmp starts, and the deny holds.
        let var_tmp = Dir::new("deny-var-tmp");
        deny_fixture(&var_tmp);
        for seq in deny_sequences(var_tmp.path(), marker.path()) {
            let out = run_in(mode).args(&seq.flags).args(["--", "sh", "-c", &seq.script]).run();
            assert_ne!(out.code(), Some(0), "[{}] {}: {}", mode.as_str(), seq.name, out.stdout);
            assert!(
                !out.stdout.contains("moved") && !out.stdout.contains("TOPSECRET"),
                "[{}] {}",
                mode.as_str(),
                seq.name
            );
            assert_eq!(marker.read("ran"), "ran\n", "[{}] {}: the command did not run", mode.as_str(), seq.name);
            std::fs::remove_file(marker.join("ran")).unwrap();
        }
        assert!(var_tmp.join("app/conf/secret.key").exists(), "[{}] the denied file's folder moved", mode.as_str());
        assert!(var_tmp.join("a/logs").exists(), "[{}] the audit log's folder moved", mode.as_str());
    });
}
