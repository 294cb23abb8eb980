//! The local backend's workers when the process is out of descriptors: an
//! execution that cannot get its cancel handle is recorded and answered
//! `SETUP_FAILED`, never left queued.
//!
//! The test lowers its own `RLIMIT_NOFILE`, which would break every other
//! test of this binary, so it runs itself again in a child process (the
//! same test, alone, marked by [`CHILD`]); the parent reads the audit log
//! the child left.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cordon::audit::TraceParent;
use cordon_gateway::backend::{Job, Status};
use cordon_gateway::catalog::Runnable;
use cordon_gateway::{AppState, Config};
use cordon_testkit::Dir;

/// Set in the child run: the folder the parent made.
const CHILD: &str = "CORDON_TEST_NOFILE_DIR";
const TEST: &str = "suite::workers::a_worker_out_of_descriptors_records_setup_failed_instead_of_leaving_it_queued";

fn job(id: &str, plugin: &Path) -> Job {
    Job {
        id: id.into(),
        idempotency_key: None,
        tenant: "acme".into(),
        principal: "ci".into(),
        jti: format!("jti-{id}"),
        traceparent: None,
        trace: TraceParent::generate(),
        http_request_id: format!("req-{id}"),
        plugin: Runnable {
            dir: plugin.to_owned(),
            id: "@t/ok".into(),
            version: "1.0.0".into(),
            handlers: vec!["main".into()],
            state: "unsigned".into(),
            tree_hash: None,
            signer_key_id: None,
            manifest_sha256: None,
        },
        handler: "main".into(),
        input: b"{}".to_vec(),
    }
}

/// The child's part: a control execution that runs, then one submitted
/// with `RLIMIT_NOFILE` at 3 (fds 0–2 are taken, so every new descriptor
/// is `EMFILE`). Prints `child done` when every assertion held.
fn child(dir: &Path) {
    let plugins = dir.join("plugins");
    let plugin = plugins.join("ok");
    let text = format!(
        "[server]\nplugins = \"{}\"\naudit_log = \"{}\"\nworkers = 1\nmode = \"process\"\nrun_root = \"{}\"\n",
        plugins.display(),
        dir.join("audit.jsonl").display(),
        dir.join("runs").display()
    );
    let config = Config::parse(&text, Path::new("test.toml")).expect("config");
    let secrets = super::test_secrets();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let state = AppState::start(config, &secrets, vec![]).expect("state");
        let done = |s: Option<Status>| match s {
            Some(Status::Done(v)) => (*v).clone(),
            Some(Status::Queued) => panic!("still queued"),
            Some(Status::Running) => panic!("still running"),
            Some(Status::Refused(why)) => panic!("refused: {why}"),
            None => panic!("unknown execution"),
        };
        // Control: with descriptors to spare the same execution runs.
        state.backend.submit(job("CONTROL", &plugin), 4).await.expect("accepted");
        let v = done(state.backend.wait("acme", "CONTROL", Duration::from_secs(60)).await);
        assert_eq!(v["ok"], true, "control: {v}");

        let me = std::process::id().to_string();
        let status = Command::new("/usr/bin/prlimit").args(["--pid", &me, "--nofile=3:"]).status().expect("prlimit");
        assert!(status.success(), "prlimit failed");
        state.backend.submit(job("NOFILE", &plugin), 4).await.expect("accepted without a new descriptor");
        let v = done(state.backend.wait("acme", "NOFILE", Duration::from_secs(60)).await);
        assert_eq!(v["error"]["code"], "SETUP_FAILED", "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        // EMFILE as the C library words it ("Too many open files" with
        // glibc, "No file descriptors available" with musl).
        let emfile = std::io::Error::from_raw_os_error(24);
        assert_eq!(message, format!("cannot create the execution's cancel handle: {emfile}"), "{v}");
        assert_eq!(v["ok"], false, "{v}");
        println!("child done");
        // Leaves without shutting the writer down (it would need
        // descriptors): the record is durable already.
        std::process::exit(0);
    });
}

#[test]
fn a_worker_out_of_descriptors_records_setup_failed_instead_of_leaving_it_queued() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child(Path::new(&dir));
        return;
    }
    assert!(Path::new("/usr/bin/prlimit").exists(), "/usr/bin/prlimit (util-linux) is missing; .ci/run installs it");
    let dir = Dir::new("gw-nofile");
    dir.create(
        "plugins/ok/cordon.toml",
        "id = \"@t/ok\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"sh\", \"-c\", \"echo '{}' >&3\"]\n",
    );
    dir.create_dir("runs");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("child done"), "child failed:\n{stdout}\n{stderr}");
    // The record, on the host: one per execution, the second SETUP_FAILED.
    let log = std::fs::read_to_string(dir.join("audit.jsonl")).expect("audit log");
    let records: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).expect("a record")).collect();
    let of = |id: &str| records.iter().filter(|r| r["request_id"] == id).collect::<Vec<_>>();
    assert_eq!(of("CONTROL").len(), 1, "{log}");
    assert_eq!(of("CONTROL")[0]["outcome"], "ok", "{log}");
    assert_eq!(of("NOFILE").len(), 1, "{log}");
    assert_eq!(of("NOFILE")[0]["outcome"], "SETUP_FAILED", "{log}");
}
