#!/usr/bin/env bash
# Measures what barrierd costs a context-switch-bound workload, with public
# tools (perf, bpftool). Run as root after `cargo build --release
# --workspace --bins`. Prints:
#  - `taskset -c 1 perf bench sched pipe` run three ways for each of PAIRS
#    pairs, in rotating order: alone, with the daemon, and with an empty
#    program on sched_switch (target/release/empty-switch-hook: the floor any
#    program on that hook costs, so that what barrierd's own code costs is
#    the difference); each pair's ratios to the run alone and their medians
#    (BPF statistics off: they add their own clock reads);
#  - in one more run with kernel.bpf_stats_enabled=1: the BPF programs'
#    average run time per event, events per second, and the helper's
#    wake-ups per second while the pipe benchmark storms.
# Usage: bench/overhead.sh [PAIRS (default 7)] [LOOPS (default 500000)]
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-7}
loops=${2:-500000}
barrierd=target/release/barrierd
empty_hook=target/release/empty-switch-hook
[ "$(id -u)" -eq 0 ] || { echo "overhead.sh: run as root" >&2; exit 1; }
[ -x "$barrierd" ] && [ -x "$empty_hook" ] || { echo "overhead.sh: build first: cargo build --release --workspace --bins" >&2; exit 1; }
for tool in perf bpftool taskset; do
    command -v $tool >/dev/null || { echo "overhead.sh: $tool missing (scripts/setup installs it)" >&2; exit 1; }
done

dir=$(mktemp -d)
daemon=
hook=

# Waits until FILE holds NEEDLE; otherwise says that WHAT failed, with FILE.
await_line() {
    for _ in $(seq 100); do grep -q "$2" "$1" && return; sleep 0.05; done
    echo "overhead.sh: $3:" >&2; cat "$1" >&2; exit 1
}
start_daemon() {
    "$barrierd" "$dir/pub" 2>"$dir/log" &
    daemon=$!
    await_line "$dir/log" "Setup complete." "barrierd did not start"
}
stop_daemon() {
    if [ -n "$daemon" ]; then
        kill -TERM "$daemon"
        wait "$daemon" || { echo "overhead.sh: barrierd exited with status $?" >&2; exit 1; }
        daemon=
    fi
}
start_hook() {
    "$empty_hook" >"$dir/hook" 2>&1 &
    hook=$!
    await_line "$dir/hook" attached "empty-switch-hook did not attach"
}
stop_hook() {
    if [ -n "$hook" ]; then
        kill -TERM "$hook"
        wait "$hook" || true
        hook=
    fi
}
stats_before=$(sysctl -n kernel.bpf_stats_enabled)
trap 'stop_hook; stop_daemon; sysctl -qw kernel.bpf_stats_enabled=$stats_before; rm -rf "$dir"' EXIT

pipe_usecs() {
    taskset -c 1 perf bench sched pipe -l "$loops" | awk '/usecs\/op/ {print $1}'
}

sysctl -qw kernel.bpf_stats_enabled=0
echo "perf bench sched pipe, $loops loops on CPU 1, usecs/op:"
printf "%-6s %12s %12s %12s %10s %10s\n" pair without barrierd empty-hook ratio floor
ratios=()
floors=()
for pair in $(seq 1 "$pairs"); do
    # The three runs of a pair in rotating order, so that no arm always
    # goes first.
    for arm in $(printf "none\nbarrierd\nhook\n" | awk -v r=$((pair % 3)) '{a[NR-1]=$0} END {for (i = 0; i < 3; i++) print a[(i + r) % 3]}'); do
        case $arm in
        none) without=$(pipe_usecs) ;;
        barrierd) start_daemon; with=$(pipe_usecs); stop_daemon ;;
        hook) start_hook; hooked=$(pipe_usecs); stop_hook ;;
        esac
    done
    ratio=$(echo "scale=4; $with / $without" | bc)
    floor=$(echo "scale=4; $hooked / $without" | bc)
    ratios+=("$ratio")
    floors+=("$floor")
    printf "%-6s %12s %12s %12s %10s %10s\n" "$pair" "$without" "$with" "$hooked" "$ratio" "$floor"
done
median() { printf "%s\n" "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
median_ratio=$(median "${ratios[@]}")
median_floor=$(median "${floors[@]}")
echo "median ratio: $median_ratio (slowdown $(echo "scale=2; ($median_ratio - 1) * 100" | bc) %)"
echo "median floor, an empty program on sched_switch: $median_floor (slowdown $(echo "scale=2; ($median_floor - 1) * 100" | bc) %)"

# Per-event cost and wake-ups, with BPF statistics on. Our programs are the
# ones that appear when our daemon starts (this bpftool cannot name owners).
prog_ids() { bpftool prog show --json | python3 -c '
import json, sys
print(" ".join(str(p["id"]) for p in json.load(sys.stdin)))'; }
sysctl -qw kernel.bpf_stats_enabled=1
others=$(prog_ids)
start_daemon
helper=$(tr -d ' \n' < "/proc/$daemon/task/$daemon/children")
prog_stats() {
    bpftool prog show --json | python3 -c '
import json, sys
others = set(sys.argv[1].split())
for p in json.load(sys.stdin):
    if str(p["id"]) not in others and p["name"] in ("on_kernel_entry", "on_sched_switch", "on_cpu_idle"):
        print(p["name"], p.get("run_time_ns", 0), p.get("run_cnt", 0))' "$others"
}
wakes() { awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$helper/status"; }
before=$(prog_stats); w0=$(wakes); t0=$(date +%s.%N)
pipe_usecs >/dev/null
after=$(prog_stats); w1=$(wakes); t1=$(date +%s.%N)
stop_daemon
seconds=$(echo "$t1 - $t0" | bc)
echo "BPF programs during the storm (${seconds} s):"
join <(echo "$before" | sort) <(echo "$after" | sort) | awk -v s="$seconds" '
    { ns = $4 - $2; n = $5 - $3; tns += ns; tn += n
      printf "  %-16s %10d events %8.0f events/s %6.1f ns/event\n", $1, n, n / s, n ? ns / n : 0 }
    END { printf "  %-16s %10d events %8.0f events/s %6.1f ns/event\n", "all", tn, tn / s, tn ? tns / tn : 0 }'
echo "helper wake-ups: $((w1 - w0)) ($(echo "scale=0; ($w1 - $w0) / $seconds" | bc)/s)"
