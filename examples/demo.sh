#!/bin/sh
# Cordon's built-in example: what a sandboxed command can and cannot do.
# Run it with (see README.md):
#   cargo run --release -q -p cordon-cli -- run --read examples -- examples/demo.sh
try() { # try DESCRIPTION COMMAND...: run it, print allowed/denied and the reason
    desc=$1; shift
    if out=$("$@" 2>&1); then echo "  allowed  $desc"; else echo "  denied   $desc: $(echo "$out" | tail -n1)"; fi
}
echo "inside the sandbox: pid $$, host name $(hostname), uid $(id -u)"
echo "processes visible: $(ls /proc | grep -c '^[0-9]')"
try "read /etc/os-release (system set)" cat /etc/os-release
try "read /etc/shadow" cat /etc/shadow
try "list /root" ls /root
try "write to /usr" touch /usr/cordon-was-here
try "write to \$TMPDIR ($TMPDIR)" sh -c 'echo hi > "$TMPDIR/scratch" && cat "$TMPDIR/scratch"'
try "connect to 1.1.1.1:53" python3 -c 'import socket; socket.create_connection(("1.1.1.1", 53), timeout=2)'
try "mount a tmpfs" sh -c 'unshare -m true'
try "see a capability" sh -c 'grep -q "CapEff:.*[1-9a-f]" /proc/self/status'
echo "environment: $(env | cut -d= -f1 | sort | tr '\n' ' ')"
