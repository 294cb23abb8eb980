//! Links the `cordon` binary with GCC's unwinder as a static archive
//! (`libgcc_eh.a`) instead of the shared `libgcc_s.so.1` that Rust's
//! standard library asks for.
//!
//! Why: every start of `cordon` pays for each shared library the loader
//! maps: open, map, relocate, and here also `libgcc_s`'s constructor,
//! which runs `cpuid` several times to fill in `__cpu_model` (nothing in
//! cordon reads it), and `cpuid` traps to the hypervisor on a virtual
//! machine (~4 µs each measured on this project's VMs). cordon uses the
//! unwinder only to print a backtrace (the release profile aborts on
//! panic), which the static copy does as well. With the archive linked
//! whole, `--as-needed` finds nothing left for `libgcc_s` and drops it
//! (`cordon-cli/tests/suite/startup.rs` checks what a run loads).
//! `libm.so.6` is left out another way: glibc's static `libm.a` needs
//! symbols private to its shared loader, so `cordon` defines the one
//! function it names, `pow` (see `src/main.rs`).
//!
//! A static build (`RUSTFLAGS="-C target-feature=+crt-static" cargo build
//! --release --target x86_64-unknown-linux-gnu`: no loader and no shared
//! library at all, ≈ 0.3 ms less per start on this project's VMs) links
//! the archive by itself, so nothing is added then.
//!
//! Only the binaries get it, not the test harnesses. Without a
//! `libgcc_eh.a` next to the C compiler's `libgcc` (a toolchain other
//! than GCC's) the build warns and links `libgcc_s` as before.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu")
    {
        return;
    }
    // A static build (`-C target-feature=+crt-static`) links the archive
    // itself; a second, whole copy would define its symbols twice.
    if std::env::var("CARGO_CFG_TARGET_FEATURE").is_ok_and(|f| f.split(',').any(|x| x == "crt-static")) {
        return;
    }
    // The C compiler rustc links with (`cc` unless a linker is configured;
    // rust-lld is then given GCC's libraries by that same driver).
    let cc = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    let found = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| p.is_absolute() && p.is_file());
    match found {
        Some(archive) => println!(
            "cargo:rustc-link-arg-bins=-Wl,--push-state,--whole-archive,{},--pop-state",
            archive.display()
        ),
        None => println!(
            "cargo:warning=`{cc} -print-file-name=libgcc_eh.a` found no static unwinder: cordon links libgcc_s.so.1 (install gcc)"
        ),
    }
}
