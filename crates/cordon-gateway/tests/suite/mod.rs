//! The gateway's tests, and what they share.

mod http;
mod plans;
mod workers;

use cordon_gateway::{Secrets, Strictness};

/// The two secrets the service needs, fixed for tests.
pub fn test_secrets() -> Secrets {
    let env = |k: &str| match k {
        "CORDON_JWT_SECRET" => Some("jwt-secret-for-the-in-process-tests-0123456789".to_owned()),
        "CORDON_INTERNAL_SECRET" => Some("internal-secret-for-the-in-process-tests-012345".to_owned()),
        _ => None,
    };
    Secrets::load(&env, Strictness::Refuse).expect("secrets")
}
