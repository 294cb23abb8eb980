//! cordon's own state is out of every sandbox's reach, whatever the grants
//! (issue 9 finding 9): the state folder (audit log, run journal, audit
//! key), cordon's home (registry: lock file, trust store, installed
//! plugins) and an audit log kept anywhere else. Each probe does the
//! forbidden thing from inside a run whose grant covers the state, then
//! checks the host side; the same probes on a file beside it succeed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cordon_testkit::{each_mode, kernel_support, poll_until, sandbox_modes, Dir, Mode, TestCommand};

use super::{cordon, plugins::exec, run_in, tool};

/// Runs each operation and prints `op: ok` or `op: <strerror>`.
const PRELUDE: &str = r#"
import os, sys
def op(name, f):
    try:
        f()
        print(name + ": ok")
    except OSError as e:
        print(name + ": " + e.strerror)
"#;

/// Every way a sandbox could damage a file: read it, truncate, append,
/// chmod, rename, replace by a symlink, hard-link it out, delete it. argv:
/// the file, a writable folder for the hard link.
const FILE_PROBE: &str = r#"
t, out = sys.argv[1], sys.argv[2]
op("read", lambda: open(t, "rb").read())
op("truncate", lambda: os.truncate(t, 0))
op("append", lambda: open(t, "ab").write(b"forged\n"))
op("chmod", lambda: os.chmod(t, 0o666))
op("hardlink", lambda: os.link(t, os.path.join(out, "stolen")))
op("rename", lambda: os.rename(t, t + ".moved"))
def swap():
    os.symlink("/etc/hostname", t + ".swap")
    os.rename(t + ".swap", t)
op("symlink-swap", swap)
op("delete", lambda: os.unlink(t))
"#;

/// What a sandbox could do to a folder: list it, create in it, rename it
/// away, replace it by a symlink. argv: the folder.
const FOLDER_PROBE: &str = r#"
d = sys.argv[1]
op("list", lambda: os.listdir(d))
op("create", lambda: open(os.path.join(d, "planted"), "w").write("x"))
op("rename", lambda: os.rename(d, d + ".old"))
def swap():
    os.symlink("/tmp", d + ".swap")
    os.rename(d + ".swap", d)
op("symlink-swap", swap)
"#;

const FILE_OPS: [&str; 8] = ["read", "truncate", "append", "chmod", "hardlink", "rename", "symlink-swap", "delete"];
const FOLDER_OPS: [&str; 4] = ["list", "create", "rename", "symlink-swap"];

/// A home folder with cordon's state at its default places, and a file of
/// the user's beside it.
struct Home {
    _dir: Dir,
    home: PathBuf,
}

impl Home {
    fn new(tag: &str) -> Home {
        let dir = Dir::new(tag);
        let home = dir.join("home");
        std::fs::create_dir_all(home.join("work")).unwrap();
        std::fs::write(home.join("work/notes.txt"), "the user's own file\n").unwrap();
        Home { _dir: dir, home }
    }
    fn state(&self) -> PathBuf {
        self.home.join(".local/state/cordon")
    }
    fn log(&self) -> PathBuf {
        self.state().join("audit.jsonl")
    }
    fn key(&self) -> PathBuf {
        self.state().join("audit.key")
    }
    fn cordon_home(&self) -> PathBuf {
        self.home.join(".local/share/cordon")
    }
    /// `cmd` with HOME and XDG pointing here, and the default audit log.
    fn with(&self, mut cmd: TestCommand) -> TestCommand {
        cmd.env("HOME", &self.home)
            .env("XDG_STATE_HOME", self.home.join(".local/state"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env_remove("CORDON_HOME")
            .env("CORDON_AUDIT_LOG", self.log());
        cmd
    }
    /// One run that leaves cordon's state as a first run does.
    fn first_run(&self, mode: Mode) {
        self.with(run_in(mode)).args(["--", "true"]).run().assert_success();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `op: result` lines of a probe's output, checked against `expected`.
#[track_caller]
fn assert_ops(out: &cordon_testkit::Outcome, ops: &[&str], expected: impl Fn(&str) -> &'static str, ctx: &str) {
    for op in ops {
        let want = format!("{op}: {}", expected(op));
        assert!(out.stdout.lines().any(|l| l == want), "{ctx}: expected `{want}`\n{out}");
    }
}

/// Where a probed path lies: it is the carve-out itself, or inside one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Carved {
    Itself,
    Inside,
}

/// What a probe gets on a protected path. Landlock refuses it (both modes;
/// container mode also hides it). In process mode the read-only host view
/// (issue 9 finding 1) binds a carve-out inside a write grant read-only, so
/// a change to it, or to anything inside a carved-out folder, fails with
/// `EROFS` before Landlock is asked; renaming or removing a carved-out file
/// itself changes its folder, which Landlock refuses. A hard link between
/// two Landlock rules' trees is refused with `EXDEV`.
fn refused(mode: Mode, op: &str, at: Carved) -> &'static str {
    match (mode, op, at) {
        (Mode::Process, "truncate" | "append" | "chmod", _) => "Read-only file system",
        (Mode::Process, "rename" | "symlink-swap" | "delete", Carved::Inside) => "Read-only file system",
        (Mode::Process, "hardlink", _) => "Invalid cross-device link",
        _ => "Permission denied",
    }
}

#[test]
fn a_grant_of_home_or_root_cannot_reach_the_audit_log_key_or_registry() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        for grant in ["home", "/"] {
            let h = Home::new("state-home");
            let ctx = format!("[{} --write {grant}]", mode.as_str());
            // cordon's state as an earlier run (log, audit key) and the
            // registry left it.
            h.first_run(mode);
            let key_before = std::fs::read(h.key()).unwrap();
            std::fs::create_dir_all(h.cordon_home()).unwrap();
            std::fs::write(h.cordon_home().join("registry.lock"), "{}\n").unwrap();
            let log_before = std::fs::read(h.log()).unwrap();
            let grant = if grant == "home" { s(&h.home).to_owned() } else { grant.to_owned() };

            let probe = |script: &str, args: &[&Path]| {
                let mut cmd = h.with(run_in(mode));
                cmd.args(["--write", &grant, "--", python, "-c", &format!("{PRELUDE}{script}")])
                    .args(args.iter().map(|p| s(p)));
                cmd.run()
            };
            // Control: the same probes on the user's own file succeed.
            let notes = h.home.join("work/notes.txt");
            let out = probe(FILE_PROBE, &[&notes, &h.home.join("work")]);
            out.assert_success();
            assert_ops(&out, &FILE_OPS, |_| "ok", &format!("{ctx} control"));
            assert!(!notes.exists() && h.home.join("work/stolen").exists(), "{ctx} control ran on the host\n{out}");
            std::fs::remove_file(h.home.join("work/stolen")).unwrap();

            for target in [h.log(), h.key(), h.cordon_home().join("registry.lock")] {
                let out = probe(FILE_PROBE, &[&target, &h.home.join("work")]);
                out.assert_success();
                for op in FILE_OPS {
                    let e = refused(mode, op, Carved::Inside);
                    assert_ops(&out, &[op], |_| e, &format!("{ctx} {}", target.display()));
                }
            }
            for folder in [h.state(), h.cordon_home(), h.home.join(".local")] {
                let out = probe(FOLDER_PROBE, &[&folder]);
                out.assert_success();
                // The folders above the state can still be listed in
                // container mode; nothing can be created or moved.
                let above = folder.ends_with(".local");
                let ops: &[&str] = if above { &FOLDER_OPS[1..] } else { &FOLDER_OPS };
                // Creating inside a carved-out folder meets its read-only
                // bind in process mode (see `refused`).
                let expected = |op: &str| match (mode, op, above) {
                    (Mode::Process, "create", false) => "Read-only file system",
                    _ => "Permission denied",
                };
                assert_ops(&out, ops, expected, &format!("{ctx} {}", folder.display()));
            }
            // Planting what the registry has not written yet.
            let out = probe(FILE_PROBE, &[&h.cordon_home().join("trust.json"), &h.home.join("work")]);
            assert_ops(&out, &["append"], |op| refused(mode, op, Carved::Inside), &ctx);

            // The host side: everything as it was, plus this run's records.
            let log_after = std::fs::read(h.log()).unwrap();
            assert_eq!(&log_after[..log_before.len()], &log_before[..], "{ctx} the log was rewritten");
            assert_eq!(std::fs::read(h.key()).unwrap(), key_before, "{ctx} the audit key changed");
            assert_eq!(mode_of(&h.log()), 0o600, "{ctx} the log's mode changed");
            assert_eq!(mode_of(&h.key()), 0o600, "{ctx} the key's mode changed");
            assert!(std::fs::symlink_metadata(h.state()).unwrap().is_dir(), "{ctx}");
            assert_eq!(std::fs::read_to_string(h.cordon_home().join("registry.lock")).unwrap(), "{}\n", "{ctx}");
            for gone in [
                h.state().with_extension("old"),
                h.log().with_extension("jsonl.moved"),
                h.cordon_home().join("trust.json"),
                h.state().join("planted"),
                h.home.join("work/stolen"),
            ] {
                assert!(!gone.exists(), "{ctx} {} exists on the host", gone.display());
            }
            let mut verify = h.with(cordon());
            verify.args(["audit", "--verify"]).run().assert_success();
        }
    });
}

#[test]
fn the_user_is_told_once_which_state_is_carved_out_and_why() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let h = Home::new("state-told");
        let mut cmd = h.with(run_in(mode));
        let out = cmd.args(["--json", "--write", s(&h.home), "--", "true"]).run();
        out.assert_success();
        let note = format!(
            "{} (cordon's state folder: audit log, run journal, audit signing key) lies inside fs.write {}, so it is carved out",
            h.state().display(),
            h.home.display()
        );
        assert_eq!(out.stderr.matches(&note).count(), 1, "told once on stderr\n{out}");
        let warnings = out.json()["warnings"].clone();
        let in_result: Vec<&serde_json::Value> =
            warnings.as_array().unwrap().iter().filter(|w| w.as_str().unwrap().contains(&note)).collect();
        assert_eq!(in_result.len(), 1, "once in the result's warnings\n{out}");
        assert!(out.stderr.contains(&format!("{} (cordon's home", h.cordon_home().display())), "{out}");
        // Control: a grant that does not cover the state says nothing.
        let mut quiet = h.with(run_in(mode));
        let out = quiet.args(["--write", s(&h.home.join("work")), "--", "true"]).run();
        out.assert_success();
        assert!(!out.stderr.contains("kept out of every sandbox"), "{out}");
    });
}

#[test]
fn an_audit_log_inside_a_write_grant_is_out_of_reach() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        let w = Dir::new("state-log-in-grant");
        let log = w.join("audit.jsonl");
        let beside = w.create("beside.txt", "the user's own file\n");
        std::fs::create_dir(w.join("out")).unwrap();
        let probe = |target: &Path| {
            let out = run_in(mode)
                .args([
                    "--write",
                    s(w.path()),
                    "--audit-log",
                    s(&log),
                    "--",
                    python,
                    "-c",
                    &format!("{PRELUDE}{FILE_PROBE}"),
                ])
                .args([s(target), s(&w.join("out"))])
                .run();
            out.assert_success();
            out
        };
        let out = probe(&beside);
        assert_ops(&out, &["read", "truncate", "append", "chmod"], |_| "ok", "control");
        let before = std::fs::read(&log).unwrap();
        let out = probe(&log);
        out.assert_stderr_contains(&format!(
            "{} (the audit log) lies inside fs.write {}",
            log.display(),
            w.path().display()
        ));
        for op in FILE_OPS {
            // Container mode hides a file by binding /dev/null read-only on it.
            let e = match (mode, op) {
                (Mode::Container, "truncate") => "Invalid argument",
                (Mode::Container, "chmod") => "Read-only file system",
                (Mode::Container, "hardlink") => "Invalid cross-device link",
                _ => refused(mode, op, Carved::Itself),
            };
            assert_ops(&out, &[op], |_| e, &format!("[{}] {op}", mode.as_str()));
        }
        assert_eq!(mode_of(&log), 0o600, "[{}] the log's mode changed", mode.as_str());
        let after = std::fs::read(&log).unwrap();
        assert_eq!(&after[..before.len()], &before[..], "[{}] the log was rewritten", mode.as_str());
        assert!(!w.join("out/stolen").exists() && !log.with_extension("jsonl.moved").exists());
        cordon().args(["audit", "--verify", "--audit-log", s(&log)]).run().assert_success();
    });
}

#[test]
fn a_grant_inside_cordon_state_is_not_granted() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let h = Home::new("state-inside");
        h.first_run(mode);
        std::fs::create_dir_all(h.cordon_home()).unwrap();
        for (flag, target) in [("--read", h.log()), ("--write", h.state()), ("--read", h.cordon_home())] {
            let mut cmd = h.with(run_in(mode));
            let out = cmd.args([flag, s(&target), "--", "cat", s(&h.log())]).run();
            let ctx = format!("[{} {flag} {}]", mode.as_str(), target.display());
            out.assert_code(1);
            out.assert_stderr_contains(&format!(
                "lies inside {}",
                if target == h.cordon_home() { h.cordon_home() } else { h.state() }.display()
            ));
            assert!(out.stdout.is_empty(), "{ctx} the log was read\n{out}");
        }
    });
}

#[test]
fn a_manifest_write_grant_covering_the_state_is_carved_too() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        let h = Home::new("state-manifest");
        let plugin = Dir::new("state-plugin");
        plugin.create(
            "cordon.toml",
            format!(
                "id = \"@t/greedy\"\nversion = \"1.0.0\"\n[permissions]\nfs.write = [\"{}\"]\n\
                 [handlers.wipe]\ncommand = [\"{python}\", \"-c\", \"import os,sys; os.truncate(sys.argv[1], 0)\", \"{}\"]\n",
                h.home.display(),
                h.log().display()
            ),
        );
        h.first_run(mode);
        let before = std::fs::read(h.log()).unwrap();
        let mut cmd = h.with(exec(mode, plugin.path(), "wipe", "{}"));
        let out = cmd.run();
        // Process mode binds the carved-out state read-only (Read-only file
        // system); container mode hides it: an empty tmpfs (PermissionError),
        // or, since the state folder holds this run's own run folder, one
        // that only leads there (FileNotFoundError for anything else).
        out.assert_code(1);
        let refused: &[&str] = match mode {
            Mode::Process => &["Read-only file system"],
            _ => &["PermissionError", "FileNotFoundError"],
        };
        assert!(refused.iter().any(|r| out.stderr.contains(r)), "[{}] not refused as expected\n{out}", mode.as_str());
        assert_eq!(&std::fs::read(h.log()).unwrap()[..before.len()], &before[..], "[{}]", mode.as_str());
    });
}

#[test]
fn a_grant_covering_the_plugins_own_data_folder_inside_cordon_home_is_refused() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let h = Home::new("state-own");
        let plugin = Dir::new("state-own-plugin");
        let manifest = |write: &Path| {
            format!(
                "id = \"@t/keeper\"\nversion = \"1.0.0\"\nextends = [\"platform\"]\n[permissions]\nfs.write = [\"{}\"]\n\
                 [handlers.noop]\ncommand = [\"sh\", \"-c\", \"echo '{{}}' >&3\"]\n",
                write.display()
            )
        };
        // Control: a grant beside cordon's home runs, with the data folder.
        plugin.create("cordon.toml", manifest(&h.home.join("work")));
        let mut ok = h.with(exec(mode, plugin.path(), "noop", "{}"));
        ok.run().assert_success();
        assert!(h.cordon_home().join("data/@t/keeper").is_dir());
        // A grant of the whole home would cover the data folder's parent.
        plugin.create("cordon.toml", manifest(&h.home));
        let mut refused = h.with(exec(mode, plugin.path(), "noop", "{}"));
        let out = refused.run();
        out.assert_code(125).assert_stderr_contains(&format!(
            "fs.write {} covers {} (cordon's home: plugin registry, trust store, installed plugins), which holds {}",
            h.home.display(),
            h.cordon_home().display(),
            h.cordon_home().join("data/@t/keeper").display()
        ));
        assert_eq!(out.audit[0]["outcome"], "SETUP_FAILED");
    });
}

/// The artifact store is cordon's too (review s12 R12-12): a handler whose
/// write grant holds the store learns its request id from
/// `$CORDON_ARTIFACTS` and plants `store/<plugin>/<version>/<handler>/<id>`
/// as a link to a host folder outside every grant, then leaves a file in
/// its artifacts. cordon must neither let it plant in the store (the store
/// is carved out of the grant) nor move the file through a link found
/// there (a link planted before, by a run that could: collection walks
/// the store without following links). Checked on the host: the outside
/// folder stays empty, the store holds no link.
#[test]
fn a_handler_cannot_plant_a_link_in_the_artifact_store_or_have_cordon_write_through_one() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let h = Home::new("state-store");
        let work = Dir::new("state-store-work");
        let outside = Dir::new("state-store-outside");
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let store = work.join("store");
        let plugin = Dir::new("state-store-plugin");
        plugin.create(
            "cordon.toml",
            format!(
                "id = \"@t/store\"\nversion = \"1.0.0\"\n[permissions]\nfs.write = [\"{}\"]\n\
                 [handlers.go]\ncommand = [\"./go.sh\"]\n",
                work.path().display()
            ),
        );
        plugin.create(
            "go.sh",
            format!(
                "#!/bin/sh\nid=$(basename $(dirname $CORDON_ARTIFACTS) | sed 's/^cordon-exec-//')\n\
                 mkdir -p {store}/@t/store/1.0.0/go && ln -s {outside} {store}/@t/store/1.0.0/go/$id \
                 && echo planted >&2\nprintf 'evil\\n' > $CORDON_ARTIFACTS/evil\necho '{{}}' >&3\n",
                store = store.display(),
                outside = outside.path().display()
            ),
        );
        std::fs::set_permissions(plugin.join("go.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        // The handler's own attempt: the store is carved out of its grant.
        let mut cmd = h.with(exec(mode, plugin.path(), "go", "{}"));
        let out = cmd.args(["--json", "--artifact-store", s(&store)]).run();
        out.assert_success();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "[{m}] written outside the grants\n{out}");
        let links = TestCommand::new("find").arg(&store).args(["-type", "l"]).run();
        assert_eq!(links.stdout, "", "[{m}] the handler planted a link in the store\n{out}");
        assert!(
            out.stderr.contains(&format!("{} (cordon's artifact store", store.display())),
            "[{m}] the carve-out is not told\n{out}"
        );
        // A link found in the store (planted by a run that could): nothing
        // is written through it, and the result says why.
        let planted = store.join("@t/store/go");
        std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(outside.path(), &planted).unwrap();
        let mut cmd = h.with(exec(mode, plugin.path(), "go", "{}"));
        let out =
            cmd.args(["--json", "--artifact-store", s(&store), "--artifact-template", "{plugin}/{handler}"]).run();
        out.assert_success();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "[{m}] written through a link\n{out}");
        assert!(std::fs::symlink_metadata(&planted).unwrap().file_type().is_symlink());
        let warned = format!(
            "artifacts were not stored: artifact store path {} is a symbolic link or not a folder",
            planted.display()
        );
        assert!(out.json()["warnings"].to_string().contains(&warned), "[{m}] expected `{warned}`\n{out}");
    });
}

/// cordon's data folder is protected even when cordon's home is elsewhere
/// (`$CORDON_HOME` set), and a plugin's data folder below it is never
/// taken through a link (review s12 R12-7 (b), (c)): a run granted the
/// user's whole home must not read or re-point another plugin's data
/// folder, and a link found there (planted by a run that could) refuses
/// the plugin's run instead of granting it the link's target. Checked on
/// the host: the data folder is still a folder holding its file, the
/// outside folder stays empty.
#[test]
fn plugin_data_folders_cannot_be_read_or_re_pointed_with_cordon_home_elsewhere() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let h = Home::new("state-data");
        let cordon_home = h.home.join("registry");
        let outside = Dir::new("state-data-outside");
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let plugin = Dir::new("state-data-plugin");
        plugin.create(
            "cordon.toml",
            "id = \"@t/vault\"\nversion = \"1.0.0\"\nextends = [\"platform\"]\n\
             [handlers.store]\ncommand = [\"sh\", \"-c\", \"echo stored > \\\"$CORDON_DATA_DIR/planted\\\"; echo '{}' >&3\"]\n",
        );
        let data = h.home.join(".local/share/cordon/data/@t/vault");
        let with = |cmd: TestCommand| {
            let mut cmd = h.with(cmd);
            cmd.env("CORDON_HOME", &cordon_home);
            cmd
        };
        with(exec(mode, plugin.path(), "store", "{}")).run().assert_success();
        assert_eq!(std::fs::read_to_string(data.join("planted")).unwrap(), "stored\n", "[{m}]");
        // A run granted the whole home: reads and re-points nothing there.
        let script = format!(
            "cat {d}/planted; rm -rf {d} && ln -s {o} {d} && echo re-pointed",
            d = data.display(),
            o = outside.path().display()
        );
        let out = with(run_in(mode)).args(["--write", s(&h.home), "--", "sh", "-c", &script]).run();
        assert!(!out.stdout.contains("stored"), "[{m}] read another plugin's data\n{out}");
        assert!(!out.stdout.contains("re-pointed"), "[{m}] re-pointed the data folder\n{out}");
        assert!(std::fs::symlink_metadata(&data).unwrap().is_dir(), "[{m}] {out}");
        assert!(data.join("planted").exists(), "[{m}] {out}");
        // A link found there: the plugin's run is refused, nothing written.
        std::fs::remove_dir_all(&data).unwrap();
        std::os::unix::fs::symlink(outside.path(), &data).unwrap();
        let out = with(exec(mode, plugin.path(), "store", "{}")).run();
        out.assert_code(125).assert_stderr_contains(&format!("cannot create the data folder {}", data.display()));
        out.assert_stderr_contains("is a symbolic link, which cordon never follows there");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "[{m}] written through the link\n{out}");
    });
}

/// What a run tries on another run's folder (argv: the file naming the
/// victim's `$CORDON_ARTIFACTS`): list the folder of run folders and the
/// victim's, read, overwrite and add to its artifacts, hard-link one out
/// (into argv 2), swap a folder for a link. One line per success.
const RUN_FOLDER_PROBE: &str = r#"
a=$(cat "$1"); d=$(dirname "$a")
ls "$(dirname "$d")" >/dev/null 2>&1 && echo LISTED-RUNS
ls "$d" >/dev/null 2>&1 && echo LISTED-RUN
cat "$a/report.txt" 2>/dev/null | grep -q GENUINE && echo READ
echo PLANTED 2>/dev/null > "$a/report.txt" && echo WROTE
echo PLANTED 2>/dev/null > "$a/extra.txt" && echo ADDED
ln "$a/report.txt" "$2/stolen" 2>/dev/null && echo LINKED
mv "$a" "$a.old" 2>/dev/null && ln -s /tmp "$a" 2>/dev/null && echo SWAPPED
echo probed
"#;

/// Run folders are out of every other run's reach, and a run's own stays
/// in its reach (review s12 R12-8 (b)): while a handler waits with
/// `GENUINE` in its `$CORDON_ARTIFACTS/report.txt`, a `cordon run` granted
/// `/var/tmp` and the user's home (where the run folders are: the run root
/// by default, cordon's state folder since this fix, `/var/tmp` before)
/// and a plugin run granted the whole home try to list, read, overwrite,
/// add to, hard-link out of and swap the victim's folder. Checked on the
/// host: the stored artifact is `GENUINE` and the only one, nothing was
/// linked out, and the thief's own artifact (its probe's output, written
/// through the hole the carve-out leaves for its own run folder) is stored.
/// On the code before, run folders sat in `/var/tmp` and the first run
/// overwrote the artifact (`PLANTED` stored as the victim's).
#[test]
fn a_concurrent_run_cannot_reach_another_runs_folder_and_keeps_its_own() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let h = Home::new("state-runs");
        let shared = Dir::new("state-runs-shared");
        let store = Dir::new("state-runs-store");
        let logs = Dir::new("state-runs-logs");
        // Each command its own audit log: they run at once.
        let with = |cmd: TestCommand, log: &str| {
            let mut cmd = h.with(cmd);
            cmd.env("CORDON_ARTIFACT_STORE", store.path()).env("CORDON_AUDIT_LOG", logs.join(log));
            cmd
        };
        let victim = Dir::new("state-runs-victim");
        victim.create(
            "cordon.toml",
            format!(
                "id = \"@t/victim\"\nversion = \"1.0.0\"\n[permissions]\nfs.write = [\"{}\"]\n\
                 [quotas]\ntimeout_ms = 120000\n[handlers.go]\ncommand = [\"./go.sh\"]\n",
                shared.path().display()
            ),
        );
        victim.create(
            "go.sh",
            format!(
                "#!/bin/sh\necho GENUINE > \"$CORDON_ARTIFACTS/report.txt\"\n\
                 echo \"$CORDON_ARTIFACTS\" > {s}/where.tmp && mv {s}/where.tmp {s}/where\n\
                 while [ ! -e {s}/done ]; do sleep 0.05; done\necho '{{}}' >&3\n",
                s = shared.path().display()
            ),
        );
        std::fs::set_permissions(victim.join("go.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let thief = Dir::new("state-runs-thief");
        thief.create(
            "cordon.toml",
            format!(
                "id = \"@t/thief\"\nversion = \"1.0.0\"\n[permissions]\nfs.read = [\"{}\"]\nfs.write = [\"{}\"]\n\
                 [handlers.go]\ncommand = [\"sh\", \"-c\", \"sh ./probe.sh {} {} > \\\"$CORDON_ARTIFACTS/probe.txt\\\"; echo '{{}}' >&3\"]\n",
                shared.path().display(),
                h.home.display(),
                shared.join("where").display(),
                h.home.display(),
            ),
        );
        thief.create("probe.sh", RUN_FOLDER_PROBE);
        let mut victim_run = with(exec(mode, victim.path(), "go", "{}"), "victim.jsonl");
        victim_run.arg("--json");
        let (attack, stolen) = std::thread::scope(|sc| {
            let run = sc.spawn(|| victim_run.run());
            let ready = poll_until(Duration::from_secs(120), || shared.join("where").exists() || run.is_finished());
            assert!(ready && shared.join("where").exists(), "[{m}] the victim never started");
            let out = with(run_in(mode), "attacker.jsonl")
                .args(["--write", "/var/tmp", "--write", s(&h.home), "--", "sh", "-c", RUN_FOLDER_PROBE, "probe"])
                .arg(shared.join("where"))
                .arg(shared.path())
                .run();
            let stolen = with(exec(mode, thief.path(), "go", "{}"), "thief.jsonl").arg("--json").run();
            std::fs::write(shared.join("done"), "").unwrap();
            let victim = run.join().unwrap();
            victim.assert_success();
            (out, (stolen, victim))
        });
        let (thief_out, victim_out) = stolen;
        assert!(attack.stdout.contains("probed"), "[{m}] the probe did not run\n{attack}");
        for what in ["LISTED-RUNS", "LISTED-RUN", "READ", "WROTE", "ADDED", "LINKED", "SWAPPED"] {
            assert!(!attack.stdout.contains(what), "[{m}] a concurrent run {what} the victim's run folder\n{attack}");
        }
        let found = |name: &str| {
            let f = TestCommand::new("find").arg(store.path()).args(["-name", name]).run();
            f.stdout.lines().map(PathBuf::from).collect::<Vec<_>>()
        };
        let report = found("report.txt");
        assert_eq!(report.len(), 1, "[{m}] {victim_out}");
        assert_eq!(std::fs::read_to_string(&report[0]).unwrap(), "GENUINE\n", "[{m}] planted\n{victim_out}\n{attack}");
        assert!(found("extra.txt").is_empty(), "[{m}] a file was added to the victim's artifacts\n{victim_out}");
        assert!(!shared.join("stolen").exists(), "[{m}] an artifact was hard-linked out\n{attack}");
        assert!(!h.home.join("stolen").exists(), "[{m}] an artifact was hard-linked out\n{attack}");
        // The thief (a plugin granted the whole home, which holds the run
        // folders): its own artifact is stored, and it reached nothing.
        thief_out.assert_success();
        let probe = found("probe.txt");
        assert_eq!(probe.len(), 1, "[{m}] the thief's own artifact was not stored\n{thief_out}");
        let probed = std::fs::read_to_string(&probe[0]).unwrap();
        assert_eq!(probed, "probed\n", "[{m}] a plugin run reached another run's folder\n{thief_out}");
    });
}

/// A run whose write grant holds the artifact store's folder swaps the
/// store with a link to a host folder outside every grant
/// (`renameat2(RENAME_EXCHANGE)` in a loop) while `cordon exec` runs
/// store artifacts there (review s14, R14-1): the store's root was checked
/// by one path walk and opened by another (`create_dir_all`, `open`
/// following links), so a swap between the two had cordon make the
/// template's folders and write the run's file into the 0700 folder. Now
/// the collection opens the root by the check's own walk, by descriptors:
/// what it checked is what it writes below. Host side: the 0700 folder
/// holds nothing after a dozen runs during the swaps (each either refused
/// or stored in the real store), and the flipper did swap; control: once
/// it stops, the real store takes the artifact. Fails on f3822c1 (the
/// artifact lands in the 0700 folder, usually in the first few runs).
#[test]
fn an_artifact_store_swapped_for_a_link_during_the_collection_is_never_written_through() {
    const FLIP: &str = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
d = os.open(".", os.O_PATH | os.O_DIRECTORY)
n = 0
open("flipping", "w").close()
while not os.path.exists("stop"):
    for _ in range(512):
        if libc.syscall(316, d, b"store", d, b"storeL", 2) == 0:
            n += 1
if n % 2:
    libc.syscall(316, d, b"store", d, b"storeL", 2)
    n += 1
open("flips", "w").write(str(n))
"#;
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let h = Home::new("state-store-flip");
        let work = Dir::new("state-store-flip-work");
        let victim = Dir::new("state-store-flip-victim");
        std::fs::set_permissions(victim.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let store = work.join("store");
        std::fs::create_dir(&store).unwrap();
        std::os::unix::fs::symlink(victim.path(), work.join("storeL")).unwrap();
        let plugin = Dir::new("state-store-flip-plugin");
        plugin.create(
            "cordon.toml",
            "id = \"@t/flip\"\nversion = \"1.0.0\"\n[handlers.go]\n\
             command = [\"sh\", \"-c\", \"echo FROM-THE-RUN > \\\"$CORDON_ARTIFACTS/evil\\\"; echo '{}' >&3\"]\n",
        );
        let w = s(work.path());
        let mut flipper = h
            .with(run_in(mode))
            .args(["--write", w, "--cwd", w, "--timeout-ms", "120000", "--", python, "-c", FLIP])
            .spawn_without_output();
        let flipping = poll_until(Duration::from_secs(30), || work.join("flipping").exists());
        assert!(flipping, "[{m}] the flipper never started");
        let mut outs = vec![];
        for _ in 0..12 {
            outs.push(h.with(exec(mode, plugin.path(), "go", "{}")).args(["--artifact-store", s(&store)]).run());
        }
        std::fs::write(work.join("stop"), "").unwrap();
        assert!(flipper.wait().unwrap().success(), "[{m}] the flipper failed");
        let flips: u64 = std::fs::read_to_string(work.join("flips")).unwrap().parse().unwrap();
        assert!(flips > 0, "[{m}] nothing was swapped");
        let found = TestCommand::new("find").arg(victim.path()).args(["-mindepth", "1"]).run();
        assert_eq!(
            found.stdout.trim(),
            "",
            "[{m}] cordon wrote through the swapped-in link:\n{}",
            outs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
        );
        // Each run either stored in the real store or was refused, naming the link.
        for out in &outs {
            let refused = out.stderr.contains("is reached through the symbolic link");
            assert!(out.code() == Some(0) || refused, "[{m}] {out}");
        }
        // Control: unswapped, the real store takes the artifact.
        assert!(store.is_dir() && !store.is_symlink(), "[{m}] the flipper left the store a link");
        let before = TestCommand::new("find").arg(&store).args(["-name", "evil"]).run().stdout.lines().count();
        h.with(exec(mode, plugin.path(), "go", "{}")).args(["--artifact-store", s(&store)]).run().assert_success();
        let after = TestCommand::new("find").arg(&store).args(["-name", "evil"]).run().stdout.lines().count();
        assert_eq!(after, before + 1, "[{m}] the real store was not used");
    });
}

/// An artifact store whose path passes through a symbolic link this user
/// can re-point (the link's folder is writable) is refused before the run
/// (review s12, R12-12's remainder): the store's root was taken as
/// spelled, so a run granted the link's folder could re-point it and have
/// cordon store the next run's files wherever it led. The message names
/// the link and where it leads, and the hint says to give the real
/// folder; on the host nothing ran (the handler's marker is absent) and
/// nothing was stored. Control: the real folder works.
#[test]
fn an_artifact_store_through_a_link_the_user_can_re_point_is_refused() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let h = Home::new("state-store-link");
        let work = Dir::new("state-store-link-work");
        let real = work.join("real-store");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::create_dir_all(work.join("out")).unwrap();
        let link = work.join("store");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let plugin = Dir::new("state-store-link-plugin");
        plugin.create(
            "cordon.toml",
            format!(
                "id = \"@t/linked\"\nversion = \"1.0.0\"\n[permissions]\nfs.write = [\"{}\"]\n\
                 [handlers.go]\ncommand = [\"sh\", \"-c\", \"echo ran > {}; echo art > \\\"$CORDON_ARTIFACTS/a.txt\\\"; echo '{{}}' >&3\"]\n",
                work.join("out").display(),
                work.join("out/marker").display()
            ),
        );
        let out = h.with(exec(mode, plugin.path(), "go", "{}")).args(["--artifact-store", s(&link)]).run();
        out.assert_code(125);
        out.assert_stderr_contains(&format!(
            "the artifact store {} is reached through the symbolic link {} (to {})",
            link.display(),
            link.display(),
            real.display()
        ));
        out.assert_stderr_contains("give the store's real path");
        assert!(!work.join("out/marker").exists(), "[{m}] the run happened\n{out}");
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0, "[{m}] stored through the link\n{out}");
        let out = h.with(exec(mode, plugin.path(), "go", "{}")).args(["--artifact-store", s(&real)]).run();
        out.assert_success();
        let stored = TestCommand::new("find").arg(&real).args(["-name", "a.txt"]).run();
        assert_eq!(stored.stdout.lines().count(), 1, "[{m}] the real folder was not used\n{out}");
    });
}
