//! Transparent egress (issue 11): every program reaches an allowed host
//! with no proxy variable, in both modes, and a refusal is explained on
//! stderr and in the result. The "hosts" are servers this test starts on
//! the host's loopback, allowed with IP-literal patterns
//! (`--net 127.0.0.1:PORT`): the supervisor connects to them from the
//! host's namespace. Refusals use 192.0.2.1 (TEST-NET-1), which is refused
//! before any packet is sent, so no test talks to anything but loopback.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use cordon_testkit::{
    each_mode, kernel_support, poll_until, sandbox_modes, Dir, HttpServer, Mode, Outcome, StaticServer, TestCommand,
};

use super::{run_in, tool};

const BODY: &str = "hello from the host\n";

/// `cordon run --mode MODE --net PATTERN... -- ARGS...`.
fn run_with(mode: Mode, net: &[&str], args: &[&str]) -> Outcome {
    let mut cmd = run_in(mode);
    for n in net {
        cmd.args(["--net", n]);
    }
    cmd.arg("--").args(args).run()
}

/// The notice for a destination refused by the policy.
#[track_caller]
fn assert_refused_with_fix(out: &Outcome, dest: &str) {
    out.assert_stderr_contains(&format!("cordon: network: refused {dest} ("));
    out.assert_stderr_contains(&format!("— add --net {dest}\n"));
}

/// A server that counts the connections it accepts and answers nothing.
fn counting_server() -> StaticServer {
    StaticServer::start(std::path::Path::new("/nonexistent"))
}

#[test]
fn curl_reaches_an_allowed_host_without_a_proxy_and_is_accounted_for_exactly() {
    let support = kernel_support();
    let server = HttpServer::start(BODY);
    let allow = format!("127.0.0.1:{}", server.port);
    let curl = tool("/usr/bin/curl");
    each_mode(sandbox_modes!(support), |mode| {
        let before = server.received();
        let url = format!("http://127.0.0.1:{}/x", server.port);
        let out = run_in(mode).args(["--json", "--net", &allow, "--", curl, "-sS", &url]).run();
        let r = out.json();
        assert_eq!(r["ok"], true, "{out}");
        assert_eq!(r["logs"]["lines"][0]["text"], BODY.trim_end());
        let net = r["network"].as_array().expect("network list");
        assert_eq!(net.len(), 1, "{net:?}");
        let c = &net[0];
        assert_eq!(
            (c["protocol"].as_str(), c["host"].as_str(), c["allowed"].as_bool()),
            (Some("tcp"), Some("127.0.0.1"), Some(true))
        );
        assert_eq!((c["port"].as_u64(), c["rule"].as_str()), (Some(u64::from(server.port)), Some(allow.as_str())));
        assert!(c["process"].as_str().unwrap().starts_with("curl, pid "), "{c}");
        // Exact payload counts, as the server saw them.
        assert_eq!(c["bytes_up"].as_u64(), Some(server.received() - before), "{c}");
        assert_eq!(c["bytes_down"].as_u64(), Some(server.response_len()), "{c}");
        assert_eq!(c["error"], serde_json::Value::Null, "{c}");
        // No proxy was involved: nothing in the environment points at one.
        let env = run_with(mode, &[&allow], &["/usr/bin/env"]);
        env.assert_success();
        assert!(!env.stdout.to_ascii_lowercase().contains("proxy"), "{env}");
    });
}

#[test]
fn a_refusal_is_explained_counted_and_recorded_even_without_any_net_flag() {
    let support = kernel_support();
    let curl = tool("/usr/bin/curl");
    each_mode(sandbox_modes!(support), |mode| {
        let script = format!("for i in 1 2 3; do {curl} -sS http://192.0.2.1:81/; done; exit 0");
        let out = run_in(mode).args(["--json", "--", "/bin/sh", "-c", &script]).run();
        assert_refused_with_fix(&out, "192.0.2.1:81");
        // Once on stderr, then the count.
        assert_eq!(out.stderr.matches("refused 192.0.2.1:81 (").count(), 1, "{out}");
        out.assert_stderr_contains("cordon: network: refused 192.0.2.1:81 3 times in all");
        let r = out.json();
        let c = &r["network"][0];
        assert_eq!(
            (c["host"].as_str(), c["port"].as_u64(), c["allowed"].as_bool()),
            (Some("192.0.2.1"), Some(81), Some(false))
        );
        assert_eq!((c["count"].as_u64(), c["suggestion"].as_str()), (Some(3), Some("192.0.2.1:81")));
        let lines: Vec<&str> =
            r["logs"]["lines"].as_array().unwrap().iter().filter_map(|l| l["text"].as_str()).collect();
        assert!(lines.iter().all(|l| l.contains("Couldn't connect to server")), "{lines:?}");
    });
}

#[test]
fn refusals_printed_are_bounded_per_run_and_the_rest_are_counted_in_the_result() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    // 100 distinct refused destinations, then the first and the last again.
    let script = r#"
import socket
def attempt(port):
    try:
        socket.create_connection(("192.0.2.1", port), timeout=10)
    except OSError:
        pass
for port in list(range(1, 101)) + [1, 100]:
    attempt(port)
print("done")
"#;
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode).args(["--json", "--", python, "-c", script]).run();
        out.assert_success();
        let notices: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("cordon: network: ")).collect();
        // The first 20 (cordon::MAX_NETWORK_NOTICES) as they happen, one
        // summary, and the repeat count of the first, which was printed;
        // not that of the last, which was not.
        assert_eq!(
            notices.iter().filter(|l| l.starts_with("cordon: network: refused 192.0.2.1:")).count(),
            21,
            "{out}"
        );
        assert_refused_with_fix(&out, "192.0.2.1:20");
        assert!(!out.stderr.contains("refused 192.0.2.1:21 ("), "{out}");
        out.assert_stderr_contains(
            "cordon: network: 80 more refusal(s) were not printed (at most 20 are per run) — every refusal is counted in the run's network records",
        );
        out.assert_stderr_contains("cordon: network: refused 192.0.2.1:1 2 times in all\n");
        assert!(!out.stderr.contains("192.0.2.1:100 2 times"), "{out}");
        assert_eq!(notices.len(), 22, "{out}");
        // Every refusal is in the result, counted.
        let r = out.json();
        let refused: Vec<&serde_json::Value> =
            r["network"].as_array().unwrap().iter().filter(|c| c["allowed"] == false).collect();
        assert_eq!(refused.len(), 100, "{r}");
        let count = |port: u64| refused.iter().find(|c| c["port"] == port).map(|c| c["count"].as_u64());
        assert_eq!((count(1), count(50), count(100)), (Some(Some(2)), Some(Some(1)), Some(Some(2))), "{r}");
    });
}

/// A server on `127.0.0.1` that answers each connection with `reply` and
/// closes it at once (so the client's socket is in `CLOSE_WAIT` soon after
/// the handshake). It runs until the test process ends.
fn send_and_close_server(reply: &'static [u8]) -> u16 {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(reply);
        }
    });
    port
}

#[test]
fn a_connection_the_server_closed_at_once_is_handed_over_with_its_data_and_eof() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let port = send_and_close_server(b"bye\n");
    // 8 threads at once, 25 connects each: each reads the reply, then EOF.
    let script = r#"
import socket, sys, threading
port = int(sys.argv[1])
results = []
def client():
    for _ in range(25):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            data = b""
            while True:
                chunk = s.recv(64)
                if not chunk:
                    break
                data += chunk
            s.close()
            results.append("ok" if data == b"bye\n" else "data %r" % data)
        except OSError as e:
            results.append("%s: %s" % (type(e).__name__, e.strerror))
threads = [threading.Thread(target=client) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("ok", results.count("ok"), sorted(set(r for r in results if r != "ok")))
"#;
    let p = port.to_string();
    // Control: directly, every connect succeeds and reads the reply.
    run_with(Mode::Dev, &[], &[python, "-c", script, &p]).assert_stdout_eq("ok 200 []\n");
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_with(mode, &[&format!("127.0.0.1:{p}")], &[python, "-c", script, &p]);
        out.assert_stdout_eq("ok 200 []\n");
    });
}

#[test]
fn a_notice_escapes_the_process_name_the_sandbox_chose() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    // The thread's name reversed-text and escape characters: a notice must
    // not let the sandbox drive cordon's terminal.
    let script = r#"
import ctypes, socket
ctypes.CDLL(None).prctl(15, "x\u202e\x1b]0;t\x07".encode(), 0, 0, 0)
try:
    socket.create_connection(("192.0.2.1", 86), timeout=10)
except OSError as e:
    print(e.strerror)
"#;
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_with(mode, &[], &[python, "-c", script]);
        out.assert_stdout_eq("Connection refused\n");
        out.assert_stderr_contains("cordon: network: refused 192.0.2.1:86 (x\\u{202e}\\x1b]0;t\\x07, pid ");
        assert!(!out.stderr.contains(['\u{202e}', '\u{1b}', '\u{7}']), "{out}");
    });
}

#[test]
fn the_sandboxes_own_loopback_stays_its_own_and_the_host_one_needs_a_literal_pattern() {
    let support = kernel_support();
    let curl = tool("/usr/bin/curl");
    let (a, b) = (HttpServer::start(BODY), HttpServer::start(BODY));
    each_mode(sandbox_modes!(support), |mode| {
        let url_b = format!("http://127.0.0.1:{}/", b.port);
        let before = b.received();
        // Only A is allowed: B's port is the sandbox's own, where nothing listens.
        let out = run_with(mode, &[&format!("127.0.0.1:{}", a.port)], &[curl, "-sS", &url_b]);
        out.assert_code(7);
        out.assert_stderr_contains(&format!(
            "cordon: network: 127.0.0.1:{} is the sandbox's own loopback and nothing listens there (curl, pid ",
            b.port
        ));
        out.assert_stderr_contains(&format!("— add --net 127.0.0.1:{}\n", b.port));
        // `*` does not unlock the host's loopback either.
        run_with(mode, &["*"], &[curl, "-sS", &url_b]).assert_code(7);
        assert_eq!(b.received(), before, "[{}] the host's server was reached", mode.as_str());
        // Control: named literally, it is reached.
        run_with(mode, &[&format!("127.0.0.1:{}", b.port)], &[curl, "-sS", &url_b]).assert_stdout_eq(BODY);
        assert!(b.received() > before);
    });
}

#[test]
fn python_socket_and_urllib_reach_the_allowed_host_with_proxy_variables_unset() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let server = HttpServer::start(BODY);
    let script = r#"
import socket, sys, urllib.request
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
print("socket", s.recv(4096).split(b"\r\n")[0].decode())
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
print("urllib", opener.open(f"http://127.0.0.1:{port}/").read().decode(), end="")
for url in ("http://192.0.2.1:82/",):
    try:
        opener.open(url, timeout=10)
    except OSError as e:
        print("refused", getattr(e, "reason", e))
"#;
    each_mode(sandbox_modes!(support), |mode| {
        let out =
            run_with(mode, &[&format!("127.0.0.1:{}", server.port)], &[python, "-c", script, &server.port.to_string()]);
        out.assert_success();
        out.assert_stdout_eq(&format!("socket HTTP/1.1 200 OK\nurllib {BODY}refused [Errno 111] Connection refused\n"));
        assert_refused_with_fix(&out, "192.0.2.1:82");
    });
}

#[test]
fn node_fetch_and_http_get_reach_the_allowed_host() {
    let support = kernel_support();
    let node = tool("/usr/bin/node");
    let server = HttpServer::start(BODY);
    let script = r#"
const http = require('node:http');
const get = (u) => new Promise((ok) => http.get(u, (res) => {
  let b = ''; res.on('data', (d) => b += d); res.on('end', () => ok(`${res.statusCode} ${b.trim()}`));
}).on('error', (e) => ok(`error ${e.code}`)));
(async () => {
  for (const u of process.argv.slice(1)) {
    console.log('http.get', await get(u));
    try { const r = await fetch(u); console.log('fetch', r.status, (await r.text()).trim()); }
    catch (e) { console.log('fetch error', e.cause && e.cause.code); }
  }
})();
"#;
    each_mode(sandbox_modes!(support), |mode| {
        let ok = format!("http://127.0.0.1:{}/", server.port);
        let out = run_with(
            mode,
            &[&format!("127.0.0.1:{}", server.port)],
            &[node, "-e", script, &ok, "http://192.0.2.1:83/"],
        );
        out.assert_success();
        let hello = BODY.trim();
        out.assert_stdout_eq(&format!(
            "http.get 200 {hello}\nfetch 200 {hello}\nhttp.get error ECONNREFUSED\nfetch error ECONNREFUSED\n"
        ));
        assert_refused_with_fix(&out, "192.0.2.1:83");
    });
}

#[test]
fn java_http_client_reaches_the_allowed_host() {
    let support = kernel_support();
    let (java, javac) = (tool("/usr/bin/java"), tool("/usr/bin/javac"));
    let server = HttpServer::start(BODY);
    let dir = Dir::new("egress-java");
    dir.create(
        "Fetch.java",
        r#"import java.net.URI;
import java.net.http.*;
public class Fetch {
    public static void main(String[] urls) throws Exception {
        HttpClient client = HttpClient.newBuilder().proxy(HttpClient.Builder.NO_PROXY).build();
        for (String u : urls) {
            try {
                HttpResponse<String> r = client.send(HttpRequest.newBuilder(URI.create(u)).build(), HttpResponse.BodyHandlers.ofString());
                System.out.println(r.statusCode() + " " + r.body().trim());
            } catch (java.io.IOException e) {
                System.out.println("error " + e.getClass().getSimpleName());
            }
        }
    }
}
"#,
    );
    let built = std::process::Command::new(javac).arg("-d").arg(dir.path()).arg(dir.join("Fetch.java")).status();
    assert!(built.expect("javac runs").success(), "javac failed");
    each_mode(sandbox_modes!(support), |mode| {
        let ok = format!("http://127.0.0.1:{}/", server.port);
        let out = run_in(mode)
            .arg("--read")
            .arg(dir.path())
            .args(["--net", &format!("127.0.0.1:{}", server.port), "--", java, "-cp"])
            .arg(dir.path())
            .args(["Fetch", &ok, "http://192.0.2.1:84/"])
            .run();
        out.assert_success();
        out.assert_stdout_eq(&format!("200 {}\nerror ConnectException\n", BODY.trim()));
        assert_refused_with_fix(&out, "192.0.2.1:84");
    });
}

/// A bare repository with one commit, ready for git's dumb HTTP protocol.
fn dumb_http_repo(dir: &Dir) -> PathBuf {
    let git = tool("/usr/bin/git");
    let work = dir.create_dir("work");
    dir.create("work/README", "cloned through cordon\n");
    let sh = |args: &[&str], cwd: &std::path::Path| {
        let status = std::process::Command::new(git)
            .args(args)
            .current_dir(cwd)
            .env("HOME", dir.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    };
    sh(&["init", "-q", "-b", "main"], &work);
    sh(&["add", "README"], &work);
    sh(&["commit", "-q", "-m", "one"], &work);
    let served = dir.create_dir("served");
    sh(&["clone", "-q", "--bare", work.to_str().unwrap(), served.join("repo.git").to_str().unwrap()], dir.path());
    sh(&["update-server-info"], &served.join("repo.git"));
    served
}

#[test]
fn git_clones_over_plain_http_from_the_allowed_host() {
    let support = kernel_support();
    let git = tool("/usr/bin/git");
    let dir = Dir::new("egress-git");
    let server = StaticServer::start(&dumb_http_repo(&dir));
    each_mode(sandbox_modes!(support), |mode| {
        let script = format!(
            "{git} clone -q http://127.0.0.1:{}/repo.git /tmp/c && cat /tmp/c/README; {git} clone -q http://192.0.2.1:85/repo.git /tmp/d; exit 0",
            server.port
        );
        let out = run_with(mode, &[&format!("127.0.0.1:{}", server.port)], &["/bin/sh", "-c", &script]);
        out.assert_success();
        out.assert_stdout_eq("cloned through cordon\n");
        out.assert_stderr_contains("Failed to connect to 192.0.2.1 port 85");
        assert_refused_with_fix(&out, "192.0.2.1:85");
    });
}

/// Asks the stub DNS (the sandbox's 127.0.0.1:53) for a name's A record
/// and prints `rcode=N answers=M first=ADDR`, then, with a port, connects
/// to the first address and prints what the server sent.
const DNS_PROBE: &str = r#"
import socket, struct, sys
name, port = sys.argv[1], (int(sys.argv[2]) if len(sys.argv) > 2 else 0)
q = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
for label in name.split("."):
    q += bytes([len(label)]) + label.encode()
q += b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(("127.0.0.1", 53))
s.send(q)
r = s.recv(512)
answers = struct.unpack(">H", r[6:8])[0]
first = socket.inet_ntoa(r[-4:]) if answers else "-"
print(f"rcode={r[3] & 15} answers={answers} first={first}")
if port and answers:
    c = socket.create_connection((first, port), timeout=10)
    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    print(c.recv(4096).split(b"\r\n")[0].decode())
"#;

#[test]
fn a_name_that_is_not_allowed_gets_nxdomain_and_is_reported() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let getent = tool("/usr/bin/getent");
    each_mode(sandbox_modes!(support), |mode| {
        // Some name is allowed, so the stub answers, and refuses the rest.
        let out = run_in(mode)
            .args(["--json", "--net", "allowed.example", "--", "/bin/sh", "-c"])
            .arg(format!("{getent} hosts blocked.example; echo getent=$?; {python} -c '{DNS_PROBE}' blocked.example"))
            .run();
        let r = out.json();
        let text: Vec<&str> =
            r["logs"]["lines"].as_array().unwrap().iter().filter_map(|l| l["text"].as_str()).collect();
        assert_eq!(text, ["getent=2", "rcode=3 answers=0 first=-"], "{out}");
        out.assert_stderr_contains("cordon: network: refused lookup of blocked.example (getent, pid ");
        out.assert_stderr_contains("— add --net blocked.example\n");
        let c = &r["network"][0];
        assert_eq!(
            (c["protocol"].as_str(), c["host"].as_str(), c["allowed"].as_bool()),
            (Some("dns"), Some("blocked.example"), Some(false))
        );
        // Control: an allowed name is answered, with a synthetic address.
        let out = run_with(mode, &["localhost"], &[python, "-c", DNS_PROBE, "localhost"]);
        out.assert_success();
        assert!(out.stdout.starts_with("rcode=0 answers=1 first=198.18."), "{out}");
    });
}

#[test]
fn dns_exfiltration_through_long_labels_is_refused() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let secret = format!("{}.{}.{}", "a1".repeat(31), "b2".repeat(31), "c3".repeat(25));
    let name = format!("{secret}.exfil.example");
    each_mode(sandbox_modes!(support), |mode| {
        let out =
            run_in(mode).args(["--json", "--net", "*.allowed.example", "--", python, "-c", DNS_PROBE, &name]).run();
        let r = out.json();
        assert_eq!(r["logs"]["lines"][0]["text"], "rcode=3 answers=0 first=-", "{out}");
        out.assert_stderr_contains(&format!("cordon: network: refused lookup of {name} ("));
        assert_eq!(r["network"][0]["host"], name.as_str());
        // A name longer than DNS allows gets no further.
        let too_long = format!("{secret}.{secret}.{secret}.exfil.example");
        let out = run_with(mode, &["*.allowed.example"], &[python, "-c", DNS_PROBE, &too_long]);
        assert!(out.stdout.starts_with("rcode=3 answers=0"), "{out}");
    });
}

#[test]
fn a_name_pattern_never_reaches_the_hosts_loopback_but_an_address_pattern_does() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let server = HttpServer::start(BODY);
    let port = server.port.to_string();
    each_mode(sandbox_modes!(support), |mode| {
        let before = server.received();
        // Numeric spellings the host's resolver turns into 127.0.0.1.
        for name in ["2130706433", "0x7f000001", "0177.0.0.1"] {
            let out = run_with(mode, &[&format!("{name}:{port}")], &[python, "-c", DNS_PROBE, name, &port]);
            out.assert_stdout_eq("rcode=3 answers=0 first=-\n");
            out.assert_stderr_contains(&format!("cordon: network: refused lookup of {name} (python3, pid "));
            out.assert_stderr_contains("resolves to a loopback address (127.0.0.1)");
            out.assert_stderr_contains("— add --net 127.0.0.1\n");
        }
        assert_eq!(server.received(), before, "[{}] a name pattern reached the loopback server", mode.as_str());
        // Control: `localhost` names loopback literally, so the stub's name
        // reaches the host's server, through a synthetic address.
        let out = run_with(mode, &[&format!("localhost:{port}")], &[python, "-c", DNS_PROBE, "localhost", &port]);
        out.assert_success();
        assert!(out.stdout.ends_with("\nHTTP/1.1 200 OK\n"), "{out}");
        assert!(server.received() > before);
    });
}

/// A name only the hosts file knows is resolved by cordon, which is a
/// static musl program (`.cargo/config.toml`): musl reads `/etc/hosts`
/// before asking DNS. The test binds its own hosts file
/// over `/etc/hosts` in a mount namespace it makes for that one cordon
/// (the host's file and mounts are untouched). The name given a loopback
/// address there is refused, naming the address only that file gives;
/// control: the name given a documentation address is answered.
#[test]
fn a_name_from_etc_hosts_is_resolved() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let unshare = tool("/usr/bin/unshare");
    let dir = Dir::new("etc-hosts");
    let pid = std::process::id();
    let (near, far) = (format!("near-{pid}.cordon.test"), format!("far-{pid}.cordon.test"));
    std::fs::write(dir.join("hosts"), format!("127.0.0.77 {near}\n192.0.2.77 {far}\n")).unwrap();
    // `unshare … sh -c 'mount --bind HOSTS /etc/hosts && exec cordon run …'`.
    let run_with_hosts = |mode: Mode, name: &str| {
        TestCommand::new(unshare)
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
            ])
            .arg(dir.join("hosts"))
            .arg(super::cordon_bin())
            .args(["run", "--mode", mode.as_str(), "--net", &near, "--net", &far, "--", python, "-c", DNS_PROBE, name])
            .run()
    };
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_with_hosts(mode, &far);
        assert!(out.stdout.starts_with("rcode=0 answers=1 first=198.18."), "control: {out}");
        let out = run_with_hosts(mode, &near);
        out.assert_stdout_eq("rcode=3 answers=0 first=-\n");
        out.assert_stderr_contains(&format!("cordon: network: refused lookup of {near} (python3, pid "));
        out.assert_stderr_contains("resolves to a loopback address (127.0.0.77)");
    });
}

/// The cloud metadata address, by name and by `*`: refused before any
/// packet leaves (so the test sends nothing off the host). `2852039166` is
/// a name the host's resolver turns into 169.254.169.254; control: the same
/// spelling of a documentation address (192.0.2.1) is answered.
#[test]
fn a_name_pattern_never_reaches_the_metadata_address_and_neither_does_star() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let connect = "import socket\ntry:\n    socket.create_connection(('169.254.169.254', 80), timeout=10)\nexcept OSError as e: print(e.strerror)";
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_with(mode, &["2852039166:80"], &[python, "-c", DNS_PROBE, "2852039166"]);
        out.assert_stdout_eq("rcode=3 answers=0 first=-\n");
        out.assert_stderr_contains("cordon: network: refused lookup of 2852039166 (python3, pid ");
        out.assert_stderr_contains("cloud metadata address (169.254.169.254)");
        // Control: the same kind of name for an ordinary address is answered.
        let out = run_with(mode, &["3221225985:80"], &[python, "-c", DNS_PROBE, "3221225985"]);
        assert!(out.stdout.starts_with("rcode=0 answers=1 first=198.18."), "{out}");
        // `*` does not unlock the literal address either.
        let out = run_with(mode, &["*"], &[python, "-c", connect]);
        out.assert_stdout_eq("Connection refused\n");
        out.assert_stderr_contains("cordon: network: refused 169.254.169.254:80 (python3, pid ");
    });
}

#[test]
fn udp_never_leaves_the_sandbox() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let port = udp.local_addr().unwrap().port();
    let probe = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'x', ('127.0.0.1', {port}))\nc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n    c.connect(('192.0.2.1', {port})); c.send(b'y'); print('sent')\nexcept OSError as e: print(e.strerror)"
    );
    // Control: outside a sandbox the datagram arrives.
    run_in(Mode::Dev).args(["--", python, "-c", &probe]).run().assert_success();
    assert!(udp.recv_from(&mut [0u8; 8]).is_ok(), "control: the datagram reached the host");
    each_mode(sandbox_modes!(support), |mode| {
        // Even with the port allowed literally: UDP is DNS only.
        let out = run_with(mode, &[&format!("127.0.0.1:{port}"), "192.0.2.1"], &[python, "-c", &probe]);
        out.assert_stdout_eq("Network is unreachable\n");
        out.assert_stderr_contains(&format!("cordon: network: refused 192.0.2.1:{port} ("));
        out.assert_stderr_contains("UDP does not leave the sandbox");
        assert!(udp.recv_from(&mut [0u8; 8]).is_err(), "[{}] a datagram reached the host", mode.as_str());
    });
}

/// Kernel socket memory (issue 9, "also tighten"): the sockets cordon
/// connects for a run live outside its memory limit, so a run has at most
/// 256 open at once. The 257th connect fails with `ENOBUFS` and a notice
/// that says why and what to do, and never reaches the server. Control:
/// once one closes, the next connect goes through.
#[test]
fn past_its_connection_cap_a_run_is_refused_with_a_reason() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let server = counting_server();
    let port = server.port.to_string();
    let script = r#"
import socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(256)]
try:
    socket.create_connection(("127.0.0.1", port))
    print("257th connected")
except OSError as e:
    print("257th:", e.strerror)
held.pop().close()
for _ in range(200):
    try:
        held.append(socket.create_connection(("127.0.0.1", port)))
        print("after one closed: connected")
        break
    except OSError as e:
        time.sleep(0.05)
"#;
    each_mode(sandbox_modes!(support), |mode| {
        let before = server.accepted();
        let out = run_with(mode, &[&format!("127.0.0.1:{port}")], &[python, "-c", script, &port]);
        out.assert_success();
        out.assert_stdout_eq("257th: No buffer space available\nafter one closed: connected\n");
        out.assert_stderr_contains(&format!("cordon: network: refused 127.0.0.1:{port} (python3, pid "));
        out.assert_stderr_contains(" — the run already has 256 connections open, its limit; close one and retry\n");
        // Host side: the 256 and the one after a close, never the 257th.
        assert!(
            poll_until(Duration::from_secs(10), || server.accepted() - before >= 257),
            "[{}] the server accepted {}",
            mode.as_str(),
            server.accepted() - before
        );
        assert_eq!(server.accepted() - before, 257, "[{}]", mode.as_str());
    });
}

/// Review s8 F6: a connection that ended but whose socket the sandbox
/// keeps (with its unread data, in the host's memory) keeps its slot: at
/// the cap of 256 such, the next connect is refused (main let a run keep
/// 400 and more). Control: closing each, the run makes 300 one after
/// another.
#[test]
fn connections_that_ended_but_are_kept_count_against_the_cap() {
    let support = kernel_support();
    let (dir, bin) = probe();
    let t = send_and_close_server(b"bye\n").to_string();
    let net = [format!("127.0.0.1:{t}")];
    each_mode(sandbox_modes!(support), |mode| {
        run_probe(mode, &dir, &bin, &net, &["hold-ended", &t, "300", "close"]).assert_stdout_eq("connected=300\n");
        let out = run_probe(mode, &dir, &bin, &net, &["hold-ended", &t, "300", "keep"]);
        out.assert_stdout_eq("connected=256\nfailed=No buffer space available\n");
        out.assert_stderr_contains(" — the run already has 256 connections open, its limit; close one and retry\n");
    });
}

/// Servers at `addrs` (port 0: any free one) that each send `reply` and
/// close every connection they accept, one thread each; their addresses
/// and how many connections each accepted.
fn send_and_close_servers(
    addrs: impl IntoIterator<Item = std::net::SocketAddr>,
    reply: &'static [u8],
) -> Vec<(std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>)> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    addrs
        .into_iter()
        .map(|addr| {
            let listener = TcpListener::bind(addr).unwrap();
            let local = listener.local_addr().unwrap();
            let accepted = std::sync::Arc::new(AtomicU64::new(0));
            let counter = std::sync::Arc::clone(&accepted);
            std::thread::spawn(move || {
                for mut conn in listener.incoming().flatten() {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = conn.write_all(reply);
                }
            });
            (local, accepted)
        })
        .collect()
}

/// Review s9 F5: a run reaches 100 destinations on one address (100
/// ports) and 100 addresses, each once, and each connection's byte counts
/// are exact. main refused every new destination from the 61st on with
/// `ENOBUFS` ("the kernel's close reports could not be arranged for:
/// Cannot allocate memory"): the grown filter of the close reports no
/// longer attached. Host side: every server accepted exactly one.
#[test]
fn a_run_reaches_a_hundred_distinct_destinations_with_exact_counts() {
    use std::sync::atomic::Ordering;
    let support = kernel_support();
    let (dir, bin) = probe();
    let loopback = |ip: [u8; 4]| std::net::SocketAddr::from((ip, 0));
    let ports = send_and_close_servers((0..100).map(|_| loopback([127, 0, 0, 1])), b"bye\n");
    let addresses = send_and_close_servers((1..=100).map(|i| loopback([127, 0, 1, i])), b"bye\n");
    each_mode(sandbox_modes!(support), |mode| {
        for (what, servers) in [("ports", &ports), ("addresses", &addresses)] {
            let before: Vec<u64> = servers.iter().map(|(_, n)| n.load(Ordering::SeqCst)).collect();
            let mut cmd = run_in(mode);
            cmd.args(["--json", "--read"]).arg(dir.path());
            let mut allowed: Vec<String> = servers.iter().map(|(a, _)| a.ip().to_string()).collect();
            allowed.dedup();
            for ip in &allowed {
                cmd.args(["--net", ip]);
            }
            cmd.arg("--").arg(&bin).arg("each").args(servers.iter().map(|(a, _)| a.to_string()));
            let out = cmd.run();
            let r = out.json();
            let m = format!("[{}, {what}] {out}", mode.as_str());
            assert_eq!(r["logs"]["lines"][0]["text"], "connected=100", "{m}");
            let net = r["network"].as_array().expect("network list");
            assert_eq!(net.len(), 100, "{m}");
            for (c, (addr, _)) in net.iter().zip(servers.iter()) {
                assert_eq!(
                    (c["host"].as_str(), c["port"].as_u64(), c["allowed"].as_bool()),
                    (Some(addr.ip().to_string().as_str()), Some(u64::from(addr.port())), Some(true)),
                    "{m}"
                );
                assert_eq!((c["bytes_up"].as_u64(), c["bytes_down"].as_u64()), (Some(0), Some(4)), "{m}: {c}");
                assert_eq!(c["error"], serde_json::Value::Null, "{m}: {c}");
            }
            for ((addr, n), before) in servers.iter().zip(before) {
                assert!(poll_until(Duration::from_secs(10), || n.load(Ordering::SeqCst) > before), "{m}: {addr}");
                assert_eq!(n.load(Ordering::SeqCst), before + 1, "{m}: {addr}");
            }
        }
    });
}

/// Review s9 F3: connections closed with a reset (`SO_LINGER` {1, 0},
/// here before any data) by 8 threads at once give their slots back: the
/// run then holds its cap of 256 connections, and the 257th is refused.
/// The kernel's close reports of such sockets carry remote port 0, and
/// main's filter, which checked the port, dropped them: their slots were
/// never given back, and the churn itself stopped at 256 with `ENOBUFS`.
/// Host side: the second server accepted exactly the 256 held.
#[test]
fn connections_closed_with_a_reset_give_their_slots_back() {
    let support = kernel_support();
    let (dir, bin) = probe();
    let (churn, hold) = (counting_server(), counting_server());
    let (c, h) = (churn.port.to_string(), hold.port.to_string());
    let net = [format!("127.0.0.1:{c}"), format!("127.0.0.1:{h}")];
    each_mode(sandbox_modes!(support), |mode| {
        let before = hold.accepted();
        let out = run_probe(mode, &dir, &bin, &net, &["rst-churn", &c, "8", "40", &h]);
        out.assert_stdout_eq("churned=320\nheld=256\nnext=No buffer space available\n");
        assert!(
            poll_until(Duration::from_secs(10), || hold.accepted() - before >= 256),
            "[{}] the server accepted {}",
            mode.as_str(),
            hold.accepted() - before
        );
        assert_eq!(hold.accepted() - before, 256, "[{}]", mode.as_str());
    });
}

/// The probes of `tests/probes/egress_probe.c`, built once.
fn probe() -> (Dir, PathBuf) {
    let dir = Dir::new("egress-probe");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/probes/egress_probe.c");
    let bin = dir.join("egress_probe");
    let out = std::process::Command::new(tool("/usr/bin/gcc"))
        .args(["-O", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc runs");
    assert!(out.status.success(), "gcc: {}", String::from_utf8_lossy(&out.stderr));
    (dir, bin)
}

/// Runs the probe in `mode` (with its folder readable) or, for `Mode::Dev`,
/// with no sandbox at all: the control.
fn run_probe(mode: Mode, dir: &Dir, bin: &std::path::Path, net: &[String], args: &[&str]) -> Outcome {
    let mut cmd = run_in(mode);
    if mode != Mode::Dev {
        cmd.arg("--read").arg(dir.path());
        for n in net {
            cmd.args(["--net", n]);
        }
    }
    cmd.arg("--").arg(bin).args(args).run()
}

#[test]
fn a_handed_over_socket_cannot_be_disconnected_and_reconnected() {
    let support = kernel_support();
    let (dir, bin) = probe();
    let (allowed, forbidden) = (HttpServer::start(BODY), counting_server());
    let (a, f) = (allowed.port.to_string(), forbidden.port.to_string());
    let net = [format!("127.0.0.1:{a}")];
    // Control: without a sandbox, AF_UNSPEC dissolves the connection and
    // the socket connects again, to the forbidden server.
    run_probe(Mode::Dev, &dir, &bin, &net, &["unspec-reconnect", &a, &f])
        .assert_stdout_eq("connect=0\nunspec=0\nagain=0\n");
    assert_eq!(forbidden.accepted(), 1);
    each_mode(sandbox_modes!(support), |mode| {
        run_probe(mode, &dir, &bin, &net, &["unspec-reconnect", &a, &f])
            .assert_stdout_eq("connect=0\nunspec=EOPNOTSUPP\nagain=EISCONN\n");
        assert_eq!(forbidden.accepted(), 1, "[{}] the forbidden server was reached", mode.as_str());
    });
}

/// A listener whose accept queue is full: a new connection to it stays in
/// SYN_SENT. The streams that fill it are returned with it.
fn full_listener() -> (TcpListener, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = vec![];
    for _ in 0..1000 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(_) => return (listener, held),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs the probe with `args` (the last one the host port it tries to
/// take) until it printed `last`, then tries that port on the host while
/// the probe holds it: its output, and `true` when the probe had the port.
fn probe_holding_port(
    mode: Mode,
    dir: &Dir,
    bin: &std::path::Path,
    net: &str,
    args: &[&str],
    last: &str,
) -> (String, bool) {
    use std::io::{BufRead, BufReader};
    let port: u16 = args.last().and_then(|p| p.parse().ok()).expect("the port is the last argument");
    let mut cmd = run_in(mode);
    if mode != Mode::Dev {
        cmd.arg("--read").arg(dir.path()).args(["--net", net]);
    }
    cmd.arg("--").arg(bin).args(args);
    let mut child = cmd
        .command()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the probe");
    let mut out = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    while !out.contains(last) {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        out.push_str(&line);
    }
    let taken = matches!(TcpListener::bind(("127.0.0.1", port)), Err(e) if e.kind() == std::io::ErrorKind::AddrInUse);
    drop(child.stdin.take());
    child.wait().expect("the probe ends");
    (out, taken)
}

#[test]
fn a_socket_is_never_handed_over_before_it_is_established() {
    let support = kernel_support();
    let (dir, bin) = probe();
    let (target, _held) = full_listener();
    let t = target.local_addr().unwrap().port().to_string();
    let net = format!("127.0.0.1:{t}");
    let attack = |mode: Mode| {
        let port = free_port().to_string();
        probe_holding_port(mode, &dir, &bin, &net, &["shutdown-bind", &t, &port], "listen=")
    };
    // Control: a connect stuck in SYN_SENT, shut down, is unconnected again
    // and binds a host port.
    let (out, taken) = attack(Mode::Dev);
    assert!(out.starts_with("connect=EINPROGRESS\nshutdown=0\nbind=0\n"), "{out}");
    assert!(taken, "control: the probe held a host port");
    each_mode(sandbox_modes!(support), |mode| {
        // The supervisor waits for ESTABLISHED (here: until the socket's own
        // 1 s timeout); the caller keeps its own, unconnected socket, whose
        // port is in the sandbox's namespace only.
        let (out, taken) = attack(mode);
        assert_eq!(out, "connect=ETIMEDOUT\nshutdown=ENOTCONN\nbind=0\nlisten=0\n", "[{}]", mode.as_str());
        assert!(!taken, "[{}] a host port was taken from the sandbox", mode.as_str());
    });
}

/// Review s8 F6: a handed-over socket lives in the host's namespace; once
/// its connection ended (TCP_CLOSE) the kernel gave its port back and a
/// `bind()` took any port of the host (one run held 874).
#[test]
fn a_handed_over_socket_whose_connection_ended_cannot_bind_a_host_port() {
    let support = kernel_support();
    let (dir, bin) = probe();
    let t = send_and_close_server(b"bye\n").to_string();
    let net = format!("127.0.0.1:{t}");
    let attack = |mode: Mode| {
        let port = free_port().to_string();
        probe_holding_port(mode, &dir, &bin, &net, &["closed-bind", &t, &port], "own=")
    };
    // Control: without a sandbox the closed socket binds the port (and the
    // probe's own socket then finds it taken).
    let (out, taken) = attack(Mode::Dev);
    assert_eq!(out, "connect=0\nclosed=0\nbind=0\nown=EADDRINUSE\n");
    assert!(taken, "control: the probe held a host port");
    each_mode(sandbox_modes!(support), |mode| {
        // Refused as the kernel refuses a bound socket; a socket of the
        // sandbox's own still binds the port, in its own namespace.
        let (out, taken) = attack(mode);
        assert_eq!(out, "connect=0\nclosed=0\nbind=EINVAL\nown=0\n", "[{}]", mode.as_str());
        assert!(!taken, "[{}] a host port was taken from the sandbox", mode.as_str());
    });
}

#[test]
fn tcp_fast_open_is_refused() {
    let support = kernel_support();
    let (dir, bin) = probe();
    let server = counting_server();
    let p = server.port.to_string();
    let net = [format!("127.0.0.1:{p}")];
    run_probe(Mode::Dev, &dir, &bin, &net, &["fastopen", &p]).assert_stdout_eq("sendto=0\nsendmsg=0\n");
    assert!(server.accepted() >= 1, "control: fast open connected");
    let before = server.accepted();
    each_mode(sandbox_modes!(support), |mode| {
        // Even to an allowed destination: it would connect without the supervisor.
        run_probe(mode, &dir, &bin, &net, &["fastopen", &p])
            .assert_stdout_eq("sendto=EOPNOTSUPP\nsendmsg=EOPNOTSUPP\n");
        assert_eq!(server.accepted(), before, "[{}]", mode.as_str());
    });
}

#[test]
fn rewriting_the_address_during_the_connect_reaches_nothing_forbidden() {
    let support = kernel_support();
    let (dir, bin) = probe();
    let allowed = counting_server();
    let a = allowed.port.to_string();
    let net = [format!("127.0.0.1:{a}")];
    // Control: without a sandbox the racing thread's rewrites reach the
    // other port. It has a server of its own: connects the control made
    // may still be waiting in its accept queue when the control ends.
    let reached = counting_server();
    run_probe(Mode::Dev, &dir, &bin, &net, &["race-addr", &a, &reached.port.to_string(), "1000"]).assert_success();
    assert!(
        poll_until(Duration::from_secs(10), || reached.accepted() > 0),
        "control: the racing thread made connects go to the other port"
    );
    each_mode(sandbox_modes!(support), |mode| {
        let forbidden = counting_server();
        let out = run_probe(mode, &dir, &bin, &net, &["race-addr", &a, &forbidden.port.to_string(), "1000"]);
        out.assert_success();
        assert_eq!(forbidden.accepted(), 0, "[{}] a rewritten address reached the forbidden server", mode.as_str());
        assert!(allowed.accepted() > 0, "{out}");
    });
}

#[test]
fn dup2_of_a_handed_over_socket_over_a_pending_connect_changes_nothing() {
    let support = kernel_support();
    let (dir, bin) = probe();
    let allowed = counting_server();
    let a = allowed.port.to_string();
    let net = [format!("127.0.0.1:{a}")];
    // Control: without a sandbox the racing connects dissolve the held
    // connection and bind it. Its own server, as above: its connects may
    // still be queued when it ends.
    let reached = counting_server();
    let control = run_probe(Mode::Dev, &dir, &bin, &net, &["dup2-race", &a, &reached.port.to_string(), "2000"]);
    control.assert_stdout_contains("connect=0\n");
    assert!(!control.stdout.contains("peer=allowed"), "control: the held connection was dissolved\n{control}");
    assert!(
        poll_until(Duration::from_secs(10), || reached.accepted() > 0),
        "control: the forbidden server was reached\n{control}"
    );
    each_mode(sandbox_modes!(support), |mode| {
        let forbidden = counting_server();
        run_probe(mode, &dir, &bin, &net, &["dup2-race", &a, &forbidden.port.to_string(), "2000"])
            .assert_stdout_eq("connect=0\npeer=allowed\nbind=EINVAL\nlisten=EINVAL\n");
        assert_eq!(forbidden.accepted(), 0, "[{}]", mode.as_str());
    });
}

#[test]
fn a_handed_over_socket_cannot_be_moved_to_another_interface() {
    let support = kernel_support();
    let (dir, bin) = probe();
    let server = counting_server();
    let p = server.port.to_string();
    let net = [format!("127.0.0.1:{p}")];
    run_probe(Mode::Dev, &dir, &bin, &net, &["bind-device", &p])
        .assert_stdout_eq("connect=0\nbindtodevice=0\nbindtoifindex=0\n");
    each_mode(sandbox_modes!(support), |mode| {
        run_probe(mode, &dir, &bin, &net, &["bind-device", &p])
            .assert_stdout_eq("connect=0\nbindtodevice=EPERM\nbindtoifindex=EPERM\n");
    });
}

#[test]
fn vsock_sockets_cannot_be_made() {
    let support = kernel_support();
    let (dir, bin) = probe();
    // Control: this host has vsock (a VM); outside a sandbox the socket is made.
    run_probe(Mode::Dev, &dir, &bin, &[], &["vsock"]).assert_stdout_eq("socket=0\n");
    each_mode(sandbox_modes!(support), |mode| {
        run_probe(mode, &dir, &bin, &[], &["vsock"]).assert_stdout_eq("socket=EAFNOSUPPORT\n");
    });
}

/// `tests/probes/before_6_9.c`, built once: runs a command as on a kernel
/// without thread pidfds (Linux < 6.9), the newest feature transparent
/// egress needs.
fn before_6_9() -> (Dir, PathBuf) {
    let dir = Dir::new("egress-old-kernel");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/probes/before_6_9.c");
    let bin = dir.join("before_6_9");
    let out = std::process::Command::new(tool("/usr/bin/gcc")).arg("-o").arg(&bin).arg(&src).output().expect("gcc");
    assert!(out.status.success(), "gcc: {}", String::from_utf8_lossy(&out.stderr));
    (dir, bin)
}

#[test]
fn without_the_kernel_features_doctor_says_so_and_a_run_that_needs_them_fails_closed() {
    let support = kernel_support();
    let curl = tool("/usr/bin/curl");
    let (_dir, old) = before_6_9();
    let old_kernel = |args: &[&str]| TestCommand::new(&old).arg(super::cordon_bin()).args(args).run();
    // Control: here the features are there.
    let doctor = super::cordon().args(["doctor", "--json"]).run();
    assert_eq!(doctor.json()["transparent_egress"], "available", "{doctor}");
    let doctor = old_kernel(&["doctor", "--json"]);
    assert_eq!(doctor.json()["transparent_egress"], "unavailable", "{doctor}");
    old_kernel(&["doctor"]).assert_stdout_contains(
        "network egress    no transparent egress (needs seccomp user notification and PIDFD_THREAD, Linux 6.9)",
    );
    let server = HttpServer::start(BODY);
    let allow = format!("127.0.0.1:{}", server.port);
    let url = format!("http://127.0.0.1:{}/", server.port);
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let before = server.received();
        let out = old_kernel(&["run", "--mode", m, "--net", &allow, "--", curl, "-sS", &url]);
        out.assert_code(125);
        out.assert_stderr_contains(&format!("network rules (--net {allow}) need transparent egress"));
        out.assert_stderr_contains("use Linux 6.9 or later, or --net-via proxy");
        assert_eq!(server.received(), before, "[{m}] the server was reached");
        // A run that allows nothing does not need it.
        old_kernel(&["run", "--mode", m, "--", "/bin/true"]).assert_success();
        // The proxy still works, for programs that honour HTTP_PROXY.
        old_kernel(&["run", "--mode", m, "--net-via", "proxy", "--net", &allow, "--", curl, "-sS", &url])
            .assert_stdout_eq(BODY);
        // Control: the same run on this kernel as it is.
        run_with(mode, &[&allow], &[curl, "-sS", &url]).assert_stdout_eq(BODY);
    });
}

/// Opens `n` connections to 127.0.0.1:`port`, never reads, writes `ready`
/// and holds them until `done` appears in `scratch`. `direct`: connects
/// (transparent egress hands the connection over); `proxy`: through the
/// proxy in `http_proxy` with `CONNECT`, its own receive buffers small, so
/// that what piles up waits on cordon's side of the proxy.
const HOLD_CLIENT: &str = r#"
import os, socket, sys, time
port, scratch, n, route = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
def connect():
    if route == "direct":
        return socket.create_connection(("127.0.0.1", port))
    host, pport = os.environ["http_proxy"][len("http://"):].rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, int(pport)))
    s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        got = s.recv(1)
        assert got, "the proxy closed the connection"
        head += got
    assert head.startswith(b"HTTP/1.1 200"), head
    return s
socks = [connect() for _ in range(n)]
open(f"{scratch}/ready", "w").close()
for _ in range(2400):
    if os.path.exists(f"{scratch}/done"):
        break
    time.sleep(0.05)
"#;

/// The memory cgroup (v1 or v2) of the run whose process has `marker` on
/// its command line: a `cordon-*` directory below this process's own.
fn run_memory_cgroup(marker: &str) -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let base = own.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        match controllers {
            c if c.split(',').any(|c| c == "memory") => Some(PathBuf::from("/sys/fs/cgroup/memory").join(&path[1..])),
            "" if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() => {
                Some(PathBuf::from("/sys/fs/cgroup").join(&path[1..]))
            }
            _ => None,
        }
    })?;
    let mut dirs = vec![base];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let ours = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("cordon-"))
                && std::fs::read_to_string(path.join("cgroup.procs")).is_ok_and(|procs| {
                    procs.lines().any(|pid| {
                        std::fs::read(format!("/proc/{pid}/cmdline"))
                            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
                    })
                });
            if ours {
                return Some(path);
            }
            if dirs.len() < 64 {
                dirs.push(path);
            }
        }
    }
    None
}

/// Bytes of socket buffers the kernel charges to a memory cgroup: v2's
/// `sock` in `memory.stat`, v1's TCP counter.
fn socket_memory(cgroup: &std::path::Path) -> Option<u64> {
    if let Ok(stat) = std::fs::read_to_string(cgroup.join("memory.stat")) {
        if let Some(v) = stat.lines().find_map(|l| l.strip_prefix("sock ")) {
            return v.trim().parse().ok();
        }
    }
    std::fs::read_to_string(cgroup.join("memory.kmem.tcp.usage_in_bytes")).ok()?.trim().parse().ok()
}

/// Issue 9: the kernel's buffers of the sockets the supervisor connects for
/// a run are charged to the run's memory cgroup (they are made by the run's
/// socket maker, in it), so `--memory-mb` bounds them; they were cordon's,
/// outside any limit. Host side: 64 connections whose server floods them
/// and whose client never reads; the run's cgroup holds their receive
/// queues. Control: the server wrote at least 64 KiB into each, so there
/// were bytes to hold. Against the binary before the socket maker, the
/// run's cgroup counted 0 bytes (checked by hand: see the closing note).
#[test]
fn the_buffers_of_handed_over_connections_count_against_the_runs_memory() {
    buffers_count_against_the_runs_memory(Route::Direct);
}

/// Issue 9, the proxy route: the proxy's upstream sockets are made by the
/// run's socket maker and its connections from the sandbox are accepted by
/// it (an accepted socket is charged to the task that accepts it), so
/// what a stalled client leaves queued on cordon's side of the proxy counts
/// against the run. The client's own receive buffers are small (4 KiB
/// asked: under 1 MiB for all 64), so at least 4 MiB charged can only be
/// the proxy's sockets. Against main's binary before this change the run
/// counted 0.5 MiB (checked by hand: see the closing note).
#[test]
fn the_buffers_of_the_proxys_connections_count_against_the_runs_memory() {
    buffers_count_against_the_runs_memory(Route::Proxy);
}

#[derive(Clone, Copy)]
enum Route {
    Direct,
    Proxy,
}

fn buffers_count_against_the_runs_memory(route: Route) {
    const CONNECTIONS: usize = 64;
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        let (route_name, via) = match route {
            Route::Direct => ("direct", "kernel"),
            Route::Proxy => ("proxy", "proxy"),
        };
        let what = format!("[{} {route_name}]", mode.as_str());
        let server = super::net_proxy::FloodServer::start(4 << 20);
        let scratch = Dir::new("egress-sockmem");
        let marker = scratch.path().to_string_lossy().into_owned();
        let mut cmd = run_in(mode);
        cmd.arg("--write").arg(scratch.path());
        cmd.args(["--net-via", via, "--memory-mb", "64", "--net", &format!("127.0.0.1:{}", server.port)]);
        cmd.args(["--", python, "-c", HOLD_CLIENT, &server.port.to_string(), &marker, &CONNECTIONS.to_string()]);
        cmd.arg(route_name);
        let mut child = cmd.spawn_without_output();
        // Until no byte moves: every receive queue is as full as it gets.
        let settled = server.stalls_once_ready(&what, &scratch.join("ready"), &mut child);
        let cgroup = run_memory_cgroup(&marker);
        let charged = cgroup.as_deref().and_then(socket_memory);
        std::fs::write(scratch.join("done"), "").unwrap();
        let status = child.wait().expect("cordon ends");
        assert!(status.success(), "{what} {status:?}");
        assert!(settled, "{what} the connections never stalled");
        assert_eq!(server.accepted(), CONNECTIONS as u64, "{what} connections that reached the server");
        let written = server.written();
        assert!(written >= (CONNECTIONS * 64 * 1024) as u64, "{what} the server wrote only {written} bytes");
        let cgroup = cgroup.unwrap_or_else(|| panic!("{what} no memory cgroup of the run found below this process's"));
        let charged = charged.unwrap_or_else(|| panic!("{what} {} counts no socket memory", cgroup.display()));
        eprintln!("{what} socket memory charged to the run: {charged} bytes (the server wrote {written})");
        assert!(charged >= (CONNECTIONS * 64 * 1024) as u64, "{what} only {charged} bytes charged to the run");
        // The kernel charges some buffers even past the limit (the first
        // segment of a socket's write queue, `sk_forced_mem_schedule`; what
        // an accepted socket brings): up to 64 KiB per socket, cordon's
        // side of the proxy has two per connection.
        let forced = CONNECTIONS as u64 * 2 * (64 << 10);
        assert!(
            charged <= (64 << 20) + forced,
            "{what} {charged} bytes charged, over the run's 64 MiB and {forced} forced"
        );
    });
}

/// Connects once (`first ok` in `scratch/result`), writes `ready`, waits
/// for `go`, connects three more times and adds what each got (`again
/// ok`, `again errno N` for a direct connect, `again` and the proxy's
/// answer for `proxy`: `CONNECT` through `http_proxy`).
const AGAIN_CLIENT: &str = r#"
import os, socket, sys, time
port, scratch, route = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def connect():
    if route == "direct":
        try:
            socket.create_connection(("127.0.0.1", port), timeout=20).close()
            return "ok"
        except OSError as e:
            return f"errno {e.errno}"
    host, pport = os.environ["http_proxy"][len("http://"):].rsplit(":", 1)
    s = socket.create_connection((host, int(pport)), timeout=20)
    s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    answer = b""
    while not answer.endswith(b"\r\n\r\n"):
        got = s.recv(1)
        if not got:
            break
        answer += got
    if not answer.startswith(b"HTTP/1.1 200"):
        while got := s.recv(4096):
            answer += got
    s.close()
    return "ok" if answer.startswith(b"HTTP/1.1 200") else " | ".join(answer.decode(errors="replace").splitlines())
with open(f"{scratch}/result", "w") as f:
    f.write(f"first {connect()}\n")
open(f"{scratch}/ready", "w").close()
for _ in range(1200):
    if os.path.exists(f"{scratch}/go"):
        break
    time.sleep(0.05)
for _ in range(3):
    with open(f"{scratch}/result", "a") as f:
        f.write(f"again {connect()}\n")
"#;

/// The pid of the run's socket maker: the one process in the run's cgroup
/// `cgroup` that lives in this process's network namespace (the sandbox's
/// init and command live in the run's own).
fn socket_maker_in(cgroup: &std::path::Path) -> Option<u32> {
    let ours = std::fs::read_link("/proc/self/ns/net").ok()?;
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).ok()?;
    let mut found = procs
        .lines()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|ns| ns == ours));
    let maker = found.next();
    assert!(found.next().is_none(), "more than one process of {} in the host's network namespace", cgroup.display());
    maker
}

/// Issue 9: the run's socket maker can be the pick of the run's
/// out-of-memory killer (its resident set counts the pages it shares with
/// cordon). Then the run fails closed: no socket is made outside its
/// memory cgroup, a connect gets `ENOBUFS` with the reason in the run's
/// network record (transparent egress), a proxy client gets `503` with the
/// reason; the destination is never reached again. The maker is killed
/// from the host as the killer would (SIGKILL). Control: the same run's
/// first connection went through.
#[test]
fn a_run_whose_socket_maker_was_killed_connects_nowhere_and_says_why() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        for (route, via) in [("direct", "kernel"), ("proxy", "proxy")] {
            let what = format!("[{} {route}]", mode.as_str());
            let server = super::net_proxy::FloodServer::start(0);
            let scratch = Dir::new("egress-maker-killed");
            let marker = scratch.path().to_string_lossy().into_owned();
            let mut cmd = run_in(mode);
            cmd.arg("--write").arg(scratch.path());
            cmd.args(["--json", "--net-via", via, "--memory-mb", "64", "--net", &format!("127.0.0.1:{}", server.port)]);
            cmd.args(["--", python, "-c", AGAIN_CLIENT, &server.port.to_string(), &marker, route]);
            let out = std::thread::scope(|s| {
                let run = s.spawn(|| cmd.run());
                let ready = poll_until(Duration::from_secs(60), || scratch.join("ready").exists() || run.is_finished());
                assert!(ready && scratch.join("ready").exists(), "{what} the client never connected once");
                let cgroup = run_memory_cgroup(&marker).unwrap_or_else(|| panic!("{what} no memory cgroup of the run"));
                let maker = socket_maker_in(&cgroup)
                    .unwrap_or_else(|| panic!("{what} no socket maker in {}", cgroup.display()));
                // A process of the run this test started, still in its cgroup.
                let killed = std::process::Command::new("kill").args(["-KILL", &maker.to_string()]).status().unwrap();
                assert!(killed.success(), "{what} kill {maker}");
                assert!(
                    poll_until(Duration::from_secs(10), || socket_maker_in(&cgroup).is_none()),
                    "{what} the socket maker {maker} outlived SIGKILL"
                );
                std::fs::write(scratch.join("go"), "").unwrap();
                run.join().expect("the run's thread")
            });
            out.assert_success();
            let result = scratch.read("result");
            assert!(result.starts_with("first ok\n"), "{what} control: the first connection failed: {result}");
            let again: Vec<&str> = result.lines().skip(1).collect();
            assert_eq!(again.len(), 3, "{what} the client did not connect three more times: {result}");
            // One socket may have been made ahead, in the run's cgroup,
            // before the maker died: at most the first connect after uses it.
            let reached_after = again.iter().take_while(|l| **l == "again ok").count();
            assert!(reached_after <= usize::from(route == "direct"), "{what} connected after the maker died: {result}");
            // The client's connect returns once the kernel has the
            // handshake; the server thread's accept may come later.
            let expected = 1 + reached_after as u64;
            poll_until(Duration::from_secs(10), || server.accepted() >= expected);
            assert_eq!(server.accepted(), expected, "{what} connections that reached the server: {result}");
            let reason = "socket maker is gone";
            for line in &again[reached_after..] {
                match route {
                    // ENOBUFS
                    "direct" => assert_eq!(*line, "again errno 105", "{what} {result}"),
                    _ => assert!(line.starts_with("again HTTP/1.1 503"), "{what} {result}"),
                }
            }
            match route {
                "direct" => {
                    let r = out.json();
                    let net = r["network"].as_array().expect("network list");
                    let explained = net.iter().filter(|c| c["error"].as_str().is_some_and(|e| e.contains(reason)));
                    assert_eq!(explained.count(), 3 - reached_after, "{what} records that name the reason: {net:?}");
                }
                _ => assert!(result.contains(reason), "{what} the answer lacks the reason: {result}"),
            }
        }
    });
}

/// Waits for `go`, connects to the refused 192.0.2.1:89, writes the
/// outcome to `connected`, then waits for `end`.
const LATE_CONNECT_CLIENT: &str = r#"
import os, socket, sys, time
scratch = sys.argv[1]
def wait_for(name):
    for _ in range(1200):
        if os.path.exists(f"{scratch}/{name}"):
            return
        time.sleep(0.05)
open(f"{scratch}/ready", "w").close()
wait_for("go")
try:
    socket.create_connection(("192.0.2.1", 89), timeout=20).close()
    outcome = "connected"
except OSError as e:
    outcome = e.strerror
with open(f"{scratch}/connected.tmp", "w") as f:
    f.write(outcome)
os.rename(f"{scratch}/connected.tmp", f"{scratch}/connected")
wait_for("end")
"#;

/// Names of cordon's threads that serve transparent egress.
fn egress_threads(cordon: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{cordon}/task")).expect("cordon's threads");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim_end().to_owned())
        .filter(|c| c.starts_with("cordon-egress"))
        .collect()
}

/// The `cordon` this test process started with `marker` in its arguments.
fn our_cordon(marker: &str) -> Option<u32> {
    let me = std::process::id().to_string();
    cordon_testkit::processes_mentioning(marker).into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .is_ok_and(|s| s.lines().any(|l| l.strip_prefix("PPid:").is_some_and(|p| p.trim() == me)))
    })
}

/// Issue 11: a run whose policy allows no host starts no egress thread or
/// runtime (`/proc/<cordon>/task/*/comm`, seen from the host), yet its
/// first `connect()` is still refused, explained on stderr and recorded.
/// Control: the supervisor's thread is there once the sandbox connected.
#[test]
fn a_run_without_network_grants_starts_no_egress_thread_until_it_connects() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        let what = format!("[{}]", mode.as_str());
        let scratch = Dir::new("egress-late-connect");
        let marker = scratch.path().to_string_lossy().into_owned();
        let mut cmd = run_in(mode);
        cmd.arg("--write").arg(scratch.path());
        cmd.args(["--json", "--", python, "-c", LATE_CONNECT_CLIENT, &marker]);
        let (before, after, out) = std::thread::scope(|s| {
            let run = s.spawn(|| cmd.run());
            let ready = poll_until(Duration::from_secs(60), || scratch.join("ready").exists() || run.is_finished());
            assert!(ready && scratch.join("ready").exists(), "{what} the client never started");
            let cordon = our_cordon(&marker).unwrap_or_else(|| panic!("{what} no cordon process of this run"));
            let before = egress_threads(cordon);
            std::fs::write(scratch.join("go"), "").unwrap();
            let connected =
                poll_until(Duration::from_secs(60), || scratch.join("connected").exists() || run.is_finished());
            assert!(connected && scratch.join("connected").exists(), "{what} the client never connected");
            let after = egress_threads(cordon);
            std::fs::write(scratch.join("end"), "").unwrap();
            (before, after, run.join().expect("the run's thread"))
        });
        assert_eq!(before, Vec::<String>::new(), "{what} egress threads before any connect");
        assert!(
            after.iter().any(|t| t == "cordon-egress"),
            "{what} control: no egress thread after the connect: {after:?}"
        );
        out.assert_success();
        assert_eq!(scratch.read("connected"), "Connection refused", "{what}");
        assert_refused_with_fix(&out, "192.0.2.1:89");
        let r = out.json();
        let c = &r["network"][0];
        assert_eq!(
            (c["host"].as_str(), c["port"].as_u64(), c["allowed"].as_bool()),
            (Some("192.0.2.1"), Some(89), Some(false)),
            "{what} {r}"
        );
        assert!(c["process"].as_str().is_some_and(|p| p.starts_with("python3, pid ")), "{what} {c}");
    });
}

/// Sets TCP_NODELAY, keepalive and two of its timings on one socket and
/// nothing on another, connects both (handed over), and prints what each
/// handed-over socket carries.
const OPTIONS_CLIENT: &str = r#"
import socket, sys
port = int(sys.argv[1])
def show(what, s):
    tcp = lambda name: s.getsockopt(socket.IPPROTO_TCP, name)
    print(what, tcp(socket.TCP_NODELAY) != 0, s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0,
          tcp(socket.TCP_KEEPIDLE), tcp(socket.TCP_KEEPINTVL), tcp(socket.TCP_KEEPCNT))
s = socket.socket()
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 33)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)
s.connect(("127.0.0.1", port))
show("set", s)
c = socket.socket()
c.connect(("127.0.0.1", port))
show("unset", c)
"#;

/// Rule 5: the options a program set before `connect()` are on the socket
/// it gets; what it did not set has the host's defaults (the keepalive
/// timings: the host namespace's sysctls), as a direct connection would.
/// Control: the socket with nothing set reads the defaults, so the values
/// of the first one are its own.
#[test]
fn the_options_a_program_set_before_connect_are_on_the_socket_it_gets() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let server = counting_server();
    let allow = format!("127.0.0.1:{}", server.port);
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/tcp_keepalive_{name}")).unwrap().trim().to_owned()
    };
    let (idle, intvl, probes) = (sysctl("time"), sysctl("intvl"), sysctl("probes"));
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_with(mode, &[&allow], &[python, "-c", OPTIONS_CLIENT, &server.port.to_string()]);
        out.assert_success();
        out.assert_stdout_eq(&format!("set True True 33 {intvl} 4\nunset False False {idle} {intvl} {probes}\n"));
    });
}

/// The probe of `the_hosts_own_addresses_are_reached_only_through_a_literal_pattern`:
/// for each `host` in argv[2..], connects to `host:PORT` (argv[1]) directly,
/// or with `CONNECT` through the proxy in `HTTP_PROXY` when there is one,
/// and prints `HOST reached: DATA` or `HOST refused: WHY`.
const OWN_ADDRESS_PROBE: &str = r#"
import os, socket, sys, urllib.parse
port = int(sys.argv[1])
proxy = os.environ.get("HTTP_PROXY")
for host in sys.argv[2:]:
    try:
        if proxy:
            p = urllib.parse.urlsplit(proxy)
            s = socket.create_connection((p.hostname, p.port), timeout=10)
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk: break
                head += chunk
            status = head.split(b"\r\n")[0].decode()
            if " 200 " not in status + " ":
                print(f"{host} refused: {status}", flush=True); continue
            data = head.split(b"\r\n\r\n", 1)[1] or s.recv(100)
        else:
            s = socket.create_connection((host, port), timeout=10)
            data = s.recv(100)
        print(f"{host} reached: {data.decode().strip()}", flush=True)
    except OSError as e:
        print(f"{host} refused: {e}", flush=True)
"#;

/// The listener of that test, run inside the test's namespace: one
/// dual-stack socket on `[::]` (so `0.0.0.0` too), its port on the first
/// line of stdout, a line in the log file (argv[1]) for each connection it
/// accepts, written before it answers `HOST-ONLY`.
const OWN_ADDRESS_LISTENER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, peer = s.accept()
    with open(sys.argv[1], "a") as log: log.write(f"{peer[0]}\n")
    c.sendall(b"HOST-ONLY\n"); c.close()
"#;

/// R12-4. A connection to one of the host's own interface addresses goes
/// through the host's loopback and reaches every service bound to `0.0.0.0`
/// or `::` as the host itself, so such an address is refused like loopback
/// unless a pattern names it literally, whatever its range, on both routes.
/// The "host" is a network namespace the test makes (cordon runs in it):
/// an interface there gets a TEST-NET address (192.0.2.77, a range no
/// rule refuses by itself) and a documentation IPv6 address, and a
/// listener there on `[::]` logs each connection it accepts. With `--net '*'`
/// every spelling (the address, its IPv4-mapped form, the IPv6 address, a
/// numeric name for it) is refused and the listener accepts nothing; control:
/// `--net 192.0.2.77:PORT` reaches it. Fails on 6831b6e (every spelling
/// reached, on both routes, in both modes).
#[test]
fn the_hosts_own_addresses_are_reached_only_through_a_literal_pattern() {
    use std::io::{BufRead, BufReader};

    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let ns = super::netns::Netns::new();
    // A veth pair (the VM kernels CI runs on lack the dummy module), both
    // ends in the test's namespace: the address is simply one of its own.
    ns.ip(concat!(
        "link add own0 type veth peer name own1\n",
        "addr add 192.0.2.77/24 dev own0\n",
        "addr add 2001:db8::77/64 dev own0 nodad\n",
        "link set own0 up\n",
        "link set own1 up",
    ));
    let dir = Dir::new("own-address");
    let log = dir.join("accepted");
    std::fs::write(&log, "").unwrap();
    /// Killed (by pid) and reaped however the test ends.
    struct Listener(std::process::Child);
    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut listener = ns
        .command(python)
        .args(["-c", OWN_ADDRESS_LISTENER])
        .arg(&log)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the listener");
    let stdout = listener.stdout.take().unwrap();
    let _listener = Listener(listener);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("the listener's port");
    let port = line.trim().to_owned();
    let accepted = || std::fs::read_to_string(&log).unwrap();
    // 3221226061 is 192.0.2.77 as one number: a name the resolver turns into it.
    // 64:ff9b::c000:24d is its NAT64 spelling.
    let spellings = ["192.0.2.77", "::ffff:192.0.2.77", "2001:db8::77", "3221226061", "64:ff9b::c000:24d"];
    let run = |mode: Mode, via: &str, net: &str, hosts: &[&str]| {
        TestCommand::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", ns.pid()))
            .arg("--")
            .arg(super::cordon_bin())
            .args([
                "run",
                "--mode",
                mode.as_str(),
                "--net-via",
                via,
                "--net",
                net,
                "--",
                python,
                "-c",
                OWN_ADDRESS_PROBE,
            ])
            .arg(&port)
            .args(hosts)
            .run()
    };
    each_mode(sandbox_modes!(support), |mode| {
        for via in ["kernel", "proxy"] {
            let what = format!("[{} via {via}]", mode.as_str());
            let out = run(mode, via, "*", &spellings);
            assert!(!out.stdout.contains("HOST-ONLY"), "{what} a wildcard reached the host's own address: {out}");
            for host in spellings {
                assert!(out.stdout.contains(&format!("{host} refused: ")), "{what} {host}: {out}");
            }
            assert_eq!(accepted(), "", "{what} the host's service accepted a connection from the sandbox");
            if via == "kernel" {
                out.assert_stderr_contains("cordon: network: refused 192.0.2.77:");
                out.assert_stderr_contains(
                    "a local (this host's own) address, which only a pattern naming it literally unlocks",
                );
                out.assert_stderr_contains(&format!("— add --net 192.0.2.77:{port}\n"));
            }
            // Control: the address named literally is reached, so the
            // refusals above are cordon's, not the setup's.
            let out = run(mode, via, &format!("192.0.2.77:{port}"), &["192.0.2.77"]);
            out.assert_stdout_eq("192.0.2.77 reached: HOST-ONLY\n");
            assert_eq!(accepted().lines().count(), 1, "{what} {}", accepted());
            std::fs::write(&log, "").unwrap();
        }
    });
}
