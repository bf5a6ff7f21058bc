#!/usr/bin/env bash
# Loading a large flow table: vswitchd side by side with a real Open vSwitch
# 3.1 (ovs-vswitchd, userspace datapath) in the same run.
#
#   sudo scripts/bench-flows.sh [ROUNDS] [N_FLOWS]      (default 3 100000)
#
# Each switch runs in its own network namespace (unique name) with four TAP
# ports p1..p4 at ofports 1..4 and the bridge br0; vswitchd's OpenFlow
# endpoint is DIR/br0.mgmt beside its control socket, Open vSwitch's is
# $OVS_RUNDIR/br0.mgmt (private run/db/log directories under the same
# temporary directory, so a system Open vSwitch is never touched).
#
# N distinct flows (four match shapes: dl_dst; ip,nw_dst; tcp,nw_dst,tp_dst;
# udp,dl_dst,nw_dst/24,tp_dst; each with in_port and output actions) are
# loaded, in interleaved rounds, by:
#   bundle   ovs-ofctl -O OpenFlow13 --bundle add-flows   (vswitchd and OVS)
#   plain    ovs-ofctl -O OpenFlow13 add-flows             (vswitchd and OVS)
#   ctl      vswitchctl add-flows                          (vswitchd)
# Every load starts from an empty table (del-flows) and is followed by
# dump-aggregate, which must report flow_count=N, or the run fails: a fast
# wrong answer cannot win. Times are wall clock from the client's start to
# its exit (the client parses the file too, identically for both switches),
# plus the switch's own CPU time for that load (/proc/PID/stat).
#
# Prints min and median per line, and vswitchd's time over Open vSwitch's
# (below 1: vswitchd is faster). Everything it starts is stopped and its
# namespaces and files removed on exit, also on failure or Ctrl-C. Needs
# root and openvswitch-switch (scripts/test.sh installs it). vswitchd saves
# its state in the run's directory after every load, as in production;
# VSWITCH_BENCH_STATE=off runs it with --no-state. Timed sections
# hold /tmp/bench.lock, as the other benchmark scripts do.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
nflows=${2:-100000}
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 ]] || { echo "ROUNDS: a positive number" >&2; exit 2; }
[[ $nflows =~ ^[0-9]+$ && $nflows -ge 1 && $nflows -le 4000000 ]] || { echo "N_FLOWS: 1..4000000" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench-flows: needs root (network namespaces, Open vSwitch)" >&2; exit 1; }
for t in ovs-vswitchd ovsdb-server ovsdb-tool ovs-vsctl ovs-ofctl ovs-appctl ip python3; do
  command -v $t >/dev/null || { echo "bench-flows: missing $t (apt-get install openvswitch-switch iproute2 python3)" >&2; exit 1; }
done
schema=/usr/share/openvswitch/vswitch.ovsschema
[ -f $schema ] || { echo "bench-flows: missing $schema (openvswitch-common)" >&2; exit 1; }

(cd "$root" && cargo build --release --bin vswitchd --bin vswitchctl)
bin=${CARGO_TARGET_DIR:-$root/target}/release

work=$(mktemp -d /tmp/vsw-bench-flows.XXXX)
ns_v=vswbf$$v ns_o=vswbf$$o
vsw_pid=
export OVS_RUNDIR=$work/ovs/run OVS_DBDIR=$work/ovs/db OVS_LOGDIR=$work/ovs/log

cleanup() {
  set +e
  if [ -n "$vsw_pid" ] && kill -0 "$vsw_pid" 2>/dev/null; then
    kill -TERM "$vsw_pid"
    for _ in $(seq 50); do kill -0 "$vsw_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$vsw_pid" 2>/dev/null && kill -KILL "$vsw_pid"
  fi
  for d in ovs-vswitchd ovsdb-server; do
    pf=$OVS_RUNDIR/$d.pid
    [ -f "$pf" ] || continue
    pid=$(cat "$pf")
    [ -d /proc/$pid ] || continue
    timeout 10 ovs-appctl -t "$OVS_RUNDIR/$d.$pid.ctl" exit >/dev/null 2>&1
    for _ in $(seq 50); do [ -d /proc/$pid ] || break; sleep 0.1; done
    [ -d /proc/$pid ] && kill -KILL "$pid"
  done
  ip netns del $ns_v 2>/dev/null
  ip netns del $ns_o 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkns() { ip netns add "$1" && ip -n "$1" link set lo up; }
mkns $ns_v
mkns $ns_o

# vswitchd, on its embedded default configuration (bridge br0).
ctl_sock=$work/vsw/vswitchd.sock
mkdir -p "$work/vsw"
# Its state is saved in the run's own directory (VSWITCH_BENCH_STATE=off:
# not at all, to measure what saving costs).
if [ "${VSWITCH_BENCH_STATE:-on}" = off ]; then state_arg=(--no-state); else state_arg=(--state-dir "$work/vsw/state"); fi
ip netns exec $ns_v "$bin/vswitchd" --ctl "$ctl_sock" "${state_arg[@]}" >"$work/vsw/log" 2>&1 &
vsw_pid=$!   # ip netns exec execs vswitchd: same pid
vsw_mgmt=unix:$work/vsw/br0.mgmt
for _ in $(seq 100); do [ -S "$work/vsw/br0.mgmt" ] && break; sleep 0.1; done
[ -S "$work/vsw/br0.mgmt" ] || { echo "vswitchd did not start:" >&2; cat "$work/vsw/log" >&2; exit 1; }
vctl() { timeout 300 "$bin/vswitchctl" --ctl "$ctl_sock" "$@"; }
for i in 1 2 3 4; do vctl add-port br0 p$i type=tap ofport=$i >/dev/null; done

# Open vSwitch 3.1, private directories, bridge br0 with the netdev datapath.
mkdir -p "$OVS_RUNDIR" "$OVS_DBDIR" "$OVS_LOGDIR"
ovsdb-tool create "$OVS_DBDIR/conf.db" $schema
timeout 15 ovsdb-server "$OVS_DBDIR/conf.db" --remote=punix:"$OVS_RUNDIR/db.sock" \
  --pidfile="$OVS_RUNDIR/ovsdb-server.pid" --detach -vconsole:off --log-file="$OVS_LOGDIR/ovsdb-server.log"
timeout 15 ovs-vsctl --no-wait init
ip netns exec $ns_o timeout 20 ovs-vswitchd unix:"$OVS_RUNDIR/db.sock" \
  --pidfile="$OVS_RUNDIR/ovs-vswitchd.pid" --detach -vconsole:off --log-file="$OVS_LOGDIR/ovs-vswitchd.log"
ovs_pid=$(cat "$OVS_RUNDIR/ovs-vswitchd.pid")
timeout 30 ovs-vsctl add-br br0 -- set bridge br0 datapath_type=netdev \
  -- add-port br0 p1 -- set interface p1 type=tap ofport_request=1 \
  -- add-port br0 p2 -- set interface p2 type=tap ofport_request=2 \
  -- add-port br0 p3 -- set interface p3 type=tap ofport_request=3 \
  -- add-port br0 p4 -- set interface p4 type=tap ofport_request=4
ovs_mgmt=unix:$OVS_RUNDIR/br0.mgmt
for _ in $(seq 100); do [ -S "$OVS_RUNDIR/br0.mgmt" ] && break; sleep 0.1; done

ofctl() { timeout 300 ovs-ofctl -O OpenFlow13 "$@"; }
for m in "$vsw_mgmt" "$ovs_mgmt"; do
  ports=$(ofctl show "$m" | grep -cE '^ [1-4]\(p[1-4]\)')
  [ "$ports" = 4 ] || { echo "bench-flows: $m does not show ports 1..4" >&2; ofctl show "$m" >&2; exit 1; }
done

# N distinct flows; flow i is unique by the address it carries.
flows=$work/flows.txt
python3 - "$nflows" >"$flows" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    a, b, c = (i >> 16) & 255, (i >> 8) & 255, i & 255
    mac = "02:00:00:%02x:%02x:%02x" % (a, b, c)
    p = 1 + i % 4
    q = 1 + (i + 1) % 4
    s = i % 4
    if s == 0:
        print(f"priority=100,in_port={p},dl_dst={mac},actions=output:{q}")
    elif s == 1:
        print(f"priority=200,ip,in_port={p},nw_dst=10.{a}.{b}.{c},actions=output:{q}")
    elif s == 2:
        print(f"priority=300,tcp,in_port={p},nw_dst=10.{a}.{b}.{c},tp_dst={1 + i % 60000},actions=output:{q}")
    else:
        print(f"priority=400,udp,in_port={p},dl_dst={mac},nw_dst=172.{16 + a % 16}.{b}.0/24,tp_dst={1 + c},actions=output:{q},output:{p}")
PY
echo "flows: $(wc -l <"$flows") lines, $(du -h "$flows" | cut -f1), e.g. $(sed -n 4p "$flows")"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
results=$work/results.txt
: >"$results"

# run LINE SWITCH_PID MGMT CMD... : empty the table, time CMD, check the count.
run() {
  local line=$1 pid=$2 mgmt=$3; shift 3
  ofctl del-flows "$mgmt"
  local c0 t0 t1 c1
  c0=$(cpu_ticks "$pid"); t0=$EPOCHREALTIME
  "$@" >"$work/out" 2>&1 || { echo "bench-flows: $line failed:" >&2; cat "$work/out" >&2; exit 1; }
  t1=$EPOCHREALTIME; c1=$(cpu_ticks "$pid")
  local agg count
  agg=$(ofctl dump-aggregate "$mgmt")
  count=$(sed -n 's/.*flow_count=\([0-9]*\).*/\1/p' <<<"$agg")
  [ "$count" = "$nflows" ] || { echo "bench-flows: $line left flow_count=$count, want $nflows: $agg" >&2; exit 1; }
  local wall cpu
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}')
  cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN{printf "%.2f", (b - a) / hz}')
  printf '%s %s %s\n' "$line" "$wall" "$cpu" >>"$results"
  printf '  %-16s %8.3f s  (switch cpu %s s, flow_count=%s)\n' "$line" "$wall" "$cpu" "$count"
}

exec 9>>/tmp/bench.lock
flock -w 600 9 || echo "bench-flows: /tmp/bench.lock busy for 10 min; measuring anyway" >&2
for r in $(seq "$rounds"); do
  echo "round $r/$rounds"
  # Alternate which switch goes first, so neither always runs warm.
  if [ $((r % 2)) = 1 ]; then order="vsw ovs"; else order="ovs vsw"; fi
  for sw in $order; do
    if [ $sw = vsw ]; then
      run bundle-vswitchd "$vsw_pid" "$vsw_mgmt" ofctl --bundle add-flows "$vsw_mgmt" "$flows"
    else
      run bundle-ovs "$ovs_pid" "$ovs_mgmt" ofctl --bundle add-flows "$ovs_mgmt" "$flows"
    fi
  done
  run ctl-vswitchd "$vsw_pid" "$vsw_mgmt" vctl add-flows br0 "$flows"
  for sw in $order; do
    if [ $sw = vsw ]; then
      run plain-vswitchd "$vsw_pid" "$vsw_mgmt" ofctl add-flows "$vsw_mgmt" "$flows"
    else
      run plain-ovs "$ovs_pid" "$ovs_mgmt" ofctl add-flows "$ovs_mgmt" "$flows"
    fi
  done
done
flock -u 9

echo
echo "$nflows flows, $rounds rounds, $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), load average $(cut -d" " -f1-3 /proc/loadavg)"
python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, wall, cpu = line.split()
    rows.setdefault(name, []).append((float(wall), float(cpu)))
med = {k: statistics.median(w for w, _ in v) for k, v in rows.items()}
low = {k: min(w for w, _ in v) for k, v in rows.items()}
cpu = {k: statistics.median(c for _, c in v) for k, v in rows.items()}
def ratio(d, name, base):
    return f"{d[name] / d[base]:.2f}" if base in d and d[base] > 0 else ""
print(f"{'line':<16} {'min s':>7} {'median s':>8} {'cpu s':>6} | {'vs OVS: min':>11} {'median':>6} {'cpu':>5}")
for name in ["bundle-vswitchd", "bundle-ovs", "ctl-vswitchd", "plain-vswitchd", "plain-ovs"]:
    if name not in rows:
        continue
    base = {"bundle-vswitchd": "bundle-ovs", "ctl-vswitchd": "bundle-ovs",
            "plain-vswitchd": "plain-ovs"}.get(name)
    print(f"{name:<16} {low[name]:>7.3f} {med[name]:>8.3f} {cpu[name]:>6.2f} |"
          f" {ratio(low, name, base):>11} {ratio(med, name, base):>6} {ratio(cpu, name, base):>5}")
print("cpu s: the switch's own CPU time for the load (median). vs OVS: vswitchd's figure over")
print("Open vSwitch's (bundle-ovs for ctl); below 1, vswitchd is faster")
PY
