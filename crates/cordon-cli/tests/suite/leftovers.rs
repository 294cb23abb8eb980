//! Folders a killed cordon leaves behind: a run's scratch directory outlives
//! a SIGKILL of cordon, and a later run removes it when there is evidence of
//! a crash (the audit trail recovered a lost run), without listing the
//! scratch parent on every run (`cordon::leftovers`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cordon_testkit::{poll_until, processes_with_argv, Dir, Mode, TestCommand};

use super::{run_in, unique_sleep_marker};

/// The `cordon-<request id>` folders in `tmp`.
fn scratch_dirs(tmp: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(tmp)
        .expect("read the test's TMPDIR")
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("cordon-")))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

#[test]
fn a_killed_runs_scratch_is_removed_by_the_run_that_recovers_it() {
    let dir = Dir::new("leftovers");
    let tmp = dir.create_dir("tmp");
    let (state, log) = (dir.join("state"), dir.join("audit.jsonl"));
    // Dev mode makes a scratch directory under TMPDIR, on any kernel.
    let cordon = |argv: &[&str]| {
        let mut c = run_in(Mode::Dev);
        c.env("TMPDIR", &tmp).env("XDG_STATE_HOME", &state).env("CORDON_AUDIT_LOG", &log).arg("--").args(argv);
        c
    };

    cordon(&["true"]).run().assert_success();
    assert_eq!(scratch_dirs(&tmp), Vec::<PathBuf>::new(), "a finished run's scratch stayed");
    // One that leaves a file and a folder in its scratch (which a lone
    // `rmdir` cannot remove) has it removed too.
    let fill = r#"mkdir "$TMPDIR/sub" && echo x > "$TMPDIR/sub/f" && echo y > "$TMPDIR/g" && echo "$TMPDIR""#;
    let out = cordon(&["sh", "-c", fill]).run();
    out.assert_success();
    let used = PathBuf::from(out.stdout.trim_end());
    // Control: it wrote into a scratch folder of this test's TMPDIR.
    assert!(used.starts_with(&tmp) && used.file_name().unwrap().to_string_lossy().starts_with("cordon-"), "{out}");
    assert_eq!(scratch_dirs(&tmp), Vec::<PathBuf>::new(), "a finished run's filled scratch stayed");

    // Shaped like a leftover, but no cordon died: a run that just looked
    // (the first one) does not list the folder again.
    let planted = tmp.join(format!("cordon-{}", "0".repeat(26)));
    std::fs::create_dir(&planted).expect("plant a folder");
    cordon(&["true"]).run().assert_success();
    assert!(planted.exists(), "a run without evidence of a crash swept {}", planted.display());

    // Control: a run whose cordon is SIGKILLed leaves its scratch behind.
    let marker = unique_sleep_marker();
    let mut killed = cordon(&["sleep", &marker]).spawn_without_output();
    let running = poll_until(Duration::from_secs(20), || !processes_with_argv(&["sleep", &marker]).is_empty());
    killed.kill().expect("SIGKILL cordon"); // std sends SIGKILL to this pid only
    killed.wait().expect("reap cordon");
    // Dev mode does not outlive-proof its command: end it, by pid.
    for pid in processes_with_argv(&["sleep", &marker]) {
        TestCommand::new("kill").args(["-KILL", &pid.to_string()]).run();
    }
    assert!(running, "`sleep {marker}` never started");
    let left = scratch_dirs(&tmp);
    assert_eq!(left.len(), 2, "control: the killed run's scratch should stay: {left:?}");

    // The next run recovers the lost run from the audit journal: evidence of
    // a crash, so it sweeps, and both unheld folders go.
    let out = cordon(&["true"]).run();
    out.assert_success();
    assert_eq!(scratch_dirs(&tmp), Vec::<PathBuf>::new(), "after a recovered crash\n{out}");
}
