//! Mostly for a glibc build (`CARGO_BUILD_TARGET=x86_64-unknown-linux-gnu`):
//! the project builds for musl (`.cargo/config.toml`), where Rust links
//! every program static-pie itself, glibc's `cpuid`-probing start-up is
//! gone too (≈ 0.25 ms of CPU per start on this project's VMs), and this
//! script only packs `cordon`'s and `cordon-server`'s relative relocations
//! as `DT_RELR` (see [`RELR`]).
//!
//! Links the `cordon` program static-pie: no dynamic loader and no shared
//! library at all, so a start maps one file and relocates only itself.
//! `cordon-server` stays a dynamic program, linked with GCC's unwinder as
//! a static archive.
//!
//! Why: `cordon` is started for every run, and every start pays for the
//! loader and for each shared library it maps: open, map, relocate, and
//! the loader's own `cpuid` probing (each `cpuid` traps to the hypervisor
//! on a virtual machine, ~4 µs measured on this project's VMs). Static-pie
//! takes ≈ 0.3 ms off each start there (`--version` p10 0.86 → 0.54 ms,
//! page faults of a dev run 191 → 129; `bench/startup.sh` compares).
//!
//! How, without `-C target-feature=+crt-static` (a rustflag for the whole
//! build, which proc-macros cannot take, so it needs `--target` and moves
//! every binary to `target/<triple>/`): rustc links `cordon` as it links
//! any dynamic program (`-pie`, then `-lgcc_s -lutil -lrt -lpthread -lm
//! -ldl -lc`), and this script adds, for `cordon` only:
//! - `-static-pie`, so the C compiler driver starts the program with
//!   `rcrt1.o` (which relocates the program itself), gives no
//!   `--dynamic-linker`, and tells the linker `-static`;
//! - a library folder (`$OUT_DIR/static-libs`) holding only static
//!   archives under the names rustc asks for: `libc.a`, `libm.a`, … the
//!   C library's own, and `libgcc_s.a` = GCC's `libgcc_eh.a` (the
//!   unwinder). A linker looks in each folder for `libX.so` and then
//!   `libX.a` before the next folder, so these are found before the
//!   system's shared ones, whatever `-Bdynamic` rustc put in front;
//! - `-lgcc_eh -lgcc -lc` in a group at the end, as a static link of
//!   rustc's own has them (glibc's `libc.a` calls the unwinder and
//!   libgcc's helpers, which a one-pass linker would have passed by).
//!
//! What static glibc changes: host names are looked up with the `files`
//! and `dns` sources built in (glibc ≥ 2.34); any other NSS module
//! (`mdns`, `resolve`, `myhostname`, …) is `dlopen`ed and works only with
//! the same glibc version installed. (`cordon-cli/tests/suite/startup.rs`
//! checks the project's build: `cordon` static-pie, without glibc.)
//!
//! When a static archive or the static-pie start file `rcrt1.o` cannot be
//! found (a host without glibc's static libraries, say), the build warns and links `cordon` dynamically, like
//! `cordon-server`. A build with `-C target-feature=+crt-static` is static
//! everywhere already; nothing is added then.
//!
//! `cordon-server` (and `cordon` when linked dynamically) gets
//! `libgcc_eh.a` linked whole instead of `libgcc_s.so.1`: its constructor
//! runs `cpuid` several times to fill in `__cpu_model` (nothing reads it),
//! and cordon uses the unwinder only to print a backtrace (the release
//! profile aborts on panic). With the archive linked whole,
//! `--as-needed` finds nothing left for `libgcc_s` and drops it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The program linked static-pie.
const STATIC_BIN: &str = "cordon";
/// The program linked dynamically.
const DYNAMIC_BIN: &str = "cordon-server";
/// The linker flag that packs relative relocations as `DT_RELR` (GNU ld
/// 2.38, lld 15; an older GNU ld warns and ignores it): a static-pie
/// program relocates itself at every start, and `cordon` has ≈ 7 200
/// relative relocations, 24-byte `RELA` entries the start reads one by
/// one (174 KB); as RELR they are 1.9 KB of bitmaps.
const RELR: &str = "-Wl,-z,pack-relative-relocs";
/// The libraries rustc names for a dynamic Linux GNU program (the `libc`
/// and `unwind` crates' `#[link]`s): the C library's parts and `gcc_s`.
const C_LIBRARIES: [&str; 6] = ["c", "m", "pthread", "rt", "dl", "util"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("musl") {
        // Static-pie already (Rust's musl target). Its relative
        // relocations packed as RELR, which musl's start (1.2.4 and later;
        // Rust ships 1.2.5) applies: see `RELR`.
        for bin in [STATIC_BIN, DYNAMIC_BIN] {
            println!("cargo:rustc-link-arg-bin={bin}={RELR}");
        }
        return;
    }
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu") {
        return;
    }
    // A static build (`-C target-feature=+crt-static`) links everything
    // statically itself; a second, whole unwinder would define its
    // symbols twice.
    if std::env::var("CARGO_CFG_TARGET_FEATURE").is_ok_and(|f| f.split(',').any(|x| x == "crt-static")) {
        return;
    }
    // The C compiler rustc links with (`cc` unless a linker is configured;
    // rust-lld is then given GCC's libraries by that same driver).
    let cc = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    let Some(unwinder) = archive(&cc, "gcc_eh") else {
        println!(
            "cargo:warning=`{cc} -print-file-name=libgcc_eh.a` found no static unwinder: cordon and cordon-server link libgcc_s.so.1 and cordon is not static (install gcc)"
        );
        return;
    };
    let whole_unwinder = format!("-Wl,--push-state,--whole-archive,{},--pop-state", unwinder.display());
    println!("cargo:rustc-link-arg-bin={DYNAMIC_BIN}={whole_unwinder}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    match static_libs(&cc, &unwinder, &out.join("static-libs")) {
        Ok(folder) => {
            for arg in ["-static-pie".to_owned(), format!("-L{}", folder.display())] {
                println!("cargo:rustc-link-arg-bin={STATIC_BIN}={arg}");
            }
            for arg in ["-Wl,--start-group", "-lgcc_eh", "-lgcc", "-lc", "-Wl,--end-group"] {
                println!("cargo:rustc-link-arg-bin={STATIC_BIN}={arg}");
            }
        }
        Err(missing) => {
            println!(
                "cargo:warning={missing}: cordon is linked dynamically, ≈ 0.3 ms slower to start (install the C library's static archives, libc6-dev on Debian)"
            );
            println!("cargo:rustc-link-arg-bin={STATIC_BIN}={whole_unwinder}");
        }
    }
}

/// Fills `folder` with links to the static archives of [`C_LIBRARIES`]
/// and, as `libgcc_s.a`, to `unwinder`, once the C library's static-pie
/// start file is found. Returns the folder, or what could not be found or
/// made.
fn static_libs(cc: &str, unwinder: &Path, folder: &Path) -> Result<PathBuf, String> {
    // Made afresh: a link left from an earlier build may name an archive
    // that has moved since.
    let _ = std::fs::remove_dir_all(folder);
    std::fs::create_dir_all(folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    // The start file of a static-pie program (glibc ≥ 2.27 built with it);
    // without it the C compiler cannot link one.
    if library_file(cc, "rcrt1.o").is_none() {
        return Err(format!("`{cc} -print-file-name=rcrt1.o` found no static-pie start file"));
    }
    let mut links = vec![(unwinder.to_owned(), "libgcc_s.a".to_owned())];
    for name in C_LIBRARIES {
        let found =
            archive(cc, name).ok_or_else(|| format!("`{cc} -print-file-name=lib{name}.a` found no lib{name}.a"))?;
        links.push((found, format!("lib{name}.a")));
    }
    for (target, name) in links {
        let link = folder.join(name);
        std::os::unix::fs::symlink(&target, &link)
            .map_err(|e| format!("cannot link {} to {}: {e}", link.display(), target.display()))?;
    }
    Ok(folder.to_owned())
}

/// Where the C compiler finds the static archive `lib{name}.a`, if it does.
fn archive(cc: &str, name: &str) -> Option<PathBuf> {
    library_file(cc, &format!("lib{name}.a"))
}

/// Where the C compiler finds the library file `file`, if it does.
fn library_file(cc: &str, file: &str) -> Option<PathBuf> {
    Command::new(cc)
        .arg(format!("-print-file-name={file}"))
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| p.is_absolute() && p.is_file())
}
