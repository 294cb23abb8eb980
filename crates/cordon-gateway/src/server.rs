//! The HTTP/1.1 server around the router: connection limits (request head
//! size → 431, head read timeout → the connection is closed, which also
//! ends idle kept-alive connections; body read timeout → 408 and the
//! connection is closed; at most `max_connections` served at once, the
//! rest waiting in the listen backlog; an answer the client takes no byte
//! of for `send_timeout_ms` → the connection is closed; past
//! `max_connections_per_peer` connections of one peer → 503 and closed, see
//! [`crate::conn`]), a per-request time limit, request ids, metrics and the
//! log of 5xx details, and the shutdown sequence.
//!
//! # Descriptors
//!
//! Connections and executions draw on one open files limit: every run takes
//! pipes, pidfds, a memory file and its run folder's lock from it. So the
//! service raises its soft `RLIMIT_NOFILE` to the hard limit at start, and
//! serves at most `max_connections` connections (default: half of that
//! limit); a client that holds many idle or slow connections makes other
//! clients wait for a connection, never an execution fail for want of a
//! descriptor (review s9 F7).
//!
//! # Shutdown (SIGTERM or SIGINT)
//!
//! The listener is closed at once (new connections are refused); requests
//! already received are answered; new executions are refused (503
//! `shutting_down`); queued and running executions are given
//! `shutdown_timeout_ms` to finish, then cancelled (recorded `CANCELLED`);
//! every record is written before [`serve`] returns `Ok`, and the process
//! exits 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use crate::conn::{peer_label, AtCap, LogGate, Peers, SendTimeout};
use crate::error::{ApiError, Internal};
use crate::state::AppState;

/// The id of one HTTP request, in its extensions and its `x-request-id`
/// response header.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The default `max_connections` under an open files limit of `limit`:
/// half of it (the other half for executions and the service's own files),
/// at least 16 and at most 65536.
pub fn default_max_connections(limit: u64) -> u32 {
    u32::try_from((limit / 2).clamp(16, 65_536)).unwrap_or(65_536)
}

/// The default `max_connections_per_peer` under `max_connections`: an
/// eighth of it, at least 16 (at most `max_connections`).
pub fn default_max_connections_per_peer(max_connections: u32) -> u32 {
    (max_connections / 8).max(16).min(max_connections)
}

/// Connections refused at the per-peer cap that are told why at once
/// (each for at most [`REFUSAL_LINGER`]); past it, refused connections
/// are closed without an answer.
const MAX_REFUSING: usize = 16;

/// How long a refused connection is kept to deliver its 503: its request
/// is read and dropped meanwhile, so that closing does not reset the
/// connection before the client has read the answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The rate-limited log lines of the connection limits.
#[derive(Default)]
struct LimitsLog {
    refused: LogGate,
    send_timeout: LogGate,
}

/// Answers a connection refused at the per-peer cap with 503
/// `too_many_connections`, then closes it.
async fn refuse(mut stream: tokio::net::TcpStream, peer: SocketAddr, cap: u32) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = serde_json::json!({"error": {
        "code": "too_many_connections",
        "message": format!(
            "{} already has {cap} connections open to this service, its max_connections_per_peer; close one, or reuse one (keep-alive), and retry",
            peer_label(peer.ip())
        ),
    }})
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left = 64usize << 10;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Reads the whole body of `req` within `within` and at most `max` bytes
/// (a client trickling its body would otherwise hold its connection, and
/// a descriptor, for as long as the request's time limit).
async fn read_body(req: Request, within: Duration, max: usize) -> Result<Request, Response> {
    use futures_util::StreamExt;
    let (parts, body) = req.into_parts();
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("the request body could not be read: {e}")))?;
            if buf.len() + chunk.len() > max {
                return Err(ApiError::too_large("the request body exceeds the service's max_body_bytes"));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(within, read).await {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Ok(Err(e)) => Err(close(e.into_response())),
        Err(_) => Err(close(
            ApiError::timeout(format!(
                "the request body did not arrive within the service's body_timeout_ms ({} ms)",
                within.as_millis()
            ))
            .into_response(),
        )),
    }
}

/// `resp` with `Connection: close` (what is left of the request is unread).
fn close(mut resp: Response) -> Response {
    resp.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Request ids, the body's time limit, the request's time limit, metrics,
/// and the log line of every 5xx (whose body stays generic).
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    cordon::trace::step("gateway: request read");
    let id = cordon::new_request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let route = req.extensions().get::<MatchedPath>().map_or("(unmatched)".to_owned(), |m| m.as_str().to_owned());
    let limit = Duration::from_millis(state.config.server.max_wait_ms) + Duration::from_secs(30);
    let start = Instant::now();
    let body_within = Duration::from_millis(state.config.server.body_timeout_ms);
    let read = read_body(req, body_within, state.config.server.max_body_bytes).await;
    let run = async {
        match read {
            Ok(req) => tokio::time::timeout(limit, next.run(req)).await,
            Err(resp) => Ok(resp),
        }
    };
    let mut resp = match run.await {
        Ok(r) => r,
        Err(_) => {
            let mut r = (
                StatusCode::REQUEST_TIMEOUT,
                axum::Json(serde_json::json!({"error": {
                    "code": "request_timeout",
                    "message": format!("the request took longer than {} ms", limit.as_millis()),
                }})),
            )
                .into_response();
            r.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    };
    if let Some(Internal(detail)) = resp.extensions_mut().remove::<Internal>() {
        eprintln!("cordon serve: request {id} {route}: {detail}");
        let status = resp.status();
        resp = (
            status,
            axum::Json(serde_json::json!({"error": {
                "code": "internal",
                "message": format!("internal error; the service log has the details under request id {id}"),
            }})),
        )
            .into_response();
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    state.metrics.request(&route, resp.status().as_u16(), start.elapsed().as_secs_f64());
    cordon::trace::step("gateway: answer made");
    resp
}

/// Unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; GET /v1/openapi.json lists them")
}

/// The service cannot start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The signal handlers cannot be installed.
    #[error("cannot install the SIGTERM/SIGINT handlers")]
    Signals(#[source] std::io::Error),
}

/// Serves `state` on `addr` until SIGTERM or SIGINT, then shuts down as
/// the module docs say. `on_listening` is called with the bound address
/// (useful with port 0).
pub async fn serve(state: AppState, addr: SocketAddr, on_listening: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
    let s = &state.config.server;
    let open_files = match cordon::raise_open_files_limit() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cordon serve: cannot raise the open files limit to its hard limit: {e}");
            1024
        }
    };
    let max_connections = s.max_connections.unwrap_or_else(|| default_max_connections(open_files));
    if u64::from(max_connections) >= open_files {
        eprintln!(
            "cordon serve: warning: max_connections = {max_connections} leaves no descriptor of the open files limit ({open_files}) for executions; lower it or raise the hard limit (LimitNOFILE=)"
        );
    }
    eprintln!("cordon serve: at most {max_connections} connections at once (open files limit {open_files})");
    let slots = Arc::new(tokio::sync::Semaphore::new(usize::try_from(max_connections).unwrap_or(usize::MAX)));
    let per_peer = s.max_connections_per_peer.unwrap_or_else(|| default_max_connections_per_peer(max_connections));
    let peers = Peers::new(per_peer, s.peer_cap_exempt.clone());
    let exempt = s.peer_cap_exempt.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    eprintln!(
        "cordon serve: at most {per_peer} connections per peer (max_connections_per_peer; not counted: {})",
        if exempt.is_empty() { "none" } else { &exempt }
    );
    let send_timeout = Duration::from_millis(s.send_timeout_ms);
    let refusing = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSING));
    let limits_log = Arc::new(LimitsLog::default());
    on_listening(local);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(s.header_timeout_ms))
        .max_buf_size(s.max_header_bytes)
        .keep_alive(true);
    let app = crate::app(state.clone());
    let sweeper = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                state.refresh.sweep();
                state.keys.sweep_revoked();
            }
        })
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        // A slot first: past max_connections, new connections wait in the
        // listen backlog (the kernel's), not in the service's descriptors.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the connection semaphore is never closed"),
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, usually: wait a little rather than spin.
                        eprintln!("cordon serve: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let peer_slot = match peers.admit(peer.ip()) {
                    Ok(counted) => counted,
                    Err(AtCap { cap }) => {
                        drop(slot);
                        state.metrics.connection_closed("max_connections_per_peer");
                        limits_log.refused.log(|| format!(
                            "refused a connection of {}: it has {cap} open already (max_connections_per_peer)",
                            peer_label(peer.ip())
                        ));
                        // Told why when few are being refused; under a
                        // flood of them, closed at once.
                        if let Ok(permit) = refusing.clone().try_acquire_owned() {
                            tokio::spawn(async move {
                                refuse(stream, peer, cap).await;
                                drop(permit);
                            });
                        }
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                // A blocked write wakes once less than 16 KiB is unsent, not
                // once a third of a send buffer autotuned to ~1 MB has
                // drained: a client reading 16 KB/s steadily makes progress
                // well within send_timeout_ms.
                let _ = cordon::set_tcp_notsent_lowat(std::os::fd::AsFd::as_fd(&stream), 16 << 10);
                let stream = SendTimeout::new(stream, send_timeout);
                let tripped = stream.tripped();
                let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                let conn = graceful.watch(conn);
                let (metrics, limits_log) = (state.metrics.clone(), limits_log.clone());
                tokio::spawn(async move {
                    let ended = conn.await;
                    drop(slot);
                    drop(peer_slot);
                    if tripped.load(std::sync::atomic::Ordering::Relaxed) {
                        metrics.connection_closed("send_timeout_ms");
                        limits_log.send_timeout.log(|| format!(
                            "closed the connection of {peer}: it took no byte of its answer for {} ms (send_timeout_ms)",
                            send_timeout.as_millis()
                        ));
                    } else if ended.as_ref().is_err_and(hyper::Error::is_timeout) {
                        metrics.connection_closed("header_timeout_ms");
                    }
                });
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    drop(listener);
    sweeper.abort();
    eprintln!("cordon serve: shutting down; draining in-flight executions");
    let grace = Duration::from_millis(state.config.server.shutdown_timeout_ms);
    let connections = async {
        // Connections close once their current request is answered; sync
        // waiters are answered when their execution ends or is cancelled.
        let _ = tokio::time::timeout(grace + Duration::from_secs(15), graceful.shutdown()).await;
    };
    tokio::join!(state.backend.drain(grace), connections);
    // Every record is durable; the writer syncs the latest checkpoint and
    // empties the run journal.
    let audit = state.audit.clone();
    match tokio::task::spawn_blocking(move || audit.shutdown()).await {
        Ok(Ok(stats)) => eprintln!(
            "cordon serve: audit log closed: {} records in {} fdatasyncs of the log ({} of the run journal)",
            stats.records, stats.log_syncs, stats.journal_syncs
        ),
        Ok(Err(e)) => eprintln!("cordon serve: {}", e.render()),
        Err(e) => eprintln!("cordon serve: the audit writer's shutdown failed: {e}"),
    }
    eprintln!("cordon serve: stopped; every execution is recorded");
    Ok(())
}
