#!/usr/bin/env bash
# Cost of cordon's egress proxy on loopback, measured with curl against a
# local server: a 256 MiB download directly vs through the proxy (HTTP
# forward and CONNECT), and the time to first byte of a small response
# (median of RUNS) directly vs through each proxy path.
#
# usage: bench/proxy.sh [RUNS] [DOWNLOADS]
#        RUNS small requests per path (default 101), DOWNLOADS 256 MiB
#        downloads per path (default 5; the median is reported)
# needs: curl; builds the cordon-proxy example `bench_proxy` in release.
# The server and the proxy run as separate processes, like cordon's
# supervisor and a remote server; on a 2-core machine curl, proxy and
# server share the cores, so the proxy's copy competes with both.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-101}
DOWNLOADS=${2:-5}
SIZE=$((256 * 1024 * 1024))
command -v curl >/dev/null || { echo "missing curl (apt-get install curl)" >&2; exit 2; }
cargo build --release -q -p cordon-proxy --example bench_proxy
BIN=target/release/examples/bench_proxy

OUT=$(mktemp -d)
SERVER_PID= PROXY_PID=
cleanup() {
    exec 3>&- 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -n "$PROXY_PID" ] && wait "$PROXY_PID" 2>/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT
wait_for() { for _ in $(seq 200); do [ -s "$1" ] && return; sleep 0.05; done; echo "timed out: $1" >&2; exit 1; }

"$BIN" serve >"$OUT/server.port" &
SERVER_PID=$!
wait_for "$OUT/server.port"
SRV=$(cat "$OUT/server.port")
# The proxy runs until its stdin (fd 3 here) closes. Loopback needs literal
# patterns, as in a sandbox.
mkfifo "$OUT/proxy.in"
"$BIN" proxy "127.0.0.1:$SRV" "localhost:$SRV" <"$OUT/proxy.in" >"$OUT/proxy.port" 2>"$OUT/proxy.log" &
PROXY_PID=$!
exec 3>"$OUT/proxy.in"
wait_for "$OUT/proxy.port"
PROXY=$(cat "$OUT/proxy.port")

direct=(curl -s -o /dev/null)
forward=(curl -s -o /dev/null -x "http://127.0.0.1:$PROXY")
connect=(curl -s -o /dev/null -p -x "http://127.0.0.1:$PROXY")
socks=(curl -s -o /dev/null --socks5-hostname "127.0.0.1:$PROXY")
calc() { awk "BEGIN { print $1 }"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "server 127.0.0.1:$SRV, proxy 127.0.0.1:$PROXY ($(nproc) CPUs)"
echo
echo "256 MiB download, median of $DOWNLOADS (curl speed_download):"
for path in direct forward connect; do : >"$OUT/tp.$path"; done
for _ in $(seq "$DOWNLOADS"); do
    # Interleaved, so drift in machine load hits every path alike.
    for path in direct forward connect; do
        declare -n cmd=$path
        "${cmd[@]}" -w '%{speed_download} %{size_download}\n' "http://127.0.0.1:$SRV/bytes/$SIZE" >>"$OUT/tp.$path"
    done
done
for path in direct forward connect; do
    awk -v want=$SIZE '$2 != want { print "short download: " $0 > "/dev/stderr"; exit 1 }' "$OUT/tp.$path"
done
TP_DIRECT=$(cut -d' ' -f1 "$OUT/tp.direct" | median)
printf '  %-34s %8.0f MiB/s\n' "direct" "$(calc "$TP_DIRECT / 1048576")"
for path in forward connect; do
    tp=$(cut -d' ' -f1 "$OUT/tp.$path" | median)
    label=$([ $path = forward ] && echo "through proxy, HTTP forward" || echo "through proxy, CONNECT")
    printf '  %-34s %8.0f MiB/s   %5.1f%% of direct\n' "$label" "$(calc "$tp / 1048576")" "$(calc "100 * $tp / $TP_DIRECT")"
done

echo
echo "time to first byte, 100-byte response, median of $RUNS (curl time_starttransfer):"
for path in direct forward forward_name connect socks; do : >"$OUT/ttfb.$path"; done
for _ in $(seq "$RUNS"); do
    "${direct[@]}" -w '%{time_starttransfer}\n' "http://127.0.0.1:$SRV/bytes/100" >>"$OUT/ttfb.direct"
    "${forward[@]}" -w '%{time_starttransfer}\n' "http://127.0.0.1:$SRV/bytes/100" >>"$OUT/ttfb.forward"
    "${forward[@]}" -w '%{time_starttransfer}\n' "http://localhost:$SRV/bytes/100" >>"$OUT/ttfb.forward_name"
    "${connect[@]}" -w '%{time_starttransfer}\n' "http://127.0.0.1:$SRV/bytes/100" >>"$OUT/ttfb.connect"
    "${socks[@]}" -w '%{time_starttransfer}\n' "http://localhost:$SRV/bytes/100" >>"$OUT/ttfb.socks"
done
T_DIRECT=$(median <"$OUT/ttfb.direct")
printf '  %-34s %7.3f ms\n' "direct" "$(calc "$T_DIRECT * 1000")"
for path in forward forward_name connect socks; do
    t=$(median <"$OUT/ttfb.$path")
    case $path in
        forward) label="HTTP forward (IP literal)" ;;
        forward_name) label="HTTP forward (proxy resolves name)" ;;
        connect) label="CONNECT (IP literal)" ;;
        socks) label="SOCKS5h (proxy resolves name)" ;;
    esac
    printf '  %-34s %7.3f ms   added %6.3f ms\n' "$label" "$(calc "$t * 1000")" "$(calc "($t - $T_DIRECT) * 1000")"
done

exec 3>&-
wait "$PROXY_PID"
PROXY_PID=
echo
cat "$OUT/proxy.log"
