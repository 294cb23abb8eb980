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
                    let mut head = vec![];
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
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
