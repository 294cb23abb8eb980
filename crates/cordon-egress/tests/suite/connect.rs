//! HTTP CONNECT tunnels.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cordon_egress::Protocol;

use super::support::{curl, only_record, proxy, raw, raw_keep_open, Echo, Origin};

#[test]
fn tunnel_counts_exactly_the_tunnelled_bytes() {
    let origin = Origin::start();
    let proxy = proxy(&[&format!("localhost:{}", origin.port())], &[]);
    let out = curl(&[
        "-p",
        "-x",
        &format!("http://{}", proxy.local_addr()),
        &format!("http://localhost:{}/bytes/300000", origin.port()),
    ]);
    assert_eq!((out.exit, out.connect_status, out.status, out.body.len()), (0, 200, 200, 300_000), "{}", out.stderr);
    let exchange = origin.wait_for(1).remove(0);
    // Through a tunnel the origin sees curl's own request, untouched.
    assert!(exchange.head.starts_with("GET /bytes/300000 HTTP/1.1\r\n"), "{}", exchange.head);
    let record = only_record(proxy);
    assert_eq!((record.protocol, record.allowed, record.error.as_deref()), (Protocol::Connect, true, None));
    // Not counting the proxy's "200 Connection established".
    assert_eq!((record.bytes_up, record.bytes_down), (exchange.received, exchange.sent));
}

#[test]
fn denied_connect_gets_403() {
    let origin = Origin::start();
    let proxy = proxy(&["localhost:1"], &[]);
    let out =
        curl(&["-p", "-x", &format!("http://{}", proxy.local_addr()), &format!("http://localhost:{}/", origin.port())]);
    assert_ne!(out.exit, 0);
    assert_eq!(out.connect_status, 403, "{out:?}");
    let response = String::from_utf8(raw(
        proxy.local_addr(),
        format!("CONNECT localhost:{} HTTP/1.1\r\n\r\n", origin.port()).as_bytes(),
    ))
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{response}");
    assert!(response.ends_with(&format!("add --net localhost:{} to allow it\n", origin.port())), "{response}");
    let records = proxy.shutdown();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.protocol == Protocol::Connect && !r.allowed));
    assert!(origin.exchanges().is_empty());
}

#[test]
fn bytes_sent_with_the_connect_request_are_relayed() {
    let echo = Echo::start();
    let proxy = proxy(&[&format!("127.0.0.1:{}", echo.port())], &[]);
    let mut client = TcpStream::connect(proxy.local_addr()).unwrap();
    let head = raw_keep_open(
        &mut client,
        format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\nHost: x\r\n\r\nearly", echo.port()).as_bytes(),
    );
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    client.write_all(b" and late").unwrap();
    let mut echoed = [0u8; 14];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"early and late");
    drop(client);
    let record = only_record(proxy);
    assert_eq!((record.bytes_up, record.bytes_down, record.error), (14, 14, None));
}

#[test]
fn idle_tunnel_is_closed_and_recorded() {
    let echo = Echo::start();
    let mut config =
        cordon_egress::ProxyConfig::new(super::support::policy(&[&format!("127.0.0.1:{}", echo.port())], &[]));
    config.idle_timeout = Duration::from_millis(200);
    let proxy = super::support::proxy_with(config);
    let mut client = TcpStream::connect(proxy.local_addr()).unwrap();
    raw_keep_open(&mut client, format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", echo.port()).as_bytes());
    client.write_all(b"ping").unwrap();
    let mut rest = Vec::new();
    // The proxy closes the idle tunnel after 200 to 400 ms.
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    client.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"ping");
    let record = only_record(proxy);
    assert!(record.error.as_deref().unwrap_or_default().contains("nothing moved in either direction"), "{record:?}");
    assert_eq!((record.bytes_up, record.bytes_down), (4, 4));
}

#[test]
fn shutdown_cuts_off_open_tunnels_and_records_them() {
    let echo = Echo::start();
    let mut config =
        cordon_egress::ProxyConfig::new(super::support::policy(&[&format!("127.0.0.1:{}", echo.port())], &[]));
    config.shutdown_grace = Duration::from_millis(100);
    let proxy = super::support::proxy_with(config);
    let mut client = TcpStream::connect(proxy.local_addr()).unwrap();
    raw_keep_open(&mut client, format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", echo.port()).as_bytes());
    client.write_all(b"0123456789").unwrap();
    let mut echoed = [0u8; 10];
    client.read_exact(&mut echoed).unwrap();
    let started = std::time::Instant::now();
    let record = only_record(proxy);
    assert!(started.elapsed() < Duration::from_secs(2), "shutdown took {:?}", started.elapsed());
    assert_eq!((record.bytes_up, record.bytes_down), (10, 10));
    assert!(record.error.as_deref().unwrap_or_default().starts_with("cut off"), "{record:?}");
    // The client sees the tunnel close.
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(client.read(&mut echoed).unwrap_or(0), 0);
}
