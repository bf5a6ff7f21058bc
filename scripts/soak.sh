#!/usr/bin/env bash
# Soak: vswitchd under sustained load and constant change for DURATION
# seconds, from the field story of an instance that vanished from the
# network after 30 minutes of heavy iperf traffic, its DHCP renewals
# unanswered.
#
#   sudo scripts/soak.sh DURATION        (seconds, 20..3600; 1800 for the full soak)
#
# Topology: a "host" namespace runs vswitchd with the stateful firewall
# (flows/stateful-firewall.flows; PIPELINE=normal for MAC learning), two
# "VM" namespaces on its TAP ports (10.251.0.1 and .2). For DURATION
# seconds, all at once:
#
# * vswitch-pktgen sends 64-byte UDP frames (FLOWS distinct flows, default
#   1000) from VM 1 into VM 2 at LOAD% (default 80) of the maximum measured
#   through this switch just before;
# * iperf3 runs one TCP stream from VM 1 to VM 2;
# * every second VM 1 sends a small UDP request to VM 2 and waits for the
#   answer, a DHCP renewal's exchange: 1 s per attempt, TRIES attempts
#   (default 5), as a DHCP client retransmits (a real one keeps trying for
#   minutes, until its lease's rebinding time); an exchange all of whose
#   attempts go unanswered is missed, and the ones that needed a retry are
#   counted too;
# * every second a flow-mod: a flow is added, and the one added the second
#   before deleted (vswitchctl add-flow / del-flows);
# * every 10 s a TAP port is added (its kernel side brought up), and 5 s
#   later deleted.
#
# At the end it prints vswitchd's RSS (each second's is in rss.csv in the
# work directory) after a warm-up (WARMUP seconds,
# default a third of DURATION, at most 120) and at the end, the drops
# `dump-drops` counted by reason, the exchanges, and the generator's and
# iperf3's figures. It fails (exit status 1) on:
#
# * any missed exchange;
# * an unexplained drop: a reason neither the flows asked for
#   (pipeline_drop, no_match, conntrack's invalid verdicts the firewall's
#   `+inv` rule drops are NOT excused) nor the load (tap_queue_overflow:
#   the TAP's kernel queue overflowed before the switch read it, which an
#   offered load above what the machine gives the switch at that moment
#   causes; reported, and a failure with STRICT=1);
# * RSS at the end more than 5% above the RSS after the warm-up, each the
#   median of a window of samples (the 10 s after the warm-up, the last
#   10 s; a quarter of the time after the warm-up when that is longer):
#   a port's add and delete every 10 s move single samples by a MiB either
#   way, a leak moves the window's median;
# * vswitchd gone, or a part of the load that did not run.
#
# It also says which of vswitchd's mappings the RSS grew in (smaps at the
# end of the warm-up, every 5 minutes and at the end: smaps.* in the work
# directory): the main heap, a thread's malloc arena, a stack.
#
# Self-contained: needs root, iproute2, python3, iperf3 and cargo (it builds
# the release binaries; SOAK_BIN=DIR uses the binaries in DIR instead). Everything it creates (namespaces vswsoak<pid>*,
# processes, the work directory; KEEP=1 keeps the latter) is removed on
# exit. Every loop is bounded by DURATION.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dur=${1:-${SOAK_DURATION:-60}}
case $dur in '' | *[!0-9]*) echo "soak: DURATION is whole seconds" >&2; exit 2 ;; esac
[ "$dur" -ge 20 ] && [ "$dur" -le 3600 ] || { echo "soak: DURATION must be 20..3600 s" >&2; exit 2; }
pipeline=${PIPELINE:-ct}
case $pipeline in normal | ct) ;; *) echo "soak: PIPELINE is normal or ct" >&2; exit 2 ;; esac
load=${LOAD:-80}
flows=${FLOWS:-1000}
# The warm-up fills conntrack, the caches and the TCP stream's window;
# RSS still climbs a few percent in its first 10-15 s on this machine.
warmup=${WARMUP:-$((dur / 3 > 120 ? 120 : dur / 3))}
strict=${STRICT:-0}
tries=${TRIES:-5}
case $tries in '' | *[!0-9]* | 0) echo "soak: TRIES is a whole number >= 1" >&2; exit 2 ;; esac

die() { echo "soak: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, TAPs)"
for t in ip python3 iperf3 ss; do command -v $t >/dev/null || die "missing $t"; done

if [ -z "${SOAK_BIN:-}" ]; then
  command -v cargo >/dev/null || die "missing cargo (or set SOAK_BIN to a directory of built binaries)"
  (cd "$root" && cargo build --release --bin vswitchd --bin vswitchctl --bin vswitch-pktgen >&2)
  bin=${CARGO_TARGET_DIR:-$root/target}/release
else
  bin=$SOAK_BIN  # a directory holding already built binaries (the CI test passes its own)
fi
for b in vswitchd vswitchctl vswitch-pktgen; do [ -x "$bin/$b" ] || die "no $bin/$b"; done

work=$(mktemp -d /tmp/vswsoak.XXXXXX)
H=vswsoak$$h A=vswsoak$$a B=vswsoak$$b
MAC1=52:54:00:00:01:01 MAC2=52:54:00:00:01:02
IP1=10.251.0.1 IP2=10.251.0.2
pids=()
vsw_pid=""

inns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ctl() { "$bin/vswitchctl" --ctl "$work/vswitchd.sock" "$@"; }

cleanup() {
  local p ns
  for p in "${pids[@]}" $vsw_pid; do
    kill "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  for ns in $H $A $B; do
    if ip netns list | grep -qw "$ns"; then
      for p in $(ip netns pids "$ns"); do kill -9 "$p" 2>/dev/null || true; done
      ip netns del "$ns"
    fi
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "soak: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

for ns in $H $A $B; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  inns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
cfg=()
if [ "$pipeline" = ct ]; then
  printf '[[bridge]]\nname = "br0"\nflow_files = ["%s"]\n' "$root/flows/stateful-firewall.flows" >"$work/vswitchd.toml"
  cfg=(--config "$work/vswitchd.toml")
fi
ip netns exec $H "$bin/vswitchd" --ctl "$work/vswitchd.sock" --state-dir "$work/state" "${cfg[@]}" >"$work/vswitchd.log" 2>&1 &
vsw_pid=$!
up=0
for _ in $(seq 100); do
  if ctl show >/dev/null 2>&1; then up=1; break; fi
  sleep 0.1
done
[ $up = 1 ] || die "vswitchd did not start: $(tail -5 "$work/vswitchd.log")"
attach() {  # attach TAP VM MAC IP
  ctl add-port br0 "$1" type=tap >/dev/null
  for _ in $(seq 100); do ip -n $H link show "$1" >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n $H link set "$1" netns "$2"
  ip -n "$2" link set "$1" address "$3"
  ip -n "$2" addr add "$4/24" dev "$1"
  ip -n "$2" link set "$1" up
}
attach vm1 $A $MAC1 $IP1
attach vm2 $B $MAC2 $IP2
ok=0
for _ in $(seq 30); do
  if inns $A ping -q -c 1 -W 1 $IP2 >/dev/null 2>&1 && inns $B ping -q -c 1 -W 1 $IP1 >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.2
done
[ $ok = 1 ] || die "no connectivity between the VMs"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$vsw_pid/status" 2>/dev/null || echo 0; }
# Where the RSS is: one line per mapping that has any ("start-end name
# rss_kib"), plus the thread count, so the report can say which mapping
# grew (the main heap, a thread's malloc arena, a thread stack, a file).
smaps_snap() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / { r = $1; n = ($6 == "" ? "[anon]" : $6) }
       /^Rss:/ { if ($2 > 0) print r, n, $2 }' "/proc/$vsw_pid/smaps" >"$work/smaps.$1" 2>/dev/null || true
  awk '/^Threads:/ {print "threads", $2}' "/proc/$vsw_pid/status" >>"$work/smaps.$1" 2>/dev/null || true
}
alive() { kill -0 "$vsw_pid" 2>/dev/null; }

# The maximum through this switch, then the load at LOAD% of it.
gen=(--tx vm1 --tx-netns $A --rx vm2 --rx-netns $B --src-mac $MAC1 --dst-mac $MAC2 --flows "$flows" --json --quiet)
timeout 60 "$bin/vswitch-pktgen" "${gen[@]}" --duration 3 >"$work/max.json" || die "measuring the maximum failed"
max=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["received"]["pps"]))' "$work/max.json")
rate=$((max * load / 100))
[ "$rate" -ge 1 ] || die "the switch delivered nothing in the maximum run"
echo "soak: $dur s, pipeline $pipeline; maximum $max pps delivered, generator at $load%: $rate pps, $flows flows; TCP stream; exchange every 1 s; flow-mod every 1 s; port add/del every 10 s; RSS baseline after $warmup s" >&2

# The DHCP-renewal-like exchange: a responder in VM 2, a client in VM 1.
cat >"$work/responder.py" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 6767))
s.settimeout(1.0)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        data, peer = s.recvfrom(512)
    except socket.timeout:
        continue
    s.sendto(b"ACK " + data, peer)
PY
cat >"$work/client.py" <<'PY'
import json, socket, sys, time
server, duration, out, tries = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 6768))
r = {"exchanges": 0, "first_try": 0, "after_retry": 0, "missed": 0, "missed_at_s": [], "max_rtt_ms": 0.0}
start = time.monotonic()
seq = 0
while time.monotonic() - start < duration:
    t0 = time.monotonic()
    seq += 1
    r["exchanges"] += 1
    answered = False
    for attempt in range(tries):
        msg = f"REQUEST {seq} {attempt}".encode()
        s.sendto(msg, (server, 6767))
        deadline = time.monotonic() + 1.0
        while not answered and time.monotonic() < deadline:
            s.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data, _ = s.recvfrom(512)
            except socket.timeout:
                break
            if data.startswith(f"ACK REQUEST {seq} ".encode()):
                answered = True
                r["max_rtt_ms"] = max(r["max_rtt_ms"], 1000.0 * (time.monotonic() - t0))
                r["first_try" if attempt == 0 else "after_retry"] += 1
        if answered:
            break
    if not answered:
        r["missed"] += 1
        r["missed_at_s"].append(round(t0 - start, 1))
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
json.dump(r, open(out, "w"))
PY
inns $B timeout $((dur + 30)) python3 "$work/responder.py" $((dur + 10)) >"$work/responder.log" 2>&1 &
pids+=($!)
inns $B timeout $((dur + 30)) iperf3 -s -1 -p 5201 >"$work/iperf3-server.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do inns $B ss -lnu 2>/dev/null | grep -q ':6767 ' && inns $B ss -ltn 2>/dev/null | grep -q ':5201 ' && break; sleep 0.1; done

timeout $((dur + 60)) "$bin/vswitch-pktgen" "${gen[@]}" --rate "$rate" --duration "$dur" >"$work/load.json" 2>"$work/load.log" &
gen_pid=$!
pids+=($gen_pid)
inns $A timeout $((dur + 30)) iperf3 -c $IP2 -p 5201 -t "$dur" -J >"$work/iperf3.json" 2>"$work/iperf3.err" &
tcp_pid=$!
pids+=($tcp_pid)
inns $A timeout $((dur + 30)) python3 "$work/client.py" $IP2 "$dur" "$work/exchange.json" "$tries" >"$work/client.log" 2>&1 &
cli_pid=$!
pids+=($cli_pid)

# The control plane's share: a flow-mod every second, a port every 10 s.
# Ticks are one second apart on the wall clock (bash's EPOCHREALTIME, no
# fork), and the loop ends with the load even when a loaded machine made a
# tick's work take longer than a second.
start_us=${EPOCHREALTIME/./}
rss_max=0 flowmods=0 portops=0 errors=0 prev=""
for t in $(seq 0 $((dur - 1))); do
  alive || break
  [ $((${EPOCHREALTIME/./} - start_us)) -lt $((dur * 1000000)) ] || break
  rss=$(rss_kib)
  echo "$t,$rss" >>"$work/rss.csv"
  if [ "$t" -ge "$warmup" ] && [ "$rss" -gt "$rss_max" ]; then rss_max=$rss; fi
  if [ "$t" = "$warmup" ]; then smaps_snap base; fi
  if [ $((t % 300)) = 0 ]; then smaps_snap "$t"; fi
  # A flow no traffic matches (UDP to a port in 40000..40049), so it
  # changes the tables and the caches' generation, and nothing else.
  port=$((40000 + t % 50))
  if [ "$pipeline" = ct ]; then f="table=1,priority=150,udp,tp_dst=$port,actions=drop" m="table=1,udp,tp_dst=$port"
  else f="priority=150,udp,tp_dst=$port,actions=drop" m="udp,tp_dst=$port"; fi
  if ctl add-flow br0 "$f" >/dev/null 2>>"$work/ctl.err"; then flowmods=$((flowmods + 1)); else errors=$((errors + 1)); fi
  if [ -n "$prev" ]; then
    if ctl del-flows br0 "$prev" >/dev/null 2>>"$work/ctl.err"; then flowmods=$((flowmods + 1)); else errors=$((errors + 1)); fi
  fi
  prev=$m
  case $((t % 10)) in
    0)
      if ctl add-port br0 churn$((t / 10 % 2)) type=tap >/dev/null 2>>"$work/ctl.err"; then
        portops=$((portops + 1))
        for _ in $(seq 20); do ip -n $H link set churn$((t / 10 % 2)) up 2>/dev/null && break; sleep 0.05; done
      else errors=$((errors + 1)); fi ;;
    5)
      if ctl del-port br0 churn$((t / 10 % 2)) >/dev/null 2>>"$work/ctl.err"; then portops=$((portops + 1)); else errors=$((errors + 1)); fi ;;
  esac
  # Next tick one second after the previous one (not after the work).
  left=$((start_us + (t + 1) * 1000000 - ${EPOCHREALTIME/./}))
  if [ "$left" -gt 0 ]; then
    printf -v frac '%06d' $((left % 1000000))
    sleep "$((left / 1000000)).$frac"
  fi
done
echo "$dur,$(rss_kib)" >>"$work/rss.csv"
smaps_snap end
alive && vsw_alive=1 || vsw_alive=0
for p in $gen_pid $tcp_pid $cli_pid; do
  for _ in $(seq 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done
wait $cli_pid 2>/dev/null || true
wait $gen_pid 2>/dev/null || true
wait $tcp_pid 2>/dev/null || true
if [ $vsw_alive = 1 ]; then
  ctl --json dump-drops br0 >"$work/drops.json" 2>/dev/null || echo '{}' >"$work/drops.json"
  ctl --json dump-ports br0 >"$work/ports.json" 2>/dev/null || echo '{}' >"$work/ports.json"
else
  echo '{}' >"$work/drops.json"
  echo '{}' >"$work/ports.json"
fi

set +e
python3 - "$work" "$vsw_alive" "$warmup" "$rss_max" "$flowmods" "$portops" "$errors" "$strict" "$dur" <<'PY'
import json, os, statistics, sys
work, alive, warmup, rss_max, flowmods, portops, errors, strict, dur = sys.argv[1:10]
rss_max, warmup = int(rss_max), int(warmup)
# RSS after the warm-up and at the end: medians of a window of the
# per-second samples, so a single sample taken while a port exists (or
# just after it went) does not decide.
samples = []
try:
    with open(os.path.join(work, "rss.csv")) as fh:
        for line in fh:
            t, kib = (int(x) for x in line.strip().split(","))
            if t >= warmup and kib > 0:
                samples.append((t, kib))
except (OSError, ValueError):
    pass
rss_base = rss_end = 0
if samples:
    last = samples[-1][0]
    win = max(10, (last - warmup) // 4)
    base_w = [k for t, k in samples if t < warmup + win]
    end_w = [k for t, k in samples if t > last - win]
    rss_base, rss_end = int(statistics.median(base_w)), int(statistics.median(end_w))
def load(n):
    try:
        with open(os.path.join(work, n)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
fail = []
if alive != "1":
    fail.append("vswitchd died during the soak")
drops = {k: v for k, v in ((load("drops.json") or {}).get("drops") or {}).items() if isinstance(v, int) and v > 0}
asked = {"pipeline_drop", "no_match"}
load_caused = {"tap_queue_overflow"}
unexplained = {k: v for k, v in drops.items() if k not in asked and (strict == "1" or k not in load_caused)}
ex = load("exchange.json")
gen = load("load.json")
tcp = load("iperf3.json")
print(f"soak: {dur} s")
print(f"  RSS after warm-up {rss_base / 1024:.1f} MiB, at the end {rss_end / 1024:.1f} MiB (window medians)"
      + (f" ({100.0 * (rss_end - rss_base) / rss_base:+.1f}%)" if rss_base else "") + f", highest {rss_max / 1024:.1f} MiB")
print(f"  drops by reason: {drops or 'none'}")
print(f"  unexplained drops: {unexplained or 'none'}")
# Which port dropped: every object in dump-ports that names a port and
# has a non-zero counter with "drop" in its name.
def port_drops(v, out):
    if isinstance(v, dict):
        name = v.get("name") or v.get("port")
        d = {k: n for k, n in v.items() if "drop" in k and isinstance(n, int) and n > 0}
        if isinstance(name, str) and d:
            out[name] = d
        for x in v.values():
            port_drops(x, out)
    elif isinstance(v, list):
        for x in v:
            port_drops(x, out)
    return out
pd = port_drops(load("ports.json") or {}, {})
if pd:
    print(f"  drops by port: {pd}")
if ex:
    print(f"  exchanges: {ex['exchanges']}, answered first try {ex['first_try']}, after a retry {ex['after_retry']}, "
          f"missed {ex['missed']} {ex['missed_at_s'] or ''}, slowest {ex['max_rtt_ms']:.1f} ms")
if gen:
    rx = gen.get("received") or {}
    print(f"  generator: sent {gen['sent']['packets']} at {gen['sent']['pps']:,.0f} pps, received {rx.get('packets', 0)}, "
          f"loss {100.0 * rx.get('loss_ratio', 0.0):.2f}%")
if tcp and "end" in tcp and "sum_received" in tcp["end"]:
    print(f"  TCP stream: {tcp['end']['sum_received']['bits_per_second'] / 1e9:.2f} Gbit/s, "
          f"{tcp['end']['sum_sent'].get('retransmits', 0)} retransmits")
# Which mappings the RSS growth is in, between the snapshot at the end of
# the warm-up and the one at the end (a leak in the heap, a new thread's
# malloc arena, a thread stack), and whether threads were left behind.
def snap(n):
    m, threads = {}, None
    try:
        with open(os.path.join(work, "smaps." + n)) as fh:
            for line in fh:
                f = line.split()
                if f[0] == "threads":
                    threads = int(f[1])
                elif len(f) == 3:
                    # By start address: a malloc arena's heap grows at
                    # its end, its start stays.
                    m[(f[0].split("-")[0], f[1])] = int(f[2])
    except (OSError, ValueError):
        return None, None
    return m, threads
(b, bt), (e, et) = snap("base"), snap("end")
if b is not None and e is not None:
    grew = sorted(((e.get(k, 0) - b.get(k, 0), k) for k in set(b) | set(e)), reverse=True)
    top = [f"{k[1]} at {k[0]} {d:+,} KiB" for d, k in grew[:4] if d > 0]
    print(f"  RSS growth by mapping (warm-up to end): {'; '.join(top) or 'none'}; "
          f"new mappings {len(set(e) - set(b))}, gone {len(set(b) - set(e))}; threads {bt} -> {et}")
print(f"  flow-mods {flowmods}, port adds/deletes {portops}, control errors {errors}")
if not rss_base or not rss_end:
    fail.append("RSS not measured")
elif rss_end > rss_base * 1.05:
    fail.append(f"RSS grew {100.0 * (rss_end - rss_base) / rss_base:.1f}% after the warm-up (limit 5%)")
if unexplained:
    fail.append(f"unexplained drops {unexplained}")
if not ex:
    fail.append("the exchange client did not report")
elif ex["missed"]:
    fail.append(f"{ex['missed']} exchange(s) never answered")
if not gen or not (gen.get("received") or {}).get("packets"):
    fail.append("the generator's load did not run")
if not tcp or "end" not in tcp or "sum_received" not in tcp.get("end", {}):
    fail.append("the TCP stream did not run: " + str((tcp or {}).get("error", "no report")))
if int(errors):
    fail.append(f"{errors} control command(s) failed (see ctl.err)")
if fail:
    print("soak: FAILED: " + "; ".join(fail))
    sys.exit(1)
print("soak: passed")
PY
rc=$?
set -e
if [ $rc != 0 ] && [ -s "$work/ctl.err" ]; then echo "soak: control errors:" >&2; tail -5 "$work/ctl.err" >&2; fi
exit $rc
