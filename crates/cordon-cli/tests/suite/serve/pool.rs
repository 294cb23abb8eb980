//! The warm pool (`[server] pool_size`), checked from the host: the parked
//! sandboxes are the service's child processes waiting in `read(2)` (at
//! their go pipe); which one ran an execution shows in the namespace
//! inodes the handler reports against those the host read from
//! `/proc/PID/ns` while it was parked, and in `/metrics`' hit counter.

use std::path::Path;
use std::time::Duration;

use cordon_testkit::poll_until;
use serde_json::json;

use super::{Options, Service};
use crate::suite::cordon;

const POOLED: &str = "@test/pool";

/// The name the service's sandbox spawner shows in `/proc/PID/comm`.
const SPAWNER: &str = "cordon-spawner";

/// Installs version `version` of [`POOLED`] into the service's registry.
/// Its `probe` handler reports whether `/tmp/left-behind` existed, then
/// writes it (and whether that worked: the control), its version, and its
/// pid and mount namespaces; its `slow` handler sleeps for a second.
fn install(s: &Service, version: &str) {
    let folder = s.dir.join(format!("pool-src-{version}"));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("cordon.toml"),
        format!(
            "id = \"{POOLED}\"\nversion = \"{version}\"\n[handlers.probe]\ncommand = [\"./probe.sh\"]\n\
             [handlers.slow]\ncommand = [\"sh\", \"-c\", \"sleep 1; echo {{}} >&3\"]\n"
        ),
    )
    .unwrap();
    let probe = folder.join("probe.sh");
    std::fs::write(
        &probe,
        format!(
            "#!/bin/sh\nseen=absent; [ -e /tmp/left-behind ] && seen=present\necho x > /tmp/left-behind\n\
             wrote=no; [ -e /tmp/left-behind ] && wrote=yes\n\
             printf '{{\"version\":\"{version}\",\"seen\":\"%s\",\"wrote\":\"%s\",\"pidns\":\"%s\",\"mntns\":\"%s\"}}' \
             \"$seen\" \"$wrote\" \"$(readlink /proc/self/ns/pid)\" \"$(readlink /proc/self/ns/mnt)\" >&3\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    install_folder(s, &folder, &format!("pool-{version}"));
}

/// Packs the plugin folder `folder` as `NAME.tar.gz` and installs it into
/// the service's registry.
fn install_folder(s: &Service, folder: &Path, name: &str) {
    let package = s.dir.join(format!("{name}.tar.gz"));
    cordon().args(["plugin", "pack"]).arg(folder).arg("--out").arg(&package).run().assert_success();
    cordon()
        .env("CORDON_HOME", s.dir.join("home"))
        .args(["plugin", "install"])
        .arg(&package)
        .args(["--allow-unsigned", "--approve"])
        .run()
        .assert_success();
}

fn start(label: &str, server: &str) -> Service {
    Service::start_with(label, Options { registry: true, server: server.into(), ..Options::default() })
}

/// Runs the probe; its result's `id` and `data`.
fn probe(s: &Service, at: &str) -> (String, serde_json::Value) {
    let r = s.post_json("/v1/executions", at, &json!({"plugin": POOLED, "handler": "probe", "input": {}}));
    assert_eq!(r.status, 200, "{r:?}\n{}", s.log());
    let v = r.json();
    assert_eq!(v["ok"], true, "{v}");
    (v["id"].as_str().unwrap().to_owned(), v["data"].clone())
}

/// A counter or gauge of `/metrics`.
fn metric(s: &Service, name: &str) -> u64 {
    let text = super::http(s.addr, "GET", "/metrics", &[], b"").body;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Every child process of `pid`.
pub(super) fn children_of(pid: u32) -> Vec<u32> {
    let me = pid.to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
                // "pid (comm) state ppid ...": comm may hold spaces.
                st.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned))
                    == Some(me.clone())
            })
        })
        .collect()
}

/// Whether `pid` is a sandbox spawner: of that name (a sandbox's init,
/// forked from it, has it too) and in the host's pid namespace (an init is
/// in its sandbox's own).
fn is_spawner(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == SPAWNER)
        && std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok() == std::fs::read_link("/proc/self/ns/pid").ok()
}

/// The service's child processes but its spawner (sandbox inits: parked,
/// or running an execution).
fn children(s: &Service) -> Vec<u32> {
    sandboxes_of(s.pid())
}

/// The child processes of `pid` (a service or a worker) but its sandbox
/// spawner: sandbox inits.
pub(super) fn sandboxes_of(pid: u32) -> Vec<u32> {
    children_of(pid).into_iter().filter(|p| !is_spawner(*p)).collect()
}

/// The service's sandbox spawner: its one child of that name.
fn spawner(s: &Service) -> u32 {
    spawner_of(s.pid(), &s.log())
}

/// The sandbox spawner of process `pid`: its one child of that name
/// (`log`: the process's log, for the failure message).
pub(super) fn spawner_of(pid: u32, log: &str) -> u32 {
    let found: Vec<u32> = children_of(pid).into_iter().filter(|p| is_spawner(*p)).collect();
    assert_eq!(found.len(), 1, "not one {SPAWNER} child of {pid}: {found:?}\n{log}");
    found[0]
}

/// A field of `/proc/PID/status` in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix(" kB")?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{status}"))
}

/// Whether `pid` is blocked in `read(2)`: a parked init at its go pipe.
fn waits_at_go(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(|s| s.split(' ').next() == Some("0"))
}

/// The one parked sandbox of an idle service, once there is one.
fn parked_one(s: &Service) -> u32 {
    let mut found = vec![];
    let ok = poll_until(Duration::from_secs(30), || {
        found = children(s).into_iter().filter(|p| waits_at_go(*p)).collect();
        found.len() == 1
    });
    assert!(ok, "not exactly one parked sandbox: {found:?} (children {:?})\n{}", children(s), s.log());
    found[0]
}

fn ns(pid: u32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap().to_string_lossy().into_owned()
}

fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Each execution gets a sandbox of its own: the first (no sandbox parked
/// yet: a miss) runs fresh; the next ones run in the sandbox the pool
/// parked meanwhile (the hit counter rises, and the handler reports the
/// namespaces the host saw for that parked pid), which is gone after, and
/// the next is another process; a file one execution leaves in /tmp is
/// absent in the next (control: each sees its own write). Then a burst
/// from several clients: none sees another's file, one record per
/// execution, every execution a hit or a miss. (Namespace inode numbers
/// are reused once a namespace is freed: they identify a sandbox only
/// while it lives, so they are compared with the parked one's.)
#[test]
fn pooled_executions_never_share_a_sandbox_and_each_has_one_record() {
    let s = start("serve-pool-share", "workers = 1\npool_size = 1\n");
    install(&s, "1.0.0");
    let at = s.access_token();
    let (_, first) = probe(&s, &at);
    assert_eq!((metric(&s, "cordon_pool_hits_total"), metric(&s, "cordon_pool_misses_total")), (0, 1));
    assert_eq!((first["seen"].as_str(), first["wrote"].as_str()), (Some("absent"), Some("yes")), "{first}");
    let mut used = vec![];
    for round in 1..=2 {
        let parked = parked_one(&s);
        assert!(!used.contains(&parked), "sandbox {parked} was parked again after it ran");
        let (pid_ns, mnt_ns) = (ns(parked, "pid"), ns(parked, "mnt"));
        let (_, data) = probe(&s, &at);
        assert_eq!(metric(&s, "cordon_pool_hits_total"), round, "the parked sandbox was not used");
        assert_eq!((data["pidns"].as_str(), data["mntns"].as_str()), (Some(&*pid_ns), Some(&*mnt_ns)), "{data}");
        assert_eq!((data["seen"].as_str(), data["wrote"].as_str()), (Some("absent"), Some("yes")), "{data}");
        assert!(poll_until(Duration::from_secs(10), || !exists(parked)), "the used sandbox {parked} lives on");
        used.push(parked);
    }
    // A burst: 3 clients × 4 executions.
    let addr = s.addr;
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let at = at.clone();
            std::thread::spawn(move || {
                (0..4)
                    .map(|_| {
                        let body = json!({"plugin": POOLED, "handler": "probe", "input": {}}).to_string();
                        let auth = format!("Bearer {at}");
                        let r = super::http(
                            addr,
                            "POST",
                            "/v1/executions",
                            &[("Authorization", &auth), ("Content-Type", "application/json")],
                            body.as_bytes(),
                        );
                        assert_eq!(r.status, 200, "{r:?}");
                        r.json()["data"]["seen"].as_str().unwrap().to_owned()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let burst: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(burst.iter().all(|seen| seen == "absent"), "an execution saw another's /tmp file: {burst:?}");
    let executions = 3 + burst.len() as u64;
    let (hits, misses) = (metric(&s, "cordon_pool_hits_total"), metric(&s, "cordon_pool_misses_total"));
    assert_eq!(hits + misses, executions);
    let records = s.audit_records();
    assert_eq!(records.len() as u64, executions, "{records:#?}");
    assert!(records.iter().all(|r| r["outcome"] == "ok" && r["plugin"] == POOLED), "{records:#?}");
}

/// An execution that finds none parked while the refill of its key is
/// under way waits for that refill instead of building a sandbox of its
/// own: of two executions at once, one takes the parked sandbox and the
/// other the refilled one (two hits, no miss), each in a sandbox of its own.
/// Control: the first execution of a key (nothing being refilled) builds a
/// fresh sandbox and counts a miss.
#[test]
fn an_execution_that_finds_none_parked_waits_for_the_refill_under_way() {
    let s = start("serve-pool-wait", "workers = 2\npool_size = 1\n");
    install(&s, "1.0.0");
    let at = s.access_token();
    probe(&s, &at);
    assert_eq!((metric(&s, "cordon_pool_hits_total"), metric(&s, "cordon_pool_misses_total")), (0, 1));
    for round in 1..=3 {
        parked_one(&s);
        let pair: Vec<serde_json::Value> = std::thread::scope(|sc| {
            let runs: Vec<_> = (0..2).map(|_| sc.spawn(|| probe(&s, &at).1)).collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        for data in &pair {
            // Another execution's /tmp file would show: no sandbox ran twice.
            assert_eq!((data["seen"].as_str(), data["wrote"].as_str()), (Some("absent"), Some("yes")), "{data}");
        }
        let counts = (metric(&s, "cordon_pool_hits_total"), metric(&s, "cordon_pool_misses_total"));
        assert_eq!(counts, (2 * round, 1), "round {round}: (hits, misses)\n{}", s.log());
    }
    let records = s.audit_records();
    assert_eq!(records.len(), 7, "{records:#?}");
    assert!(records.iter().all(|r| r["outcome"] == "ok"), "{records:#?}");
}

/// The refill of a key begins once the command of the execution that took
/// its parked sandbox has been exec'd, not at the take (where it would
/// compete with that start): watched from the host every 0.1 ms while a
/// slow execution (1 s) runs in the sandbox it took, the refill's run
/// folder appears only after that sandbox's command has been exec'd (its
/// process no longer the spawner's image), and while the execution still
/// runs (it is not held until the answer). Control: the refilled sandbox
/// is parked and is another one.
#[test]
fn the_refill_of_a_key_begins_once_the_command_of_the_execution_that_took_its_sandbox_is_execd() {
    let s = start("serve-pool-defer", "workers = 2\npool_size = 1\n");
    install(&s, "1.0.0");
    let at = s.access_token();
    let slow = || s.post_json("/v1/executions", &at, &json!({"plugin": POOLED, "handler": "slow", "input": {}}));
    // The key is the handler's: its first execution builds fresh, and the
    // pool parks the next.
    assert_eq!(slow().status, 200);
    let parked = parked_one(&s);
    let run_folders = || -> Vec<String> {
        std::fs::read_dir(super::runs_folder(s.dir.path()))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("cordon-exec-pool-"))
            .collect()
    };
    let before = run_folders();
    let execd = || {
        let cmd = children_of(parked);
        !cmd.is_empty()
            && cmd.iter().all(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() != SPAWNER))
    };
    std::thread::scope(|t| {
        let slow = t.spawn(slow);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut execd_seen = false;
        let refill = loop {
            // The refill first, then the command: a refill seen here began
            // after an exec that the look right after must see (the
            // command lives for a second).
            let refill: Vec<String> = run_folders().into_iter().filter(|n| !before.contains(n)).collect();
            execd_seen |= execd();
            if !refill.is_empty() {
                break refill;
            }
            assert!(std::time::Instant::now() < deadline, "no refill while the slow execution ran\n{}", s.log());
            std::thread::sleep(Duration::from_micros(100));
        };
        assert!(execd_seen, "the refill {refill:?} began before the command of the execution in {parked} was exec'd");
        assert!(!children_of(parked).is_empty(), "the refill waited for the end of the execution in {parked}");
        let r = slow.join().unwrap();
        assert_eq!((r.status, r.json()["ok"].as_bool()), (200, Some(true)), "{r:?}");
    });
    assert_eq!((metric(&s, "cordon_pool_hits_total"), metric(&s, "cordon_pool_misses_total")), (1, 1));
    let next = parked_one(&s);
    assert_ne!(next, parked, "the used sandbox was parked again");
}

/// Sets the immutable attribute of `path` (`chattr +i`: even root's writes
/// through descriptors already open fail with EPERM) until dropped.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: std::path::PathBuf) -> Immutable {
        let out = std::process::Command::new("chattr").arg("+i").arg(&path).output().expect("chattr (e2fsprogs)");
        assert!(out.status.success(), "chattr +i {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        Immutable(path)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// An execution's command starts only once its begin is durable, though
/// its sandbox is set up (or taken from the pool) while the begin is
/// committed: with the service's run journal immutable (its begin line
/// cannot be written), an execution is refused (500), its command never
/// runs (the file it appends to on the host keeps the lines of the runs
/// before, once no sandbox of the execution is left) and it has no record;
/// a sandbox set up or taken for it is killed. Control: the same execution runs
/// and is recorded before, and again once the journal is writable. Fresh
/// (no pool) and from the pool (a parked sandbox was there to take).
#[test]
fn an_execution_whose_begin_is_not_durable_never_starts_its_command_and_has_no_record() {
    for (label, server) in
        [("serve-begin-fresh", "workers = 2\n"), ("serve-begin-pooled", "workers = 2\npool_size = 1\n")]
    {
        let s = start(label, server);
        let marks = s.dir.join("marks");
        std::fs::create_dir_all(&marks).unwrap();
        let folder = s.dir.join("mark-src");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("cordon.toml"),
            format!(
                "id = \"@test/mark\"\nversion = \"1.0.0\"\n[permissions]\nfs.write = [\"{}\"]\n\
                 [handlers.mark]\ncommand = [\"sh\", \"-c\", \"echo ran >> {}/ran; echo {{}} >&3\"]\n",
                marks.display(),
                marks.display()
            ),
        )
        .unwrap();
        install_folder(&s, &folder, "mark");
        let at = s.access_token();
        let mark =
            || s.post_json("/v1/executions", &at, &json!({"plugin": "@test/mark", "handler": "mark", "input": {}}));
        let ran = || std::fs::read_to_string(marks.join("ran")).unwrap_or_default().lines().count();
        for n in 1..=2 {
            let r = mark();
            assert_eq!((r.status, r.json()["ok"].as_bool()), (200, Some(true)), "{label}: {r:?}\n{}", s.log());
            assert_eq!(ran(), n, "{label}: control run {n}");
        }
        // Pooled: the sandbox parked for it is there to take.
        let parked_before = match server.contains("pool_size") {
            true => vec![parked_one(&s)],
            false => vec![],
        };
        let journal = s.dir.join("audit.jsonl.inflight");
        let held = Immutable::set(journal);
        let r = mark();
        assert_eq!(r.status, 500, "{label}: {r:?}");
        // Whatever was set up for it is gone: no process is left that could
        // still run its command. Every child of the service waits at its go
        // pipe, no more than were parked before (the parked one, if the
        // refused execution took it, was killed and one refilled; if its
        // begin failed before a worker took it, it is still there).
        assert!(
            poll_until(Duration::from_secs(10), || {
                let left = children(&s);
                left.len() <= parked_before.len() && left.iter().all(|p| waits_at_go(*p))
            }),
            "{label}: the refused execution's sandbox lives on: {:?} (parked before {parked_before:?})",
            children(&s)
        );
        assert_eq!(ran(), 2, "{label}: the refused execution's command ran");
        let log = s.log_with(&["cannot record the execution's start"]);
        assert!(log.contains("cannot record the execution's start"), "{label}: {log}");
        drop(held);
        let r = mark();
        assert_eq!((r.status, r.json()["ok"].as_bool()), (200, Some(true)), "{label}: {r:?}\n{}", s.log());
        assert_eq!(ran(), 3, "{label}: the run after");
        let records = s.audit_records();
        assert_eq!(records.len(), 3, "{label}: {records:#?}");
        assert!(records.iter().all(|r| r["outcome"] == "ok"), "{label}: {records:#?}");
    }
}

/// The installed `cordon.toml` of `id` in the service's registry.
fn installed_manifest(s: &Service, id: &str) -> std::path::PathBuf {
    fn walk(dir: &Path, id: &str, found: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, id, found);
            } else if p.file_name().is_some_and(|n| n == "cordon.toml")
                && std::fs::read_to_string(&p).is_ok_and(|t| t.contains(&format!("id = \"{id}\"")))
            {
                found.push(p);
            }
        }
    }
    let mut found = vec![];
    walk(&s.dir.join("home"), id, &mut found);
    assert_eq!(found.len(), 1, "not one installed manifest of {id}: {found:?}");
    found.remove(0)
}

/// The plan the service keeps per installed plugin version and handler
/// (manifest parsed, effective policy, command: `cordon_gateway::plans`,
/// used for fresh and pooled sandboxes alike) never outlives what the
/// catalog verifies for each execution. Version 1.0.0's handler appends a
/// line to a host file in the folder its manifest grants; it runs twice
/// (its plan made, then used). Its installed manifest is then changed in
/// the store to grant and write a second folder: the next execution is
/// refused (409 plugin_invalid) and neither folder gets a line; restored,
/// it runs again. Version 1.0.1 is installed, whose manifest grants and
/// writes only the second folder: its execution writes there and not to
/// the first (a plan kept from 1.0.0 would run 1.0.0's command under its
/// policy: a line in the first folder). Disabled: refused at once (409
/// plugin_disabled), no line anywhere. Fresh sandboxes and pooled ones.
#[test]
fn a_kept_plan_never_runs_a_changed_reinstalled_or_disabled_plugin() {
    for (label, server) in
        [("serve-plan-fresh", "workers = 1\n"), ("serve-plan-pooled", "workers = 1\npool_size = 1\n")]
    {
        let s = start(label, server);
        let (first, second) = (s.dir.join("first"), s.dir.join("second"));
        for d in [&first, &second] {
            std::fs::create_dir_all(d).unwrap();
        }
        let manifest = |version: &str, out: &Path| {
            format!(
                "id = \"@test/plan\"\nversion = \"{version}\"\n[permissions]\nfs.write = [\"{}\"]\n\
                 [handlers.mark]\ncommand = [\"sh\", \"-c\", \"echo {version} >> {}/ran; echo {{}} >&3\"]\n",
                out.display(),
                out.display()
            )
        };
        let folder = s.dir.join("plan-src");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("cordon.toml"), manifest("1.0.0", &first)).unwrap();
        install_folder(&s, &folder, "plan-1.0.0");
        let at = s.access_token();
        let mark =
            || s.post_json("/v1/executions", &at, &json!({"plugin": "@test/plan", "handler": "mark", "input": {}}));
        let lines = |d: &Path| std::fs::read_to_string(d.join("ran")).unwrap_or_default();
        for n in 1..=2 {
            let r = mark();
            assert_eq!((r.status, r.json()["ok"].as_bool()), (200, Some(true)), "{label}: {r:?}\n{}", s.log());
            assert_eq!(lines(&first), "1.0.0\n".repeat(n), "{label}: control run {n}");
        }
        // Changed in the store: refused, nothing runs.
        let installed = installed_manifest(&s, "@test/plan");
        let original = std::fs::read(&installed).unwrap();
        let widened = format!(
            "{}[handlers.wide]\ncommand = [\"sh\", \"-c\", \"echo wide >> {}/ran; echo {{}} >&3\"]\n",
            manifest("1.0.0", &first).replace(
                &format!("fs.write = [\"{}\"]", first.display()),
                &format!("fs.write = [\"{}\", \"{}\"]", first.display(), second.display())
            ),
            second.display()
        );
        std::fs::write(&installed, &widened).unwrap();
        for handler in ["mark", "wide"] {
            let r =
                s.post_json("/v1/executions", &at, &json!({"plugin": "@test/plan", "handler": handler, "input": {}}));
            assert_eq!((r.status, r.error().0.as_str()), (409, "plugin_invalid"), "{label}: {handler}: {r:?}");
        }
        assert_eq!(
            (lines(&first), lines(&second)),
            ("1.0.0\n".repeat(2), String::new()),
            "{label}: a changed plugin ran"
        );
        std::fs::write(&installed, &original).unwrap();
        let r = mark();
        assert_eq!((r.status, r.json()["ok"].as_bool()), (200, Some(true)), "{label}: restored: {r:?}\n{}", s.log());
        assert_eq!(lines(&first), "1.0.0\n".repeat(3), "{label}: restored");
        // Re-installed: the new version's command under its own policy.
        std::fs::write(folder.join("cordon.toml"), manifest("1.0.1", &second)).unwrap();
        install_folder(&s, &folder, "plan-1.0.1");
        let r = mark();
        assert_eq!((r.status, r.json()["ok"].as_bool()), (200, Some(true)), "{label}: 1.0.1: {r:?}\n{}", s.log());
        assert_eq!(
            (lines(&first), lines(&second)),
            ("1.0.0\n".repeat(3), "1.0.1\n".to_owned()),
            "{label}: the re-installed version ran another plan"
        );
        // Disabled: refused at once.
        cordon()
            .env("CORDON_HOME", s.dir.join("home"))
            .args(["plugin", "disable", "@test/plan"])
            .run()
            .assert_success();
        let r = mark();
        assert_eq!((r.status, r.error().0.as_str()), (409, "plugin_disabled"), "{label}: {r:?}");
        assert_eq!(
            (lines(&first), lines(&second)),
            ("1.0.0\n".repeat(3), "1.0.1\n".to_owned()),
            "{label}: the disabled plugin ran"
        );
        assert_eq!(s.audit_records().len(), 4, "{label}");
    }
}

/// A re-installed plugin never runs in a sandbox parked for its old
/// version, and a disabled one not at all: control first (the old
/// version's parked sandbox does run the next execution), then the new
/// version is installed: the sandbox parked for the old one is killed and
/// reaped, and the next execution runs the new version elsewhere. Disabled,
/// the new version's parked sandbox goes too.
#[test]
fn a_reinstalled_or_disabled_plugin_never_runs_in_a_sandbox_parked_for_the_old_version() {
    let s = start("serve-pool-reinstall", "workers = 1\npool_size = 1\n");
    install(&s, "1.0.0");
    let at = s.access_token();
    probe(&s, &at);
    // Control: the pool serves this version.
    let parked = parked_one(&s);
    let parked_ns = ns(parked, "pid");
    let (_, data) = probe(&s, &at);
    assert_eq!(metric(&s, "cordon_pool_hits_total"), 1);
    assert_eq!((data["version"].as_str(), data["pidns"].as_str()), (Some("1.0.0"), Some(&*parked_ns)));
    let old = parked_one(&s);
    let old_ns = ns(old, "pid");
    install(&s, "1.0.1");
    assert!(poll_until(Duration::from_secs(10), || !exists(old)), "the old version's sandbox {old} lives on");
    let (_, data) = probe(&s, &at);
    assert_eq!(data["version"], "1.0.1", "{data}");
    assert_ne!(data["pidns"].as_str(), Some(&*old_ns));
    assert_eq!(metric(&s, "cordon_pool_hits_total"), 1, "an execution of the new version used an old sandbox");
    let new = parked_one(&s);
    cordon().env("CORDON_HOME", s.dir.join("home")).args(["plugin", "disable", POOLED]).run().assert_success();
    assert!(poll_until(Duration::from_secs(10), || !exists(new)), "the disabled plugin's sandbox {new} lives on");
    let r = s.post_json("/v1/executions", &at, &json!({"plugin": POOLED, "handler": "probe", "input": {}}));
    assert_eq!((r.status, r.error().0.as_str()), (409, "plugin_disabled"), "{r:?}");
    assert_eq!(s.audit_records().len(), 3);
}

/// No parked sandbox survives the service's SIGKILL (control: it is there
/// before the kill).
#[test]
fn no_parked_sandbox_survives_a_sigkill_of_the_service() {
    let mut s = start("serve-pool-sigkill", "workers = 1\npool_size = 1\n");
    install(&s, "1.0.0");
    let at = s.access_token();
    probe(&s, &at);
    let parked = parked_one(&s);
    assert!(exists(parked));
    s.kill();
    assert!(poll_until(Duration::from_secs(10), || !exists(parked)), "parked sandbox {parked} survived SIGKILL");
}

/// A parked sandbox unused for `pool_ttl_ms` is killed and reaped, and a
/// handler unused that long is not parked again (control: it was parked).
#[test]
fn a_parked_sandbox_past_its_ttl_is_reaped_and_not_replaced() {
    let s = start("serve-pool-ttl", "workers = 1\npool_size = 1\npool_ttl_ms = 300\n");
    install(&s, "1.0.0");
    let at = s.access_token();
    probe(&s, &at);
    let parked = parked_one(&s);
    assert!(poll_until(Duration::from_secs(10), || !exists(parked)), "parked sandbox {parked} outlived its TTL");
    assert!(
        poll_until(Duration::from_secs(10), || metric(&s, "cordon_pool_parked") == 0),
        "the pool still counts a parked sandbox"
    );
    assert_eq!(children(&s), Vec::<u32>::new(), "a sandbox was parked again for an unused handler");
}

/// An execution is answered once its result is known, and its sandbox's
/// teardown (init's exit, cgroups, run folder) ends on the worker after
/// that; no sandbox outlives it: after executions run fresh (no pool) and
/// pooled, the service's only children are, soon, the parked sandboxes
/// (a teardown left undone would leave init behind, a zombie at least).
/// Control: while an execution runs, its sandbox is the service's child.
#[test]
fn no_sandbox_outlives_its_answered_execution() {
    for (label, server, parked) in
        [("serve-pool-after-fresh", "workers = 2\n", 0), ("serve-pool-after-pooled", "workers = 2\npool_size = 1\n", 1)]
    {
        let s = start(label, server);
        install(&s, "1.0.0");
        let at = s.access_token();
        for _ in 0..4 {
            probe(&s, &at);
        }
        let settled = || children(&s).into_iter().filter(|p| !waits_at_go(*p)).count() == 0;
        assert!(
            poll_until(Duration::from_secs(10), settled),
            "{label}: sandboxes left: {:?}\n{}",
            children(&s),
            s.log()
        );
        assert!(
            poll_until(Duration::from_secs(10), || children(&s).len() == parked),
            "{label}: not {parked} parked: {:?}",
            children(&s)
        );

        // Control: the running execution's sandbox is seen.
        std::thread::scope(|t| {
            let slow = t.spawn(|| {
                s.post_json("/v1/executions", &at, &json!({"plugin": POOLED, "handler": "slow", "input": {}}))
            });
            assert!(
                poll_until(Duration::from_secs(10), || children(&s).iter().any(|p| !waits_at_go(*p))),
                "{label}: the running execution's sandbox was not seen"
            );
            let r = slow.join().unwrap();
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.json()["ok"], true, "{:?}", r.json());
        });
        assert!(poll_until(Duration::from_secs(10), settled), "{label}: sandboxes left: {:?}", children(&s));
    }
}

/// Sandboxes are cloned by the service's spawner, not by the service: a
/// parked init is the *service's* child, is not the spawner's, and its
/// address space is the small spawner's, far below the service's (cloned
/// from the service, it had all of the service's mappings: control, the
/// service's own figure with its threads' stacks and heaps). The sandbox still works (a pooled and a fresh execution), and a
/// SIGKILL of the service leaves neither the spawner nor a sandbox.
#[test]
fn sandboxes_are_cloned_by_the_small_spawner_and_stay_the_services_children() {
    let mut s = start("serve-spawner-clone", "workers = 1\npool_size = 1\n");
    install(&s, "1.0.0");
    let at = s.access_token();
    let spawner = spawner(&s);
    assert!(children_of(spawner).is_empty(), "the spawner has children: {:?}", children_of(spawner));
    probe(&s, &at); // a fresh run (miss), then one is parked
    let parked = parked_one(&s);
    assert!(children_of(s.pid()).contains(&parked), "the parked init is not the service's child");
    assert!(!children_of(spawner).contains(&parked), "the parked init is the spawner's child");
    // The address space: the service's holds its threads' stacks (and, with
    // glibc, its allocator's arenas), the spawner's (a fresh single-threaded
    // program) none: with musl 25.9 MB against 14.2 MB, with glibc more
    // than twice as much.
    let (init, service, spawned) =
        (status_kb(parked, "VmSize"), status_kb(s.pid(), "VmSize"), status_kb(spawner, "VmSize"));
    assert!(
        service >= spawned + 8192 && init <= spawned + 1024,
        "a parked init's address space ({init} kB) is not the spawner's ({spawned} kB) but like the service's ({service} kB)"
    );
    // The pooled sandbox runs an execution (a hit), then the next is parked.
    probe(&s, &at);
    assert_eq!(metric(&s, "cordon_pool_hits_total"), 1);
    // An execution is answered before its sandbox's teardown: wait for it.
    assert!(
        poll_until(Duration::from_secs(10), || !exists(parked) || !children(&s).contains(&parked)),
        "the used sandbox is still there"
    );
    let next = parked_one(&s);
    s.kill();
    assert!(
        poll_until(Duration::from_secs(10), || !exists(spawner) && !exists(next)),
        "processes survived SIGKILL of the service: spawner {spawner} {}, parked init {next} {}",
        exists(spawner),
        exists(next)
    );
}

/// Whether the memory of `pid` holds `needle` anywhere it can be read
/// (`/proc/PID/maps` and `/proc/PID/mem`, as root on the host).
fn memory_holds(pid: u32, needle: &[u8]) -> bool {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    maps.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { return false };
        let Some((lo, hi)) = range.split_once('-') else { return false };
        let (lo, hi) = (u64::from_str_radix(lo, 16).unwrap(), u64::from_str_radix(hi, 16).unwrap());
        let mut region = vec![0u8; usize::try_from(hi - lo).unwrap()];
        // [vvar] and friends cannot be read: they hold no copy of anything.
        perms.starts_with('r')
            && mem.read_exact_at(&mut region, lo).is_ok()
            && region.windows(needle.len()).any(|w| w == needle)
    })
}

/// The spawner is the service's program started afresh, not a copy of
/// the service: its arguments are its own two, its environment is empty,
/// it has only fds 0-2 and its channel, and neither its memory nor a
/// parked sandbox's holds the service's secrets (given to the service in
/// its environment, `CORDON_JWT_SECRET` and `CORDON_INTERNAL_SECRET`).
/// Control: the service's own memory and environment hold both.
#[test]
fn the_spawner_and_its_sandboxes_hold_nothing_of_the_services_secrets_or_environment() {
    let s = start("serve-spawner-empty", "workers = 1\npool_size = 1\n");
    install(&s, "1.0.0");
    let at = s.access_token();
    probe(&s, &at);
    let (spawner, parked) = (spawner(&s), parked_one(&s));
    let secrets = [s.opts.jwt_secret.as_bytes(), s.opts.internal_secret.as_bytes()];
    let environ = |pid: u32| std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    for secret in secrets {
        assert!(memory_holds(s.pid(), secret), "control: the service's memory does not hold its secret");
        assert!(environ(s.pid()).windows(secret.len()).any(|w| w == secret), "control: not in its environment");
        assert!(!memory_holds(spawner, secret), "the spawner's memory holds a secret of the service");
        assert!(!memory_holds(parked, secret), "a parked sandbox's memory holds a secret of the service");
    }
    assert_eq!(environ(spawner), b"", "the spawner has an environment");
    let cmdline = std::fs::read(format!("/proc/{spawner}/cmdline")).unwrap();
    assert_eq!(cmdline, b"cordon-spawner\0--cordon-sandbox-spawner\0");
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{spawner}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    fds.sort_unstable();
    assert_eq!(fds, [0, 1, 2, 3], "the spawner's descriptors");
    let channel = std::fs::read_link(format!("/proc/{spawner}/fd/3")).unwrap();
    assert!(channel.to_string_lossy().starts_with("socket:"), "fd 3 of the spawner: {channel:?}");
}

/// A spawner killed from outside fails closed: executions are refused
/// with 503 naming it (control: the same execution ran just before), and
/// `/readyz` says not ready with the reason; the dead spawner is reaped
/// (no zombie is left); no sandbox is cloned by the service itself instead.
#[test]
fn a_killed_spawner_refuses_executions_with_the_reason_and_readiness_turns_false() {
    let s = start("serve-spawner-gone", "workers = 1\n");
    install(&s, "1.0.0");
    let at = s.access_token();
    probe(&s, &at);
    let ready = super::http(s.addr, "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 200, "{ready:?}");
    // The probe was answered before its sandbox's teardown: wait for it,
    // so that any sandbox seen at the end is a new one.
    assert!(poll_until(Duration::from_secs(10), || children(&s).is_empty()), "{:?}", children(&s));
    let spawner = spawner(&s);
    let killed = std::process::Command::new("kill").args(["-KILL", &spawner.to_string()]).status().unwrap();
    assert!(killed.success());
    assert!(
        poll_until(Duration::from_secs(10), || super::http(s.addr, "GET", "/readyz", &[], b"").status == 503),
        "/readyz still ready after the spawner was killed"
    );
    let ready = super::http(s.addr, "GET", "/readyz", &[], b"");
    let body = ready.json();
    assert_eq!(body["status"], "not_ready", "{body}");
    let reason = body["pool"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&format!("sandbox spawner of this service (pid {spawner}) is gone")), "{body}");
    // Seen gone, it was reaped: not left a zombie of the service.
    let zombie = children_of(s.pid()).contains(&spawner);
    assert!(
        !zombie,
        "the dead spawner {spawner} was not reaped: {:?}",
        std::fs::read_to_string(format!("/proc/{spawner}/stat"))
    );
    let r = s.post_json("/v1/executions", &at, &json!({"plugin": POOLED, "handler": "probe", "input": {}}));
    assert_eq!(r.status, 503, "{r:?}");
    let e = r.json();
    assert_eq!(e["error"]["code"], "sandboxes_unavailable", "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("restart the service") && message.contains(&spawner.to_string()), "{e}");
    let cloned: Vec<(u32, String)> = children(&s)
        .into_iter()
        .map(|p| (p, std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default()))
        .collect();
    assert!(cloned.is_empty(), "a sandbox was cloned without the spawner (spawner {spawner}): {cloned:?}");
}
