package netlinkbridge

import (
	"errors"
	"time"
)

// A Message is one netlink message read from the kernel.
type Message struct {
	Group uint32 // the multicast group it was sent to
	Data  []byte // the message, header included, exactly as the kernel sent it
	// NSID is the id of the peer network namespace the event came from,
	// valid when HasNSID (a source listening to all namespaces).
	NSID    int32
	HasNSID bool
}

// A Source yields kernel netlink messages. The bridge reads from a Source
// so that its logic can be tested with a fake one, without root.
type Source interface {
	// ReadBatch waits for messages and fills ms with as many as fit,
	// returning how many. Data of the messages is valid until the next
	// call. An error wrapping ErrOverrun means the kernel dropped events
	// (ENOBUFS) and reading can go on.
	ReadBatch(ms []Message) (int, error)
	// SetReadDeadline makes a pending or future ReadBatch return an error
	// wrapping os.ErrDeadlineExceeded once t has passed; the zero time
	// means none. It may be called from any goroutine, to wake a reader.
	SetReadDeadline(t time.Time) error
	// Stats returns the source's counters.
	Stats() SourceStats
	// Close unblocks a pending ReadBatch and releases the source.
	Close() error
}

// SourceStats counts what a Source dropped and why.
type SourceStats struct {
	Messages  uint64 // messages passed on
	Reads     uint64 // system calls that read datagrams (recvmmsg): Messages over Reads is the batching
	Overruns  uint64 // times the kernel reported ENOBUFS: events were lost
	NotKernel uint64 // messages not sent by the kernel (port id != 0)
	Malformed uint64 // datagrams or messages whose lengths did not add up
	Oversized uint64 // datagrams too large to read whole (lost, reported as overruns)
}

// ErrOverrun is wrapped by the error a Source returns when the kernel could
// not queue events for it (ENOBUFS): at least one event was lost.
var ErrOverrun = errors.New("netlink receive buffer overrun: kernel events were lost")
