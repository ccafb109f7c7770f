#!/bin/sh
# Print one nlmcast JSON stream with socat, no nlmcast code involved.
# Usage: examples/socat.sh [GROUP PORT]   (default: the link stream's JSON group)
# Find other streams' addresses with: nlmcast groups
GROUP=${1:-239.255.79.1}
PORT=${2:-17803}
exec socat -u "UDP4-RECV:$PORT,bind=$GROUP,ip-add-membership=$GROUP:127.0.0.1,reuseaddr" -
