//! What `cordon` costs to start (issue 12), where a test can see it: the
//! shared libraries the loader maps, and what the program it maps holds.

use std::path::{Path, PathBuf};

use cordon_testkit::{Dir, Mode, TestCommand};

use super::{cordon_bin, run_in, tool};

/// The shared libraries the dynamic loader maps for a whole dev-mode run
/// (its `LD_DEBUG=files` lines: start-up and anything opened later), and
/// nothing of the command's (dev mode does not pass `LD_DEBUG` on).
fn libraries_loaded_by_a_run() -> Vec<String> {
    let out = run_in(Mode::Dev).env("LD_DEBUG", "files").args(["--", "true"]).run();
    out.assert_success();
    let mut libs: Vec<String> = out
        .stderr
        .lines()
        .filter_map(|l| l.split_once("file=").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split([' ', ';']).next())
        .map(str::to_owned)
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

/// A run loads libc and no other library, at start or later: each one
/// costs every start an open, its mappings and its relocation.
/// `libgcc_s.so.1` (and its `cpuid` constructor) is not loaded because the
/// unwinder is linked in statically (cordon-cli's build.rs), `libm.so.6`
/// because `cordon` defines the one function of it that its code names,
/// `pow` (cordon-cli's src/main.rs).
#[test]
fn a_run_loads_libc_and_no_other_library() {
    let libs = libraries_loaded_by_a_run();
    // Control: the loader's report is read (libc is always there).
    assert!(libs.iter().any(|l| l == "libc.so.6"), "no libc.so.6 among {libs:?}");
    assert!(!libs.iter().any(|l| l.starts_with("libgcc_s")), "libgcc_s is loaded: {libs:?}");
    assert!(!libs.iter().any(|l| l.starts_with("libm.")), "libm is loaded: {libs:?}");
    assert_eq!(libs, ["libc.so.6"], "a run loads more than libc");
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
