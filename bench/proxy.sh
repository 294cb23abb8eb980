#!/usr/bin/env bash
# Cost of cordon's egress proxy on loopback, measured with curl against a
# local server: a 256 MiB download directly vs through the proxy (HTTP
# forward and CONNECT), and the time to first byte of a small response
# (median of RUNS) directly vs through each proxy path.
#
# usage: bench/proxy.sh [RUNS] [DOWNLOADS]
#        RUNS small requests per path (default 101), DOWNLOADS 256 MiB
#        downloads per path (default 5; the median is reported)
# needs: curl; builds the cordon-egress example `bench_proxy` in release.
#        With socat installed, a plain TCP relay (no policy, no protocol)
#        is measured too, as a reference for what any userspace relay costs.
# The server and the proxy run as separate processes, like cordon's
# supervisor and a remote server. On a 2-core machine curl, proxy and
# server share the cores, so loopback throughput through any relay is far
# below direct; the proxy's CPU time per MiB says what it costs on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-101}
DOWNLOADS=${2:-5}
SIZE=$((256 * 1024 * 1024))
command -v curl >/dev/null || { echo "missing curl (apt-get install curl)" >&2; exit 2; }
cargo build --release -q -p cordon-egress --example bench_proxy
BIN=target/x86_64-unknown-linux-musl/release/examples/bench_proxy

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
# CPU time (user + system, in clock ticks) used so far by a process.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "server 127.0.0.1:$SRV, proxy 127.0.0.1:$PROXY ($(nproc) CPUs)"
echo
echo "256 MiB download, median of $DOWNLOADS (curl speed_download):"
paths=(direct forward connect)
SOCAT_PID=
if command -v socat >/dev/null; then
    socat -b 1048576 TCP-LISTEN:0,bind=127.0.0.1,reuseaddr,fork "TCP:127.0.0.1:$SRV" &
    SOCAT_PID=$!
    for _ in $(seq 100); do
        RELAY=$(ss -ltnpH 2>/dev/null | awk -v pid="pid=$SOCAT_PID," 'index($0, pid) { n = split($4, a, ":"); print a[n] }')
        [ -n "$RELAY" ] && break
        sleep 0.05
    done
    relay=(curl -s -o /dev/null --connect-to "127.0.0.1:$SRV:127.0.0.1:$RELAY")
    paths+=(relay)
fi
for path in "${paths[@]}"; do : >"$OUT/tp.$path"; echo 0 >"$OUT/cpu.$path"; done
for _ in $(seq "$DOWNLOADS"); do
    # Interleaved, so drift in machine load hits every path alike.
    for path in "${paths[@]}"; do
        declare -n cmd=$path
        before=$(ticks "$PROXY_PID")
        "${cmd[@]}" -w '%{speed_download} %{size_download}\n' "http://127.0.0.1:$SRV/bytes/$SIZE" >>"$OUT/tp.$path"
        echo $(( $(cat "$OUT/cpu.$path") + $(ticks "$PROXY_PID") - before )) >"$OUT/cpu.$path"
    done
done
[ -n "$SOCAT_PID" ] && kill "$SOCAT_PID"
for path in "${paths[@]}"; do
    awk -v want=$SIZE '$2 != want { print "short download: " $0 > "/dev/stderr"; exit 1 }' "$OUT/tp.$path"
done
TP_DIRECT=$(cut -d' ' -f1 "$OUT/tp.direct" | median)
printf '  %-34s %8.0f MiB/s\n' "direct" "$(calc "$TP_DIRECT / 1048576")"
for path in "${paths[@]:1}"; do
    tp=$(cut -d' ' -f1 "$OUT/tp.$path" | median)
    case $path in
        forward) label="through proxy, HTTP forward" ;;
        connect) label="through proxy, CONNECT" ;;
        relay) label="reference: socat TCP relay" ;;
    esac
    printf '  %-34s %8.0f MiB/s   %5.1f%% of direct' "$label" "$(calc "$tp / 1048576")" "$(calc "100 * $tp / $TP_DIRECT")"
    if [ "$path" != relay ]; then
        # Proxy CPU per MiB relayed, and the rate one core could relay at.
        ms=$(calc "1000 * $(cat "$OUT/cpu.$path") / $HZ / ($DOWNLOADS * 256)")
        printf '   proxy CPU %.3f ms/MiB (one core relays %.0f MiB/s)' "$ms" "$(calc "1000 / $ms")"
    fi
    echo
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
