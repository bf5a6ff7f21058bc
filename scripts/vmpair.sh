# Sourced by the benchmark scripts that put a switch between two "VM"
# namespaces: the caller sets root (the repository), H (the host
# namespace, where the switch runs), A and B (the VMs), work (its work
# directory) and pid (the switch's process, if any). Sourcing it also
# sources scripts/procs.sh and makes `cleanup` the EXIT trap.

# shellcheck source=scripts/procs.sh
. "$root/scripts/procs.sh"

# cleanup : stops the switch, removes the namespaces and the work
# directory (the EXIT trap).
cleanup() {
  set +e
  stop "$pid"
  for ns in $A $B $H; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$work"
}

# fresh_namespaces : stops the switch and makes H, A and B anew (loopback
# up, IPv6 off so no router solicitation crosses the switch).
fresh_namespaces() {
  stop "$pid"; pid=
  for ns in $A $B $H; do ip netns del "$ns" 2>/dev/null || true; done
  for ns in $H $A $B; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
}

# vm_side DEV VM ADDR MAC : moves DEV (a TAP in the host namespace) into VM.
vm_side() {
  for _ in $(seq 50); do ip -n "$H" link show "$1" >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n "$H" link set "$1" netns "$2"
  ip -n "$2" link set "$1" address "$4"
  ip -n "$2" addr add "$3/24" dev "$1"
  ip -n "$2" link set "$1" up
}

# vms_answer IP_A IP_B : whether A reaches B at IP_B and B reaches A at
# IP_A (a ping each way, so the switch has learned both MACs), trying for
# up to about 10 s.
vms_answer() {
  for _ in $(seq 30); do
    if ip netns exec "$A" ping -q -c 1 -W 1 "$2" >/dev/null 2>&1 &&
      ip netns exec "$B" ping -q -c 1 -W 1 "$1" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

trap cleanup EXIT
trap 'exit 130' INT TERM
