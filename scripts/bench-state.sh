#!/usr/bin/env bash
# What saving the state costs a vswitchctl change, measured side by side:
# two vswitchd (release build), one with --no-state and one with a state
# directory, loaded alternately.
#
#   scripts/bench-state.sh [N_FLOWS] [ROUNDS]      (default 100000 5)
#
# Each round loads N flows with `vswitchctl add-flows` into each daemon
# (after `del-flows`); then 100 `set-port` calls run against each with the
# N flows in the table. Prints each time (wall clock of the vswitchctl
# call, which answers only once the change is saved). Needs no root: both
# daemons run on sockets and state directories in a temporary directory,
# removed on exit with the daemons.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-100000}
rounds=${2:-5}
[[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || { echo "N_FLOWS: a positive number" >&2; exit 2; }
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 ]] || { echo "ROUNDS: a positive number" >&2; exit 2; }
(cd "$root" && cargo build --release --bin vswitchd --bin vswitchctl)
bin=${CARGO_TARGET_DIR:-$root/target}/release
work=$(mktemp -d /tmp/vsw-bench-state.XXXX)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/off" "$work/on"
python3 -c "
for i in range($n): print(f'priority={100+i%300},tcp,in_port=1,nw_dst=10.{i//65536}.{(i//256)%256}.{i%256},tp_dst={1+i%1000},actions=output:2')" >"$work/f.flows"
"$bin/vswitchd" --ctl "$work/off/s.sock" --no-state >"$work/off/log" 2>&1 & pids+=($!)
"$bin/vswitchd" --ctl "$work/on/s.sock" --state-dir "$work/on/state" >"$work/on/log" 2>&1 & pids+=($!)
for s in off on; do
  for _ in $(seq 100); do [ -S "$work/$s/s.sock" ] && break; sleep 0.1; done
  for p in 1 2; do "$bin/vswitchctl" --ctl "$work/$s/s.sock" add-port br0 p$p type=dummy ofport=$p; done
done
now() { date +%s.%N; }
for r in $(seq "$rounds"); do
  for s in off on; do
    c=("$bin/vswitchctl" --ctl "$work/$s/s.sock")
    "${c[@]}" del-flows br0
    t0=$(now); "${c[@]}" add-flows br0 "$work/f.flows"; t1=$(now)
    printf 'round %d  state %-3s  add-flows %d flows  %.3f s\n' "$r" "$s" "$n" "$(echo "$t1 - $t0" | bc)"
  done
done
for s in off on; do
  c=("$bin/vswitchctl" --ctl "$work/$s/s.sock")
  t0=$(now); for i in $(seq 100); do "${c[@]}" set-port br0 p1 tag=$i; done; t1=$(now)
  printf 'state %-3s  set-port beside %d flows  %.1f ms each\n' "$s" "$n" "$(echo "($t1 - $t0) * 10" | bc)"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
