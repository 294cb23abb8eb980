//! `cordon`: the command line (see the `cordon_cli` library), with the
//! service's subcommands (`serve`, `worker`, `dead-letters`) handed to
//! `cordon-server` by `execve`, so the program started for every run does
//! not carry (and load) the gateway.

#![deny(unsafe_code)]
// The program starts at the C `main` below, not at Rust's `fn main`: see
// `cordon_cli::main`.
#![no_main]

// `no_mangle` names the symbol the C runtime calls; nothing unsafe happens here.
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    cordon_cli::main(cordon_cli::exec_server)
}
