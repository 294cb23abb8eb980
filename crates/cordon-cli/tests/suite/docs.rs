//! The CLI's own documentation (issue 10, item 14 and "done when"): shell
//! completions that complete in a real shell, man pages that render
//! without warnings, and the README's synopses listing exactly the flags
//! `--help` shows.

use std::collections::BTreeSet;

use cordon_testkit::{Dir, TestCommand};

use super::{cordon, tool};

/// The script `cordon completions SHELL` prints, saved in `dir`.
fn script(shell: &str, dir: &Dir) -> std::path::PathBuf {
    let out = cordon().args(["completions", shell]).run();
    out.assert_success();
    dir.create(format!("cordon.{shell}"), &out.stdout)
}

/// What bash completes for `words` (the last one being completed), with
/// the script `cordon completions bash` printed, sourced.
fn bash_complete(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let prev = if words.len() > 1 { words[words.len() - 2] } else { "" };
    let program = format!(
        "source {}\nCOMP_WORDS=({line})\nCOMP_CWORD={}\nCOMP_LINE='{line}'\nCOMP_POINT=${{#COMP_LINE}}\n_cordon cordon '{}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        words.len() - 1,
        words[words.len() - 1],
    );
    let out = TestCommand::new(tool("/bin/bash")).args(["--norc", "-c", &program]).run();
    out.assert_success();
    // `printf` prints its format once even for an empty COMPREPLY.
    out.stdout.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

#[test]
fn bash_completes_commands_and_flags() {
    let dir = Dir::new("completions");
    let bash = script("bash", &dir);
    let commands = bash_complete(&bash, &["cordon", "ex"]);
    assert_eq!(commands, ["exec"], "completing `cordon ex`");
    let flags = bash_complete(&bash, &["cordon", "run", "--re"]);
    assert_eq!(flags, ["--read"], "completing `cordon run --re`");
    let tty = bash_complete(&bash, &["cordon", "run", "--no-t"]);
    assert_eq!(tty, ["--no-tty"], "completing `cordon run --no-t`");
    let shells = bash_complete(&bash, &["cordon", "completions", "f"]);
    assert_eq!(shells, ["fish"], "completing `cordon completions f`");
    // Control: a word no flag starts with completes to nothing.
    assert!(bash_complete(&bash, &["cordon", "run", "--zz"]).is_empty());
}

#[test]
fn zsh_and_fish_scripts_parse_and_name_every_run_flag() {
    let dir = Dir::new("completions-shells");
    let help = long_flags(&cordon().args(["run", "--help"]).run().stdout);
    for (shell, checker, args) in
        [("zsh", "/usr/bin/zsh", &["-n"][..]), ("fish", "/usr/bin/fish", &["--no-execute"][..])]
    {
        let path = script(shell, &dir);
        let out = TestCommand::new(tool(checker)).args(args).arg(&path).run();
        out.assert_success();
        assert!(out.stderr.trim().is_empty(), "{shell} reports problems in the script:\n{out}");
        let text = std::fs::read_to_string(&path).unwrap();
        for flag in &help {
            let bare = flag.trim_start_matches('-');
            assert!(text.contains(bare), "the {shell} script lacks {flag}");
        }
    }
    // Control: the syntax check does fail on a broken script.
    let broken = dir.create("broken.zsh", "_cordon() {\n  case $x in\n");
    assert!(!TestCommand::new("/usr/bin/zsh").arg("-n").arg(&broken).run().status.success());
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = cordon().args(["completions", "tcsh"]).run();
    out.assert_code(2).assert_stderr_contains("invalid value 'tcsh'").assert_stderr_contains("bash");
}

/// `groff`'s rendering of a man page, and its warnings.
fn render(page: &std::path::Path) -> (String, String) {
    let out = TestCommand::new(tool("/usr/bin/groff"))
        // Plain text: no escape sequences, no overstriking.
        .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
        .arg(page)
        .run();
    out.assert_success();
    (out.stdout.clone(), out.stderr.clone())
}

#[test]
fn man_pages_render_for_every_command() {
    let dir = Dir::new("man");
    let out = cordon().args(["man", "--out"]).arg(dir.path()).run();
    out.assert_success();
    for page in
        ["cordon.1", "cordon-run.1", "cordon-exec.1", "cordon-doctor.1", "cordon-plugin-install.1", "cordon-man.1"]
    {
        let (text, warnings) = render(&dir.join(page));
        assert!(warnings.trim().is_empty(), "groff warns about {page}:\n{warnings}");
        assert!(text.contains("NAME"), "{page}:\n{text}");
    }
    // Every flag of `cordon run --help` is in its page.
    let (run_page, _) = render(&dir.join("cordon-run.1"));
    let plain = run_page.replace(['\u{2010}', '\u{2212}'], "-");
    for flag in long_flags(&cordon().args(["run", "--help"]).run().stdout) {
        assert!(plain.contains(&flag), "cordon-run.1 lacks {flag}:\n{plain}");
    }
    // `cordon man run` prints the same page.
    let printed = cordon().args(["man", "run"]).run();
    printed.assert_success();
    assert_eq!(printed.stdout, std::fs::read_to_string(dir.join("cordon-run.1")).unwrap());
    // Control: a command with no page is a usage error naming the pages.
    let out = cordon().args(["man", "runn"]).run();
    out.assert_code(2).assert_stderr_contains("cordon: usage: no command `runn`\n  hint: pages exist for: run, exec");
}

/// The long flags of a `--help` text or a synopsis (`--read`, `--no-tty`).
fn long_flags(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let rest = &text[i + 2..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '-').collect();
        let before = text[..i].chars().last();
        if name.len() > 1 && !name.starts_with('-') && before.is_none_or(|c| !c.is_alphanumeric()) {
            out.insert(format!("--{name}"));
        }
    }
    out.remove("--help");
    out.remove("--version");
    out
}

/// The README's synopsis of `cordon NAME`: its first line starting
/// `cordon NAME `, with the indented and `cordon NAME ` lines right after.
fn synopsis(readme: &str, name: &str) -> String {
    let start = format!("cordon {name} ");
    let lines: Vec<&str> = readme.lines().collect();
    let first = lines.iter().position(|l| l.starts_with(&start));
    let first = first.unwrap_or_else(|| panic!("README.md has no synopsis for `cordon {name}`"));
    let block = lines[first..].iter().take_while(|l| l.starts_with(&start) || l.starts_with(' '));
    block.map(|l| format!("{l}\n")).collect()
}

#[test]
fn the_readme_synopsis_lists_exactly_the_flags_of_help() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    for name in ["run", "exec", "doctor", "audit", "completions", "man"] {
        let help = long_flags(&cordon().args([name, "--help"]).run().stdout);
        let listed = long_flags(&synopsis(&readme, name));
        let missing: Vec<_> = help.difference(&listed).collect();
        let stale: Vec<_> = listed.difference(&help).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "README synopsis of `cordon {name}`: missing {missing:?}, not in --help {stale:?}"
        );
    }
    // Control: the comparison sees a flag that is not there.
    assert!(long_flags("cordon run [--read PATH] [--bogus-flag]").contains("--bogus-flag"));
}
