package receiver

import (
	"errors"
	"net/netip"
	"time"

	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// Source is where a Receiver reads the bridge's frames (Config.Source):
// an *mcast.Receiver on the loopback groups, or another transport that
// carries the same frames byte for byte. Each datagram it returns is one
// frame as the bridge sent it, with Group set to the group and port the
// bridge sent it to (which names the stream, and which authentication
// trailers and seals cover), Drops to the packets its socket lost on
// that group since the last one it returned (reported as a SocketDrops
// notice), and Lost to those lost before they reached it (an
// UpstreamDrops notice). ReadBatchUntil is called from one goroutine at a time; Join,
// Leave, SetReadDeadline and Close from any.
type Source interface {
	// Join starts receiving the frames sent to a group.
	Join(group netip.AddrPort) error
	// Leave stops receiving them.
	Leave(group netip.AddrPort) error
	// ReadBatchUntil waits for datagrams until the time until (zero:
	// no limit) or the read deadline, whichever comes first, and then
	// returns os.ErrDeadlineExceeded; it fills ds and returns how many.
	ReadBatchUntil(ds []mcast.Datagram, until time.Time) (int, error)
	// SetReadDeadline sets the read deadline; the zero time means none.
	SetReadDeadline(t time.Time) error
	// Close unblocks a pending ReadBatchUntil, which returns
	// mcast.ErrClosed, and releases the Source; a second call returns nil.
	Close() error
}

// A Requester is a Source that can ask the bridge of the host it
// carries for resyncs (package fleet's asks the host's publisher, which
// asks its bridge): Receiver.RequestResync, and so a Mirror, asks through
// it. The answer comes back through the Source, as answers do
// (Config.Source): it is the Source's to make sure that a request's
// answer is read after the request was made.
type Requester interface {
	// RequestResync asks for a resync of the given streams (none: every
	// stream the Source carries).
	RequestResync(ss ...streams.Stream) error
}

// ErrNoRequests is returned by RequestResync on a receiver with a
// Config.Source that is no Requester: requests go to a bridge on this
// host's loopback groups, and its answers to this host alone. Ask the
// bridge of the host the Source carries, or run a Mirror on that host.
var ErrNoRequests = errors.New("resync request: this receiver reads another source than the loopback groups, whose bridge it cannot ask: ask on the bridge's own host")

var _ Source = (*mcast.Receiver)(nil)
