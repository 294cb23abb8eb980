//! The published JSON Schemas (`docs/schemas/`, issue 10 item 13) agree
//! with cordon: the example manifests and what `cordon check` accepts
//! validate against `cordon.schema.json`, what it refuses does not; real
//! `--json` results of `cordon run` and `cordon exec` validate against
//! `execution-result.schema.json`. Validated by Python's `jsonschema`, an
//! implementation cordon does not share code with.

use std::path::{Path, PathBuf};

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Dir, TestCommand};

use super::plugins::{example, exec};
use super::{cordon, run_in, tool};

fn schema(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/schemas")).join(name)
}

/// Validates `instance` (JSON or TOML, as `format` says) against the
/// schema at `schema`: `Ok` or the validator's first complaint.
fn validate(schema: &Path, instance: &str, format: Format) -> Result<(), String> {
    const PROGRAM: &str = r#"
import json, sys, tomllib, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
text = sys.stdin.read()
doc = tomllib.loads(text) if sys.argv[2] == "toml" else json.loads(text)
errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
print("valid" if not errors else "invalid: %s at %s" % (errors[0].message, list(errors[0].path)))
"#;
    let kind = match format {
        Format::Toml => "toml",
        Format::Json => "json",
    };
    let out =
        TestCommand::new(tool("/usr/bin/python3")).args(["-c", PROGRAM]).arg(schema).arg(kind).stdin(instance).run();
    out.assert_success();
    match out.stdout.trim() {
        "valid" => Ok(()),
        other => Err(other.to_owned()),
    }
}

#[derive(Clone, Copy)]
enum Format {
    Toml,
    Json,
}

#[test]
fn example_manifests_validate_and_the_schema_refuses_what_cordon_refuses() {
    let manifest_schema = schema("cordon.schema.json");
    for name in ["hello-sh", "py-notes", "node-fetch"] {
        let text = std::fs::read_to_string(example(name).join("cordon.toml")).unwrap();
        assert_eq!(validate(&manifest_schema, &text, Format::Toml), Ok(()), "examples/plugins/{name}");
    }
    let base = "id = \"@t/schema\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"true\"]\n";
    let cases: &[(&str, bool)] = &[
        // Control: cordon and the schema both accept these.
        ("", true),
        ("[permissions]\nfs.read = [\"data/**\"]\nnet.allow = [\"*.example.com:443\"]\nenv.allow = [\"MY_*\"]\n", true),
        ("[quotas]\ntimeout_ms = 1000\nmemory_mb = 64\npids = 16\n", true),
        // Both refuse these.
        ("colour = \"blue\"\n", false),
        ("[permissions]\nfs.reed = [\"data\"]\n", false),
        ("[quotas]\nmemory_mb = 1\n", false),
        ("[quotas]\npids = 5000\n", false),
        ("[quotas]\ntimeout_ms = \"5s\"\n", false),
        ("[permissions]\nenv.allow = [\"MY-VAR\"]\n", false),
        ("[handlers.other]\ncommand = []\n", false),
    ];
    for (extra, valid) in cases {
        let text = format!("{base}{extra}");
        let dir = Dir::new("schema-manifest");
        dir.create("cordon.toml", &text);
        let checked = cordon().arg("check").arg(dir.path()).run();
        assert_eq!(checked.code() == Some(0), *valid, "cordon check on:\n{text}\n{checked}");
        let by_schema = validate(&manifest_schema, &text, Format::Toml);
        assert_eq!(by_schema.is_ok(), *valid, "the schema on:\n{text}\n{by_schema:?}");
    }
    for bad_id in ["id = \"acme/x\"\nversion = \"1.0.0\"\n", "id = \"@t/x\"\nversion = \"one\"\n"] {
        let text = format!("{bad_id}[handlers.main]\ncommand = [\"true\"]\n");
        assert!(validate(&manifest_schema, &text, Format::Toml).is_err(), "{text}");
    }
}

#[test]
fn real_results_validate_against_the_execution_result_schema() {
    let support = kernel_support();
    let result_schema = schema("execution-result.schema.json");
    let data = Dir::new("schema-results");
    let file = data.create("in.txt", "x\n");
    each_mode(sandbox_modes!(support), |mode| {
        let runs = [
            run_in(mode).args(["--json", "--", "echo", "hi"]).run(),
            run_in(mode).args(["--json", "--timeout-ms", "200", "--", "sleep", "5"]).run(),
            run_in(mode).args(["--json", "--", "cat"]).arg(&file).run(),
            run_in(mode).args(["--json", "--", "no-such-command-here"]).run(),
            exec(mode, &example("hello-sh"), "greet", "{\"name\": \"Ada\"}").arg("--json").run(),
        ];
        for out in &runs {
            assert_eq!(validate(&result_schema, &out.stdout, Format::Json), Ok(()), "[{}] {out}", mode.as_str());
        }
        assert_eq!(runs[2].json()["not_granted"][0]["path"], file.to_str().unwrap(), "{}", runs[2]);
        // Control: the schema does refuse a result with a wrong field.
        let mut bad = runs[0].json();
        bad["ok"] = serde_json::json!("yes");
        assert!(validate(&result_schema, &bad.to_string(), Format::Json).is_err());
        let mut bad = runs[0].json();
        bad["exit"] = serde_json::json!({"code": 0, "signal": 9});
        assert!(validate(&result_schema, &bad.to_string(), Format::Json).is_err());
    });
}
