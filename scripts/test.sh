#!/usr/bin/env bash
# Runs the whole vswitch test suite.
#
# Installs the Debian packages the tests need when they are missing (when
# run as root; otherwise it says what is missing and the tests that need
# them skip with a message). Network tests need root: they create their own
# network namespaces, veth pairs and TAP devices, and remove them after.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package
declare -A want=(
  [ip]=iproute2
  [ping]=iputils-ping
  [tcpdump]=tcpdump
  [tshark]=tshark
  [socat]=socat
  [iperf3]=iperf3
  [ethtool]=ethtool
  [nft]=nftables
  [trafgen]=netsniff-ng
  [flock]=util-linux
  [ovs-ofctl]=openvswitch-common
  [ovs-vswitchd]=openvswitch-switch
)
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "missing packages (install them, or run as root): ${missing[*]}" >&2
    echo "tests that need them will skip with a message" >&2
  fi
fi

# os-ken (OpenStack's OpenFlow controller framework) for the controller
# interop test, in a venv of the project's own.
if ! target/osken-venv/bin/python -c 'import os_ken.base.app_manager' >/dev/null 2>&1; then
  echo "installing os-ken into target/osken-venv"
  mkdir -p target
  python3 -m venv target/osken-venv
  target/osken-venv/bin/pip install -q os-ken || echo "os-ken install failed: its test will say so" >&2
fi

cargo fmt --all -- --check
cargo test "$@"
