//! Prometheus metrics (`GET /metrics`, text format), via `prometheus-client`.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `cordon_http_requests_total` | `route`, `status` | answered requests |
//! | `cordon_http_request_duration_seconds` | `route` | time to answer |
//! | `cordon_executions_total` | `tenant`, `outcome` | finished executions (`ok` or the error code) |
//! | `cordon_executions_queued` | | accepted, waiting for a worker |
//! | `cordon_executions_running` | | in a sandbox now |
//! | `cordon_execution_handler_seconds` | | one execution in its worker: setup and sandbox (its audit record is committed after, off the worker) |
//! | `cordon_execution_sandbox_seconds` | | the sandbox's wall clock alone |
//! | `cordon_auth_failures_total` | | refused credentials |
//! | `cordon_refresh_reuse_total` | | refresh families revoked for reuse |
//! | `cordon_pool_hits_total` | | executions started in a parked sandbox (`[server] pool_size`) |
//! | `cordon_pool_misses_total` | | executions with the pool on that found none parked (a fresh sandbox) |
//! | `cordon_pool_parked` | | sandboxes parked now |
//! | `cordon_connections_closed_total` | `limit` | connections the service closed or refused because of a limit: `send_timeout_ms` (the client took no byte of its answer for that long), `max_connections_per_peer` (refused: the peer had that many open), `header_timeout_ms` (no request head in time, idle kept-alive connections included) |
//!
//! With `--queue` (scale-out; `queue_*` gauges are read from NATS at each
//! scrape, counters come from the results' done notifications, which every
//! gateway sees: scrape one gateway, or take the max across gateways):
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `cordon_queue_depth` | `tenant` | requests on the work stream: waiting or running (a scrape of the stream's subjects) |
//! | `cordon_queue_pending` | | requests no worker has taken yet (all tenants): scale workers up while it stays above 0 |
//! | `cordon_queue_in_flight` | | requests a worker holds now (delivered, not acknowledged) |
//! | `cordon_queue_waiting_pulls` | | idle workers' pull requests: spare capacity |
//! | `cordon_queue_redeliveries_total` | `tenant` | deliveries beyond the first of requests that got a result (a `LOST` one counts in `lost` only) |
//! | `cordon_queue_duplicates_total` | `tenant` | results refused because another result was stored first |
//! | `cordon_queue_lost_total` | `tenant` | requests given up on (`LOST`) |
//! | `cordon_queue_notices_dropped_total` | `reason` | done notices not counted: `backlog_full` (the counter fell behind), `unknown_key` (signed by a key not in the result-key folder even after it was read again: forged, or its file is not trusted) |
//!
//! and `cordon_executions_total` counts every stored result by tenant and
//! outcome.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Limit {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Tenant {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantOutcome {
    tenant: String,
    outcome: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~30 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// The service's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RouteStatus, Counter>,
    durations: Family<Route, Histogram, fn() -> Histogram>,
    executions: Family<TenantOutcome, Counter>,
    /// Accepted, waiting.
    pub queued: Gauge,
    /// Running now.
    pub running: Gauge,
    handler: Histogram,
    sandbox: Histogram,
    auth_failures: Counter,
    refresh_reuse: Counter,
    /// Executions started in a parked sandbox.
    pub pool_hits: Counter,
    /// Executions with the pool on that found none parked.
    pub pool_misses: Counter,
    /// Sandboxes parked now.
    pub pool_parked: Gauge,
    connections_closed: Family<Limit, Counter>,
    queue: Option<QueueMetrics>,
}

/// The scale-out queue's metrics (see the module docs).
#[derive(Clone, Default)]
struct QueueMetrics {
    depth: Family<Tenant, Gauge>,
    pending: Gauge,
    in_flight: Gauge,
    waiting_pulls: Gauge,
    redeliveries: Family<Tenant, Counter>,
    duplicates: Family<Tenant, Counter>,
    lost: Family<Tenant, Counter>,
    notices_dropped: Family<Reason, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// What the work queue holds now, read from NATS at a scrape.
#[derive(Debug, Default)]
pub struct QueueGauges {
    /// Requests on the work stream per tenant.
    pub depth: Vec<(String, u64)>,
    /// Not yet delivered.
    pub pending: u64,
    /// Delivered, not acknowledged.
    pub in_flight: u64,
    /// Idle pull requests.
    pub waiting_pulls: u64,
}

/// How a stored result came to be counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// It is the request's result.
    First,
    /// It was refused: another result was stored first.
    Refused,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Metrics {
        Metrics::build(None)
    }

    /// [`Metrics::new`] plus the queue's metrics (`--queue`).
    pub fn with_queue() -> Metrics {
        Metrics::build(Some(QueueMetrics::default()))
    }

    fn build(queue: Option<QueueMetrics>) -> Metrics {
        let mut r = Registry::default();
        let requests = Family::<RouteStatus, Counter>::default();
        let durations = Family::<Route, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let executions = Family::<TenantOutcome, Counter>::default();
        let queued = Gauge::default();
        let running = Gauge::default();
        let handler = latency_histogram();
        let sandbox = latency_histogram();
        let auth_failures = Counter::default();
        let refresh_reuse = Counter::default();
        let (pool_hits, pool_misses, pool_parked) = (Counter::default(), Counter::default(), Gauge::default());
        r.register("cordon_pool_hits", "Executions started in a parked sandbox", pool_hits.clone());
        r.register("cordon_pool_misses", "Executions with the pool on that found none parked", pool_misses.clone());
        r.register("cordon_pool_parked", "Sandboxes parked now", pool_parked.clone());
        let connections_closed = Family::<Limit, Counter>::default();
        r.register(
            "cordon_connections_closed",
            "Connections closed or refused by a limit (send_timeout_ms, max_connections_per_peer, header_timeout_ms)",
            connections_closed.clone(),
        );
        r.register("cordon_http_requests", "Answered HTTP requests", requests.clone());
        r.register("cordon_http_request_duration_seconds", "Time to answer a request", durations.clone());
        r.register("cordon_executions", "Finished executions by outcome", executions.clone());
        r.register("cordon_executions_queued", "Accepted executions waiting for a worker", queued.clone());
        r.register("cordon_executions_running", "Executions in a sandbox now", running.clone());
        r.register(
            "cordon_execution_handler_seconds",
            "One execution in its worker: setup and sandbox (its audit record is committed after, off the worker)",
            handler.clone(),
        );
        r.register("cordon_execution_sandbox_seconds", "The sandbox's wall clock", sandbox.clone());
        r.register("cordon_auth_failures", "Refused credentials", auth_failures.clone());
        r.register(
            "cordon_refresh_reuse",
            "Refresh families revoked because a rotated token came back",
            refresh_reuse.clone(),
        );
        if let Some(q) = &queue {
            r.register("cordon_queue_depth", "Requests on the work stream, waiting or running", q.depth.clone());
            r.register("cordon_queue_pending", "Requests no worker has taken yet", q.pending.clone());
            r.register("cordon_queue_in_flight", "Requests a worker holds now", q.in_flight.clone());
            r.register("cordon_queue_waiting_pulls", "Idle workers' pull requests", q.waiting_pulls.clone());
            r.register(
                "cordon_queue_redeliveries",
                "Deliveries beyond the first of requests that got a result",
                q.redeliveries.clone(),
            );
            r.register(
                "cordon_queue_duplicates",
                "Results refused because another was stored first",
                q.duplicates.clone(),
            );
            r.register("cordon_queue_lost", "Requests given up on (LOST)", q.lost.clone());
            r.register(
                "cordon_queue_notices_dropped",
                "Done notices not counted, by reason",
                q.notices_dropped.clone(),
            );
        }
        Metrics {
            registry: Arc::new(r),
            requests,
            durations,
            executions,
            queued,
            running,
            handler,
            sandbox,
            auth_failures,
            refresh_reuse,
            pool_hits,
            pool_misses,
            pool_parked,
            connections_closed,
            queue,
        }
    }

    /// Counts a connection closed or refused by `limit` (the configuration
    /// key's name).
    pub fn connection_closed(&self, limit: &'static str) {
        self.connections_closed.get_or_create(&Limit { limit }).inc();
    }

    /// Counts a result written for `tenant` with `outcome` at `attempt`
    /// (`--queue`): stored, or refused as a duplicate.
    pub fn queue_result(&self, tenant: &str, outcome: &str, attempt: u64, stored: Stored) {
        let Some(q) = &self.queue else { return };
        let t = Tenant { tenant: tenant.to_owned() };
        match stored {
            Stored::Refused => {
                q.duplicates.get_or_create(&t).inc();
            }
            Stored::First => {
                self.execution_done(tenant, outcome);
                if outcome == cordon::ErrorCode::Lost.as_str() {
                    q.lost.get_or_create(&t).inc();
                } else if attempt > 1 {
                    q.redeliveries.get_or_create(&t).inc_by(attempt - 1);
                }
            }
        }
    }

    /// Counts a done notice that was not counted (`--queue`): `reason` is
    /// `backlog_full` or `unknown_key` (see the module docs).
    pub fn queue_notice_dropped(&self, reason: &'static str) {
        if let Some(q) = &self.queue {
            q.notices_dropped.get_or_create(&Reason { reason }).inc();
        }
    }

    /// Sets the queue's gauges (`--queue`), forgetting tenants no longer
    /// on the stream.
    pub fn set_queue(&self, g: &QueueGauges) {
        let Some(q) = &self.queue else { return };
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        q.depth.clear();
        for (tenant, n) in &g.depth {
            q.depth.get_or_create(&Tenant { tenant: tenant.clone() }).set(as_i64(*n));
        }
        q.pending.set(as_i64(g.pending));
        q.in_flight.set(as_i64(g.in_flight));
        q.waiting_pulls.set(as_i64(g.waiting_pulls));
    }

    /// Counts an answered request.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        self.requests.get_or_create(&RouteStatus { route: route.to_owned(), status }).inc();
        self.durations.get_or_create(&Route { route: route.to_owned() }).observe(seconds);
    }

    /// Counts a finished execution.
    pub fn execution_done(&self, tenant: &str, outcome: &str) {
        self.executions.get_or_create(&TenantOutcome { tenant: tenant.to_owned(), outcome: outcome.to_owned() }).inc();
    }

    /// Times of one execution.
    pub fn observe_run(&self, handler_s: f64, sandbox_s: f64) {
        self.handler.observe(handler_s);
        self.sandbox.observe(sandbox_s);
    }

    /// Counts a refused credential.
    pub fn auth_failure(&self) {
        self.auth_failures.inc();
    }

    /// Counts a family revoked for reuse.
    pub fn refresh_reuse(&self) {
        self.refresh_reuse.inc();
    }

    /// The text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
