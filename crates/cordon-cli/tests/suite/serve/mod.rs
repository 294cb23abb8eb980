//! `cordon serve` driven as a running service: spawned on a free loopback
//! port, talked to over real sockets, signalled by pid.
//!
//! [`Service`] owns one service (its folder, config, secrets, plugins and
//! audit log) and SIGKILLs it when dropped. [`http`] is a minimal HTTP/1.1
//! client (one request per connection), so the tests see exactly what goes
//! over the wire.

mod auth;
mod connections;
mod executions;
mod idempotency;
mod lifecycle;
mod pool;
mod queue;
mod queue_cluster;
mod registry;
mod tenants;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cordon_testkit::{poll_until, Dir};
use sha2::{Digest, Sha256};

use super::cordon_bin;
use super::netns::{in_netns, Relay};

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdefghijklmnopqrstuvwx";
pub const INTERNAL_SECRET: &str = "test-internal-secret-0123456789abcdefghijklmnopqrs";
/// Client `ci` of tenant `acme`, `ops` of tenant `beta`.
pub const CLIENT_SECRET: &str = "client-secret-of-acme-ci-0123456789";
pub const BETA_SECRET: &str = "client-secret-of-beta-ops-0123456789";
/// The static service token `deploy` of tenant `acme`.
pub const SERVICE_TOKEN: &str = "service-token-acme-deploy-0123456789";
/// The plugin every service has.
pub const PLUGIN: &str = "@test/gw";

/// Where runs of a service with `run_root = ROOT` make their folders:
/// `ROOT/cordon-runs-UID`.
pub fn runs_folder(root: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    root.join(format!("cordon-runs-{uid}"))
}

pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// `error.code` and `error.message` of an error body.
    #[track_caller]
    pub fn error(&self) -> (String, String) {
        let v = self.json();
        let code = v["error"]["code"].as_str().unwrap_or_else(|| panic!("no error.code: {self:?}")).to_owned();
        let message = v["error"]["message"].as_str().unwrap_or_else(|| panic!("no error.message: {self:?}")).to_owned();
        (code, message)
    }
}

/// `n` clients that each send `POST /v1/executions` with `body` as bearer
/// `token`, and hang up at once (without reading the answer).
pub fn hang_up(addr: SocketAddr, token: &str, body: &serde_json::Value, n: usize) {
    let body = body.to_string();
    let request = format!(
        "POST /v1/executions HTTP/1.1\r\nHost: cordon\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for _ in 0..n {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(request.as_bytes()).expect("send");
    }
}

/// One request on its own connection; `headers` are added to `Host` and
/// `Connection: close`.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(120))).expect("read timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send head");
    // The server may answer (413) before reading all of a large body.
    let _ = s.write_all(body);
    read_response(&mut s)
}

pub fn read_response(s: &mut TcpStream) -> Resp {
    let mut raw = vec![];
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no complete response: {text:?}"));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    Resp { status, headers, body: body.to_owned() }
}

/// Settings a test changes.
#[derive(Clone)]
pub struct Options {
    pub server: String,
    pub acme: String,
    pub jwt_secret: String,
    pub internal_secret: String,
    pub extra_args: Vec<String>,
    /// Plugins from a registry at `DIR/home` (installed by the test) instead
    /// of the plugin folder.
    pub registry: bool,
    /// Runs the service inside the network namespace of this process (a
    /// test-made [`crate::suite::netns::Netns`]); the test reaches it
    /// through a [`Relay`].
    pub netns: Option<u32>,
    /// Whether the configuration has `[queue] result_keys` (the folder
    /// `DIR/result-keys`) and a gateway with `--queue` gets its own
    /// `--result-key`.
    pub result_keys: ResultKeys,
    /// The service's open files limit, soft and hard (set by
    /// `/usr/bin/prlimit` for the service alone).
    pub nofile: Option<u64>,
    /// The JWT and internal secrets come from files `DIR/etc/jwt.secret`
    /// and `DIR/etc/internal.secret` (`CORDON_*_SECRET_FILE`), not from
    /// the variables.
    pub secret_files: bool,
}

/// See [`Options::result_keys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultKeys {
    /// Configured (the default).
    Trusted,
    /// Neither.
    Absent,
}

/// The folder of trusted result keys of the service whose plugin folder is
/// `plugins` (workers are given that folder).
pub fn trusted_keys_of(plugins: &std::path::Path) -> PathBuf {
    plugins.parent().expect("the plugin folder is in the service's folder").join("result-keys")
}

/// A result signing key `DIR/result.key` for role `name` (made with
/// `cordon key gen` unless it exists: a restarted role keeps it), its public
/// key copied into `trusted` (created if needed) unless `trusted` is `None`.
pub fn result_key(dir: &std::path::Path, name: &str, trusted: Option<&std::path::Path>) -> PathBuf {
    let key = dir.join("result.key");
    if !key.exists() {
        let out = Command::new(cordon_bin()).args(["key", "gen", "--out"]).arg(&key).output().expect("cordon key gen");
        assert!(out.status.success(), "cordon key gen: {}", String::from_utf8_lossy(&out.stderr));
    }
    if let Some(folder) = trusted {
        std::fs::create_dir_all(folder).expect("trusted keys folder");
        std::fs::copy(dir.join("result.key.pub"), folder.join(format!("{name}.pub"))).expect("copy the public key");
    }
    key
}

impl Default for Options {
    fn default() -> Self {
        Options {
            server: String::new(),
            acme: "max_concurrent = 8\nrate_per_sec = 1000\n".into(),
            jwt_secret: JWT_SECRET.into(),
            internal_secret: INTERNAL_SECRET.into(),
            extra_args: vec![],
            registry: false,
            netns: None,
            result_keys: ResultKeys::Trusted,
            nofile: None,
            secret_files: false,
        }
    }
}

/// A running `cordon serve`.
pub struct Service {
    pub dir: Dir,
    pub addr: SocketAddr,
    child: Option<Child>,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
    opts: Options,
    /// The thread that reads the service's stderr into [`Service::stderr`].
    reader: Option<std::thread::JoinHandle<()>>,
    /// How the test reaches a service in a network namespace.
    _relay: Option<Relay>,
}

/// The test plugin's handlers. `empty` writes `{}`; `echo` its input;
/// `sleep` sleeps for the marker given as `{"s": "31.xxx"}` then writes `{}`;
/// `nap` sleeps 1 s then writes `{}`; `art` stores its input as the
/// artifact `report.txt` and writes `{}`.
pub fn write_plugin(dir: &Dir) {
    dir.create(
        "plugins/gw/cordon.toml",
        format!("id = \"{PLUGIN}\"\nversion = \"2.0.0\"\n[handlers.empty]\ncommand = [\"./empty.sh\"]\n[handlers.echo]\ncommand = [\"./echo.sh\"]\n[handlers.sleep]\ncommand = [\"./sleep.sh\"]\n[handlers.nap]\ncommand = [\"./nap.sh\"]\n[handlers.art]\ncommand = [\"./art.sh\"]\n[quotas]\ntimeout_ms = 60000\n"),
    );
    dir.create_executable("plugins/gw/empty.sh", "#!/bin/sh\nprintf '{}' >&3\n");
    dir.create_executable("plugins/gw/echo.sh", "#!/bin/sh\ncat >&3\n");
    dir.create_executable(
        "plugins/gw/sleep.sh",
        "#!/bin/sh\nread -r line\ns=$(printf %s \"$line\" | sed 's/.*\"s\": *\"\\([0-9.]*\\)\".*/\\1/')\nsleep \"$s\" || exit 3\nprintf '{}' >&3\n",
    );
    dir.create_executable("plugins/gw/art.sh", "#!/bin/sh\ncat > \"$CORDON_ARTIFACTS/report.txt\"\nprintf '{}' >&3\n");
    dir.create_executable("plugins/gw/nap.sh", "#!/bin/sh\nsleep 1\nprintf '{\"napped\": true}' >&3\n");
    dir.create(
        "plugins/off/cordon.toml",
        "id = \"@test/off\"\nversion = \"1.0.0\"\n[handlers.empty]\ncommand = [\"./empty.sh\"]\n",
    );
    dir.create_executable("plugins/off/empty.sh", "#!/bin/sh\nprintf '{}' >&3\n");
}

impl Service {
    pub fn start(label: &str) -> Service {
        Service::start_with(label, Options::default())
    }

    pub fn start_with(label: &str, opts: Options) -> Service {
        let dir = Dir::new(label);
        write_plugin(&dir);
        let mut s =
            Service::spawn(dir, opts).unwrap_or_else(|(code, err)| panic!("service did not start ({code:?}):\n{err}"));
        s.wait_ready();
        s
    }

    fn config(dir: &Dir, opts: &Options) -> PathBuf {
        let text = format!(
            "[server]\n{catalog}\naudit_log = \"{log}\"\nrun_root = \"{root}\"\n{server}\n\
             [tenants.acme]\n{acme}\n[tenants.acme.clients.ci]\nsecret_sha256 = \"{ci}\"\n[tenants.acme.tokens.deploy]\nsha256 = \"{deploy}\"\n\
             [tenants.beta]\nmax_concurrent = 8\nrate_per_sec = 1000\n[tenants.beta.clients.ops]\nsecret_sha256 = \"{ops}\"\n",
            catalog = if opts.registry {
                format!("home = \"{}\"", dir.join("home").display())
            } else {
                format!("plugins = \"{}\"\ndisabled = [\"@test/off\"]", dir.join("plugins").display())
            },
            log = dir.join("audit.jsonl").display(),
            root = dir.path().display(),
            server = opts.server,
            acme = opts.acme,
            ci = sha256_hex(CLIENT_SECRET),
            deploy = sha256_hex(SERVICE_TOKEN),
            ops = sha256_hex(BETA_SECRET),
        );
        let text = match opts.result_keys {
            ResultKeys::Trusted => format!("{text}[queue]\nresult_keys = \"{}\"\n", dir.join("result-keys").display()),
            ResultKeys::Absent => text,
        };
        dir.create("config.toml", text)
    }

    /// Starts the service; on failure, its exit code and stderr.
    pub fn spawn(dir: Dir, opts: Options) -> Result<Service, (Option<i32>, String)> {
        let config = Service::config(&dir, &opts);
        let mut cmd = match (opts.netns, opts.nofile) {
            (Some(pid), _) => in_netns(pid, cordon_bin()),
            (None, Some(n)) => {
                let mut c = Command::new("/usr/bin/prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(cordon_bin());
                c
            }
            (None, None) => Command::new(cordon_bin()),
        };
        cmd.args(["serve", "--config"]).arg(&config);
        if !opts.extra_args.iter().any(|a| a.starts_with("--listen")) {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(&opts.extra_args);
        let queued = opts.extra_args.iter().any(|a| a == "--queue");
        if queued && opts.result_keys == ResultKeys::Trusted && !opts.extra_args.iter().any(|a| a == "--result-key") {
            let trusted = dir.join("result-keys");
            cmd.arg("--result-key").arg(result_key(dir.path(), "gateway", Some(&trusted)));
        }
        cmd.env_remove("CORDON_JWT_SECRET_FILE").env_remove("CORDON_INTERNAL_SECRET_FILE");
        cmd.env("CORDON_JWT_SECRET", &opts.jwt_secret).env("CORDON_INTERNAL_SECRET", &opts.internal_secret);
        if opts.secret_files {
            let jwt = dir.create("etc/jwt.secret", format!("{}\n", opts.jwt_secret));
            let internal = dir.create("etc/internal.secret", format!("{}\n", opts.internal_secret));
            cmd.env_remove("CORDON_JWT_SECRET").env_remove("CORDON_INTERNAL_SECRET");
            cmd.env("CORDON_JWT_SECRET_FILE", jwt).env("CORDON_INTERNAL_SECRET_FILE", internal);
        }
        cmd.env("HOME", dir.path()).env_remove("XDG_DATA_HOME").env_remove("CORDON_AUDIT_LOG");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn cordon serve");
        let stderr = child.stderr.take().expect("stderr pipe");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
                sink.lock().expect("log lock").push_str(&format!("{line}\n"));
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => {
                let addr = addr.parse().expect("listening address");
                let relay = opts.netns.map(|pid| Relay::start(pid, addr, dir.path()));
                let addr = relay.as_ref().map_or(addr, |r| r.addr);
                Ok(Service { dir, addr, child: Some(child), stderr: log, opts, reader: Some(reader), _relay: relay })
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok().and_then(|s| s.code());
                // The pipe is closed now: the reader has everything.
                let _ = reader.join();
                let text = log.lock().expect("log lock").clone();
                Err((status, text))
            }
        }
    }

    fn wait_ready(&mut self) {
        let addr = self.addr;
        let ready = poll_until(Duration::from_secs(30), || http(addr, "GET", "/readyz", &[], b"").status == 200);
        assert!(ready, "the service never became ready: {:?}", http(addr, "GET", "/readyz", &[], b""));
    }

    /// Starts the same service again (same folder, config, audit log).
    pub fn restart(mut self) -> Service {
        self.kill();
        let opts = self.opts.clone();
        let dir = std::mem::replace(&mut self.dir, Dir::new("serve-placeholder"));
        let mut s = Service::spawn(dir, opts).unwrap_or_else(|(c, e)| panic!("restart failed ({c:?}): {e}"));
        s.wait_ready();
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.pid().to_string()]).status().expect("kill");
        assert!(ok.success(), "kill -{sig} {}", self.pid());
    }

    /// SIGKILLs the service (if running) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the service to exit by itself; its exit code.
    /// Waits for the service to exit; its exit code. Its log is then
    /// complete: the reader thread has seen the end of its stderr (bounded:
    /// 10 s, in case something of the service still held the pipe).
    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut c = self.child.take().expect("running");
        let code = c.wait().expect("wait").code();
        if let Some(reader) = self.reader.take() {
            if cordon_testkit::poll_until(Duration::from_secs(10), || reader.is_finished()) {
                let _ = reader.join();
            }
        }
        code
    }

    pub fn get(&self, path: &str, bearer: &str) -> Resp {
        http(self.addr, "GET", path, &[("Authorization", &format!("Bearer {bearer}"))], b"")
    }

    pub fn delete(&self, path: &str, bearer: &str) -> Resp {
        http(self.addr, "DELETE", path, &[("Authorization", &format!("Bearer {bearer}"))], b"")
    }

    pub fn post_json(&self, path: &str, bearer: &str, body: &serde_json::Value) -> Resp {
        let auth = format!("Bearer {bearer}");
        http(
            self.addr,
            "POST",
            path,
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    pub fn post_form(&self, path: &str, form: &str) -> Resp {
        http(self.addr, "POST", path, &[("Content-Type", "application/x-www-form-urlencoded")], form.as_bytes())
    }

    /// A client-credentials token pair for `ci` of `acme`.
    pub fn sign_in(&self) -> serde_json::Value {
        self.sign_in_as("ci", CLIENT_SECRET)
    }

    pub fn sign_in_as(&self, client: &str, secret: &str) -> serde_json::Value {
        let r = self.post_form(
            "/v1/token",
            &format!("grant_type=client_credentials&client_id={client}&client_secret={secret}"),
        );
        assert_eq!(r.status, 200, "{r:?}");
        r.json()
    }

    pub fn access_token(&self) -> String {
        self.sign_in()["access_token"].as_str().expect("access_token").to_owned()
    }

    /// Runs `handler` of the test plugin; the response.
    pub fn execute(&self, bearer: &str, handler: &str, input: serde_json::Value, wait_ms: Option<u64>) -> Resp {
        let mut body = serde_json::json!({"plugin": PLUGIN, "handler": handler, "input": input});
        if let Some(w) = wait_ms {
            body["wait_ms"] = w.into();
        }
        self.post_json("/v1/executions", bearer, &body)
    }

    /// The audit log's records.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit record"))
            .collect()
    }

    /// The records of execution `id`.
    pub fn records_of(&self, id: &str) -> Vec<serde_json::Value> {
        self.audit_records().into_iter().filter(|r| r["request_id"] == id).collect()
    }

    pub fn log(&self) -> String {
        self.stderr.lock().expect("log lock").clone()
    }

    /// The service's log once it holds every one of `texts`, or as it is
    /// after 10 s: its stderr is read by a thread, so a line the service
    /// wrote before an answer may reach [`Service::log`] after the answer.
    pub fn log_with(&self, texts: &[&str]) -> String {
        cordon_testkit::poll_until(std::time::Duration::from_secs(10), || {
            let log = self.log();
            texts.iter().all(|t| log.contains(t))
        });
        self.log()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
