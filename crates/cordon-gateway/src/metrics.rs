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
struct Route {
    route: String,
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
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Metrics {
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
        }
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
