#!/usr/bin/env bash
# A packet-in flood from one VM: does it touch the other VMs' traffic or the
# control plane?
#
#   sudo scripts/bench-packet-in.sh [ROUNDS] [FLOOD_SECONDS]   (default 3 15)
#
# vswitchd runs in its own network namespace with three TAP ports (vm1,
# vm2, fl), whose kernel sides are moved into three "VM" namespaces (unique
# names): vm1 10.77.0.1/24 and vm2 10.77.0.2/24 forward through NORMAL,
# and every frame from fl hits `in_port=fl,actions=controller`. The real
# `ovs-ofctl monitor` is connected to vswitchd's DIR/br0.mgmt as the
# controller. Each round measures quiet, then while fl floods into the
# controller action ("flood"), then while it floods into a drop flow
# ("flood-drop": the same load on the CPUs without the packet-in path, to
# tell what the controller path costs from what the flood itself costs),
# then while it floods a veth pair in its own namespace that vswitchd does
# not see ("flood-veth": what the sender alone costs the machine), then the
# same with a busy loop on the other CPU ("veth-busy": both CPUs as busy as
# under the flood, with vswitchd idle: what a saturated machine costs any
# command, vswitchd aside):
#   ping     ping -c 200 -i 0.01 from vm1 to vm2: loss, avg and max RTT
#   show     50 x `vswitchctl show`, each timed from start to exit: median, max
#   version  50 x `vswitchctl --version` (asks the daemon nothing), timed the
#            same way: what starting the client costs on this machine now,
#            so show minus version is the daemon's part
#   sock     200 x the show request from one already running client (a new
#            connection each, as vswitchctl makes): connect to answer, with
#            no process start in it: median, p99
#   drops    dump-drops controller_rate_limited / controller_queue_full /
#            controller_not_connected, packet-ins the monitor printed
#   flood    frames the flooder's kernel sent (fl or fx0) and vswitchd received
#            on fl, per s
#   cpu      vswitchd's CPU over the phase (100% = one core)
# The flood is trafgen on fl inside the flooder's namespace: 60-byte frames
# as fast as one CPU sends them, bounded by count (50M) and time
# (FLOOD_SECONDS, killed once the measurements are done). Traffic stays in
# the namespaces this script creates; everything it starts is stopped and
# the namespaces and files removed on exit, also on failure or Ctrl-C.
# Needs root, ovs-ofctl, trafgen (netsniff-ng), ping; scripts/test.sh
# installs them. Timed sections hold /tmp/bench.lock, as the other
# benchmark scripts do.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
flood_s=${2:-15}
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 ]] || { echo "ROUNDS: a positive number" >&2; exit 2; }
[[ $flood_s =~ ^[0-9]+$ && $flood_s -ge 5 && $flood_s -le 120 ]] || { echo "FLOOD_SECONDS: 5..120" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench-packet-in: needs root (network namespaces, TAPs)" >&2; exit 1; }
for t in ovs-ofctl trafgen ping ip python3; do
  command -v $t >/dev/null || { echo "bench-packet-in: missing $t (apt-get install openvswitch-common netsniff-ng iputils-ping iproute2 python3)" >&2; exit 1; }
done

(cd "$root" && cargo build --release --bin vswitchd --bin vswitchctl)
bin=${CARGO_TARGET_DIR:-$root/target}/release

work=$(mktemp -d /tmp/vsw-bench-pin.XXXX)
ns_h=vswpi$$h ns_a=vswpi$$a ns_b=vswpi$$b ns_f=vswpi$$f
vsw_pid= mon_pid= tg_pid= spin_pid=

# shellcheck source=scripts/procs.sh
. "$root/scripts/procs.sh"
cleanup() {
  set +e
  stop "$tg_pid"
  stop "$spin_pid"
  stop "$mon_pid"
  stop "$vsw_pid"
  for ns in $ns_f $ns_a $ns_b $ns_h; do ip netns del $ns 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkns() {
  ip netns add "$1" && ip -n "$1" link set lo up
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}
for ns in $ns_h $ns_a $ns_b $ns_f; do mkns $ns; done

ctl_sock=$work/vswitchd.sock
ip netns exec $ns_h "$bin/vswitchd" --ctl "$ctl_sock" --state-dir "$work/state" >"$work/vswitchd.log" 2>&1 &
vsw_pid=$!   # ip netns exec execs vswitchd: same pid
for _ in $(seq 100); do [ -S "$work/br0.mgmt" ] && break; sleep 0.1; done
[ -S "$work/br0.mgmt" ] || { echo "vswitchd did not start:" >&2; cat "$work/vswitchd.log" >&2; exit 1; }
vctl() { timeout 60 "$bin/vswitchctl" --ctl "$ctl_sock" "$@"; }

# attach PORT NS [IP] : a vswitchd TAP whose kernel side is the VM's NIC.
attach() {
  vctl add-port br0 "$1" type=tap >/dev/null
  for _ in $(seq 50); do ip -n $ns_h link show "$1" >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n $ns_h link set "$1" netns "$2"
  [ -z "${3:-}" ] || ip -n "$2" addr add "$3/24" dev "$1"
  ip -n "$2" link set "$1" up
}
attach vm1 $ns_a 10.77.0.1
attach vm2 $ns_b 10.77.0.2
attach fl $ns_f
vctl del-flows br0
vctl add-flow br0 'priority=100,in_port=fl,actions=controller'
vctl add-flow br0 'priority=0,actions=NORMAL'
ip netns exec $ns_a ping -q -c 3 -i 0.2 -W 1 10.77.0.2 >/dev/null || { echo "bench-packet-in: vm1 cannot reach vm2" >&2; exit 1; }

# The controller: ovs-ofctl monitor (it prints what it receives on stderr,
# and wants a run directory for its own control socket).
mon_out=$work/monitor.txt
OVS_RUNDIR=$work timeout $((rounds * (flood_s + 60) + 60)) \
  ovs-ofctl -O OpenFlow13 monitor "unix:$work/br0.mgmt" >"$mon_out" 2>&1 &
mon_pid=$!
packet_ins() { grep -c -E "OFPT_PACKET_IN|NXT_PACKET_IN2" "$mon_out" || true; }
# Probe with single frames until the monitor's session is up (the frames
# before it count as controller_not_connected).
probe=020000000099020000000003
probe+=88b5$(printf '00%.0s' $(seq 46))
for i in $(seq 50); do
  ip netns exec $ns_f python3 -c "import socket; s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('fl', 0)); s.send(bytes.fromhex('$probe'))"
  sleep 0.2
  [ "$(packet_ins)" -gt 0 ] && break
done
[ "$(packet_ins)" -gt 0 ] || { echo "bench-packet-in: the monitor saw no packet-in" >&2; cat "$mon_out" >&2; exit 1; }

echo "{ eth(da=02:00:00:00:00:99, sa=02:00:00:00:00:03, type=0x88b5), fill(0x00, 46) }" >"$work/tg.cfg"
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$vsw_pid/stat"; }
# counters : drop counters, fl's rx, the flooder's kernel tx, packet-ins seen
counters() {
  local drops ports tx
  drops=$(vctl --json dump-drops br0)
  ports=$(vctl --json dump-ports br0)
  tx=$(ip netns exec $ns_f cat /sys/class/net/fl/statistics/tx_packets /sys/class/net/fx0/statistics/tx_packets \
    | awk '{n += $1} END {print n}')
  python3 - "$drops" "$ports" "$tx" "$(packet_ins)" <<'PY'
import json, sys
d = json.loads(sys.argv[1])["drops"]
p = {x["port"]: x for x in json.loads(sys.argv[2])["ports"]}
print(d.get("controller_rate_limited", 0), d.get("controller_queue_full", 0),
      d.get("controller_not_connected", 0), p["fl"]["rx_packets"], sys.argv[3], sys.argv[4])
PY
}
results=$work/results.txt
: >"$results"

# phase NAME : ping and show latency, counters before and after.
phase() {
  local name=$1 c0 c1 k0 k1 t0 t1 p show=() ver=()
  c0=$(counters); k0=$(ticks); t0=$EPOCHREALTIME
  p=$(ip netns exec $ns_a timeout 30 ping -q -c 200 -i 0.01 -W 1 10.77.0.2 || true)
  for _ in $(seq 50); do
    local s0=$EPOCHREALTIME
    vctl show >/dev/null
    show+=("$(awk -v a="$s0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.3f", (b - a) * 1000}')")
    s0=$EPOCHREALTIME
    vctl --version >/dev/null
    ver+=("$(awk -v a="$s0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.3f", (b - a) * 1000}')")
  done
  sock=$(python3 - "$ctl_sock" <<'PY'
import socket, sys, time
lat = []
for _ in range(200):
    t = time.perf_counter()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sys.argv[1])
    s.sendall(b'{"cmd":"show","bridge":null}\n')
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    lat.append((time.perf_counter() - t) * 1000)
    time.sleep(0.005)
lat.sort()
print(f"{lat[len(lat) // 2]:.3f} {lat[int(len(lat) * 0.99)]:.3f}")
PY
)
  t1=$EPOCHREALTIME; k1=$(ticks); c1=$(counters)
  python3 - "$name" "$p" "$c0" "$c1" "$t0" "$t1" "$k0" "$k1" "$hz" "$sock" "${ver[*]}" "${show[@]}" <<'PY' | tee -a "$results"
import re, statistics, sys
name, ping, c0, c1, t0, t1, k0, k1, hz, sock, ver = sys.argv[1:12]
sock = [float(x) for x in sock.split()]
ver = [float(x) for x in ver.split()]
show = [float(x) for x in sys.argv[12:]]
loss = re.search(r"([\d.]+)% packet loss", ping)
rtt = re.search(r"= [\d.]+/([\d.]+)/([\d.]+)/", ping)
c0 = [int(x) for x in c0.split()]
c1 = [int(x) for x in c1.split()]
d = [b - a for a, b in zip(c0, c1)]
dt = float(t1) - float(t0)
cpu = (int(k1) - int(k0)) / int(hz) / dt * 100
print(f"{name} loss_pct={loss.group(1) if loss else 'na'}"
      f" rtt_avg_ms={rtt.group(1) if rtt else 'na'} rtt_max_ms={rtt.group(2) if rtt else 'na'}"
      f" show_med_ms={statistics.median(show):.2f} show_max_ms={max(show):.2f}"
      f" version_med_ms={statistics.median(ver):.2f}"
      f" sock_med_ms={sock[0]:.3f} sock_p99_ms={sock[1]:.3f}"
      f" rate_limited={d[0]} queue_full={d[1]} not_connected={d[2]} packet_ins={d[5]}"
      f" flood_sent_pps={d[4] / dt:.0f} fl_rx_pps={d[3] / dt:.0f} vswitchd_cpu_pct={cpu:.0f}")
PY
}

exec 9>>/tmp/bench.lock
flock -w 600 9 || echo "bench-packet-in: /tmp/bench.lock busy for 10 min; measuring anyway" >&2
# A veth pair inside the flooder's namespace, not attached to vswitchd.
ip -n $ns_f link add fx0 type veth peer name fx1
ip -n $ns_f link set fx0 up
ip -n $ns_f link set fx1 up

# busy_loop SECONDS : a CPU-bound loop in the background, bounded by time;
# prints its pid.
busy_loop() {
  timeout "$1" sh -c 'while :; do :; done' >/dev/null 2>&1 &
  echo $!
}

# flooded NAME ACTIONS [DEV] : phase NAME while the flooder sends on DEV
# (default fl, whose frames hit in_port=fl,actions=ACTIONS).
flooded() {
  local dev=${3:-fl}
  [ "$2" = - ] || vctl add-flow br0 "priority=100,in_port=fl,actions=$2" >/dev/null
  ip netns exec $ns_f timeout -s INT "$flood_s" trafgen -o $dev -i "$work/tg.cfg" -n 50000000 --cpus 1 -q \
    >"$work/tg.out" 2>&1 &
  tg_pid=$!
  sleep 1   # let the flood reach its rate
  kill -0 $tg_pid 2>/dev/null || { echo "bench-packet-in: trafgen stopped early:" >&2; cat "$work/tg.out" >&2; exit 1; }
  phase "$1"
  kill -0 $tg_pid 2>/dev/null || echo "bench-packet-in: the flood ended before the measurements did (raise FLOOD_SECONDS)" >&2
  stop "$tg_pid"; wait "$tg_pid" 2>/dev/null || true; tg_pid=
  sleep 2   # let the packet-in queue drain before the next phase
}
for r in $(seq "$rounds"); do
  echo "round $r/$rounds"
  phase quiet
  flooded flood controller
  flooded flood-drop drop
  flooded flood-veth - fx0
  spin_pid=$(busy_loop "$flood_s")
  flooded veth-busy - fx0
  stop "$spin_pid"; spin_pid=
done
flock -u 9

echo
echo "$rounds rounds, $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), load average $(cut -d" " -f1-3 /proc/loadavg); medians over the rounds:"
python3 "$root/scripts/medians.py" "$results"
