//! Credentials against the running service: the JWT table, service tokens,
//! refresh rotation and reuse, revocation, the dispatch secret, and the
//! start-up refusals for bad secrets.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::{Options, Resp, Service, BETA_SECRET, CLIENT_SECRET, INTERNAL_SECRET, JWT_SECRET, SERVICE_TOKEN};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Claims the service accepts (signed right).
fn good_claims() -> serde_json::Value {
    let iat = now();
    json!({"iss": "cordon", "aud": "cordon", "sub": "client:ci", "tenant": "acme", "iat": iat, "exp": iat + 600, "jti": format!("test-{iat}")})
}

fn sign(alg: Algorithm, typ: Option<&str>, claims: &serde_json::Value, secret: &[u8]) -> String {
    let mut h = Header::new(alg);
    h.typ = typ.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(secret)).expect("sign")
}

fn hs256(claims: &serde_json::Value) -> String {
    sign(Algorithm::HS256, Some("at+jwt"), claims, JWT_SECRET.as_bytes())
}

/// A token with any header, its signature made with HMAC-SHA256 over the
/// secret (`None`: no signature at all).
fn forged(header: serde_json::Value, claims: &serde_json::Value, hmac_secret: Option<&[u8]>) -> String {
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let sig = match hmac_secret {
        Some(k) => {
            jsonwebtoken::crypto::sign(input.as_bytes(), &EncodingKey::from_secret(k), Algorithm::HS256).expect("hmac")
        }
        None => String::new(),
    };
    format!("{input}.{sig}")
}

#[track_caller]
fn assert_refused(r: &Resp, case: &str, reason: &str) {
    assert_eq!(r.status, 401, "{case}: {r:?}");
    let www = r.header("www-authenticate").unwrap_or_else(|| panic!("{case}: no WWW-Authenticate: {r:?}"));
    assert!(www.starts_with("Bearer ") && www.contains("error=\"invalid_token\""), "{case}: {www}");
    let (code, message) = r.error();
    assert_eq!(code, "invalid_token", "{case}");
    assert!(message.contains(reason), "{case}: expected the reason to mention {reason:?}, got {message:?}");
    assert!(www.contains(reason), "{case}: the reason is not in WWW-Authenticate: {www}");
}

#[test]
fn jwt_table_each_bad_token_is_refused_with_its_reason() {
    let s = Service::start("serve-jwt-table");
    // Control: the same construction, done right, is accepted.
    let control = hs256(&good_claims());
    assert_eq!(s.get("/v1/plugins", &control).status, 200, "a well-formed token must be accepted");
    let forged_control = forged(json!({"alg": "HS256", "typ": "at+jwt"}), &good_claims(), Some(JWT_SECRET.as_bytes()));
    assert_eq!(s.get("/v1/plugins", &forged_control).status, 200, "the hand-made HS256 control must be accepted");

    let with = |k: &str, v: serde_json::Value| {
        let mut c = good_claims();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let refresh = s.sign_in()["refresh_token"].as_str().unwrap().to_owned();
    let t = now();
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", forged(json!({"alg": "none", "typ": "at+jwt"}), &good_claims(), None), "alg"),
        (
            "HS384",
            sign(Algorithm::HS384, Some("at+jwt"), &good_claims(), JWT_SECRET.as_bytes()),
            "HS384 is not accepted",
        ),
        (
            "HS512",
            sign(Algorithm::HS512, Some("at+jwt"), &good_claims(), JWT_SECRET.as_bytes()),
            "HS512 is not accepted",
        ),
        (
            "RS256 with the HMAC secret as public key",
            forged(json!({"alg": "RS256", "typ": "at+jwt"}), &good_claims(), Some(JWT_SECRET.as_bytes())),
            "RS256 is not accepted",
        ),
        ("wrong aud", hs256(&with("aud", json!("someone-else"))), "audience (aud)"),
        ("wrong iss", hs256(&with("iss", json!("https://evil.example"))), "issuer (iss)"),
        ("missing jti", hs256(&without("jti")), "claim `jti` is missing"),
        ("missing aud", hs256(&without("aud")), "claim `aud` is missing"),
        ("missing tenant", hs256(&without("tenant")), "claim `tenant` is missing"),
        ("missing typ", sign(Algorithm::HS256, None, &good_claims(), JWT_SECRET.as_bytes()), "typ is missing"),
        ("typ JWT", sign(Algorithm::HS256, Some("JWT"), &good_claims(), JWT_SECRET.as_bytes()), "typ is `JWT`"),
        ("exp - iat > 1 h", hs256(&with("exp", json!(t + 3601))), "exceeds 3600 s"),
        ("expired", hs256(&with("exp", json!(t - 120)).tap_iat(t - 600)), "expired"),
        ("nbf in the future", hs256(&with("nbf", json!(t + 600))), "nbf"),
        (
            "signed with the internal secret",
            sign(Algorithm::HS256, Some("at+jwt"), &good_claims(), INTERNAL_SECRET.as_bytes()),
            "signature does not verify",
        ),
        ("a refresh token as bearer", refresh, "refresh token is not an access token"),
        ("the internal secret as bearer", INTERNAL_SECRET.to_owned(), "only at /internal/dispatch"),
        ("garbage", "not-a-token".to_owned(), "unknown token"),
    ];
    for (case, token, reason) in &cases {
        assert_refused(&s.get("/v1/plugins", token), case, reason);
        // The same on an endpoint that would start work.
        let r = s.execute(token, "empty", json!({}), None);
        assert_refused(&r, case, reason);
    }
    let no_header = super::http(s.addr, "GET", "/v1/plugins", &[], b"");
    assert_refused(&no_header, "no Authorization header", "no Authorization header");
    // Nothing ran for any refused request.
    assert!(s.audit_records().is_empty(), "{:#?}", s.audit_records());
}

trait TapIat {
    fn tap_iat(self, iat: u64) -> Self;
}

impl TapIat for serde_json::Value {
    fn tap_iat(mut self, iat: u64) -> Self {
        self["iat"] = iat.into();
        self
    }
}

#[test]
fn service_tokens_and_issued_tokens_are_accepted_and_carry_their_claims() {
    let s = Service::start("serve-tokens");
    let pair = s.sign_in();
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    let at = pair["access_token"].as_str().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&B64.decode(at.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["typ"], "at+jwt");
    let claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(at.split('.').nth(1).unwrap()).unwrap()).unwrap();
    for k in ["iss", "aud", "sub", "tenant", "iat", "exp", "jti"] {
        assert!(claims.get(k).is_some(), "claim {k} missing: {claims}");
    }
    assert!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() <= 3600);
    assert_eq!(s.get("/v1/plugins", at).status, 200);
    assert_eq!(s.get("/v1/plugins", SERVICE_TOKEN).status, 200);
    // Wrong client secret and unknown client: 401 invalid_client.
    let r = s.post_form("/v1/token", "grant_type=client_credentials&client_id=ci&client_secret=wrong-secret");
    assert_eq!((r.status, r.error().0.as_str()), (401, "invalid_client"), "{r:?}");
    let r = s.post_form("/v1/token", "grant_type=client_credentials&client_id=nobody&client_secret=x");
    assert_eq!(r.status, 401, "{r:?}");
    // JSON bodies work as forms do.
    let r = s.post_json(
        "/v1/token",
        "unused",
        &json!({"grant_type": "client_credentials", "client_id": "ci", "client_secret": CLIENT_SECRET}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = s.post_form("/v1/token", "grant_type=password&username=a&password=b");
    assert_eq!((r.status, r.error().0.as_str()), (400, "unsupported_grant_type"));
}

fn refresh(s: &Service, token: &str) -> Resp {
    s.post_form("/v1/token", &format!("grant_type=refresh_token&refresh_token={token}"))
}

#[test]
fn refresh_reuse_revokes_the_family_and_leaves_other_families_alone() {
    let s = Service::start_with(
        "serve-refresh-reuse",
        Options { server: "refresh_grace_ms = 200\n".into(), ..Options::default() },
    );
    let a1 = s.sign_in();
    let b1 = s.sign_in();
    let a1_refresh = a1["refresh_token"].as_str().unwrap();
    let a2 = refresh(&s, a1_refresh);
    assert_eq!(a2.status, 200, "{a2:?}");
    let a2 = a2.json();
    assert_ne!(a2["refresh_token"], a1["refresh_token"], "rotation gives a new refresh token");
    let a2_access = a2["access_token"].as_str().unwrap();
    assert_eq!(s.get("/v1/plugins", a2_access).status, 200);
    // Presenting the rotated token again: within the grace window it gives
    // the same successor; once the window is over, the family is revoked.
    let mut reuse = None;
    let over = cordon_testkit::poll_until(std::time::Duration::from_secs(20), || {
        let r = refresh(&s, a1_refresh);
        if r.status == 200 {
            assert_eq!(r.json()["refresh_token"], a2["refresh_token"], "a retry gets the same successor");
            false
        } else {
            reuse = Some(r);
            true
        }
    });
    assert!(over, "the rotated token kept working past the grace window");
    let reuse = reuse.unwrap();
    assert_eq!((reuse.status, reuse.error().0.as_str()), (400, "invalid_grant"), "{reuse:?}");
    // The whole family is dead: its newest refresh token and its access tokens.
    assert_eq!(refresh(&s, a2["refresh_token"].as_str().unwrap()).status, 400);
    assert_refused_revoked(&s.get("/v1/plugins", a2_access));
    assert_refused_revoked(&s.get("/v1/plugins", a1["access_token"].as_str().unwrap()));
    // The other family is untouched.
    assert_eq!(s.get("/v1/plugins", b1["access_token"].as_str().unwrap()).status, 200);
    assert_eq!(refresh(&s, b1["refresh_token"].as_str().unwrap()).status, 200);
    // One audit record of the reuse.
    let records: Vec<_> = s.audit_records().into_iter().filter(|r| r["outcome"] == "REFRESH_REUSE").collect();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["tenant"], "acme");
    assert_eq!(records[0]["principal"], "client:ci");
}

#[track_caller]
fn assert_refused_revoked(r: &Resp) {
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.error().1, "token revoked");
}

#[test]
fn twenty_concurrent_refreshes_rotate_exactly_once() {
    let s = Service::start("serve-refresh-race");
    let first = s.sign_in();
    let token = first["refresh_token"].as_str().unwrap().to_owned();
    let barrier = std::sync::Barrier::new(20);
    let results: Vec<Resp> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    refresh(&s, &token)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let successors: std::collections::BTreeSet<String> = results
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "every concurrent refresh is a retry within the grace window: {r:?}");
            r.json()["refresh_token"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(successors.len(), 1, "one rotation, one successor: {successors:?}");
    // The successor is the family's current token: it rotates once more.
    let next = refresh(&s, successors.iter().next().unwrap());
    assert_eq!(next.status, 200, "{next:?}");
}

#[test]
fn revoking_a_refresh_token_kills_its_family_and_unknown_tokens_get_200() {
    let s = Service::start("serve-revoke");
    let a = s.sign_in();
    let other = s.sign_in();
    let r = s.post_form("/v1/token/revoke", "token=crt_not-a-real-token");
    assert_eq!(r.status, 200, "RFC 7009: unknown tokens too: {r:?}");
    let r = s.post_form("/v1/token/revoke", &format!("token={}", a["refresh_token"].as_str().unwrap()));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(refresh(&s, a["refresh_token"].as_str().unwrap()).status, 400);
    assert_refused_revoked(&s.get("/v1/plugins", a["access_token"].as_str().unwrap()));
    assert_eq!(s.get("/v1/plugins", other["access_token"].as_str().unwrap()).status, 200);
}

#[test]
fn dispatch_takes_only_the_internal_secret() {
    let s = Service::start("serve-dispatch");
    let body = json!({"tenant": "acme", "plugin": super::PLUGIN, "handler": "empty"});
    let at = s.access_token();
    for (case, bearer) in
        [("an access token", at.as_str()), ("a service token", SERVICE_TOKEN), ("the JWT secret", JWT_SECRET)]
    {
        let r = s.post_json("/internal/dispatch", bearer, &body);
        assert_eq!(r.status, 401, "{case}: {r:?}");
        assert!(r.header("www-authenticate").unwrap().contains("invalid_token"), "{case}");
    }
    let r = s.post_json("/internal/dispatch", INTERNAL_SECRET, &body);
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["ok"], true, "{v}");
    let records = s.records_of(v["id"].as_str().unwrap());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["tenant"], "acme");
    assert_eq!(records[0]["principal"], "dispatch");
    let r = s.post_json(
        "/internal/dispatch",
        INTERNAL_SECRET,
        &json!({"tenant": "nobody", "plugin": super::PLUGIN, "handler": "empty"}),
    );
    assert_eq!(r.status, 400, "{r:?}");
}

/// Starts a service with these secrets; its exit code and stderr.
fn start_refused(label: &str, jwt: &str, internal: &str, extra: &[&str]) -> (Option<i32>, String) {
    let dir = cordon_testkit::Dir::new(label);
    let opts = Options {
        jwt_secret: jwt.into(),
        internal_secret: internal.into(),
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..Options::default()
    };
    match Service::spawn(dir, opts) {
        Ok(s) => panic!("{label}: the service started on {} with bad secrets:\n{}", s.addr, s.log()),
        Err(e) => e,
    }
}

#[test]
fn the_service_refuses_to_start_with_each_bad_secret() {
    let documented = "change-me-change-me-change-me-change-me";
    let cases = [
        ("missing jwt", "", INTERNAL_SECRET, "CORDON_JWT_SECRET is not set"),
        ("missing internal", JWT_SECRET, "", "CORDON_INTERNAL_SECRET is not set"),
        ("short jwt", "too-short-secret", INTERNAL_SECRET, "CORDON_JWT_SECRET is 16 bytes long; at least 32"),
        ("short internal", JWT_SECRET, "0123456789012345678901234567890", "CORDON_INTERNAL_SECRET is 31 bytes long"),
        ("documented jwt", documented, INTERNAL_SECRET, "CORDON_JWT_SECRET is a value shown in cordon's documentation"),
        ("documented internal", JWT_SECRET, documented, "CORDON_INTERNAL_SECRET is a value shown"),
        ("equal", JWT_SECRET, JWT_SECRET, "are the same value"),
    ];
    for (case, jwt, internal, message) in cases {
        let (code, err) = start_refused("serve-refuse", jwt, internal, &[]);
        assert_eq!(code, Some(125), "{case}: {err}");
        assert!(err.contains("refuses to start") && err.contains(message), "{case}: expected {message:?} in:\n{err}");
        assert!(err.contains("hint:"), "{case}: {err}");
    }
    // --insecure-dev never leaves loopback.
    let (code, err) = start_refused("serve-refuse", "", "", &["--insecure-dev", "--listen=0.0.0.0:0"]);
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("--insecure-dev listens on loopback only"), "{err}");
}

#[test]
fn insecure_dev_starts_with_weak_secrets_and_says_so_in_readyz() {
    let opts = Options {
        jwt_secret: "weak".into(),
        internal_secret: String::new(),
        extra_args: vec!["--insecure-dev".into()],
        ..Options::default()
    };
    let s = Service::start_with("serve-insecure", opts);
    let log = s.log();
    assert!(log.contains("warning: insecure-dev") && log.contains("CORDON_JWT_SECRET is 4 bytes long"), "{log}");
    let ready = super::http(s.addr, "GET", "/readyz", &[], b"").json();
    let warnings = ready["warnings"].as_array().unwrap_or_else(|| panic!("no warnings in /readyz: {ready}"));
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("--insecure-dev")), "{ready}");
    // Control: a normal start has none.
    let normal = Service::start("serve-secure");
    let ready = super::http(normal.addr, "GET", "/readyz", &[], b"").json();
    assert!(ready.get("warnings").is_none(), "{ready}");
    assert!(!normal.log().contains("insecure"), "{}", normal.log());
}

/// How many answers had each status.
type Statuses = std::collections::BTreeMap<u16, usize>;

/// `n` client-credentials grants for `client` on one kept-alive connection;
/// the statuses seen, and the first 429's `Retry-After`.
fn grants(s: &Service, client: &str, secret: &str, n: usize) -> (Statuses, Option<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let conn = std::net::TcpStream::connect(s.addr).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    let body = format!("grant_type=client_credentials&client_id={client}&client_secret={secret}");
    let request = format!(
        "POST /v1/token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        s.addr,
        body.len()
    );
    let (mut statuses, mut retry_after) = (Statuses::new(), None);
    for _ in 0..n {
        conn.write_all(request.as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status: u16 = line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
        let mut length = 0;
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let Some((k, v)) = line.trim_end().split_once(':') else { break };
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap(),
                "retry-after" if retry_after.is_none() => retry_after = Some(v.trim().to_owned()),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        *statuses.entry(status).or_insert(0) += 1;
    }
    (statuses, retry_after)
}

/// `request`'s answer once it is not 429 (its tenant's room came back).
fn admitted(mut request: impl FnMut() -> Resp) -> Resp {
    let mut last = None;
    let came = cordon_testkit::poll_until(std::time::Duration::from_secs(30), || {
        let r = request();
        let done = r.status != 429;
        last = Some(r);
        done
    });
    assert!(came, "still 429 after 30 s: {last:?}");
    last.unwrap()
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Review s12 R12-11: `POST /v1/token` spent no rate bucket and each grant
/// started a refresh family kept for a day, so one tenant's client grew the
/// service without bound (~680 bytes a grant). Now a grant spends its
/// tenant's bucket once the secret is checked (429 with Retry-After), and a
/// client keeps at most 100 live families, the oldest ending first. Host
/// side: the service's RSS stays flat over 20,000 grants of a tenant whose
/// rate lets most through; a wrong secret spends nothing, and another
/// tenant's client at its rate is unaffected.
#[test]
fn a_flood_of_token_grants_gets_429_and_does_not_grow_the_service() {
    let s = Service::start_with(
        "serve-token-flood",
        Options { acme: "max_concurrent = 8\nrate_per_sec = 1\n".into(), ..Options::default() },
    );
    // A stranger's wrong secrets spend nothing of acme's room.
    let (wrong, _) = grants(&s, "ci", "not-the-secret", 20);
    assert_eq!(wrong.keys().collect::<Vec<_>>(), [&401], "{wrong:?}");
    let first = s.sign_in();
    // acme's client over its rate of 1 a second: 429 with Retry-After.
    let (statuses, retry) = grants(&s, "ci", CLIENT_SECRET, 20);
    assert!(statuses.contains_key(&429), "no 429 in 20 grants at 1/s: {statuses:?}");
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!(retry >= 1);
    // Its first session still works (refreshing spends the same room, so
    // wait for it as a client told Retry-After would).
    let r = admitted(|| refresh(&s, first["refresh_token"].as_str().unwrap()));
    assert_eq!(r.status, 200, "{r:?}");
    // beta's client, rate 1000: most of 20,000 grants pass, yet the
    // service keeps at most 100 of its sessions.
    let beta_first = s.sign_in_as("ops", BETA_SECRET);
    let before = rss_kb(s.pid());
    let (statuses, _) = grants(&s, "ops", BETA_SECRET, 20_000);
    let after = rss_kb(s.pid());
    assert!(statuses.get(&200).copied().unwrap_or(0) > 200, "more grants than the 100 kept: {statuses:?}");
    assert!(
        after < before + 5 * 1024,
        "the service grew from {before} to {after} kB over 20,000 grants ({statuses:?})"
    );
    // Its oldest session ended (a refresh is refused, saying why), its
    // newest works.
    let r = refresh(&s, beta_first["refresh_token"].as_str().unwrap());
    assert_eq!((r.status, r.error().0.as_str()), (400, "invalid_grant"), "{r:?}");
    assert!(r.error().1.contains("signed in more than 100 times"), "{r:?}");
    // (beta's room is spent by the flood: wait for it, as Retry-After says.)
    let form = format!("grant_type=client_credentials&client_id=ops&client_secret={BETA_SECRET}");
    let last = admitted(|| s.post_form("/v1/token", &form));
    assert_eq!(last.status, 200, "{last:?}");
    let again = admitted(|| refresh(&s, last.json()["refresh_token"].as_str().unwrap()));
    assert_eq!(again.status, 200, "the newest session refreshes: {again:?}");
}
