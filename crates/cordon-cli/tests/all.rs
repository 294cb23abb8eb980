//! The `cordon` binary driven end to end: real commands in real sandboxes.
//!
//! One test binary (`mod suite;`), so the suite builds and links once. Tests
//! that need a kernel feature gate on `cordon_testkit::require!` or
//! `sandbox_modes!`, which skip loudly and fail under `CI=1`. Tools the
//! tests run (python3, node, java, gcc, make, git ...) are part of the test
//! machine: a missing one fails its test with a hint to install it in
//! `.ci/run`.

mod suite;
