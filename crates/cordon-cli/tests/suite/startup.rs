//! What `cordon` costs to start (issue 12), where a test can see it: how
//! the program is loaded, and what it holds.

use std::path::{Path, PathBuf};

use cordon_testkit::{Dir, Mode, TestCommand};

use super::{cordon_bin, run_in, tool};

/// What a program's ELF headers say about how it is loaded.
#[derive(Debug, PartialEq)]
struct Loading {
    /// A position-independent program (`ET_DYN`), loaded at a random address.
    position_independent: bool,
    /// The dynamic loader it names (`PT_INTERP`), if any.
    interpreter: Option<String>,
    /// How many shared libraries it names (`DT_NEEDED` entries).
    needed: usize,
}

/// Reads the [`Loading`] of the 64-bit little-endian ELF program at `path`
/// (x86_64, aarch64, riscv64, …).
fn loading(path: &Path) -> Loading {
    let elf = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert_eq!(&elf[..6], b"\x7fELF\x02\x01", "{} is not a 64-bit little-endian ELF file", path.display());
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([elf[at], elf[at + 1]]));
    let u64_at = |at: usize| le_u64(&elf[at..]);
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    let mut loading = Loading { position_independent: u16_at(0x10) == 3, interpreter: None, needed: 0 };
    for header in (0..phnum).map(|i| phoff + i * phentsize) {
        let (offset, size) = (u64_at(header + 8), u64_at(header + 32));
        match u32::from_le_bytes(elf[header..header + 4].try_into().unwrap()) {
            // PT_INTERP: the loader's path, NUL-terminated.
            3 => {
                let name = elf[offset..offset + size].split(|&b| b == 0).next().unwrap();
                loading.interpreter = Some(String::from_utf8_lossy(name).into_owned());
            }
            // PT_DYNAMIC: (tag, value) pairs; DT_NEEDED is 1.
            2 => loading.needed = elf[offset..offset + size].chunks_exact(16).filter(|e| le_u64(e) == 1).count(),
            _ => {}
        }
    }
    loading
}

/// The first 8 bytes of `bytes`, a little-endian number.
fn le_u64(bytes: &[u8]) -> usize {
    usize::try_from(u64::from_le_bytes(bytes[..8].try_into().unwrap())).unwrap()
}

/// `cordon`, started for every run, is static-pie (built for musl:
/// `.cargo/config.toml`): position-independent, with no dynamic loader and
/// no shared library to map and relocate at each start, and it runs.
/// Control: the same reading of `/bin/true`, a dynamic program, finds its
/// loader and libraries.
#[test]
fn the_run_program_is_static_pie() {
    let dynamic = loading(Path::new(tool("/bin/true")));
    assert!(
        dynamic.position_independent && dynamic.interpreter.is_some() && dynamic.needed > 0,
        "control: {dynamic:?}"
    );

    let cordon = loading(cordon_bin());
    assert_eq!(
        cordon,
        Loading { position_independent: true, interpreter: None, needed: 0 },
        "cordon is not static-pie"
    );
    run_in(Mode::Dev).args(["--", "/bin/echo", "started"]).run().assert_success().assert_stdout_eq("started\n");
}

/// `cordon` carries no glibc, so no start of it runs glibc's start-up,
/// which probes the CPU with `cpuid` dozens of times, each a trap to the
/// hypervisor on a virtual machine (≈ 0.25 ms of CPU per run): it is built
/// for musl (`.cargo/config.toml`). Seen by the name of the environment
/// variable every glibc start-up reads, `GLIBC_TUNABLES`, which a static
/// glibc program holds. Control: the dynamic loader of `/bin/true` (glibc's
/// start-up for dynamic programs) holds the name.
#[test]
#[cfg_attr(
    not(target_env = "musl"),
    ignore = "this build is for glibc (CARGO_BUILD_TARGET): the project's build (.cargo/config.toml) is for musl"
)]
fn the_run_program_carries_no_glibc_start_up() {
    let loader = loading(Path::new(tool("/bin/true"))).interpreter.expect("control: /bin/true names its loader");
    assert!(program_holds(Path::new(&loader), "GLIBC_TUNABLES"), "control: {loader} holds GLIBC_TUNABLES");
    assert!(!program_holds(cordon_bin(), "GLIBC_TUNABLES"), "cordon carries glibc's start-up");
}

/// The `cordon-server` program cargo built for this test run.
fn cordon_server_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cordon-server"))
}

/// Whether the program at `path` holds `needle` (its bytes, as `grep -c`).
fn program_holds(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The program started for every run does not carry the service (gateway
/// routes, NATS client): the loader relocates every pointer of a program at
/// each start, so what `cordon run` never uses must not be in it. Control:
/// `cordon-server` holds both marks, and `cordon` its own messages.
#[test]
fn the_run_program_does_not_carry_the_service() {
    // A route of the gateway's, and the source paths of the gateway's and the
    // NATS client's code (in their panic locations).
    let service_marks = ["/v1/openapi.json", "crates/cordon-gateway/", "async-nats-"];
    for mark in service_marks {
        assert!(program_holds(cordon_server_bin(), mark), "control: cordon-server holds {mark:?}");
        assert!(!program_holds(cordon_bin(), mark), "cordon holds {mark:?}: it links the service");
    }
    assert!(program_holds(cordon_bin(), "cordon-server"), "control: cordon holds its own strings");
}

/// `cordon serve` (and `worker`, `dead-letters`) replace themselves with the
/// `cordon-server` next to the running `cordon`: with it there, the service's
/// own checks answer (an unparsable `--listen`), exit 125; without it, cordon
/// says which file it could not start and what to install, exit 125. `--help`
/// stays `cordon`'s own, with or without it.
#[test]
fn the_service_subcommands_run_in_cordon_server_next_to_cordon() {
    let alone = Dir::new("cordon-alone");
    let both = Dir::new("cordon-both");
    // Copied by `cp`, not in this process: a sibling test forking while our
    // write descriptor is open would hold it until its exec, and executing
    // the copy meanwhile fails with ETXTBSY.
    let copy = |from: &Path, to: PathBuf| {
        let copied = std::process::Command::new(tool("/bin/cp")).arg(from).arg(&to).status();
        assert!(copied.is_ok_and(|s| s.success()), "cannot copy {} to {}", from.display(), to.display());
    };
    copy(cordon_bin(), alone.join("cordon"));
    copy(cordon_bin(), both.join("cordon"));
    copy(cordon_server_bin(), both.join("cordon-server"));

    // Control: with cordon-server beside it, the service's own message.
    let out = TestCommand::new(both.join("cordon")).args(["serve", "--listen", "nowhere"]).run();
    out.assert_code(125).assert_stderr_contains("invalid --listen nowhere: expected IP:PORT");

    let missing = format!("cannot start {}: No such file or directory", alone.join("cordon-server").display());
    let out = TestCommand::new(alone.join("cordon")).args(["serve", "--listen", "nowhere"]).run();
    out.assert_code(125)
        .assert_stderr_contains(&missing)
        .assert_stderr_contains(
            "hint: cordon's service subcommands (serve, worker, dead-letters) run in the cordon-server program",
        )
        .assert_stderr_lacks("invalid --listen");
    for args in [&["worker", "--queue", "nats://127.0.0.1:1"][..], &["dead-letters", "--queue", "nats://127.0.0.1:1"]] {
        TestCommand::new(alone.join("cordon")).args(args).run().assert_code(125).assert_stderr_contains(&missing);
    }

    // Usage and help are parsed by cordon itself.
    let out = TestCommand::new(alone.join("cordon")).args(["serve", "--help"]).run();
    out.assert_success().assert_stdout_contains("Secrets come from CORDON_JWT_SECRET");
    TestCommand::new(alone.join("cordon"))
        .args(["serve", "--bogus"])
        .run()
        .assert_code(125)
        .assert_stderr_contains("--bogus");
}

/// `cordon`'s relocated pointers (its `PT_GNU_RELRO` segment: the GOT,
/// `.data.rel.ro`, the init arrays) are read-only while it runs, as a
/// loader leaves them: glibc's static-pie start-up protects them itself,
/// musl's does not (cordon does it first thing in `main` there). Read in
/// cordon's own `/proc/PID/maps` by the command of a dev run, whose parent
/// is cordon. Control: the segment is found in cordon's file and its pages
/// are mapped from it.
#[test]
fn cordon_runs_with_its_relocated_pointers_read_only() {
    let elf = std::fs::read(cordon_bin()).expect("cannot read cordon");
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([elf[at], elf[at + 1]]));
    let (phoff, phentsize, phnum) = (le_u64(&elf[0x20..]), u16_at(0x36), u16_at(0x38));
    let relro = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&h| u32::from_le_bytes(elf[h..h + 4].try_into().unwrap()) == 0x6474_e552)
        .map(|h| (le_u64(&elf[h + 16..]), le_u64(&elf[h + 40..])));
    let (vaddr, memsz) = relro.expect("control: cordon has a PT_GNU_RELRO segment");
    let out = run_in(Mode::Dev).args(["--", "/bin/sh", "-c", "cat /proc/$PPID/maps"]).run();
    out.assert_success();
    let exe = std::fs::canonicalize(cordon_bin()).unwrap();
    // (start, end, perms) of each mapping of cordon's file.
    let maps: Vec<(usize, usize, String)> = out
        .stdout
        .lines()
        .filter(|l| l.ends_with(exe.to_str().unwrap()))
        .map(|l| {
            let mut f = l.split_whitespace();
            let (range, perms) = (f.next().unwrap(), f.next().unwrap());
            let (a, b) = range.split_once('-').unwrap();
            (usize::from_str_radix(a, 16).unwrap(), usize::from_str_radix(b, 16).unwrap(), perms.to_owned())
        })
        .collect();
    let base = maps.iter().map(|m| m.0).min().unwrap_or_else(|| panic!("control: cordon's file mapped\n{out}"));
    let page = 4096;
    let (start, end) = ((base + vaddr) / page * page, (base + vaddr + memsz) / page * page);
    assert!(end > start, "control: RELRO spans whole pages ({vaddr:#x}+{memsz:#x})");
    for p in (start..end).step_by(page) {
        let m =
            maps.iter().find(|m| m.0 <= p && p < m.1).unwrap_or_else(|| panic!("RELRO page {p:#x} unmapped\n{out}"));
        assert!(!m.2.contains('w'), "cordon's RELRO page {p:#x} is writable ({}): {}\n{out}", m.2, out.stdout);
    }
}
