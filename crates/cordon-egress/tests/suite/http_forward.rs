//! Plain HTTP through the forward proxy, driven by curl.

use std::time::Duration;

use cordon_egress::{Protocol, ProxyConfig};

use super::support::{closed_port, curl, only_record, policy, proxy, proxy_with, raw, Blackhole, Origin};

#[test]
fn allowed_request_reaches_the_origin_and_counts_are_exact() {
    let origin = Origin::start();
    let pattern = format!("localhost:{}", origin.port());
    let proxy = proxy(&[&pattern], &[]);
    let out = curl(&[
        "-x",
        &format!("http://{}", proxy.local_addr()),
        &format!("http://localhost:{}/hello?x=1", origin.port()),
    ]);
    assert_eq!((out.exit, out.status), (0, 200), "{out:?}");
    assert_eq!(out.body_text(), "hello from origin\n");

    let exchange = origin.wait_for(1).remove(0);
    // Origin-form target, Host from the request target, one request only.
    assert!(exchange.head.starts_with("GET /hello?x=1 HTTP/1.1\r\n"), "{}", exchange.head);
    assert!(exchange.head.contains(&format!("\r\nHost: localhost:{}\r\n", origin.port())), "{}", exchange.head);
    assert!(exchange.head.contains("\r\nConnection: close\r\n"), "{}", exchange.head);
    assert!(!exchange.head.to_ascii_lowercase().contains("proxy-connection"), "{}", exchange.head);

    let record = only_record(proxy);
    assert_eq!(record.protocol, Protocol::Http);
    assert_eq!((record.host.as_str(), record.port), ("localhost", origin.port()));
    assert!(record.allowed);
    assert_eq!(record.rule.as_deref(), Some(pattern.as_str()));
    assert_eq!(record.addr, Some(origin.addr));
    assert_eq!(record.error, None);
    // Up: exactly what the origin received. Down: exactly what curl received.
    assert_eq!(record.bytes_up, exchange.received);
    assert_eq!(record.bytes_down, out.header_bytes + out.body.len() as u64);
}

#[test]
fn downloads_and_uploads_are_counted_exactly() {
    let origin = Origin::start();
    let proxy = proxy(&[&format!("127.0.0.1:{}", origin.port())], &[]);
    let via = format!("http://{}", proxy.local_addr());
    let dir = std::env::temp_dir().join(format!("cordon-proxy-upload-{}", std::process::id()));
    std::fs::write(&dir, vec![b'z'; 1_000_003]).unwrap();
    let upload = format!("@{}", dir.display());

    let big = curl(&["-x", &via, &format!("http://127.0.0.1:{}/bytes/10000000", origin.port())]);
    assert_eq!((big.exit, big.status, big.body.len()), (0, 200, 10_000_000), "{}", big.stderr);
    let post =
        curl(&["-x", &via, "--data-binary", &upload, &format!("http://127.0.0.1:{}/echo-length", origin.port())]);
    assert_eq!(post.body_text(), "received 1000003 body bytes\n", "{}", post.stderr);
    let chunked = curl(&[
        "-x",
        &via,
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &upload,
        &format!("http://127.0.0.1:{}/echo-length", origin.port()),
    ]);
    assert_eq!(chunked.status, 200, "{}", chunked.stderr);
    assert!(chunked.body_text().starts_with("received "), "{}", chunked.body_text());
    std::fs::remove_file(&dir).unwrap();

    let mut exchanges = origin.wait_for(3);
    exchanges.sort_by_key(|e| e.head.contains("chunked"));
    let records = proxy.shutdown();
    assert_eq!(records.len(), 3, "{records:#?}");
    for (record, out) in records.iter().zip([&big, &post, &chunked]) {
        assert_eq!(record.error, None, "{record:?}");
        assert_eq!(record.bytes_down, out.header_bytes + out.body.len() as u64, "{record:?}");
    }
    // Requests reached the origin in order; match them by what they carry.
    let by_head = |needle: &str| exchanges.iter().find(|e| e.head.contains(needle)).unwrap().received;
    assert_eq!(records[0].bytes_up, by_head("/bytes/"));
    assert_eq!(
        records[1].bytes_up,
        exchanges.iter().find(|e| e.head.contains("Content-Length: 1000003")).unwrap().received
    );
    assert_eq!(records[2].bytes_up, by_head("chunked"));
    assert!(records[1].bytes_up > 1_000_003 && records[2].bytes_up > 1_000_003);
}

#[test]
fn head_request_ends_without_waiting_for_the_origin_to_close() {
    let origin = Origin::start();
    let proxy = proxy(&[&format!("localhost:{}", origin.port())], &[]);
    let out = curl(&[
        "-I",
        "-x",
        &format!("http://{}", proxy.local_addr()),
        &format!("http://localhost:{}/bytes/99", origin.port()),
    ]);
    assert_eq!((out.exit, out.status), (0, 200), "{out:?}");
    let record = only_record(proxy);
    assert_eq!(record.error, None);
    assert!(record.duration_ms < 5000.0, "{record:?}");
}

#[test]
fn hop_by_hop_fields_are_dropped() {
    let origin = Origin::start();
    let proxy = proxy(&[&format!("localhost:{}", origin.port())], &[]);
    let request = format!(
        "GET http://localhost:{}/ HTTP/1.1\r\nHost: wrong.example\r\nProxy-Authorization: Basic c2VjcmV0\r\n\
         Proxy-Connection: keep-alive\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: 300\r\nX-Kept: yes\r\n\r\n",
        origin.port()
    );
    let response = String::from_utf8(raw(proxy.local_addr(), request.as_bytes())).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
    let head = origin.wait_for(1).remove(0).head;
    assert_eq!(
        head,
        format!("GET / HTTP/1.1\r\nHost: localhost:{}\r\nX-Kept: yes\r\nConnection: close\r\n\r\n", origin.port())
    );
    proxy.shutdown();
}

#[test]
fn disallowed_host_gets_403_naming_the_pattern() {
    let proxy = proxy(&["localhost:1"], &[]);
    // Refused before any name is resolved: no traffic leaves the machine.
    let out = curl(&["-x", &format!("http://{}", proxy.local_addr()), "http://example.com/"]);
    assert_eq!(out.status, 403, "{out:?}");
    assert_eq!(
        out.body_text(),
        "cordon proxy: example.com:80 is not allowed by the network policy; add --net example.com:80 to allow it\n"
    );
    let record = only_record(proxy);
    assert_eq!(
        (record.host.as_str(), record.port, record.allowed, record.rule.as_deref()),
        ("example.com", 80, false, None)
    );
    assert_eq!((record.bytes_up, record.bytes_down), (0, 0));
    assert!(record.error.unwrap().contains("add --net example.com:80"));
}

#[test]
fn disallowed_port_is_refused() {
    let allowed = Origin::start();
    let other = Origin::start();
    let proxy = proxy(&[&format!("localhost:{}", allowed.port())], &[]);
    let out = curl(&["-x", &format!("http://{}", proxy.local_addr()), &format!("http://localhost:{}/", other.port())]);
    assert_eq!(out.status, 403, "{out:?}");
    assert!(out.body_text().contains(&format!("add --net localhost:{}", other.port())), "{}", out.body_text());
    // Control: the allowed port on the same host works.
    let ok = curl(&["-x", &format!("http://{}", proxy.local_addr()), &format!("http://localhost:{}/", allowed.port())]);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(other.exchanges().is_empty());
    let records = proxy.shutdown();
    assert_eq!(records.iter().map(|r| r.allowed).collect::<Vec<_>>(), [false, true]);
}

#[test]
fn deny_beats_allow() {
    let origin = Origin::start();
    let url = format!("http://localhost:{}/", origin.port());
    let deny = format!("localhost:{}", origin.port());
    let denied = proxy(&["localhost"], &[&deny]);
    let out = curl(&["-x", &format!("http://{}", denied.local_addr()), &url]);
    assert_eq!(out.status, 403, "{out:?}");
    assert_eq!(
        out.body_text(),
        format!("cordon proxy: localhost:{0} is refused by the deny rule `localhost:{0}`\n", origin.port())
    );
    let record = only_record(denied);
    assert_eq!((record.allowed, record.rule.as_deref()), (false, Some(deny.as_str())));

    // Control: the same allow pattern without the deny rule.
    let allowed = proxy(&["localhost"], &[]);
    let out = curl(&["-x", &format!("http://{}", allowed.local_addr()), &url]);
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(only_record(allowed).rule.as_deref(), Some("localhost"));
    // The origin files an exchange once the proxy has closed its side,
    // which may be after curl has its response: wait for it.
    assert_eq!(origin.wait_for(1).len(), 1);
}

#[test]
fn origin_form_and_https_urls_are_refused_with_an_explanation() {
    let proxy = proxy(&["*"], &[]);
    let response = String::from_utf8(raw(proxy.local_addr(), b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")).unwrap();
    assert!(response.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{response}");
    assert!(response.contains("send absolute-form requests"), "{response}");
    let response = String::from_utf8(raw(proxy.local_addr(), b"GET https://localhost/ HTTP/1.1\r\n\r\n")).unwrap();
    assert!(response.contains("CONNECT tunnel"), "{response}");
    let records = proxy.shutdown();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| !r.allowed && r.error.is_some()));
}

#[test]
fn unreachable_upstream_gets_502() {
    let port = closed_port();
    let proxy = proxy(&[&format!("127.0.0.1:{port}")], &[]);
    let out = curl(&["-x", &format!("http://{}", proxy.local_addr()), &format!("http://127.0.0.1:{port}/")]);
    assert_eq!(out.status, 502, "{out:?}");
    assert!(out.body_text().contains(&format!("connecting to 127.0.0.1:{port} failed")), "{}", out.body_text());
    let record = only_record(proxy);
    assert!(record.allowed, "the policy allowed it; the connection failed");
    assert!(record.error.unwrap().contains("refused"));
}

#[test]
fn upstream_that_never_answers_gets_504_at_the_connect_timeout() {
    let hole = Blackhole::start();
    let mut config = ProxyConfig::new(policy(&[&format!("127.0.0.1:{}", hole.port())], &[]));
    config.connect_timeout = Duration::from_millis(300);
    let proxy = proxy_with(config);
    let proxy_url = format!("http://{}", proxy.local_addr());
    let target = format!("http://127.0.0.1:{}/", hole.port());
    // Bounded, so a proxy that does not time out fails the test instead of hanging it.
    let forward = curl(&["-m", "20", "-x", &proxy_url, &target]);
    assert_eq!(forward.status, 504, "{forward:?}");
    assert!(forward.body_text().contains("timed out after 300ms"), "{}", forward.body_text());
    let tunnel = curl(&["-m", "20", "-p", "-x", &proxy_url, &target]);
    assert_eq!(tunnel.connect_status, 504, "{tunnel:?}");
    let records = proxy.shutdown();
    assert_eq!(records.len(), 2, "{records:#?}");
    for r in &records {
        assert!(r.allowed, "the policy allowed it; the connection timed out: {r:?}");
        assert_eq!((r.bytes_up, r.bytes_down), (0, 0), "{r:?}");
        assert!(r.error.as_deref().is_some_and(|e| e.contains("timed out")), "{r:?}");
    }
}
