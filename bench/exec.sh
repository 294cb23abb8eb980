#!/usr/bin/env bash
# What `cordon exec` costs over `cordon run` of the same command: a trivial
# shell handler (`sh -c 'echo {} >&$CORDON_RESULT_FD'`, which under `run`
# writes to stdout), median of each side by side in one hyperfine run, per
# mode. Target: exec adds at most 2 ms.
#
# exec does on top of run: read and validate cordon.toml, resolve the
# handler, narrow the policy, plan once more for the ledger check, create
# the run folder (artifacts, input file), collect artifacts, and start the
# handler through `sh -c 'exec "$@" <input'` (the input redirect; see
# crates/cordon/src/plugin.rs). Both sides write their audit record
# (fdatasync) to a temporary log.
#
# The machine may be shared: load that comes and goes would favour
# whichever command ran in a quiet moment. So the runs are split into
# ROUNDS hyperfine runs (each command side by side in every round) and the
# medians are taken over the pooled times of all rounds.
#
# usage: bench/exec.sh [RUNS] [ROUNDS]   (default 300 runs per command, in 6 rounds)
# needs: hyperfine (apt-get install hyperfine) and a release build
#        (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-300}
ROUNDS=${2:-6}
CORDON=${CORDON:-$PWD/target/x86_64-unknown-linux-musl/release/cordon}
for tool in hyperfine "$CORDON"; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install hyperfine; cargo build --release)" >&2; exit 2; }
done

WORK=$(mktemp -d /var/tmp/cordon-bench-exec.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/plugin"
cat > "$WORK/plugin/cordon.toml" <<'TOML'
id = "@bench/trivial"
version = "1.0.0"
[handlers.main]
command = ["sh", "-c", "echo {} >&${CORDON_RESULT_FD:-1}"]
TOML
export CORDON_AUDIT_LOG=$WORK/audit.jsonl CORDON_ARTIFACT_STORE=$WORK/artifacts
CMD=(sh -c 'echo {} >&${CORDON_RESULT_FD:-1}')

PER_ROUND=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    hyperfine -N --warmup 10 --runs "$PER_ROUND" --export-json "$WORK/r$round.json" \
        -n run-process "$CORDON run --mode process --cwd $WORK/plugin --read $WORK/plugin -- ${CMD[0]} ${CMD[1]} '${CMD[2]}'" \
        -n exec-process "$CORDON exec $WORK/plugin main --mode process" \
        -n run-container "$CORDON run --mode container --cwd $WORK/plugin --read $WORK/plugin -- ${CMD[0]} ${CMD[1]} '${CMD[2]}'" \
        -n exec-container "$CORDON exec $WORK/plugin main --mode container" >/dev/null
done

python3 - "$WORK"/r*.json <<'PY'
import json, statistics, sys
times = {}
for f in sys.argv[1:]:
    for x in json.load(open(f))["results"]:
        times.setdefault(x["command"], []).extend(t * 1000 for t in x["times"])
med = {k: statistics.median(v) for k, v in times.items()}
print(f"{'command':<16} {'runs':>5} {'median ms':>10} {'mean ms':>10} {'stddev':>8}")
for k, v in times.items():
    print(f"{k:<16} {len(v):>5} {med[k]:>10.3f} {statistics.mean(v):>10.3f} {statistics.stdev(v):>8.3f}")
print()
for mode in ("process", "container"):
    d = med[f"exec-{mode}"] - med[f"run-{mode}"]
    print(f"exec over run, {mode:<9}: {d:+.3f} ms (target <= 2.0 ms) {'ok' if d <= 2.0 else 'OVER'}")
PY
