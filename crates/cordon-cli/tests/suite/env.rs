//! The command's environment: built from scratch, plus `--env` and
//! `--set-env`; secret-looking values redacted in captured logs.

use std::collections::BTreeSet;

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, TestCommand};

use super::run_in;

/// Names a default sandbox environment may hold: the basics to run programs.
const BASIC_NAMES: &[&str] = &["PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "USER", "LOGNAME"];

fn names(env_output: &str) -> BTreeSet<String> {
    env_output.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k.to_owned()).collect()
}

#[test]
fn default_environment_holds_only_basic_names() {
    let support = kernel_support();
    // Control: the variable is in the environment cordon itself receives.
    let host = TestCommand::new("env").env("CORDON_TEST_HOST_ONLY", "leak").run();
    host.assert_success().assert_stdout_contains("CORDON_TEST_HOST_ONLY=leak");
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode).env("CORDON_TEST_HOST_ONLY", "leak").args(["--", "env"]).run();
        out.assert_success();
        let names = names(&out.stdout);
        let unexpected: Vec<_> = names.iter().filter(|n| !BASIC_NAMES.contains(&n.as_str())).collect();
        assert!(unexpected.is_empty(), "[{}] unexpected variables {unexpected:?}\n{out}", mode.as_str());
        for required in ["PATH", "HOME"] {
            assert!(names.contains(required), "[{}] {required} missing\n{out}", mode.as_str());
        }
    });
}

#[test]
fn host_variables_pass_only_when_named_or_matched_by_prefix() {
    let support = kernel_support();
    let with_vars = |cmd: &mut TestCommand| {
        cmd.env("CORDON_TEST_PASS_ONE", "1").env("CORDON_TEST_PASS_TWO", "2").env("CORDON_TEST_OTHER", "3");
    };
    each_mode(sandbox_modes!(support), |mode| {
        let passed = |flags: &[&str]| {
            let mut cmd = run_in(mode);
            with_vars(&mut cmd);
            let out = cmd.args(flags).args(["--", "env"]).run();
            out.assert_success();
            names(&out.stdout).into_iter().filter(|n| n.starts_with("CORDON_TEST_")).collect::<Vec<_>>()
        };
        assert_eq!(passed(&[]), Vec::<String>::new(), "[{}] no --env", mode.as_str());
        assert_eq!(passed(&["--env", "CORDON_TEST_OTHER"]), ["CORDON_TEST_OTHER"], "[{}] --env NAME", mode.as_str());
        assert_eq!(
            passed(&["--env", "CORDON_TEST_PASS_*"]),
            ["CORDON_TEST_PASS_ONE", "CORDON_TEST_PASS_TWO"],
            "[{}] --env PREFIX*",
            mode.as_str()
        );
    });
}

#[test]
fn set_env_sets_a_variable() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        run_in(mode)
            .args(["--set-env", "GREETING=hello world", "--set-env", "EMPTY=", "--"])
            .args(["sh", "-c", r#"printf '%s|%s|%s\n' "$GREETING" "${EMPTY-unset}" "${NOT_SET-unset}""#])
            .run()
            .assert_stdout_eq("hello world||unset\n");
    });
}

#[test]
fn secret_looking_variable_is_redacted_in_json_logs() {
    let support = kernel_support();
    let probe =
        r#"test "$MY_API_TOKEN" = s3cr3t-value && echo "token=$MY_API_TOKEN" && echo "again $MY_API_TOKEN" >&2"#;
    each_mode(sandbox_modes!(support), |mode| {
        // Control: a plain name with the same value is logged as is, so the
        // command really prints the value and only the name decides.
        let plain = run_in(mode)
            .env("MY_PLAIN_VALUE", "s3cr3t-value")
            .args(["--json", "--env", "MY_PLAIN_VALUE", "--", "sh", "-c", r#"echo "token=$MY_PLAIN_VALUE""#])
            .run();
        plain.assert_success();
        assert_eq!(plain.json()["logs"]["lines"][0]["text"], "token=s3cr3t-value", "{plain}");

        let out = run_in(mode)
            .env("MY_API_TOKEN", "s3cr3t-value")
            .args(["--json", "--env", "MY_API_TOKEN", "--", "sh", "-c", probe])
            .run();
        out.assert_success();
        let json = out.json();
        let text_of = |stream: &str| {
            let lines = json["logs"]["lines"].as_array().unwrap_or_else(|| panic!("logs.lines is not an array\n{out}"));
            lines
                .iter()
                .filter(|l| l["stream"] == stream)
                .map(|l| l["text"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(text_of("stdout"), ["token=***"], "{out}");
        assert_eq!(text_of("stderr"), ["again ***"], "{out}");
        assert!(!out.stdout.contains("s3cr3t"), "the secret leaked into the result\n{out}");
        assert!(!out.stderr.contains("s3cr3t"), "the secret leaked into cordon's stderr\n{out}");
    });
}
