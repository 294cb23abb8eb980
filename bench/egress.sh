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
export CORDON_AUDIT_LOG=$OUT/audit.jsonl # keep the runs out of the user's audit log
SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$OUT"' EXIT
cc -O2 -pthread -o "$OUT/server" bench/egress/server.c
cc -O2 -o "$OUT/client" bench/egress/client.c
"$OUT/server" >"$OUT/port" &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$OUT/port" ] && break; sleep 0.05; done
PORT=$(cat "$OUT/port")
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

PATHS="direct process container proxy"
# $1 path, then the client's arguments.
client() {
    local path=$1; shift
    case $path in
        direct) "$OUT/client" "$@" ;;
        process | container)
            "$CORDON" run --mode "$path" --read "$OUT" --net "127.0.0.1:$PORT" -- "$OUT/client" "$@" ;;
        proxy) "$CORDON" run --mode process --net-via proxy --read "$OUT" --net "127.0.0.1:$PORT" -- "$OUT/client" "$@" ;;
    esac
}

for round in $(seq "$RUNS"); do
    for path in $PATHS; do
        client "$path" download 127.0.0.1 "$PORT" $((256 << 20)) >>"$OUT/256.$path"
        client "$path" download 127.0.0.1 "$PORT" $((1 << 30)) >>"$OUT/1024.$path"
        client "$path" connect 127.0.0.1 "$PORT" 200 >>"$OUT/conn.$path"
    done
    echo "round $round of $RUNS done" >&2
done

printf '%-10s %14s %14s %16s\n' path "256 MiB (MB/s)" "1 GiB (MB/s)" "new connection"
for path in $PATHS; do
    printf '%-10s %14.0f %14.0f %13.1f us\n' "$path" "$(median <"$OUT/256.$path")" "$(median <"$OUT/1024.$path")" \
        "$(median <"$OUT/conn.$path")"
done
echo
d256=$(median <"$OUT/256.direct"); d1g=$(median <"$OUT/1024.direct"); dconn=$(median <"$OUT/conn.direct")
for path in process container proxy; do
    awk -v p="$path" -v a="$(median <"$OUT/256.$path")" -v b="$(median <"$OUT/1024.$path")" \
        -v c="$(median <"$OUT/conn.$path")" -v da="$d256" -v db="$d1g" -v dc="$dconn" \
        'BEGIN { printf "%-10s 256 MiB %5.1f%% of direct, 1 GiB %5.1f%% of direct, %+6.1f us per new connection\n", p, 100 * a / da, 100 * b / db, c - dc }'
done
