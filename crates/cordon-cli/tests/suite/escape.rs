//! The shared escape corpus (`../shared/escape`), run against the binary
//! under test in each sandbox mode. With `cargo test --release` (as in
//! `.ci/run`) that is the release binary.
//!
//! Process mode does not hide the host's filesystem layout (README,
//! "Modes"), but no probe of the corpus depends on that: it mounts the run's
//! own `/proc`, so `proc_visible` holds as well. The list of probes process
//! mode does not claim to cover, [`PROCESS_MODE_EXCEPTIONS`], is therefore
//! empty; a probe added to it needs its reason beside it.

use std::path::PathBuf;

use cordon_testkit::{kernel_support, require, Dir, Mode, TestCommand};

use super::cordon_bin;

/// Probes process mode does not claim to cover: (case, reason).
const PROCESS_MODE_EXCEPTIONS: &[(&str, &str)] = &[];

fn runner() -> PathBuf {
    let shared = std::env::var_os("CORDON_ESCAPE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/escape"));
    let runner = shared.join("runner.sh");
    assert!(
        runner.exists(),
        "escape corpus not found at {} (set CORDON_ESCAPE_DIR to the folder holding runner.sh)",
        runner.display()
    );
    runner
}

fn corpus(mode: Mode, exceptions: &[(&str, &str)]) {
    let runner = runner();
    let out_dir = Dir::new("escape");
    let tsv = out_dir.join("results.tsv");
    let template = format!(
        "{} run --mode {} --read {{bin}} --write {{scratch}} --cwd {{scratch}} --timeout-ms 10000 --memory-mb 256 --pids 64 --",
        cordon_bin().display(),
        mode.as_str()
    );
    let out = TestCommand::new("bash").arg(&runner).arg("--out").arg(&tsv).arg(&template).run();
    let results = std::fs::read_to_string(&tsv)
        .unwrap_or_else(|e| panic!("no results from the runner ({e}):\n{}\n{}", out.stdout, out.stderr));
    let mut failed = vec![];
    let mut seen = 0;
    for line in results.lines().filter(|l| !l.starts_with("case\t")) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (case, result) = (cols[0], cols.get(2).copied().unwrap_or(""));
        seen += 1;
        if result != "PASS" && !exceptions.iter().any(|(c, _)| *c == case) {
            failed.push(line.to_owned());
        }
    }
    assert!(seen >= 40, "the runner reported only {seen} cases:\n{}\n{}", out.stdout, out.stderr);
    assert!(failed.is_empty(), "[{}] escapes:\n{}\n\nfull output:\n{}", mode.as_str(), failed.join("\n"), out.stdout);
}

#[test]
fn escape_corpus_is_blocked_in_container_mode() {
    let support = kernel_support();
    require!(support.user_namespaces.is_available(), "user namespaces (container mode)");
    corpus(Mode::Container, &[]);
}

#[test]
fn escape_corpus_is_blocked_in_process_mode() {
    let support = kernel_support();
    require!(support.landlock_abi.0 >= 6, "landlock ABI >= 6 (found {})", support.landlock_abi);
    corpus(Mode::Process, PROCESS_MODE_EXCEPTIONS);
}
