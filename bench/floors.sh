#!/usr/bin/env bash
# What this host allows at best, next to what cordon does, in one run:
#
# 1. Startup: bare /bin/true; a static C launcher (floors/ns_floor.c) that
#    only clones and starts /bin/true; the same launcher creating the
#    namespaces process mode needs (user, pid, net with loopback up, mount
#    with /proc, /tmp and /dev/shm, ipc) and nothing else; a static client
#    of a warm server that starts /bin/true for it (floors/warm_floor.c, the
#    floor of any zygote design), and the same client in Rust
#    (floors/warm_client.rs); `cordon run --mode process -- /bin/true`;
#    and the cost of one audit-sized O_APPEND write + fdatasync next to the
#    audit log, which every run pays.
# 2. Relaying: a 256 MiB loopback download with curl directly, through a
#    C relay with read/write and with splice(2) (floors/relay_floor.c, no
#    protocol, no policy), and through cordon's proxy (CONNECT), with how
#    busy the CPUs were during the direct download.
#
# usage: bench/floors.sh [RUNS] [DOWNLOADS]   (default 300 launches, 7 downloads)
# needs: cc with static glibc (libc6-dev), rustc, hyperfine, curl, a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-300}
DOWNLOADS=${2:-7}
CORDON=${CORDON:-$PWD/target/x86_64-unknown-linux-musl/release/cordon}
for tool in cc hyperfine curl "$CORDON"; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install gcc libc6-dev hyperfine curl; cargo build --release)" >&2; exit 2; }
done
cargo build --release -q -p cordon-egress --example bench_proxy
BIN=target/x86_64-unknown-linux-musl/release/examples/bench_proxy
OUT=$(mktemp -d)
PIDS=()
cleanup() {
    exec 3>&- 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT
export CORDON_AUDIT_LOG=$OUT/audit.jsonl
cc -O2 -static -o "$OUT/ns_floor" bench/floors/ns_floor.c
cc -O2 -static -o "$OUT/warm_floor" bench/floors/warm_floor.c
rustc --edition 2021 -C opt-level=3 -C panic=abort -o "$OUT/warm_client" bench/floors/warm_client.rs
cc -O2 -pthread -o "$OUT/relay_floor" bench/floors/relay_floor.c

# $1 a test(1) flag, $2 a path: waits until `test $1 $2` holds.
wait_for() { for _ in $(seq 200); do test "$1" "$2" && return; sleep 0.05; done; echo "timed out: $2" >&2; exit 1; }
"$OUT/warm_floor" serve "$OUT/warm.sock" &
PIDS+=($!)
wait_for -S "$OUT/warm.sock"

echo "== startup ($(nproc) CPUs, $RUNS runs each)"
hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$OUT/start.json" \
    -n bare /bin/true \
    -n launcher "$OUT/ns_floor" \
    -n launcher+namespaces "$OUT/ns_floor upnmi" \
    -n warm-server-client "$OUT/warm_floor $OUT/warm.sock" \
    -n warm-server-rust-client "$OUT/warm_client $OUT/warm.sock" \
    -n cordon-process "$CORDON run --mode process -- /bin/true" >/dev/null 2>&1
python3 - "$OUT/start.json" <<'PY'
import json, sys
r = {x["command"]: x["median"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
for k, v in r.items():
    print(f"{k:<24} {v:7.3f} ms   {v - r['bare']:+.3f} ms over bare")
PY
python3 - "$OUT/sync-probe" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
line, n = b"x" * 511 + b"\n", 200
t = time.perf_counter()
for _ in range(n):
    os.write(fd, line)
    os.fdatasync(fd)
print(f"{'append+fdatasync':<24} {(time.perf_counter() - t) / n * 1000:7.3f} ms   (one audit record, on the disk of $TMPDIR)")
PY
start() { # $1 output file, rest: command printing its port
    local out=$1; shift
    "$@" >"$out" &
    PIDS+=($!)
    wait_for -s "$out"
}
start "$OUT/server" "$BIN" serve
SRV=$(cat "$OUT/server")
start "$OUT/copy" "$OUT/relay_floor" "$SRV" copy
start "$OUT/splice" "$OUT/relay_floor" "$SRV" splice
mkfifo "$OUT/proxy.in"
"$BIN" proxy "127.0.0.1:$SRV" <"$OUT/proxy.in" >"$OUT/proxy" 2>/dev/null &
PIDS+=($!)
exec 3>"$OUT/proxy.in"
wait_for -s "$OUT/proxy"
PROXY=$(cat "$OUT/proxy")

URL=/bytes/$((256 * 1024 * 1024))
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# Busy share of all CPUs while one download runs, from /proc/stat.
busy() {
    local a b
    a=($(head -1 /proc/stat))
    "$@" >/dev/null
    b=($(head -1 /proc/stat))
    awk -v a="${a[*]}" -v b="${b[*]}" 'BEGIN { split(a, x); split(b, y)
        for (i = 2; i <= 11; i++) { d = y[i] - x[i]; t += d; if (i == 5 || i == 6) idle += d }
        printf "%.0f", 100 * (t - idle) / t }'
}
download() { # $1 name, rest: curl options
    local name=$1; shift
    local speed
    speed=$(for _ in $(seq "$DOWNLOADS"); do curl -s -o /dev/null -w '%{speed_download}\n' "$@"; done | median)
    echo "$name $speed" >>"$OUT/relay"
}
echo
echo "== 256 MiB loopback download, median of $DOWNLOADS"
download direct "http://127.0.0.1:$SRV$URL"
download relay-copy "http://127.0.0.1:$(cat "$OUT/copy")$URL"
download relay-splice "http://127.0.0.1:$(cat "$OUT/splice")$URL"
download cordon-proxy -p -x "http://127.0.0.1:$PROXY" "http://127.0.0.1:$SRV$URL"
awk 'NR == 1 { d = $2 } { printf "%-14s %7.0f MiB/s  %5.1f%% of direct\n", $1, $2 / 1048576, 100 * $2 / d }' "$OUT/relay"
echo "CPUs busy during a direct download: $(busy curl -s -o /dev/null "http://127.0.0.1:$SRV$URL")% of $(nproc)"
