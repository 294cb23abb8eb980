//! Dev mode: no isolation, a warning on every run, and nothing made for
//! the run on the host.

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Dir, Mode};
use serde_json::Value;

use super::run_in;

fn warnings(result: &Value) -> Vec<String> {
    result["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn dev_mode_warns_on_stderr_and_in_the_result() {
    let support = kernel_support();
    run_in(Mode::Dev).args(["--", "true"]).run().assert_success().assert_stderr_contains("warning: dev mode");

    let out = run_in(Mode::Dev).args(["--json", "--", "true"]).run();
    out.assert_success().assert_stderr_contains("warning: dev mode");
    let w = warnings(&out.json());
    assert!(w.iter().any(|w| w.contains("dev mode")), "warnings {w:?}\n{out}");

    // Control: sandboxed modes carry no such warning.
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode).args(["--json", "--", "true"]).run();
        out.assert_success().assert_stderr_lacks("dev mode");
        let w = warnings(&out.json());
        assert!(!w.iter().any(|w| w.contains("dev mode")), "[{}] {w:?}\n{out}", mode.as_str());
    });
}

/// Dev mode runs the command as the caller would (issue 12, DESIGN.md:
/// "nothing but the timeout"): no folder is made for the run, and its
/// `HOME` and `TMPDIR` are the caller's, listed as passed in the result; a
/// caller without them gives the command none. Fails on a cordon that makes
/// a scratch folder: `TMPDIR` names that folder, and the command sees it in
/// the caller's `TMPDIR` while it runs.
#[test]
fn dev_mode_makes_no_folder_and_keeps_the_callers_home_and_tmpdir() {
    let dir = Dir::new("dev-home");
    let (home, tmp) = (dir.create_dir("home"), dir.create_dir("tmp"));
    let log = dir.join("audit.jsonl");
    // What the command sees, and what is in the caller's TMPDIR while it runs.
    let script = format!(r#"printf '%s|%s|' "${{HOME-unset}}" "${{TMPDIR-unset}}"; ls -A '{}' | wc -l"#, tmp.display());
    let run = |with_home: bool| {
        let mut cmd = run_in(Mode::Dev);
        cmd.env("XDG_STATE_HOME", dir.join("state")).env("CORDON_AUDIT_LOG", &log);
        match with_home {
            true => cmd.env("HOME", &home).env("TMPDIR", &tmp),
            false => cmd.env_remove("HOME").env_remove("TMPDIR"),
        };
        let out = cmd.args(["--json", "--", "sh", "-c", &script]).run();
        out.assert_success();
        let r = out.json();
        let text = r["logs"]["lines"][0]["text"].as_str().unwrap_or_default().to_owned();
        let names = |k: &str| -> Vec<String> {
            r["env"][k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
        };
        (text, names("passed"), names("set"), out)
    };

    let (seen, passed, set, out) = run(true);
    assert_eq!(seen, format!("{}|{}|0", home.display(), tmp.display()), "{out}");
    assert!(passed.contains(&"HOME".to_owned()) && passed.contains(&"TMPDIR".to_owned()), "{passed:?}\n{out}");
    assert!(!set.contains(&"HOME".to_owned()) && !set.contains(&"TMPDIR".to_owned()), "{set:?}\n{out}");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "the run left {left:?} in the caller's TMPDIR");

    // Control: without them in the caller's environment, the command has none.
    let (seen, passed, _, out) = run(false);
    assert_eq!(seen, "unset|unset|0", "{out}");
    assert!(!passed.contains(&"HOME".to_owned()), "{passed:?}\n{out}");
}
