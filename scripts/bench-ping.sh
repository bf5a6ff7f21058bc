#!/usr/bin/env bash
# Ping round-trip time between two VMs through vswitchd, its variants and
# the switch-less yardsticks, in one run, interleaved rounds:
#
#   sudo scripts/bench-ping.sh [ROUNDS] [COUNT] [INTERVAL]   (default 3 500 0.01)
#
# Two "VM" namespaces (10.251.0.1, 10.251.0.2; unique names) hold the
# kernel sides of two TAPs owned, in a "host" namespace, by:
#   vswitchd        the default: one worker per core, each pinned to its
#                   CPU, sleeping when idle, and a quiet TAP's datagrams
#                   going to the worker on the sender's CPU
#   no-steering     --no-cpu-steering: pinned, the kernel choosing each
#                   TAP queue
#   no-pin          --no-pin: the workers unpinned (and not steered to)
#   vswitchd-w1     --workers 1
#   busy-poll       --busy-poll (workers never sleep)
#   busy-poll-w1    --busy-poll --workers 1 (one core polled, one free)
#   bare            vswitch-pktgen bare-forward: a loop that only copies
#                   frames between the two TAPs (read/write, sleeping in
#                   epoll): the TAP path's own cost
#   linux-bridge    the kernel's bridge over veth pairs (it cannot own a
#                   TAP): no user-space hop at all
#   same-cpu        --workers 1, the worker and ping both pinned to CPU 0:
#                   waking the worker never crosses CPUs
#   other-cpu       the same, with ping pinned to CPU 1: every wakeup
#                   crosses CPUs (not in the default NAMES)
# Each is measured with `ping -c COUNT -i INTERVAL` from VM 1 to VM 2
# (after a ping both ways taught it the MACs): RTT avg, median, 99th
# percentile, min, max, mdev, loss. The table gives the medians over the rounds of each figure. The
# interval matters: between pings every thread on the path sleeps, and a
# CPU left idle longer sleeps deeper (in a VM, its vCPU halts and the host
# must wake it), so a shorter interval gives lower figures for all.
# NAMES="vswitchd busy-poll" measures only those.
#
# Why this exists: a ping through a user-space switch crosses two TAP
# queues and wakes the switch's thread once (the reply is queued inside the
# worker's own write of the request), where the Linux bridge forwards
# inside the sender's own softirq; the variants separate the wakeups
# (busy-poll), where they happen (same-cpu against other-cpu), the copies
# (bare) and the switch's own work (vswitchd against bare).
#
# Needs root, ip, ping, python3; builds the release binaries. Everything
# it starts and creates is removed on exit, also on failure or Ctrl-C.
# Timed sections hold /tmp/bench.lock, as the other benchmark scripts do.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
count=${2:-500}
interval=${3:-0.01}
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 && $rounds -le 20 ]] || { echo "ROUNDS: 1..20" >&2; exit 2; }
[[ $count =~ ^[0-9]+$ && $count -ge 10 && $count -le 10000 ]] || { echo "COUNT: 10..10000" >&2; exit 2; }
[[ $interval =~ ^0?\.[0-9]+$|^[0-9]$ ]] || { echo "INTERVAL: seconds, e.g. 0.01" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench-ping: needs root (network namespaces, TAPs)" >&2; exit 1; }
for t in ip ping python3; do
  command -v $t >/dev/null || { echo "bench-ping: missing $t" >&2; exit 1; }
done
(cd "$root" && cargo build --release --bin vswitchd --bin vswitchctl --bin vswitch-pktgen)
bin=${CARGO_TARGET_DIR:-$root/target}/release

work=$(mktemp -d /tmp/vsw-bench-ping.XXXX)
H=vswpg$$h A=vswpg$$a B=vswpg$$b
pid=
# shellcheck source=scripts/vmpair.sh
. "$root/scripts/vmpair.sh"

# setup NAME : brings up the switch NAME between the two VMs.
setup() {
  fresh_namespaces
  local args=()
  case $1 in
    vswitchd) ;;
    vswitchd-w1) args=(--workers 1) ;;
    no-steering) args=(--no-cpu-steering) ;;
    no-pin) args=(--no-pin) ;;
    busy-poll) args=(--busy-poll) ;;
    busy-poll-w1) args=(--busy-poll --workers 1) ;;
    same-cpu | other-cpu) args=(--workers 1) ;;
  esac
  pin=()
  ping_pin=()
  case $1 in
    same-cpu | other-cpu)
      [ "$(nproc)" -ge 2 ] || { echo "bench-ping: $1 needs two CPUs" >&2; exit 1; }
      ;;&
    same-cpu) pin=(taskset -c 0) ping_pin=(taskset -c 0) ;;
    other-cpu) pin=(taskset -c 0) ping_pin=(taskset -c 1) ;;
  esac
  case $1 in
    vswitchd* | no-steering | no-pin | busy-poll* | same-cpu | other-cpu)
      ip netns exec $H "${pin[@]}" "$bin/vswitchd" --ctl "$work/ctl.sock" --no-state "${args[@]}" >"$work/$1.log" 2>&1 &
      pid=$!
      for _ in $(seq 100); do [ -S "$work/ctl.sock" ] && break; sleep 0.1; done
      for t in tap1 tap2; do
        timeout 30 "$bin/vswitchctl" --ctl "$work/ctl.sock" add-port br0 $t type=tap >/dev/null
      done
      ;;
    bare)
      ip netns exec $H "$bin/vswitch-pktgen" bare-forward --a tap1 --b tap2 --duration 3600 >"$work/bare.log" 2>&1 &
      pid=$!
      ;;
    linux-bridge)
      ip -n $H link add br0 type bridge stp_state 0 forward_delay 0
      ip -n $H link set br0 up
      for i in 1 2; do
        ip -n $H link add p$i type veth peer name tap$i
        ip -n $H link set p$i master br0 up
      done
      ;;
  esac
  vm_side tap1 $A 10.251.0.1 52:54:00:00:00:01
  vm_side tap2 $B 10.251.0.2 52:54:00:00:00:02
  vms_answer 10.251.0.1 10.251.0.2 && return 0
  echo "bench-ping: $1: the VMs cannot reach each other" >&2
  cat "$work/$1.log" >&2 2>/dev/null || true
  exit 1
}

results=$work/results.txt
: >"$results"
exec 9>>/tmp/bench.lock
flock -w 600 9 || echo "bench-ping: /tmp/bench.lock busy for 10 min; measuring anyway" >&2
names=${NAMES:-"vswitchd vswitchd-w1 busy-poll busy-poll-w1 bare linux-bridge"}
for r in $(seq "$rounds"); do
  for n in $names; do
    setup "$n"
    out=$(ip netns exec $A "${ping_pin[@]}" timeout $((count + 30)) ping -c "$count" -i "$interval" -W 1 10.251.0.2 || true)
    python3 - "$n" "$out" <<'PY' | tee -a "$results"
import re, sys
name, out = sys.argv[1:3]
loss = re.search(r"([\d.]+)% packet loss", out)
rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
f = rtt.groups() if rtt else ("nan",) * 4
# Every reply's time, for the median and the 99th percentile: whether
# each ping pays a cost or a few slow ones pull the average up.
t = sorted(float(x) for x in re.findall(r"time=([\d.]+) ms", out))
pct = lambda q: t[min(len(t) - 1, int(q * len(t)))] if t else float("nan")
print(f"{name} avg_ms={f[1]} p50_ms={pct(0.5)} p99_ms={pct(0.99)} min_ms={f[0]} max_ms={f[2]} mdev_ms={f[3]} loss_pct={loss.group(1) if loss else 'nan'}")
PY
  done
  echo "round $r/$rounds done"
done
flock -u 9

echo
echo "$rounds rounds of ping -c $count -i $interval, $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), load average $(cut -d" " -f1-3 /proc/loadavg); medians over the rounds:"
python3 "$root/scripts/medians.py" "$results" --by-name --keys avg_ms,p50_ms,p99_ms,min_ms,max_ms,mdev_ms,loss_pct --fmt '{:>10.3f}'
