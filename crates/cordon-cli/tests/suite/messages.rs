//! Messages that say what happened (issue 10, items 10–12): a path a failed
//! run reported missing or refused is named as not granted, with the grant
//! that would allow it and where that grant goes (a flag for `run`, the
//! manifest for `exec`); the limit that stopped a run names the flag and
//! the manifest key that raise it; `INVALID_RESULT` shows what the handler
//! wrote; repeated denial lines are counted. Each with a control: the same
//! run with the grant, the higher limit or the right channel says nothing
//! of the sort.

use cordon_testkit::{each_mode, kernel_support, require, sandbox_modes, Dir, Mode};

use super::plugins::exec;
use super::{not_granted_error, run_in, tool};

/// The note's wording for a path outside the grants, per mode: container
/// mode shows it missing, process mode refuses it.
fn reported(mode: Mode) -> &'static str {
    match mode {
        Mode::Container => "reported missing (No such file or directory)",
        _ => "refused (Permission denied)",
    }
}

#[test]
fn run_names_a_missing_path_that_exists_outside_the_grants() {
    let support = kernel_support();
    let data = Dir::new("msg-data");
    let file = data.create("table.csv", "a,b\n");
    let absent = data.join("absent.csv");
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode).args(["--json", "--", tool("/bin/cat")]).arg(&file).run();
        out.assert_code(1);
        assert!(out.json()["logs"]["lines"][0]["text"].as_str().unwrap().contains(not_granted_error(mode)), "{out}");
        out.assert_stderr_contains(&format!(
            "cordon: note: {} was {}: it exists on the host, but no grant lets the sandbox read it\n  hint: add --read {} (or a folder above it) if the command should read it\n",
            file.display(),
            reported(mode),
            file.display()
        ));
        assert_eq!(out.json()["not_granted"][0]["path"], file.to_str().unwrap(), "{out}");
        assert_eq!(out.json()["not_granted"][0]["access"], "read", "{out}");
        // A path missing on the host too is not "not granted".
        let out = run_in(mode).args(["--json", "--", tool("/bin/cat")]).arg(&absent).run();
        out.assert_code(1).assert_stderr_lacks("absent.csv was").assert_stderr_lacks("hint: add --read");
        assert_eq!(out.json()["not_granted"], serde_json::json!([]), "{out}");
        // Control: granted, it is read and nothing is said.
        let out = run_in(mode).arg("--read").arg(data.path()).args(["--json", "--", "cat"]).arg(&file).run();
        out.assert_success().assert_stderr_lacks("was reported").assert_stderr_lacks("was refused");
        assert_eq!(out.json()["logs"]["lines"][0]["text"], "a,b", "{out}");
    });
}

#[test]
fn run_names_a_relative_path_and_a_read_only_one() {
    let support = kernel_support();
    let data = Dir::new("msg-rel");
    data.create("notes.txt", "n\n");
    let out_dir = data.create_dir("out");
    data.create("out/kept.txt", "k\n");
    each_mode(sandbox_modes!(support), |mode| {
        // Relative to the working directory, which is not granted either.
        let out = run_in(mode).arg("--cwd").arg(data.path()).args(["--json", "--", "cat", "notes.txt"]).run();
        out.assert_code(1).assert_stderr_contains(&format!(
            "cordon: note: {} was {}",
            data.join("notes.txt").display(),
            reported(mode)
        ));
        // Granted read-only, a write is refused by the read-only view: the
        // note asks for --write.
        let out = run_in(mode)
            .arg("--read")
            .arg(data.path())
            .args(["--json", "--", "sh", "-c"])
            .arg(format!("echo x > {}/kept.txt", out_dir.display()))
            .run();
        out.assert_code(2).assert_stderr_contains(&format!(
            "cordon: note: {0}/kept.txt was reported read-only (Read-only file system): it exists on the host, but no grant lets the sandbox write it\n  hint: add --write {0}/kept.txt",
            out_dir.display()
        ));
        // Control: with --write it is written on the host.
        run_in(mode)
            .arg("--write")
            .arg(data.path())
            .args(["--", "sh", "-c"])
            .arg(format!("echo x > {}/kept.txt", out_dir.display()))
            .run()
            .assert_success();
        assert_eq!(data.read("out/kept.txt"), "x\n");
    });
}

#[test]
fn limits_name_the_flag_and_the_manifest_key_that_raise_them() {
    let support = kernel_support();
    let plugin = Dir::new("msg-limits");
    plugin.create(
        "cordon.toml",
        "id = \"@t/limits\"\nversion = \"1.0.0\"\n[handlers.slow]\ncommand = [\"sh\", \"-c\", \"sleep 5; echo '{}' >&3\"]\n[quotas]\ntimeout_ms = 300\n",
    );
    let quick = Dir::new("msg-limits-ok");
    quick.create(
        "cordon.toml",
        "id = \"@t/limits\"\nversion = \"1.0.0\"\n[handlers.slow]\ncommand = [\"sh\", \"-c\", \"sleep 0.1; echo '{}' >&3\"]\n[quotas]\ntimeout_ms = 5000\n",
    );
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode).args(["--timeout-ms", "300", "--", "sleep", "5"]).run();
        out.assert_code(124).assert_stderr_contains(
            "cordon: stopped: TIMEOUT: timed out after 300 ms (timeout_ms)\n  hint: raise it with --timeout-ms N\n",
        );
        let out =
            run_in(mode).args(["--output-bytes", "100", "--json", "--", "head", "-c", "100000", "/dev/zero"]).run();
        out.assert_stderr_contains("OUTPUT_LIMIT").assert_stderr_contains("  hint: raise it with --output-bytes N\n");
        // Control: under the limit, no hint.
        run_in(mode)
            .args(["--timeout-ms", "5000", "--", "true"])
            .run()
            .assert_success()
            .assert_stderr_lacks("hint: raise");

        let out = exec(mode, plugin.path(), "slow", "{}").run();
        out.assert_code(124).assert_stderr_contains(
            "TIMEOUT: timed out after 300 ms (timeout_ms)\n  hint: raise timeout_ms under [quotas] in cordon.toml (--timeout-ms here can only lower it)\n",
        );
        exec(mode, quick.path(), "slow", "{}").run().assert_success().assert_stderr_lacks("hint: raise");
    });
}

#[test]
fn limits_from_cgroups_name_their_flag() {
    let support = kernel_support();
    require!(support.cgroups.memory.is_some(), "a memory cgroup controller usable below cordon's cgroup");
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode)
            .args(["--memory-mb", "32", "--json", "--", tool("/usr/bin/python3"), "-c", "b = b'x' * (256 << 20)"])
            .run();
        assert_eq!(out.json()["error"]["code"], "MEMORY_LIMIT", "{out}");
        out.assert_stderr_contains("  hint: raise it with --memory-mb N\n");
        // Control: with room, the same program ends well.
        run_in(mode)
            .args(["--memory-mb", "512", "--", "python3", "-c", "b = b'x' * (256 << 20)"])
            .run()
            .assert_success()
            .assert_stderr_lacks("hint: raise");
    });
}

#[test]
fn exec_names_the_manifest_entry_a_missing_path_needs() {
    let support = kernel_support();
    let data = Dir::new("msg-exec-data");
    let file = data.create("in.csv", "1\n");
    let manifest = |grant: &str| {
        let plugin = Dir::new("msg-exec");
        plugin.create(
            "cordon.toml",
            format!(
                "id = \"@t/reader\"\nversion = \"1.0.0\"\n[handlers.read]\ncommand = [\"sh\", \"-c\", \"cat {} && echo '{{}}' >&3\"]\n{grant}",
                file.display()
            ),
        );
        plugin
    };
    let ungranted = manifest("");
    let granted = manifest(&format!("[permissions]\nfs.read = [\"{}\"]\n", data.path().display()));
    each_mode(sandbox_modes!(support), |mode| {
        let out = exec(mode, ungranted.path(), "read", "{}").run();
        out.assert_code(1).assert_stderr_contains(&format!(
            "cordon: note: {0} was {1}: it exists on the host, but no grant lets the sandbox read it\n  hint: add \"{0}\" to fs.read in cordon.toml if the plugin should read it\n",
            file.display(),
            reported(mode)
        ));
        // The line it explains is not repeated as a "denied?" guess.
        out.assert_stderr_lacks("denied?");
        exec(mode, granted.path(), "read", "{}").run().assert_success().assert_stderr_lacks("cordon: note:");
    });
}

#[test]
fn invalid_result_shows_what_the_handler_wrote() {
    let support = kernel_support();
    let plugin = Dir::new("msg-result");
    plugin.create(
        "cordon.toml",
        concat!(
            "id = \"@t/result\"\nversion = \"1.0.0\"\n",
            "[handlers.garbled]\ncommand = [\"sh\", \"-c\", \"printf 'hello\\\\033[31m\\\\nworld' >&3\"]\n",
            "[handlers.printed]\ncommand = [\"sh\", \"-c\", \"echo '{\\\"answer\\\": 42}'\"]\n",
            "[handlers.right]\ncommand = [\"sh\", \"-c\", \"echo '{\\\"answer\\\": 42}' >&3\"]\n",
        ),
    );
    each_mode(sandbox_modes!(support), |mode| {
        let out = exec(mode, plugin.path(), "garbled", "{}").run();
        out.assert_code(1).assert_stderr_contains(
            "cordon: failed: INVALID_RESULT: the handler's result is not one JSON value (expected value at line 1 column 1); it begins \"hello\\u{1b}[31m\\nworld\"\n",
        );
        let out = exec(mode, plugin.path(), "printed", "{}").run();
        out.assert_code(1).assert_stderr_contains(
            "INVALID_RESULT: the handler wrote no result to fd 3 (CORDON_RESULT_FD), but its stdout held JSON: write the result to the descriptor named in CORDON_RESULT_FD",
        );
        // Control: the same JSON on fd 3 is the result.
        let out = exec(mode, plugin.path(), "right", "{}").run();
        out.assert_success().assert_stdout_eq("{\"answer\":42}\n");
    });
}

#[test]
fn exec_counts_repeated_denial_lines() {
    let support = kernel_support();
    let plugin = Dir::new("msg-repeat");
    plugin.create(
        "cordon.toml",
        concat!(
            "id = \"@t/repeat\"\nversion = \"1.0.0\"\n",
            "[handlers.thrice]\ncommand = [\"sh\", \"-c\", \"for i in 1 2 3; do echo 'mkfifo: Operation not permitted' >&2; done; exit 1\"]\n",
            "[handlers.once]\ncommand = [\"sh\", \"-c\", \"echo 'mkfifo: Operation not permitted' >&2; exit 1\"]\n",
        ),
    );
    each_mode(sandbox_modes!(support), |mode| {
        let out = exec(mode, plugin.path(), "thrice", "{}").run();
        out.assert_code(1).assert_stderr_contains(
            "cordon: denied?: the handler reported (3 times): mkfifo: Operation not permitted\n",
        );
        assert_eq!(out.stderr.matches("cordon: denied?").count(), 1, "{out}");
        // Control: once is said once, without a count.
        let out = exec(mode, plugin.path(), "once", "{}").run();
        out.assert_code(1)
            .assert_stderr_contains("cordon: denied?: the handler reported: mkfifo: Operation not permitted\n");
    });
}

#[test]
fn check_shows_what_the_host_flags_removed_from_a_manifest() {
    let plugin = Dir::new("msg-narrow");
    plugin.create(
        "cordon.toml",
        "id = \"@t/narrow\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"true\"]\n[permissions]\nnet.allow = [\"localhost:8808\", \"api.example.com\"]\nenv.allow = [\"FOO_*\"]\n[quotas]\ntimeout_ms = 5000\n",
    );
    let out = super::cordon()
        .arg("check")
        .arg(plugin.path())
        .args(["--net", "localhost:8808", "--timeout-ms", "100", "--env", "FOO_BAR"])
        .run();
    out.assert_success().assert_stdout_contains(
        "narrowed or removed by the host's flags (the manifest declares them; a run here does not get them):\n  net.allow api.example.com\n  quota timeout_ms=5000\n  env.allow FOO_*\n",
    );
    let json = super::cordon()
        .arg("check")
        .arg(plugin.path())
        .args(["--json", "--net", "localhost:8808", "--timeout-ms", "100", "--env", "FOO_BAR"])
        .run();
    assert_eq!(
        json.json()["narrowed_by_host"],
        serde_json::json!(["net.allow api.example.com", "quota timeout_ms=5000", "env.allow FOO_*"]),
        "{json}"
    );
    // Control: without host flags nothing is narrowed.
    let out = super::cordon().arg("check").arg(plugin.path()).run();
    out.assert_success().assert_stdout_contains("net.allow api.example.com ");
    assert!(!out.stdout.contains("narrowed or removed"), "{out}");
    let json = super::cordon().arg("check").arg(plugin.path()).arg("--json").run();
    assert_eq!(json.json()["narrowed_by_host"], serde_json::json!([]), "{json}");
}

#[test]
fn the_readme_example_says_where_its_artifact_went() {
    let support = kernel_support();
    let store = Dir::new("msg-store");
    let hello = super::plugins::example("hello-sh");
    each_mode(sandbox_modes!(support), |mode| {
        let out = super::cordon()
            .arg("exec")
            .arg(&hello)
            .args(["greet", "--mode", mode.as_str(), "--input"])
            .arg(hello.join("input.json"))
            .arg("--artifact-store")
            .arg(store.path())
            .run();
        out.assert_success().assert_stdout_contains("\"greeting\":\"Hello, Ada!\"");
        let id = out.audit[0]["request_id"].as_str().unwrap().to_owned();
        let card = store.join(format!("@examples/hello-sh/1.0.0/greet/{id}/card.txt"));
        out.assert_stderr_contains(&format!("cordon: artifact: card.txt (12 bytes) stored at {}\n", card.display()));
        // The host has it where the message says.
        assert_eq!(std::fs::read_to_string(&card).unwrap(), "Hello, Ada!\n", "{out}");
        // Control: a handler that leaves no file gets no such line.
        let out =
            exec(mode, &hello, "show", "{\"path\": \"input.json\"}").arg("--artifact-store").arg(store.path()).run();
        out.assert_success().assert_stderr_lacks("cordon: artifact");
    });
}
