#!/usr/bin/env bash
# Self-contained demo of nlmcast (run as root: sudo make demo).
# Makes a throwaway network namespace, starts the bridge in it, and prints
# the same kernel events twice as they arrive: directly from netlink
# (ip monitor, root) and through loopback multicast (nlmcast listen, run as
# the unprivileged user who called sudo). Real changes are made: a veth
# pair up and down, addresses, routes, a neighbour, a rule. Cleans up on
# exit and on Ctrl-C.
set -euo pipefail
BIN=$(readlink -f "${1:-bin/nlmcast}")
if [ "$(id -u)" != 0 ]; then
  echo "demo: needs root to create a network namespace and run the bridge: sudo make demo" >&2
  exit 1
fi
[ -x "$BIN" ] || { echo "demo: $BIN not built: run make build" >&2; exit 1; }
NS=nlmcast-demo-$$
cleanup() {
  trap - EXIT INT TERM
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  echo "demo: namespace $NS removed"
}
trap cleanup EXIT INT TERM

ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" "$BIN" bridge --log-level warn &
sleep 0.5

# The listener runs without privilege: as the sudo caller, or as nobody.
RUN_AS=(setpriv --reuid="${SUDO_UID:-65534}" --regid="${SUDO_GID:-65534}" --clear-groups)
echo "== [netlink] = ip monitor on the kernel socket; [mcast] = nlmcast listen on loopback multicast (uid ${SUDO_UID:-65534}) =="
ip netns exec "$NS" ip monitor all | sed -u 's/^/[netlink] /' &
ip netns exec "$NS" "${RUN_AS[@]}" "$BIN" listen | sed -u 's/^/[mcast]   /' &
sleep 0.5

step() { echo "---- ip $*"; ip -n "$NS" "$@"; sleep 0.4; }
step link add demo0 type veth peer name demo1
step link set demo1 up
step link set demo0 up
step addr add 192.0.2.1/24 dev demo0
step -6 addr add 2001:db8::1/64 dev demo0 nodad
step route add 198.51.100.0/24 via 192.0.2.254
step neigh add 192.0.2.9 lladdr 02:00:00:00:00:09 dev demo0 nud permanent
step rule add from 192.0.2.0/24 table 100
step route del 198.51.100.0/24
step addr del 192.0.2.1/24 dev demo0
step link set demo0 down
step link del demo0
sleep 1
echo "== done: every event above arrived on both paths =="
