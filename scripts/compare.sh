#!/usr/bin/env bash
# vswitchd side by side with Open vSwitch (userspace datapath) and the Linux
# bridge, in one run, with the project's own generator (vswitch-pktgen).
# Self-contained: needs only this repository, root, iproute2, python3 and
# (installed from the distribution when missing) openvswitch-switch.
#
#   sudo scripts/compare.sh [ROUNDS] [SECONDS]        (defaults: 2 rounds of 3 s)
#
# Topology, the same for every switch: a "host" namespace runs the switch;
# two "VM" namespaces hold the kernel sides of its two TAP ports (the Linux
# bridge cannot own a TAP, so it gets veth pairs, the kernel-only
# equivalent), MACs 52:54:00:00:00:01/02, addresses 10.250.0.1/2. The
# switches forward by MAC learning (vswitchd's default NORMAL flow, Open
# vSwitch fail_mode=standalone, the bridge's FDB); a ping both ways teaches
# them the MACs before any measurement.
#
# Each round brings up every switch in turn (interleaved rounds, so a
# background load hits all of them alike) and runs the generator from VM 1's
# interface to VM 2's as fast as it can, 64-byte UDP frames, for each flow
# count in FLOWS; plus the generator's own ceiling (a veth pair with no
# switch). The table shows medians over the rounds: frames delivered per
# second, loss, latency p50/p99 at that (saturating) load, and vswitchd's
# ratio to each other switch.
#
# MODE=ct replaces MAC learning by the stateful firewall
# (flows/stateful-firewall.flows, loaded as it is into vswitchd and, with
# ovs-ofctl, into Open vSwitch; the Linux bridge has no equivalent and is
# left out). Besides the 64-byte lines, each switch carries IMIX (64/570/
# 1518 bytes, 7:4:1) for a Gbit/s line.
#
# CURVE=1 also runs each switch at 10, 30, 50, 70 and 90% of what it
# delivered and writes latency (p50, p99) against offered load for every
# switch to ${CURVE_OUT:-compare-latency}.csv and .svg (a plot to open in a
# browser: operators compare curves, not single numbers).
#
# Environment: MODE (normal or ct), SWITCHES (default "vswitchd
# ovs-netdev linux-bridge"; ovs-netdev-tso is Open vSwitch with
# userspace-tso-enable=true), FLOWS (default "1 10000"), SIZE (default
# 64), KEEP=1 keeps the work directory (JSON reports, logs). Everything it creates (namespaces named
# vswcmp<pid>*, processes it started, the work directory) is removed on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-2}
secs=${2:-3}
mode=${MODE:-normal}
case $mode in
  normal) switches=${SWITCHES:-"vswitchd ovs-netdev linux-bridge"} ;;
  ct) switches=${SWITCHES:-"vswitchd ovs-netdev"} ;;
  *) echo "compare: MODE is normal or ct" >&2; exit 2 ;;
esac
flows_list=${FLOWS:-"1 10000"}
size=${SIZE:-64}

die() { echo "compare: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, TAPs, Open vSwitch)"
for t in ip python3 cargo; do command -v $t >/dev/null || die "missing $t"; done
case " $switches " in
  *" ovs-netdev"*)
    if ! command -v ovs-vswitchd >/dev/null || ! command -v ovsdb-server >/dev/null; then
      echo "compare: installing openvswitch-switch" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openvswitch-switch >&2 \
        || die "could not install openvswitch-switch"
    fi ;;
esac

(cd "$root" && cargo build --release --bin vswitchd --bin vswitchctl --bin vswitch-pktgen >&2)
bin=${CARGO_TARGET_DIR:-$root/target}/release
[ -x "$bin/vswitch-pktgen" ] || die "no $bin/vswitch-pktgen after the build"

work=$(mktemp -d /tmp/vswcmp.XXXXXX)
H=vswcmp$$h A=vswcmp$$a B=vswcmp$$b
MAC1=52:54:00:00:00:01 MAC2=52:54:00:00:00:02
IP1=10.250.0.1 IP2=10.250.0.2
vsw_pid=""

inns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
mkns() {
  ip netns add "$1"
  ip -n "$1" link set lo up
  inns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# Open vSwitch in private directories: nothing of a system instance is used
# or touched.
export OVS_RUNDIR=$work/ovs/run OVS_DBDIR=$work/ovs/db OVS_LOGDIR=$work/ovs/log
vsctl() { timeout 15 ovs-vsctl --db=unix:$OVS_RUNDIR/db.sock "$@"; }

stop_switch() {
  if [ -n "$vsw_pid" ]; then
    kill "$vsw_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$vsw_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$vsw_pid" 2>/dev/null || true
    wait "$vsw_pid" 2>/dev/null || true
    vsw_pid=""
  fi
  local d pf pid
  for d in ovs-vswitchd ovsdb-server; do
    pf=$OVS_RUNDIR/$d.pid
    [ -f "$pf" ] || continue
    pid=$(cat "$pf")
    timeout 10 ovs-appctl -t "$OVS_RUNDIR/$d.$pid.ctl" exit >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pf"
  done
  rm -rf "$OVS_RUNDIR" "$OVS_DBDIR"
  for ns in $H $A $B; do
    if ip netns list | grep -qw "$ns"; then
      for p in $(ip netns pids "$ns"); do kill -9 "$p" 2>/dev/null || true; done
      ip netns del "$ns"
    fi
  done
}

cleanup() {
  stop_switch
  if [ "${KEEP:-0}" = 1 ]; then echo "compare: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

# attach_tap TAP VM MAC IP: moves the kernel side of a TAP the switch made
# in the host namespace into the VM namespace and configures it there.
attach_tap() {
  local tap=$1 vm=$2 mac=$3 addr=$4
  for _ in $(seq 100); do ip -n $H link show "$tap" >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n $H link set "$tap" netns "$vm"
  ip -n "$vm" link set "$tap" address "$mac"
  ip -n "$vm" addr add "$addr/24" dev "$tap"
  ip -n "$vm" link set "$tap" up
}

start_vswitchd() {
  local cfg=()
  if [ "$mode" = ct ]; then
    printf '[[bridge]]\nname = "br0"\nflow_files = ["%s"]\n' "$root/flows/stateful-firewall.flows" >"$work/vswitchd.toml"
    cfg=(--config "$work/vswitchd.toml")
  fi
  inns $H "$bin/vswitchd" --ctl "$work/vswitchd.sock" --state-dir "$work/vswitchd-state" "${cfg[@]}" >"$work/vswitchd.log" 2>&1 &
  vsw_pid=$!
  # The socket file appears at bind, before the daemon answers: wait for
  # an answer.
  local up=0
  for _ in $(seq 100); do
    if "$bin/vswitchctl" --ctl "$work/vswitchd.sock" show >/dev/null 2>&1; then up=1; break; fi
    sleep 0.1
  done
  [ $up = 1 ] || die "vswitchd did not start: $(tail -5 "$work/vswitchd.log")"
  for t in tap1 tap2; do "$bin/vswitchctl" --ctl "$work/vswitchd.sock" add-port br0 $t type=tap >/dev/null; done
  attach_tap tap1 $A $MAC1 $IP1
  attach_tap tap2 $B $MAC2 $IP2
}

start_ovs() {  # start_ovs [tso]
  mkdir -p "$OVS_RUNDIR" "$OVS_DBDIR" "$OVS_LOGDIR"
  [ -f "$OVS_DBDIR/conf.db" ] || ovsdb-tool create "$OVS_DBDIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  timeout 15 ovsdb-server "$OVS_DBDIR/conf.db" --remote=punix:"$OVS_RUNDIR/db.sock" \
    --pidfile="$OVS_RUNDIR/ovsdb-server.pid" --detach -vconsole:off --log-file="$OVS_LOGDIR/ovsdb-server.log"
  vsctl --no-wait init
  if [ "${1:-}" = tso ]; then vsctl --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true; fi
  inns $H timeout 20 ovs-vswitchd unix:"$OVS_RUNDIR/db.sock" \
    --pidfile="$OVS_RUNDIR/ovs-vswitchd.pid" --detach -vconsole:off --log-file="$OVS_LOGDIR/ovs-vswitchd.log"
  vsctl -- add-br br0 -- set bridge br0 datapath_type=netdev fail_mode=standalone \
        -- add-port br0 tap1 -- set interface tap1 type=tap \
        -- add-port br0 tap2 -- set interface tap2 type=tap >/dev/null
  if [ "$mode" = ct ]; then
    timeout 15 ovs-ofctl del-flows br0
    timeout 15 ovs-ofctl add-flows br0 "$root/flows/stateful-firewall.flows"
  fi
  attach_tap tap1 $A $MAC1 $IP1
  attach_tap tap2 $B $MAC2 $IP2
}

start_bridge() {
  ip -n $H link add br0 type bridge stp_state 0 forward_delay 0
  ip -n $H link set br0 up
  local i vm mac addr
  for i in 1 2; do
    if [ $i = 1 ]; then vm=$A mac=$MAC1 addr=$IP1; else vm=$B mac=$MAC2 addr=$IP2; fi
    ip -n $H link add p$i type veth peer name tap$i netns "$vm"
    ip -n $H link set p$i master br0 up
    ip -n "$vm" link set tap$i address $mac
    ip -n "$vm" addr add $addr/24 dev tap$i
    ip -n "$vm" link set tap$i up
  done
}

start_switch() {
  mkns $H; mkns $A; mkns $B
  case $1 in
    vswitchd) start_vswitchd ;;
    ovs-netdev) start_ovs ;;
    ovs-netdev-tso) start_ovs tso ;;
    linux-bridge) start_bridge ;;
    *) die "unknown switch $1" ;;
  esac
  # Teach the switch both MACs, and check the path works at all.
  local ok=0
  for _ in $(seq 20); do
    if inns $A ping -q -c 1 -W 1 $IP2 >/dev/null 2>&1 && inns $B ping -q -c 1 -W 1 $IP1 >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  [ $ok = 1 ] || die "$1: no connectivity between the VMs"
}

pktgen() {  # pktgen OUT ARGS...: one run, JSON report to OUT
  local out=$1; shift
  timeout $((secs + 30)) "$bin/vswitch-pktgen" --json --quiet --duration "$secs" --size "$size" "$@" >"$out" \
    || die "vswitch-pktgen $* failed (see $out)"
}

mkdir -p "$work/res"
echo "compare: $rounds round(s) of $secs s, switches: $switches; flows: $flows_list; $size-byte frames; work dir $work" >&2
for r in $(seq "$rounds"); do
  echo "compare: round $r: generator ceiling (veth loopback)" >&2
  for f in $flows_list; do
    pktgen "$work/res/generator.$f.$r.json" --self-test --flows "$f"
  done
  f=${flows_list%% *}
  half=$(python3 -c 'import json,sys; print(max(1, int(json.load(open(sys.argv[1]))["received"]["pps"] / 2)))' "$work/res/generator.$f.$r.json")
  pktgen "$work/res/generator.half$f.$r.json" --self-test --flows "$f" --rate "$half"
  pktgen "$work/res/generator.imix$f.$r.json" --self-test --flows "$f" --imix
  for sw in $switches; do
    echo "compare: round $r: $sw" >&2
    start_switch "$sw"
    for f in $flows_list; do
      pktgen "$work/res/$sw.$f.$r.json" --tx tap1 --tx-netns $A --rx tap2 --rx-netns $B \
        --src-mac $MAC1 --dst-mac $MAC2 --flows "$f"
    done
    # IMIX, and latency at half of what this switch delivered just now
    # (first flow count): a load it carries without queueing up.
    f=${flows_list%% *}
    pktgen "$work/res/$sw.imix$f.$r.json" --tx tap1 --tx-netns $A --rx tap2 --rx-netns $B \
      --src-mac $MAC1 --dst-mac $MAC2 --flows "$f" --imix
    half=$(python3 -c 'import json,sys; print(max(1, int(json.load(open(sys.argv[1]))["received"]["pps"] / 2)))' "$work/res/$sw.$f.$r.json")
    pktgen "$work/res/$sw.half$f.$r.json" --tx tap1 --tx-netns $A --rx tap2 --rx-netns $B \
      --src-mac $MAC1 --dst-mac $MAC2 --flows "$f" --rate "$half"
    if [ "${CURVE:-0}" = 1 ]; then
      for pct in 10 30 50 70 90; do
        rate=$(python3 -c 'import json,sys; print(max(1, int(json.load(open(sys.argv[1]))["received"]["pps"] * int(sys.argv[2]) / 100)))' "$work/res/$sw.$f.$r.json" $pct)
        pktgen "$work/res/$sw.curve$pct.$r.json" --tx tap1 --tx-netns $A --rx tap2 --rx-netns $B \
          --src-mac $MAC1 --dst-mac $MAC2 --flows "$f" --rate "$rate"
      done
    fi
    stop_switch
  done
done

python3 - "$work/res" "$switches" "$flows_list" "$size" "$secs" "$rounds" "$mode" <<'PY'
import json, os, statistics, sys
res, switches, flows, size, secs, rounds, mode = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
cols = ["generator"] + switches
def runs(sw, f):
    out = []
    for n in sorted(os.listdir(res)):
        if n.startswith(f"{sw}.{f}."):
            with open(os.path.join(res, n)) as fh:
                out.append(json.load(fh))
    return out
def med(xs):
    return statistics.median(xs) if xs else float("nan")
def fig(sw, f, key):
    rs = runs(sw, f)
    vals = []
    for r in rs:
        rx = r.get("received") or {}
        lat = rx.get("latency_ns") or {}
        vals.append({
            "rx_pps": rx.get("pps", 0.0),
            "tx_pps": r["sent"]["pps"],
            "loss": 100.0 * rx.get("loss_ratio", 0.0),
            "p50": lat.get("p50", 0) / 1000.0,
            "p99": lat.get("p99", 0) / 1000.0,
            "tx_cpu": 100.0 * r.get("tx_cpu", 0.0),
            "busy": 100.0 * r.get("machine", {}).get("busy", 0.0),
            "gbps": rx.get("gbps_l2", 0.0),
        }[key])
    return med(vals)
rows = [("delivered pps", "rx_pps", "{:,.0f}", True),
        ("offered pps", "tx_pps", "{:,.0f}", True),
        ("loss %", "loss", "{:.1f}", False),
        ("latency p50 us", "p50", "{:.0f}", False),
        ("latency p99 us", "p99", "{:.0f}", False),
        ("generator tx cpu %", "tx_cpu", "{:.0f}", None),
        ("machine cpu busy %", "busy", "{:.0f}", None)]
others = [s for s in switches if s != "vswitchd"]
hdr = ["line"] + cols + ([f"vswitchd/{o}" for o in others] if "vswitchd" in switches else [])
half_rows = [("offered pps at 50% load", "tx_pps", "{:,.0f}", None),
             ("latency p50 us at 50% load", "p50", "{:.0f}", False),
             ("latency p99 us at 50% load", "p99", "{:.0f}", False),
             ("loss % at 50% load", "loss", "{:.2f}", False)]
imix_rows = [("IMIX delivered Gbit/s (L2)", "gbps", "{:.3f}", True),
             ("IMIX delivered pps", "rx_pps", "{:,.0f}", True),
             ("IMIX loss %", "loss", "{:.1f}", False)]
table = []
for f, rs in [(f, rows) for f in flows] + [("half" + flows[0], half_rows), ("imix" + flows[0], imix_rows)]:
    for name, key, fmt, higher_better in rs:
        n = f[4:] if f.startswith(("half", "imix")) else f
        line = [f"{size if not f.startswith('imix') else 'IMIX'}{'B' if not f.startswith('imix') else ''} {n} flow{'s' if n != '1' else ''}: {name}"]
        vals = {c: fig(c, f, key) for c in cols}
        line += [fmt.format(vals[c]) for c in cols]
        if "vswitchd" in switches:
            for o in others:
                a, b = vals["vswitchd"], vals[o]
                line.append("-" if higher_better is None or not b else f"{a / b:.2f}x")
        table.append(line)
w = [max(len(str(r[i])) for r in [hdr] + table) for i in range(len(hdr))]
print(f"# vswitch-pktgen, TAP to TAP{' (linux-bridge: veth)' if 'linux-bridge' in switches else ''}, pipeline: {'stateful firewall' if mode == 'ct' else 'NORMAL (MAC learning)'}; {size}-byte UDP frames as fast as possible, "
      f"medians of {rounds} round(s) of {secs} s; latency at that saturating load; "
      f"'generator' is vswitch-pktgen --self-test (veth pair, no switch); 50% load is half of what each delivered; "
      f"ratios are vswitchd/other (pps: higher is better; loss, latency: lower is better)")
for r in [hdr] + table:
    print("  ".join(str(v).rjust(w[i]) if i else str(v).ljust(w[i]) for i, v in enumerate(r)))

curve = {}
for sw in switches:
    pts = []
    for pct in (10, 30, 50, 70, 90):
        rs = runs(sw, f"curve{pct}")
        if not rs:
            continue
        lat = [r["received"]["latency_ns"] or {} for r in rs if r.get("received")]
        pts.append((med([r["sent"]["pps"] for r in rs]),
                    med([l.get("p50", 0) / 1000.0 for l in lat]),
                    med([l.get("p99", 0) / 1000.0 for l in lat])))
    if pts:
        curve[sw] = pts
if curve:
    import math
    base = os.environ.get("CURVE_OUT", "compare-latency")
    with open(base + ".csv", "w") as fh:
        fh.write("switch,offered_pps,p50_us,p99_us\n")
        for sw, pts in curve.items():
            for x, a, b in pts:
                fh.write(f"{sw},{x:.0f},{a:.1f},{b:.1f}\n")
    W, H, L, B = 860, 520, 80, 60
    xs = [x for pts in curve.values() for x, _, _ in pts]
    ys = [max(v, 1.0) for pts in curve.values() for _, a, b in pts for v in (a, b)]
    xmax = max(xs) * 1.05
    ylo, yhi = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    yhi = max(yhi, ylo + 1)
    X = lambda x: L + (W - L - 200) * x / xmax
    Y = lambda y: (H - B) - (H - B - 30) * (math.log10(max(y, 1.0)) - ylo) / (yhi - ylo)
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="18">one-way latency against offered load, {size}-byte UDP, TAP to TAP, {mode} (vswitch-pktgen)</text>',
         f'<line x1="{L}" y1="{H-B}" x2="{W-200}" y2="{H-B}" stroke="black"/>',
         f'<line x1="{L}" y1="30" x2="{L}" y2="{H-B}" stroke="black"/>',
         f'<text x="{(W-200+L)/2}" y="{H-15}" text-anchor="middle">offered load, packets/s</text>',
         f'<text x="20" y="{(H-B)/2}" transform="rotate(-90 20 {(H-B)/2})" text-anchor="middle">latency, us (log)</text>']
    for e in range(ylo, yhi + 1):
        y = Y(10 ** e)
        o.append(f'<line x1="{L-4}" y1="{y:.1f}" x2="{W-200}" y2="{y:.1f}" stroke="#ddd"/><text x="{L-8}" y="{y+4:.1f}" text-anchor="end">{10**e:g}</text>')
    for i in range(6):
        x = xmax * i / 5
        o.append(f'<text x="{X(x):.1f}" y="{H-B+16}" text-anchor="middle">{x:,.0f}</text>')
    for k, (sw, pts) in enumerate(curve.items()):
        c = colors[k % len(colors)]
        for j, dash in ((1, ""), (2, ' stroke-dasharray="6 4"')):
            path = " ".join(f"{X(p[0]):.1f},{Y(p[j]):.1f}" for p in pts)
            o.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        ly = 50 + 40 * k
        o.append(f'<line x1="{W-190}" y1="{ly}" x2="{W-160}" y2="{ly}" stroke="{c}" stroke-width="2"/><text x="{W-155}" y="{ly+4}">{sw} p50</text>')
        o.append(f'<line x1="{W-190}" y1="{ly+16}" x2="{W-160}" y2="{ly+16}" stroke="{c}" stroke-width="2" stroke-dasharray="6 4"/><text x="{W-155}" y="{ly+20}">{sw} p99</text>')
    o.append("</svg>")
    with open(base + ".svg", "w") as fh:
        fh.write("\n".join(o) + "\n")
    print(f"# latency against load: {base}.csv, {base}.svg")
PY
