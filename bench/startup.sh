#!/usr/bin/env bash
# Startup cost of a sandboxed `/bin/true`: bare, cordon (process, container)
# and bubblewrap with the same binds and namespaces, measured side by side in
# one hyperfine run, then the ratios.
#
# usage: bench/startup.sh [RUNS]         (default 300 runs per command)
# needs: hyperfine and bwrap (apt-get install hyperfine bubblewrap), and a
#        release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-300}
CORDON=${CORDON:-$PWD/target/release/cordon}
for tool in hyperfine bwrap "$CORDON"; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install hyperfine bubblewrap; cargo build --release)" >&2; exit 2; }
done

# bubblewrap gets cordon's system set: read-only binds of what exists, the
# merged-/usr links as links, its own /proc, /dev and /tmp, all namespaces.
BWRAP=(bwrap --unshare-all --die-with-parent --proc /proc --dev /dev --tmpfs /tmp)
for p in /usr /bin /sbin /lib /lib32 /lib64 /libx32 /opt /etc/ld.so.cache /etc/ld.so.conf /etc/ld.so.conf.d \
         /etc/alternatives /etc/ssl/certs /etc/ssl/openssl.cnf /etc/ca-certificates /etc/ca-certificates.conf \
         /etc/localtime /etc/timezone /etc/nsswitch.conf /etc/hosts /etc/host.conf /etc/resolv.conf /etc/gai.conf \
         /etc/passwd /etc/group /etc/protocols /etc/services /etc/mime.types /etc/locale.alias /etc/os-release \
         /etc/debian_version /etc/inputrc /etc/terminfo /etc/magic /etc/fonts /etc/java-17-openjdk /etc/perl \
         /etc/python3 /etc/python3.11 /etc/gitconfig /etc/bash.bashrc /etc/profile /etc/environment; do
    if [ -L "$p" ]; then BWRAP+=(--symlink "$(readlink "$p")" "$p");
    elif [ -e "$p" ]; then BWRAP+=(--ro-bind "$p" "$p"); fi
done

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# Every cordon run appends one audit record (with fdatasync); keep them
# out of the user's log, but keep their cost in the figures.
export CORDON_AUDIT_LOG=$OUT/audit.jsonl
hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$OUT/r.json" \
    -n bare "/bin/true" \
    -n cordon-process "$CORDON run --mode process -- /bin/true" \
    -n cordon-container "$CORDON run --mode container -- /bin/true" \
    -n cordon-container-quotas "$CORDON run --mode container --memory-mb 256 --pids 64 -- /bin/true" \
    -n bwrap "${BWRAP[*]} /bin/true" >&2

python3 - "$OUT/r.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = {k: v["median"] * 1000 for k, v in r.items()}
print(f"{'command':<18} {'median ms':>10} {'mean ms':>10} {'stddev':>8}")
for k, v in r.items():
    print(f"{k:<18} {med[k]:>10.3f} {v['mean']*1000:>10.3f} {v['stddev']*1000:>8.3f}")
b = med["bare"]
print()
print(f"cordon process   overhead over bare: {med['cordon-process'] - b:+.3f} ms (target <= 1.0 ms)")
print(f"cordon container overhead over bare: {med['cordon-container'] - b:+.3f} ms")
print(f"cordon container / bwrap:            {med['cordon-container'] / med['bwrap']:.2f}x (target <= 0.75x)")
print(f"  with memory+pids cgroups / bwrap:    {med['cordon-container-quotas'] / med['bwrap']:.2f}x")
print(f"cordon process   / bwrap:            {med['cordon-process'] / med['bwrap']:.2f}x")
PY
