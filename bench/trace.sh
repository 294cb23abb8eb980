#!/usr/bin/env bash
# Where one run's time goes: CORDON_TRACE=1 step timings (cordon's own marks,
# and the sandbox's setup steps timed inside the child), median of each step
# over RUNS runs of a command.
#
# usage: bench/trace.sh [RUNS] [-- CORDON-ARGS...]
#        (default: 200 runs of `cordon run --mode container -- /bin/true`)
# e.g.   bench/trace.sh 300 -- run --mode dev -- /bin/true
# needs: python3 and a release build (cargo build --release).
#
# The audit record of each run goes to a temporary log, with its fsync, so
# its cost is in the figures. The steps' medians do not add up to the
# median run: every step has its own distribution.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
shift || true
[ "${1:-}" = "--" ] && shift
CORDON=${CORDON:-$PWD/target/x86_64-unknown-linux-musl/release/cordon}
command -v "$CORDON" >/dev/null || { echo "missing $CORDON (cargo build --release)" >&2; exit 2; }
[ $# -gt 0 ] || set -- run --mode container -- /bin/true

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export CORDON_AUDIT_LOG=$OUT/audit.jsonl
python3 - "$RUNS" "$CORDON" "$@" <<'PY'
import os, re, statistics, subprocess, sys
runs, cmd = int(sys.argv[1]), sys.argv[2:]
env = dict(os.environ, CORDON_TRACE="1")
steps, order = {}, []
line = re.compile(r"cordon: trace:\s+[\d.]+ ms\s+\+([\d.]+) ms\s+(.*)")
for _ in range(runs):
    err = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True).stderr
    for m in filter(None, map(line.match, err.splitlines())):
        if m.group(2) not in steps:
            steps[m.group(2)] = []
            order.append(m.group(2))
        steps[m.group(2)].append(float(m.group(1)))
print(f"{' '.join(cmd[1:])}: {runs} runs, median (p90) per step, ms")
for name in order:
    v = sorted(steps[name])
    print(f"{statistics.median(v):8.3f} ({v[int(0.9 * (len(v) - 1))]:7.3f})  {name}")
PY
