//! `cordon-server`: the same command line as `cordon` (see the `cordon_cli`
//! library), running the service's subcommands (`serve`, `worker`,
//! `dead-letters`) itself. `cordon` execs it for those; it is installed
//! next to `cordon` and not meant to be called by its own name.

#![deny(unsafe_code)]
// With glibc the program starts at the C `main` below, not at Rust's
// `fn main`: see `cordon_cli::main`. Elsewhere (musl) it starts at Rust's
// `fn main`, which fills `std::env::args`.
#![cfg_attr(target_env = "gnu", no_main)]

// `no_mangle` names the symbol the C runtime calls; nothing unsafe happens here.
#[cfg(target_env = "gnu")]
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    cordon::runtime_init();
    start()
}

/// Its relocated pointers are made read-only first (see
/// `cordon::protect_relro`).
#[cfg(not(target_env = "gnu"))]
fn main() {
    if let Err(e) = cordon::protect_relro() {
        eprintln!("cordon-server: error: {e}; this build cannot make its own relocated pointers read-only (build it for glibc)");
        std::process::exit(125);
    }
    std::process::exit(start())
}

/// The allocator, with musl: `cordon`'s (dlmalloc behind a futex lock, see
/// `cordon::Allocator`). musl's own unmaps each group of small blocks as
/// soon as it empties, and the service allocates and frees on every
/// request: with it the service spent 1.42x the CPU per execution of the
/// glibc build.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: cordon::Allocator = cordon::Allocator::new();

fn start() -> std::ffi::c_int {
    // `cordon serve` starts this program again as its sandbox spawner
    // (see cordon::start_spawner): that one never gets past this line.
    cordon::spawner_entry();
    cordon_cli::main(cordon_cli::run_server_here)
}
