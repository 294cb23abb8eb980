#!/usr/bin/env bash
# `cordon serve --queue` with 1, 2, 4 and 8 `cordon worker`s (SLOTS sandboxes
# each) on one NATS JetStream node, against the ideal (linear in workers
# from the 1-worker figure), and the single-host path (`cordon serve`
# without --queue, WORKERS x SLOTS worker threads) in the same run.
#
# Each case: REQUESTS executions of a handler that sleeps 20 ms, sent by
# 64 concurrent clients through /internal/dispatch, each waiting for its
# result; executions/s over the whole batch and p50/p99 of submit -> result.
# Every response must be a 200 with ok: true (the script fails otherwise).
#
# On one host all workers share its cores, so past the core count the
# scaling measured here is the machine's, not the queue's: run workers on
# separate hosts for the real figure (SCALE-OUT.md §2.2 measured the queue
# alone at 84 % of linear for 8 workers with 20 ms executions).
#
# usage: bench/queue.sh [REQUESTS] [SLOTS]   (default 400 requests, 4 slots per worker)
# needs: nats-server (apt-get install nats-server), python3, a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-400}
SLOTS=${2:-4}
CORDON=${CORDON:-$PWD/target/release/cordon}
NATS=${NATS:-/usr/sbin/nats-server}
for tool in python3 "$CORDON" "$NATS"; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nats-server python3; cargo build --release)" >&2; exit 2; }
done

WORK=$(mktemp -d /var/tmp/cordon-bench-queue.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/plugins/nap"
cat > "$WORK/plugins/nap/cordon.toml" <<'TOML'
id = "@bench/nap"
version = "1.0.0"
[handlers.main]
command = ["sh", "-c", "sleep 0.02; echo {} >&$CORDON_RESULT_FD"]
TOML
config() { # $1: folder, $2: workers
    mkdir -p "$1"
    cat > "$1/config.toml" <<TOML
[server]
plugins = "$WORK/plugins"
audit_log = "$1/audit.jsonl"
run_root = "$1"
workers = $2
queue = 4096
[tenants.bench]
max_concurrent = 4096
rate_per_sec = 1000000
[queue]
result_keys = "$WORK/result-keys"
TOML
}
# One result signing key for every role (each host has its own in production),
# trusted for the workers w1..w8 (a key signs for the workers its files name).
"$CORDON" key gen --out "$WORK/result.key" > /dev/null 2>&1
mkdir -p "$WORK/result-keys"
for i in 1 2 3 4 5 6 7 8; do cp "$WORK/result.key.pub" "$WORK/result-keys/w$i.pub"; done
KEY=(--result-key "$WORK/result.key")
export CORDON_JWT_SECRET=$(head -c 48 /dev/urandom | base64 -w0)
export CORDON_INTERNAL_SECRET=$(head -c 48 /dev/urandom | base64 -w0)

# Starts `cordon serve ARGS...` in folder $1; sets ADDR.
serve() {
    local dir=$1; shift
    "$CORDON" serve --config "$dir/config.toml" --listen 127.0.0.1:0 "$@" 2> "$dir/serve.log" &
    PIDS+=($!)
    for _ in $(seq 200); do
        ADDR=$(grep -o 'listening on http://[0-9.:]*' "$dir/serve.log" | sed 's|.*http://||' || true)
        [ -n "$ADDR" ] && return 0
        sleep 0.1
    done
    echo "cordon serve did not start:" >&2; cat "$dir/serve.log" >&2; exit 1
}

# Sends REQUESTS executions to $ADDR; prints "exec/s p50_ms p99_ms".
load() {
    python3 - "$ADDR" "$REQUESTS" "$CORDON_INTERNAL_SECRET" <<'PY'
import http.client, json, sys, threading, time
addr, n, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host, port = addr.rsplit(":", 1)
body = json.dumps({"tenant": "bench", "plugin": "@bench/nap", "handler": "main", "wait_ms": 60000})
lat, errors, lock, todo = [], [], threading.Lock(), list(range(n))
def client():
    c = http.client.HTTPConnection(host, int(port), timeout=120)
    while True:
        with lock:
            if not todo:
                return
            todo.pop()
        t0 = time.monotonic()
        c.request("POST", "/internal/dispatch", body, {"Authorization": "Bearer " + secret, "Content-Type": "application/json"})
        r = c.getresponse(); data = r.read()
        dt = time.monotonic() - t0
        with lock:
            if r.status != 200 or not json.loads(data).get("ok"):
                errors.append((r.status, data[:200]))
            lat.append(dt)
t0 = time.monotonic()
ts = [threading.Thread(target=client) for _ in range(64)]
[t.start() for t in ts]; [t.join() for t in ts]
wall = time.monotonic() - t0
if errors:
    print("errors:", len(errors), errors[:3], file=sys.stderr); sys.exit(1)
lat.sort()
print(f"{n / wall:.1f} {lat[len(lat) // 2] * 1e3:.1f} {lat[int(len(lat) * 0.99) - 1] * 1e3:.1f}")
PY
}

printf '%-28s %10s %8s %8s %10s\n' case "exec/s" "p50 ms" "p99 ms" "vs ideal"
# The single-host path, 4 worker threads (as many slots as one worker).
config "$WORK/local" "$SLOTS"
serve "$WORK/local"
read -r rate p50 p99 < <(load)
printf '%-28s %10s %8s %8s %10s\n' "local ($SLOTS threads)" "$rate" "$p50" "$p99" "-"
kill -TERM "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

"$NATS" -a 127.0.0.1 -p -1 -js -sd "$WORK/nats" 2> "$WORK/nats.log" &
PIDS+=($!)
for _ in $(seq 100); do
    PORT=$(grep -o 'client connections on 127.0.0.1:[0-9]*' "$WORK/nats.log" | sed 's/.*://' || true)
    [ -n "$PORT" ] && break
    sleep 0.1
done
config "$WORK/gateway" 1
serve "$WORK/gateway" --queue "nats://127.0.0.1:$PORT" "${KEY[@]}"
one=
started=0
for n in 1 2 4 8; do
    while [ "$started" -lt "$n" ]; do
        started=$((started + 1))
        config "$WORK/w$started" "$SLOTS"
        "$CORDON" worker --queue "nats://127.0.0.1:$PORT" --config "$WORK/w$started/config.toml" \
            --name "w$started" --slots "$SLOTS" "${KEY[@]}" 2> "$WORK/w$started/worker.log" &
        PIDS+=($!)
        # The log appears once the background shell has opened it.
        for _ in $(seq 100); do grep -qs pulling "$WORK/w$started/worker.log" && break; sleep 0.1; done
        grep -qs pulling "$WORK/w$started/worker.log" || {
            echo "worker w$started did not start:" >&2; cat "$WORK/w$started/worker.log" >&2; exit 1
        }
    done
    read -r rate p50 p99 < <(load)
    [ -z "$one" ] && one=$rate
    ratio=$(python3 -c "print(f'{$rate / ($one * $n) * 100:.0f} %')")
    printf '%-28s %10s %8s %8s %10s\n' "queue, $n x $SLOTS slots" "$rate" "$p50" "$p99" "$ratio"
done
