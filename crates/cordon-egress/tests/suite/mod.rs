mod connect;
mod http_forward;
mod python;
mod robustness;
mod socks;
mod ssrf;
mod support;
