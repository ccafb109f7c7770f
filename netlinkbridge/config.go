package netlinkbridge

import (
	"log/slog"
	"time"

	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// Config configures a Bridge. A nil *Config means every default.
type Config struct {
	// Streams are the streams to bridge, all of one netlink family (Set
	// bridges several families). Zero: every rtnetlink stream
	// (streams.Default).
	Streams []streams.Stream
	// ExposePrivileged allows streams marked Privileged: events that the
	// kernel shows only to CAP_NET_ADMIN (process events, conntrack, some
	// generic netlink groups) become readable by every local user. Zero:
	// New refuses such streams.
	ExposePrivileged bool
	// Map assigns groups and ports. Zero: streams.DefaultBase and
	// streams.DefaultPort.
	Map streams.Map
	// Encodings are the encodings to send. Zero: raw and JSON.
	Encodings []streams.Encoding
	// NetNS is a network namespace file descriptor whose events are read:
	// the netlink sockets are opened in it. Multicast is still sent from
	// the calling thread's namespace. Zero: the calling thread's namespace.
	NetNS int
	// AllNSID also reads rtnetlink events of every network namespace that
	// has an id in the bridged one (NETLINK_LISTEN_ALL_NSID; see `ip netns
	// set`); their frames carry that id (frame.FlagNSID). Zero: only the
	// bridged namespace's events.
	AllNSID bool
	// ReadBuffer is the netlink socket's receive buffer in bytes.
	// Zero: DefaultReadBuffer.
	ReadBuffer int
	// Batch is how many netlink datagrams are read per system call.
	// Zero: kernel.DefaultBatch.
	Batch int
	// Heartbeat is how often an idle stream gets a heartbeat frame.
	// Zero: DefaultHeartbeat. Negative: no heartbeats.
	Heartbeat time.Duration
	// ResyncInterval is the least time between the starts of two
	// resyncs; overruns and requests in between are coalesced into the
	// next one. Zero: DefaultResyncInterval.
	ResyncInterval time.Duration
	// NoRequests turns off the listener for resync requests on
	// Map.Control(). Zero: requests are accepted from any local process
	// (they can only make the bridge resync, at most once per
	// ResyncInterval).
	NoRequests bool
	// JSONAlways encodes every event in JSON even when nobody has joined
	// the stream's JSON group. Zero: JSON, the costly encoding, is made
	// only for JSON groups that some socket of the bridge's network
	// namespace has joined on the sender's interface, as listed in
	// /proc/net/igmp, checked every MembersInterval. (A receiver that
	// joins sees events from the check after its join; one it may have
	// missed in between shows as a gap.) Raw frames and control frames are
	// always sent.
	JSONAlways bool
	// Sender configures the multicast socket. Nil: loopback defaults.
	Sender *mcast.SenderConfig
	// Logger receives warnings (overruns, drops) and lifecycle messages.
	// Nil: slog.Default().
	Logger *slog.Logger

	shared *sharedSender // set by NewSet: one sender for every family
}

// Defaults of Config.
const (
	DefaultReadBuffer     = kernel.DefaultReadBuffer
	DefaultBatch          = kernel.DefaultBatch
	DefaultHeartbeat      = time.Second
	DefaultResyncInterval = time.Second
	// MembersInterval is how often the bridge reads the host's multicast
	// memberships to learn which JSON groups are joined.
	MembersInterval = 100 * time.Millisecond
)
