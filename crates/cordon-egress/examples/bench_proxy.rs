//! Helper for `bench/proxy.sh`: a fast loopback HTTP server and the proxy,
//! each in its own process, so the benchmark measures them the way a
//! supervisor runs them.
//!
//! ```text
//! bench_proxy serve              serve GET /bytes/N on 127.0.0.1:0; prints the port
//! bench_proxy proxy PATTERN...   run the proxy on 127.0.0.1:0 allowing PATTERNs;
//!                                prints the port, stops when stdin closes, then
//!                                prints a summary of its records on stderr
//! ```

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use cordon_core::policy::{NetPattern, NetPolicy};
use cordon_egress::ProxyConfig;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(),
        Some("proxy") => proxy(&args[1..]),
        _ => {
            eprintln!("usage: bench_proxy serve | bench_proxy proxy PATTERN...");
            std::process::exit(2);
        }
    }
}

fn serve() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("{}", listener.local_addr().expect("addr").port());
    std::io::stdout().flush().expect("flush");
    for stream in listener.incoming().flatten() {
        thread::spawn(move || {
            let _ = respond(stream);
        });
    }
}

/// Answers one `GET /bytes/N` with N bytes, then closes.
fn respond(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut byte)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&byte[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let size: usize =
        head.split(' ').nth(1).and_then(|p| p.strip_prefix("/bytes/")).and_then(|n| n.parse().ok()).unwrap_or(0);
    stream.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let block = vec![b'x'; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len());
        stream.write_all(&block[..n])?;
        left -= n;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    // Wait for the client to close so no unread request byte turns the
    // close into a reset.
    let _ = stream.read(&mut byte);
    Ok(())
}

fn proxy(patterns: &[String]) {
    let allow = patterns.iter().map(|p| NetPattern::parse(p).expect("pattern")).collect();
    let policy = NetPolicy { allow, ..NetPolicy::default() };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let handle = cordon_egress::spawn(listener, ProxyConfig::new(policy)).expect("spawn proxy");
    println!("{}", handle.local_addr().port());
    std::io::stdout().flush().expect("flush");
    // Run until the benchmark closes our stdin.
    for _ in std::io::stdin().lock().lines() {}
    let records = handle.shutdown();
    let allowed = records.iter().filter(|r| r.allowed).count();
    let errors = records.iter().filter(|r| r.error.is_some()).count();
    let down: u64 = records.iter().map(|r| r.bytes_down).sum();
    eprintln!("proxy: {} connections, {allowed} allowed, {errors} with errors, {down} bytes down", records.len());
}
