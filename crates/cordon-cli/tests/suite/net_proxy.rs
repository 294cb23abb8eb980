//! Network allow-lists through the filtering proxy (issue 4), `--net-via
//! proxy`, in both sandbox modes, against servers this test starts on the
//! host's loopback. The sandbox keeps its empty network namespace; the
//! proxy is its only way out, and `network` in the result accounts for
//! every connection.

use std::net::UdpSocket;

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, HttpServer, Mode};

use super::{run_in, tool};

const BODY: &str = "hello from the host server\n";

/// The test server, answering with [`BODY`].
fn start_server() -> HttpServer {
    HttpServer::start(BODY)
}

/// `cordon run` with the proxy as the route out.
fn run_via_proxy(mode: Mode) -> cordon_testkit::TestCommand {
    let mut cmd = run_in(mode);
    cmd.args(["--net-via", "proxy"]);
    cmd
}

fn curl(mode: Mode, net: &[&str], url: &str, extra: &[&str]) -> cordon_testkit::Outcome {
    let mut cmd = run_via_proxy(mode);
    cmd.arg("--json");
    for n in net {
        cmd.args(["--net", n]);
    }
    cmd.args(["--", tool("/usr/bin/curl"), "-s", "-S"]).args(extra).arg(url).run()
}

#[test]
fn an_allowed_host_is_reached_and_accounted_for_exactly() {
    let support = kernel_support();
    let server = start_server();
    let allow = format!("127.0.0.1:{}", server.port);
    each_mode(sandbox_modes!(support), |mode| {
        // Through CONNECT (-p), the tunnel carries exactly what client and
        // server exchanged.
        let before = server.received();
        let out = curl(mode, &[&allow], &format!("http://127.0.0.1:{}/x", server.port), &["-p"]);
        let r = out.json();
        assert_eq!(r["ok"], true, "[{}] {r}", mode.as_str());
        assert_eq!(r["logs"]["lines"][0]["text"], BODY.trim_end());
        let net = r["network"].as_array().expect("network list");
        assert_eq!(net.len(), 1, "{net:?}");
        let c = &net[0];
        assert_eq!(
            (c["host"].as_str(), c["port"].as_u64(), c["allowed"].as_bool()),
            (Some("127.0.0.1"), Some(u64::from(server.port)), Some(true))
        );
        assert_eq!(c["rule"], allow.as_str());
        assert_eq!(c["protocol"], "connect");
        let up = server.received() - before;
        assert_eq!(c["bytes_up"].as_u64(), Some(up), "bytes up must be what the server received");
        assert_eq!(c["bytes_down"].as_u64(), Some(server.response_len()), "bytes down must be what the server sent");
    });
}

#[test]
fn python_urllib_uses_the_proxy_from_the_environment() {
    let support = kernel_support();
    let server = start_server();
    let allow = format!("127.0.0.1:{}", server.port);
    let script = format!(
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{}/').read().decode(), end='')",
        server.port
    );
    each_mode(sandbox_modes!(support), |mode| {
        run_via_proxy(mode)
            .args(["--net", &allow, "--", tool("/usr/bin/python3"), "-c", &script])
            .run()
            .assert_success()
            .assert_stdout_eq(BODY);
    });
}

#[test]
fn refusals_are_explained_and_recorded() {
    let support = kernel_support();
    let server = start_server();
    let port = server.port;
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        // (url, --net patterns, what the 403 body says)
        (format!("http://127.0.0.1:{port}/"), vec!["example.com".into()], "not allowed by the network policy"),
        // A private/loopback literal needs a literal pattern; `*` is not one.
        (format!("http://127.0.0.1:{port}/"), vec!["*".into()], "127.0.0.1"),
        // A name that resolves to loopback is refused unless named literally.
        (format!("http://localhost:{port}/"), vec!["*".into()], "localhost"),
        // The right host on another port.
        (
            format!("http://127.0.0.1:{port}/"),
            vec![format!("127.0.0.1:{}", port.wrapping_add(1))],
            "not allowed by the network policy",
        ),
    ];
    each_mode(sandbox_modes!(support), |mode| {
        for (i, (url, net, says)) in cases.iter().enumerate() {
            let mut cmd = run_via_proxy(mode);
            cmd.arg("--json");
            for n in net {
                cmd.args(["--net", n]);
            }
            let out = cmd.args(["--", tool("/usr/bin/curl"), "-s", "-w", "\\n%{http_code}", url]).run();
            let r = out.json();
            let text: Vec<&str> =
                r["logs"]["lines"].as_array().unwrap().iter().filter_map(|l| l["text"].as_str()).collect();
            assert_eq!(text.last().copied(), Some("403"), "[{}] case {i} {url} {net:?}: {r}", mode.as_str());
            assert!(
                text.iter().any(|t| t.contains(says)),
                "[{}] case {i}: body should mention `{says}`: {text:?}",
                mode.as_str()
            );
            let conn = &r["network"][0];
            assert_eq!(conn["allowed"], false, "[{}] case {i}: {r}", mode.as_str());
        }
    });
}

#[test]
fn nothing_but_the_proxy_is_reachable() {
    let support = kernel_support();
    let server = start_server();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let allow = format!("127.0.0.1:{}", server.port);
    let probe = format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {}), timeout=2); print('tcp connected')\nexcept OSError as e: print('tcp', e.strerror)\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('127.0.0.1', {udp_port})); print('udp sent')",
        server.port
    );
    // Control: outside a sandbox both reach the host.
    let control = run_in(Mode::Dev).args(["--", tool("/usr/bin/python3"), "-c", &probe]).run();
    control.assert_success().assert_stdout_contains("tcp connected");
    let mut buf = [0u8; 8];
    assert!(udp.recv_from(&mut buf).is_ok(), "control: the datagram reached the host");
    each_mode(sandbox_modes!(support), |mode| {
        // Even with the server allowed, a direct connection has no route: the
        // sandbox's 127.0.0.1 is its own.
        let out = run_via_proxy(mode).args(["--net", &allow, "--", tool("/usr/bin/python3"), "-c", &probe]).run();
        out.assert_success().assert_stdout_contains("tcp Connection refused");
        assert!(udp.recv_from(&mut [0u8; 8]).is_err(), "[{}] a datagram reached the host", mode.as_str());
    });
}

#[test]
fn dev_mode_refuses_network_rules() {
    run_in(Mode::Dev)
        .args(["--net", "example.com", "--", "true"])
        .run()
        .assert_code(125)
        .assert_stderr_contains("dev mode");
}
