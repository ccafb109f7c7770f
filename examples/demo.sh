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
chmod 711 "$TMP" # the unprivileged listen reaches its notification socket in it
NOTIFIERS=()
cleanup() {
  trap - EXIT INT TERM
  local pids
  pids=$(jobs -p)
  if [ -n "$pids" ]; then # a bare wait would wait for the notification reader too
    kill $pids 2>/dev/null || true
    wait $pids 2>/dev/null || true
  fi
  if ((${#NOTIFIERS[@]})); then
    kill "${NOTIFIERS[@]}" 2>/dev/null || true
    wait "${NOTIFIERS[@]}" 2>/dev/null || true
  fi
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$TMP"
  echo "demo: namespace $NS removed"
}
trap cleanup EXIT INT TERM
die() { echo "demo: $*" >&2; exit 1; }

# await FD PATTERN SECONDS [PID]: read FD until all that was read (kept in
# AWAITED) matches the glob PATTERN. Fails at end of file, after SECONDS, or
# once process PID has exited. One byte at a time: a notification need not
# end with a newline.
await() {
  local fd=$1 pattern=$2 end=$((SECONDS + $3)) pid=${4:-} c rc
  AWAITED=
  while [[ $AWAITED != $pattern ]]; do
    rc=0
    IFS= read -r -N 1 -t 1 -u "$fd" c || rc=$?
    if ((rc > 128)); then # nothing for a second
      ((SECONDS < end)) || return 1
      [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null || return 1
      continue
    fi
    ((rc == 0)) || return 1 # end of file: the reader died
    AWAITED+=$c
  done
}

# notify_socket NAME OWNER: make the service manager notification socket
# $TMP/NAME.sock, writable by uid OWNER only, and set NOTIFY_FD to a stream
# of what it receives (socat's log lines and each message). A program
# started with NOTIFY_SOCKET=$TMP/NAME.sock sends READY=1 there once it is
# ready (the sd_notify protocol): every socket open, every group joined.
notify_socket() {
  exec {NOTIFY_FD}< <(exec socat -d -d -u UNIX-RECV:"$TMP/$1.sock",user="$2",perm=0600 - 2>&1)
  NOTIFIERS+=($!)
  # socat says this once the socket is bound and chowned.
  await "$NOTIFY_FD" '*starting data transfer loop*' 10 ||
    die "socat cannot receive on $TMP/$1.sock: ${AWAITED:-no output}"
}

# ready NAME FD PID [LOG]: wait until the program sends READY=1 on the
# socket that FD reads; if it does not, show its LOG and stop.
ready() {
  await "$2" $'*\nREADY=1*' 30 "$3" && return
  [ -z "${4:-}" ] || cat "$4" >&2
  if kill -0 "$3" 2>/dev/null; then
    die "$1 did not send READY=1 within 30 s"
  fi
  die "$1 exited before it was ready"
}

ip netns add "$NS"
ip -n "$NS" link set lo up

notify_socket bridge 0
BRIDGE_FD=$NOTIFY_FD
NOTIFY_SOCKET=$TMP/bridge.sock ip netns exec "$NS" "$BIN" bridge --log-level warn {BRIDGE_FD}<&- &
ready "nlmcast bridge" "$BRIDGE_FD" $!

# The bridge encodes JSON only for groups it sees joined: 'nlmcast listen'
# says READY=1 once the bridge has told it (a heartbeat on each of its
# streams) that its events are encoded, so it misses none that follow.
RUN_UID=${SUDO_UID:-65534}
RUN_AS=(setpriv --reuid="$RUN_UID" --regid="${SUDO_GID:-65534}" --clear-groups)
notify_socket listen "$RUN_UID"
LISTEN_FD=$NOTIFY_FD
NOTIFY_SOCKET=$TMP/listen.sock ip netns exec "$NS" "${RUN_AS[@]}" "$BIN" listen > "$TMP/listen.txt" 2>&1 {LISTEN_FD}<&- {BRIDGE_FD}<&- &
ready "nlmcast listen" "$LISTEN_FD" $! "$TMP/listen.txt"

echo "== nlmcast demo in network namespace $NS: the bridge is running; compare receives every"
echo "== event directly from netlink and through loopback multicast, and prints both arrival times"
echo
ip netns exec "$NS" "$BIN" compare --generate --rounds "$ROUNDS" | tee "$TMP/compare.txt"
echo
# listen got the same datagrams as compare, but prints at its own pace:
# wait (10 s at most) until it has printed as many events as compare got
# through multicast.
want=$(sed -n 's/^events: .* \([0-9][0-9]*\) multicast.*/\1/p' "$TMP/compare.txt")
end=$((SECONDS + 10))
while n=$(grep -vc -e ' !! ' -e ' -- ' "$TMP/listen.txt" || true); ((n < ${want:-0} && SECONDS < end)); do
  sleep 0.05
done
echo "== meanwhile 'nlmcast listen', run as uid ${SUDO_UID:-65534} (no privilege), printed $n events; the first few:"
# awk reads the whole file and writes the first five, so no pipe breaks
# (grep | head under pipefail could die of SIGPIPE), and it exits 0 when
# there are none (grep -v would exit 1 and stop the demo under set -e).
awk 'index($0, " !! ") == 0 && index($0, " -- ") == 0 && n++ < 5 { print "   " $0 }' "$TMP/listen.txt"
