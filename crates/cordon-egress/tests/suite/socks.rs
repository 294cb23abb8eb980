//! SOCKS5 on the same listener.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cordon_egress::Protocol;

use super::support::{curl, only_record, proxy, Echo, Origin};

#[test]
fn socks5_hostname_is_checked_and_counted() {
    let origin = Origin::start();
    let proxy = proxy(&[&format!("localhost:{}", origin.port())], &[]);
    let out = curl(&[
        "--socks5-hostname",
        &proxy.local_addr().to_string(),
        &format!("http://localhost:{}/bytes/123456", origin.port()),
    ]);
    assert_eq!((out.exit, out.status, out.body.len()), (0, 200, 123_456), "{}", out.stderr);
    let exchange = origin.wait_for(1).remove(0);
    let record = only_record(proxy);
    assert_eq!((record.protocol, record.host.as_str(), record.allowed), (Protocol::Socks5, "localhost", true));
    assert_eq!((record.bytes_up, record.bytes_down, record.error), (exchange.received, exchange.sent, None));
}

#[test]
fn socks5_ip_address_needs_a_literal_pattern() {
    let origin = Origin::start();
    let url = format!("http://localhost:{}/", origin.port());
    // --socks5: curl resolves the name and sends 127.0.0.1.
    let wildcard = proxy(&["*"], &[]);
    let out = curl(&["--socks5", &wildcard.local_addr().to_string(), &url]);
    assert_ne!(out.exit, 0, "{out:?}");
    // curl prints the SOCKS5 reply code: 2, "not allowed by ruleset".
    assert!(out.stderr.contains("SOCKS5 connection to localhost. (2)"), "{}", out.stderr);
    let record = only_record(wildcard);
    assert_eq!((record.protocol, record.host.as_str(), record.allowed), (Protocol::Socks5, "127.0.0.1", false));
    assert!(record.error.unwrap().contains("is a loopback address"));

    let literal = proxy(&[&format!("127.0.0.1:{}", origin.port())], &[]);
    let out = curl(&["--socks5", &literal.local_addr().to_string(), &url]);
    assert_eq!((out.exit, out.status), (0, 200), "{out:?}");
    assert!(only_record(literal).allowed);
}

/// Speaks SOCKS5 by hand up to the reply; returns the reply code.
fn socks_connect(stream: &mut TcpStream, request: &[u8]) -> u8 {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(&[5, 1, 0]).unwrap();
    let mut method = [0u8; 2];
    stream.read_exact(&mut method).unwrap();
    assert_eq!(method, [5, 0]);
    stream.write_all(request).unwrap();
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!((reply[0], reply[3]), (5, 1), "{reply:?}");
    reply[1]
}

#[test]
fn socks5_denial_is_reply_0x02() {
    let echo = Echo::start();
    let proxy = proxy(&["localhost:1"], &[]);
    let mut stream = TcpStream::connect(proxy.local_addr()).unwrap();
    let request = [&[5, 1, 0, 3, 9][..], b"localhost", &echo.port().to_be_bytes()].concat();
    assert_eq!(socks_connect(&mut stream, &request), 0x02);
    let record = only_record(proxy);
    assert_eq!((record.host.as_str(), record.port, record.allowed), ("localhost", echo.port(), false));
    assert!(record.error.unwrap().contains(&format!("add --net localhost:{}", echo.port())));
}

#[test]
fn socks5_tunnel_relays_and_counts() {
    let echo = Echo::start();
    let proxy = proxy(&[&format!("127.0.0.1:{}", echo.port())], &[]);
    let mut stream = TcpStream::connect(proxy.local_addr()).unwrap();
    let request = [&[5, 1, 0, 1, 127, 0, 0, 1][..], &echo.port().to_be_bytes()].concat();
    assert_eq!(socks_connect(&mut stream, &request), 0x00);
    let payload = vec![7u8; 100_000];
    stream.write_all(&payload).unwrap();
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, payload);
    drop(stream);
    let record = only_record(proxy);
    assert_eq!((record.bytes_up, record.bytes_down, record.error), (100_000, 100_000, None));
}

#[test]
fn socks5_refuses_other_commands_and_auth() {
    let proxy = proxy(&["*"], &[]);
    // BIND and UDP ASSOCIATE: "command not supported".
    for command in [2u8, 3] {
        let mut stream = TcpStream::connect(proxy.local_addr()).unwrap();
        let request = [5, command, 0, 1, 127, 0, 0, 1, 0, 80];
        assert_eq!(socks_connect(&mut stream, &request), 0x07);
    }
    // Username/password only: "no acceptable methods".
    let mut stream = TcpStream::connect(proxy.local_addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(&[5, 1, 2]).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, [5, 0xff]);
    let records = proxy.shutdown();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.protocol == Protocol::Socks5 && !r.allowed && r.error.is_some()));
}
