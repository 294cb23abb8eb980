#!/usr/bin/env bash
# What the audit record costs a run: `cordon run --mode dev -- /bin/true`
# (no sandbox, so the audit trail is much of cordon's own work) of this
# build next to a baseline build, both in one hyperfine run, rounds in
# alternating order, with each build's log and key on this disk and then on
# a tmpfs; then the durable writes and file-system calls of one run of
# each, counted by strace.
#
# usage: BASE=/path/to/other/cordon bench/audit.sh [RUNS] [ROUNDS]
#        (default 300 runs per command and round, 2 rounds: A,B then B,A)
# needs: hyperfine, strace, and release builds of both.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-300}
ROUNDS=${2:-2}
CORDON=${CORDON:-$PWD/target/x86_64-unknown-linux-musl/release/cordon}
BASE=${BASE:?set BASE to the baseline cordon binary, e.g. main built elsewhere}
for tool in hyperfine strace "$CORDON" "$BASE"; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done

OUT=$(mktemp -d /var/tmp/cordon-bench-audit.XXXXXX)
unset CORDON_AUDIT_LOG CORDON_TRACE
# Twice: the logs on this disk (the real cost, fdatasync included), then on
# a tmpfs (/dev/shm), where fdatasync is free and what is left is the
# rest of the audit work.
SHM=$(mktemp -d /dev/shm/cordon-bench-audit.XXXXXX)
trap 'rm -rf "$OUT" "$SHM"' EXIT
for where in disk tmpfs; do
    dir=$OUT; [ "$where" = tmpfs ] && dir=$SHM
    export XDG_STATE_HOME=$dir/state
    this="$CORDON run --mode dev --audit-log $dir/this.jsonl -- /bin/true"
    base="$BASE run --mode dev --audit-log $dir/base.jsonl -- /bin/true"
    for round in $(seq 1 "$ROUNDS"); do
        if [ $((round % 2)) = 1 ]; then order=("$this" "$base"); names=(this base); else order=("$base" "$this"); names=(base this); fi
        hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$OUT/$where-$round.json" \
            -n "${names[0]}" "${order[0]}" -n "${names[1]}" "${order[1]}" >&2
    done
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, sys, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
for where in ("disk", "tmpfs"):
    med = {"this": [], "base": []}
    for i in range(1, rounds + 1):
        for x in json.load(open(f"{out}/{where}-{i}.json"))["results"]:
            med[x["command"]].append(x["median"] * 1000)
    print(f"log on {where}:")
    for k in ("base", "this"):
        print(f"  {k:<5} median per round (ms): " + ", ".join(f"{m:.3f}" for m in med[k]))
    b, t = statistics.median(med["base"]), statistics.median(med["this"])
    print(f"  this / base = {t / b:.3f}   ({t - b:+.3f} ms per run)")
PY
export XDG_STATE_HOME=$OUT/state

echo
echo "file-system calls of one run on an existing log (strace -f -c):"
for which in base this; do
    bin=$BASE; [ "$which" = this ] && bin=$CORDON
    "$bin" run --mode dev --audit-log "$OUT/strace-$which.jsonl" -- /bin/true 2>/dev/null
    strace -f -c -e trace=fsync,fdatasync,rename,renameat2,unlink,unlinkat,mkdir,getdents64,flock,fcntl,ftruncate,pwrite64 \
        "$bin" run --mode dev --audit-log "$OUT/strace-$which.jsonl" -- /bin/true 2>&1 >/dev/null \
        | awk -v w="$which" '/^------/ {n++; next} n==1 && NF>=5 {printf "  %-5s %-12s %s\n", w, $NF, $4}'
done
