//! Defaults that used to surprise (issue 10 items 4, 6, 7, 8): the caller's
//! `PATH` passes, an ungranted working directory is named, `cordon doctor`
//! shows what a run really gets, `cordon` alone is a usage error, and
//! `cordon exec` reads its input from a pipe.

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Dir, Mode};

use super::{cordon, run_in};

/// A pyenv-style install: an interpreter in a version folder that only the
/// caller's `PATH` names.
fn fake_interpreter() -> Dir {
    let dir = Dir::new("pyenv");
    dir.create_executable("versions/3.99/bin/fakepython", "#!/bin/sh\necho \"fake python $*\"\n");
    dir
}

#[test]
fn a_pyenv_style_interpreter_on_the_callers_path_is_found_when_its_folder_is_granted() {
    let support = kernel_support();
    let pyenv = fake_interpreter();
    let bin = pyenv.path().join("versions/3.99/bin");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    // Control: without a sandbox the caller's PATH finds it.
    run_in(Mode::Dev).env("PATH", &path).args(["--", "fakepython", "-V"]).run().assert_stdout_eq("fake python -V\n");
    each_mode(sandbox_modes!(support), |mode| {
        // Not granted: not found, and the message says where it is.
        run_in(mode)
            .env("PATH", &path)
            .args(["--", "fakepython", "-V"])
            .run()
            .assert_code(127)
            .assert_stderr_contains("command not found: fakepython")
            .assert_stderr_contains(&format!(
                "{}/fakepython is on PATH, in a folder the sandbox does not see; grant it (--read {})",
                bin.display(),
                bin.display()
            ));
        // Granted: found by cordon, and by the shell inside, whose PATH is
        // the caller's.
        let granted = |args: &[&str]| {
            let mut cmd = run_in(mode);
            cmd.env("PATH", &path).arg("--read").arg(pyenv.path().join("versions")).arg("--").args(args);
            cmd.run()
        };
        granted(&["fakepython", "-V"]).assert_success().assert_stdout_eq("fake python -V\n");
        granted(&["sh", "-c", "fakepython -c 1; echo \"PATH=$PATH\""])
            .assert_success()
            .assert_stdout_eq(&format!("fake python -c 1\nPATH={path}\n"));
    });
}

#[test]
fn json_says_which_variables_pass_and_which_are_set() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode)
            .env("PATH", "/usr/bin:/bin")
            .env("TERM", "xterm")
            .env("LANG", "C.UTF-8")
            .env("CORDON_TEST_SECRET_TOKEN", "x")
            .args(["--json", "--set-env", "GREETING=hi", "--", "true"])
            .run();
        out.assert_success();
        let r = out.json();
        let names = |k: &str| -> Vec<String> {
            r["env"][k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
        };
        let mut passed = names("passed");
        passed.sort();
        assert_eq!(passed, ["LANG", "PATH", "TERM"], "[{}] {out}", mode.as_str());
        assert_eq!(names("set"), ["HOME", "TMPDIR", "GREETING"], "[{}] {out}", mode.as_str());
        let ledger = r["enforcement"].as_array().unwrap();
        let env = ledger.iter().find(|e| e["rule"] == "env").unwrap();
        assert!(
            env["mechanism"]
                .as_str()
                .unwrap()
                .contains("PATH, LANG, LC_ALL, LC_CTYPE, TERM, TZ passed from the caller"),
            "{env}"
        );
    });
}

#[test]
fn an_ungranted_working_directory_is_named_once() {
    let support = kernel_support();
    let dir = Dir::new("cwd");
    dir.create("data.txt", "x");
    let note = "cordon: note: the working directory is not granted";
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        // Control: granted, the command sees the folder and nothing is said.
        let mut cmd = run_in(mode);
        cmd.command().current_dir(dir.path());
        cmd.args(["--read", ".", "--", "ls"])
            .run()
            .assert_success()
            .assert_stdout_eq("data.txt\n")
            .assert_stderr_lacks(note);
        let mut cmd = run_in(mode);
        cmd.command().current_dir(dir.path());
        let out = cmd.args(["--", "ls"]).run();
        let expected = match mode {
            Mode::Container => {
                "cordon: note: the working directory is not granted; inside it is empty — add --read . or --write .\n"
            }
            _ => "cordon: note: the working directory is not granted; inside it cannot be read — add --read . or --write .\n",
        };
        assert!(out.stderr.starts_with(expected), "[{m}] {out}");
        assert_eq!(out.stderr.matches(note).count(), 1, "[{m}] said once\n{out}");
        match mode {
            Mode::Container => out.assert_success().assert_stdout_eq(""),
            _ => out.assert_code(2).assert_stderr_contains("Permission denied"),
        };
        // In --json, among the warnings.
        let mut cmd = run_in(mode);
        cmd.command().current_dir(dir.path());
        let out = cmd.args(["--json", "--", "true"]).run();
        let warnings = out.json()["warnings"].to_string();
        assert!(warnings.contains("the working directory is not granted"), "[{m}] {out}");
    });
}

#[test]
fn doctor_shows_what_a_run_gets_by_default_and_what_each_flag_adds() {
    let out = cordon().args(["doctor"]).run();
    out.assert_success();
    for words in [
        "seccomp-bpf       available\n",
        "a run without flags gets",
        "time, memory, CPU, process limits  none until a flag sets one",
        "each flag adds",
        "  --memory-mb N    quota memory_mb=N ",
        "  --timeout-ms N   quota timeout_ms=N                 supervisor (SIGTERM, then SIGKILL after grace_ms) (full)",
        "  --env PATTERN    env.allow PATTERN ",
    ] {
        out.assert_stdout_contains(words);
    }
    for wrong in ["Available", "V1", "V2", "memory_mb=256", "pids=64", "cpu_ms=1000"] {
        assert!(!out.stdout.contains(wrong), "{wrong:?} in\n{out}");
    }
    let json = cordon().args(["doctor", "--json"]).run();
    json.assert_success();
    let d = json.json();
    let defaults = d["defaults"].as_array().unwrap();
    assert!(defaults.iter().all(|e| !e["rule"].as_str().unwrap().starts_with("quota memory_mb")), "{json}");
    assert!(defaults.iter().any(|e| e["rule"] == "quota output_bytes=1048576"), "{json}");
    let memory = d["flags"].as_array().unwrap().iter().find(|f| f["flag"] == "--memory-mb N").unwrap();
    assert_eq!(memory["adds"][0]["rule"], "quota memory_mb=N", "{json}");
    // Each mode once, its mechanisms not repeated per mode.
    assert_eq!(d["modes"].as_array().unwrap().len(), 3, "{json}");
    assert!(d["modes"].as_array().unwrap().iter().all(|m| m.get("quotas").is_none()), "{json}");
    // Another mode on request.
    cordon()
        .args(["doctor", "--mode", "process"])
        .run()
        .assert_success()
        .assert_stdout_contains("a run without flags gets (process mode)");
}

#[test]
fn cordon_alone_is_a_usage_error() {
    let out = cordon().run();
    out.assert_code(2).assert_stderr_contains("Usage: cordon");
    // Control: asking for help is not an error.
    cordon().arg("--help").run().assert_success().assert_stdout_contains("Usage: cordon");
}

#[test]
fn exec_reads_its_input_from_a_pipe_without_input() {
    let plugin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins/hello-sh");
    let greet = |input: Option<&str>, flags: &[&str]| {
        let mut cmd = cordon();
        cmd.arg("exec").arg(&plugin).args(["greet", "--mode", "dev"]).args(flags);
        if let Some(i) = input {
            cmd.stdin(i);
        }
        let out = cmd.run();
        out.assert_success();
        out.json()["greeting"].as_str().unwrap().to_owned()
    };
    assert_eq!(greet(Some(r#"{"name": "Bob"}"#), &[]), "Hello, Bob!", "stdin without --input");
    assert_eq!(greet(None, &[]), "Hello, World!", "empty stdin is {{}}");
    let file = Dir::new("input");
    file.create("in.json", r#"{"name": "Ada"}"#);
    let from_file = file.path().join("in.json");
    assert_eq!(greet(Some(r#"{"name": "Bob"}"#), &["--input", from_file.to_str().unwrap()]), "Hello, Ada!");
    cordon()
        .arg("exec")
        .arg(&plugin)
        .args(["greet", "--mode", "dev"])
        .stdin("not json")
        .run()
        .assert_code(125)
        .assert_stderr_contains("invalid --input -: not one JSON value");
}
