//! `cordon serve --queue` with `cordon worker`s and `cordon dead-letters`
//! on a NATS JetStream server each test starts itself (Debian's
//! `nats-server`, on 127.0.0.1 with a port it picks, its store in the
//! test's folder): results by request id, idempotent submits, a worker
//! SIGKILLed mid-execution, a poison request while the dead-letter handler
//! is down, and per-tenant admission. Each checks every request's result
//! and the audit logs of every role against each other.
//!
//! Workers stand for hosts: each has its own folder, audit log and run
//! root; they share the test's plugin folder ("the same package installed
//! on every host").

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cordon_testkit::{poll_until, processes_mentioning, Dir};
use serde_json::json;

use super::{http, Options, Resp, Service, INTERNAL_SECRET, PLUGIN};
use crate::suite::cordon_bin;
use crate::suite::netns::in_netns;

/// Debian's nats-server (`.ci/run` installs it).
pub(super) fn nats_server_bin() -> &'static str {
    const PATH: &str = "/usr/sbin/nats-server";
    assert!(
        Path::new(PATH).exists(),
        "{PATH} is missing on this test machine; `.ci/run` installs the Debian package nats-server (tools are never a reason to skip)"
    );
    PATH
}

/// Collects a child's stderr lines; sends the first line containing
/// `needle` (after it) on the returned channel.
pub(super) fn collect(
    child: &mut Child,
    needle: &'static str,
) -> (Arc<Mutex<String>>, std::sync::mpsc::Receiver<String>) {
    let stderr = child.stderr.take().expect("stderr pipe");
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split(needle).nth(1) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
            sink.lock().expect("log lock").push_str(&format!("{line}\n"));
        }
    });
    (log, rx)
}

/// One nats-server with JetStream, killed (SIGKILL, by pid) when dropped.
pub struct Nats {
    dir: Dir,
    child: Option<Child>,
    pub port: u16,
    /// The HTTP monitoring port (`/jsz`).
    monitor: u16,
    log: Arc<Mutex<String>>,
}

impl Nats {
    pub fn start(label: &str) -> Nats {
        Nats::start_with(label, "")
    }

    /// [`Nats::start`] with `config` (nats-server configuration text, e.g.
    /// an `authorization` block) besides the flags.
    pub fn start_with(label: &str, config: &str) -> Nats {
        let dir = Dir::new(label);
        let conf = dir.create("nats.conf", config);
        let mut child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(conf)
            .args(["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-js", "-sd"])
            .arg(dir.join("store"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let (log, rx) = collect(&mut child, "Listening for client connections on 127.0.0.1:");
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(p) => p.parse().expect("port"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("nats-server did not start:\n{}", log.lock().expect("log lock"));
            }
        };
        // The monitor starts before the client listener.
        let monitor = log
            .lock()
            .expect("log lock")
            .split("Starting http monitor on 127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .expect("nats-server's monitoring port in its log");
        Nats { dir, child: Some(child), port, monitor, log }
    }

    /// Messages stored in stream `name` now (from `/jsz`).
    pub fn stream_messages(&self, name: &str) -> u64 {
        let addr = format!("127.0.0.1:{}", self.monitor).parse().expect("addr");
        let r = http(addr, "GET", "/jsz?streams=true", &[], b"");
        assert_eq!(r.status, 200, "{r:?}");
        // The body is chunked: the JSON is between the outer braces.
        let (start, end) = (r.body.find('{').expect("JSON"), r.body.rfind('}').expect("JSON"));
        let v: serde_json::Value = serde_json::from_str(&r.body[start..=end]).expect("jsz JSON");
        stream_in(&v, name)
            .map(|st| st["state"]["messages"].as_u64().unwrap_or(0))
            .unwrap_or_else(|| panic!("no stream {name}: {v:#}"))
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().expect("addr")
    }

    pub fn log(&self) -> String {
        format!("{} ({}):\n{}", self.url(), self.dir.path().display(), self.log.lock().expect("log lock"))
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Stream `name`'s report in a `/jsz?streams=true` answer.
pub(super) fn stream_in(jsz: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
        .find(|st| st["name"] == name)
}

/// A `cordon worker` (or `cordon dead-letters`) standing for one host:
/// its own folder, audit log and run root. SIGKILLed when dropped.
pub struct Role {
    pub dir: Dir,
    args: Vec<String>,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    /// Runs in the network namespace of this process (a test-made one).
    netns: Option<u32>,
}

impl Role {
    fn config(dir: &Dir, plugins: &Path) -> PathBuf {
        dir.create(
            "config.toml",
            format!(
                "[server]\nplugins = \"{}\"\ndisabled = [\"@test/off\"]\naudit_log = \"{}\"\nrun_root = \"{}\"\n",
                plugins.display(),
                dir.join("audit.jsonl").display(),
                dir.path().display()
            ),
        )
    }

    /// `cordon worker --name NAME --slots SLOTS` on `url`.
    pub fn worker(name: &str, url: &str, plugins: &Path, slots: u32) -> Role {
        Role::worker_in(None, name, url, plugins, slots)
    }

    /// [`Role::worker`] inside the network namespace of process `netns`.
    pub fn worker_in(netns: Option<u32>, name: &str, url: &str, plugins: &Path, slots: u32) -> Role {
        Role::worker_with(netns, name, url, plugins, slots, &[])
    }

    /// [`Role::worker_in`] with `extra` arguments.
    pub fn worker_with(
        netns: Option<u32>,
        name: &str,
        url: &str,
        plugins: &Path,
        slots: u32,
        extra: &[String],
    ) -> Role {
        let dir = Dir::new(&format!("queue-{name}"));
        let config = Role::config(&dir, plugins);
        let args = vec![
            "worker".into(),
            "--queue".into(),
            url.into(),
            "--config".into(),
            config.display().to_string(),
            "--name".into(),
            name.into(),
            "--slots".into(),
            slots.to_string(),
            "--result-key".into(),
            super::result_key(dir.path(), name, Some(&super::trusted_keys_of(plugins))).display().to_string(),
        ]
        .into_iter()
        .chain(extra.iter().cloned())
        .collect();
        let mut r = Role { dir, args, child: None, log: Arc::default(), netns };
        r.spawn("pulling");
        r
    }

    /// `cordon dead-letters` on `url`.
    pub fn dead_letters(url: &str, plugins: &Path) -> Role {
        Role::dead_letters_in(None, url, plugins)
    }

    /// [`Role::dead_letters`] inside the network namespace of process `netns`.
    pub fn dead_letters_in(netns: Option<u32>, url: &str, plugins: &Path) -> Role {
        Role::dead_letters_with(netns, url, plugins, &[])
    }

    /// [`Role::dead_letters_in`] with `extra` arguments.
    pub fn dead_letters_with(netns: Option<u32>, url: &str, plugins: &Path, extra: &[String]) -> Role {
        let dir = Dir::new("queue-dlq");
        let config = Role::config(&dir, plugins);
        let key = super::result_key(dir.path(), "dead-letters", Some(&super::trusted_keys_of(plugins)));
        let args = [
            "dead-letters".into(),
            "--queue".into(),
            url.into(),
            "--config".into(),
            config.display().to_string(),
            "--result-key".into(),
            key.display().to_string(),
        ]
        .into_iter()
        .chain(extra.iter().cloned())
        .collect();
        let mut r = Role { dir, args, child: None, log: Arc::default(), netns };
        r.spawn("watching");
        r
    }

    fn spawn(&mut self, ready: &'static str) {
        let mut cmd = match self.netns {
            Some(pid) => in_netns(pid, cordon_bin()),
            None => Command::new(cordon_bin()),
        };
        let mut child = cmd
            .args(&self.args)
            .env("HOME", self.dir.path())
            .env_remove("XDG_DATA_HOME")
            .env_remove("CORDON_AUDIT_LOG")
            .env_remove("CORDON_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cordon worker");
        let (log, rx) = collect(&mut child, ready);
        self.log = log;
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cordon {} did not start:\n{}", self.args[0], self.log());
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL (by pid) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again: same folder, name and audit log.
    pub fn restart(&mut self) {
        self.kill();
        let ready = if self.args[0] == "worker" { "pulling" } else { "watching" };
        self.spawn(ready);
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Its exit status once it has exited by itself, within `within`
    /// (`None`: still running then).
    pub fn exited_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut().expect("started");
        let mut status = None;
        poll_until(within, || {
            status = child.try_wait().expect("try_wait");
            if status.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            status.is_some()
        });
        if status.is_some() {
            self.child = None;
        }
        status
    }

    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        audit_records(&self.dir.join("audit.jsonl"))
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.kill();
    }
}

fn audit_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit record"))
        .collect()
}

/// A gateway on `nats` with a short AckWait (2 s), so redeliveries come
/// quickly.
fn gateway(label: &str, nats: &Nats, extra: &[&str]) -> Service {
    let mut extra_args = vec!["--queue".to_owned(), nats.url(), "--ack-wait-ms".into(), "2000".into()];
    extra_args.extend(extra.iter().map(|s| s.to_string()));
    Service::start_with(label, Options { extra_args, ..Options::default() })
}

/// `POST /internal/dispatch` for `tenant`, with an `Idempotency-Key`.
pub(super) fn submit(
    s: &Service,
    tenant: &str,
    key: Option<&str>,
    handler: &str,
    input: serde_json::Value,
    wait_ms: u64,
) -> Resp {
    let body = json!({"tenant": tenant, "plugin": PLUGIN, "handler": handler, "input": input, "wait_ms": wait_ms});
    let auth = format!("Bearer {INTERNAL_SECRET}");
    let mut headers = vec![("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    if let Some(k) = key {
        headers.push(("Idempotency-Key", k));
    }
    http(s.addr, "POST", "/internal/dispatch", &headers, body.to_string().as_bytes())
}

/// Polls `GET /v1/executions/{id}` (tenant acme) until done; the result.
#[track_caller]
pub(super) fn result_of(s: &Service, token: &str, id: &str, within: Duration) -> serde_json::Value {
    let mut last = None;
    let done = poll_until(within, || {
        let r = s.get(&format!("/v1/executions/{id}"), token);
        let done = r.status == 200 && r.json()["status"] == "done";
        last = Some(r);
        if !done {
            std::thread::sleep(Duration::from_millis(100));
        }
        done
    });
    assert!(done, "no result for {id} within {within:?}: {last:?}\ngateway log:\n{}", s.log());
    last.expect("polled").json()["result"].clone()
}

/// A sleep of about `secs` seconds whose argv is unique to this test process.
pub(super) fn sleep_marker(secs: u32) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{secs}.{:07}{:03}", std::process::id() % 10_000_000, n % 1000)
}

/// The pids whose parent chain reaches `ancestor`.
pub(super) fn descendants_of(ancestor: u32, among: &[u32]) -> Vec<u32> {
    let parent = |pid: u32| -> Option<u32> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|v| v.trim().parse().ok())
    };
    among
        .iter()
        .copied()
        .filter(|&pid| {
            let mut p = pid;
            for _ in 0..64 {
                match parent(p) {
                    Some(pp) if pp == ancestor => return true,
                    Some(pp) if pp > 1 => p = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// Every audit record of `id` across `logs`.
pub(super) fn records_of(logs: &[Vec<serde_json::Value>], id: &str) -> Vec<serde_json::Value> {
    logs.iter().flatten().filter(|r| r["request_id"] == id).cloned().collect()
}

/// The one record of a run that produced `result` (its worker and attempt,
/// not `LOST`), and every other record of `id` is a `LOST` one.
#[track_caller]
fn assert_audit_agrees(logs: &[Vec<serde_json::Value>], id: &str, result: &serde_json::Value) {
    let records = records_of(logs, id);
    let (lost, counted): (Vec<_>, Vec<_>) = records.iter().partition(|r| r["outcome"] == "LOST");
    assert_eq!(counted.len(), 1, "{id}: one record besides LOST ones, got {records:#?}");
    let r = counted[0];
    assert_eq!(r["worker"], result["worker"], "{id}: record and result name the same worker: {r} / {result}");
    assert_eq!(r["attempt"], result["attempt"], "{id}: record and result name the same attempt: {r} / {result}");
    let outcome = if result["ok"] == true { json!("ok") } else { result["error"]["code"].clone() };
    assert_eq!(r["outcome"], outcome, "{id}: record and result agree on the outcome: {r} / {result}");
    for l in lost {
        assert_ne!(l["attempt"], result["attempt"], "{id}: the counted attempt is not also LOST: {l}");
    }
}

#[test]
fn a_queued_execution_runs_on_a_worker_and_its_result_and_record_name_worker_and_attempt() {
    let nats = Nats::start("queue-nats");
    let s = gateway("queue-basic", &nats, &[]);
    let w = Role::worker("w1", &nats.url(), &s.dir.join("plugins"), 2);
    let token = s.access_token();
    let r = s.execute(&token, "echo", json!({"n": 7}), Some(30_000));
    assert_eq!(r.status, 200, "{r:?}\nworker:\n{}", w.log());
    let v = r.json();
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["data"], json!({"n": 7}), "{v:#}");
    assert_eq!(v["worker"], "w1", "{v:#}");
    assert_eq!(v["attempt"], 1, "{v:#}");
    let id = v["id"].as_str().expect("id");
    // The run's record is on the worker's host, naming it; the gateway
    // recorded nothing of its own.
    let records = w.audit_records();
    let mine: Vec<_> = records.iter().filter(|r| r["request_id"] == id).collect();
    assert_eq!(mine.len(), 1, "{records:#?}");
    assert_eq!(mine[0]["worker"], "w1");
    assert_eq!(mine[0]["attempt"], 1);
    assert_eq!(mine[0]["tenant"], "acme");
    assert_eq!(mine[0]["plugin"], PLUGIN);
    assert!(s.records_of(id).is_empty(), "{:#?}", s.audit_records());
    // GET reads the same stored result.
    let again = result_of(&s, &token, id, Duration::from_secs(10));
    assert_eq!(again, v);
}

#[test]
fn the_same_idempotency_key_runs_once_and_every_response_carries_the_first_result() {
    let nats = Nats::start("queue-nats");
    let s = gateway("queue-idem", &nats, &[]);
    let w = Role::worker("w1", &nats.url(), &s.dir.join("plugins"), 4);
    let key = format!("idem-{}", std::process::id());
    // Five at once, while the first is running (`nap` takes 1 s).
    let results: Vec<serde_json::Value> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..5)
            .map(|_| {
                let s = &s;
                let key = key.as_str();
                sc.spawn(move || {
                    let r = submit(s, "acme", Some(key), "nap", json!({}), 30_000);
                    assert_eq!(r.status, 200, "{r:?}");
                    r.json()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("submitter")).collect()
    });
    // Five more after it finished.
    let later: Vec<serde_json::Value> = (0..5)
        .map(|_| {
            let r = submit(&s, "acme", Some(&key), "nap", json!({}), 30_000);
            assert_eq!(r.status, 200, "{r:?}");
            r.json()
        })
        .collect();
    let first = &results[0];
    assert_eq!(first["ok"], true, "{first:#}");
    assert_eq!(first["id"], key.as_str());
    for r in results.iter().chain(&later) {
        assert_eq!(r, first, "every response is the one stored result");
    }
    let logs = [w.audit_records(), s.audit_records()];
    assert_eq!(records_of(&logs, &key).len(), 1, "one execution: {:#?}", records_of(&logs, &key));
    assert_audit_agrees(&logs, &key, first);
    // Control: another key is another execution; the same key for another
    // tenant is that tenant's own execution.
    let other = submit(&s, "acme", Some(&format!("{key}-2")), "nap", json!({}), 30_000);
    assert_eq!(other.status, 200, "{other:?}");
    let beta = submit(&s, "beta", Some(&key), "nap", json!({}), 30_000);
    assert_eq!(beta.status, 200, "{beta:?}");
    let logs = [w.audit_records(), s.audit_records()];
    assert_eq!(records_of(&logs, &format!("{key}-2")).len(), 1);
    assert_eq!(records_of(&logs, &key).len(), 2, "acme's and beta's: {:#?}", records_of(&logs, &key));
    // A key that cannot be an id is refused, naming the header.
    let bad = submit(&s, "acme", Some("a.b"), "nap", json!({}), 0);
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.error().1.contains("Idempotency-Key"), "{bad:?}");
}

#[test]
fn a_worker_sigkilled_mid_execution_loses_nothing_and_leaves_no_sandbox() {
    let nats = Nats::start("queue-nats");
    let s = gateway("queue-kill", &nats, &[]);
    let plugins = s.dir.join("plugins");
    let mut w1 = Role::worker("w1", &nats.url(), &plugins, 4);
    let w2 = Role::worker("w2", &nats.url(), &plugins, 4);
    let token = s.access_token();
    // Eight runs of ~2 s over two workers with 4 slots each: all 8 run at once.
    let marker = sleep_marker(2);
    let ids: Vec<String> = (0..8)
        .map(|i| {
            let id = format!("kill-{}-{i}", std::process::id());
            let r = submit(&s, "acme", Some(&id), "sleep", json!({"s": marker}), 0);
            assert_eq!(r.status, 202, "{r:?}");
            id
        })
        .collect();
    let mut on_w1 = vec![];
    let running = poll_until(Duration::from_secs(30), || {
        let all = processes_mentioning(&format!("sleep {marker}"));
        on_w1 = descendants_of(w1.pid(), &all);
        !on_w1.is_empty() && all.len() >= 8
    });
    assert!(running, "8 sandboxes running, some on w1\nw1:\n{}\nw2:\n{}", w1.log(), w2.log());
    let killed_pid = w1.pid();
    w1.kill();
    // Its sandboxes die with it.
    let gone = poll_until(Duration::from_secs(10), || on_w1.iter().all(|p| !Path::new(&format!("/proc/{p}")).exists()));
    assert!(gone, "sandbox processes of the killed worker survive: {on_w1:?}");
    // Every request ends with exactly one result.
    let results: Vec<serde_json::Value> =
        ids.iter().map(|id| result_of(&s, &token, id, Duration::from_secs(90))).collect();
    // The killed worker, started again, records its interrupted runs LOST.
    w1.restart();
    let lost: Vec<String> = w1
        .audit_records()
        .iter()
        .filter(|r| r["outcome"] == "LOST")
        .map(|r| r["request_id"].as_str().expect("request_id").to_owned())
        .collect();
    assert!(!lost.is_empty(), "w1's interrupted runs are recorded LOST: {:#?}", w1.audit_records());
    let logs = [w1.audit_records(), w2.audit_records(), s.audit_records()];
    for (id, result) in ids.iter().zip(&results) {
        assert_eq!(result["ok"], true, "{id}: {result:#}");
        if lost.contains(id) {
            assert_eq!(result["attempt"], 2, "{id} was interrupted, so run again: {result:#}");
            assert_eq!(result["worker"], "w2", "{result:#}");
        } else {
            assert_eq!(result["attempt"], 1, "{id}: {result:#}");
        }
        assert_audit_agrees(&logs, id, result);
    }
    // Its run folders went when it started again.
    let leftover = w1.dir.join(format!("cordon-worker-{killed_pid}"));
    assert!(!leftover.exists(), "{} is left", leftover.display());
    assert!(w1.dir.join(format!("cordon-worker-{}", w1.pid())).is_dir());
    // Nothing of the killed worker's sandboxes is left in a cgroup.
    for id in &lost {
        for procs in cgroups_named(&format!("cordon-{id}")) {
            let pids = std::fs::read_to_string(&procs).unwrap_or_default();
            assert!(pids.trim().is_empty(), "{} still holds {pids}", procs.display());
        }
    }
}

/// `cgroup.procs` of every cgroup under /sys/fs/cgroup whose name starts
/// with `prefix` (a bounded walk).
pub(super) fn cgroups_named(prefix: &str) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut todo = vec![PathBuf::from("/sys/fs/cgroup")];
    let mut seen = 0;
    while let Some(d) = todo.pop() {
        seen += 1;
        if seen > 20_000 {
            break;
        }
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name().to_string_lossy().starts_with(prefix) {
                    out.push(e.path().join("cgroup.procs"));
                }
                todo.push(e.path());
            }
        }
    }
    out
}

#[test]
fn a_tenant_over_its_queue_cap_gets_429_and_never_takes_another_tenants_room() {
    let nats = Nats::start("queue-nats");
    let s = gateway("queue-cap", &nats, &["--tenant-queue-cap", "3"]);
    // No worker yet: everything accepted stays queued.
    let flood: Vec<Resp> = (0..6).map(|_| submit(&s, "acme", None, "empty", json!({}), 0)).collect();
    let accepted: Vec<&Resp> = flood.iter().filter(|r| r.status == 202).collect();
    let refused: Vec<&Resp> = flood.iter().filter(|r| r.status == 429).collect();
    assert_eq!((accepted.len(), refused.len()), (3, 3), "{flood:#?}");
    for r in &refused {
        assert!(r.header("Retry-After").is_some(), "{r:?}");
        assert!(r.error().1.contains("tenant `acme` has 3 executions on the queue"), "{r:?}");
    }
    // The other tenant still has all of its room.
    let beta: Vec<Resp> = (0..3).map(|_| submit(&s, "beta", None, "empty", json!({}), 0)).collect();
    assert!(beta.iter().all(|r| r.status == 202), "{beta:#?}");
    assert_eq!(nats.stream_messages("CORDON_EXEC"), 6);
    // A worker drains the queue; then acme has room again.
    let w = Role::worker("w1", &nats.url(), &s.dir.join("plugins"), 2);
    let token = s.access_token();
    for r in &accepted {
        let id = r.json()["id"].as_str().expect("id").to_owned();
        assert_eq!(result_of(&s, &token, &id, Duration::from_secs(60))["ok"], true, "{}", w.log());
    }
    let drained = poll_until(Duration::from_secs(60), || nats.stream_messages("CORDON_EXEC") == 0);
    assert!(drained, "the work stream empties once results are in\n{}", nats.log());
    let again = submit(&s, "acme", None, "empty", json!({}), 30_000);
    assert_eq!(again.status, 200, "{again:?}");
}

#[test]
fn a_poison_request_ends_lost_in_the_dead_letter_stream_even_when_the_handler_starts_late() {
    let nats = Nats::start("queue-nats");
    let s = gateway("queue-poison", &nats, &["--max-deliver", "3"]);
    let plugins = s.dir.join("plugins");
    let mut w = Role::worker("w1", &nats.url(), &plugins, 1);
    let token = s.access_token();
    let marker = sleep_marker(25);
    let id = format!("poison-{}", std::process::id());
    let r = submit(&s, "beta", Some(&id), "sleep", json!({"s": marker}), 0);
    assert_eq!(r.status, 202, "{r:?}");
    // It "crashes its worker" on every delivery: the worker is SIGKILLed
    // whenever it runs it, and started again.
    for delivery in 1..=3 {
        let running = poll_until(Duration::from_secs(30), || {
            !descendants_of(w.pid(), &processes_mentioning(&format!("sleep {marker}"))).is_empty()
        });
        assert!(running, "delivery {delivery} runs on the worker:\n{}", w.log());
        w.restart();
    }
    // Given up: nothing runs it any more, and the dead-letter handler is
    // not there yet, so nothing is recorded.
    let other = submit(&s, "acme", None, "empty", json!({}), 30_000);
    assert_eq!(other.status, 200, "another tenant's work goes on: {other:?}");
    assert!(processes_mentioning(&format!("sleep {marker}")).is_empty());
    assert_eq!(s.get(&format!("/v1/executions/{id}"), &token).status, 404, "acme cannot see beta's execution");
    // The advisory waited in CORDON_ADV for the handler.
    let dlq = Role::dead_letters(&nats.url(), &plugins);
    let beta_token = s.sign_in_as("ops", super::BETA_SECRET)["access_token"].as_str().expect("token").to_owned();
    let result = result_of(&s, &beta_token, &id, Duration::from_secs(60));
    assert_eq!(result["ok"], false, "{result:#}");
    assert_eq!(result["error"]["code"], "LOST", "{result:#}");
    assert_eq!(result["attempt"], 3, "{result:#}");
    assert_eq!(result["worker"], "dead-letters", "{result:#}");
    assert_eq!(nats.stream_messages("CORDON_DLQ"), 1, "the request is kept in cordon.dlq.beta");
    assert_eq!(nats.stream_messages("CORDON_EXEC"), 0, "the work stream holds nothing afterwards");
    // The records: three interrupted runs on the worker's host (LOST when
    // it came back), and the one LOST that counts, by the handler.
    let runs: Vec<_> = w.audit_records().into_iter().filter(|r| r["request_id"] == id.as_str()).collect();
    let attempts: Vec<_> = runs.iter().map(|r| (r["outcome"].clone(), r["attempt"].clone())).collect();
    assert_eq!(attempts, vec![(json!("LOST"), json!(1)), (json!("LOST"), json!(2)), (json!("LOST"), json!(3))]);
    let given_up: Vec<_> = dlq.audit_records().into_iter().filter(|r| r["request_id"] == id.as_str()).collect();
    assert_eq!(given_up.len(), 1, "{given_up:#?}");
    assert_eq!(given_up[0]["outcome"], "LOST");
    assert_eq!(given_up[0]["worker"], "dead-letters");
    assert_eq!(given_up[0]["attempt"], 3);
    assert!(s.records_of(&id).is_empty(), "the gateway decided nothing: {:#?}", s.audit_records());
}

/// A NATS connection speaking the text protocol itself, so a test can act
/// as any role (its credentials) and read what the server says, including
/// `-ERR 'Permissions Violation …'`.
#[derive(Debug)]
pub struct Wire {
    stream: std::net::TcpStream,
    reader: BufReader<std::net::TcpStream>,
    next_sid: u32,
}

/// What the server answered.
#[derive(Debug, PartialEq)]
pub enum Said {
    /// `MSG`/`HMSG`: the payload.
    Msg(Vec<u8>),
    /// `-ERR '…'`.
    Err(String),
    /// `PONG` (to our PING: everything before it was accepted).
    Pong,
}

impl Wire {
    /// Connects to `addr` as `user` (with `pass`), or anonymously.
    pub fn connect(addr: std::net::SocketAddr, user: Option<(&str, &str)>) -> Result<Wire, String> {
        let stream = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut w = Wire { stream, reader, next_sid: 1 };
        let mut info = String::new();
        w.reader.read_line(&mut info).map_err(|e| format!("INFO: {e}"))?;
        assert!(info.starts_with("INFO "), "{info}");
        let mut connect = json!({"verbose": false, "pedantic": false, "headers": true, "no_responders": true});
        if let Some((u, p)) = user {
            connect["user"] = json!(u);
            connect["pass"] = json!(p);
        }
        w.send(format!("CONNECT {connect}\r\n").as_bytes());
        match w.ping() {
            Said::Pong => Ok(w),
            other => Err(format!("{other:?}")),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.stream.write_all(bytes).expect("write to nats-server");
    }

    /// PING, and what came back first (`Pong` when all before was fine).
    pub fn ping(&mut self) -> Said {
        self.send(b"PING\r\n");
        self.next_said()
    }

    /// The next `MSG`, `-ERR` or `PONG` (answering the server's PINGs).
    fn next_said(&mut self) -> Said {
        use std::io::Read;
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read from nats-server");
            assert!(n > 0, "nats-server closed the connection");
            let line = line.trim_end();
            if line == "PING" {
                self.send(b"PONG\r\n");
            } else if line == "PONG" {
                return Said::Pong;
            } else if let Some(e) = line.strip_prefix("-ERR ") {
                return Said::Err(e.trim_matches('\'').to_owned());
            } else if line.starts_with("MSG ") || line.starts_with("HMSG ") {
                let total: usize = line.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("MSG size");
                let mut body = vec![0; total + 2];
                self.reader.read_exact(&mut body).expect("MSG body");
                body.truncate(total);
                if line.starts_with("HMSG ") {
                    // Headers, then the payload.
                    let head: usize =
                        line.split(' ').rev().nth(1).and_then(|n| n.parse().ok()).expect("HMSG header size");
                    body.drain(..head);
                }
                return Said::Msg(body);
            }
        }
    }

    /// Subscribes to `subject`; then a PING: `Pong` when allowed.
    pub fn subscribe(&mut self, subject: &str) -> Said {
        let sid = self.next_sid;
        self.next_sid += 1;
        self.send(format!("SUB {subject} {sid}\r\n").as_bytes());
        self.ping()
    }

    /// Publishes `payload` on `subject`; then a PING: `Pong` when allowed.
    pub fn publish(&mut self, subject: &str, payload: &[u8]) -> Said {
        self.send(format!("PUB {subject} {}\r\n", payload.len()).as_bytes());
        self.send(payload);
        self.send(b"\r\n");
        self.ping()
    }

    /// Publishes a message with `headers` and `body` on `subject`; then a
    /// PING: `Pong` when allowed.
    pub fn publish_headers_body(&mut self, subject: &str, headers: &[(&str, &str)], body: &[u8]) -> Said {
        let mut head = String::from("NATS/1.0\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.send(format!("HPUB {subject} {} {}\r\n", head.len(), head.len() + body.len()).as_bytes());
        self.send(head.as_bytes());
        self.send(body);
        self.send(b"\r\n");
        self.ping()
    }

    /// A request on `subject` with a reply inbox under `inbox`; the reply,
    /// or the error that came first.
    pub fn request(&mut self, subject: &str, inbox: &str, payload: &[u8]) -> Said {
        let reply = format!("{inbox}.{}", self.next_sid);
        match self.subscribe(&reply) {
            Said::Pong => {}
            other => return other,
        }
        self.send(format!("PUB {subject} {reply} {}\r\n", payload.len()).as_bytes());
        self.send(payload);
        self.send(b"\r\n");
        self.next_said()
    }

    /// The stored result of `id` of `tenant` as the results bucket's
    /// leader has it: the message JSON with its server `time`.
    pub fn stored_result(&mut self, tenant: &str, id: &str) -> serde_json::Value {
        let body = json!({"last_by_subj": format!("$KV.cordon_results.{tenant}.{id}")}).to_string();
        match self.request("$JS.API.STREAM.MSG.GET.KV_cordon_results", "_INBOX.test", body.as_bytes()) {
            Said::Msg(m) => {
                let v: serde_json::Value = serde_json::from_slice(&m).expect("JSON");
                assert!(v["message"].is_object(), "{id}: no stored result: {v}");
                v["message"].clone()
            }
            other => panic!("{id}: {other:?}"),
        }
    }
}

#[test]
fn a_run_past_its_deadline_is_killed_and_recorded_expired_and_a_cancelled_one_cancelled() {
    let nats = Nats::start("queue-nats");
    let s = gateway("queue-expire", &nats, &["--deadline-ms", "8000"]);
    let w = Role::worker("w1", &nats.url(), &s.dir.join("plugins"), 2);
    let token = s.access_token();
    let (late_marker, gone_marker) = (sleep_marker(40), sleep_marker(40));
    let late = format!("late-{}", std::process::id());
    let gone = format!("gone-{}", std::process::id());
    assert_eq!(submit(&s, "acme", Some(&late), "sleep", json!({"s": late_marker}), 0).status, 202);
    assert_eq!(submit(&s, "acme", Some(&gone), "sleep", json!({"s": gone_marker}), 0).status, 202);
    let mut sandboxes = vec![];
    let running = poll_until(Duration::from_secs(30), || {
        let mine = |m: &str| descendants_of(w.pid(), &processes_mentioning(&format!("sleep {m}")));
        sandboxes = [mine(&late_marker), mine(&gone_marker)].concat();
        sandboxes.len() >= 2
    });
    assert!(running, "both run on the worker before their deadline:\n{}", w.log());
    // Control: the caller gives one up.
    let d = s.delete(&format!("/v1/executions/{gone}"), &token);
    assert!(d.status == 200 || d.status == 202, "{d:?}");
    let cancelled = result_of(&s, &token, &gone, Duration::from_secs(30));
    assert_eq!(cancelled["error"]["code"], "CANCELLED", "{cancelled:#}");
    // The other runs into its deadline: killed there, EXPIRED.
    let expired = result_of(&s, &token, &late, Duration::from_secs(60));
    assert_eq!(expired["error"]["code"], "EXPIRED", "{expired:#}");
    let gone_now =
        poll_until(Duration::from_secs(10), || sandboxes.iter().all(|p| !Path::new(&format!("/proc/{p}")).exists()));
    assert!(gone_now, "sandbox processes survive: {sandboxes:?}");
    // The worker's own records say why each run ended (the gateway may
    // have stored EXPIRED before the worker's record of the kill is in).
    let outcome = |id: &str| -> Vec<serde_json::Value> {
        w.audit_records().iter().filter(|r| r["request_id"] == id).map(|r| r["outcome"].clone()).collect()
    };
    let recorded = poll_until(Duration::from_secs(20), || !outcome(&late).is_empty());
    assert!(recorded, "the worker records the expired run:\n{}", w.log());
    let records = w.audit_records();
    assert_eq!(outcome(&late), vec![json!("EXPIRED")], "{records:#?}");
    assert_eq!(outcome(&gone), vec![json!("CANCELLED")], "{records:#?}");
}

/// The three roles' NATS users and only the subjects each needs (the
/// README's "Per-role credentials" block, with test passwords).
pub fn roles_config(password: &dyn Fn(&str) -> String) -> String {
    let list = |subjects: &[&str]| subjects.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    let results =
        ["$JS.API.STREAM.INFO.KV_cordon_results", "$JS.API.STREAM.MSG.GET.KV_cordon_results", "$KV.cordon_results.>"];
    let mut gateway = vec!["cordon.exec.>", "cordon.cancel.>"];
    let admin: Vec<String> = ["CORDON_EXEC", "KV_cordon_results", "CORDON_ADV", "CORDON_DLQ"]
        .iter()
        .flat_map(|st| ["CREATE", "UPDATE", "INFO"].map(|op| format!("$JS.API.STREAM.{op}.{st}")))
        .chain([("CORDON_EXEC", "exec-p0"), ("CORDON_ADV", "dead-letters")].iter().flat_map(|(st, c)| {
            [
                format!("$JS.API.CONSUMER.CREATE.{st}.{c}"),
                format!("$JS.API.CONSUMER.CREATE.{st}.{c}.>"),
                format!("$JS.API.CONSUMER.DURABLE.CREATE.{st}.{c}"),
                format!("$JS.API.CONSUMER.INFO.{st}.{c}"),
            ]
        }))
        .collect();
    gateway.extend(admin.iter().map(String::as_str));
    gateway.extend(results);
    let mut worker = vec![
        "$JS.API.CONSUMER.INFO.CORDON_EXEC.exec-p0",
        "$JS.API.CONSUMER.MSG.NEXT.CORDON_EXEC.exec-p0",
        "$JS.ACK.CORDON_EXEC.exec-p0.>",
        "cordon.done.>",
    ];
    worker.extend(results);
    let mut dlq = vec![
        "$JS.API.CONSUMER.INFO.CORDON_ADV.dead-letters",
        "$JS.API.CONSUMER.MSG.NEXT.CORDON_ADV.dead-letters",
        "$JS.ACK.CORDON_ADV.dead-letters.>",
        "$JS.API.STREAM.INFO.CORDON_EXEC",
        "$JS.API.STREAM.MSG.GET.CORDON_EXEC",
        "$JS.API.STREAM.MSG.DELETE.CORDON_EXEC",
        "cordon.dlq.>",
        "cordon.done.>",
    ];
    dlq.extend(results);
    let user = |name: &str, publish: &[&str], subscribe: &[&str]| {
        format!(
            "    {{ user: {name}, password: \"{}\", permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }} }}\n",
            password(name),
            list(publish),
            list(subscribe)
        )
    };
    format!(
        "authorization {{\n  users = [\n{}{}{}  ]\n}}\n",
        user("gateway", &gateway, &["_INBOX_gateway.>", "cordon.done.>"]),
        user("worker", &worker, &["_INBOX_worker.>", "cordon.cancel.>"]),
        user("dlq", &dlq, &["_INBOX_dead_letters.>"]),
    )
}

#[test]
fn each_role_runs_on_its_own_nats_user_and_a_worker_cannot_queue_a_job_or_read_the_gateways_replies() {
    let secrets = Dir::new("queue-auth-secrets");
    let password = |name: &str| format!("{name}-pw-{}", std::process::id());
    let nats = Nats::start_with("queue-nats-auth", &roles_config(&password));
    let creds = |name: &str| -> Vec<String> {
        let file = secrets.create(format!("{name}.pw"), format!("{}\n", password(name)));
        vec!["--queue-user".into(), name.into(), "--queue-password-file".into(), file.display().to_string()]
    };
    let gw_args = [vec!["--max-deliver".to_owned(), "1".into()], creds("gateway")].concat();
    let gw_args: Vec<&str> = gw_args.iter().map(String::as_str).collect();
    let s = gateway("queue-auth", &nats, &gw_args);
    let plugins = s.dir.join("plugins");
    let mut w = Role::worker_with(None, "w1", &nats.url(), &plugins, 2, &creds("worker"));
    let dlq = Role::dead_letters_with(None, &nats.url(), &plugins, &creds("dlq"));
    let token = s.access_token();
    // Every role does its whole job with only its own subjects: a run, and
    // a request given up on (its worker killed on its one delivery).
    let r = s.execute(&token, "echo", json!({"n": 1}), Some(30_000));
    assert_eq!(r.status, 200, "{r:?}\nworker:\n{}", w.log());
    assert_eq!(r.json()["ok"], true, "{r:?}");
    let marker = sleep_marker(30);
    let id = format!("auth-lost-{}", std::process::id());
    assert_eq!(submit(&s, "acme", Some(&id), "sleep", json!({"s": marker}), 0).status, 202);
    let running = poll_until(Duration::from_secs(30), || {
        !descendants_of(w.pid(), &processes_mentioning(&format!("sleep {marker}"))).is_empty()
    });
    assert!(running, "runs on w1:\n{}", w.log());
    // The advisory fires when the request would be delivered again: a
    // worker must be pulling.
    w.restart();
    let given_up = poll_until(Duration::from_secs(60), || {
        let done = s.get(&format!("/v1/executions/{id}"), &token).json()["status"] == "done";
        if !done {
            std::thread::sleep(Duration::from_millis(200));
        }
        done
    });
    assert!(given_up, "no LOST result\ndead-letters:\n{}\n{}", dlq.log(), nats.log());
    let lost = result_of(&s, &token, &id, Duration::from_secs(10));
    assert_eq!(lost["error"]["code"], "LOST", "{lost:#}\ndead-letters:\n{}", dlq.log());
    assert!(!nats.log().contains("Permissions Violation"), "a role lacked a subject it needs:\n{}", nats.log());
    // What a worker's credential may not do, as the server answers it; each
    // with a control: the same probe by the role it belongs to.
    let probe = |user: &str, act: &dyn Fn(&mut Wire) -> Said| -> Said {
        let mut wire = Wire::connect(nats.addr(), Some((user, &password(user)))).expect("connect");
        act(&mut wire)
    };
    let queue_job = |w: &mut Wire| w.publish("cordon.exec.p0.acme", b"{}");
    assert_eq!(
        probe("worker", &queue_job),
        Said::Err("Permissions Violation for Publish to \"cordon.exec.p0.acme\"".into())
    );
    assert_eq!(probe("gateway", &queue_job), Said::Pong, "control: the gateway queues jobs");
    let snoop = |w: &mut Wire| w.subscribe("_INBOX_gateway.>");
    assert_eq!(
        probe("worker", &snoop),
        Said::Err("Permissions Violation for Subscription to \"_INBOX_gateway.>\"".into())
    );
    assert_eq!(probe("gateway", &snoop), Said::Pong, "control: the gateway reads its own replies");
    let delete = |w: &mut Wire| w.publish("$JS.API.STREAM.MSG.DELETE.CORDON_EXEC", b"{\"seq\": 999999}");
    assert_eq!(
        probe("worker", &delete),
        Said::Err("Permissions Violation for Publish to \"$JS.API.STREAM.MSG.DELETE.CORDON_EXEC\"".into())
    );
    assert_eq!(probe("dlq", &delete), Said::Pong, "control: the dead-letter handler deletes");
    let done = |w: &mut Wire| w.publish("cordon.done.acme.x", b"");
    assert_eq!(probe("worker", &done), Said::Pong, "control: the worker's own subject");
    // Without a user, or with another role's password, nothing connects.
    let anonymous = Wire::connect(nats.addr(), None).expect_err("anonymous refused");
    assert!(anonymous.contains("Authorization Violation"), "{anonymous}");
    let wrong = Wire::connect(nats.addr(), Some(("worker", &password("gateway")))).expect_err("wrong password refused");
    assert!(wrong.contains("Authorization Violation"), "{wrong}");
}

/// Writes `value` as the stored result of `id` of tenant acme straight into
/// the results bucket (as any credential allowed to write it could); the
/// server's answer.
fn write_result(wire: &mut Wire, id: &str, value: &serde_json::Value) -> serde_json::Value {
    let subject = format!("$KV.cordon_results.acme.{id}");
    match wire.request(&subject, "_INBOX.test", value.to_string().as_bytes()) {
        Said::Msg(m) => serde_json::from_slice(&m).expect("a JetStream answer"),
        other => panic!("{id}: {other:?}"),
    }
}

#[test]
fn results_not_signed_by_a_trusted_key_are_refused_naming_the_worker_and_the_genuine_workers_is_answered() {
    use cordon_gateway::queue::signing;
    use cordon_registry::minisign::SecretKey;
    let nats = Nats::start("queue-nats");
    let s = gateway("queue-signed", &nats, &[]);
    let w = Role::worker("w1", &nats.url(), &s.dir.join("plugins"), 2);
    let token = s.access_token();
    // Control: the genuine worker's result is answered, signed by its key.
    let r = s.execute(&token, "echo", json!({"n": 1}), Some(30_000));
    assert_eq!(r.status, 200, "{r:?}\nworker:\n{}\ngateway:\n{}", w.log(), s.log());
    let genuine = r.json();
    let id = genuine["id"].as_str().expect("id").to_owned();
    assert_eq!(genuine["worker"], "w1", "{genuine:#}");
    let signature = genuine["signature"].as_str().expect("a signature");
    assert!(signature.contains(&format!("trusted comment: cordon result acme.{id} attempt 1 by w1")), "{signature}");
    // Forgeries, each written straight into the bucket: the server takes
    // them (the credential may write there); the gateway refuses them.
    let mut wire = Wire::connect(nats.addr(), None).expect("connect");
    let forged = |fid: &str| {
        let mut v = genuine.clone();
        v["id"] = json!(fid);
        v["data"] = json!({"n": 666});
        v.as_object_mut().expect("object").remove("signature");
        v
    };
    let unsigned = forged("forged-unsigned");
    let mut by_stranger = forged("forged-stranger");
    let stranger = SecretKey::generate().expect("a key");
    signing::sign(&stranger, "acme.forged-stranger", &mut by_stranger);
    let w1_key = SecretKey::load(&w.dir.join("result.key")).expect("w1's key");
    let mut altered = forged("forged-altered");
    signing::sign(&w1_key, "acme.forged-altered", &mut altered);
    altered["data"] = json!({"n": 667});
    let cases = [
        ("forged-unsigned", unsigned, "it is not signed".to_owned(), "start worker `w1` with --result-key FILE"),
        (
            "forged-stranger",
            by_stranger,
            format!("signed by key {}, which is not among the result keys", stranger.key_id()),
            "if worker `w1` is yours, copy the .pub of its --result-key into",
        ),
        (
            "forged-altered",
            altered,
            format!("its signature by key {} ", w1_key.key_id()),
            "changed or forged this result: revoke it",
        ),
    ];
    for (fid, value, why, hint) in &cases {
        let ack = write_result(&mut wire, fid, value);
        assert!(ack["seq"].as_u64().is_some(), "{fid}: the server stored it: {ack}");
        let r = s.get(&format!("/v1/executions/{fid}"), &token);
        assert_eq!(r.status, 502, "{fid}: {r:?}\ngateway:\n{}", s.log());
        let (code, message) = r.error();
        assert_eq!(code, "result_refused", "{fid}: {message}");
        assert!(!message.contains("666") && !message.contains("667"), "{fid}: {message}");
        // The same through an Idempotency-Key replay.
        let replay = submit(&s, "acme", Some(fid), "echo", json!({}), 5_000);
        assert_eq!(replay.status, 502, "{fid}: {replay:?}");
        let line = format!("refusing the stored result of acme.{fid} (it names worker `w1`): ");
        let log = s.log_with(&[&line, why.as_str(), hint]);
        assert!(log.contains(&line) && log.contains(why.as_str()), "{fid}: {why}\ngateway:\n{log}");
        assert!(log.contains(hint), "{fid}: {hint}\ngateway:\n{log}");
    }
    // Control: the genuine result is still answered, byte for byte.
    assert_eq!(result_of(&s, &token, &id, Duration::from_secs(10)), genuine);
}

#[test]
fn a_genuine_key_cannot_answer_in_another_workers_name_and_its_own_name_is_answered() {
    use cordon_gateway::queue::signing;
    use cordon_registry::minisign::SecretKey;
    let nats = Nats::start("queue-nats");
    let s = gateway("queue-bound", &nats, &[]);
    let plugins = s.dir.join("plugins");
    let w1 = Role::worker("w1", &nats.url(), &plugins, 1);
    let w2 = Role::worker("w2", &nats.url(), &plugins, 1);
    let token = s.access_token();
    // w1's genuine key (its host compromised) signs results naming w2 and
    // naming itself, written straight into the bucket.
    let w1_key = SecretKey::load(&w1.dir.join("result.key")).expect("w1's key");
    let mut wire = Wire::connect(nats.addr(), None).expect("connect");
    let mut claim = |id: &str, worker: &str| {
        let mut v = json!({"id": id, "ok": true, "data": {"by": worker}, "worker": worker, "attempt": 1});
        signing::sign(&w1_key, &format!("acme.{id}"), &mut v);
        assert!(write_result(&mut wire, id, &v)["seq"].is_u64(), "{id}: stored");
        v
    };
    let own = claim("bound-own", "w1");
    claim("bound-other", "w2");
    // Control: its own name is answered.
    assert_eq!(result_of(&s, &token, "bound-own", Duration::from_secs(10)), own);
    let r = s.get("/v1/executions/bound-other", &token);
    assert_eq!(r.status, 502, "{r:?}\ngateway:\n{}", s.log());
    assert_eq!(r.error().0, "result_refused");
    let line = format!(
        "refusing the stored result of acme.bound-other (it names worker `w2`): it is signed by key {} ({}), which signs only for worker `w1`",
        w1_key.key_id(),
        super::trusted_keys_of(&plugins).join("w1.pub").display()
    );
    let log = s.log_with(&[&line, "the host of worker `w1` signed a result in the name of `w2`"]);
    assert!(log.contains(&line), "{line}\ngateway:\n{log}");
    assert!(log.contains("the host of worker `w1` signed a result in the name of `w2`"), "{log}");
    // Control: w2's own results, signed by w2's key, are answered.
    let r = (0..20)
        .map(|_| s.execute(&token, "echo", json!({"n": 2}), Some(30_000)))
        .find(|r| r.status == 200 && r.json()["worker"] == "w2")
        .unwrap_or_else(|| panic!("no result by w2 in 20 runs\nw2:\n{}", w2.log()));
    assert_eq!(r.json()["data"], json!({"n": 2}));
}

#[test]
fn a_gateway_whose_result_keys_others_can_write_refuses_to_start_naming_path_mode_and_fix() {
    use std::os::unix::fs::PermissionsExt;
    let nats = Nats::start("queue-nats");
    let opts = Options { extra_args: vec!["--queue".to_owned(), nats.url()], ..Options::default() };
    let dir = Dir::new("queue-loose-keys");
    let folder = dir.join("result-keys");
    std::fs::create_dir(&folder).expect("folder");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let Err((code, text)) = Service::spawn(dir, opts.clone()) else {
        panic!("started with a result keys folder anyone can write");
    };
    assert_eq!(code, Some(125), "{text}");
    let shown = folder.display();
    let want = format!(
        "refusing the result keys folder {shown}: it is writable by its group and others (mode 0777, owner uid 0)"
    );
    assert!(text.contains(&want), "{want}\n{text}");
    assert!(
        text.contains(&format!("hint: `chmod go-w {shown}`, after checking that every key in it is yours")),
        "{text}"
    );
    // Control: the same service with the folder 0755 starts.
    let dir = Dir::new("queue-tight-keys");
    let folder = dir.join("result-keys");
    std::fs::create_dir(&folder).expect("folder");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Service::spawn(dir, opts).unwrap_or_else(|(c, e)| panic!("control did not start ({c:?}): {e}"));
}

#[test]
fn a_bad_key_file_does_not_keep_a_new_workers_key_out_and_is_logged_once() {
    let nats = Nats::start("queue-nats");
    let s = gateway("queue-badkey", &nats, &[]);
    let plugins = s.dir.join("plugins");
    let folder = super::trusted_keys_of(&plugins);
    // Added after the gateway started: a half-copied key, then a new
    // worker (its key copied in by Role::worker).
    std::fs::write(folder.join("broken.pub"), "untrusted comment: half\nRWQ").expect("write");
    let w3 = Role::worker("w3", &nats.url(), &plugins, 1);
    let token = s.access_token();
    for n in 0..3 {
        let r = s.execute(&token, "echo", json!({"n": n}), Some(30_000));
        assert_eq!(r.status, 200, "{r:?}\nw3:\n{}\ngateway:\n{}", w3.log(), s.log());
        assert_eq!((r.json()["worker"].clone(), r.json()["data"].clone()), (json!("w3"), json!({"n": n})));
    }
    let line = format!("the result key {} cannot be used", folder.join("broken.pub").display());
    let log = s.log_with(&[&line]);
    assert_eq!(log.matches(&line).count(), 1, "{line}\ngateway:\n{log}");
}

#[test]
fn a_gateway_on_the_queue_without_trusted_result_keys_refuses_to_start_unless_insecure_dev() {
    let nats = Nats::start("queue-nats");
    let opts = |extra: &[&str]| Options {
        extra_args: ["--queue".to_owned(), nats.url()].into_iter().chain(extra.iter().map(|s| s.to_string())).collect(),
        result_keys: super::ResultKeys::Absent,
        ..Options::default()
    };
    let Err((code, text)) = Service::spawn(Dir::new("queue-nokeys"), opts(&[])) else {
        panic!("started without [queue] result_keys");
    };
    assert_eq!(code, Some(125), "{text}");
    assert!(text.contains("cordon serve --queue needs [queue] result_keys in"), "{text}");
    assert!(text.contains("hint: make each worker's key with `cordon key gen --out FILE`"), "{text}");
    // Control: the same service on a developer's machine starts, and says so.
    let s =
        Service::spawn(Dir::new("queue-nokeys-dev"), opts(&["--insecure-dev"])).expect("starts with --insecure-dev");
    assert!(s.log().contains("results are answered without checking who wrote them"), "{}", s.log());
    // A worker without a key refuses to start.
    let out = Command::new(cordon_bin())
        .args(["worker", "--queue", &nats.url()])
        .env("HOME", s.dir.path())
        .output()
        .expect("cordon worker");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cordon worker needs --result-key FILE"), "{err}");
}

#[test]
fn a_stored_result_cannot_be_overwritten_even_without_the_expected_sequence_header() {
    let nats = Nats::start("queue-nats");
    let _s = gateway("queue-overwrite", &nats, &[]);
    let mut wire = Wire::connect(nats.addr(), None).expect("connect");
    // Control: a first write to a key succeeds.
    let first = json!({"id": "r1", "ok": true, "data": {"n": 1}});
    let ack = write_result(&mut wire, "r1", &first);
    let seq = ack["seq"].as_u64().unwrap_or_else(|| panic!("stored: {ack}"));
    // A second plain publish (no Nats-Expected-Last-Subject-Sequence) is
    // refused by the server, and the first result stays.
    let ack = write_result(&mut wire, "r1", &json!({"id": "r1", "ok": true, "data": {"n": 2}}));
    assert_eq!(ack["error"]["err_code"], 10077, "{ack}");
    assert!(ack["error"]["description"].as_str().is_some_and(|d| d.contains("maximum messages per subject")), "{ack}");
    let stored = wire.stored_result("acme", "r1");
    let data =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, stored["data"].as_str().expect("data"))
            .expect("base64");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&data).expect("JSON"), first);
    // Nor can it be rolled up (a purge of the subject) or purged.
    match wire.request(
        "$JS.API.STREAM.PURGE.KV_cordon_results",
        "_INBOX.test",
        br#"{"filter":"$KV.cordon_results.acme.r1"}"#,
    ) {
        Said::Msg(m) => {
            let v: serde_json::Value = serde_json::from_slice(&m).expect("JSON");
            assert!(v["error"]["description"].as_str().is_some_and(|d| d.contains("purge")), "{v}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(wire.stored_result("acme", "r1")["seq"], seq);
}

#[test]
fn clients_that_hang_up_while_being_queued_leave_no_queued_request_without_its_deadline() {
    // No worker: a queued request ends only by the gateway's deadline
    // (EXPIRED), which it keeps for every request it put on the queue.
    let nats = Nats::start("queue-nats");
    let s = gateway("queue-hangup", &nats, &["--deadline-ms", "1500"]);
    let at = s.access_token();
    let body = json!({"plugin": PLUGIN, "handler": "empty", "input": {}, "wait_ms": 0});
    // Clients that send a request and hang up at once: the service drops
    // the handler of each, some while their publish is acknowledged (where
    // exactly is up to the scheduler: rounds until some were queued).
    let mut queued = 0;
    for _round in 0..20 {
        super::hang_up(s.addr, &at, &body, 40);
        // Everything accepted so far got its answer or its hang-up.
        let settled = poll_until(Duration::from_secs(10), || {
            let n = nats.stream_messages("CORDON_EXEC");
            let same = n == queued;
            queued = n;
            same
        });
        assert!(settled, "the work stream kept growing");
        if queued > 0 {
            break;
        }
    }
    // Control: hung-up requests were queued, so the case was exercised.
    assert!(queued > 0, "no hung-up request got as far as the queue in 20 rounds\n{}", s.log());
    // Each queued request (they stay in the stream: no worker) has its
    // EXPIRED result and record, by the gateway's deadline.
    let counts = || {
        let records = s.audit_records().len() as u64;
        (nats.stream_messages("CORDON_EXEC"), nats.stream_messages("KV_cordon_results"), records)
    };
    let all = poll_until(Duration::from_secs(30), || {
        let (queued, results, records) = counts();
        queued == results && results == records
    });
    let (queued, results, records) = counts();
    assert!(all, "{queued} requests queued, {results} results, {records} records\ngateway:\n{}", s.log());
    let records = s.audit_records();
    assert!(records.iter().all(|r| r["outcome"] == "EXPIRED" && r["worker"] == "gateway"), "{records:#?}");
}

/// The value of the series `series` (name and labels, as printed) in
/// `/metrics`; `None` when it is not there.
fn metric(s: &Service, series: &str) -> Option<f64> {
    let m = http(s.addr, "GET", "/metrics", &[], b"");
    assert_eq!(m.status, 200, "{m:?}");
    m.body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn queue_metrics_count_depth_in_flight_redeliveries_duplicates_and_lost_per_tenant() {
    use cordon_gateway::queue::signing;
    use cordon_registry::minisign::SecretKey;
    let nats = Nats::start("queue-nats");
    let s = gateway("queue-metrics", &nats, &["--max-deliver", "2"]);
    let plugins = s.dir.join("plugins");
    let _dlq = Role::dead_letters(&nats.url(), &plugins);
    let running = |w: &Role, marker: &str| {
        poll_until(Duration::from_secs(30), || {
            !descendants_of(w.pid(), &processes_mentioning(&format!("sleep {marker}"))).is_empty()
        })
    };
    // Depth: two of beta's requests wait while no worker runs.
    for i in 0..2 {
        let r = submit(&s, "beta", Some(&format!("wait{i}")), "empty", json!({}), 0);
        assert_eq!(r.status, 202, "{r:?}");
    }
    assert_eq!(metric(&s, "cordon_queue_depth{tenant=\"beta\"}"), Some(2.0));
    assert_eq!(metric(&s, "cordon_queue_pending"), Some(2.0));
    assert_eq!(metric(&s, "cordon_queue_in_flight"), Some(0.0));
    let mut w = Role::worker("w1", &nats.url(), &plugins, 1);
    let drained = poll_until(Duration::from_secs(30), || metric(&s, "cordon_queue_depth{tenant=\"beta\"}").is_none());
    assert!(drained, "beta's requests ran:\n{}", w.log());
    // A redelivery: acme's run is interrupted (its worker SIGKILLed) and
    // its second delivery gives the result.
    let marker = sleep_marker(2);
    assert_eq!(submit(&s, "acme", Some("again"), "sleep", json!({"s": marker}), 0).status, 202);
    assert!(running(&w, &marker), "the first delivery runs:\n{}", w.log());
    assert_eq!(metric(&s, "cordon_queue_in_flight"), Some(1.0));
    assert_eq!(metric(&s, "cordon_queue_depth{tenant=\"acme\"}"), Some(1.0));
    w.restart();
    let token = s.access_token();
    let again = result_of(&s, &token, "again", Duration::from_secs(60));
    assert_eq!((again["ok"].clone(), again["attempt"].clone()), (json!(true), json!(2)), "{again:#}");
    // A duplicate: another result (genuinely signed) is stored while the
    // worker runs the request; the worker's own is refused.
    let marker = sleep_marker(2);
    assert_eq!(submit(&s, "acme", Some("dup"), "sleep", json!({"s": marker}), 0).status, 202);
    assert!(running(&w, &marker), "it runs:\n{}", w.log());
    let mut other = json!({"id": "dup", "ok": true, "data": {}, "worker": "gateway", "attempt": 1});
    signing::sign(&SecretKey::load(&s.dir.join("result.key")).expect("key"), "acme.dup", &mut other);
    let mut wire = Wire::connect(nats.addr(), None).expect("connect");
    assert!(write_result(&mut wire, "dup", &other)["seq"].is_u64());
    let refused = poll_until(Duration::from_secs(30), || {
        metric(&s, "cordon_queue_duplicates_total{tenant=\"acme\"}") == Some(1.0)
    });
    assert!(refused, "the worker's result was refused and counted:\n{}", w.log());
    // LOST: a request that kills its worker on both deliveries.
    let marker = sleep_marker(30);
    assert_eq!(submit(&s, "acme", Some("poison"), "sleep", json!({"s": marker}), 0).status, 202);
    for delivery in 1..=2 {
        assert!(running(&w, &marker), "delivery {delivery} runs:\n{}", w.log());
        w.restart();
    }
    let lost =
        poll_until(Duration::from_secs(60), || metric(&s, "cordon_queue_lost_total{tenant=\"acme\"}") == Some(1.0));
    assert!(lost, "LOST counted:\n{}", s.log());
    // The totals, exactly.
    for (series, want) in [
        ("cordon_queue_redeliveries_total{tenant=\"acme\"}", Some(1.0)),
        ("cordon_queue_duplicates_total{tenant=\"acme\"}", Some(1.0)),
        ("cordon_queue_lost_total{tenant=\"acme\"}", Some(1.0)),
        ("cordon_executions_total{tenant=\"acme\",outcome=\"ok\"}", Some(1.0)),
        ("cordon_executions_total{tenant=\"acme\",outcome=\"LOST\"}", Some(1.0)),
        ("cordon_executions_total{tenant=\"beta\",outcome=\"ok\"}", Some(2.0)),
        ("cordon_queue_redeliveries_total{tenant=\"beta\"}", None),
        ("cordon_queue_depth{tenant=\"acme\"}", None),
        ("cordon_queue_pending", Some(0.0)),
        ("cordon_queue_in_flight", Some(0.0)),
    ] {
        assert_eq!(metric(&s, series), want, "{series}\n{}", http(s.addr, "GET", "/metrics", &[], b"").body);
    }
    // Done notices are not signed (any worker credential may publish
    // them): the gateway counts a notice only after checking the stored
    // result it announces. Forged notices for a real tenant: a result that
    // was never stored, replays of the genuine notices of `again` (first,
    // attempt 2) and of its stored result as a duplicate, a duplicate
    // with no result, an unknown tenant and a made-up outcome.
    let done = |wire: &mut Wire, key: &str, outcome: &str, attempt: &str, stored: &str, body: &[u8]| {
        let h = [("Cordon-Outcome", outcome), ("Cordon-Attempt", attempt), ("Cordon-Stored", stored)];
        assert_eq!(wire.publish_headers_body(&format!("cordon.done.{key}"), &h, body), Said::Pong);
    };
    done(&mut wire, "acme.never-stored", "ok", "1", "first", b"");
    done(&mut wire, "acme.again", "ok", "2", "first", b"");
    done(&mut wire, "acme.again", "ok", "2", "refused", again.to_string().as_bytes());
    done(&mut wire, "acme.again", "ok", "1", "refused", b"");
    done(&mut wire, "evil.f1", "ok", "1", "first", b"");
    done(&mut wire, "acme.never-stored", "made-up-outcome-1", "18446744073709551615", "first", b"");
    // Control: a genuine run after them counts (notices are counted in
    // order, so the forged ones were read by then).
    let r = s.execute(&token, "echo", json!({"n": 1}), Some(30_000));
    assert_eq!(r.status, 200, "{r:?}");
    let read = poll_until(Duration::from_secs(30), || {
        metric(&s, "cordon_executions_total{tenant=\"acme\",outcome=\"ok\"}") == Some(2.0)
    });
    let body = http(s.addr, "GET", "/metrics", &[], b"").body;
    assert!(read, "the genuine run was counted:\n{body}");
    assert!(!body.contains("evil") && !body.contains("made-up") && !body.contains("outcome=\"other\""), "{body}");
    for (series, want) in [
        ("cordon_queue_redeliveries_total{tenant=\"acme\"}", Some(1.0)),
        ("cordon_queue_duplicates_total{tenant=\"acme\"}", Some(1.0)),
        ("cordon_queue_lost_total{tenant=\"acme\"}", Some(1.0)),
    ] {
        assert_eq!(metric(&s, series), want, "{series}\n{body}");
    }
    // Duplicates of `again` signed by keys the gateway never read: each
    // once made the counter wait for the next read of the key folder (up
    // to a second each, one notice at a time). Now they are set aside and
    // dropped after a read; a genuine run right after them is counted at
    // once, long before 24 such waits could be over.
    const FORGED: usize = 24;
    for i in 0..FORGED {
        let mut dup = json!({"id": "again", "ok": true, "data": {}, "worker": format!("w{i}"), "attempt": 1});
        signing::sign(&SecretKey::generate().expect("key"), "acme.again", &mut dup);
        done(&mut wire, "acme.again", "ok", "1", "refused", dup.to_string().as_bytes());
    }
    let r = s.execute(&token, "echo", json!({"n": 2}), Some(30_000));
    assert_eq!(r.status, 200, "{r:?}");
    let read = poll_until(Duration::from_secs(12), || {
        metric(&s, "cordon_executions_total{tenant=\"acme\",outcome=\"ok\"}") == Some(3.0)
    });
    assert!(read, "the genuine run after the forged duplicates was counted:\n{}", s.log());
    let dropped = poll_until(Duration::from_secs(30), || {
        metric(&s, "cordon_queue_notices_dropped_total{reason=\"unknown_key\"}") == Some(FORGED as f64)
    });
    let body = http(s.addr, "GET", "/metrics", &[], b"").body;
    assert!(dropped, "each forged duplicate was dropped once:\n{body}");
    assert_eq!(metric(&s, "cordon_queue_duplicates_total{tenant=\"acme\"}"), Some(1.0), "{body}");
}

/// A worker's slot hands its result on before the sandbox's teardown and
/// takes its next run only after it: once the executions are answered, the
/// worker soon has no child left (no sandbox outlives its answered
/// execution). Control: a running execution's sandbox is seen as its child.
#[test]
fn no_sandbox_outlives_its_answered_execution_on_a_worker() {
    let nats = Nats::start("queue-nats");
    let s = gateway("queue-after", &nats, &[]);
    let w = Role::worker("w1", &nats.url(), &s.dir.join("plugins"), 2);
    let token = s.access_token();
    let children = || super::pool::sandboxes_of(w.pid());
    for n in 0..4 {
        let r = s.execute(&token, "echo", json!({"n": n}), Some(30_000));
        assert_eq!(r.status, 200, "{r:?}\nworker:\n{}", w.log());
        assert_eq!(r.json()["ok"], true, "{r:?}");
    }
    assert!(poll_until(Duration::from_secs(10), || children().is_empty()), "sandboxes left: {:?}", children());
    let marker = sleep_marker(2);
    let id = format!("after-{}", std::process::id());
    let r = submit(&s, "acme", Some(&id), "sleep", json!({"s": marker}), 0);
    assert_eq!(r.status, 202, "{r:?}");
    assert!(
        poll_until(Duration::from_secs(30), || !children().is_empty()),
        "the running execution's sandbox was not seen\nworker:\n{}",
        w.log()
    );
    let v = result_of(&s, &token, &id, Duration::from_secs(60));
    assert_eq!(v["ok"], true, "{v:#}");
    assert!(poll_until(Duration::from_secs(10), || children().is_empty()), "sandboxes left: {:?}", children());
}

/// `cordon worker` clones its sandboxes from its own spawner (a child of
/// the worker, as the sandboxes are) and fails closed without it: once the
/// spawner is killed the worker takes no more deliveries, lets its running
/// execution finish and answer, and exits non-zero naming the spawner and
/// what to do; the execution it did not take is run by another worker.
/// Control: the same worker ran an execution before, in a sandbox that is
/// its child.
#[test]
fn a_worker_whose_spawner_is_killed_takes_no_more_deliveries_and_exits_naming_it() {
    let nats = Nats::start("queue-nats");
    let s = gateway("queue-spawner", &nats, &[]);
    let plugins = s.dir.join("plugins");
    let mut w1 = Role::worker("w1", &nats.url(), &plugins, 1);
    let token = s.access_token();
    let spawner = super::pool::spawner_of(w1.pid(), &w1.log());
    let r = s.execute(&token, "echo", json!({"n": 1}), Some(30_000));
    assert_eq!(r.status, 200, "{r:?}\nworker:\n{}", w1.log());
    assert_eq!((r.json()["ok"].clone(), r.json()["worker"].clone()), (json!(true), json!("w1")), "{r:?}");
    // A running execution in w1's one slot: its sandbox is w1's child.
    let marker = sleep_marker(2);
    let running = format!("spawner-run-{}", std::process::id());
    let r = submit(&s, "acme", Some(&running), "sleep", json!({"s": marker}), 0);
    assert_eq!(r.status, 202, "{r:?}");
    let mut sandboxes = vec![];
    assert!(
        poll_until(Duration::from_secs(30), || {
            sandboxes = super::pool::sandboxes_of(w1.pid());
            !sandboxes.is_empty()
        }),
        "the running execution's sandbox was not seen as w1's child\nworker:\n{}",
        w1.log()
    );
    let killed = Command::new("kill").args(["-KILL", &spawner.to_string()]).status().expect("kill");
    assert!(killed.success());
    let queued = format!("spawner-queued-{}", std::process::id());
    let r = submit(&s, "acme", Some(&queued), "echo", json!({"n": 2}), 0);
    assert_eq!(r.status, 202, "{r:?}");
    // No sandbox but the running one's, until w1 exits by itself.
    let status = w1.exited_within(Duration::from_secs(60));
    let log = w1.log();
    let status = status.unwrap_or_else(|| panic!("w1 still runs without its spawner:\n{log}"));
    assert!(!status.success(), "w1 exited with {status}:\n{log}");
    assert!(log.contains(&format!("the sandbox spawner of this worker (pid {spawner}) is gone")), "{log}");
    assert!(log.contains("hint: restart the worker"), "{log}");
    let v = result_of(&s, &token, &running, Duration::from_secs(60));
    assert_eq!((v["ok"].clone(), v["worker"].clone()), (json!(true), json!("w1")), "{v:#}");
    let records = w1.audit_records();
    assert!(records.iter().all(|r| r["request_id"] != queued.as_str()), "w1 ran {queued}: {records:#?}");
    assert_eq!(records.iter().filter(|r| r["outcome"] == "ok").count(), 2, "{records:#?}");
    // Another worker runs what w1 did not take.
    let w2 = Role::worker("w2", &nats.url(), &plugins, 1);
    let v = result_of(&s, &token, &queued, Duration::from_secs(60));
    assert_eq!(
        (v["ok"].clone(), v["worker"].clone(), v["data"].clone()),
        (json!(true), json!("w2"), json!({"n": 2})),
        "{v:#}\nw2:\n{}",
        w2.log()
    );
}
