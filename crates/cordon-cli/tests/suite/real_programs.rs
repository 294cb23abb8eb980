//! Ordinary programs run under the default policy with no flag beyond a
//! `--write` for their output (DESIGN.md, "system set": "Its test").
//! Tools are called by their Debian paths in /usr/bin; a missing tool fails
//! the test (see `tool`), since it is the test machine that is incomplete.

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Dir, Mode, Outcome};

use super::{run_in, tool};

/// Runs `sh -c <script>` in `dir` with `dir` writable.
fn in_write_dir(mode: Mode, dir: &Dir, script: &str) -> Outcome {
    run_in(mode).arg("--write").arg(dir.path()).arg("--cwd").arg(dir.path()).args(["--", "sh", "-c", script]).run()
}

#[test]
fn shell_pipeline() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode).args(["--", tool("/usr/bin/sh"), "-c", "ls /usr | wc -l"]).run();
        out.assert_success();
        let n: u32 = out.stdout.trim().parse().unwrap_or_else(|_| panic!("not a count\n{out}"));
        assert!(n > 0, "[{}] /usr looks empty\n{out}", mode.as_str());
    });
}

#[test]
fn coreutils_sort() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        run_in(mode)
            .args(["--", tool("/usr/bin/sort")])
            .stdin("pear\napple\nfig\n")
            .run()
            .assert_stdout_eq("apple\nfig\npear\n");
    });
}

#[test]
fn tar_creates_an_archive_in_a_write_dir() {
    let support = kernel_support();
    tool("/usr/bin/tar");
    each_mode(sandbox_modes!(support), |mode| {
        let dir = Dir::new("real-tar");
        dir.create("input/a.txt", "a\n");
        dir.create("input/b.txt", "b\n");
        in_write_dir(mode, &dir, "tar cf out.tar input && tar tf out.tar | sort")
            .assert_stdout_eq("input/\ninput/a.txt\ninput/b.txt\n");
        assert!(dir.join("out.tar").metadata().expect("archive on the host").len() > 0);
    });
}

#[test]
fn python_multiprocessing_pool() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let script = "import multiprocessing as mp\nif __name__ == '__main__':\n    with mp.Pool(2) as p: print(p.map(abs, [-1, -2, 3]))";
    each_mode(sandbox_modes!(support), |mode| {
        run_in(mode).args(["--", python, "-c", script]).run().assert_stdout_eq("[1, 2, 3]\n");
    });
}

#[test]
fn node_runs_a_script() {
    let support = kernel_support();
    let node = tool("/usr/bin/node");
    each_mode(sandbox_modes!(support), |mode| {
        let out = run_in(mode).args(["--", node, "-e", r#"console.log(require("os").cpus().length)"#]).run();
        out.assert_success();
        let cpus: u32 = out.stdout.trim().parse().unwrap_or_else(|_| panic!("not a cpu count\n{out}"));
        assert!(cpus > 0, "[{}]\n{out}", mode.as_str());
    });
}

#[test]
fn java_compiles_and_runs_hello() {
    let support = kernel_support();
    let (java, javac) = (tool("/usr/bin/java"), tool("/usr/bin/javac"));
    each_mode(sandbox_modes!(support), |mode| {
        run_in(mode).args(["--", java, "-version"]).run().assert_success().assert_stderr_contains("version");
        let dir = Dir::new("real-java");
        dir.create(
            "Hello.java",
            "public class Hello { public static void main(String[] a) { System.out.println(\"hello from java\"); } }\n",
        );
        in_write_dir(mode, &dir, &format!("{javac} Hello.java && {java} -cp . Hello"))
            .assert_stdout_eq("hello from java\n");
    });
}

#[test]
fn gcc_compiles_and_runs_hello() {
    let support = kernel_support();
    let gcc = tool("/usr/bin/gcc");
    each_mode(sandbox_modes!(support), |mode| {
        let dir = Dir::new("real-gcc");
        dir.create("hello.c", "#include <stdio.h>\nint main(void) { puts(\"hello from c\"); return 0; }\n");
        in_write_dir(mode, &dir, &format!("{gcc} -o hello hello.c && ./hello")).assert_stdout_eq("hello from c\n");
    });
}

#[test]
fn make_builds_a_target() {
    let support = kernel_support();
    let make = tool("/usr/bin/make");
    each_mode(sandbox_modes!(support), |mode| {
        let dir = Dir::new("real-make");
        dir.create("Makefile", "out.txt: in.txt\n\tsort in.txt > out.txt\n");
        dir.create("in.txt", "2\n1\n");
        in_write_dir(mode, &dir, &format!("{make} -s && cat out.txt")).assert_stdout_eq("1\n2\n");
    });
}

#[test]
fn git_init_and_commit() {
    let support = kernel_support();
    let git = tool("/usr/bin/git");
    each_mode(sandbox_modes!(support), |mode| {
        let dir = Dir::new("real-git");
        dir.create("README", "hello\n");
        let script = format!(
            "{git} init -q . && {git} add README && {git} -c user.name=Cordon -c user.email=cordon@example.invalid commit -q -m first && {git} log --format=%s"
        );
        in_write_dir(mode, &dir, &script).assert_stdout_eq("first\n");
    });
}
