#!/usr/bin/env bash
# Scale-out (issue 15): `cordon serve --queue` with 1, 2, 4 and 8 `cordon
# worker`s (SLOTS sandboxes each) on one NATS JetStream node, against the
# ideal (N x the 1-worker figure of the same series), and the single-host
# path (`cordon serve` without --queue) against another binary ($BASE, e.g.
# main's) in the same run.
#
# Each case: REQUESTS executions of a handler that sleeps 20 ms, sent by
# 64 concurrent clients through /internal/dispatch, each waiting for its
# result; executions/s over the whole batch and p50/p99 of submit -> result.
# Every response must be a 200 with ok: true (the script fails otherwise).
#
# Method. On one host every worker shares the same cores, and each sandbox
# costs ~12 ms of CPU (namespaces, mounts, exec): past the core count the
# unconstrained series measures the machine, not the queue. So the script
# runs the series twice:
#
#   - "budget": each worker (and every sandbox it starts, which stays in
#     the worker's cpu cgroup: cordon puts runs in memory/pids/cpuacct
#     cgroups only) gets its own CPU budget, CPU_PER_WORKER of one core,
#     in a cgroup below the script's own (v1 cpu.cfs_quota_us, or v2
#     cpu.max, with a 10 ms period). That emulates workers on separate
#     small hosts: the ideal is N x one budgeted worker, and the budget is
#     sized so that 8 workers (8 x 0.1 = 0.8 cores) leave the gateway, NATS
#     and the load generator 1.2 of 2 cores (if they need more, the 8-worker
#     figure measures them: lower CPU_PER_WORKER). This series answers "does
#     the queue scale?" (issue 15: >= 80 % of linear at 8 workers).
#   - "free": the same without budgets (what one host does).
#
# The script checks that a sandbox of a budgeted worker is in the worker's
# cpu cgroup (a run's cgroup escaping the budget would make the figure
# meaningless) and fails otherwise. Where no cpu controller can be
# delegated below the script's cgroup, the budget series is skipped with
# the reason. SCALE-OUT.md §2.2 measured dispatch alone (a simulated
# sandbox) at 84 % of linear for 8 workers.
#
# usage: bench/queue.sh [REQUESTS] [SLOTS]   (default 400 requests, 4 slots per worker)
# env:   CPU_PER_WORKER (default 0.1 cores), BASE (another cordon binary for
#        the single-host comparison, e.g. main's), CORDON, NATS.
# needs: nats-server (apt-get install nats-server), python3, a release build, root.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-400}
SLOTS=${2:-4}
CORDON=${CORDON:-$PWD/target/x86_64-unknown-linux-musl/release/cordon}
BASE=${BASE:-}
CPU_PER_WORKER=${CPU_PER_WORKER:-0.1}
NATS=${NATS:-/usr/sbin/nats-server}
for tool in python3 "$CORDON" "$NATS"; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nats-server python3; cargo build --release)" >&2; exit 2; }
done

WORK=$(mktemp -d /var/tmp/cordon-bench-queue.XXXXXX)
PIDS=()
CG=
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "$CG" ]; then
        for d in "$CG"/*/; do [ -d "$d" ] && rmdir "$d" 2>/dev/null || true; done
        rmdir "$CG" 2>/dev/null || echo "could not remove $CG" >&2
    fi
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
    "${SERVE_BIN:-$CORDON}" serve --config "$dir/config.toml" --listen 127.0.0.1:0 "$@" 2> "$dir/serve.log" &
    PIDS+=($!)
    for _ in $(seq 200); do
        ADDR=$(grep -so 'listening on http://[0-9.:]*' "$dir/serve.log" | sed 's|.*http://||' || true)
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

# The cgroup below ours where the budgets go: v1 cpu hierarchy, or v2 with
# the cpu controller delegable. Sets CG (empty: no budgets, with a reason).
budget_root() {
    local own mnt line
    line=$(grep -E '^[0-9]+:([^:]*,)?cpu(,[^:]*)?:' /proc/self/cgroup || true)
    if [ -n "$line" ]; then
        own=${line##*:}
        mnt=$(awk '$3 == "cgroup" && $4 ~ /(^|,)cpu(,|$)/ { print $2; exit }' /proc/self/mounts)
        [ -n "$mnt" ] || { NO_BUDGET="no cgroup v1 cpu mount"; return; }
        CG="$mnt${own%/}/cordon-bench-queue-$$"
        mkdir "$CG" || { CG=; NO_BUDGET="cannot create a cgroup below $mnt$own"; return; }
        CGV=1
        return
    fi
    own=$(sed -n 's/^0:://p' /proc/self/cgroup)
    mnt=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
    if [ -n "$mnt" ] && grep -qw cpu "$mnt$own/cgroup.subtree_control" 2>/dev/null; then
        CG="$mnt${own%/}/cordon-bench-queue-$$"
        mkdir "$CG" && echo +cpu > "$CG/cgroup.subtree_control" || { CG=; NO_BUDGET="cannot delegate cpu below $mnt$own"; return; }
        CGV=2
        return
    fi
    NO_BUDGET="the cpu controller is not delegated to this cgroup ($mnt$own)"
}

# Starts worker $1 (budgeted when $2 = budget) for the series in $3.
start_worker() {
    local i=$1 mode=$2 dir="$WORK/$3-w$1" cg=
    config "$dir" "$SLOTS"
    if [ "$mode" = budget ]; then
        cg="$CG/w$i"
        mkdir -p "$cg"
        local quota
        quota=$(python3 -c "print(int($CPU_PER_WORKER * 10000))")
        if [ "$CGV" = 1 ]; then
            echo 10000 > "$cg/cpu.cfs_period_us"
            echo "$quota" > "$cg/cpu.cfs_quota_us"
        else
            echo "$quota 10000" > "$cg/cpu.max"
        fi
    fi
    # The worker joins its cgroup before exec, so it and its sandboxes
    # are in it from the start.
    CG_JOIN="$cg" "$BASH" -c '[ -z "$CG_JOIN" ] || echo $$ > "$CG_JOIN/cgroup.procs"; exec "$@"' worker \
        "$CORDON" worker --queue "nats://127.0.0.1:$PORT" --config "$dir/config.toml" \
        --name "w$i" --slots "$SLOTS" "${KEY[@]}" 2> "$dir/worker.log" &
    PIDS+=($!)
    WORKER_PIDS+=($!)
    for _ in $(seq 100); do grep -qs pulling "$dir/worker.log" && break; sleep 0.1; done
    grep -qs pulling "$dir/worker.log" || {
        echo "worker w$i did not start:" >&2; cat "$dir/worker.log" >&2; exit 1
    }
}

stop_workers() {
    for p in "${WORKER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${WORKER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    WORKER_PIDS=()
}

# Fails unless some sandbox started by budgeted worker 1 sits in w1's cpu
# cgroup (polled while a batch runs).
check_nesting() {
    local found=
    for _ in $(seq 200); do
        for p in $(cat "$CG/w1/cgroup.procs" 2>/dev/null); do
            [ "$p" = "${WORKER_PIDS[0]}" ] && continue
            # A process in w1's cpu cgroup running the handler: a sandbox.
            if grep -qs "sleep" "/proc/$p/cmdline"; then found=$p; break 2; fi
        done
        sleep 0.05
    done
    if [ -z "$found" ]; then
        echo "no sandbox of worker w1 found in its cpu cgroup $CG/w1: the budget would not hold" >&2
        exit 1
    fi
    echo "checked: sandbox process $found (the handler's sleep) is in w1's cpu cgroup $CG/w1" >&2
}

row() { printf '%-34s %10s %8s %8s %10s\n' "$@"; }
row case "exec/s" "p50 ms" "p99 ms" "vs ideal"

# The single-host path, SLOTS worker threads (as many as one worker has
# slots), this build against $BASE, alternated: A B A B.
config "$WORK/local" "$SLOTS"
for round in 1 2; do
    for bin in "$CORDON" ${BASE:+"$BASE"}; do
        SERVE_BIN=$bin serve "$WORK/local"
        read -r rate p50 p99 < <(load)
        label="local ($SLOTS threads)"; [ "$bin" = "$BASE" ] && label="local, BASE ($SLOTS threads)"
        row "$label #$round" "$rate" "$p50" "$p99" "-"
        kill -TERM "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
        [ "$bin" = "$BASE" ] && BASE_RATES+=("$rate") || OWN_RATES+=("$rate")
    done
done
if [ -n "$BASE" ]; then
    python3 -c "import sys; a=[float(x) for x in sys.argv[1].split()]; b=[float(x) for x in sys.argv[2].split()]; print(f'single-host path: this build / BASE = {sum(a)/sum(b):.2f} (exec/s, 2 rounds each)')" \
        "${OWN_RATES[*]}" "${BASE_RATES[*]}"
fi

"$NATS" -a 127.0.0.1 -p -1 -js -sd "$WORK/nats" 2> "$WORK/nats.log" &
PIDS+=($!)
for _ in $(seq 100); do
    PORT=$(grep -o 'client connections on 127.0.0.1:[0-9]*' "$WORK/nats.log" | sed 's/.*://' || true)
    [ -n "$PORT" ] && break
    sleep 0.1
done
config "$WORK/gateway" 1
serve "$WORK/gateway" --queue "nats://127.0.0.1:$PORT" "${KEY[@]}"

NO_BUDGET=
budget_root
WORKER_PIDS=()
SERIES=(free)
if [ -n "$CG" ]; then SERIES=(budget free); else echo "budget series skipped: $NO_BUDGET" >&2; fi
for series in "${SERIES[@]}"; do
    one=
    started=0
    for n in 1 2 4 8; do
        while [ "$started" -lt "$n" ]; do
            started=$((started + 1))
            start_worker "$started" "$series" "$series"
        done
        if [ "$series" = budget ] && [ "$n" = 1 ]; then
            check_nesting & CHECK=$!
        fi
        read -r rate p50 p99 < <(load) || { echo "the batch failed; gateway log:" >&2; tail -20 "$WORK/gateway/serve.log" >&2; exit 1; }
        if [ "$series" = budget ] && [ "$n" = 1 ]; then wait "$CHECK"; fi
        [ -z "$one" ] && one=$rate
        ratio=$(python3 -c "print(f'{$rate / ($one * $n) * 100:.0f} %')")
        label="queue $series, $n x $SLOTS slots"
        [ "$series" = budget ] && label="queue budget $CPU_PER_WORKER cpu, $n x $SLOTS"
        row "$label" "$rate" "$p50" "$p99" "$ratio"
    done
    stop_workers
done
