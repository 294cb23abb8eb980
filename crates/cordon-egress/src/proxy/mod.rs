//! The filtering proxy: HTTP forward, HTTPS `CONNECT` and SOCKS5 on one
//! listener, for `--net-via proxy` (see the crate documentation).

mod http;
mod relay;
mod server;
mod socks;

pub use http::MAX_HEAD_BYTES;
pub use relay::RelayMemory;
pub use server::{proxy_env, spawn, spawn_charged, ProxyConfig, ProxyHandle, SpawnError, MAX_REFUSING};
