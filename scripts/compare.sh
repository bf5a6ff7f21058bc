#!/usr/bin/env bash
# vswitchd side by side with Open vSwitch (userspace datapath, with and
# without userspace TSO), the Linux bridge and a bare TAP forwarder, in one
# run, with the project's own generator (vswitch-pktgen) and iperf3.
# Self-contained: needs only this repository, root, iproute2, python3,
# iperf3 and (installed from the distribution when missing)
# openvswitch-switch, and gnuplot for the PNG plot.
#
#   sudo scripts/compare.sh [ROUNDS] [SECONDS]        (defaults: 2 rounds of 3 s)
#
# TAP to TAP, the same for every switch: a "host" namespace runs the
# switch; two "VM" namespaces hold the kernel sides of its two TAP ports
# (the Linux bridge cannot own a TAP, so it gets veth pairs, the
# kernel-only equivalent), MACs 52:54:00:00:00:01/02, addresses
# 10.250.0.1/2. In MODE normal the switches forward by MAC learning
# (vswitchd's default NORMAL flow, Open vSwitch fail_mode=standalone, the
# bridge's FDB); in MODE ct by the stateful firewall
# (flows/stateful-firewall.flows, loaded as it is into vswitchd and, with
# ovs-ofctl, into Open vSwitch; the Linux bridge has no equivalent and is
# left out). A ping both ways teaches them the MACs before any measurement.
# Lines: 64-byte UDP frames as fast as the generator sends them, for each
# flow count in FLOWS (delivered pps, loss); latency p50/p99 at 50% of what
# each delivered; IMIX (64/570/1518 bytes, 7:4:1) Gbit/s; TCP with 1 and 4
# streams (iperf3, VM 1 to VM 2, Gbit/s).
#
# Bare forwarder (MODE normal): `vswitch-pktgen bare-forward` owns the two
# TAPs instead of a switch and copies frames between them with plain
# read/write ("bare-rw") or io_uring batches ("bare-uring"): the TAP path's
# own limit, measured with the same generator in the same round, and
# vswitchd's ratio to it.
#
# Two hosts over Geneve (MODE normal, GENEVE=1 by default): two "host"
# namespaces joined by a veth underlay (192.168.251.1/2, MTU 1600), each
# with a switch, one VM namespace on its TAP and a Geneve tunnel (VNI 5000)
# to the other: two vswitchd, two Open vSwitch netdev with userspace Geneve
# (its underlay on a netdev bridge holding the veth, as its userspace
# tunnels need), the same with userspace TSO, and the kernel's geneve
# device on a Linux bridge. Lines: 64-byte pps, latency at 50% load, TCP 1
# stream.
#
# Each round brings up every switch in turn (interleaved rounds, so a
# background load hits all of them alike). The generator's own ceiling (a
# veth pair with no switch) is measured each round too. The table shows
# medians over the rounds and vswitchd's ratio to each other column
# (pps, Gbit/s: higher is better; loss, latency: lower is better).
#
# CURVE=1 also runs each switch (TAP to TAP, MODE normal) at 10, 30, 50, 70
# and 90% of what it delivered and writes latency (p50, p99) against
# offered load to ${CURVE_OUT:-compare-latency}.csv, .svg and .png (gnuplot,
# installed from the distribution when missing).
#
# Environment: MODE (normal, ct, or "normal ct", the default), SWITCHES
# (default "vswitchd ovs-netdev ovs-netdev-tso linux-bridge"), BARE=0 skips
# the bare forwarder, GENEVE=0 the two-host lines, TCP=0 the iperf3 lines,
# UDP=0 the generator's lines (a TCP-only run: more rounds in the same time,
# for a line whose spread from run to run is wider than the gap measured),
# FLOWS (default "1 10000"), the switch "vswitchd-alt" in SWITCHES runs
# vswitchd again with VSWITCHD_ALT_ARGS added to its command line (a
# setting measured against the default in the same rounds, e.g.
# SWITCHES="vswitchd vswitchd-alt" VSWITCHD_ALT_ARGS="--workers 1"),
# VSWITCHD_TAP_OPTS adds options to vswitchd's
# two TAP ports of the TAP-to-TAP lines (e.g. tap_io=readwrite), NICE=N
# runs ovs-vswitchd at nice N and vswitchd's workers at the same
# (--datapath-nice N; unset, both keep the script's own priority; -10 is
# what Open vSwitch's start script gives its daemon), KEEP=1 keeps the work directory (JSON reports,
# logs). Everything it creates (namespaces named vswcmp<pid>*, processes it
# started, the work directory) is removed on exit.
set -euo pipefail
# The whole script is one block: bash reads it all before running any of
# it, so a checkout updated while a comparison runs (it takes minutes)
# cannot change what the running one does next.
{

root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-2}
secs=${2:-3}
modes=${MODE:-"normal ct"}
for m in $modes; do
  case $m in normal | ct) ;; *) echo "compare: MODE is normal, ct or \"normal ct\"" >&2; exit 2 ;; esac
done
switches=${SWITCHES:-"vswitchd ovs-netdev ovs-netdev-tso linux-bridge"}
flows_list=${FLOWS:-"1 10000"}
first_flows=${flows_list%% *}
bare=${BARE:-1}
geneve=${GENEVE:-1}
tcp=${TCP:-1}
udp=${UDP:-1}
curve=${CURVE:-0}
# The bare forwarder and the latency curve are generator lines.
[ "$udp" = 1 ] || { bare=0; curve=0; }
[ "$udp" = 1 ] || [ "$tcp" = 1 ] || { echo "compare: UDP=0 and TCP=0 leave nothing to measure" >&2; exit 2; }

die() { echo "compare: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, TAPs, Open vSwitch)"
for t in ip python3 cargo; do command -v $t >/dev/null || die "missing $t"; done
[ "$tcp" = 0 ] || command -v iperf3 >/dev/null || die "missing iperf3 (or run with TCP=0)"
apt_install() {
  echo "compare: installing $*" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2 \
    || die "could not install $*"
}
case " $switches " in
  *" ovs-netdev"*)
    if ! command -v ovs-vswitchd >/dev/null || ! command -v ovsdb-server >/dev/null; then
      apt_install openvswitch-switch
    fi ;;
esac
if [ "$curve" = 1 ] && ! command -v gnuplot >/dev/null; then apt_install gnuplot-nox; fi

(cd "$root" && cargo build --release --bin vswitchd --bin vswitchctl --bin vswitch-pktgen >&2)
bin=${CARGO_TARGET_DIR:-$root/target}/release
[ -x "$bin/vswitch-pktgen" ] || die "no $bin/vswitch-pktgen after the build"

work=$(mktemp -d /tmp/vswcmp.XXXXXX)
H=vswcmp$$h A=vswcmp$$a B=vswcmp$$b
G1=vswcmp$$g1 G2=vswcmp$$g2 V1=vswcmp$$v1 V2=vswcmp$$v2
K=vswcmp$$k
ALL_NS="$H $A $B $G1 $G2 $V1 $V2 $K"
MAC1=52:54:00:00:00:01 MAC2=52:54:00:00:00:02
IP1=10.250.0.1 IP2=10.250.0.2
UL1=192.168.251.1 UL2=192.168.251.2 VNI=5000
pids=()
ovs_dirs=()

inns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
mkns() {
  ip netns add "$1"
  ip -n "$1" link set lo up
  inns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# Open vSwitch in private directories, one per instance (the Geneve lines
# run two): nothing of a system instance is used or touched.
ovs_env() { local d=$1; shift; env OVS_RUNDIR="$d/run" OVS_DBDIR="$d/db" OVS_LOGDIR="$d/log" "$@"; }
vsctl() { local d=$1; shift; ovs_env "$d" timeout 15 ovs-vsctl --db=unix:"$d/run/db.sock" "$@"; }

stop_ovs() {
  local dir=$1 d pf pid
  for d in ovs-vswitchd ovsdb-server; do
    pf=$dir/run/$d.pid
    [ -f "$pf" ] || continue
    pid=$(cat "$pf")
    ovs_env "$dir" timeout 10 ovs-appctl -t "$dir/run/$d.$pid.ctl" exit >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pf"
  done
  rm -rf "$dir/run" "$dir/db"
}

stop_switch() {
  local p ns d
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  pids=()
  for d in "${ovs_dirs[@]}"; do stop_ovs "$d"; done
  ovs_dirs=()
  for ns in $ALL_NS; do
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

# attach_tap HOST TAP VM MAC IP: moves the kernel side of a TAP the switch
# made in namespace HOST into the VM namespace and configures it there.
attach_tap() {
  local h=$1 tap=$2 vm=$3 mac=$4 addr=$5 ok=0
  for _ in $(seq 100); do ip -n "$h" link show "$tap" >/dev/null 2>&1 && { ok=1; break; }; sleep 0.1; done
  [ $ok = 1 ] || die "$tap did not appear in $h"
  ip -n "$h" link set "$tap" netns "$vm"
  ip -n "$vm" link set "$tap" address "$mac"
  ip -n "$vm" addr add "$addr/24" dev "$tap"
  ip -n "$vm" link set "$tap" up
}

# start_vswitchd NS NAME [CONFIG [SWITCH]]: a vswitchd in NS with its own
# directory $work/NAME (control socket, OpenFlow sockets, state, log);
# waits until it answers. SWITCH vswitchd-alt adds VSWITCHD_ALT_ARGS.
start_vswitchd() {
  local ns=$1 name=$2 cfg=() alt=()
  [ -n "${3:-}" ] && cfg=(--config "$3")
  if [ "${4:-}" = vswitchd-alt ]; then
    read -ra alt <<<"${VSWITCHD_ALT_ARGS:-}"
    cfg+=("${alt[@]}")
  fi
  # A fresh state directory each time: the switch must not restore the
  # ports and flows of the previous run.
  rm -rf "$work/$name"
  mkdir -p "$work/$name"
  if [ -n "${NICE:-}" ]; then cfg+=(--datapath-nice "$NICE"); fi
  ip netns exec "$ns" "$bin/vswitchd" --ctl "$work/$name/vswitchd.sock" --state-dir "$work/$name/state" "${cfg[@]}" >"$work/$name.log" 2>&1 &
  pids+=($!)
  # The socket file appears at bind, before the daemon answers: wait for
  # an answer.
  for _ in $(seq 100); do
    if "$bin/vswitchctl" --ctl "$work/$name/vswitchd.sock" show >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "vswitchd did not start: $(tail -5 "$work/$name.log")"
}
ctl() { local name=$1; shift; "$bin/vswitchctl" --ctl "$work/$name/vswitchd.sock" "$@" >/dev/null; }

# start_ovs NS DIR [tso]: ovsdb-server and ovs-vswitchd (in NS) in DIR.
start_ovs() {
  local ns=$1 dir=$2
  ovs_dirs+=("$dir")
  mkdir -p "$dir/run" "$dir/db" "$dir/log"
  ovsdb-tool create "$dir/db/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  ovs_env "$dir" timeout 15 ovsdb-server "$dir/db/conf.db" --remote=punix:"$dir/run/db.sock" \
    --pidfile="$dir/run/ovsdb-server.pid" --detach -vconsole:off --log-file="$dir/log/ovsdb-server.log"
  vsctl "$dir" --no-wait init
  if [ "${3:-}" = tso ]; then vsctl "$dir" --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true; fi
  ovs_env "$dir" ip netns exec "$ns" timeout 20 nice -n "${NICE:-0}" ovs-vswitchd unix:"$dir/run/db.sock" \
    --pidfile="$dir/run/ovs-vswitchd.pid" --detach -vconsole:off --log-file="$dir/log/ovs-vswitchd.log"
}

tap_vswitchd() {  # tap_vswitchd MODE SWITCH
  local cfg=""
  if [ "$1" = ct ]; then
    printf '[[bridge]]\nname = "br0"\nflow_files = ["%s"]\n' "$root/flows/stateful-firewall.flows" >"$work/vswitchd.toml"
    cfg=$work/vswitchd.toml
  fi
  start_vswitchd $H vswitchd "$cfg" "$2"
  # shellcheck disable=SC2086 # options, word-split on purpose
  for t in tap1 tap2; do ctl vswitchd add-port br0 $t type=tap ${VSWITCHD_TAP_OPTS:-}; done
}

tap_ovs() {  # tap_ovs MODE [tso]
  local dir=$work/ovs
  start_ovs $H "$dir" "${2:-}"
  vsctl "$dir" -- add-br br0 -- set bridge br0 datapath_type=netdev fail_mode=standalone \
        -- add-port br0 tap1 -- set interface tap1 type=tap \
        -- add-port br0 tap2 -- set interface tap2 type=tap >/dev/null
  if [ "$1" = ct ]; then
    ovs_env "$dir" timeout 15 ovs-ofctl del-flows br0
    ovs_env "$dir" timeout 15 ovs-ofctl add-flows br0 "$root/flows/stateful-firewall.flows"
  fi
}

tap_bridge() {
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

# tap_bare readwrite|uring OUT: the bare forwarder owns tap1 and tap2; it
# writes its own report (frames, CPU-seconds, syscalls) to OUT when
# stop_switch sends it SIGTERM.
tap_bare() {
  ip netns exec $H "$bin/vswitch-pktgen" bare-forward --a tap1 --b tap2 --io "$1" --duration 3600 --json \
    >"$2" 2>"$work/bare-$1.log" &
  pids+=($!)
}

# wait_ping VM_FROM IP VM_BACK IP_BACK WHAT: both ways answer (bounded).
wait_ping() {
  for _ in $(seq 30); do
    if inns "$1" ping -q -c 1 -W 1 "$2" >/dev/null 2>&1 && inns "$3" ping -q -c 1 -W 1 "$4" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "$5: no connectivity between the VMs"
}

start_tap() {  # start_tap SWITCH MODE [FORWARDER_REPORT]
  mkns $H; mkns $A; mkns $B
  case $1 in
    vswitchd | vswitchd-alt) tap_vswitchd "$2" "$1" ;;
    ovs-netdev) tap_ovs "$2" ;;
    ovs-netdev-tso) tap_ovs "$2" tso ;;
    linux-bridge) tap_bridge ;;
    bare-rw) tap_bare readwrite "$3" ;;
    bare-uring) tap_bare uring "$3" ;;
    *) die "unknown switch $1" ;;
  esac
  if [ "$1" != linux-bridge ]; then
    attach_tap $H tap1 $A $MAC1 $IP1
    attach_tap $H tap2 $B $MAC2 $IP2
  fi
  wait_ping $A $IP2 $B $IP1 "$1"
}

# Two hosts: G1 (VM V1) and G2 (VM V2), underlay veth ul1 <-> ul2.
start_geneve() {
  local sw=$1 i g vm ul rem mac addr tso
  mkns $G1; mkns $G2; mkns $V1; mkns $V2
  ip -n $G1 link add ul1 type veth peer name ul2 netns $G2
  for i in 1 2; do
    if [ $i = 1 ]; then g=$G1 vm=$V1 ul=$UL1 rem=$UL2 mac=$MAC1 addr=$IP1; else g=$G2 vm=$V2 ul=$UL2 rem=$UL1 mac=$MAC2 addr=$IP2; fi
    ip -n $g link set ul$i mtu 1600 up
    case $sw in
      vswitchd | vswitchd-alt)
        ip -n $g addr add $ul/24 dev ul$i
        start_vswitchd $g gnv$i "" $sw
        ctl gnv$i add-port br0 gtap$i type=tap ofport=1
        ctl gnv$i add-port br0 tun0 type=geneve ofport=2 remote_ip=$rem local_ip=$ul key=$VNI
        attach_tap $g gtap$i $vm $mac $addr ;;
      ovs-netdev | ovs-netdev-tso)
        # Userspace tunnels route and resolve over a netdev bridge that
        # holds the underlay port and the host's underlay address.
        tso=""
        [ $sw = ovs-netdev-tso ] && tso=tso
        start_ovs $g "$work/ovs$i" $tso
        vsctl "$work/ovs$i" -- add-br brul -- set bridge brul datapath_type=netdev -- add-port brul ul$i \
          -- add-br br1 -- set bridge br1 datapath_type=netdev fail_mode=standalone \
          -- add-port br1 gtap$i -- set interface gtap$i type=tap ofport_request=1 \
          -- add-port br1 gnv$i -- set interface gnv$i type=geneve ofport_request=10 \
             options:remote_ip=$rem options:key=$VNI >/dev/null
        ip -n $g addr add $ul/24 dev brul
        ip -n $g link set brul mtu 1600 up
        attach_tap $g gtap$i $vm $mac $addr ;;
      linux-bridge)
        ip -n $g addr add $ul/24 dev ul$i
        ip -n $g link add gnv0 type geneve id $VNI remote $rem dstport 6081
        ip -n $g link add br0 type bridge stp_state 0 forward_delay 0
        ip -n $g link set gnv0 master br0 up
        ip -n $g link set br0 up
        ip -n $g link add p$i type veth peer name gtap$i netns $vm
        ip -n $g link set p$i master br0 up
        ip -n $vm link set gtap$i address $mac
        ip -n $vm addr add $addr/24 dev gtap$i
        ip -n $vm link set gtap$i up ;;
      *) die "unknown switch $sw" ;;
    esac
  done
  wait_ping $V1 $IP2 $V2 $IP1 "$sw over Geneve"
}

# kernel_geneve: true when this kernel has the geneve device (the Linux
# bridge's two-host line needs it; some kernels are built without it).
kernel_geneve() {
  local rc=0
  mkns $K
  ip -n $K link add gnvprobe type geneve id 1 remote 192.0.2.1 2>/dev/null || rc=1
  ip netns del $K
  return $rc
}

pktgen() {  # pktgen OUT ARGS...: one run, JSON report to OUT
  local out=$1; shift
  timeout $((secs + 30)) "$bin/vswitch-pktgen" --json --quiet --duration "$secs" "$@" >"$out" \
    || die "vswitch-pktgen $* failed (see $out)"
}
rx_pps() {  # rx_pps JSON PERCENT: PERCENT% of the pps a run delivered
  python3 -c 'import json,sys; print(max(1, int(json.load(open(sys.argv[1]))["received"]["pps"] * int(sys.argv[2]) / 100)))' "$1" "$2"
}
# iperf3_run OUT FROM_NS TO_NS TO_IP STREAMS: one iperf3 run (JSON to OUT)
# against a one-off server, retried (bounded) while the server is not yet
# listening (iperf3 -J reports "connection refused" inside its JSON).
iperf3_ok() { python3 -c 'import json,sys; json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]' "$1" 2>/dev/null; }
iperf3_run() {
  local out=$1 from=$2 to=$3 ip=$4 n=$5 srv
  inns "$to" timeout $((secs + 60)) iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
  srv=$!
  for _ in $(seq 50); do inns "$to" ss -ltn 2>/dev/null | grep -q ':5201 ' && break; sleep 0.1; done
  for _ in $(seq 10); do
    inns "$from" timeout $((secs + 20)) iperf3 -c "$ip" -p 5201 -t "$secs" -P "$n" -J >"$out" 2>/dev/null || true
    if iperf3_ok "$out"; then
      wait $srv 2>/dev/null || true
      return 0
    fi
    sleep 0.3
  done
  kill $srv 2>/dev/null || true
  wait $srv 2>/dev/null || true
  die "iperf3 from $from to $ip failed (see $out)"
}

mkdir -p "$work/res"
: >"$work/lines"
add_line() { grep -qx "$1" "$work/lines" || echo "$1" >>"$work/lines"; }  # keeps first-seen order
tap_gen() {  # tap_gen OUT ARGS...: the generator VM 1 -> VM 2 (TAP to TAP)
  local out=$1; shift
  pktgen "$out" --tx tap1 --tx-netns $A --rx tap2 --rx-netns $B --src-mac $MAC1 --dst-mac $MAC2 "$@"
}

echo "compare: $rounds round(s) of $secs s; modes: $modes; switches: $switches; bare: $bare; geneve: $geneve; flows: $flows_list; work dir $work" >&2
for r in $(seq "$rounds"); do
  if [ "$udp" = 1 ]; then
    echo "compare: round $r: generator ceiling (veth loopback)" >&2
    for f in $flows_list; do
      add_line "tap.normal.64.$f"
      pktgen "$work/res/tap.normal.64.$f.generator.$r.json" --self-test --flows "$f"
    done
    half=$(rx_pps "$work/res/tap.normal.64.$first_flows.generator.$r.json" 50)
    pktgen "$work/res/tap.normal.half.generator.$r.json" --self-test --flows "$first_flows" --rate "$half"
    pktgen "$work/res/tap.normal.imix.generator.$r.json" --self-test --flows "$first_flows" --imix
  fi
  for m in $modes; do
    extra=""
    [ "$m" = normal ] && [ "$bare" = 1 ] && extra="bare-rw bare-uring"
    for sw in $switches $extra; do
      [ "$m" = ct ] && [ "$sw" = linux-bridge ] && continue
      echo "compare: round $r: $m: $sw" >&2
      start_tap "$sw" "$m" "$work/res/fwd.$sw.$r.json"
      p="$work/res/tap.$m"
      for f in $flows_list; do
        [ "$udp" = 1 ] || break
        add_line "tap.$m.64.$f"
        # The forwarder's counters just before and after its 64-byte line
        # (SIGUSR1 prints a snapshot): its frames per CPU-second under
        # saturation, the figure a loaded machine does not distort.
        case $sw in bare-*) kill -USR1 "${pids[0]}" ;; esac
        tap_gen "$p.64.$f.$sw.$r.json" --flows "$f"
        case $sw in bare-*) kill -USR1 "${pids[0]}"; sleep 0.2 ;; esac
        # The bare forwarder is a yardstick for the 64-byte line only.
        case $sw in bare-*) break ;; esac
      done
      # Latency at half of what this switch delivered just now (first flow
      # count): a load it carries without queueing up.
      if [ "$udp" = 1 ]; then
        add_line "tap.$m.half"
        tap_gen "$p.half.$sw.$r.json" --flows "$first_flows" --rate "$(rx_pps "$p.64.$first_flows.$sw.$r.json" 50)"
        case $sw in bare-*) stop_switch; continue ;; esac
        add_line "tap.$m.imix"
        tap_gen "$p.imix.$sw.$r.json" --flows "$first_flows" --imix
      fi
      if [ "$tcp" = 1 ]; then
        for n in 1 4; do
          add_line "tap.$m.tcp$n"
          iperf3_run "$p.tcp$n.$sw.$r.json" $A $B $IP2 $n
        done
      fi
      if [ "$curve" = 1 ] && [ "$m" = normal ]; then
        for pct in 10 30 50 70 90; do
          tap_gen "$work/res/curve.$pct.$sw.$r.json" --flows "$first_flows" --rate "$(rx_pps "$p.64.$first_flows.$sw.$r.json" $pct)"
        done
      fi
      stop_switch
    done
  done
  if [ "$geneve" = 1 ]; then
    for sw in $switches; do
      if [ "$sw" = linux-bridge ] && ! kernel_geneve; then
        echo "compare: round $r: this kernel has no geneve device: no Linux bridge line over Geneve" >&2
        continue
      fi
      echo "compare: round $r: two hosts over Geneve: $sw" >&2
      start_geneve "$sw"
      p="$work/res/geneve.normal"
      if [ "$udp" = 1 ]; then
        add_line "geneve.normal.64.$first_flows"
        pktgen "$p.64.$first_flows.$sw.$r.json" --tx gtap1 --tx-netns $V1 --rx gtap2 --rx-netns $V2 \
          --src-mac $MAC1 --dst-mac $MAC2 --flows "$first_flows"
        add_line "geneve.normal.half"
        pktgen "$p.half.$sw.$r.json" --tx gtap1 --tx-netns $V1 --rx gtap2 --rx-netns $V2 \
          --src-mac $MAC1 --dst-mac $MAC2 --flows "$first_flows" --rate "$(rx_pps "$p.64.$first_flows.$sw.$r.json" 50)"
      fi
      if [ "$tcp" = 1 ]; then
        add_line "geneve.normal.tcp1"
        iperf3_run "$p.tcp1.$sw.$r.json" $V1 $V2 $IP2 1
      fi
      stop_switch
    done
  fi
done

python3 - "$work/res" "$work/lines" "$switches" "$bare" "$secs" "$rounds" <<'PY'
import json, os, statistics, sys
res, lines_file, switches, bare, secs, rounds = sys.argv[1:7]
switches = switches.split()
cols = ["generator"] + switches + (["bare-rw", "bare-uring"] if bare == "1" else [])
others = [c for c in cols if c not in ("vswitchd", "generator")]
files = os.listdir(res)

def runs(key, sw):
    out = []
    for n in sorted(files):
        if n.startswith(f"{key}.{sw}.") and n.endswith(".json"):
            with open(os.path.join(res, n)) as fh:
                out.append(json.load(fh))
    return out

def metric(r, m):
    if m == "tcp":
        return r["end"]["sum_received"]["bits_per_second"] / 1e9
    rx = r.get("received") or {}
    lat = rx.get("latency_ns") or {}
    return {"rx_pps": rx.get("pps", 0.0), "loss": 100.0 * rx.get("loss_ratio", 0.0),
            "p50": lat.get("p50", 0) / 1000.0, "p99": lat.get("p99", 0) / 1000.0,
            "gbps": rx.get("gbps_l2", 0.0), "tx_cpu": 100.0 * r.get("tx_cpu", 0.0)}[m]

def fig(key, sw, m):
    vals = [metric(r, m) for r in runs(key, sw)]
    return statistics.median(vals) if vals else None

def where(key):
    kind, mode = key.split(".")[:2]
    if kind == "geneve":
        return "two hosts over Geneve, NORMAL"
    return "TAP to TAP, " + ("NORMAL" if mode == "normal" else "stateful firewall")

rows = []
for key in open(lines_file).read().split():
    last = key.split(".")[-1]
    if key.split(".")[2] == "64":
        n = key.split(".")[3]
        spec = [(f"64B {n} flow{'s' if n != '1' else ''}: delivered pps", "rx_pps", "{:,.0f}", True),
                (f"64B {n} flow{'s' if n != '1' else ''}: loss %", "loss", "{:.1f}", False)]
    elif last == "half":
        spec = [("latency p50 us at 50% load", "p50", "{:.0f}", False),
                ("latency p99 us at 50% load", "p99", "{:.0f}", False)]
    elif last == "imix":
        spec = [("IMIX delivered Gbit/s (L2)", "gbps", "{:.3f}", True)]
    elif last.startswith("tcp"):
        spec = [(f"TCP {last[3:]} stream{'s' if last != 'tcp1' else ''} Gbit/s (iperf3)", "tcp", "{:.2f}", True)]
    else:
        continue
    for name, m, fmt, higher in spec:
        vals = {c: fig(key, c, m) for c in cols}
        line = [f"{where(key)}: {name}"] + ["-" if vals[c] is None else fmt.format(vals[c]) for c in cols]
        for o in others:
            a, b = vals.get("vswitchd"), vals.get(o)
            line.append("-" if a is None or b is None else f"{a / b:.2f}x" if b else f"{o} 0")
        rows.append(line)
hdr = ["line"] + cols + [f"vswitchd/{o}" for o in others]
keep = [i for i in range(len(hdr)) if i == 0 or any(r[i] != "-" for r in rows)]
hdr = [hdr[i] for i in keep]
rows = [[r[i] for i in keep] for r in rows]
print(f"# medians of {rounds} round(s) of {secs} s; vswitch-pktgen 64-byte UDP as fast as possible unless said; "
      "'generator' is vswitch-pktgen --self-test (veth pair, no switch); linux-bridge TAP to TAP uses veths; "
      "bare-rw / bare-uring: vswitch-pktgen bare-forward (read/write, io_uring) between the same two TAPs; "
      "50% load is half of what each delivered; ratios vswitchd/other (pps, Gbit/s: higher is better; loss, latency: lower is better)")
w = [max(len(str(r[i])) for r in [hdr] + rows) for i in range(len(hdr))]
for r in [hdr] + rows:
    print("  ".join(str(v).rjust(w[i]) if i else str(v).ljust(w[i]) for i, v in enumerate(r)))
if any(r[i] in ("0.00", "0") for r in rows if "TCP" in r[0] for i in range(1, len(hdr))):
    print("# a TCP line of 0 Gbit/s: the connection carried no data through that switch; its log "
          "(KEEP=1 keeps it) says why (Open vSwitch 3.1 with userspace TSO drops offloaded segments on "
          "tunnels: 'Tunneling packets with HW offload flags is not supported')")
if bare == "1":
    key = "tap.normal.64." + min((k.split(".")[3] for k in open(lines_file).read().split() if k.startswith("tap.normal.64.")), key=int)
    v, rw, ur = (fig(key, c, "rx_pps") for c in ("vswitchd", "bare-rw", "bare-uring"))
    if v and rw and ur:
        print(f"64-byte TAP to TAP: vswitchd {v:,.0f} pps vs bare forwarder (read/write {rw:,.0f}, io_uring {ur:,.0f}): "
              f"vswitchd/bare = {v / rw:.2f} (read/write), {v / ur:.2f} (io_uring); io_uring/read-write = {ur / rw:.2f}")
    # The forwarder's own counters around its 64-byte line (two SIGUSR1
    # snapshots): what it did with the CPU it was given while saturated.
    eff = {}
    for c in ("bare-rw", "bare-uring"):
        per_round = []
        for n in sorted(files):
            if not n.startswith(f"fwd.{c}."):
                continue
            snaps = []
            with open(os.path.join(res, n)) as fh:
                for l in fh:
                    try:
                        snaps.append(json.loads(l))
                    except ValueError:
                        pass
            snaps = [x for x in snaps if isinstance(x, dict) and x.get("snapshot")]
            if len(snaps) >= 2:
                a, b = snaps[0], snaps[1]
                frames = b["a_to_b"] + b["b_to_a"] - a["a_to_b"] - a["b_to_a"]
                cpu = b["cpu_seconds"] - a["cpu_seconds"]
                if frames > 0 and cpu > 0:
                    per_round.append((frames / cpu, (b["syscalls"] - a["syscalls"]) / frames, cpu / (b["seconds"] - a["seconds"])))
        if per_round:
            eff[c] = tuple(statistics.median(x[i] for x in per_round) for i in range(3))
    if len(eff) == 2:
        (a, sa, ca), (b, sb, cb) = eff["bare-rw"], eff["bare-uring"]
        print(f"bare forwarder during its 64-byte line, per CPU-second of its thread: read/write {a:,.0f} frames "
              f"({sa:.2f} syscalls/frame, {100 * ca:.0f}% of a core), io_uring {b:,.0f} frames ({sb:.2f} syscalls/frame, "
              f"{100 * cb:.0f}% of a core): io_uring/read-write = {b / a:.2f}")

curve = {}
for sw in switches:
    pts = []
    for pct in (10, 30, 50, 70, 90):
        rs = runs(f"curve.{pct}", sw)
        if rs:
            lat = [r["received"]["latency_ns"] or {} for r in rs if r.get("received")]
            pts.append((statistics.median([r["sent"]["pps"] for r in rs]),
                        statistics.median([l.get("p50", 0) / 1000.0 for l in lat] or [0]),
                        statistics.median([l.get("p99", 0) / 1000.0 for l in lat] or [0])))
    if pts:
        curve[sw] = pts
if curve:
    import math, shutil, subprocess
    base = os.environ.get("CURVE_OUT", "compare-latency")
    with open(base + ".csv", "w") as fh:
        fh.write("switch,offered_pps,p50_us,p99_us\n")
        for sw, pts in curve.items():
            for x, a, b in pts:
                fh.write(f"{sw},{x:.0f},{a:.1f},{b:.1f}\n")
    title = "one-way latency against offered load, 64-byte UDP, TAP to TAP, NORMAL (vswitch-pktgen)"
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
         f'<rect width="{W}" height="{H}" fill="white"/>', f'<text x="{L}" y="18">{title}</text>',
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
    made = [base + ".csv", base + ".svg"]
    # The PNG: one data block per switch in a gnuplot script, p50 solid,
    # p99 dashed, the same colour per switch.
    if shutil.which("gnuplot"):
        g = [f"set terminal pngcairo size 1000,600 font 'sans,10'", f"set output '{base}.png'",
             f"set title '{title}'", "set xlabel 'offered load, packets/s'", "set ylabel 'latency, us'",
             "set logscale y", "set grid", "set key outside right", "set format x '%.0f'"]
        plots = []
        for k, (sw, pts) in enumerate(curve.items()):
            c = colors[k % len(colors)]
            data = "\n".join(f"{x:.0f} {a:.1f} {b:.1f}" for x, a, b in pts)
            g.append(f"$d{k} << EOD\n{data}\nEOD")
            plots.append(f"$d{k} using 1:(($2)>0?$2:1/0) with linespoints lw 2 lc rgb '{c}' title '{sw} p50'")
            plots.append(f"$d{k} using 1:(($3)>0?$3:1/0) with linespoints lw 2 dt 2 lc rgb '{c}' title '{sw} p99'")
        g.append("plot " + ", ".join(plots))
        p = subprocess.run(["gnuplot"], input="\n".join(g) + "\n", text=True, capture_output=True)
        if p.returncode == 0:
            made.append(base + ".png")
        else:
            print(f"# gnuplot failed: {p.stderr.strip()}")
    print("# latency against load: " + ", ".join(made))
PY
exit
}
