#!/usr/bin/env bash
# Self-contained demo of nlmcast (run as root: sudo make demo).
# Makes a throwaway network namespace, starts the bridge in it, and runs
# 'nlmcast compare --generate' beside it: real changes (a veth pair up and
# down, addresses, a route, a neighbour) whose kernel events are received
# twice, directly from netlink and through loopback multicast, and printed
# side by side with the time each path delivered them, then a summary.
# Meanwhile an unprivileged 'nlmcast listen' (the sudo caller, or nobody)
# receives the same events, to show that reading needs no privilege.
# Cleans up on exit and on Ctrl-C.
set -euo pipefail
BIN=$(readlink -f "${1:-bin/nlmcast}")
ROUNDS=${ROUNDS:-2}
if [ "$(id -u)" != 0 ]; then
  echo "demo: needs root to create a network namespace and run the bridge: sudo make demo" >&2
  exit 1
fi
[ -x "$BIN" ] || { echo "demo: $BIN not built: run make build" >&2; exit 1; }
NS=nlmcast-demo-$$
TMP=$(mktemp -d)
cleanup() {
  trap - EXIT INT TERM
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$TMP"
  echo "demo: namespace $NS removed"
}
trap cleanup EXIT INT TERM

ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" "$BIN" bridge --log-level warn &
sleep 0.5

RUN_AS=(setpriv --reuid="${SUDO_UID:-65534}" --regid="${SUDO_GID:-65534}" --clear-groups)
ip netns exec "$NS" "${RUN_AS[@]}" "$BIN" listen > "$TMP/listen.txt" 2>&1 &
sleep 0.3

echo "== nlmcast demo in network namespace $NS: the bridge is running; compare receives every"
echo "== event directly from netlink and through loopback multicast, and prints both arrival times"
echo
ip netns exec "$NS" "$BIN" compare --generate --rounds "$ROUNDS"
echo
n=$(grep -vc -e ' !! ' -e ' -- ' "$TMP/listen.txt" || true)
echo "== meanwhile 'nlmcast listen', run as uid ${SUDO_UID:-65534} (no privilege), printed $n events; the first few:"
# awk reads the whole file and writes the first five, so no pipe breaks
# (grep | head under pipefail could die of SIGPIPE), and it exits 0 when
# there are none (grep -v would exit 1 and stop the demo under set -e).
awk 'index($0, " !! ") == 0 && index($0, " -- ") == 0 && n++ < 5 { print "   " $0 }' "$TMP/listen.txt"
