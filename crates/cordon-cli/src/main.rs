//! `cordon`: the command line (see the `cordon_cli` library), with the
//! service's subcommands (`serve`, `worker`, `dead-letters`) handed to
//! `cordon-server` by `execve`, so the program started for every run does
//! not carry (and load) the gateway.

#![deny(unsafe_code)]
// With glibc the program starts at the C `main` below, not at Rust's
// `fn main`: see `cordon_cli::main`. Elsewhere (musl, the build's target:
// see `.cargo/config.toml`) it starts at Rust's `fn main`.
#![cfg_attr(target_env = "gnu", no_main)]

// `no_mangle` names the symbol the C runtime calls; nothing unsafe happens here.
#[cfg(target_env = "gnu")]
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    cordon::runtime_init();
    cordon_cli::main(cordon_cli::exec_server)
}

/// Rust's runtime fills `std::env::args` (musl, unlike glibc, hands argv
/// to nobody else); on musl it costs ≈ 0.03 ms at start (a signal stack
/// and its handlers; no `/proc/self/maps` read).
/// Its relocated pointers are made read-only first (glibc's start-up does
/// that, musl's static-pie start does not: see `cordon::protect_relro`).
#[cfg(not(target_env = "gnu"))]
fn main() {
    if let Err(e) = cordon::protect_relro() {
        eprintln!(
            "cordon: error: {e}; this build cannot make its own relocated pointers read-only (build it for glibc)"
        );
        std::process::exit(125);
    }
    std::process::exit(cordon_cli::main(cordon_cli::exec_server))
}

/// The allocator, with musl: dlmalloc behind a futex lock (see
/// `cordon::Allocator`); musl's own unmaps each group of small blocks as
/// soon as it empties (a dev run made 22 `mmap` and 12 `munmap` calls, 12
/// and 3 with dlmalloc; CPU of `--version` 0.23 → 0.17 ms).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: cordon::Allocator = cordon::Allocator::new();

/// `pow`, for the one caller linked into `cordon`: tokio's multi-thread
/// scheduler statistics (the service's runtime, which `cordon` never
/// starts; the feature is on for the package, so its code is linked). A
/// definition here, from the `libm` crate (musl's `pow` in Rust), answers
/// that reference, and the linker (`--as-needed`) then leaves `libm.so.6`
/// out: the loader no longer opens, maps and relocates it at every start
/// of every run (≈ 0.06 ms per start on this project's VMs, measured with
/// a C program that links libm or not). `cordon-server` keeps glibc's.
/// That matters where `cordon` is linked dynamically (build.rs falls back
/// to it without static C archives); linked static-pie, `cordon` simply
/// has this definition in place of glibc's `libm.a` one.
///
/// With musl, `cordon` is static and links musl's own `pow`.
// `no_mangle` gives the symbol its C name; nothing unsafe happens here.
#[cfg(target_env = "gnu")]
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}
