//! `cordon check` (issue 5): the enforcement ledger of each example, the
//! refusal of what this host cannot enforce, and bad manifests through the
//! CLI: `check` and `exec` both name file, line and column and exit 125.

use cordon_testkit::{kernel_support, sandbox_modes, Dir};
use serde_json::Value;

use super::cordon;
use super::plugins::example;

#[track_caller]
fn entry<'a>(check: &'a Value, permission: &str) -> &'a Value {
    check["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["permission"] == permission)
        .unwrap_or_else(|| panic!("no ledger entry {permission:?} in {check:#}"))
}

#[test]
fn check_prints_the_ledger_of_every_example() {
    let support = kernel_support();
    for mode in sandbox_modes!(support) {
        for name in ["hello-sh", "py-notes", "node-fetch"] {
            let plugin = example(name);
            let out = cordon().arg("check").arg(&plugin).args(["--json", "--mode", mode.as_str()]).run();
            out.assert_success();
            let c = out.json();
            assert_eq!(c["runnable"], true, "{out}");
            assert_eq!(c["mode"], mode.as_str());
            assert!(c["problems"].as_array().unwrap().is_empty(), "{out}");
            let own = entry(&c, &format!("fs.read {}", plugin.display()));
            assert_eq!(own["source"], "implied");
            assert!(own["mechanism"].as_str().unwrap().contains("landlock"), "{out}");
            assert_eq!(entry(&c, "quota output_bytes=1048576")["source"], "baseline");
            // Every quota the manifest declares has its mechanism.
            let manifest = std::fs::read_to_string(plugin.join("cordon.toml")).unwrap();
            for line in manifest.lines().skip_while(|l| *l != "[quotas]").skip(1).filter(|l| l.contains('=')) {
                let (k, v) = line.split_once('=').unwrap();
                let e = entry(&c, &format!("quota {}={}", k.trim(), v.trim()));
                assert_eq!(e["source"], "manifest", "{e}");
                assert!(e["enforcement"] == "full" || e["enforcement"] == "partial", "{e}");
            }
        }
        let node =
            cordon().arg("check").arg(example("node-fetch")).args(["--json", "--mode", mode.as_str()]).run().json();
        let net = entry(&node, "net.allow 127.0.0.1");
        assert_eq!(net["source"], "manifest");
        assert!(net["mechanism"].as_str().unwrap().contains("seccomp user notification"), "{net}");
        let data = Dir::new("check-data");
        let notes = cordon()
            .arg("check")
            .arg(example("py-notes"))
            .args(["--json", "--mode", mode.as_str(), "--data-dir"])
            .arg(data.path())
            .run()
            .json();
        assert_eq!(entry(&notes, &format!("fs.write {}", data.path().display()))["source"], "preset");
        // A check changes nothing: a data folder that does not exist yet is not created.
        let later = data.join("not-yet");
        let out = cordon()
            .arg("check")
            .arg(example("py-notes"))
            .args(["--json", "--mode", mode.as_str(), "--data-dir"])
            .arg(&later)
            .run();
        assert_eq!(entry(&out.json(), &format!("fs.write {}", later.display()))["source"], "preset");
        assert!(!later.exists(), "check created {}", later.display());
    }
    // The table names the same things for people.
    let out = cordon().arg("check").arg(example("node-fetch")).run();
    out.assert_success()
        .assert_stdout_contains("net.allow 127.0.0.1")
        .assert_stdout_contains("ok: `cordon exec` runs this plugin");
}

#[test]
fn check_and_exec_refuse_what_this_host_cannot_enforce() {
    let dir = Dir::new("unenforceable");
    dir.create(
        "cordon.toml",
        "id = \"@t/strict\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"true\"]\n[permissions]\nnet.allow = [\"example.com\"]\n",
    );
    // Dev mode has no network isolation, so a host allow-list cannot hold there.
    let out = cordon().arg("check").arg(dir.path()).args(["--mode", "dev"]).run();
    out.assert_code(125).assert_stderr_contains("dev mode");
    let json = cordon().arg("check").arg(dir.path()).args(["--mode", "dev", "--json"]).run();
    json.assert_code(125);
    assert_eq!(json.json()["runnable"], false);
    let exec = cordon().arg("exec").arg(dir.path()).args(["main", "--mode", "dev"]).run();
    exec.assert_code(125).assert_stderr_contains("dev mode");
    // Control: where the proxy can enforce it, the same plugin is runnable.
    let support = cordon_testkit::kernel_support();
    for mode in cordon_testkit::sandbox_modes_for("check_and_exec_refuse_what_this_host_cannot_enforce", &support) {
        cordon().arg("check").arg(dir.path()).args(["--mode", mode.as_str()]).run().assert_success();
    }
}

#[test]
fn an_exec_allow_list_is_enforced() {
    let dir = Dir::new("exec-list");
    dir.create(
        "cordon.toml",
        "id = \"@t/exec\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"/bin/sh\", \"-c\", \"cat /etc/os-release >/dev/null && echo cat=ok; ls / >/dev/null 2>&1; echo ls=$?; echo '{}' >&3\"]\n[permissions]\nexec = [\"/usr/bin/cat\"]\n",
    );
    let support = cordon_testkit::kernel_support();
    for mode in cordon_testkit::sandbox_modes_for("an_exec_allow_list_is_enforced", &support) {
        let check = cordon().arg("check").arg(dir.path()).args(["--mode", mode.as_str(), "--json"]).run();
        check.assert_success();
        assert!(entry(&check.json(), "exec [/usr/bin/cat]")["mechanism"].as_str().unwrap().contains("landlock"));
        let out = cordon().arg("exec").arg(dir.path()).args(["main", "--mode", mode.as_str(), "--json"]).run();
        let r = out.json();
        let text: Vec<&str> =
            r["logs"]["lines"].as_array().unwrap().iter().filter_map(|l| l["text"].as_str()).collect();
        // The listed program runs; anything else gets EACCES (exit 126).
        assert!(text.contains(&"cat=ok") && text.contains(&"ls=126"), "[{}] {text:?}", mode.as_str());
    }
}

/// One kind of mistake: the manifest, where it is, what the message says.
struct Bad {
    kind: &'static str,
    manifest: &'static str,
    at: (usize, usize),
    says: &'static str,
}

const H: &str = "[handlers.main]\ncommand = [\"true\"]\n";

fn bad_manifests() -> Vec<Bad> {
    let b = |kind, manifest, at, says| Bad { kind, manifest, at, says };
    vec![
        b("syntax error", "id = \"@t/a\"\nversion = \"1.0.0\n", (2, 17), "invalid basic string"),
        b(
            "unknown top-level key",
            "id = \"@t/a\"\nversion = \"1.0.0\"\nauthor = \"me\"\n",
            (3, 1),
            "unknown field `author`",
        ),
        b(
            "misspelt quota",
            "id = \"@t/a\"\nversion = \"1.0.0\"\n[quotas]\nmemroy_mb = 64\n",
            (4, 1),
            "did you mean `memory_mb`?",
        ),
        b("missing id", "version = \"1.0.0\"\n", (1, 1), "missing field `id`"),
        b("id without scope", "id = \"plugin\"\nversion = \"1.0.0\"\n", (1, 6), "it must start with `@`"),
        b("uppercase id", "id = \"@T/a\"\nversion = \"1.0.0\"\n", (1, 6), "invalid plugin id `@T/a`"),
        b("version not semver", "id = \"@t/a\"\nversion = \"1.0\"\n", (2, 11), "invalid version `1.0`"),
        b(
            "unknown preset",
            "id = \"@t/a\"\nversion = \"1.0.0\"\nextends = [\"plaform\"]\n",
            (3, 12),
            "unknown preset `plaform`",
        ),
        b("no handlers", "id = \"@t/a\"\nversion = \"1.0.0\"\n", (1, 1), "the manifest declares no handlers"),
        b(
            "empty command",
            "id = \"@t/a\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = []\n",
            (4, 11),
            "has an empty command",
        ),
        b(
            "command as a string",
            "id = \"@t/a\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = \"true\"\n",
            (4, 11),
            "expected a sequence",
        ),
        b(
            "bad handler name",
            "id = \"@t/a\"\nversion = \"1.0.0\"\n[handlers.Main]\ncommand = [\"true\"]\n",
            (3, 11),
            "invalid handler name `Main`",
        ),
        b(
            "wildcard path",
            "id = \"@t/a\"\nversion = \"1.0.0\"\n[permissions]\nfs.read = [\"logs/*.txt\"]\n",
            (4, 12),
            "has a wildcard",
        ),
        b(
            "path leaving the folder",
            "id = \"@t/a\"\nversion = \"1.0.0\"\n[permissions]\nfs.write = [\"../x\"]\n",
            (4, 13),
            "leaves the plugin folder",
        ),
        b(
            "net pattern with a path",
            "id = \"@t/a\"\nversion = \"1.0.0\"\n[permissions]\nnet.allow = [\"api.x.com/v1\"]\n",
            (4, 14),
            "path-level rules cannot be enforced",
        ),
        b(
            "net pattern with a bad port",
            "id = \"@t/a\"\nversion = \"1.0.0\"\n[permissions]\nnet.allow = [\"x.com:99999\"]\n",
            (4, 14),
            "port must be 1 to 65535",
        ),
        b(
            "bad env pattern",
            "id = \"@t/a\"\nversion = \"1.0.0\"\n[permissions]\nenv.allow = [\"MY-VAR\"]\n",
            (4, 14),
            "environment pattern `MY-VAR` is invalid",
        ),
        b(
            "unknown capability",
            "id = \"@t/a\"\nversion = \"1.0.0\"\n[permissions]\ncapabilities = [\"fs:raed\"]\n",
            (4, 17),
            "unknown capability `fs:raed`",
        ),
        b(
            "quota out of range",
            "id = \"@t/a\"\nversion = \"1.0.0\"\n[quotas]\nmemory_mb = 1\n",
            (4, 13),
            "quotas.memory_mb = 1 is out of range",
        ),
        b("negative quota", "id = \"@t/a\"\nversion = \"1.0.0\"\n[quotas]\npids = -1\n", (4, 8), "expected u64"),
        b(
            "quota as a string",
            "id = \"@t/a\"\nversion = \"1.0.0\"\n[quotas]\ntimeout_ms = \"5s\"\n",
            (4, 14),
            "invalid type: string",
        ),
        b("duplicate key", "id = \"@t/a\"\nid = \"@t/b\"\nversion = \"1.0.0\"\n", (2, 1), "duplicate key `id`"),
        b(
            "permission outside [permissions]",
            "id = \"@t/a\"\nversion = \"1.0.0\"\nread = [\"x\"]\n",
            (3, 1),
            "permissions go under `[permissions]`",
        ),
    ]
}

#[test]
fn bad_manifests_get_file_line_and_column_from_check_and_exec() {
    let cases = bad_manifests();
    assert!(cases.len() >= 15);
    for case in cases {
        let dir = Dir::new("bad-manifest");
        // Cases that are not about handlers get a valid one appended after
        // the mistake, so the mistake is what is reported.
        let text = if case.manifest.contains("[handlers") || case.kind == "no handlers" || case.kind == "syntax error" {
            case.manifest.to_owned()
        } else {
            format!("{}{H}", case.manifest)
        };
        let file = dir.create("cordon.toml", &text);
        let location = format!("{}:{}:{}:", file.display(), case.at.0, case.at.1);
        for args in [vec!["check"], vec!["exec"]] {
            let mut cmd = cordon();
            cmd.args(&args).arg(dir.path());
            if args[0] == "exec" {
                cmd.args(["main", "--mode", "process"]);
            }
            let out = cmd.run();
            let ctx = format!("[{}: cordon {}]\n{text}\n{out}", case.kind, args[0]);
            assert_eq!(out.code(), Some(125), "{ctx}");
            assert!(out.stderr.contains(&location), "expected {location} {ctx}");
            assert!(out.stderr.contains(case.says), "expected {:?} {ctx}", case.says);
            assert!(out.stderr.contains(" | "), "expected the offending line with a caret {ctx}");
            if args[0] == "exec" {
                assert_eq!(out.audit[0]["outcome"], "SETUP_FAILED", "{ctx}");
            }
        }
    }
}
