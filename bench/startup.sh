#!/usr/bin/env bash
# Startup cost of a sandboxed `/bin/true`, each command side by side in one
# hyperfine run: bare; the repository's namespace floor (a static C launcher
# creating the namespaces process mode uses, bench/floors/ns_floor.c);
# cordon in dev, process and container mode (and container with cgroup
# quotas); bubblewrap with the minimal binds (/usr and /etc read-only, its
# own /dev, /proc and /tmp, every namespace) and with cordon's whole system
# set; and dev mode's floor (bench/floors/dev_floor.c: a static launcher
# that starts /bin/true and appends one audit-sized record with its
# fdatasync next to cordon's audit log, what a dev run cannot do without).
# Then throughput with two runs at a time. The targets of issue 12 are
# printed next to the figures.
#
# usage: [CORDON=BIN] [BASE=BIN] bench/startup.sh [RUNS] [ROUNDS]
#        (default 300 runs per command, in 3 rounds; CORDON defaults to
#        target/x86_64-unknown-linux-musl/release/cordon; BASE, another
#        cordon to compare with, adds its version, dev, process and
#        container runs to the same hyperfine runs and prints this build's
#        medians and p10s against it)
# needs: hyperfine, bwrap, musl-gcc (else cc with static glibc), python3
#        (apt-get install hyperfine bubblewrap musl-tools gcc libc6-dev
#        python3); builds cordon
#        (cargo build --release -p cordon-cli) when $CORDON is missing.
# prints: one table (median, p90, difference to bare, ratio to the
#        minimal-binds bubblewrap), runs/s two at a time, then issue 12's
#        targets with ok/MISSED, and a warning when the host was busy.
#
# On a shared machine, load that comes and goes favours whichever command
# ran in a quiet moment: the runs are split into ROUNDS hyperfine runs (all
# commands in each) and the medians are taken over the pooled times. Check
# `uptime` first; the figures mean something only on an otherwise idle host.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-300}
ROUNDS=${2:-3}
CORDON=${CORDON:-$PWD/target/x86_64-unknown-linux-musl/release/cordon}
[ -x "$CORDON" ] || cargo build --release -p cordon-cli >&2
for tool in hyperfine bwrap cc python3 "$CORDON"; do
    command -v "$tool" >/dev/null || {
        echo "missing $tool (apt-get install hyperfine bubblewrap gcc libc6-dev python3; cargo build --release)" >&2
        exit 2
    }
done

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# The floors are built with musl when musl-gcc is there (apt-get install
# musl-tools), as cordon is: a static glibc program spends ~0.3 ms of its
# start probing the CPU (cpuid, each a trap to the hypervisor on a VM),
# which no launcher needs; FLOOR_CC=cc builds them with glibc instead.
FLOOR_CC=${FLOOR_CC:-$(command -v musl-gcc || echo cc)}
"$FLOOR_CC" -O2 -static -o "$OUT/ns_floor" bench/floors/ns_floor.c
"$FLOOR_CC" -O2 -static -o "$OUT/dev_floor" bench/floors/dev_floor.c
echo "floors built with $FLOOR_CC"

# bubblewrap, minimal: what issue 12 measured it with.
BWRAP_MIN=(bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --ro-bind /etc /etc --dev /dev --proc /proc --tmpfs /tmp)
for l in /bin /sbin /lib /lib32 /lib64 /libx32; do
    if [ -L "$l" ]; then BWRAP_MIN+=(--symlink "$(readlink "$l")" "$l");
    elif [ -e "$l" ]; then BWRAP_MIN+=(--ro-bind "$l" "$l"); fi
done
# bubblewrap with cordon's system set: read-only binds of what exists, the
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

# Every cordon run appends one audit record (with its fdatasync); keep them
# out of the user's log, but keep their cost in the figures.
export CORDON_AUDIT_LOG=$OUT/audit.jsonl
NAMES=(bare ns-floor cordon-version cordon-dev cordon-process cordon-container cordon-container-quotas bwrap-minimal bwrap-system-set dev-floor)
CMDS=(
    "/bin/true"
    "$OUT/ns_floor upnmi"
    "$CORDON --version"
    "$CORDON run --mode dev -- /bin/true"
    "$CORDON run --mode process -- /bin/true"
    "$CORDON run --mode container -- /bin/true"
    "$CORDON run --mode container --memory-mb 256 --pids 64 -- /bin/true"
    "${BWRAP_MIN[*]} /bin/true"
    "${BWRAP[*]} /bin/true"
    "$OUT/dev_floor $OUT/floor.jsonl"
)
# Another build in the same hyperfine runs, so load that comes and goes
# weighs on both alike.
if [ -n "${BASE:-}" ]; then
    [ -x "$BASE" ] || { echo "BASE=$BASE is not an executable cordon" >&2; exit 2; }
    NAMES+=(base-version base-dev base-process base-container)
    CMDS+=(
        "$BASE --version"
        "$BASE run --mode dev -- /bin/true"
        "$BASE run --mode process -- /bin/true"
        "$BASE run --mode container -- /bin/true"
    )
fi
ARGS=()
for i in "${!NAMES[@]}"; do ARGS+=(-n "${NAMES[$i]}" "${CMDS[$i]}"); done
PER_ROUND=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" >&2
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    hyperfine -N --warmup 10 --runs "$PER_ROUND" --export-json "$OUT/r$round.json" "${ARGS[@]}" >/dev/null 2>&1
done

# Two at a time: each command started 2 x PAR_RUNS times by two workers,
# commands alternating over ROUNDS rounds; runs per second of wall time.
PAR_RUNS=$(( RUNS / ROUNDS ))
python3 - "$OUT" "$PAR_RUNS" "$ROUNDS" "${CMDS[0]}" "${CMDS[4]}" "${CMDS[5]}" "${CMDS[7]}" "${CMDS[8]}" <<'PY' >"$OUT/par.json"
import json, os, shlex, sys, threading, time
out, runs, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
names = ["bare", "cordon-process", "cordon-container", "bwrap-minimal", "bwrap-system-set"]
cmds = [shlex.split(c) for c in sys.argv[4:]]
null = os.open(os.devnull, os.O_RDWR)
acts = [(os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)]
def worker(argv, n, failed):
    try:
        for _ in range(n):
            pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=acts)
            if os.waitpid(pid, 0)[1] != 0:
                failed.append(argv)
    except OSError as e:
        failed.append(f"{argv}: {e}")
total = {n: [0.0, 0] for n in names}
for _ in range(rounds):
    for name, argv in zip(names, cmds):
        failed = []
        ts = [threading.Thread(target=worker, args=(argv, runs, failed)) for _ in range(2)]
        t = time.perf_counter()
        for th in ts: th.start()
        for th in ts: th.join()
        total[name][0] += time.perf_counter() - t
        total[name][1] += 2 * runs
        if failed:
            sys.exit(f"{name} failed: {failed[0]}")
json.dump({n: c / s for n, (s, c) in total.items()}, sys.stdout)
PY
LOAD_AFTER=$(cut -d' ' -f1 /proc/loadavg)
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$OUT" "$LOAD_BEFORE" "$LOAD_AFTER" "$(nproc)" <<'PY'
import glob, json, statistics, sys
out, load_before, load_after, cpus = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
times = {}
for f in sorted(glob.glob(f"{out}/r*.json")):
    for x in json.load(open(f))["results"]:
        times.setdefault(x["command"], []).extend(t * 1000 for t in x["times"])
med = {k: statistics.median(v) for k, v in times.items()}
b, bw = med["bare"], med["bwrap-minimal"]
print(f"{'command':<24} {'runs':>5} {'median ms':>10} {'p90 ms':>8} {'- bare ms':>10} {'/ bwrap-min':>12}")
for k, v in times.items():
    p90 = sorted(v)[int(0.9 * (len(v) - 1))]
    print(f"{k:<24} {len(v):>5} {med[k]:>10.3f} {p90:>8.3f} {med[k] - b:>+10.3f} {med[k] / bw:>11.2f}x")
par = json.load(open(f"{out}/par.json"))
print()
print(f"two at a time (2 workers, {cpus} CPUs):")
for k, v in par.items():
    print(f"  {k:<22} {v:7.0f} runs/s   {v / par['bwrap-minimal']:5.2f}x bwrap-minimal")
print()
def verdict(ok):
    return "ok    " if ok else "MISSED"
rows = []
d = med["cordon-dev"] - b
rows.append(("cordon dev - bare", f"{d:+.3f} ms", "<= +0.70 ms", d <= 0.7))
c = med["cordon-container"]
rows.append(("cordon container", f"{c:.3f} ms", "<= 3.50 ms", c <= 3.5))
r = c / bw
rows.append(("cordon container / bwrap-minimal", f"{r:.2f} x", "<= 0.75 x", r <= 0.75))
p = med["cordon-process"] - med["ns-floor"]
rows.append(("cordon process - ns-floor", f"{p:+.3f} ms", "<= +1.00 ms", p <= 1.0))
q = par["cordon-container"] / par["bwrap-minimal"]
rows.append(("2 at a time: container / bwrap-minimal", f"{q:.2f} x runs/s", "> 1 x", q > 1))
print("issue 12 targets:")
for name, got, target, ok in rows:
    print(f"  {verdict(ok)}  {name:<40} {got:>16}   target {target}")
print()
print(f"for reference: container / bwrap-system-set {c / med['bwrap-system-set']:.2f} x; "
      f"quotas add {med['cordon-container-quotas'] - c:+.3f} ms; "
      f"cordon --version - bare {med['cordon-version'] - b:+.3f} ms; "
      f"cordon dev - dev-floor {med['cordon-dev'] - med['dev-floor']:+.3f} ms (dev-floor - bare {med['dev-floor'] - b:+.3f} ms)")
if "base-dev" in med:
    p10 = {k: sorted(v)[int(0.1 * (len(v) - 1))] for k, v in times.items()}
    print("\nthis build against BASE (same hyperfine runs):")
    for what in ["version", "dev", "process", "container"]:
        mine, base = f"cordon-{what}", f"base-{what}"
        print(f"  {what:<10} median {med[mine]:7.3f} vs {med[base]:7.3f} ms ({med[mine] / med[base]:.3f}x, "
              f"{med[mine] - med[base]:+.3f} ms)   p10 {p10[mine]:7.3f} vs {p10[base]:7.3f} ms "
              f"({p10[mine] / p10[base]:.3f}x)")
busy = max(load_before, load_after) > cpus / 2
if busy:
    print(f"\nWARNING: the host was busy (load {load_before:.1f} -> {load_after:.1f} on {cpus} CPUs): absolute figures "
          "are inflated by waiting for a CPU, more so for commands that start more processes; compare the ratios, "
          "and re-run on an idle host for the verdicts.")
PY
