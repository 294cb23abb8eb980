//! `cordon serve --queue` on a three-node NATS JetStream cluster (streams
//! and bucket R3), each node in a network namespace of its own, under load:
//! one node SIGKILLed, one node cut off from the others and from every
//! client. Each checks every request's one result by id, that the audit
//! logs of every role agree with it, and that the work stream ends empty.
//!
//! The network is the test's own: a "switch" namespace holds a bridge, each
//! node's namespace (10.77.0.1-3) and the clients' (10.77.0.10, the gateway
//! and the workers) hang on it by a veth pair. A partition is the node's
//! switch port set down: a black hole, no reset, as a pulled cable. The
//! test reaches the gateway through a [`crate::suite::netns::Relay`]. The
//! host's network configuration is never touched; every namespace goes with
//! its holder process when the test ends.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cordon_testkit::{poll_until, Dir};
use serde_json::json;

use super::queue::{records_of, result_of, stream_in, submit, Role, Wire};
use super::{Options, Service};
use crate::suite::netns::{Netns, Relay};

const NODES: usize = 3;

/// Node `i`'s address (1-based).
fn node_ip(i: usize) -> String {
    format!("10.77.0.{i}")
}

/// One nats-server of the cluster, in its own namespace.
struct Node {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    config: PathBuf,
    ns: Netns,
}

impl Node {
    fn start(&mut self) {
        let mut child = self
            .ns
            .command(super::queue::nats_server_bin())
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let stderr = child.stderr.take().expect("stderr pipe");
        let sink = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push_str(&format!("{line}\n"));
            }
        });
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Three nats-servers with JetStream in one cluster, in namespaces this
/// test made; torn down (SIGKILL by pid, namespaces released) when dropped.
pub struct Cluster {
    // Declared first: the servers die before their namespaces' holders.
    nodes: Vec<Node>,
    switch: Netns,
    /// Where the gateway and the workers run.
    pub clients: Netns,
    /// Relays to nodes' client ports, for [`Cluster::wire`].
    relays: Vec<(usize, Relay)>,
    /// The node killed or cut off, if any.
    down: Option<usize>,
    dir: Dir,
}

impl Cluster {
    pub fn start(label: &str) -> Cluster {
        let dir = Dir::new(label);
        let switch = Netns::new();
        let clients = Netns::new();
        let spaces: Vec<Netns> = (0..NODES).map(|_| Netns::new()).collect();
        // The switch: a bridge, and one port per node plus one for clients.
        let mut batch = String::from("link add br0 type bridge\nlink set br0 up\n");
        for (i, ns) in spaces.iter().enumerate() {
            let port = format!("s{}", i + 1);
            batch.push_str(&format!(
                "link add {port} type veth peer name eth0 netns {}\nlink set {port} master br0\nlink set {port} up\n",
                ns.pid()
            ));
        }
        batch.push_str(&format!(
            "link add sc type veth peer name eth0 netns {}\nlink set sc master br0\nlink set sc up\n",
            clients.pid()
        ));
        switch.ip(&batch);
        for (i, ns) in spaces.iter().enumerate() {
            ns.ip(&format!("addr add {}/24 dev eth0\nlink set eth0 up\n", node_ip(i + 1)));
        }
        clients.ip("addr add 10.77.0.10/24 dev eth0\nlink set eth0 up\n");
        let mut nodes = vec![];
        for (i, ns) in spaces.into_iter().enumerate() {
            let n = i + 1;
            let routes: Vec<String> =
                (1..=NODES).filter(|&m| m != n).map(|m| format!("\"nats-route://{}:6222\"", node_ip(m))).collect();
            // SCALE-OUT.md's server tuning: write deadline 2 s, PING 5 s.
            let config = dir.create(
                format!("n{n}.conf"),
                format!(
                    "server_name: n{n}\nlisten: \"{ip}:4222\"\nhttp: \"{ip}:8222\"\nwrite_deadline: \"2s\"\nping_interval: \"5s\"\nping_max: 2\n\
                     jetstream {{ store_dir: \"{store}\" }}\n\
                     cluster {{ name: cordon, listen: \"{ip}:6222\", routes: [{routes}] }}\n",
                    ip = node_ip(n),
                    store = dir.join(format!("store-n{n}")).display(),
                    routes = routes.join(", "),
                ),
            );
            let mut node = Node { child: None, log: Arc::default(), config, ns };
            node.start();
            nodes.push(node);
        }
        let c = Cluster { nodes, switch, clients, relays: vec![], down: None, dir };
        let ready = poll_slowly(Duration::from_secs(60), || (1..=NODES).all(|n| c.healthy(n)));
        assert!(ready, "the cluster never had a JetStream leader on every node:\n{}", c.logs());
        c
    }

    /// `nats://…` of every node, for `--queue`.
    pub fn urls(&self) -> String {
        (1..=NODES).map(|n| format!("nats://{}:4222", node_ip(n))).collect::<Vec<_>>().join(",")
    }

    /// Node `n`'s monitoring endpoint `path` (JSON), from the clients'
    /// namespace; `None` when it does not answer.
    fn monitor(&self, n: usize, path: &str) -> Option<serde_json::Value> {
        let body = self.clients.curl(&format!("http://{}:8222{path}", node_ip(n)))?;
        serde_json::from_str(&body).ok()
    }

    /// Node `n` answers `/healthz` ok: JetStream is enabled and current there.
    fn healthy(&self, n: usize) -> bool {
        self.monitor(n, "/healthz").is_some_and(|v| v["status"] == "ok")
            && self
                .monitor(n, "/jsz")
                .is_some_and(|v| v["meta_cluster"]["leader"].as_str().is_some_and(|l| !l.is_empty()))
    }

    /// Stream `name` as node `n` reports it.
    fn stream(&self, n: usize, name: &str) -> Option<serde_json::Value> {
        stream_in(&self.monitor(n, "/jsz?streams=true&consumers=true")?, name)
    }

    /// The node (1-based) leading stream `name`, asked of node `of`.
    fn stream_leader(&self, of: usize, name: &str) -> Option<usize> {
        let leader = self.stream(of, name)?["cluster"]["leader"].as_str()?.to_owned();
        leader.strip_prefix('n')?.parse().ok()
    }

    /// The client connection names node `n` holds now.
    fn connections(&self, n: usize) -> Vec<String> {
        self.monitor(n, "/connz")
            .map(|v| {
                v["connections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The node holding connection `name` now.
    fn node_of(&self, name: &str) -> Option<usize> {
        (1..=NODES).find(|&n| self.connections(n).iter().any(|c| c == name))
    }

    fn kill(&mut self, n: usize) {
        self.nodes[n - 1].kill();
        self.down = Some(n);
    }

    fn restart(&mut self, n: usize) {
        self.nodes[n - 1].kill();
        self.nodes[n - 1].start();
        self.down = None;
    }

    /// Cuts node `n` off: its switch port goes down (a black hole).
    fn partition(&mut self, n: usize) {
        self.switch.ip(&format!("link set s{n} down\n"));
        self.down = Some(n);
    }

    fn heal(&mut self, n: usize) {
        self.switch.ip(&format!("link set s{n} up\n"));
        self.down = None;
    }

    /// A node that is up.
    fn survivor(&self) -> usize {
        (1..=NODES).find(|&n| Some(n) != self.down).expect("a node is up")
    }

    /// A plain NATS connection (no credentials) to a node that is up.
    fn wire(&mut self) -> Wire {
        let n = self.survivor();
        if !self.relays.iter().any(|(m, _)| *m == n) {
            let target = format!("{}:4222", node_ip(n)).parse().expect("addr");
            self.relays.push((n, Relay::start(self.clients.pid(), target, self.dir.path())));
        }
        let addr = self.relays.iter().find(|(m, _)| *m == n).expect("relay").1.addr;
        Wire::connect(addr, None).unwrap_or_else(|e| panic!("cannot reach n{n}: {e}"))
    }

    /// Node `n`'s replicas of the work stream, the results bucket and the
    /// exec consumer are current, as each group's leader reports (another
    /// node's view of a group it does not lead can be stale).
    fn caught_up(&self, n: usize) -> bool {
        let me = format!("n{n}");
        let current_in = |cluster: &serde_json::Value| -> bool {
            cluster["leader"] == me.as_str()
                || cluster["replicas"]
                    .as_array()
                    .is_some_and(|rs| rs.iter().any(|r| r["name"] == me.as_str() && r["current"] == true))
        };
        // The report of the group's leader: `group` picks the group's
        // `cluster` object out of a stream report.
        let leaders_view = |stream: &str, group: &dyn Fn(&serde_json::Value) -> Option<serde_json::Value>| {
            (1..=NODES).any(|of| {
                let Some(cluster) = self.stream(of, stream).as_ref().and_then(group) else { return false };
                cluster["leader"] == format!("n{of}").as_str() && current_in(&cluster)
            })
        };
        let stream_group = |st: &serde_json::Value| Some(st["cluster"].clone());
        let consumer_group = |st: &serde_json::Value| {
            st["consumer_detail"].as_array()?.iter().find(|c| c["name"] == "exec-p0").map(|c| c["cluster"].clone())
        };
        leaders_view("CORDON_EXEC", &stream_group)
            && leaders_view("KV_cordon_results", &stream_group)
            && leaders_view("CORDON_EXEC", &consumer_group)
    }

    fn logs(&self) -> String {
        let mut out = format!("cluster in {}\n", self.dir.path().display());
        for n in 1..=NODES {
            out.push_str(&format!("--- n{n} CORDON_EXEC: {:?}\n", self.stream(n, "CORDON_EXEC")));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            out.push_str(&format!("--- n{}:\n{}", i + 1, node.log.lock().expect("log lock")));
        }
        out
    }
}

/// A gateway in the clients' namespace on `c`, streams and bucket R3.
fn gateway(label: &str, c: &Cluster) -> Service {
    let extra_args = vec!["--queue".to_owned(), c.urls(), "--queue-replicas".into(), "3".into()];
    Service::start_with(label, Options { extra_args, netns: Some(c.clients.pid()), ..Options::default() })
}

/// Two workers (4 slots each) and a dead-letter handler in the clients'
/// namespace, as on three more hosts.
fn roles(c: &Cluster, s: &Service) -> [Role; 3] {
    let plugins = s.dir.join("plugins");
    let ns = Some(c.clients.pid());
    [
        Role::worker_in(ns, "w1", &c.urls(), &plugins, 4),
        Role::worker_in(ns, "w2", &c.urls(), &plugins, 4),
        Role::dead_letters_in(ns, &c.urls(), &plugins),
    ]
}

/// Polls `cond` every 250 ms (each try asks the servers) for up to `within`.
fn poll_slowly(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    poll_until(within, || {
        let ok = cond();
        if !ok {
            std::thread::sleep(Duration::from_millis(250));
        }
        ok
    })
}

/// Submits `echo {"i": i}` as request `id`, again with the same key while
/// the gateway answers 5xx (a failover): the documented client behaviour.
#[track_caller]
fn submit_until_accepted(s: &Service, id: &str, i: usize) -> u32 {
    let mut retries = 0;
    let mut last = None;
    let accepted = poll_until(Duration::from_secs(90), || {
        let r = submit(s, "acme", Some(id), "echo", json!({ "i": i }), 0);
        let ok = r.status == 202 || r.status == 200;
        if !ok {
            assert!(r.status >= 500, "{id}: only a failover may refuse it: {r:?}");
            retries += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        last = Some(r);
        ok
    });
    assert!(accepted, "{id} never accepted: {last:?}\ngateway:\n{}", s.log());
    retries
}

/// Milliseconds since the epoch of an RFC 3339 UTC time with milliseconds
/// (`2026-12-06T18:50:01.234Z`), as audit records write it.
fn epoch_ms(time: &str) -> f64 {
    let (date, clock) = time.trim_end_matches('Z').split_once('T').expect("RFC 3339 time");
    let d: Vec<i64> = date.split('-').map(|p| p.parse().expect("date")).collect();
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    // Days from civil (Howard Hinnant's algorithm).
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let c: Vec<f64> = clock.split(':').map(|p| p.parse().expect("clock")).collect();
    #[allow(clippy::cast_precision_loss)]
    let day_ms = days as f64 * 86_400_000.0;
    day_ms + (c[0] * 3600.0 + c[1] * 60.0 + c[2]) * 1000.0
}

/// The audit logs agree with `result`, which the bucket's leader stored at
/// `recorded` (unix ms): exactly one record of its worker and attempt, with
/// its outcome; any other record of `id` is `LOST` or a run that started
/// before the result was recorded (a redelivery racing a worker that could
/// not reach the cluster; its result was refused). None started after.
#[track_caller]
fn assert_audit_agrees(logs: &[Vec<serde_json::Value>], id: &str, result: &serde_json::Value, recorded: f64) {
    let records = records_of(logs, id);
    let counted: Vec<_> = records
        .iter()
        .filter(|r| r["outcome"] != "LOST" && r["worker"] == result["worker"] && r["attempt"] == result["attempt"])
        .collect();
    assert_eq!(counted.len(), 1, "{id}: one record of the run that produced the result {result}: {records:#?}");
    let r = counted[0];
    let outcome = if result["ok"] == true { json!("ok") } else { result["error"]["code"].clone() };
    assert_eq!(r["outcome"], outcome, "{id}: record and result agree on the outcome: {r} / {result}");
    let started = epoch_ms(r["time"].as_str().expect("time"));
    assert!(started <= recorded, "{id}: the counted run started before its result was stored: {r}");
    for other in records.iter().filter(|o| *o != r && o["outcome"] != "LOST") {
        let started = epoch_ms(other["time"].as_str().expect("time"));
        assert!(started <= recorded, "{id}: a run started after the result was recorded ({recorded}): {other} / {r}");
    }
}

/// Submits `n` requests, calling `disrupt` once a third are in; then checks
/// every result and record.
fn run_under_load(
    label: &str,
    c: &mut Cluster,
    s: &Service,
    workers: &[&Role],
    n: usize,
    disrupt: &mut dyn FnMut(&mut Cluster),
) -> u32 {
    let token = s.access_token();
    let mut retries = 0;
    let ids: Vec<String> = (0..n).map(|i| format!("{label}-{}-{i}", std::process::id())).collect();
    for (i, id) in ids.iter().enumerate() {
        if i == n / 3 {
            disrupt(c);
        }
        retries += submit_until_accepted(s, id, i);
    }
    let mut logs: Vec<Vec<serde_json::Value>> = vec![];
    let results: Vec<serde_json::Value> =
        ids.iter().map(|id| result_of(s, &token, id, Duration::from_secs(120))).collect();
    for w in workers {
        logs.push(w.audit_records());
    }
    logs.push(s.audit_records());
    let mut wire = c.wire();
    for (i, (id, result)) in ids.iter().zip(&results).enumerate() {
        assert_eq!(result["ok"], true, "{id}: {result:#}");
        assert_eq!(result["data"], json!({ "i": i }), "{id}: its own input came back: {result:#}");
        let stored = wire.stored_result("acme", id);
        assert_eq!(stored["subject"], format!("$KV.cordon_results.acme.{id}").as_str(), "{stored}");
        let recorded = epoch_ms(stored["time"].as_str().expect("stored time"));
        assert_audit_agrees(&logs, id, result, recorded);
    }
    retries
}

/// The work stream holds nothing once every result is in (every delivery
/// was acknowledged), as node `n` sees it.
fn assert_work_stream_drains(c: &Cluster, n: usize) {
    let mut last = None;
    let drained = poll_slowly(Duration::from_secs(60), || {
        last = c.stream(n, "CORDON_EXEC");
        last.as_ref().is_some_and(|st| st["state"]["messages"] == 0)
    });
    assert!(drained, "CORDON_EXEC keeps messages: {last:#?}\n{}", c.logs());
}

#[test]
fn a_nats_node_sigkilled_under_load_loses_nothing_and_catches_up_after_restart() {
    let mut c = Cluster::start("qc-kill");
    let s = gateway("qc-kill-gw", &c);
    let [w1, w2, _dlq] = roles(&c, &s);
    // The leader of the work stream dies: its Raft group elects another.
    let leader = c.stream_leader(1, "CORDON_EXEC").expect("CORDON_EXEC has a leader");
    let mut killed = None;
    let retries = run_under_load("qc-kill", &mut c, &s, &[&w1, &w2], 60, &mut |c| {
        c.kill(leader);
        killed = Some(leader);
    });
    assert_eq!(killed, Some(leader));
    eprintln!("qc-kill: n{leader} (CORDON_EXEC's leader) SIGKILLed; {retries} submits retried during the failover");
    let survivor = (1..=NODES).find(|&n| n != leader).expect("a survivor");
    let new_leader = c.stream_leader(survivor, "CORDON_EXEC");
    assert!(new_leader.is_some_and(|l| l != leader), "a new leader: {new_leader:?}");
    assert_work_stream_drains(&c, survivor);
    // Restarted, the node is current again (JetStream healthy) within 30 s.
    c.restart(leader);
    let current = poll_slowly(Duration::from_secs(30), || c.caught_up(leader));
    assert!(current, "n{leader} is not current 30 s after its restart:\n{}", c.logs());
}

#[test]
fn a_partitioned_nats_node_loses_nothing_and_its_clients_fail_over() {
    let mut c = Cluster::start("qc-part");
    let s = gateway("qc-part-gw", &c);
    let [w1, w2, _dlq] = roles(&c, &s);
    // Cut off the node worker w1 is attached to.
    let mut attached = None;
    let found = poll_until(Duration::from_secs(20), || {
        attached = c.node_of("cordon-worker w1");
        attached.is_some()
    });
    assert!(found, "w1's connection is on no node:\n{}", c.logs());
    let cut = attached.expect("attached");
    // Control: before the cut, the node answers from the clients' side.
    assert!(c.healthy(cut), "n{cut} healthy before the cut");
    let retries = run_under_load("qc-part", &mut c, &s, &[&w1, &w2], 60, &mut |c| c.partition(cut));
    eprintln!("qc-part: n{cut} (w1's node) cut off; {retries} submits retried");
    // The cut node is unreachable (the partition is real), and w1 went on
    // through another node.
    assert!(c.monitor(cut, "/varz").is_none(), "n{cut} still answers through the cut");
    let moved = poll_slowly(Duration::from_secs(60), || {
        (1..=NODES).filter(|&n| n != cut).any(|n| c.connections(n).iter().any(|x| x == "cordon-worker w1"))
    });
    assert!(moved, "w1 never reconnected to another node\nw1:\n{}\n{}", w1.log(), c.logs());
    let survivor = (1..=NODES).find(|&n| n != cut).expect("a survivor");
    assert_work_stream_drains(&c, survivor);
    // Healed, the node catches up.
    c.heal(cut);
    let current = poll_slowly(Duration::from_secs(60), || c.caught_up(cut));
    assert!(current, "n{cut} is not current 60 s after the link came back:\n{}", c.logs());
}
