//! What the proxy did, one [`ConnectionRecord`] per client connection, and
//! the ledger that collects them. A record is written when its connection
//! ends, however it ends: normally, with an error, or cut off at shutdown
//! (the [`Tracker`] writes it from `Drop`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;

/// How a client reached the network: through the proxy (`http`,
/// `connect`, `socks5`, `unknown`) or through transparent egress (`tcp`,
/// `udp`, `unix`, `dns`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Protocol {
    /// A TCP `connect()` (transparent egress).
    Tcp,
    /// A UDP `connect()` (transparent egress; refused beyond the sandbox).
    Udp,
    /// A unix socket `connect()` (transparent egress; refused in process
    /// mode).
    Unix,
    /// A name lookup at the sandbox's stub DNS.
    Dns,
    /// A plain HTTP request forwarded by the proxy (`GET http://host/...`).
    Http,
    /// An HTTP `CONNECT` tunnel (HTTPS and anything else over it).
    Connect,
    /// A SOCKS5 `CONNECT`.
    Socks5,
    /// The client sent nothing the proxy could read as a request.
    Unknown,
}

/// One client connection: where it asked to go, what the policy said, and
/// how many payload bytes were relayed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ConnectionRecord {
    /// How the client spoke.
    pub protocol: Protocol,
    /// The host asked for (normalised when it was valid): a name when the
    /// program used one, else an address; empty when the request could not
    /// be read.
    pub host: String,
    /// The DNS name the program looked up, when it connected by name
    /// (transparent egress: the name behind the stub's synthetic address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port asked for; 0 when the request could not be read.
    pub port: u16,
    /// Whether the policy let the connection through (the allow check and
    /// the address check both passed). A connection can be allowed and still
    /// fail, see `error`.
    pub allowed: bool,
    /// The pattern that allowed it, or the deny pattern that refused it, as
    /// `--net` takes it. `None` when no pattern decided: the default deny,
    /// the private-address guard, or a request that never got that far.
    pub rule: Option<String>,
    /// The address the proxy connected to, once it did.
    pub addr: Option<SocketAddr>,
    /// Payload bytes written to the upstream server. For a plain HTTP
    /// request: the rewritten request head and the body. For `CONNECT` and
    /// SOCKS5: the tunnelled bytes, without the proxy's own handshake.
    pub bytes_up: u64,
    /// Payload bytes written back to the client. For a plain HTTP request:
    /// the rewritten response head and the body. For `CONNECT` and SOCKS5:
    /// the tunnelled bytes, without the proxy's own replies.
    pub bytes_down: u64,
    /// Why the connection was refused or failed, if it was.
    pub error: Option<String>,
    /// From accept to close (proxy), from `connect()` to the socket's end
    /// (transparent egress).
    pub duration_ms: f64,
    /// How many identical attempts this record stands for: refusals of the
    /// same destination for the same reason are counted, not repeated.
    pub count: u64,
    /// The process that asked, as `name, pid N` in the sandbox (transparent
    /// egress). The name is the sandbox's choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// The `--net` pattern that would allow a refused destination, when one
    /// would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

impl ConnectionRecord {
    /// An empty record: nothing known yet, counted once.
    pub(crate) fn new() -> Self {
        ConnectionRecord {
            protocol: Protocol::Unknown,
            host: String::new(),
            name: None,
            count: 1,
            process: None,
            suggestion: None,
            port: 0,
            allowed: false,
            rule: None,
            addr: None,
            bytes_up: 0,
            bytes_down: 0,
            error: None,
            duration_ms: 0.0,
        }
    }

    /// A record that stands for no single connection, carrying a note
    /// about the proxy itself (records lost or refused).
    pub(crate) fn note(error: String) -> Self {
        ConnectionRecord { error: Some(error), ..ConnectionRecord::new() }
    }
}

/// Byte counters shared by a connection's relays and its record.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub up: AtomicU64,
    pub down: AtomicU64,
}

impl Counters {
    /// Changes whenever a byte is relayed either way; the idle watchdog
    /// compares it over time.
    pub fn activity(&self) -> u64 {
        self.up.load(Ordering::Relaxed).wrapping_add(self.down.load(Ordering::Relaxed))
    }
}

/// Collects the records of finished connections, bounded by `max_records`
/// so that a sandbox opening connections in a loop cannot grow the
/// supervisor's memory without limit.
#[derive(Debug)]
pub(crate) struct Ledger {
    max_records: usize,
    admitted: AtomicU64,
    refused: AtomicU64,
    records: Mutex<Vec<(u64, ConnectionRecord)>>,
}

impl Ledger {
    pub fn new(max_records: usize) -> Arc<Self> {
        Arc::new(Ledger {
            max_records,
            admitted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            records: Mutex::new(Vec::new()),
        })
    }

    /// A tracker for a new connection, or `None` when the record limit is
    /// reached: such connections are closed unserved, because serving a
    /// connection that cannot be accounted for would break the audit trail.
    pub fn admit(self: &Arc<Self>) -> Option<Tracker> {
        let id = self.admitted.fetch_add(1, Ordering::Relaxed);
        if usize::try_from(id).map_or(true, |id| id >= self.max_records) {
            self.admitted.fetch_sub(1, Ordering::Relaxed);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Tracker {
            id,
            ledger: Arc::clone(self),
            record: ConnectionRecord::new(),
            counters: Arc::new(Counters::default()),
            started: Instant::now(),
            finished: false,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(u64, ConnectionRecord)>> {
        // A panic while holding the lock cannot leave a half-written Vec.
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The records in accept order, plus one summary record when
    /// connections were refused at the record limit.
    pub fn take_records(&self) -> Vec<ConnectionRecord> {
        let mut records = std::mem::take(&mut *self.lock());
        records.sort_by_key(|(id, _)| *id);
        let mut out: Vec<ConnectionRecord> = records.into_iter().map(|(_, r)| r).collect();
        let refused = self.refused.load(Ordering::Relaxed);
        if refused > 0 {
            out.push(ConnectionRecord::note(format!(
                "{refused} further connection(s) were closed unserved: the proxy's record limit ({}) was reached",
                self.max_records
            )));
        }
        out
    }
}

/// The record of one live connection. Dropping it files the record, so a
/// connection aborted at shutdown is accounted for with the bytes relayed
/// so far.
#[derive(Debug)]
pub(crate) struct Tracker {
    id: u64,
    ledger: Arc<Ledger>,
    pub record: ConnectionRecord,
    pub counters: Arc<Counters>,
    started: Instant,
    finished: bool,
}

impl Tracker {
    /// Marks the connection as ended by the proxy's own logic (not cut off).
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let mut record = std::mem::replace(&mut self.record, ConnectionRecord::new());
        record.bytes_up = self.counters.up.load(Ordering::Relaxed);
        record.bytes_down = self.counters.down.load(Ordering::Relaxed);
        record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        if !self.finished && record.error.is_none() {
            record.error = Some("cut off: the proxy shut down while the connection was open".to_owned());
        }
        self.ledger.lock().push((self.id, record));
    }
}
