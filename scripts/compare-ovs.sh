#!/usr/bin/env bash
# Side by side with Open vSwitch 3.1 (userspace datapath, with and without
# userspace TSO) on the same topology, in the same run: the anchors harness
# of ../shared/anchors (two VM namespaces on TAPs owned by the switch in a
# "host" namespace), with vswitchd in its "tapswitch" slot.
#
#   sudo scripts/compare-ovs.sh [ROUNDS] [normal|ct]
#
# normal: NORMAL (MAC learning) on every switch; ct: the stateful firewall
# pipeline (flows/stateful-firewall.flows for vswitchd, the harness's
# equivalent for OVS). Prints the harness summary with ratios against
# ovs-netdev (or ovs-netdev-ct). Needs root, openvswitch-switch, iperf3,
# netsniff-ng (trafgen), ethtool. Runs on a copy of the harness in /tmp, so
# ../shared stays untouched. Takes a few minutes per round.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
anchors=${ANCHORS:-$root/../shared/anchors}
rounds=${1:-1}
mode=${2:-normal}
[ "$(id -u)" = 0 ] || { echo "compare-ovs: needs root (network namespaces, OVS)" >&2; exit 1; }
for t in ovs-vswitchd iperf3 trafgen ethtool; do
  command -v $t >/dev/null || { echo "compare-ovs: missing $t (apt-get install openvswitch-switch iperf3 netsniff-ng ethtool)" >&2; exit 1; }
done
cargo build --release --bin vswitchd --bin vswitchctl
work=$(mktemp -d /tmp/vsw-compare.XXXX)
cp -r "$anchors"/. "$work"/
cfg=$work/vswitchd.toml
case $mode in
  normal) flows='flows = ["priority=0,actions=NORMAL"]'; configs="ovs-netdev ovs-netdev-tso tapswitch"; base=ovs-netdev ;;
  ct) flows="flow_files = [\"$root/flows/stateful-firewall.flows\"]"; configs="ovs-netdev-ct ovs-netdev-tso-ct tapswitch"; base=ovs-netdev-ct ;;
  *) echo "mode: normal or ct" >&2; exit 2 ;;
esac
cat > "$cfg" <<CFG
[ctl]
socket = "/tmp/h_state/vswitchd.sock"

[[bridge]]
name = "br0"
$flows

[[bridge.port]]
name = "h_tap1"
type = "tap"

[[bridge.port]]
name = "h_tap2"
type = "tap"
CFG
echo "vswitchd config: $cfg"
CONFIGS="$configs" BASE=$base TAPSWITCH_CMD="$root/target/release/vswitchd --no-state --config $cfg" \
  "$work/compare.sh" "$rounds"
