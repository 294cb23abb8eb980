//! Tenants of one service never share a plugin's data folder (review s12
//! R12-10): a plugin that extends the `platform` preset gets, for each
//! tenant, `<data>/tenants/<tenant>/@scope/name` (0700, the service's
//! own), made for that tenant's executions only: in a fresh sandbox, in a
//! parked one of the warm pool, and on a `cordon worker`. Checked from the
//! host: which folder holds which tenant's note, modes and owner, and that
//! the plugin's one shared folder (`data/@scope/name`) holds nothing.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cordon_testkit::{poll_until, Dir};
use serde_json::json;

use super::queue::{Nats, Role};
use super::{Options, Service, BETA_SECRET};
use crate::suite::cordon;

const NOTES: &str = "@test/notes";

/// The notes plugin's manifest and handlers: `add` appends its input's
/// `text` (one line) to `notes` in its data folder; `list` answers every
/// line there and the folder; `peek` answers what `cat` of the input's
/// `path` printed (empty when refused) and whether it could write a file
/// beside it.
fn notes_plugin(folder: &Path, version: &str) {
    std::fs::create_dir_all(folder).unwrap();
    std::fs::write(
        folder.join("cordon.toml"),
        format!(
            "id = \"{NOTES}\"\nversion = \"{version}\"\nextends = [\"platform\"]\n\
             [handlers.add]\ncommand = [\"./add.sh\"]\n[handlers.list]\ncommand = [\"./list.sh\"]\n\
             [handlers.peek]\ncommand = [\"./peek.sh\"]\n"
        ),
    )
    .unwrap();
    let field = |name: &str| format!("$(sed 's/.*\"{name}\": *\"\\([^\"]*\\)\".*/\\1/')");
    let scripts = [
        (
            "add.sh",
            format!(
                "#!/bin/sh\nt={}\nprintf '%s\\n' \"$t\" >> \"$CORDON_DATA_DIR/notes\"\nprintf '{{}}' >&3\n",
                field("text")
            ),
        ),
        (
            "list.sh",
            "#!/bin/sh\nn=$(cat \"$CORDON_DATA_DIR/notes\" 2>/dev/null | tr '\\n' ' ')\n\
             printf '{\"notes\": \"%s\", \"dir\": \"%s\"}' \"$n\" \"$CORDON_DATA_DIR\" >&3\n"
                .to_owned(),
        ),
        (
            "peek.sh",
            format!(
                "#!/bin/sh\np={}\nr=$(cat \"$p/notes\" 2>/dev/null | tr '\\n' ' ')\n\
                 w=no; (echo planted > \"$p/planted\") 2>/dev/null && w=yes\n\
                 printf '{{\"read\": \"%s\", \"wrote\": \"%s\"}}' \"$r\" \"$w\" >&3\n",
                field("path")
            ),
        ),
    ];
    for (name, text) in scripts {
        let p = folder.join(name);
        std::fs::write(&p, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// cordon's data folder of a service or worker whose HOME is `home`.
fn data_of(home: &Path) -> PathBuf {
    home.join(".local/share/cordon")
}

/// Runs `handler` of the notes plugin as `token`; its `data`.
#[track_caller]
fn notes(s: &Service, token: &str, handler: &str, input: serde_json::Value) -> serde_json::Value {
    let r = s.post_json(
        "/v1/executions",
        token,
        &json!({"plugin": NOTES, "handler": handler, "input": input, "wait_ms": 30_000}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", s.log());
    let v = r.json();
    assert_eq!(v["ok"], true, "{v:#}\n{}", s.log());
    v["data"].clone()
}

/// What the host sees of one tenant's data folder: its path, mode and
/// owner, each folder on the way from cordon's data folder 0700.
#[track_caller]
fn assert_private(data: &Path, tenant: &str) -> PathBuf {
    let folder = data.join("tenants").join(tenant).join("@test/notes");
    let mut at = data.to_owned();
    for part in ["tenants", tenant, "@test", "notes"] {
        at = at.join(part);
        let m = std::fs::symlink_metadata(&at).unwrap_or_else(|e| panic!("{}: {e}", at.display()));
        assert!(m.is_dir(), "{} is not a folder", at.display());
        assert_eq!(m.mode() & 0o7777, 0o700, "{} is {:o}", at.display(), m.mode() & 0o7777);
        assert_eq!(m.uid(), own_uid(), "{} is not the service's", at.display());
    }
    folder
}

/// This process's uid (the service runs as it): the owner of /proc/self.
fn own_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// The two tenants' notes in the folders the host finds them in, and
/// nothing in the plugin's shared folder.
#[track_caller]
fn assert_apart(data: &Path, acme_note: &str, beta_note: &str) {
    let acme = std::fs::read_to_string(assert_private(data, "acme").join("notes")).unwrap();
    let beta = std::fs::read_to_string(assert_private(data, "beta").join("notes")).unwrap();
    assert_eq!(acme, format!("{acme_note}\n"));
    assert_eq!(beta, format!("{beta_note}\n"));
    let shared = data.join("data/@test/notes");
    assert!(!shared.exists(), "the plugin's shared data folder {} was made", shared.display());
}

/// A fresh sandbox per execution (a folder catalog, never pooled). Tenant
/// acme adds a note; tenant beta lists none, and a `peek` of acme's
/// folder by its host path reads nothing and writes nothing there (the
/// folder is not granted to beta's run); beta adds its own; acme lists
/// only its own. On the host: each note is in its tenant's folder (0700,
/// the service's uid), the plugin's shared folder was never made. Fails
/// on main (6206ba5): beta lists acme's note (one shared folder).
#[test]
fn each_tenant_has_its_own_data_folder_and_reaches_no_other() {
    let s = Service::start("tenants-fresh");
    notes_plugin(&s.dir.join("plugins/notes"), "1.0.0");
    let acme = s.access_token();
    let beta = s.sign_in_as("ops", BETA_SECRET)["access_token"].as_str().unwrap().to_owned();
    let data = data_of(s.dir.path());
    notes(&s, &acme, "add", json!({"text": "acme-secret-acquisition"}));
    let listed = notes(&s, &beta, "list", json!({}));
    assert_eq!(listed["notes"], "", "tenant beta read tenant acme's note: {listed}");
    let acme_dir = data.join("tenants/acme/@test/notes");
    assert_eq!(listed["dir"], data.join("tenants/beta/@test/notes").display().to_string(), "{listed}");
    let peeked = notes(&s, &beta, "peek", json!({"path": acme_dir.display().to_string()}));
    assert_eq!(peeked, json!({"read": "", "wrote": "no"}), "beta reached acme's folder");
    assert!(!acme_dir.join("planted").exists());
    notes(&s, &beta, "add", json!({"text": "beta-own-note"}));
    let listed = notes(&s, &acme, "list", json!({}));
    assert_eq!(listed["notes"], "acme-secret-acquisition ", "{listed}");
    // Control: acme's own peek reads its folder (the peek can read).
    let own = notes(&s, &acme, "peek", json!({"path": acme_dir.display().to_string()}));
    assert_eq!(own["read"], "acme-secret-acquisition ", "{own}");
    std::fs::remove_file(acme_dir.join("planted")).unwrap();
    assert_apart(&data, "acme-secret-acquisition", "beta-own-note");
}

fn metric(s: &Service, name: &str) -> u64 {
    let text = super::http(s.addr, "GET", "/metrics", &[], b"").body;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Installs the plugin folder `folder` into the service's registry.
fn install(s: &Service, folder: &Path) {
    let package = s.dir.join("notes.tar.gz");
    cordon().args(["plugin", "pack"]).arg(folder).arg("--out").arg(&package).run().assert_success();
    cordon()
        .env("CORDON_HOME", s.dir.join("home"))
        .args(["plugin", "install"])
        .arg(&package)
        .args(["--allow-unsigned", "--approve"])
        .run()
        .assert_success();
}

/// The warm pool parks a run of a plugin with a data folder for one
/// tenant: acme's execution (a miss) has the pool park the next for acme,
/// with acme's folder granted; beta's execution does not take it (beta
/// lists no note, a miss: the parked count stays), acme's next does (a
/// hit) and lists acme's note. On the host the notes are apart as in the
/// fresh case. Fails on main: beta lists acme's note.
#[test]
fn a_sandbox_parked_for_one_tenant_is_never_started_for_another() {
    let s = Service::start_with(
        "tenants-pool",
        Options { registry: true, server: "pool_size = 1\npool_ttl_ms = 600000\n".into(), ..Options::default() },
    );
    let src = s.dir.join("notes-src");
    notes_plugin(&src, "1.0.0");
    install(&s, &src);
    let acme = s.access_token();
    let beta = s.sign_in_as("ops", BETA_SECRET)["access_token"].as_str().unwrap().to_owned();
    let data = data_of(s.dir.path());
    notes(&s, &acme, "add", json!({"text": "acme-pooled-secret"}));
    // The pool parks acme's `add`; now `list`, used once by acme, for acme.
    notes(&s, &acme, "list", json!({}));
    let parked = poll_until(Duration::from_secs(30), || metric(&s, "cordon_pool_parked") == 2);
    assert!(parked, "the pool did not park acme's add and list: {}\n{}", metric(&s, "cordon_pool_parked"), s.log());
    let hits = metric(&s, "cordon_pool_hits_total");
    let listed = notes(&s, &beta, "list", json!({}));
    assert_eq!(listed["notes"], "", "tenant beta ran in acme's parked sandbox or folder: {listed}");
    assert_eq!(metric(&s, "cordon_pool_hits_total"), hits, "beta's list took a parked sandbox (acme's)");
    notes(&s, &beta, "add", json!({"text": "beta-pooled-note"}));
    let listed = notes(&s, &acme, "list", json!({}));
    assert_eq!(listed["notes"], "acme-pooled-secret ", "{listed}");
    assert_eq!(metric(&s, "cordon_pool_hits_total"), hits + 1, "acme's list did not take acme's parked sandbox");
    assert_apart(&data, "acme-pooled-secret", "beta-pooled-note");
}

/// On the queue, a `cordon worker` gives each tenant its own data folder
/// on its host the same way: acme adds, beta lists none and adds its own;
/// on the worker's host the notes are apart. Fails on main: beta lists
/// acme's note.
#[test]
fn a_worker_gives_each_tenant_its_own_data_folder() {
    let nats = Nats::start("tenants-nats");
    let s = Service::start_with(
        "tenants-queue",
        Options { extra_args: vec!["--queue".into(), nats.url()], ..Options::default() },
    );
    notes_plugin(&s.dir.join("plugins/notes"), "1.0.0");
    let w = Role::worker("tw1", &nats.url(), &s.dir.join("plugins"), 2);
    let acme = s.access_token();
    let beta = s.sign_in_as("ops", BETA_SECRET)["access_token"].as_str().unwrap().to_owned();
    notes(&s, &acme, "add", json!({"text": "acme-queued-secret"}));
    let listed = notes(&s, &beta, "list", json!({}));
    assert_eq!(listed["notes"], "", "tenant beta read tenant acme's note on the worker: {listed}\n{}", w.log());
    notes(&s, &beta, "add", json!({"text": "beta-queued-note"}));
    let listed = notes(&s, &acme, "list", json!({}));
    assert_eq!(listed["notes"], "acme-queued-secret ", "{listed}");
    assert_apart(&data_of(w.dir.path()), "acme-queued-secret", "beta-queued-note");
}

/// A tenant named `..` would name the folder that holds every tenant's
/// (`tenants/..`): the service refuses to start, naming the name and its
/// line in the configuration. Fails on main (it starts).
#[test]
fn a_service_with_a_tenant_named_dot_dot_refuses_to_start() {
    let dir = Dir::new("tenants-dotdot");
    super::write_plugin(&dir);
    let acme = "max_concurrent = 8\nrate_per_sec = 1000\n[tenants.\"..\"]\nmax_concurrent = 1\nrate_per_sec = 1\n";
    let Err((code, err)) = Service::spawn(dir, Options { acme: acme.into(), ..Options::default() }) else {
        panic!("the service started with a tenant named `..`");
    };
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("config.toml:10:") && err.contains("tenant name `..` cannot name a data folder"), "{err}");
}

/// `POST /v1/executions` of the test plugin's `art` (stores its input as
/// `report.txt`) with an `Idempotency-Key`; the finished body.
#[track_caller]
fn art(s: &Service, token: &str, key: &str, text: &str) -> serde_json::Value {
    let auth = format!("Bearer {token}");
    let body = json!({"plugin": super::PLUGIN, "handler": "art", "input": text, "wait_ms": 30_000}).to_string();
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json"), ("Idempotency-Key", key)];
    let r = super::http(s.addr, "POST", "/v1/executions", &headers, body.as_bytes());
    assert_eq!(r.status, 200, "{r:?}\n{}", s.log());
    let v = r.json();
    assert_eq!(v["ok"], true, "{v:#}");
    v
}

/// Where `v`'s one artifact is stored, and what it holds (the JSON string
/// the handler was given).
#[track_caller]
fn stored(v: &serde_json::Value) -> (String, String) {
    assert_eq!(v["warnings"], json!([]), "{v:#}");
    let at = v["artifacts"][0]["stored_at"].as_str().unwrap_or_else(|| panic!("no artifact: {v:#}")).to_owned();
    let text = std::fs::read_to_string(&at).unwrap_or_else(|e| panic!("{at}: {e}"));
    (at.clone(), serde_json::from_str(&text).unwrap_or_else(|e| panic!("{at}: {e}: {text:?}")))
}

/// On the queue a request's id is its `Idempotency-Key`, so two tenants
/// using one key ran with one id on a worker, and their artifacts went to
/// one folder of the worker's store: tenant beta's `report.txt` was there
/// first, tenant acme's was "not stored" (a warning naming beta's file)
/// and acme's folder held beta's file (review s9 F4, queue mode). A
/// service's store is per tenant now (`tenants/<tenant>/…`): each gets its
/// own, on the worker's host. Fails on main (acme's warning).
#[test]
fn two_tenants_with_one_idempotency_key_on_the_queue_keep_their_own_artifacts() {
    let nats = Nats::start("tenants-art-nats");
    let s = Service::start_with(
        "tenants-art",
        Options { extra_args: vec!["--queue".into(), nats.url()], ..Options::default() },
    );
    let w = Role::worker("taw1", &nats.url(), &s.dir.join("plugins"), 2);
    let acme = s.access_token();
    let beta = s.sign_in_as("ops", BETA_SECRET)["access_token"].as_str().unwrap().to_owned();
    let key = "invoice-2026-0042";
    let (beta_at, beta_text) = stored(&art(&s, &beta, key, "EVIL from beta"));
    assert_eq!(beta_text, "EVIL from beta");
    let (acme_at, acme_text) = stored(&art(&s, &acme, key, "GOOD from acme"));
    assert_eq!(acme_text, "GOOD from acme");
    let store = data_of(w.dir.path()).join("artifacts/tenants");
    assert_eq!(Path::new(&acme_at), store.join(format!("acme/{}/2.0.0/art/{key}/report.txt", super::PLUGIN)));
    assert_eq!(Path::new(&beta_at), store.join(format!("beta/{}/2.0.0/art/{key}/report.txt", super::PLUGIN)));
    assert_eq!(std::fs::read_to_string(&beta_at).unwrap(), "\"EVIL from beta\"");
}

/// The folder named `name` somewhere below `root`.
fn find_dir(root: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(root).ok()?.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if e.file_name() == name {
            return Some(e.path());
        }
        if let Some(found) = find_dir(&e.path(), name) {
            return Some(found);
        }
    }
    None
}

/// On the queue two tenants' runs with one key have one id on a worker,
/// and so had one run folder (`cordon-exec-<id>`): while tenant beta's run
/// with the key sleeps, tenant acme's with the same key could not create
/// its folder and ended SETUP_FAILED, stored as the key's result for acme.
/// Each tenant's runs make their folders in a folder of their own now.
/// Beta's run is awaited until its folder exists, acme's runs and
/// succeeds; beta's is then cancelled. Fails on main (acme's
/// SETUP_FAILED).
#[test]
fn a_tenants_run_with_another_tenants_key_on_the_queue_starts_beside_it() {
    let nats = Nats::start("tenants-rundir-nats");
    let s = Service::start_with(
        "tenants-rundir",
        Options { extra_args: vec!["--queue".into(), nats.url()], ..Options::default() },
    );
    let w = Role::worker("trw1", &nats.url(), &s.dir.join("plugins"), 2);
    let acme = s.access_token();
    let beta = s.sign_in_as("ops", BETA_SECRET)["access_token"].as_str().unwrap().to_owned();
    let key = "nightly-report-7";
    let auth = format!("Bearer {beta}");
    let body = json!({"plugin": super::PLUGIN, "handler": "sleep", "input": {"s": super::queue::sleep_marker(60)}, "wait_ms": 0});
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json"), ("Idempotency-Key", key)];
    let r = super::http(s.addr, "POST", "/v1/executions", &headers, body.to_string().as_bytes());
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json()["id"].as_str().expect("id").to_owned();
    assert_eq!(id, key, "on the queue the key is the id");
    let folder = format!("cordon-exec-{id}");
    let running = poll_until(Duration::from_secs(60), || find_dir(w.dir.path(), &folder).is_some());
    assert!(running, "beta's run folder never appeared on the worker:\n{}", w.log());
    let (_, text) = stored(&art(&s, &acme, key, "acme beside beta"));
    assert_eq!(text, "acme beside beta");
    let cancelled = s.delete(&format!("/v1/executions/{id}"), &beta);
    assert!(cancelled.status < 300, "{cancelled:?}");
}
