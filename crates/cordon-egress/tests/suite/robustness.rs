//! Oversized, malformed, slow and numerous clients: bounded answers, no
//! crash, and a record for each.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cordon_egress::{ProxyConfig, MAX_HEAD_BYTES};

use super::support::{curl, policy, proxy, proxy_with, raw, Origin};

#[test]
fn oversized_head_gets_431_and_the_proxy_keeps_serving() {
    let origin = Origin::start();
    let proxy = proxy(&[&format!("localhost:{}", origin.port())], &[]);
    let mut request = format!("GET http://localhost:{}/ HTTP/1.1\r\nX-Big: ", origin.port()).into_bytes();
    request.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 5000));
    request.extend_from_slice(b"\r\n\r\n");
    let response = String::from_utf8(raw(proxy.local_addr(), &request)).unwrap();
    assert!(response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{response}");
    // A head just under the limit is fine.
    let mut request = format!("GET http://localhost:{}/ HTTP/1.1\r\nX-Big: ", origin.port()).into_bytes();
    request.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES - 200));
    request.extend_from_slice(b"\r\n\r\n");
    let response = String::from_utf8(raw(proxy.local_addr(), &request)).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{}", &response[..response.len().min(200)]);
    let records = proxy.shutdown();
    assert_eq!(records.len(), 2);
    assert!(records[0].error.as_deref().unwrap().contains("larger than 65536 bytes"));
    assert_eq!(records[1].error, None);
}

#[test]
fn malformed_requests_do_not_crash_the_proxy() {
    let origin = Origin::start();
    let proxy = proxy(&[&format!("localhost:{}", origin.port())], &[]);
    let mut inputs: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"GET".to_vec(),
        b"GET http://localhost/".to_vec(),
        b"CONNECT\r\n\r\n".to_vec(),
        b"CONNECT localhost HTTP/1.1\r\n\r\n".to_vec(),
        b"CONNECT :0 HTTP/1.1\r\n\r\n".to_vec(),
        b"GET http://[::1 HTTP/1.1\r\n\r\n".to_vec(),
        b"GET http://a..b/ HTTP/1.1\r\n\r\n".to_vec(),
        b"GET http://a%00b/ HTTP/1.1\r\n\r\n".to_vec(),
        b"GET http://x/ HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        b"POST http://localhost:1/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        b"\x05".to_vec(),
        b"\x05\x01".to_vec(),
        b"\x05\xff\x00".to_vec(),
        b"\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50".to_vec(),
        b"\x05\x01\x00\x05\x01\x00\x03\x03a b\x00\x50".to_vec(),
        b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x00".to_vec(),
        b"\x05\x01\x00\x06\x01\x00\x01".to_vec(),
        b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00".to_vec(),
        vec![0u8; 100_000],
        vec![b'\n'; 70_000],
    ];
    let mut seed = 0x1234_5678_9abc_def1_u64;
    for _ in 0..20 {
        let len = (seed % 3000) as usize;
        let bytes = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()[3]
            })
            .collect();
        inputs.push(bytes);
    }
    for input in &inputs {
        let response = raw(proxy.local_addr(), input);
        if response.starts_with(b"HTTP/") {
            let text = String::from_utf8_lossy(&response);
            assert!(
                ["HTTP/1.1 400 ", "HTTP/1.1 403 ", "HTTP/1.1 431 ", "HTTP/1.1 502 ", "HTTP/1.1 505 "]
                    .iter()
                    .any(|s| text.starts_with(s)),
                "{input:?} -> {text}"
            );
        }
    }
    // Still serving.
    let out = curl(&["-x", &format!("http://{}", proxy.local_addr()), &format!("http://localhost:{}/", origin.port())]);
    assert_eq!(out.status, 200, "{out:?}");
    let records = proxy.shutdown();
    assert_eq!(records.len(), inputs.len() + 1, "one record per connection");
    assert_eq!(records.iter().filter(|r| r.allowed && r.error.is_none()).count(), 1, "{records:#?}");
}

#[test]
fn silent_clients_are_closed_at_the_handshake_timeout() {
    let mut config = ProxyConfig::new(policy(&["*"], &[]));
    config.handshake_timeout = Duration::from_millis(300);
    let proxy = proxy_with(config);
    let started = Instant::now();
    let mut silent = TcpStream::connect(proxy.local_addr()).unwrap();
    let mut partial = TcpStream::connect(proxy.local_addr()).unwrap();
    partial.write_all(b"GET http://localhost/ HTTP/1.1\r\nX: ").unwrap();
    for stream in [&mut silent, &mut partial] {
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 408 "), "{text}");
    }
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let records = proxy.shutdown();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.error.as_deref().unwrap().contains("no complete request within")), "{records:#?}");
}

#[test]
fn record_limit_closes_unserved_connections_and_says_so() {
    let mut config = ProxyConfig::new(policy(&[], &[]));
    config.max_records = 2;
    let proxy = proxy_with(config);
    for _ in 0..4 {
        raw(proxy.local_addr(), b"GET http://example.com/ HTTP/1.1\r\n\r\n");
    }
    let records = proxy.shutdown();
    assert_eq!(records.len(), 3, "{records:#?}");
    assert!(records[..2].iter().all(|r| r.host == "example.com"));
    assert_eq!(
        records[2].error.as_deref(),
        Some("2 further connection(s) were closed unserved: the proxy's record limit (2) was reached")
    );
}

#[test]
fn concurrent_clients_are_all_served_and_recorded() {
    let origin = Origin::start();
    let proxy = proxy(&[&format!("localhost:{}", origin.port())], &[]);
    let addr = proxy.local_addr();
    let request = format!("GET http://localhost:{}/bytes/5000 HTTP/1.1\r\n\r\n", origin.port());
    let clients: Vec<_> = (0..48)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || raw(addr, request.as_bytes()))
        })
        .collect();
    let body: Vec<u8> = (0..5000).map(|i| b'a' + (i % 26) as u8).collect();
    for client in clients {
        let response = client.join().unwrap();
        assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(response.ends_with(&body));
    }
    let records = proxy.shutdown();
    assert_eq!(records.len(), 48);
    assert!(records.iter().all(|r| r.allowed && r.error.is_none() && r.bytes_down > 5000), "{records:#?}");
}
