#!/usr/bin/env bash
# Transparent egress against a direct connection, and the proxy for
# comparison: downloads of 256 MiB and 1 GiB from a sendfile(2) server on
# loopback (bench/egress/server.c), and 200 new connections one after
# another (each a 1 KiB GET), measured by the client itself
# (bench/egress/client.c), so cordon's start-up is not counted. The paths
# alternate within each round; medians over RUNS rounds.
#
# Targets (issue 11): downloads >= 95 % of direct; a new connection at most
# +150 us over direct.
#
# usage: bench/egress.sh [RUNS]     (default 7)
# needs: cc, a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-7}
CORDON=${CORDON:-$PWD/target/release/cordon}
OUT=$(mktemp -d /var/tmp/cordon-bench-egress.XXXXXX)
mkdir "$OUT/bin" "$OUT/audit"
export CORDON_AUDIT_LOG=$OUT/audit/audit.jsonl # keep the runs out of the user's audit log
SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$OUT"' EXIT
cc -O2 -pthread -o "$OUT/bin/server" bench/egress/server.c
cc -O2 -o "$OUT/bin/client" bench/egress/client.c
"$OUT/bin/server" >"$OUT/port" &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$OUT/port" ] && break; sleep 0.05; done
PORT=$(cat "$OUT/port")
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

PATHS="direct process container proxy"
# $1 path, then the client's arguments.
client() {
    local path=$1; shift
    case $path in
        direct) "$OUT/bin/client" "$@" ;;
        process | container)
            "$CORDON" run --mode "$path" --read "$OUT/bin" --cwd "$OUT/bin" --net "127.0.0.1:$PORT" -- "$OUT/bin/client" "$@" ;;
        proxy) "$CORDON" run --mode process --net-via proxy --read "$OUT/bin" --cwd "$OUT/bin" --net "127.0.0.1:$PORT" -- "$OUT/bin/client" "$@" ;;
    esac
}

for round in $(seq "$RUNS"); do
    # Rotate the starting path each round, so no path always runs first.
    set -- $PATHS
    for _ in $(seq $((round % 4))); do set -- "${@:2}" "$1"; done
    for path in "$@"; do
        client "$path" download 127.0.0.1 "$PORT" $((256 << 20)) >>"$OUT/256.$path"
        client "$path" download 127.0.0.1 "$PORT" $((1 << 30)) >>"$OUT/1024.$path"
        client "$path" connect 127.0.0.1 "$PORT" 200 >>"$OUT/conn.$path"
    done
    echo "round $round of $RUNS done" >&2
done

echo "transparent egress vs direct, $RUNS alternating rounds, medians (the machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-10s %14s %14s %16s\n' path "256 MiB (MB/s)" "1 GiB (MB/s)" "new connection"
for path in $PATHS; do
    printf '%-10s %14.0f %14.0f %13.1f us\n' "$path" "$(median <"$OUT/256.$path")" "$(median <"$OUT/1024.$path")" \
        "$(median <"$OUT/conn.$path")"
done
echo
# Ratios within each round (the same moment's noise on both sides), then
# their median: what a noisy, shared machine can still compare.
ratio() { paste "$1" "$2" | awk "{ print $3 }" | median; }
echo "per-round ratios to direct, medians (targets: downloads >= 95 %, new connection <= +150 us)"
verdict=PASS
for path in process container proxy; do
    r256=$(ratio "$OUT/256.$path" "$OUT/256.direct" '100 * $1 / $2')
    r1g=$(ratio "$OUT/1024.$path" "$OUT/1024.direct" '100 * $1 / $2')
    dconn=$(ratio "$OUT/conn.$path" "$OUT/conn.direct" '$1 - $2')
    printf '%-10s 256 MiB %5.1f %% of direct, 1 GiB %5.1f %% of direct, %+7.1f us per new connection' "$path" "$r256" "$r1g" "$dconn"
    if [ "$path" = proxy ]; then
        echo "   (for comparison; no target)"
    elif awk -v a="$r256" -v b="$r1g" -v c="$dconn" 'BEGIN { exit !(a >= 95 && b >= 95 && c <= 150) }'; then
        echo "   meets the targets"
    else
        echo "   MISSES a target"
        verdict=MISS
    fi
done
echo "verdict: $verdict"
