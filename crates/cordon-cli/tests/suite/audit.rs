//! The audit trail (issue 5): one record per execution whatever its end
//! (ok, limit, crash, setup failure, cordon SIGKILLed), filtering, and the
//! hash chain. Every `cordon run`/`exec` in the whole suite is also checked
//! by `TestCommand` for exactly one well-formed record.

use std::path::Path;
use std::time::Duration;

use cordon_testkit::{
    each_mode, kernel_support, poll_until, processes_mentioning, sandbox_modes, Dir, Mode, TestCommand,
};
use serde_json::Value;

use super::plugins::{example, exec};
use super::{cordon, run_in, unique_sleep_marker};

fn records(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_ending_leaves_exactly_one_record() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("ok", vec!["--", "true"]),
            ("NONZERO_EXIT", vec!["--", "sh", "-c", "exit 3"]),
            ("KILLED", vec!["--", "sh", "-c", "kill -SEGV $$"]),
            ("TIMEOUT", vec!["--timeout-ms", "200", "--", "sleep", "5"]),
            (
                "MEMORY_LIMIT",
                vec!["--memory-mb", "32", "--", "python3", "-c", "b = bytearray(256 << 20); print(len(b))"],
            ),
            ("NOT_FOUND", vec!["--", "no-such-command-xyz"]),
            ("SETUP_FAILED", vec!["--read", "/no/such/path", "--", "true"]),
        ];
        for (outcome, args) in cases {
            let out = run_in(mode).arg("--json").args(&args).run();
            let ctx = format!("[{} {outcome}]\n{out}", mode.as_str());
            assert_eq!(out.audit.len(), 1, "{ctx}");
            let r = &out.audit[0];
            assert_eq!(r["outcome"], outcome, "{ctx}");
            assert_eq!(r["trace_id"].as_str().map(str::len), Some(32), "{ctx}");
            assert_eq!(r["lost"], false);
            for field in ["time", "request_id", "mode", "policy_digest", "duration_ms", "prev"] {
                assert!(r.get(field).is_some(), "{field} missing {ctx}");
            }
            if outcome == "SETUP_FAILED" {
                assert!(r["error"].as_str().unwrap().contains("--read /no/such/path"), "{ctx}");
            } else {
                assert_eq!(r["mode"], mode.as_str(), "{ctx}");
                assert_eq!(r["policy_digest"].as_str().map(str::len), Some(64), "{ctx}");
                assert!(r["peak_rss_kb"].is_u64() || outcome == "NOT_FOUND", "{ctx}");
            }
        }
    });
}

#[test]
fn a_network_summary_is_recorded() {
    let support = kernel_support();
    let port = super::plugins::serve();
    each_mode(sandbox_modes!(support), |mode| {
        let out =
            exec(mode, &example("node-fetch"), "fetch", &format!(r#"{{"url": "http://127.0.0.1:{port}/"}}"#)).run();
        out.assert_success();
        let net = &out.audit[0]["network"];
        assert_eq!(net["allowed"], 1, "{out}");
        assert_eq!(net["denied"], 0, "{out}");
        assert_eq!(net["hosts"], serde_json::json!([format!("127.0.0.1:{port}")]), "{out}");
        assert!(net["bytes_down"].as_u64().unwrap() > super::plugins::BODY.len() as u64, "{out}");
        // No connection, no summary.
        let quiet = exec(mode, &example("hello-sh"), "greet", "{}").run();
        assert!(quiet.audit[0]["network"].is_null(), "{quiet}");
    });
}

#[test]
fn a_sigkilled_cordon_is_recorded_as_lost_on_the_next_start() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let state = Dir::new("lost-run");
        let log = state.join("audit.jsonl");
        let plugin = Dir::new("sleeper");
        let marker = unique_sleep_marker();
        plugin.create(
            "cordon.toml",
            format!("id = \"@t/sleeper\"\nversion = \"1.0.0\"\n[handlers.nap]\ncommand = [\"sleep\", \"{marker}\"]\n"),
        );
        // One audit key for every cordon on this log: a begin line sealed
        // with another key cannot be told from a forged one.
        let xdg = state.join("xdg");
        let mut cmd = cordon();
        cmd.arg("exec").arg(plugin.path()).args(["nap", "--mode", mode.as_str()]).env("CORDON_AUDIT_LOG", &log);
        cmd.env("XDG_STATE_HOME", &xdg);
        let mut child = cmd.spawn_without_output();
        let started = poll_until(Duration::from_secs(20), || !processes_mentioning(&marker).is_empty());
        assert!(started, "[{}] the handler never started", mode.as_str());
        let journal = state.join("audit.jsonl.inflight");
        let journal_len = || std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0);
        assert!(journal_len() > 0, "the run is in the run journal while it runs");
        assert!(records(&log).is_empty(), "no record before the end");

        child.kill().expect("SIGKILL cordon");
        child.wait().expect("reap cordon");
        let gone = poll_until(Duration::from_secs(5), || processes_mentioning(&marker).is_empty());
        for pid in processes_mentioning(&marker) {
            TestCommand::new("kill").args(["-KILL", &pid.to_string()]).run();
        }
        assert!(gone, "[{}] the handler outlived its cordon", mode.as_str());
        assert!(records(&log).is_empty(), "a killed cordon writes nothing");

        // The next cordon on this log records the run as lost, then its own.
        let next = cordon()
            .args(["run", "--mode", mode.as_str(), "--", "true"])
            .env("CORDON_AUDIT_LOG", &log)
            .env("XDG_STATE_HOME", &xdg)
            .run();
        next.assert_success().assert_stderr_contains("recorded 1 run(s) as LOST");
        let all = records(&log);
        assert_eq!(all.len(), 2, "{all:#?}");
        let lost = &all[0];
        assert_eq!(lost["outcome"], "LOST");
        assert_eq!(lost["lost"], true);
        assert_eq!(lost["plugin"], "@t/sleeper");
        assert_eq!(lost["handler"], "nap");
        assert!(lost["error"].as_str().unwrap().contains("ended before recording the outcome"), "{lost}");
        assert_eq!(all[1]["outcome"], "ok");
        assert_eq!(journal_len(), 0, "nothing is open any more");
        // Once only: a third run records no second LOST.
        cordon()
            .args(["run", "--mode", mode.as_str(), "--", "true"])
            .env("CORDON_AUDIT_LOG", &log)
            .env("XDG_STATE_HOME", &xdg)
            .run()
            .assert_success();
        assert_eq!(records(&log).iter().filter(|r| r["outcome"] == "LOST").count(), 1);
    });
}

#[test]
fn audit_lists_filters_and_verifies() {
    let state = Dir::new("audit-list");
    let log = state.join("audit.jsonl");
    let with_log = |cmd: &mut TestCommand| {
        cmd.env("CORDON_AUDIT_LOG", &log);
    };
    let hello = example("hello-sh");
    for input in [r#"{"name": "A"}"#, r#"{"name": "B"}"#] {
        let mut c = exec(cordon_testkit::Mode::Process, &hello, "greet", input);
        with_log(&mut c);
        c.run().assert_success();
    }
    let mut t = cordon();
    t.args(["run", "--mode", "process", "--timeout-ms", "100", "--", "sleep", "5"]);
    with_log(&mut t);
    t.run().assert_code(124);

    let audit = |args: &[&str]| {
        let mut c = cordon();
        c.arg("audit").args(args);
        with_log(&mut c);
        c.run()
    };
    let all = audit(&["--json"]);
    all.assert_success();
    assert_eq!(all.json().as_array().unwrap().len(), 3, "{all}");
    let count = |args: &[&str]| {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = audit(&a);
        out.assert_success();
        out.json().as_array().unwrap().len()
    };
    assert_eq!(count(&["--plugin", "@examples/hello-sh"]), 2);
    assert_eq!(count(&["--plugin", "@examples/py-notes"]), 0);
    assert_eq!(count(&["--outcome", "TIMEOUT"]), 1);
    assert_eq!(count(&["--outcome", "timeout"]), 1);
    assert_eq!(count(&["--outcome", "error"]), 1);
    assert_eq!(count(&["--outcome", "ok"]), 2);
    assert_eq!(count(&["--since", "1h"]), 3);
    assert_eq!(count(&["--until", "2000-01-01"]), 0);
    assert_eq!(count(&["--since", "2000-01-01T00:00:00Z", "--outcome", "ok", "--plugin", "@examples/hello-sh"]), 2);
    let table = audit(&["--outcome", "ok"]);
    table.assert_success().assert_stdout_contains("@examples/hello-sh@1.0.0 greet");
    audit(&["--outcome", "nope"]).assert_code(125).assert_stderr_contains("invalid --outcome nope");
    audit(&["--since", "yesterday-ish"]).assert_code(125).assert_stderr_contains("invalid --since yesterday-ish");
    audit(&["--plugin", "hello"]).assert_code(125).assert_stderr_contains("invalid --plugin hello");

    audit(&["--verify"]).assert_success().assert_stdout_contains("3 records, hash chain intact");
    // Remove the first record: the head is gone.
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    audit(&["--verify"]).assert_code(1).assert_stderr_contains(":1: the first record does not start the chain");
    // Edit the first record: the chain breaks at the next line.
    let edited = text.replacen("greet", "greeT", 1);
    assert_ne!(text, edited);
    std::fs::write(&log, edited).unwrap();
    audit(&["--verify"]).assert_code(1).assert_stderr_contains(":2: hash chain broken");
}

/// `cordon audit --verify` on a log written by `runs` dev-mode runs in `state`.
fn state_with_runs(tag: &str, runs: usize) -> (Dir, std::path::PathBuf) {
    let state = Dir::new(tag);
    let log = state.join("audit.jsonl");
    for _ in 0..runs {
        cordon()
            .args(["run", "--mode", "dev", "--", "true"])
            .env("CORDON_AUDIT_LOG", &log)
            .env("XDG_STATE_HOME", state.join("xdg"))
            .run()
            .assert_success();
    }
    (state, log)
}

#[test]
fn an_audit_key_that_cannot_be_loaded_refuses_the_run_before_its_command_starts() {
    // cordon loads the audit key on a thread of its own while it prepares
    // the run; the run still waits for it, and a key that cannot be loaded
    // refuses it before anything runs, as opening the log did before.
    let support = kernel_support();
    let (state, log) = state_with_runs("audit-bad-key", 1);
    let key = state.join("xdg/cordon/audit.key");
    let text = std::fs::read_to_string(&key).unwrap();
    // PRIVATE+KEY+<name>+<key id>+<key>: an id that is not this key's is
    // found only by deriving the key's public half.
    let id = text.split('+').nth(3).unwrap().to_owned();
    let other: String = id.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
    std::fs::write(&key, text.replace(&format!("+{id}+"), &format!("+{other}+"))).unwrap();
    let records = std::fs::read(&log).unwrap();
    let mut modes = vec![Mode::Dev];
    modes.extend(sandbox_modes!(support));
    each_mode(modes, |mode| {
        let scratch = Dir::new("audit-bad-key-scratch");
        let marker = scratch.join("ran");
        // Not a TestCommand run: it checks for exactly one record.
        let mut c = run_in(mode);
        c.args(["--write", scratch.path().to_str().unwrap(), "--", "touch", marker.to_str().unwrap()])
            .env("CORDON_AUDIT_LOG", &log)
            .env("XDG_STATE_HOME", state.join("xdg"));
        let out = c.command().stdin(std::process::Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ctx = format!("[{}] {:?}\n{stderr}", mode.as_str(), out.status);
        assert_eq!(out.status.code(), Some(125), "{ctx}");
        assert!(
            stderr.contains(&format!("cannot open the audit log {}", log.display()))
                && stderr.contains("the key id does not match the key"),
            "{ctx}"
        );
        assert!(!marker.exists(), "the command ran {ctx}");
        assert_eq!(std::fs::read(&log).unwrap(), records, "the log changed {ctx}");
        assert_eq!(std::fs::metadata(format!("{}.inflight", log.display())).unwrap().len(), 0, "a run began {ctx}");
    });
}

fn verify_cmd(state: &Dir, log: &std::path::Path) -> TestCommand {
    let mut c = cordon();
    c.args(["audit", "--verify"]).env("CORDON_AUDIT_LOG", log).env("XDG_STATE_HOME", state.join("xdg"));
    c
}

fn write_lines(log: &std::path::Path, lines: &[String]) {
    std::fs::write(log, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

#[test]
fn verify_checks_the_signed_checkpoints_and_catches_truncation_and_rechaining() {
    let (state, log) = state_with_runs("audit-signed", 4);
    let ok = verify_cmd(&state, &log).run();
    ok.assert_success().assert_stdout_contains(
        "4 records, hash chain intact, 0 checkpoints verified, latest checkpoint (4 lines, cordon-audit",
    );
    let json = verify_cmd(&state, &log).arg("--json").run();
    json.assert_success();
    assert_eq!(json.json()["intact"], true);
    assert_eq!(json.json()["latest_checkpoint"]["lines"], 4);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();

    // Truncate the tail: the chain is intact, the latest checkpoint is not.
    write_lines(&log, &lines[..3]);
    verify_cmd(&state, &log).run().assert_code(1).assert_stderr_contains("truncated: the latest checkpoint");
    let json = verify_cmd(&state, &log).arg("--json").run();
    json.assert_code(1);
    assert_eq!(json.json()["intact"], false);

    // Delete a middle record and re-chain the rest, as someone without the
    // key would.
    let mut kept: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    kept.remove(1);
    let mut rechained: Vec<String> = vec![];
    for (i, r) in kept.iter_mut().enumerate() {
        let prev = rechained.last().map_or(String::new(), |p: &String| p.clone());
        r["prev"] = Value::String(cordon_testkit_sha256(prev.as_bytes()));
        r["seq"] = Value::from(i + 1);
        rechained.push(r.to_string());
    }
    write_lines(&log, &rechained);
    verify_cmd(&state, &log).run().assert_code(1).assert_stderr_contains("truncated");

    // A torn last line (a write a crash cut short) is reported as such.
    let mut torn = text.clone();
    torn.push_str(&lines[3][..40]);
    std::fs::write(&log, &torn).unwrap();
    verify_cmd(&state, &log)
        .run()
        .assert_success()
        .assert_stderr_contains(":5: a record cut short by a crash (torn), not an edit")
        .assert_stdout_contains("4 records, hash chain intact");

    // No verifier key: the checkpoint cannot be checked, which is no pass.
    std::fs::write(&log, &text).unwrap();
    std::fs::remove_dir_all(state.join("xdg/cordon/audit-keys")).unwrap();
    verify_cmd(&state, &log).run().assert_code(1).assert_stderr_contains("no verifier key is known");
}

#[test]
fn verify_refuses_a_checkpoint_signed_by_another_key() {
    let (state, log) = state_with_runs("audit-forged", 3);
    let before = std::fs::read_to_string(&log).unwrap();
    // Someone with their own key (another state folder) appends to the log;
    // then their latest checkpoint is put where cordon keeps its own.
    cordon()
        .args(["run", "--mode", "dev", "--", "true"])
        .env("CORDON_AUDIT_LOG", &log)
        .env("XDG_STATE_HOME", state.join("forger"))
        .run()
        .assert_success();
    let anchors = |xdg: &str| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(state.join(xdg).join("cordon/audit-checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    let (ours, theirs) = (anchors("xdg"), anchors("forger"));
    assert_eq!((ours.len(), theirs.len()), (1, 1));
    std::fs::copy(&theirs[0], &ours[0]).unwrap();
    verify_cmd(&state, &log).run().assert_code(1).assert_stderr_contains("does not verify: signed by an unknown key");
    // Control: our own latest checkpoint, with the log as it was, verifies.
    std::fs::write(&log, before).unwrap();
    std::fs::remove_file(&ours[0]).unwrap();
    verify_cmd(&state, &log).run().assert_success().assert_stderr_contains("no latest checkpoint of this log is kept");
}

fn cordon_testkit_sha256(bytes: &[u8]) -> String {
    let out = TestCommand::new("sha256sum").stdin(bytes.to_vec()).run();
    out.assert_success();
    out.stdout.split_whitespace().next().unwrap().to_owned()
}

#[test]
fn a_run_cannot_plant_records_into_another_audit_log() {
    // Review s13 R13-3: cordon once recovered run markers an older version
    // left in `pending/` next to a log, appending each as a LOST record with
    // every field the marker gave. A run that may write the folder of a log
    // it does not record to (no carve-out there) planted one, and the next
    // run on that log signed it into the chain. Nothing writes markers since
    // the run journal, so nothing reads them any more.
    let support = kernel_support();
    let (state, log) = state_with_runs("audit-plant", 1);
    let forged = "01FORGEDFORGEDFORGEDFORGED";
    let marker = serde_json::json!({
        "log": log,
        "pid": 999_999_999u32,
        "pid_start": null,
        "record": {
            "time": "2026-12-01T03:00:00.000Z", "request_id": forged,
            "trace_id": "00000000000000000000000000000000", "tenant": "bank-b", "plugin": "@acme/payments",
            "plugin_version": "9.9.9", "handler": "transfer", "command": ["/usr/bin/transfer", "--to", "mallory"],
            "mode": "container", "policy_digest": "0".repeat(64), "outcome": "ok", "error": null,
            "duration_ms": 1.0, "cpu_ms": 1.0, "peak_rss_kb": 1, "network": null, "lost": false, "seq": 1, "prev": "x"
        }
    });
    each_mode(sandbox_modes!(support), |mode| {
        let folder = state.path().to_str().unwrap();
        run_in(mode)
            .args(["--write", folder, "--cwd", folder, "--", "sh", "-c"])
            .arg(format!("mkdir -p pending && printf '%s' '{marker}' > pending/{}.json", mode.as_str()))
            .run()
            .assert_success();
        let planted = state.join(format!("pending/{}.json", mode.as_str()));
        assert!(planted.exists(), "control: the run wrote the log's folder [{}]", mode.as_str());
        let next = cordon()
            .args(["run", "--mode", "dev", "--", "true"])
            .env("CORDON_AUDIT_LOG", &log)
            .env("XDG_STATE_HOME", state.join("xdg"))
            .run();
        next.assert_success();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains(forged), "the planted record is in the log [{}]\n{next}\n{text}", mode.as_str());
        assert_eq!(records(&log).iter().filter(|r| r["lost"] == true).count(), 0, "{text}");
    });
}

/// Runs `cordon run --mode MODE -- COMMAND` recording to `log` and checks
/// that it is refused (125) with `why` on stderr, which it returns. Run
/// plainly, not through the test kit, which would read the log it names
/// after the run (through the link these tests plant).
fn refused_before_it_starts(mode: &str, log: &Path, state_home: &Path, command: &[&str], why: &str) -> String {
    let out = std::process::Command::new(super::cordon_bin())
        .args(["run", "--mode", mode, "--"])
        .args(command)
        .env("CORDON_AUDIT_LOG", log)
        .env("XDG_STATE_HOME", state_home)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(125), "[{mode}] {stderr}");
    assert!(stderr.contains(why), "[{mode}] {stderr}");
    stderr
}

#[test]
fn a_run_cannot_make_cordon_write_through_links_in_place_of_an_audit_log() {
    // Review s14 R14-3: cordon opened an audit log kept outside its state
    // folder, and the log's run journal, by path, following links. A run
    // that may write that folder (while recording to another log) replaced
    // both by links to host files; the next run on that log, as root,
    // truncated the journal's target and appended its record to the log's.
    // Now neither is opened through a link (nor as a FIFO or a file with
    // other names): the next run is refused before its command starts,
    // naming the link, and the host files are unchanged.
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let (state, log) = state_with_runs(&format!("audit-link-{}", mode.as_str()), 1);
        let vault = state.join("vault");
        std::fs::create_dir(&vault).unwrap();
        let shadow = vault.join("shadow");
        let keys = vault.join("authorized_keys");
        std::fs::write(&shadow, "root:$6$SALT$HASH:19000:0:99999:7:::\n").unwrap();
        std::fs::write(&keys, "ORIGINAL LINE\n").unwrap();
        let folder = state.path().to_str().unwrap();
        // Recording elsewhere, outside the grant (a log inside it keeps the
        // grant's folders from changing during the run).
        let elsewhere = Dir::new(&format!("audit-link-other-{}", mode.as_str()));
        let other = elsewhere.join("other.jsonl");
        let out = run_in(mode)
            .args(["--write", folder, "--cwd", folder, "--", "sh", "-c"])
            .arg(format!(
                "mv audit.jsonl audit.jsonl.old && ln -s {} audit.jsonl && rm -f audit.jsonl.inflight && ln -s {} audit.jsonl.inflight",
                keys.display(),
                shadow.display()
            ))
            .env("CORDON_AUDIT_LOG", &other)
            .run();
        out.assert_success();
        assert!(
            std::fs::symlink_metadata(&log).unwrap().file_type().is_symlink(),
            "control: the run made the links\n{out}"
        );
        let marker = state.join("ran");
        // Run plainly: the test kit would read the log it names after the
        // run, through the link.
        let touch = ["touch", marker.to_str().unwrap()];
        let stderr = refused_before_it_starts(mode.as_str(), &log, &state.join("xdg"), &touch, "is a symbolic link");
        assert!(!marker.exists(), "the command ran [{}]\n{stderr}", mode.as_str());
        assert_eq!(
            std::fs::read_to_string(&shadow).unwrap(),
            "root:$6$SALT$HASH:19000:0:99999:7:::\n",
            "[{}]",
            mode.as_str()
        );
        assert_eq!(std::fs::read_to_string(&keys).unwrap(), "ORIGINAL LINE\n", "[{}]", mode.as_str());
        // The log a FIFO: refused at once, without blocking.
        std::fs::remove_file(&log).unwrap();
        let status = std::process::Command::new("mkfifo").arg(&log).status().unwrap();
        assert!(status.success());
        refused_before_it_starts("dev", &log, &state.join("xdg"), &["true"], "is not a regular file");
        // Control: the log put back (and the journal link removed), runs record again.
        std::fs::remove_file(&log).unwrap();
        std::fs::remove_file(state.join("audit.jsonl.inflight")).unwrap();
        std::fs::rename(state.join("audit.jsonl.old"), &log).unwrap();
        cordon()
            .args(["run", "--mode", "dev", "--", "true"])
            .env("CORDON_AUDIT_LOG", &log)
            .env("XDG_STATE_HOME", state.join("xdg"))
            .run()
            .assert_success();
        assert_eq!(records(&log).len(), 2, "[{}]", mode.as_str());
    });
}

#[test]
fn a_run_cannot_forge_lines_in_another_audit_logs_run_journal() {
    // Review s13 R13-3, its second way (audit-journal-forge.sh): a log's run
    // journal (`<log>.inflight`) is carved out only of runs that record to
    // that log. A run recording elsewhere that may write the folder wrote a
    // begin line (a dead owner, no lock); the next run on the log appended
    // its draft, every field the sandbox chose, to the signed chain as
    // LOST. Journal lines carry a MAC keyed by the audit key now (in the
    // state folder, out of every run's reach): a line without a valid one
    // becomes one JOURNAL_FORGED record naming what was wrong, never the
    // run it claims. Three ways in: a line with no MAC, a genuine line of
    // another log of the same key (replayed), and that line edited.
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        // The audit key's folder apart from the logs' folder, as cordon's
        // state folder is (no grant here reaches it).
        let keys = Dir::new("audit-journal-forge-keys");
        let xdg = keys.path().to_owned();
        let state = Dir::new("audit-journal-forge");
        let log = state.join("audit.jsonl");
        cordon()
            .args(["run", "--mode", "dev", "--", "true"])
            .env("CORDON_AUDIT_LOG", &log)
            .env("XDG_STATE_HOME", &xdg)
            .run()
            .assert_success();
        // A genuine sealed line: a run on another log of the same key whose
        // cordon is SIGKILLed while it runs.
        let other = state.join("other/audit.jsonl");
        let marker = unique_sleep_marker();
        let mut victim = cordon();
        victim.args(["run", "--mode", "dev", "--", "sleep", &marker]);
        victim.env("CORDON_AUDIT_LOG", &other).env("XDG_STATE_HOME", &xdg);
        let mut child = victim.spawn_without_output();
        let other_journal = state.join("other/audit.jsonl.inflight");
        let begun = poll_until(Duration::from_secs(20), || {
            std::fs::metadata(&other_journal).is_ok_and(|m| m.len() > 0) && !processes_mentioning(&marker).is_empty()
        });
        child.kill().expect("SIGKILL cordon");
        child.wait().expect("reap cordon");
        for pid in processes_mentioning(&marker) {
            TestCommand::new("kill").args(["-KILL", &pid.to_string()]).run();
        }
        assert!(begun, "[{m}] control: the other log's run never began");
        let genuine = std::fs::read_to_string(&other_journal).unwrap();
        assert!(genuine.ends_with('\n') && genuine.lines().count() == 1, "[{m}] {genuine}");
        let edited = genuine.replace(&marker, "/usr/bin/transfer --to mallory").replace("\"dev\"", "\"container\"");
        let len = std::fs::metadata(&log).unwrap().len();
        let forged = "01FORGEDJOURNALFORGEDJOURN";
        let unsealed = serde_json::json!({
            "begin": {
                "time": "2026-12-01T03:00:00.000Z", "request_id": forged,
                "trace_id": "00000000000000000000000000000000", "tenant": "bank-b", "plugin": "@acme/payments",
                "plugin_version": "9.9.9", "handler": "transfer", "command": ["/usr/bin/transfer", "--to", "mallory"],
                "mode": "container", "policy_digest": "", "outcome": "ok", "error": null, "duration_ms": 0.0,
                "cpu_ms": null, "peak_rss_kb": null, "network": null, "lost": false, "prev": ""
            },
            "open": [{"id": forged, "pid": 999_999, "at": 0, "log_len": len}]
        });
        let lines = state.join("lines");
        std::fs::write(&lines, format!("{genuine}{edited}{unsealed}\n")).unwrap();

        // The sandbox, recording to its own log, writes the journal.
        let folder = state.path().to_str().unwrap();
        run_in(mode)
            .args(["--write", folder, "--cwd", folder, "--", "sh", "-c", "cat lines > audit.jsonl.inflight"])
            .run()
            .assert_success();
        let journal = state.join("audit.jsonl.inflight");
        assert_eq!(
            std::fs::read_to_string(&journal).unwrap().lines().count(),
            3,
            "[{m}] control: the run wrote the log's journal"
        );

        let next = cordon()
            .args(["run", "--mode", "dev", "--", "true"])
            .env("CORDON_AUDIT_LOG", &log)
            .env("XDG_STATE_HOME", &xdg)
            .run();
        next.assert_success();
        let text = std::fs::read_to_string(&log).unwrap();
        let all = records(&log);
        let ctx = format!("[{m}]\n{next}\n{text}");
        let claimed = |r: &&Value| r["request_id"] == forged || genuine.contains(r["request_id"].as_str().unwrap());
        assert_eq!(all.iter().filter(claimed).count(), 0, "a forged run is in the log {ctx}");
        assert!(!text.contains("mallory") && !text.contains("bank-b"), "{ctx}");
        assert_eq!(all.iter().filter(|r| r["lost"] == true).count(), 0, "{ctx}");
        let flagged: Vec<&Value> = all.iter().filter(|r| r["outcome"] == "JOURNAL_FORGED").collect();
        assert_eq!(flagged.len(), 1, "{ctx}");
        assert!(flagged[0]["tenant"].is_null() && flagged[0]["command"].is_null(), "{ctx}");
        next.assert_stderr_contains("3 line(s) of the run journal")
            .assert_stderr_contains("had no valid MAC: forged by a process that could write that folder");
        assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0, "[{m}] the journal is emptied");
        cordon()
            .args(["audit", "--verify"])
            .env("CORDON_AUDIT_LOG", &log)
            .env("XDG_STATE_HOME", &xdg)
            .run()
            .assert_success();
        // The genuine line is its own log's: the killed run, LOST there.
        let theirs = cordon()
            .args(["run", "--mode", "dev", "--", "true"])
            .env("CORDON_AUDIT_LOG", &other)
            .env("XDG_STATE_HOME", &xdg)
            .run();
        theirs.assert_success().assert_stderr_contains("recorded 1 run(s) as LOST");
        assert_eq!(records(&other)[0]["command"], serde_json::json!(["sleep", marker]), "[{m}]");
    });
}

#[test]
fn a_run_cannot_hide_an_audit_logs_records_by_swapping_its_folder_for_a_link() {
    // Review s14 R14-5: a run that may write the folder above a log kept
    // outside the state folder moved the log's folder away and put a link
    // to a fresh folder in its place; the next run started a new log there
    // (its latest checkpoint kept by where the path leads), and verifying
    // the log by its name showed a short, intact chain. Now cordon opens no
    // log through a link in a folder a run may write: the next run is
    // refused before its command starts, naming the link.
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let srv = Dir::new(&format!("audit-folder-swap-{}", mode.as_str()));
        let log = srv.join("logs/audit.jsonl");
        for _ in 0..2 {
            cordon()
                .args(["run", "--mode", "dev", "--", "true"])
                .env("CORDON_AUDIT_LOG", &log)
                .env("XDG_STATE_HOME", srv.join("xdg"))
                .run()
                .assert_success();
        }
        let elsewhere = Dir::new(&format!("audit-folder-swap-other-{}", mode.as_str()));
        let folder = srv.path().to_str().unwrap();
        run_in(mode)
            .args([
                "--write",
                folder,
                "--cwd",
                folder,
                "--",
                "sh",
                "-c",
                "mv logs .hidden && mkdir fresh && ln -s fresh logs",
            ])
            .env("CORDON_AUDIT_LOG", elsewhere.join("other.jsonl"))
            .run()
            .assert_success();
        let marker = srv.join("ran");
        let touch = ["touch", marker.to_str().unwrap()];
        refused_before_it_starts(mode.as_str(), &log, &srv.join("xdg"), &touch, "through the symbolic link");
        assert!(!marker.exists(), "[{}] the command ran", mode.as_str());
        assert!(!srv.join("fresh/audit.jsonl").exists(), "[{}] a new log was started through the link", mode.as_str());
        assert_eq!(records(&srv.join(".hidden/audit.jsonl")).len(), 2, "[{}]", mode.as_str());
    });
}
