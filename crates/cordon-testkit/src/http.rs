//! A loopback HTTP server for network tests: one fixed response per
//! connection, counting the request bytes it received.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An HTTP server on `127.0.0.1`, answering every request with `200` and a
/// fixed body, then closing. It runs until the test process ends.
#[derive(Debug)]
pub struct HttpServer {
    /// The port it listens on.
    pub port: u16,
    /// Bytes of request heads received so far.
    received: Arc<AtomicU64>,
    /// The exact bytes of each response.
    response: String,
}

impl HttpServer {
    /// Starts a server answering with `body`.
    pub fn start(body: &str) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        let received = Arc::new(AtomicU64::new(0));
        let (counter, reply) = (Arc::clone(&received), response.clone());
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let (counter, reply) = (Arc::clone(&counter), reply.clone());
                std::thread::spawn(move || {
                    let Some(head) = read_head(&mut conn) else { return };
                    counter.fetch_add(head.len() as u64, Ordering::SeqCst);
                    let _ = conn.write_all(reply.as_bytes());
                });
            }
        });
        HttpServer { port, received, response }
    }

    /// Request-head bytes received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// Bytes of one response (head and body).
    pub fn response_len(&self) -> u64 {
        self.response.len() as u64
    }
}

/// An HTTP server on `127.0.0.1` serving the files below a directory
/// (`GET /a/b` reads `root/a/b`; `404` otherwise), one request per
/// connection. Enough for git's dumb HTTP protocol. It runs until the test
/// process ends, and counts the connections it accepted.
#[derive(Debug)]
pub struct StaticServer {
    /// The port it listens on.
    pub port: u16,
    accepted: Arc<AtomicU64>,
}

impl StaticServer {
    /// Serves `root`.
    pub fn start(root: &std::path::Path) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let accepted = Arc::new(AtomicU64::new(0));
        let (root, counter) = (root.to_owned(), Arc::clone(&accepted));
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                let root = root.clone();
                std::thread::spawn(move || {
                    let Some(head) = read_head(&mut conn) else { return };
                    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
                    let path = line.split(' ').nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_owned();
                    let file = (!path.contains("..")).then(|| root.join(path.trim_start_matches('/')));
                    let reply = match file.and_then(|f| std::fs::read(f).ok()) {
                        Some(body) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(&body);
                            r
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = conn.write_all(&reply);
                });
            }
        });
        StaticServer { port, accepted }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Reads a request head (up to the empty line); `None` if the peer closed
/// first.
fn read_head(conn: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    let mut head = vec![];
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}
