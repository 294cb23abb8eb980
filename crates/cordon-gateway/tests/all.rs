//! The gateway's in-process tests: the router driven with `oneshot`, for
//! what needs no socket, signal or sandbox; and the local backend's
//! workers driven through `AppState::backend`.

mod suite;
