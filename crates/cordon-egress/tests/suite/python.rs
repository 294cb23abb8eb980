//! Python's urllib, with an explicit ProxyHandler and with the environment
//! that `proxy_env` gives a sandboxed command.

use super::support::{only_record, proxy, python, Origin};

const FETCH: &str = r#"
import sys, urllib.request, urllib.error
proxy, url = sys.argv[1], sys.argv[2]
handlers = [urllib.request.ProxyHandler({"http": proxy, "https": proxy})] if proxy else []
opener = urllib.request.build_opener(*handlers)
try:
    with opener.open(url, timeout=20) as r:
        print(r.status, r.read().decode(), end="")
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode(), end="")
"#;

fn fetch(proxy: &str, url: &str, env: &[(&str, String)]) -> String {
    let script = format!("import sys; sys.argv = ['fetch', {proxy:?}, {url:?}]\n{FETCH}");
    python(&script, env)
}

#[test]
fn python_urllib_through_the_proxy() {
    let origin = Origin::start();
    let proxy = proxy(&[&format!("localhost:{}", origin.port())], &[]);
    let via = format!("http://{}", proxy.local_addr());
    let ok = fetch(&via, &format!("http://localhost:{}/", origin.port()), &[]);
    assert_eq!(ok, "200 hello from origin\n");
    let denied = fetch(&via, "http://api.example.com:8080/v1", &[]);
    assert_eq!(
        denied,
        "403 cordon proxy: api.example.com:8080 is not allowed by the network policy; add --net api.example.com:8080 to allow it\n"
    );
    let records = proxy.shutdown();
    assert_eq!(
        records.iter().map(|r| (r.host.as_str(), r.allowed)).collect::<Vec<_>>(),
        [("localhost", true), ("api.example.com", false)]
    );
    assert_eq!(records[0].bytes_up, origin.wait_for(1)[0].received);
}

#[test]
fn proxy_env_routes_python_through_the_proxy() {
    let origin = Origin::start();
    let proxy = proxy(&[&format!("localhost:{}", origin.port())], &[]);
    // No explicit handler: urllib reads http_proxy from the environment.
    let env = cordon_egress::proxy_env(proxy.local_addr());
    let ok = fetch("", &format!("http://localhost:{}/", origin.port()), &env);
    assert_eq!(ok, "200 hello from origin\n");
    let record = only_record(proxy);
    assert!(record.allowed);
    assert_eq!(record.host, "localhost");
}
