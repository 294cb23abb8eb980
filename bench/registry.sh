#!/usr/bin/env bash
# The registry's costs on a generated plugin of 200 files / 5 MiB (random
# bytes, so compression does not flatter the numbers), each next to the
# alternative a user would pick, in the same hyperfine runs:
#
#   install         `cordon plugin install` (unpack with every hostile check,
#                   verify the signature, fsync every file, write the lock)
#                   vs `tar xzf` of the same package into a fresh folder
#   verify (full)   `cordon plugin verify ID`: signature and every file
#                   hashed (no cache) vs `sha256sum` over the same files,
#                   the floor of any full check
#   load            what `cordon exec ID` adds over `cordon exec DIR` of the
#                   same installed folder (no registry): the per-load
#                   verification with the stamp cache warm, the default
#   load, no cache  the same with CORDON_VERIFY_CACHE=off
#
# Runs are split into ROUNDS hyperfine runs and medians are taken over
# the pooled times (the machine may be shared).
#
# usage: bench/registry.sh [RUNS] [ROUNDS]   (default 60 runs per command, in 3 rounds)
# needs: hyperfine (apt-get install hyperfine) and a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-60}
ROUNDS=${2:-3}
CORDON=${CORDON:-$PWD/target/x86_64-unknown-linux-musl/release/cordon}
for tool in hyperfine "$CORDON" sha256sum tar; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install hyperfine; cargo build --release)" >&2; exit 2; }
done

WORK=$(mktemp -d /var/tmp/cordon-bench-registry.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CORDON_HOME=$WORK/home CORDON_AUDIT_LOG=$WORK/audit.jsonl CORDON_ARTIFACT_STORE=$WORK/artifacts
SRC=$WORK/src
mkdir -p "$SRC"
cat > "$SRC/cordon.toml" <<'TOML'
id = "@bench/big"
version = "1.0.0"
[handlers.main]
command = ["/bin/sh", "-c", "echo {} >&3"]
TOML
python3 - "$SRC" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(199):  # + cordon.toml = 200 files, 5 MiB in all
    d = os.path.join(root, f"lib{i % 8}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"mod{i}.js"), "wb") as f:
        f.write(os.urandom(5 * 1024 * 1024 // 199))
PY
echo "plugin: $(find "$SRC" -type f | wc -l) files, $(du -sb "$SRC" | cut -f1) bytes" >&2
"$CORDON" key gen --out "$WORK/k" >/dev/null 2>&1
PKG=$WORK/big.tar.gz
"$CORDON" plugin pack "$SRC" --out "$PKG" >/dev/null
"$CORDON" plugin sign "$PKG" --key "$WORK/k" >/dev/null 2>&1
"$CORDON" trust add "$WORK/k.pub" --name bench >/dev/null
"$CORDON" plugin install "$PKG" >/dev/null
DIR=$("$CORDON" plugin info @bench/big --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])')
# Old enough for the stamp cache (2 s), then one load fills it.
sleep 3
"$CORDON" exec @bench/big main --mode process >/dev/null
mkdir -p "$WORK/x"

PER_ROUND=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    hyperfine -N --warmup 3 --runs "$PER_ROUND" --export-json "$WORK/r$round.json" \
        --prepare "$CORDON plugin uninstall @bench/big" \
        -n install "$CORDON plugin install $PKG" \
        --prepare "rm -rf $WORK/x/t" \
        -n tar-xzf "sh -c 'mkdir $WORK/x/t && tar xzf $PKG -C $WORK/x/t'" >/dev/null
    # The uninstall/install rounds leave a fresh install: age it again.
    sleep 3
    "$CORDON" exec @bench/big main --mode process >/dev/null
    hyperfine -N --warmup 3 --runs "$PER_ROUND" --export-json "$WORK/v$round.json" \
        -n verify-full "$CORDON plugin verify @bench/big" \
        -n sha256sum "sh -c 'find $DIR -type f -print0 | xargs -0 sha256sum >/dev/null'" \
        -n exec-dir "$CORDON exec $DIR main --mode process" \
        -n exec-id "$CORDON exec @bench/big main --mode process" \
        -n exec-id-nocache "env CORDON_VERIFY_CACHE=off $CORDON exec @bench/big main --mode process" >/dev/null
done

python3 - "$WORK"/r*.json "$WORK"/v*.json <<'PY'
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
print(f"install / tar xzf            : {med['install'] / med['tar-xzf']:.2f}x")
print(f"full verify / sha256sum      : {med['verify-full'] / med['sha256sum']:.2f}x")
print(f"per-load verification, cache : {med['exec-id'] - med['exec-dir']:+.3f} ms (exec ID over exec DIR)")
print(f"per-load verification, none  : {med['exec-id-nocache'] - med['exec-dir']:+.3f} ms")
PY
