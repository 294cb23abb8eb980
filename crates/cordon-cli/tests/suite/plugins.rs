//! `cordon exec` (issue 5): the example plugins of `examples/plugins/` run
//! through the CLI in both sandbox modes, each doing its job (checked in
//! `data` and the artifacts) and each refused when it reaches for what it
//! did not declare; plus the handler contract (input, result channel,
//! artifacts, traceparent, capabilities) and secret redaction.

use std::path::PathBuf;

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Dir, Mode, TestCommand};
use serde_json::Value;

use super::{cordon, not_granted_error, tool};

/// `examples/plugins/<name>` in this repository.
pub fn example(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/plugins")).join(name).canonicalize().unwrap()
}

/// `cordon exec PLUGIN HANDLER --mode MODE`, with `input` on stdin.
pub fn exec(mode: Mode, plugin: &std::path::Path, handler: &str, input: &str) -> TestCommand {
    let mut cmd = cordon();
    cmd.arg("exec").arg(plugin).args([handler, "--mode", mode.as_str(), "--input", "-"]).stdin(input);
    cmd
}

pub const BODY: &str = "hello from the host's loopback\n";

/// An HTTP server on 127.0.0.1 answering every request with [`BODY`].
pub fn serve() -> u16 {
    cordon_testkit::HttpServer::start(BODY).port
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = TestCommand::new("sha256sum").stdin(bytes.to_vec()).run();
    out.assert_success();
    out.stdout.split_whitespace().next().unwrap().to_owned()
}

/// The artifact at `path` in a `--json` result: checks it is in the store
/// with the size and SHA-256 the result claims, and returns its content.
#[track_caller]
fn artifact(r: &Value, path: &str) -> String {
    let a = r["artifacts"].as_array().unwrap_or_else(|| panic!("no artifacts in {r}"));
    let a = a.iter().find(|a| a["path"] == path).unwrap_or_else(|| panic!("no artifact {path} in {r}"));
    let stored = std::fs::read(a["stored_at"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("artifact {path} not in the store ({e}): {r}"));
    assert_eq!(a["size"], stored.len(), "{r}");
    assert_eq!(a["sha256"], sha256_hex(&stored), "{r}");
    String::from_utf8(stored).unwrap()
}

#[test]
fn hello_sh_greets_and_leaves_a_card() {
    let support = kernel_support();
    let plugin = example("hello-sh");
    each_mode(sandbox_modes!(support), |mode| {
        let mut cmd = exec(mode, &plugin, "greet", r#"{"name": "Ada"}"#);
        cmd.arg("--json");
        let store = cmd.data_home().join("cordon/artifacts");
        let out = cmd.run();
        out.assert_success();
        let r = out.json();
        assert_eq!(r["ok"], true, "{out}");
        assert_eq!(r["data"]["greeting"], "Hello, Ada!", "{out}");
        assert_eq!(r["plugin"]["id"], "@examples/hello-sh", "{out}");
        assert_eq!(r["plugin"]["handler"], "greet", "{out}");
        assert!(r["logs"]["lines"].as_array().unwrap().iter().any(|l| l["text"] == "greeting Ada"), "{out}");
        assert_eq!(artifact(&r, "card.txt"), "Hello, Ada!\n");
        let stored = r["artifacts"][0]["stored_at"].as_str().unwrap();
        let expected =
            store.join("@examples/hello-sh/1.0.0/greet").join(r["request_id"].as_str().unwrap()).join("card.txt");
        assert_eq!(
            PathBuf::from(stored),
            expected,
            "default store layout {{plugin}}/{{version}}/{{handler}}/{{request_id}}"
        );
        // Without --json: the result alone on stdout, the logs on stderr.
        let plain = exec(mode, &plugin, "greet", r#"{"name": "Bo"}"#).run();
        plain.assert_success();
        let data: Value =
            serde_json::from_str(&plain.stdout).unwrap_or_else(|e| panic!("stdout is not the data ({e}): {plain}"));
        assert_eq!(data["greeting"], "Hello, Bo!");
        plain.assert_stderr_contains("greeting Bo");
    });
}

#[test]
fn hello_sh_reads_its_own_folder_and_is_refused_the_rest_of_the_host() {
    let support = kernel_support();
    let plugin = example("hello-sh");
    let outside = Dir::new("outside-plugin");
    let secret = outside.create("secret.txt", "not for plugins\n");
    each_mode(sandbox_modes!(support), |mode| {
        // Control: the same handler reads a file the policy grants.
        let own = exec(mode, &plugin, "show", r#"{"path": "messages/hello.txt"}"#).arg("--json").run();
        own.assert_success();
        assert_eq!(own.json()["data"]["first_line"], "Hello from the plugin's own folder.", "{own}");
        // Control: the file is readable outside the sandbox.
        TestCommand::new("cat").arg(&secret).run().assert_stdout_eq("not for plugins\n");

        let input = format!(r#"{{"path": "{}"}}"#, secret.display());
        let out = exec(mode, &plugin, "show", &input).run();
        out.assert_code(1);
        let data: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(data["ok"], false, "{out}");
        let error = data["error"].as_str().unwrap();
        assert!(
            error.contains(not_granted_error(mode)),
            "[{}] expected {:?}: {out}",
            mode.as_str(),
            not_granted_error(mode)
        );
        out.assert_stderr_contains("cordon: failed: NONZERO_EXIT");
        // The summary names the path and the manifest entry that would allow it.
        out.assert_stderr_contains(&format!(
            "cordon: note: {} was {}: it exists on the host, but no grant lets the sandbox read it\n  hint: add \"{}\" to fs.read in cordon.toml",
            secret.display(),
            if mode == Mode::Process { "refused (Permission denied)" } else { "reported missing (No such file or directory)" },
            secret.display()
        ));
    });
}

#[test]
fn py_notes_keeps_state_in_its_data_folder_and_lists_it_as_an_artifact() {
    let support = kernel_support();
    let plugin = example("py-notes");
    tool("/usr/bin/python3");
    each_mode(sandbox_modes!(support), |mode| {
        let data = Dir::new("py-notes-data");
        let with_data = |handler: &str, input: &str| {
            let mut c = exec(mode, &plugin, handler, input);
            c.arg("--data-dir").arg(data.path());
            c
        };
        for (i, text) in ["buy milk", "call Ada"].iter().enumerate() {
            let out = with_data("add", &format!(r#"{{"text": "{text}"}}"#)).run();
            out.assert_success().assert_stdout_eq(&format!("{{\"count\":{}}}\n", i + 1));
        }
        let stored: Value = serde_json::from_str(&data.read("notes.json")).unwrap();
        assert_eq!(stored, serde_json::json!(["buy milk", "call Ada"]));
        let mut list = with_data("list", "{}");
        let out = list.arg("--json").run();
        out.assert_success();
        let r = out.json();
        assert_eq!(r["data"]["notes"], serde_json::json!(["buy milk", "call Ada"]), "{out}");
        assert_eq!(artifact(&r, "notes.md"), "- buy milk\n- call Ada\n");
        // It may work in its data folder too: `notes.py` is passed as an absolute path.
        let out = with_data("list", "{}").arg("--workdir").arg(data.path()).run();
        out.assert_success().assert_stdout_eq("{\"notes\":[\"buy milk\",\"call Ada\"]}\n");
    });
}

#[test]
fn py_notes_share_is_refused_because_it_declares_no_network() {
    let support = kernel_support();
    let plugin = example("py-notes");
    let port = serve();
    let url = format!("http://127.0.0.1:{port}/");
    let input = format!(r#"{{"url": "{url}"}}"#);
    // Control: without isolation (dev mode) the same handler reaches the server.
    let data = Dir::new("py-share-dev");
    let dev = exec(Mode::Dev, &plugin, "share", &input).arg("--data-dir").arg(data.path()).run();
    dev.assert_success();
    assert_eq!(serde_json::from_str::<Value>(&dev.stdout).unwrap()["status"], 200, "{dev}");
    each_mode(sandbox_modes!(support), |mode| {
        let data = Dir::new("py-share");
        let out = exec(mode, &plugin, "share", &input).arg("--data-dir").arg(data.path()).run();
        out.assert_code(1);
        let d: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(d["shared"], 0, "{out}");
        assert!(d["error"].as_str().unwrap().contains("Connection refused"), "{out}");
    });
}

#[test]
fn node_fetch_reaches_the_allowed_host_with_the_global_fetch() {
    let support = kernel_support();
    let plugin = example("node-fetch");
    tool("/usr/bin/node");
    let port = serve();
    let url = format!("http://127.0.0.1:{port}/hello");
    each_mode(sandbox_modes!(support), |mode| {
        let mut cmd = exec(mode, &plugin, "fetch", &format!(r#"{{"url": "{url}"}}"#));
        let out = cmd.arg("--json").run();
        out.assert_success();
        let r = out.json();
        assert_eq!(r["data"]["status"], 200, "{out}");
        assert_eq!(r["data"]["bytes"], BODY.len(), "{out}");
        assert_eq!(r["data"]["sha256"], sha256_hex(BODY.as_bytes()), "{out}");
        assert_eq!(artifact(&r, "response.bin"), BODY);
        let conns = r["network"].as_array().unwrap();
        assert!(conns.iter().any(|c| c["allowed"] == true && c["port"] == port && c["rule"] == "127.0.0.1"), "{out}");
    });
}

#[test]
fn node_fetch_to_an_undeclared_host_is_refused_and_the_host_can_only_narrow() {
    let support = kernel_support();
    let plugin = example("node-fetch");
    let port = serve();
    each_mode(sandbox_modes!(support), |mode| {
        // 192.0.2.1 (TEST-NET) is not 127.0.0.1: the manifest did not
        // declare it. Refused before any packet leaves, and explained.
        let out = exec(mode, &plugin, "fetch", &format!(r#"{{"url": "http://192.0.2.1:{port}/"}}"#)).run();
        out.assert_code(1);
        let d: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert!(d["error"].as_str().unwrap().contains("ECONNREFUSED"), "{out}");
        out.assert_stderr_contains(&format!("cordon: network: refused 192.0.2.1:{port} (node, pid "));
        out.assert_stderr_contains(&format!("— add \"192.0.2.1:{port}\" to net.allow in cordon.toml\n"));

        // The host narrows 127.0.0.1 (any port) to another port: refused.
        let allowed = format!(r#"{{"url": "http://127.0.0.1:{port}/"}}"#);
        let narrowed = exec(mode, &plugin, "fetch", &allowed).args(["--net", "127.0.0.1:1"]).run();
        narrowed.assert_code(1);
        // The address is not the host's any more: the sandbox's own loopback.
        narrowed.assert_stderr_contains(&format!(
            "cordon: network: 127.0.0.1:{port} is the sandbox's own loopback and nothing listens there (node, pid "
        ));
        narrowed.assert_stderr_contains(&format!("— add \"127.0.0.1:{port}\" to net.allow in cordon.toml\n"));
        // Control: narrowed to that very port, it works.
        exec(mode, &plugin, "fetch", &allowed).args(["--net", &format!("127.0.0.1:{port}")]).run().assert_success();
        // A host flag cannot widen: allowing 192.0.2.1 on the command line does not help.
        let widened = exec(mode, &plugin, "fetch", &format!(r#"{{"url": "http://192.0.2.1:{port}/"}}"#))
            .args(["--net", "192.0.2.1"])
            .run();
        widened.assert_code(1);
        widened.assert_stderr_contains(&format!("cordon: network: refused 192.0.2.1:{port}"));
    });
}

/// A plugin folder with `cordon.toml` and executable files.
fn fixture(label: &str, manifest: &str, files: &[(&str, &str)]) -> Dir {
    let dir = Dir::new(label);
    dir.create("cordon.toml", manifest);
    for (name, body) in files {
        dir.create_executable(name, body);
    }
    dir
}

#[test]
fn secrets_never_appear_in_logs_results_or_audit_records() {
    let support = kernel_support();
    const SECRET: &str = "s3cr3t-v4lue-9f2c";
    let plugin = fixture(
        "secret-plugin",
        "id = \"@t/secret\"\nversion = \"1.0.0\"\n[handlers.leak]\ncommand = [\"./leak.sh\"]\n[permissions]\nenv.allow = [\"DEMO_TOKEN\"]\n",
        &[(
            "leak.sh",
            "#!/bin/sh\necho \"token=$DEMO_TOKEN\"\necho \"err $DEMO_TOKEN\" >&2\nprintf '{\"token\": \"%s\", \"list\": [\"%s\"]}' \"$DEMO_TOKEN\" \"$DEMO_TOKEN\" >&3\nexit 3\n",
        )],
    );
    each_mode(sandbox_modes!(support), |mode| {
        // Control: the handler did get the value (it is redacted where it shows).
        let json = exec(mode, plugin.path(), "leak", "{}").arg("--json").env("DEMO_TOKEN", SECRET).run();
        json.assert_code(3);
        let r = json.json();
        assert_eq!(r["data"]["token"], "***", "{json}");
        assert!(r["logs"]["lines"].as_array().unwrap().iter().any(|l| l["text"] == "token=***"), "{json}");
        let plain = exec(mode, plugin.path(), "leak", "{}").env("DEMO_TOKEN", SECRET).run();
        plain.assert_code(3);
        // A secret in a run's argv never reaches its record either.
        let run = cordon()
            .args([
                "run",
                "--mode",
                mode.as_str(),
                "--env",
                "DEMO_TOKEN",
                "--json",
                "--",
                "sh",
                "-c",
                "echo $DEMO_TOKEN; exit 2",
                SECRET,
            ])
            .env("DEMO_TOKEN", SECRET)
            .run();
        run.assert_code(2);
        let bad_flag =
            cordon().args(["run", "--read", "/no/such/path", "--", "echo", SECRET]).env("DEMO_TOKEN", SECRET).run();
        bad_flag.assert_code(125);
        for out in [&json, &plain, &run, &bad_flag] {
            assert!(
                !out.stdout.contains(SECRET) && !out.stderr.contains(SECRET),
                "[{}] secret shown\n{out}",
                mode.as_str()
            );
            assert_eq!(out.audit.len(), 1, "{out}");
            let record = out.audit[0].to_string();
            assert!(!record.contains(SECRET), "[{}] secret in the audit record {record}", mode.as_str());
        }
        assert_eq!(run.audit[0]["command"][3], "***", "{run}");
    });
}

/// A handler's input arrives whole whether it fits in the pipe (written at
/// once, no writer thread) or not (1 MiB: the rest goes in while the handler
/// reads), and a handler that never reads a large input still ends and is
/// answered (its closed pipe ends the writing). Control: the sizes the
/// handler counts are those sent.
#[test]
fn handler_input_of_any_size_arrives_whole_and_unread_input_does_not_hang() {
    let support = kernel_support();
    let plugin = fixture(
        "input-sizes",
        "id = \"@t/input-sizes\"\nversion = \"1.0.0\"\n[handlers.count]\ncommand = [\"./count.sh\"]\n[handlers.ignore]\ncommand = [\"./ignore.sh\"]\n",
        &[
            ("count.sh", "#!/bin/sh\nprintf '{\"bytes\": %s}' \"$(wc -c)\" >&3\n"),
            ("ignore.sh", "#!/bin/sh\nexec 0<&-\nprintf '{\"read\": false}' >&3\n"),
        ],
    );
    let input = |len: usize| format!("{{\"s\": \"{}\"}}", "x".repeat(len));
    each_mode(sandbox_modes!(support), |mode| {
        for len in [10, 60_000, 1 << 20] {
            let sent = input(len);
            let out = exec(mode, plugin.path(), "count", &sent).arg("--json").run();
            out.assert_success();
            assert_eq!(out.json()["data"]["bytes"], sent.len(), "[{}] {len}: {out}", mode.as_str());
        }
        let out = exec(mode, plugin.path(), "ignore", &input(1 << 20)).arg("--json").run();
        out.assert_success();
        assert_eq!(out.json()["data"]["read"], false, "{out}");
    });
}

#[test]
fn handler_contract_input_result_traceparent_and_environment() {
    let support = kernel_support();
    let plugin = fixture(
        "contract",
        "id = \"@t/contract\"\nversion = \"2.1.0\"\n[handlers.echo]\ncommand = [\"./echo.sh\", \"data.txt\"]\n[handlers.silent]\ncommand = [\"true\"]\n[handlers.chatty]\ncommand = [\"sh\", \"-c\", \"head -c 3000 /dev/zero | tr '\\\\0' x >&3\"]\n",
        &[
            (
                "echo.sh",
                "#!/bin/sh\nprintf '{\"input\": %s, \"arg\": \"%s\", \"trace\": \"%s\", \"fd\": \"%s\", \"cwd\": \"%s\"}' \"$(cat)\" \"$1\" \"$TRACEPARENT\" \"$CORDON_RESULT_FD\" \"$(pwd)\" >&\"$CORDON_RESULT_FD\"\n",
            ),
            ("data.txt", "x"),
        ],
    );
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    each_mode(sandbox_modes!(support), |mode| {
        let out = exec(mode, plugin.path(), "echo", r#"{"n": [1, 2]}"#)
            .args(["--json", "--traceparent", trace, "--tenant", "acme"])
            .run();
        out.assert_success();
        let r = out.json();
        let d = &r["data"];
        assert_eq!(d["input"], serde_json::json!({"n": [1, 2]}), "{out}");
        assert_eq!(d["fd"], "3", "{out}");
        assert_eq!(d["arg"], plugin.join("data.txt").to_str().unwrap(), "plugin files in argv are absolute: {out}");
        assert_eq!(d["cwd"], plugin.path().to_str().unwrap(), "the handler runs in its folder by default: {out}");
        let child = d["trace"].as_str().unwrap();
        assert!(
            child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && !child.contains("00f067aa0ba902b7"),
            "a child of the caller's trace: {child}"
        );
        assert_eq!(r["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        let record = &out.audit[0];
        assert_eq!(record["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "{record}");
        assert_eq!(record["tenant"], "acme");
        assert_eq!(record["plugin"], "@t/contract");
        assert_eq!(record["plugin_version"], "2.1.0");
        assert_eq!(record["handler"], "echo");
        assert_eq!(record["outcome"], "ok");
        assert_eq!(record["policy_digest"], r["policy_digest"]);

        // Exit 0 without a result: INVALID_RESULT, exit status 1.
        let silent = exec(mode, plugin.path(), "silent", "{}").arg("--json").run();
        silent.assert_code(1);
        assert_eq!(silent.json()["error"]["code"], "INVALID_RESULT", "{silent}");
        assert_eq!(silent.audit[0]["outcome"], "INVALID_RESULT");
        // Not JSON, and too large for the default cap? 3000 bytes of `x` is not JSON.
        let chatty = exec(mode, plugin.path(), "chatty", "{}").run();
        chatty.assert_code(1).assert_stderr_contains("INVALID_RESULT");
    });
}

#[test]
fn exec_refuses_before_starting_with_exit_125() {
    let plugin = fixture(
        "refuse",
        "id = \"@t/refuse\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"true\"]\n[permissions]\ncapabilities = [\"llm\"]\n",
        &[],
    );
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (vec!["nope".into()], "{}", "has no handler `nope`; it has: main"),
        (vec!["main".into()], "{}", "capability `llm` is required but not granted"),
        (vec!["main".into(), "--capability".into(), "LLM!".into()], "{}", "invalid --capability LLM!"),
        (vec!["main".into(), "--capability".into(), "llm".into()], "not json", "invalid --input -: not one JSON value"),
        (
            vec!["main".into(), "--capability".into(), "llm".into(), "--workdir".into(), "/etc".into()],
            "{}",
            "invalid working directory /etc",
        ),
        (
            vec!["main".into(), "--capability".into(), "llm".into(), "--traceparent".into(), "xyz".into()],
            "{}",
            "invalid --traceparent xyz",
        ),
        (
            vec!["main".into(), "--capability".into(), "llm".into(), "--memory-mb".into(), "1".into()],
            "{}",
            "invalid quota flag",
        ),
    ];
    for (args, input, message) in cases {
        let out = cordon()
            .arg("exec")
            .arg(plugin.path())
            .args(&args)
            .args(["--mode", "process"])
            .arg("--input")
            .arg("-")
            .stdin(input)
            .run();
        out.assert_code(125).assert_stderr_contains(message);
        assert_eq!(out.audit[0]["outcome"], "SETUP_FAILED", "{out}");
    }
    let out = cordon().arg("exec").arg(plugin.path()).args(["main", "--mode", "jail"]).run();
    out.assert_code(125).assert_stderr_contains("invalid --mode jail");
    assert_eq!(out.audit[0]["outcome"], "SETUP_FAILED", "{out}");
    // Control: granted, it runs (the handler writes no result, so exit 1 is INVALID_RESULT, not a refusal).
    let out = cordon().arg("exec").arg(plugin.path()).args(["main", "--mode", "process", "--capability", "llm"]).run();
    out.assert_code(1).assert_stderr_contains("INVALID_RESULT");
}

#[test]
fn capabilities_reach_the_handler() {
    let plugin = fixture(
        "caps",
        "id = \"@t/caps\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"sh\", \"-c\", \"echo \\\"\\\\\\\"$CORDON_CAPABILITIES\\\\\\\"\\\" >&3\"]\n[permissions]\ncapabilities = [\"cache:results:v2\", \"llm\"]\n",
        &[],
    );
    // `cache:results` covers `cache:results:v2`; the handler sees what it asked for.
    let out = cordon()
        .arg("exec")
        .arg(plugin.path())
        .args([
            "main",
            "--mode",
            "process",
            "--capability",
            "cache:results",
            "--capability",
            "llm",
            "--capability",
            "queue:jobs",
        ])
        .run();
    out.assert_success().assert_stdout_eq("\"cache:results:v2,llm\"\n");
}
