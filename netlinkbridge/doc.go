// Package netlinkbridge is the bridge loop: it subscribes to kernel netlink
// multicast groups and re-emits every event as a framed datagram on
// loopback IP multicast groups, one group per stream and encoding (see
// package streams for the map and package frame for the wire format).
//
// It drives the whole path of an event, kernel -> decode -> frame -> mcast
// -> receiver, up to the receivers: a kernel.Socket reads a batch of
// datagrams with recvmmsg and splits them into netlink messages; the Bridge
// prefixes each with a frame header (raw encoding, header and message
// passed as two iovecs, no copy) and, when someone has joined the stream's
// JSON group (or Config.JSONAlways), encodes it in JSON with package
// decode; an mcast.Sender sends the whole batch with sendmmsg. The raw
// path allocates nothing in steady state.
//
// Around that path the bridge keeps its promises to receivers (PROTOCOL.md):
// heartbeats on idle streams, an overrun frame and a resync (a dump of the
// kernel's tables between resync-begin and resync-end) when the kernel drops
// events, resyncs on request, fragments for messages too large for one
// datagram, and a goodbye on shutdown.
//
// A Bridge (New, Config) bridges the streams of one netlink family; a Set
// (NewSet) runs one Bridge per family, sharing a sender. Whoever calls New
// or NewSet calls Close; Run bridges until its context ends, and Ready
// tells when events reach the groups. NewWithSource takes any Source,
// Dumper and Sink, which is how tests run a Bridge without sockets. Stats
// and StatsReport are the counters that nlmcast bridge --stats writes and
// nlmcast bench reads.
//
// Layer rule (ARCHITECTURE.md): netlinkbridge may import only kernel,
// decode, frame, mcast, streams and internal/sys of this module, never
// receiver. No other library imports it: only the command, its tools and
// the tests run a bridge.
package netlinkbridge
