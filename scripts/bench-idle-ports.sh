#!/usr/bin/env bash
# What a bridge's idle ports cost a sleeping vswitchd: its CPU time while
# one VM sends to another at a fixed rate, with 0 and more idle TAP ports
# on the same bridge, interleaved rounds:
#
#   sudo scripts/bench-idle-ports.sh [ROUNDS] [RATE] [SECONDS]   (default 3 20000 5)
#   sudo IDLE="0 8 32" BASELINE=/path/to/other/vswitchd scripts/bench-idle-ports.sh
#
# Two "VM" namespaces hold the kernel sides of two TAPs owned by vswitchd
# (default configuration: NORMAL, one worker per core, sleeping when
# idle) in a "host" namespace; IDLE (default "0 8 32") more TAPs are
# attached to the same bridge, up, with no traffic: a compute host's
# quiet VMs. vswitch-pktgen sends 64-byte UDP from VM 1 to VM 2 at RATE
# frames/s for SECONDS. Reported per idle-port count: vswitchd's CPU time
# per second of the run (user + system, from /proc), per frame delivered,
# and what arrived. BASELINE names a second vswitchd binary (an older
# build, say) measured the same way in the same rounds, as `base-idleN`.
#
# Why this exists: a sleeping worker used to read every port on each
# round, one syscall each, so every idle port on the bridge added to the
# cost of every frame of every other port. It now reads only the ports
# its poller reports readable (see README, "Datapath threads").
#
# Needs root, ip, python3; builds the release binaries. Everything it
# starts and creates is removed on exit, also on failure or Ctrl-C.
# Timed sections hold /tmp/bench.lock, as the other benchmark scripts do.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
rate=${2:-20000}
secs=${3:-5}
idle_list=${IDLE:-"0 8 32"}
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 && $rounds -le 20 ]] || { echo "ROUNDS: 1..20" >&2; exit 2; }
[[ $rate =~ ^[0-9]+$ && $rate -ge 100 && $rate -le 1000000 ]] || { echo "RATE: 100..1000000 frames/s" >&2; exit 2; }
[[ $secs =~ ^[0-9]+$ && $secs -ge 2 && $secs -le 60 ]] || { echo "SECONDS: 2..60" >&2; exit 2; }
for n in $idle_list; do
  [[ $n =~ ^[0-9]+$ && $n -le 200 ]] || { echo "IDLE: port counts 0..200" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "bench-idle-ports: needs root (network namespaces, TAPs)" >&2; exit 1; }
for t in ip python3; do
  command -v $t >/dev/null || { echo "bench-idle-ports: missing $t" >&2; exit 1; }
done
if [ -n "${BASELINE:-}" ]; then
  [ -x "$BASELINE" ] || { echo "bench-idle-ports: BASELINE $BASELINE is not an executable" >&2; exit 2; }
fi
(cd "$root" && cargo build --release --bin vswitchd --bin vswitchctl --bin vswitch-pktgen)
bin=${CARGO_TARGET_DIR:-$root/target}/release

work=$(mktemp -d /tmp/vsw-bench-idle.XXXX)
H=vswip$$h A=vswip$$a B=vswip$$b
MAC1=52:54:00:00:00:01 MAC2=52:54:00:00:00:02
pid=
# shellcheck source=scripts/vmpair.sh
. "$root/scripts/vmpair.sh"

# setup VSWITCHD IDLE : that vswitchd between the two VMs, IDLE idle TAPs more.
setup() {
  fresh_namespaces
  rm -f "$work/ctl.sock"
  ip netns exec $H "$1" --ctl "$work/ctl.sock" --no-state >"$work/vswitchd.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [ -S "$work/ctl.sock" ] && break; sleep 0.1; done
  local t
  for t in tap1 tap2; do
    timeout 30 "$bin/vswitchctl" --ctl "$work/ctl.sock" add-port br0 $t type=tap >/dev/null
  done
  for t in $(seq "$2"); do
    timeout 30 "$bin/vswitchctl" --ctl "$work/ctl.sock" add-port br0 idle$t type=tap >/dev/null
  done
  vm_side tap1 $A 10.252.0.1 $MAC1
  vm_side tap2 $B 10.252.0.2 $MAC2
  # Both ways, so the switch has learned both MACs (no flooding to the
  # idle ports).
  vms_answer 10.252.0.1 10.252.0.2 && return 0
  echo "bench-idle-ports: the VMs cannot reach each other" >&2
  cat "$work/vswitchd.log" >&2 || true
  exit 1
}

# cpu_ticks PID : user + system clock ticks of the process, all threads.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

results=$work/results.txt
: >"$results"
exec 9>>/tmp/bench.lock
flock -w 600 9 || echo "bench-idle-ports: /tmp/bench.lock busy for 10 min; measuring anyway" >&2
hz=$(getconf CLK_TCK)
for r in $(seq "$rounds"); do
  for n in $idle_list; do
    for which in ${BASELINE:+base} new; do
      if [ "$which" = base ]; then exe=$BASELINE name=base-idle$n; else exe=$bin/vswitchd name=idle$n; fi
      setup "$exe" "$n"
      t0=$(cpu_ticks "$pid")
      timeout $((secs + 30)) "$bin/vswitch-pktgen" --json --quiet --duration "$secs" --rate "$rate" \
        --tx tap1 --tx-netns $A --rx tap2 --rx-netns $B --src-mac $MAC1 --dst-mac $MAC2 >"$work/gen.json"
      t1=$(cpu_ticks "$pid")
      python3 - "$name" "$work/gen.json" "$((t1 - t0))" "$hz" "$secs" <<'PY' | tee -a "$results"
import json, sys
name, path, ticks, hz, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
d = json.load(open(path))
rx = d["received"]["packets"]
cpu = ticks / hz
print(f"{name} cpu_ms_per_s={1000 * cpu / secs:.1f} us_per_frame={1e6 * cpu / rx if rx else float('nan'):.2f} "
      f"rx_pps={d['received']['pps']:.0f} loss_pct={100 * d['received']['loss_ratio']:.2f}")
PY
    done
  done
  echo "round $r/$rounds done"
done
flock -u 9

echo
echo "$rounds rounds of $secs s at $rate frames/s (64-byte UDP, TAP to TAP), $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), load average $(cut -d" " -f1-3 /proc/loadavg); medians over the rounds:"
python3 "$root/scripts/medians.py" "$results" --by-name --keys cpu_ms_per_s,us_per_frame,rx_pps,loss_pct --fmt '{:>14.1f}'
