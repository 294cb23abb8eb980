//! Network: no route out, not even to the host's loopback.

use std::net::{TcpListener, TcpStream};

use cordon_testkit::{each_mode, kernel_support, sandbox_modes, Mode};

use super::{run_in, tool};

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
