//! Network: no route out, not even to the host's loopback.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use cordon_testkit::{each_mode, kernel_support, poll_until, processes_with_argv, sandbox_modes, Mode, TestCommand};

use super::{run_in, tool, unique_sleep_marker};

/// Connects to 127.0.0.1:<port> and prints `connected` or the errno name.
const CONNECT_PROBE: &str = r#"
import errno, socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e)))
"#;

#[test]
fn host_loopback_listener_is_unreachable() {
    let support = kernel_support();
    let python = tool("/usr/bin/python3");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let port = listener.local_addr().expect("listener address").port().to_string();

    // Controls: the test process connects, and so does the same probe
    // without a sandbox (dev mode).
    TcpStream::connect(("127.0.0.1", listener.local_addr().unwrap().port()))
        .expect("control connect from the test process");
    run_in(Mode::Dev).args(["--", python, "-c", CONNECT_PROBE, &port]).run().assert_stdout_eq("connected\n");

    each_mode(sandbox_modes!(support), |mode| {
        // The sandbox has a loopback of its own with nothing listening.
        run_in(mode)
            .args(["--", python, "-c", CONNECT_PROBE, &port])
            .run()
            .assert_success()
            .assert_stdout_eq("ECONNREFUSED\n");
    });
    drop(listener);
}

/// `/proc/<pid>/ns/net` as the host sees it.
fn netns_of(pid: u32) -> String {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("read a process's ns/net link");
    link.to_string_lossy().into_owned()
}

/// The parent pid, from `/proc/<pid>/stat` (the field after the name).
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    let after_name = &stat[stat.rfind(')').expect("stat has the name in parentheses") + 2..];
    after_name.split(' ').nth(1).and_then(|p| p.parse().ok()).expect("ppid in stat")
}

/// Host pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let entries = std::fs::read_dir("/proc").expect("list /proc");
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok() && parent_of(p) == pid)
        .collect()
}

/// `ip -o link show lo` inside the network namespace of `pid`.
fn loopback_in(pid: u32) -> String {
    let out = TestCommand::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-o", "link", "show", "lo"])
        .run();
    out.assert_success();
    out.stdout.clone()
}

/// The run's network namespace is made by init's network helper beside
/// the mounts (not by cordon's clone): checked on the host, the command is
/// in a network namespace other than cordon's, the same as init's, with
/// its loopback up (which only a holder of capabilities in the namespace's
/// owning user namespace could do: the sandbox's own), and no process of
/// the run is left in any other network namespace (the helper is gone).
/// Control: in dev mode the same command is in cordon's namespace, and a
/// fresh namespace's loopback is down.
#[test]
fn the_command_runs_in_a_network_namespace_of_the_runs_own() {
    let support = kernel_support();
    let own = netns_of(std::process::id());
    let fresh = TestCommand::new("unshare").args(["--net", "--", "ip", "-o", "link", "show", "lo"]).run();
    assert!(
        !fresh.assert_success().stdout.contains(",UP"),
        "control: a fresh namespace's lo is down: {}",
        fresh.stdout
    );

    let start = |mode: Mode| {
        let marker = unique_sleep_marker();
        let cordon = run_in(mode).args(["--", "sleep", &marker]).spawn_without_output();
        let mut found = vec![];
        let started = poll_until(Duration::from_secs(20), || {
            found = processes_with_argv(&["sleep", &marker]);
            found.len() == 1
        });
        assert!(started, "[{}] `sleep {marker}` never ran", mode.as_str());
        (cordon, found[0])
    };
    let stop = |mut cordon: cordon_testkit::Spawned| {
        let _ = cordon.kill();
        let _ = cordon.wait();
    };

    let (cordon, command) = start(Mode::Dev);
    let in_dev = netns_of(command);
    stop(cordon);
    assert_eq!(in_dev, own, "control: a dev-mode command is in cordon's network namespace");

    each_mode(sandbox_modes!(support), |mode| {
        let (cordon, command) = start(mode);
        let netns = netns_of(command);
        let init = parent_of(command);
        let init_netns = netns_of(init);
        let run: Vec<(u32, String)> = children_of(init).into_iter().map(|p| (p, netns_of(p))).collect();
        let lo = loopback_in(command);
        stop(cordon);
        assert_ne!(netns, own, "[{}] the command is in cordon's network namespace", mode.as_str());
        assert_eq!(init_netns, netns, "[{}] init is not in the command's network namespace", mode.as_str());
        assert!(run.iter().any(|(p, _)| *p == command), "[{}] the command is not init's child: {run:?}", mode.as_str());
        assert!(run.iter().all(|(_, n)| *n == netns), "[{}] a process of the run is elsewhere: {run:?}", mode.as_str());
        assert!(lo.contains("<LOOPBACK,UP,LOWER_UP>"), "[{}] loopback is not up: {lo}", mode.as_str());
    });
}
