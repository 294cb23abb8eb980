//! Per-tenant request rate: a token bucket per tenant holding one second's
//! worth of requests (`rate_per_sec`), refilled continuously. An empty
//! bucket answers 429 with `Retry-After` (whole seconds until one token is
//! back, at least 1). The concurrency limit (`max_concurrent`) is enforced
//! where executions are admitted ([`crate::backend`]), so the count and the
//! admission are one step.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::Config;
use crate::error::ApiError;

struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

/// The tenants' rate buckets and limits.
pub struct Tenancy {
    buckets: Mutex<HashMap<String, Bucket>>,
    max_concurrent: HashMap<String, u32>,
}

impl Tenancy {
    /// Full buckets for every configured tenant.
    pub fn new(config: &Config) -> Tenancy {
        let now = Instant::now();
        let buckets = config
            .tenants
            .iter()
            .map(|t| {
                let rate = f64::from(t.rate_per_sec);
                (t.name.clone(), Bucket { rate, tokens: rate, at: now })
            })
            .collect();
        let max_concurrent = config.tenants.iter().map(|t| (t.name.clone(), t.max_concurrent)).collect();
        Tenancy { buckets: Mutex::new(buckets), max_concurrent }
    }

    /// Whether `tenant` is configured.
    pub fn exists(&self, tenant: &str) -> bool {
        self.max_concurrent.contains_key(tenant)
    }

    /// The tenant's `max_concurrent`.
    pub fn max_concurrent(&self, tenant: &str) -> Option<u32> {
        self.max_concurrent.get(tenant).copied()
    }

    /// Spends one request of `tenant`'s bucket, or answers 429.
    pub fn admit_request(&self, tenant: &str) -> Result<(), ApiError> {
        self.admit_at(tenant, Instant::now())
    }

    fn admit_at(&self, tenant: &str, now: Instant) -> Result<(), ApiError> {
        let mut buckets = self.buckets.lock().expect("rate bucket lock");
        let Some(b) = buckets.get_mut(tenant) else {
            // A token of a tenant removed from the configuration.
            return Err(ApiError::unauthorized(format!("tenant `{tenant}` is not configured")));
        };
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.rate).min(b.rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        // Whole seconds until one token is back: at most 1 for any rate
        // of at least one per second (the configuration's minimum).
        let wait_ms = ((1.0 - b.tokens) / b.rate * 1000.0).ceil();
        let wait_s = (1..=3600u64).find(|s| (*s * 1000) as f64 >= wait_ms).unwrap_or(3600);
        Err(ApiError::too_many(format!("tenant `{tenant}` is over its rate of {} requests per second", b.rate), wait_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_empties_refills_and_names_the_wait() {
        let c =
            Config::parse("[tenants.a]\nmax_concurrent = 1\nrate_per_sec = 2\n", std::path::Path::new("c")).unwrap();
        let t = Tenancy::new(&c);
        let t0 = Instant::now();
        assert!(t.admit_at("a", t0).is_ok());
        assert!(t.admit_at("a", t0).is_ok());
        let e = t.admit_at("a", t0).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(t.admit_at("a", t0 + Duration::from_millis(500)).is_ok(), "half a second refills one of 2/s");
        assert!(t.admit_at("b", t0).is_err());
    }
}
