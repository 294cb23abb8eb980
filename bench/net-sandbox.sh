#!/usr/bin/env bash
# Network through a whole sandbox, side by side: a 256 MiB download and the
# time to first byte of a small response (as curl itself measures them),
# directly on the host, inside `cordon run --net` (both modes), and inside
# Anthropic's sandbox-runtime (`srt`, npm @anthropic-ai/sandbox-runtime) when
# it is installed: set SRT=/path/to/node_modules/.bin/srt.
#
# usage: bench/net-sandbox.sh [RUNS]    (default 9 downloads, 51 small requests per path)
# needs: curl, a release build; for srt also bubblewrap, socat and ripgrep.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-9}
SMALL=51
CORDON=${CORDON:-$PWD/target/x86_64-unknown-linux-musl/release/cordon}
cargo build --release -q -p cordon-egress --example bench_proxy
BIN=target/x86_64-unknown-linux-musl/release/examples/bench_proxy
OUT=$(mktemp -d)
export CORDON_AUDIT_LOG=$OUT/audit.jsonl # keep the runs out of the user's audit log
SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$OUT"' EXIT
"$BIN" serve >"$OUT/port" &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$OUT/port" ] && break; sleep 0.05; done
SRV=$(cat "$OUT/port")
BIG="http://127.0.0.1:$SRV/bytes/$((256 * 1024 * 1024))"
TINY="http://127.0.0.1:$SRV/bytes/16"
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# $1 name; the rest: a command prefix that runs `sh -c SCRIPT`.
measure() {
    local name=$1; shift
    local speed ttfb
    speed=$("$@" "for i in \$(seq $RUNS); do curl -s -p -o /dev/null -w '%{speed_download}\n' $BIG; done" | median)
    ttfb=$("$@" "for i in \$(seq $SMALL); do curl -s -p -o /dev/null -w '%{time_starttransfer}\n' $TINY; done" | median)
    printf '%-22s %10.0f MiB/s %10.3f ms\n' "$name" "$(awk "BEGIN{print $speed/1048576}")" "$(awk "BEGIN{print $ttfb*1000}")"
    echo "$name $speed $ttfb" >>"$OUT/results"
}

printf '%-22s %16s %13s\n' path "256 MiB download" "TTFB (median)"
# Direct: no proxy (-p without a proxy is ignored).
measure direct sh -c
measure cordon-process "$CORDON" run --mode process --net "127.0.0.1:$SRV" -- sh -c
measure cordon-container "$CORDON" run --mode container --net "127.0.0.1:$SRV" -- sh -c
if [ -n "${SRT:-}" ] && [ -x "$SRT" ]; then
    cat >"$OUT/srt.json" <<JSON
{"network": {"allowedDomains": ["127.0.0.1"], "deniedDomains": []}, "filesystem": {"denyRead": [], "allowWrite": [], "denyWrite": []}}
JSON
    # srt exempts loopback from its proxy (no_proxy); --noproxy '' sends it through.
    srt_sh() { "$SRT" -s "$OUT/srt.json" -c "$(printf '%s' "$1" | sed "s/curl -s -p/curl -s --noproxy ''/g")"; }
    measure srt srt_sh
fi
echo
awk 'NR == 1 { s = $2; t = $3 } NR > 1 { printf "%-22s throughput %5.1f%% of direct, TTFB %+.3f ms\n", $1, 100 * $2 / s, ($3 - t) * 1000 }' "$OUT/results"
