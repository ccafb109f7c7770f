package netlinkbridge

import (
	"time"

	"github.com/nlmcast/nlmcast/kernel"
)

// A Source yields kernel netlink messages; *kernel.Socket is one. The
// bridge reads from a Source so that its logic can be tested with a fake
// one, without root.
type Source interface {
	// ReadBatch waits for messages and fills ms with as many as fit,
	// returning how many. Data of the messages is valid until the next
	// call. An error wrapping kernel.ErrOverrun means the kernel dropped
	// events (ENOBUFS) and reading can go on.
	ReadBatch(ms []kernel.Message) (int, error)
	// SetReadDeadline makes a pending or future ReadBatch return an error
	// wrapping os.ErrDeadlineExceeded once t has passed; the zero time
	// means none. It may be called from any goroutine, to wake a reader.
	SetReadDeadline(t time.Time) error
	// Stats returns the source's counters.
	Stats() kernel.Stats
	// Close unblocks a pending ReadBatch and releases the source.
	Close() error
}

// A Dumper reads tables from the kernel for resyncs; *kernel.DumpSocket
// is one. Tests use a fake one.
type Dumper interface {
	// Dump sends req and returns the messages of the answer, each exactly
	// as the kernel sent it, valid until the next call. interrupted
	// reports that the kernel flagged the dump NLM_F_DUMP_INTR: the table
	// changed while it was read, and the answer may be inconsistent.
	Dump(req kernel.DumpRequest) (msgs [][]byte, interrupted bool, err error)
	Close() error
}
