//! Private, loopback and metadata addresses: refused unless named literally.
//! Every refusal here happens before a connection is attempted, so no test
//! sends traffic anywhere but to its own 127.0.0.1 servers.

use super::support::{curl, only_record, proxy, raw, Origin};

#[test]
fn private_ip_literal_is_denied_unless_named_literally() {
    let origin = Origin::start();
    let url = format!("http://127.0.0.1:{}/", origin.port());
    let wildcard = proxy(&["*"], &[]);
    let out = curl(&["-x", &format!("http://{}", wildcard.local_addr()), &url]);
    assert_eq!(out.status, 403, "{out:?}");
    assert_eq!(
        out.body_text(),
        format!(
            "cordon proxy: 127.0.0.1:{0} is a loopback address; name it literally to allow: add --net 127.0.0.1:{0} \
             (a wildcard never unlocks such addresses)\n",
            origin.port()
        )
    );
    let record = only_record(wildcard);
    assert!(!record.allowed);
    assert_eq!(record.addr, None);
    assert!(origin.exchanges().is_empty());

    // Control: the literal pattern unlocks exactly that address and port.
    let literal = proxy(&[&format!("127.0.0.1:{}", origin.port())], &[]);
    let out = curl(&["-x", &format!("http://{}", literal.local_addr()), &url]);
    assert_eq!((out.status, out.body_text().as_str()), (200, "hello from origin\n"), "{out:?}");
    assert!(only_record(literal).allowed);
}

#[test]
fn name_resolving_to_loopback_is_denied_unless_named() {
    let origin = Origin::start();
    let url = format!("http://localhost:{}/", origin.port());
    for allow in ["*", &format!("*:{}", origin.port())] {
        let wildcard = proxy(&[allow], &[]);
        let out = curl(&["-x", &format!("http://{}", wildcard.local_addr()), &url]);
        assert_eq!(out.status, 403, "{allow}: {out:?}");
        let body = out.body_text();
        assert!(body.contains(&format!("localhost:{} resolves to a loopback address", origin.port())), "{body}");
        assert!(body.contains("a name never unlocks such addresses"), "{body}");
        let record = only_record(wildcard);
        assert_eq!((record.allowed, record.rule.as_deref()), (false, None));
    }
    assert!(origin.exchanges().is_empty());

    let named = proxy(&[&format!("localhost:{}", origin.port())], &[]);
    let out = curl(&["-x", &format!("http://{}", named.local_addr()), &url]);
    assert_eq!(out.status, 200, "{out:?}");
    named.shutdown();
}

#[test]
fn other_spellings_of_internal_addresses_are_denied() {
    let origin = Origin::start();
    let port = origin.port();
    let proxy = proxy(&["*"], &[]);
    // Sent raw: curl would normalise some of these spellings itself.
    let targets = [
        format!("[::1]:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("[::ffff:7f00:1]:{port}"),
        format!("[64:ff9b::7f00:1]:{port}"),
        format!("0.0.0.0:{port}"),
        format!("2130706433:{port}"),
        format!("127.1:{port}"),
        format!("0x7f.1:{port}"),
        "169.254.169.254".to_owned(),
        "[fd00:ec2::254]".to_owned(),
        "100.100.100.200".to_owned(),
        "10.1.2.3:8080".to_owned(),
        "192.168.0.1".to_owned(),
    ];
    for target in &targets {
        let response =
            String::from_utf8(raw(proxy.local_addr(), format!("GET http://{target}/ HTTP/1.1\r\n\r\n").as_bytes()))
                .unwrap();
        assert!(response.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{target}: {response}");
        assert!(response.contains("never unlocks such addresses"), "{target}: {response}");
    }
    let metadata = String::from_utf8(raw(proxy.local_addr(), b"CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n")).unwrap();
    assert!(metadata.contains("is a cloud metadata address"), "{metadata}");
    let records = proxy.shutdown();
    assert_eq!(records.len(), targets.len() + 1);
    assert!(records.iter().all(|r| !r.allowed && r.addr.is_none() && r.bytes_up == 0), "{records:#?}");
    assert!(origin.exchanges().is_empty());
}

/// Issue 9 finding 10: a name pattern never unlocks a special address, even
/// when it is exactly the name the client asked for. The names here are
/// numeric spellings the host's resolver (`getaddrinfo`, via `inet_aton`)
/// turns into 127.0.0.1 without any DNS server or `/etc/hosts` entry.
#[test]
fn a_name_pattern_never_unlocks_loopback() {
    let origin = Origin::start();
    let port = origin.port();
    for name in ["2130706433", "0x7f.1", "127.1", "0177.0.0.1", "0x7f000001"] {
        let pattern = format!("{name}:{port}");
        let proxy = proxy(&[&pattern], &[]);
        let response =
            String::from_utf8(raw(proxy.local_addr(), format!("GET http://{pattern}/ HTTP/1.1\r\n\r\n").as_bytes()))
                .unwrap();
        assert!(response.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{pattern}: {response}");
        assert!(
            response.contains(&format!(
                "{pattern} resolves to a loopback address (127.0.0.1); a name never unlocks such addresses: add --net 127.0.0.1:{port}"
            )),
            "{pattern}: {response}"
        );
        let record = only_record(proxy);
        assert_eq!((record.allowed, record.addr), (false, None), "{pattern}");
    }
    assert!(origin.exchanges().is_empty(), "a name pattern reached the loopback server");

    // Control: the address named literally is reached, through the same proxy code.
    let literal = format!("127.0.0.1:{port}");
    let proxy = proxy(&[&literal], &[]);
    let response =
        String::from_utf8(raw(proxy.local_addr(), format!("GET http://{literal}/ HTTP/1.1\r\n\r\n").as_bytes()))
            .unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(only_record(proxy).allowed);
    assert_eq!(origin.wait_for(1).len(), 1);
}
