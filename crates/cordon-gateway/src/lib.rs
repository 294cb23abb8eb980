//! cordon-gateway: `cordon serve`, an authenticated, multi-tenant HTTP/1.1
//! JSON service that runs plugin handlers in cordon sandboxes.
//!
//! [`app`] builds the router (one `routes()` per file in [`routes`]);
//! [`serve`] runs it on a socket until SIGTERM; [`AppState::start`] opens
//! the audit log (one group-commit writer) and starts the execution backend. The contract (paths,
//! status codes, error body, token claims, configuration) is DESIGN.md's
//! "Gateway contract"; `GET /v1/openapi.json` describes it.
//!
//! # What it guarantees
//!
//! - Every `/v1` request carries a verified credential ([`auth`]): an HS256
//!   access token with every claim checked, or a configured service token;
//!   `/internal/dispatch` takes only the internal secret. The service does
//!   not start with missing, short, documented or equal secrets
//!   ([`secrets`]) unless `--insecure-dev`, which keeps it on loopback.
//! - A tenant sees only its own executions (another tenant's id is 404),
//!   and is held to its rate and concurrency ([`tenancy`], [`backend`]).
//! - Every execution runs through the library in a fresh sandbox, the
//!   plugin checked just before ([`catalog`]), and leaves exactly one audit
//!   record, `LOST` included when the service is killed ([`backend`]).
//! - Request heads over `max_header_bytes` get 431, bodies over
//!   `max_body_bytes` 413, a head not sent within `header_timeout_ms` loses
//!   its connection, a full queue answers 503 ([`server`]).
//! - No client holds the service's connections by not reading its answers
//!   or by opening many ([`conn`]): a connection whose answer the client
//!   takes no byte of for `send_timeout_ms` is closed, and past
//!   `max_connections_per_peer` a peer's new connections are answered 503
//!   `too_many_connections` (loopback is exempt by default:
//!   `peer_cap_exempt`); the log names the peer and the limit, and
//!   `cordon_connections_closed_total{limit}` counts them.
//!
//! # Current limitations
//!
//! - Refresh-token families live in memory: a restart signs everyone out
//!   (see [`auth`]). Results live in memory too: a restart forgets them
//!   (their audit records stay).
//! - No warm pool yet: each execution pays the whole sandbox setup in its
//!   worker thread. The pool is another [`backend::Backend`] variant.
//! - Plugins come from a folder ([`catalog::FolderCatalog`]) until the
//!   registry implements [`catalog::Catalog`].
//! - TLS is left to a reverse proxy (README).
//!
//! # Test strategy
//!
//! Pure parts (configuration, secrets, token store, rate buckets) have unit
//! tests. `tests/` drives the router in process for HTTP-only cases; the
//! `cordon` binary's tests drive a running `cordon serve` for everything
//! that needs sockets, signals and sandboxes.

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod backend;
pub mod catalog;
pub mod config;
pub mod conn;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod plans;
pub mod pool;
pub mod queue;
pub mod routes;
pub mod secrets;
pub mod server;
pub mod state;
pub mod tenancy;

pub use config::{Config, ConfigError};
pub use secrets::{SecretError, Secrets, Strictness};
pub use server::{serve, ServeError};
pub use state::{AppState, StartError};

use axum::extract::DefaultBodyLimit;
use axum::Router;

/// The whole API on `state`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(routes::token::routes())
        .merge(routes::executions::routes())
        .merge(routes::plugins::routes())
        .merge(routes::dispatch::routes())
        .merge(routes::health::routes())
        .merge(routes::metrics::routes())
        .merge(routes::openapi::routes())
        .fallback(server::not_found)
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), server::observe))
        .with_state(state)
}
