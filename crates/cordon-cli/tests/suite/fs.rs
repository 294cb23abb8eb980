//! Filesystem grants: `--read`, `--write`, `--deny`, the system set, and
//! path validation.

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Dir, Mode, Outcome};

use super::{cordon, not_granted_error, run_in, READ_ONLY_ERROR};

#[test]
fn read_grant_opens_the_granted_file_and_nothing_else() {
    let support = kernel_support();
    let dir = Dir::new("fs-read");
    let granted = dir.create("granted/a.txt", "granted\n");
    let ungranted = dir.create("ungranted.txt", "ungranted\n");
    each_mode(sandbox_modes!(support), |mode| {
        run_in(mode)
            .arg("--read")
            .arg(dir.join("granted"))
            .arg("--")
            .arg("cat")
            .arg(&granted)
            .run()
            .assert_stdout_eq("granted\n");
        // Control: with its own grant, the other file is readable too.
        run_in(mode)
            .arg("--read")
            .arg(&ungranted)
            .arg("--")
            .arg("cat")
            .arg(&ungranted)
            .run()
            .assert_stdout_eq("ungranted\n");

        run_in(mode)
            .arg("--read")
            .arg(dir.join("granted"))
            .arg("--")
            .arg("cat")
            .arg(&ungranted)
            .run()
            .assert_code(1)
            .assert_stderr_contains(&format!("{}: {}", ungranted.display(), not_granted_error(mode)));
    });
}

#[test]
fn write_grant_allows_writes_and_read_grant_refuses_them() {
    let support = kernel_support();
    let dir = Dir::new("fs-write");
    let writable = dir.create_dir("writable");
    let readonly = dir.create_dir("readonly");
    each_mode(sandbox_modes!(support), |mode| {
        let name = format!("{}.txt", mode.as_str());
        run_in(mode)
            .arg("--write")
            .arg(&writable)
            .arg("--cwd")
            .arg(&writable)
            .args(["--", "sh", "-c", &format!("echo written > {name} && cat {name}")])
            .run()
            .assert_stdout_eq("written\n");
        assert_eq!(dir.read(format!("writable/{name}")), "written\n");

        run_in(mode)
            .arg("--read")
            .arg(&readonly)
            .arg("--cwd")
            .arg(&readonly)
            .args(["--", "sh", "-c", &format!("echo written > {name}")])
            .run()
            .assert_code(2)
            .assert_stderr_contains(&format!("cannot create {name}: {READ_ONLY_ERROR}"));
        assert!(!readonly.join(&name).exists());
    });
}

#[test]
fn deny_carves_a_subtree_out_of_a_read_grant_and_leaves_siblings_readable() {
    let support = kernel_support();
    let dir = Dir::new("fs-deny");
    let sibling = dir.create("tree/public/readme.txt", "public\n");
    let secret = dir.create("tree/private/key.txt", "secret\n");
    let tree = dir.join("tree");
    each_mode(sandbox_modes!(support), |mode| {
        // Control: without the carve-out the secret is readable.
        run_in(mode).arg("--read").arg(&tree).arg("--").arg("cat").arg(&secret).run().assert_stdout_eq("secret\n");

        let deny = |path: &std::path::Path| {
            run_in(mode)
                .arg("--read")
                .arg(&tree)
                .arg("--deny")
                .arg(dir.join("tree/private"))
                .arg("--")
                .arg("cat")
                .arg(path)
                .run()
        };
        deny(&sibling).assert_stdout_eq("public\n");
        deny(&secret).assert_code(1).assert_stderr_contains(&format!("{}: Permission denied", secret.display()));
    });
}

/// Review s7 F3: a deny hides a path, not the file: a hard link to the
/// denied file that already sat in a granted folder read it, in both
/// modes. A denied file with links that are not denied refuses the run
/// (exit 125, naming the file and how to fix it) before anything of the
/// command runs. Controls: with every link denied the run starts and
/// neither name reads; with the link removed the deny alone holds.
#[test]
fn a_denied_file_with_another_hard_link_refuses_the_run() {
    let support = kernel_support();
    let dir = Dir::new("fs-deny-link");
    let secret = dir.create("tree/private/key.txt", "secret\n");
    let link = dir.join("tree/public/key-link.txt");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::fs::hard_link(&secret, &link).unwrap();
    let tree = dir.join("tree");
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    each_mode(sandbox_modes!(support), |mode| {
        let marker = out_dir.join(format!("ran-{}", mode.as_str()));
        let run = |denied: &[&std::path::Path], read: &std::path::Path| {
            let mut cmd = run_in(mode);
            cmd.arg("--read").arg(&tree).arg("--write").arg(&out_dir);
            for d in denied {
                cmd.arg("--deny").arg(d);
            }
            let script = format!("touch {}; cat {}", marker.display(), read.display());
            cmd.args(["--", "/bin/sh", "-c", &script]).run()
        };
        // Control: without a deny the link reads the secret (the hole).
        run(&[], &link).assert_stdout_eq("secret\n");
        std::fs::remove_file(&marker).unwrap();
        let out = run(&[&secret], &link);
        out.assert_code(125);
        out.assert_stderr_contains(&format!(
            "the denied file {} has 2 hard links, and the run denies only 1 of them: a run could read it through another",
            secret.display()
        ));
        out.assert_stderr_contains(&format!("-samefile {}", secret.display()));
        assert!(!marker.exists(), "[{}] the command ran", mode.as_str());
        // Control: both links denied, the run starts; neither name reads.
        for read in [&secret, &link] {
            let out = run(&[&secret, &link], read);
            out.assert_code(1).assert_stderr_contains(&format!("{}: Permission denied", read.display()));
        }
        assert!(marker.exists(), "[{}] the command did not run", mode.as_str());
        std::fs::remove_file(&marker).unwrap();
    });
    // Control: the extra link removed, the deny alone holds.
    std::fs::remove_file(&link).unwrap();
    each_mode(sandbox_modes!(support), |mode| {
        let out =
            run_in(mode).arg("--read").arg(&tree).arg("--deny").arg(&secret).args(["--", "cat"]).arg(&secret).run();
        out.assert_code(1).assert_stderr_contains(&format!("{}: Permission denied", secret.display()));
    });
}

/// The first 4 bytes of `file` read by `head` in a `mode` sandbox with the
/// defaults, and `--deny deny` when given.
fn head_with_deny(mode: Mode, deny: Option<&str>, file: &str) -> Outcome {
    let mut cmd = run_in(mode);
    if let Some(d) = deny {
        cmd.arg("--deny").arg(d);
    }
    cmd.args(["--", "/usr/bin/head", "-c", "4", file]).run()
}

/// A `deny` inside the system set holds however the file is named: on a
/// merged-`/usr` host `/bin` and `/etc/os-release` are links into `/usr`,
/// and Landlock grants a link's target tree, so a rule made on the link
/// granted the denied file again in process mode (`/usr/bin/id` and
/// `/usr/lib/os-release` stayed readable under `--deny`).
#[test]
fn deny_inside_the_system_set_holds_through_the_sets_links() {
    let support = kernel_support();
    for (link, target) in [("/bin", "usr/bin"), ("/etc/os-release", "../usr/lib/os-release")] {
        let found = std::fs::read_link(link).unwrap_or_else(|e| panic!("the probe needs {link} -> {target}: {e}"));
        assert_eq!(found, std::path::Path::new(target), "the probe needs {link} -> {target}");
    }
    each_mode(sandbox_modes!(support), |mode| {
        let head = |deny: Option<&str>, file: &str| head_with_deny(mode, deny, file);
        // Controls: without the deny both names of each file read.
        for file in ["/usr/bin/id", "/bin/id"] {
            head(None, file).assert_stdout_eq("\u{7f}ELF");
        }
        for file in ["/usr/lib/os-release", "/etc/os-release"] {
            head(None, file).assert_success();
        }
        for (deny, files) in [
            ("/usr/bin/id", ["/usr/bin/id", "/bin/id"]),
            ("/usr/lib/os-release", ["/usr/lib/os-release", "/etc/os-release"]),
        ] {
            for file in files {
                head(Some(deny), file)
                    .assert_code(1)
                    .assert_stderr_contains(&format!("'{file}' for reading: Permission denied"));
            }
        }
        // What sits beside the denied file keeps its access, by both names.
        head(Some("/usr/bin/id"), "/bin/ls").assert_stdout_eq("\u{7f}ELF");
        head(Some("/usr/bin/id"), "/usr/bin/ls").assert_stdout_eq("\u{7f}ELF");
    });
}

/// A `deny` of a folder takes the system set's entries inside it away
/// too: `--deny /etc` leaves `/etc/passwd` unreadable (it is one of the
/// set's single-file grants) and `--deny /usr/share` the time zones, in
/// both modes. Controls: without the deny both read; a folder beside the
/// denied one keeps its access.
#[test]
fn deny_of_a_folder_takes_the_system_sets_entries_inside_it() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let head = |deny: Option<&str>, file: &str| head_with_deny(mode, deny, file);
        head(None, "/etc/passwd").assert_stdout_eq("root");
        head(None, "/usr/share/zoneinfo/UTC").assert_stdout_eq("TZif");
        for (deny, file) in [("/etc", "/etc/passwd"), ("/usr/share", "/usr/share/zoneinfo/UTC")] {
            let out = head(Some(deny), file);
            out.assert_code(1);
            // Hidden (container: not bound) or refused (process: no rule).
            let err = &out.stderr;
            assert!(
                err.contains(&format!("'{file}' for reading: Permission denied"))
                    || err.contains(&format!("'{file}' for reading: No such file or directory")),
                "{mode:?} --deny {deny}: {file} was not denied: {err}"
            );
        }
        head(Some("/usr/share"), "/usr/bin/id").assert_stdout_eq("\u{7f}ELF");
    });
}

#[test]
fn etc_shadow_is_not_readable() {
    let support = kernel_support();
    // Control: the file exists on the host, and (as root) dev mode reads it.
    assert!(std::path::Path::new("/etc/shadow").exists(), "the probe needs a host /etc/shadow");
    if support.root {
        run_in(Mode::Dev).args(["--", "head", "-c", "0", "/etc/shadow"]).run().assert_success();
    }
    each_mode(sandbox_modes!(support), |mode| {
        run_in(mode)
            .args(["--", "head", "-c", "0", "/etc/shadow"])
            .run()
            .assert_code(1)
            .assert_stderr_contains(&format!("/etc/shadow' for reading: {}", not_granted_error(mode)));
    });
}

#[test]
fn relative_grants_resolve_against_cwd() {
    let support = kernel_support();
    let dir = Dir::new("fs-relative");
    let inside = dir.create("sub/file.txt", "inside\n");
    let outside = dir.create("outside.txt", "outside\n");
    each_mode(sandbox_modes!(support), |mode| {
        run_in(mode)
            .arg("--cwd")
            .arg(dir.path())
            .args(["--read", "sub", "--", "cat"])
            .arg(&inside)
            .run()
            .assert_stdout_eq("inside\n");
        // Control for the scope: `sub` granted `sub` only, not the cwd.
        run_in(mode)
            .arg("--cwd")
            .arg(dir.path())
            .args(["--read", "sub", "--", "cat"])
            .arg(&outside)
            .run()
            .assert_code(1)
            .assert_stderr_contains(not_granted_error(mode));
    });
}

#[test]
fn command_starts_in_cwd_when_only_a_subdirectory_is_granted() {
    let support = kernel_support();
    let dir = Dir::new("fs-cwd");
    dir.create("sub/file.txt", "inside\n");
    each_mode(sandbox_modes!(support), |mode| {
        run_in(mode)
            .arg("--cwd")
            .arg(dir.path())
            .args(["--read", "sub", "--", "sh", "-c", "pwd && cat sub/file.txt"])
            .run()
            .assert_stdout_eq(&format!("{}\ninside\n", dir.path().display()));
    });
}

#[test]
fn wildcard_other_than_trailing_double_star_is_rejected() {
    let dir = Dir::new("fs-wildcard");
    dir.create("x/a.txt", "a\n");
    cordon()
        .arg("run")
        .arg("--cwd")
        .arg(dir.path())
        .args(["--read", "x/*.txt", "--", "true"])
        .run()
        .assert_code(125)
        .assert_stderr_contains("--read")
        .assert_stderr_contains("x/*.txt")
        .assert_stderr_contains("wildcard");
}

#[test]
fn trailing_double_star_grants_the_tree() {
    let support = kernel_support();
    let dir = Dir::new("fs-doublestar");
    let file = dir.create("x/deep/a.txt", "deep\n");
    each_mode(sandbox_modes!(support), |mode| {
        run_in(mode)
            .arg("--read")
            .arg(format!("{}/x/**", dir.path().display()))
            .arg("--")
            .arg("cat")
            .arg(&file)
            .run()
            .assert_stdout_eq("deep\n");
        run_in(mode)
            .arg("--cwd")
            .arg(dir.path())
            .args(["--read", "x/**", "--", "cat"])
            .arg(&file)
            .run()
            .assert_stdout_eq("deep\n");
    });
}

#[test]
fn missing_path_is_rejected_naming_the_flag() {
    let dir = Dir::new("fs-missing");
    let missing = dir.join("does-not-exist");
    for flag in ["--read", "--write", "--deny"] {
        cordon()
            .arg("run")
            .arg(flag)
            .arg(&missing)
            .args(["--", "true"])
            .run()
            .assert_code(125)
            .assert_stderr_contains(&format!("invalid {flag} {}", missing.display()))
            .assert_stderr_contains("does not exist");
    }
}

/// Grants of host paths under `/tmp` show through the sandbox's private
/// `/tmp` (container mode mounts them on top of it; process mode keeps the
/// host's `/tmp` and uses a scratch directory instead).
#[test]
fn grants_under_tmp_are_visible_through_the_private_tmp() {
    let support = kernel_support();
    let base = std::path::PathBuf::from(format!("/tmp/cordon-test-tmpgrant-{}", std::process::id()));
    std::fs::create_dir_all(base.join("ro")).unwrap();
    std::fs::create_dir_all(base.join("rw")).unwrap();
    std::fs::write(base.join("ro/file.txt"), "from host /tmp\n").unwrap();
    let (ro, rw) = (base.join("ro"), base.join("rw"));
    let (ro, rw) = (ro.to_str().unwrap(), rw.to_str().unwrap());
    let script = format!(
        "cat {ro}/file.txt && echo written > {rw}/out && echo private > \"$TMPDIR/own\" && cat \"$TMPDIR/own\""
    );
    let outs = std::cell::RefCell::new(vec![]);
    each_mode(sandbox_modes!(support), |mode| {
        let _ = std::fs::remove_file(base.join("rw/out"));
        let out = run_in(mode).args(["--read", ro, "--write", rw, "--", "sh", "-c", &script]).run();
        let written = std::fs::read_to_string(base.join("rw/out")).unwrap_or_default();
        outs.borrow_mut().push((mode, out, written));
    });
    std::fs::remove_dir_all(&base).unwrap();
    for (mode, out, written) in outs.into_inner() {
        out.assert_success().assert_stdout_eq("from host /tmp\nprivate\n");
        assert_eq!(written, "written\n", "[{}] the write grant under /tmp must reach the host", mode.as_str());
    }
}

#[test]
fn exec_allow_list_limits_what_can_be_executed() {
    let support = kernel_support();
    let script = "cat /dev/null && echo cat-ran; ls /usr >/dev/null 2>&1; echo $?";
    each_mode(sandbox_modes!(support), |mode| {
        // Control: without the list, anything readable runs.
        run_in(mode).args(["--", "sh", "-c", script]).run().assert_success().assert_stdout_eq("cat-ran\n0\n");
        // With it, the command itself and the listed file run; ls gets EACCES (126).
        run_in(mode)
            .args(["--exec", "/usr/bin/cat", "--", "sh", "-c", script])
            .run()
            .assert_success()
            .assert_stdout_eq("cat-ran\n126\n");
    });
}

/// Review s10 R3: the host paths of a policy file (and of a plugin's
/// manifest) are taken as declared, and a deny spelled through another
/// symbolic link than its grant (`/srv/app/current -> v1`, the common
/// release link) was never carved out of the grant's Landlock rule:
/// process mode did not enforce it at all, container mode only by its
/// mask, which the run could move away with the folder above it. Now, in
/// both modes, whichever of the two is spelled through the link, with a
/// read or a write grant: the denied file reads through neither spelling,
/// the folder above it cannot be moved (on the host it is where it was),
/// and the rest of the grant reads. Control: the same run without the deny
/// reads the file through both spellings.
#[test]
fn a_deny_holds_whichever_link_spells_it_or_its_grant() {
    let support = kernel_support();
    let dir = Dir::new("fs-deny-link");
    dir.create("app/v1/conf/secret.key", "TOPSECRET\n");
    dir.create("app/v1/public.txt", "public\n");
    std::os::unix::fs::symlink("v1", dir.join("app/current")).unwrap();
    let at = |rel: &str| dir.join(rel).to_str().unwrap().to_owned();
    // Reads the file through both spellings and the grant's public file
    // (container mode binds a grant where it resolves: at v1),
    // then tries to move the folder above the denied file (both spellings).
    let script = r#"cat "$1" "$2" 2>/dev/null; cat "$3"; mv "$4" "$4.moved" 2>/dev/null && echo moved; mv "$5" "$5.moved" 2>/dev/null && echo moved; true"#;
    let run = |mode: Mode, access: &str, grant: &str, deny: Option<&str>| {
        let policy = dir.create(
            "policy.toml",
            format!(
                "[permissions]\nfs.{access} = [{:?}]\nfs.deny = [{}]\n",
                at(grant),
                deny.map(|d| format!("{:?}", at(d))).unwrap_or_default()
            ),
        );
        // The release link is the operator's own (in a folder a run may
        // write, so followed only when told).
        run_in(mode)
            .arg("--follow-links")
            .arg("--policy")
            .arg(&policy)
            .args(["--", "sh", "-c", script, "sh"])
            .args([at("app/current/conf/secret.key"), at("app/v1/conf/secret.key"), at("app/v1/public.txt")])
            .args([at("app/current/conf"), at("app/v1/conf")])
            .run()
    };
    let probe = |mode: Mode, access: &str, grant: &str, deny: Option<&str>| {
        let out = run(mode, access, grant, deny);
        out.assert_success();
        out.stdout
    };
    each_mode(sandbox_modes!(support), |mode| {
        for access in ["read", "write"] {
            for (grant, deny) in [("app", "app/current/conf/secret.key"), ("app/current", "app/v1/conf/secret.key")] {
                let what = format!("[{}] fs.{access} = {grant}, fs.deny = {deny}", mode.as_str());
                if access == "write" && grant == "app" {
                    // The link lies in the write grant: a run could re-point
                    // it (see a_link_made_in_a_write_grant_redirects_no_later_run).
                    let out = run(mode, access, grant, Some(deny));
                    out.assert_code(125).assert_stderr_contains(&format!(
                        "fs.deny path {} passes through the symbolic link {} (to v1), which lies inside the write grant {}",
                        at(deny),
                        at("app/current"),
                        at("app")
                    ));
                    assert_eq!(out.stdout, "", "{what}: the command ran");
                    continue;
                }
                assert_eq!(probe(mode, access, grant, Some(deny)), "public\n", "{what}");
                assert_eq!(dir.read("app/v1/conf/secret.key"), "TOPSECRET\n", "{what}: on the host");
                assert!(!dir.join("app/v1/conf.moved").exists(), "{what}: the folder above was moved");
            }
        }
        // Control: without the deny, the file reads through both spellings.
        let open = probe(mode, "read", "app", None);
        assert_eq!(open, "TOPSECRET\nTOPSECRET\npublic\n", "[{}] control", mode.as_str());
    });
}

/// Review s10 R3, a spelling no resolution of links sees: a bind mount.
/// The operator's `--deny /X/shared/conf/secret.key` against a grant of
/// `/X/alias`, a bind mount of `/X/shared` (made in a private mount
/// namespace of the test's own, never on the host), read the secret in
/// both modes. Now the deny is found inside the alias by device and inode:
/// the secret reads through neither name. Control: without the deny it
/// reads through the alias.
#[test]
fn a_deny_holds_through_a_bind_mount_alias_of_its_folder() {
    let support = kernel_support();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI runs the tests as root");
        eprintln!("NOTE: not root: a_deny_holds_through_a_bind_mount_alias_of_its_folder needs a bind mount; skipped");
        return;
    }
    let unshare = super::tool("/usr/bin/unshare");
    let dir = Dir::new("fs-deny-bind");
    dir.create("shared/conf/secret.key", "OPERATOR-SECRET\n");
    dir.create_dir("alias");
    let at = |rel: &str| dir.join(rel).to_str().unwrap().to_owned();
    let policy = dir.create("policy.toml", format!("[permissions]\nfs.read = [{:?}]\n", at("alias")));
    let cordon = env!("CARGO_BIN_EXE_cordon");
    let probe = |mode: Mode, deny: bool| {
        let deny = if deny { format!("--deny {}", at("shared/conf/secret.key")) } else { String::new() };
        let script = format!(
            "mount --bind {shared} {alias} && {cordon} run --mode {mode} --policy {policy} {deny} -- sh -c 'cat {alias}/conf/secret.key {shared}/conf/secret.key 2>&1; true'",
            shared = at("shared"),
            alias = at("alias"),
            mode = mode.as_str(),
            policy = policy.display(),
        );
        let out = std::process::Command::new(unshare)
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    each_mode(sandbox_modes!(support), |mode| {
        let open = probe(mode, false);
        assert!(open.contains("OPERATOR-SECRET"), "[{}] control: {open}", mode.as_str());
        let denied = probe(mode, true);
        assert!(!denied.contains("OPERATOR-SECRET"), "[{}] the denied file read: {denied}", mode.as_str());
        assert!(denied.contains("Permission denied"), "[{}] {denied}", mode.as_str());
    });
}

/// Review s11 S3: bind mounts BELOW a denied folder or below a grant, which
/// the check of the deny's ancestors missed. In a private mount namespace
/// of the test's own: (a) a grant on a bind of a folder inside the denied
/// tree read the denied files, in process mode through the denied spelling
/// too; (b) a grant on the folder such a bind is mounted in; (c) a bind of
/// a single file of the denied tree; (d) a deny spelled through a bind of a
/// folder below the grant did not hold. Now each place a rule reaches is
/// compared with each deny by filesystem and path on it: nothing private
/// is printed, through any name. Controls: without the deny (a) reads;
/// the grant's other files still read with it (d).
#[test]
fn a_deny_holds_against_bind_mounts_below_it_and_below_a_grant() {
    let support = kernel_support();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI runs the tests as root");
        eprintln!(
            "NOTE: not root: a_deny_holds_against_bind_mounts_below_it_and_below_a_grant needs bind mounts; skipped"
        );
        return;
    }
    let unshare = super::tool("/usr/bin/unshare");
    let dir = Dir::new("fs-deny-bind-below");
    dir.create("home/alice/data/notes.txt", "ALICE-PRIVATE\n");
    dir.create("home/alice/key", "ALICE-KEY\n");
    dir.create("app/conf/secret.key", "OPERATOR-SECRET\n");
    dir.create("app/conf/public", "PUBLIC\n");
    dir.create_dir("mnt/data");
    dir.create_dir("srv-conf");
    dir.create("srv/key", "");
    let at = |rel: &str| dir.join(rel).to_str().unwrap().to_owned();
    dir.create_dir("ov/up");
    dir.create_dir("ov/work");
    dir.create_dir("merged");
    let binds = [("home/alice/data", "mnt/data"), ("home/alice/key", "srv/key"), ("app/conf", "srv-conf")]
        .map(|(from, to)| format!("mount --bind {} {}", at(from), at(to)))
        .join(" && ");
    let binds = format!(
        "{binds} && mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {}",
        at("home/alice/data"),
        at("ov/up"),
        at("ov/work"),
        at("merged")
    );
    let cordon = env!("CARGO_BIN_EXE_cordon");
    let probe = |mode: Mode, grant: &str, deny: Option<&str>, read: &[&str]| {
        let policy = dir.create(
            format!("policy-{}.toml", grant.replace('/', "-")),
            format!("[permissions]\nfs.read = [{:?}]\n", at(grant)),
        );
        let deny = deny.map(|d| format!("--deny {}", at(d))).unwrap_or_default();
        let cats: Vec<String> = read.iter().map(|r| at(r)).collect();
        let script = format!(
            "{binds} && {cordon} run --mode {mode} --policy {policy} {deny} -- sh -c 'cat {cats} 2>&1; true'",
            mode = mode.as_str(),
            policy = policy.display(),
            cats = cats.join(" "),
        );
        let out = std::process::Command::new(unshare)
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let open = probe(mode, "mnt/data", None, &["mnt/data/notes.txt"]);
        assert!(open.contains("ALICE-PRIVATE"), "[{m}] control: the bind reads without the deny: {open}");
        let cases: [(&str, &str, &[&str], &str); 5] = [
            ("merged", "home/alice", &["merged/notes.txt"], "ALICE-PRIVATE"),
            ("mnt/data", "home/alice", &["mnt/data/notes.txt", "home/alice/data/notes.txt"], "ALICE-PRIVATE"),
            ("mnt", "home/alice", &["mnt/data/notes.txt", "home/alice/data/notes.txt"], "ALICE-PRIVATE"),
            ("srv", "home/alice", &["srv/key", "home/alice/key"], "ALICE-KEY"),
            (
                "app",
                "srv-conf/secret.key",
                &["app/conf/secret.key", "srv-conf/secret.key", "app/conf/public"],
                "OPERATOR-SECRET",
            ),
        ];
        for (grant, deny, read, secret) in cases {
            let got = probe(mode, grant, Some(deny), read);
            assert!(!got.contains(secret), "[{m}] --deny {deny} read through the grant on {grant}: {got}");
            assert!(got.contains("Permission denied"), "[{m}] grant {grant}, deny {deny}: {got}");
        }
        let got = probe(mode, "app", Some("srv-conf/secret.key"), &["app/conf/public"]);
        assert!(got.contains("PUBLIC"), "[{m}] control: the grant's other files read beside the deny: {got}");
    });
}

/// Review s13 R13-2: an overlay's layers are read from mountinfo's option
/// string, which shows them as the mounter wrote them; mounted from its
/// folder with relative layers (`lowerdir=lower`), a layer could not be
/// placed and the deny on it did not hold through the overlay. Now a run
/// with a deny whose rules reach such an overlay is refused (125, naming
/// the overlay and the layer), and nothing of the layer is printed.
/// Control: the same overlay with the same grant and no deny reads.
#[test]
fn a_deny_refuses_a_run_reaching_an_overlay_with_relative_layers() {
    let support = kernel_support();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI runs the tests as root");
        eprintln!(
            "NOTE: not root: a_deny_refuses_a_run_reaching_an_overlay_with_relative_layers needs mounts; skipped"
        );
        return;
    }
    let unshare = super::tool("/usr/bin/unshare");
    let dir = Dir::new("fs-deny-overlay-relative");
    dir.create("home/alice/data/notes.txt", "ALICE-PRIVATE\n");
    dir.create_dir("ov/up");
    dir.create_dir("ov/work");
    dir.create_dir("merged");
    let cordon = env!("CARGO_BIN_EXE_cordon");
    let probe = |mode: Mode, deny: &str| {
        let script = format!(
            "cd {root} && mount -t overlay overlay -o lowerdir=home/alice/data,upperdir=ov/up,workdir=ov/work merged \
             && {cordon} run --mode {mode} --read {root}/merged {deny} -- cat {root}/merged/notes.txt",
            root = dir.path().display(),
            mode = mode.as_str(),
        );
        std::process::Command::new(unshare)
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .output()
            .unwrap()
    };
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let open = probe(mode, "");
        let stdout = String::from_utf8_lossy(&open.stdout);
        assert!(stdout.contains("ALICE-PRIVATE"), "[{m}] control: the overlay reads without a deny: {open:?}");
        let refused = probe(mode, &format!("--deny {}", dir.join("home/alice").display()));
        let (stdout, stderr) = (String::from_utf8_lossy(&refused.stdout), String::from_utf8_lossy(&refused.stderr));
        assert!(!stdout.contains("ALICE-PRIVATE"), "[{m}] the denied layer was read through the overlay: {stdout}");
        assert_eq!(refused.status.code(), Some(125), "[{m}] {stderr}");
        assert!(
            stderr.contains(&format!("{}/merged", dir.path().display()))
                && stderr.contains("layer `home/alice/data` by a relative path"),
            "[{m}] {stderr}"
        );
    });
}

/// Review s12 R12-13 (S1's class): `--cwd` was resolved through its links
/// before the pin, and relative flags joined to the resolved folder, so a
/// run that replaced its own cwd `W/sub` (inside its write grant `W`) with
/// a link to a private folder gave the operator's next run, the same
/// command line with `--read .`, a read rule on that folder. Now relative
/// flags are joined to the cwd as written: run 2 is refused (125, naming
/// the link), and on the host the secret was not printed. Control: a cwd
/// reached through a link outside every write grant still runs.
#[test]
fn a_link_made_on_the_cwd_in_a_write_grant_redirects_no_later_run() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let dir = Dir::new("fs-cwd-flip");
        dir.create("W/sub/file", "work\n");
        dir.create("private/secret", "CWD-SECRET\n");
        let (w, sub, private) = (dir.join("W"), dir.join("W/sub"), dir.join("private"));
        let args = |script: &str| {
            let mut c = run_in(mode);
            c.arg("--write").arg(&w).arg("--cwd").arg(&sub).args(["--read", ".", "--", "sh", "-c", script]);
            c
        };
        let flip = format!("cd {} && rm -rf sub && ln -s {} sub", w.display(), private.display());
        args(&flip).run().assert_success();
        assert!(std::fs::symlink_metadata(&sub).unwrap().file_type().is_symlink(), "[{m}] run 1 made the link");
        let out = args("cat ./secret").run();
        out.assert_code(125).assert_stderr_contains("link");
        assert!(!out.stdout.contains("CWD-SECRET"), "[{m}] the private folder was read: {out}");
        // Control: a cwd reached through a link outside every write grant.
        std::fs::remove_file(&sub).unwrap();
        let elsewhere = dir.join("elsewhere");
        std::os::unix::fs::symlink(dir.join("W"), &elsewhere).unwrap();
        std::fs::create_dir(dir.join("W/sub")).unwrap();
        let mut c = run_in(mode);
        c.arg("--cwd").arg(elsewhere.join("sub")).args(["--follow-links", "--read", "..", "--", "sh", "-c", "ls .."]);
        let out = c.run();
        out.assert_success();
        assert!(out.stdout.contains("sub"), "[{m}] control: {out}");
    });
}

/// Review s11 S1: a write grant lets a run make and re-point links in its
/// tree, and rules were resolved through their links at every run, so a
/// run redirected the next run's rules below its grant: a read grant
/// (`W/ref`, replaced by a link to a private folder) read the host's
/// secret, a nested write grant (`W/sub/out`, its parent renamed and a
/// link put in its place) wrote outside every grant, an exec allow-list
/// entry ran a file the run wrote. Run 1 does each in a real sandbox with
/// `--write W`; run 2, with the same rules, is refused before its command
/// starts (125, naming the rule, the link and the grant), and on the host
/// the secret was not printed, nothing was planted, nothing ran. Control:
/// a link outside every write grant is followed as before.
#[test]
fn a_link_made_in_a_write_grant_redirects_no_later_run() {
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let dir = Dir::new("fs-link-flip");
        dir.create("private/secret", "HOST-SECRET\n");
        dir.create_dir("victim");
        dir.create_dir("work/ref");
        dir.create_dir("work/sub/out");
        dir.create("work/tools/tool", "#!/bin/sh\necho listed-tool\n");
        std::fs::set_permissions(dir.join("work/tools/tool"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let at = |rel: &str| dir.join(rel).to_str().unwrap().to_owned();
        let w = at("work");
        let flip = format!(
            "rm -rf ref && ln -s {private} ref && mv sub sub.old && mkdir sub && ln -s {victim} sub/out \
             && mv tools tools.old && mkdir tools && printf '#!/bin/sh\\necho ran > {w}/ran\\n' > payload \
             && chmod +x payload && ln -s {w}/payload tools/tool",
            private = at("private"),
            victim = at("victim"),
        );
        run_in(mode).args(["--write", &w, "--cwd", &w, "--", "sh", "-c", &flip]).run().assert_success();
        for link in ["work/ref", "work/sub/out", "work/tools/tool"] {
            let meta = std::fs::symlink_metadata(dir.join(link)).unwrap();
            assert!(meta.file_type().is_symlink(), "[{m}] control: run 1 made {link} a link");
        }
        let refused = |out: &Outcome, field: &str, path: &str, link: &str| {
            out.assert_code(125).assert_stderr_contains(&format!(
                "{field} path {} passes through the symbolic link {}",
                at(path),
                at(link)
            ));
            out.assert_stderr_contains(&format!("which lies inside the write grant {w}"));
        };
        let read =
            run_in(mode).args(["--write", &w, "--read", &at("work/ref"), "--", "cat", &at("work/ref/secret")]).run();
        refused(&read, "fs.read", "work/ref", "work/ref");
        assert!(!read.stdout.contains("HOST-SECRET"), "[{m}] {read}");
        let plant = format!("echo planted > {}/planted", at("work/sub/out"));
        let write = run_in(mode).args(["--write", &w, "--write", &at("work/sub/out"), "--", "sh", "-c", &plant]).run();
        refused(&write, "fs.write", "work/sub/out", "work/sub/out");
        assert!(!dir.join("victim/planted").exists(), "[{m}] planted outside every grant");
        let exec =
            run_in(mode).args(["--write", &w, "--exec", &at("work/tools/tool"), "--", &at("work/tools/tool")]).run();
        refused(&exec, "exec", "work/tools/tool", "work/tools/tool");
        assert!(!dir.join("work/ran").exists(), "[{m}] the file run 1 wrote ran");
        // Control: a link outside every write grant is followed when the
        // caller says so (container mode binds the grant where it resolves).
        std::os::unix::fs::symlink(at("private"), dir.join("alias")).unwrap();
        run_in(mode)
            .args(["--follow-links", "--write", &w, "--read", &at("alias"), "--", "cat", &at("private/secret")])
            .run()
            .assert_success()
            .assert_stdout_eq("HOST-SECRET\n");
    });
}

/// Review s13 R13-6: S1's pin covers links inside the same run's write
/// grants, so a link an EARLIER run made with a wider write grant was
/// followed silently: run 1 (`--write W`) replaced `W/out` by a link to a
/// private (0700) host folder, and run 2 (`--write W/out`), a later step
/// with a narrower grant, read its secret and planted a file there; run 3
/// (`--read W/out`) read it. Now a rule whose path passes through a link in
/// a folder a run may write (not root's alone, or, as root, outside the
/// system's folders) is refused before the command starts (125), naming
/// the rule, the link, its target and `--follow-links`; on the host the
/// private folder holds what it held. The same for the class's other ways
/// in: a link in the middle of the path, a relative link, a link to a
/// link, a file that is a link, a plugin's manifest entry, and `cordon
/// exec`'s narrowing flag. A working directory through the link grants
/// nothing (the command cannot read there). Control: with
/// `--follow-links` the probe reads the secret, and the result's
/// enforcement list names the link followed.
#[test]
fn a_link_an_earlier_run_made_redirects_no_later_grant() {
    use std::os::unix::fs::PermissionsExt;
    let support = kernel_support();
    each_mode(sandbox_modes!(support), |mode| {
        let m = mode.as_str();
        let dir = Dir::new("fs-xp-link");
        let private = Dir::new("fs-xp-private");
        let secret = private.create("keys/secret", "XP-SECRET\n");
        std::fs::set_permissions(private.join("keys"), std::fs::Permissions::from_mode(0o700)).unwrap();
        dir.create_dir("W/out");
        let at = |rel: &str| dir.join(rel).to_str().unwrap().to_owned();
        let keys = private.join("keys");
        let (w, k) = (at("W"), keys.to_str().unwrap().to_owned());
        // Run 1, with the wide grant: the links, each a way in.
        let plant = format!(
            "rmdir out && ln -s {k} out && mkdir mid && ln -s {p} mid/up && ln -s ../../{rel} rel \
             && ln -s out chain && ln -s {k}/secret file",
            p = private.path().display(),
            rel = keys.strip_prefix("/var/tmp").map(|r| r.to_owned()).unwrap_or_else(|_| keys.clone()).display(),
        );
        run_in(mode).args(["--write", &w, "--cwd", &w, "--", "sh", "-c", &plant]).run().assert_success();
        for link in ["W/out", "W/mid/up", "W/rel", "W/chain", "W/file"] {
            let meta = std::fs::symlink_metadata(dir.join(link)).unwrap();
            assert!(meta.file_type().is_symlink(), "[{m}] control: run 1 made {link} a link");
        }
        let host_side = |what: &str| {
            assert_eq!(std::fs::read_to_string(&secret).unwrap(), "XP-SECRET\n", "[{m}] {what}: the secret changed");
            let names: Vec<_> = std::fs::read_dir(&keys).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names, ["secret"], "[{m}] {what}: a file was planted in the private folder");
        };
        let probe = format!("cat {k}/secret {0}/secret {0}/keys/secret 2>/dev/null; echo PLANTED > {0}/authorized_keys; echo PLANTED > {k}/authorized_keys", at("W/out"));
        // (flag, path, link) for each way in.
        let ways = [
            ("--write", at("W/out"), at("W/out"), k.clone()),
            ("--read", at("W/out"), at("W/out"), k.clone()),
            ("--read", at("W/mid/up/keys"), at("W/mid/up"), private.path().display().to_string()),
            ("--write", at("W/rel"), at("W/rel"), String::new()),
            ("--read", at("W/chain"), at("W/chain"), "out".to_owned()),
            ("--read", at("W/file"), at("W/file"), format!("{k}/secret")),
        ];
        for (flag, path, link, target) in &ways {
            let what = format!("{flag} {path}");
            let out = run_in(mode).args([*flag, path.as_str(), "--", "sh", "-c", &probe]).run();
            out.assert_code(125);
            out.assert_stderr_contains(&format!("{what} passes through the symbolic link {link} (to {target}"));
            out.assert_stderr_contains("--follow-links");
            assert!(!out.stdout.contains("XP-SECRET") && !out.stderr.contains("XP-SECRET"), "[{m}] {what}: {out}");
            host_side(&what);
        }
        // A working directory through the link grants nothing.
        let out = run_in(mode)
            .args(["--cwd", &at("W/out"), "--", "sh", "-c", "cat secret; echo PLANTED > authorized_keys"])
            .run();
        assert!(!out.stdout.contains("XP-SECRET"), "[{m}] --cwd through the link read the secret: {out}");
        host_side("--cwd");
        // A plugin's manifest entry, and cordon exec's narrowing flag.
        let plugin = Dir::new("fs-xp-plugin");
        plugin.create(
            "cordon.toml",
            format!(
                "id = \"@t/xp\"\nversion = \"1.0.0\"\n[permissions]\nfs.write = [\"{}\"]\n[handlers.go]\n\
                 command = [\"sh\", \"-c\", \"cat {k}/secret; echo PLANTED > {k}/authorized_keys; echo '{{}}' >&3\"]\n",
                at("W/out")
            ),
        );
        let out = super::plugins::exec(mode, plugin.path(), "go", "{}").run();
        out.assert_code(125);
        out.assert_stderr_contains(&format!(
            "fs.write entry {} passes through the symbolic link {}",
            at("W/out"),
            at("W/out")
        ));
        assert!(!out.stdout.contains("XP-SECRET") && !out.stderr.contains("XP-SECRET"), "[{m}] manifest: {out}");
        host_side("fs.write entry");
        let wide = Dir::new("fs-xp-wide");
        wide.create(
            "cordon.toml",
            format!(
                "id = \"@t/xpw\"\nversion = \"1.0.0\"\n[permissions]\nfs.read = [\"/\"]\n[handlers.go]\n\
             command = [\"sh\", \"-c\", \"cat {k}/secret; echo '{{}}' >&3\"]\n"
            ),
        );
        let out = super::plugins::exec(mode, wide.path(), "go", "{}").args(["--read", &at("W/out")]).run();
        out.assert_code(125)
            .assert_stderr_contains(&format!("--read {} passes through the symbolic link", at("W/out")));
        assert!(!out.stdout.contains("XP-SECRET") && !out.stderr.contains("XP-SECRET"), "[{m}] narrowing: {out}");
        // Control: told to follow, the same probe reads the secret, and the
        // result names the link followed.
        let out = run_in(mode)
            .args(["--json", "--follow-links", "--read", &at("W/out"), "--", "cat", &format!("{k}/secret")])
            .run();
        out.assert_success();
        let json = out.json();
        assert_eq!(json["logs"]["lines"][0]["text"], "XP-SECRET", "[{m}] control: {out}");
        let ledger = json["enforcement"].to_string();
        assert!(ledger.contains(&format!("followed the symbolic link {} (to {k})", at("W/out"))), "[{m}] {ledger}");
        host_side("control");
    });
}
