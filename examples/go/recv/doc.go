// Command recv is the smallest Go receiver of nlmcast streams: it joins
// the named streams (default: link and addresses) and prints a line per
// event (stream, sequence number, netlink message type), per control frame
// (heartbeat, overrun, resync, goodbye) and per notice (lost frames, a
// bridge restart, silence).
//
//	go run ./examples/go/recv link addr
//
// It reads the raw encoding from the default address map and accepts only
// the bridge's source, 127.0.0.1:1021; like any receiver, it refuses to
// start where any user may bind that port, and says why. It needs no
// privilege itself.
//
// Layer rule (ARCHITECTURE.md): like any receiving program, it may import
// only receiver, frame, streams, mcast and internal/sys of this module,
// and no netlink library.
package main
