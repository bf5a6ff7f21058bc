# Sourced by the benchmark scripts: stopping what they started.

# stop PID : TERM, wait up to 5 s, then KILL (nothing when PID is empty or
# already gone).
stop() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
  kill -TERM "$1" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null
}
