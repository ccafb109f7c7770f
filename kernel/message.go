package kernel

import (
	"errors"
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

// Stats counts what a Socket passed on, dropped and why.
type Stats struct {
	Messages  uint64 // messages passed on
	Reads     uint64 // system calls that read datagrams (recvmmsg): Messages over Reads is the batching
	Overruns  uint64 // times the kernel reported ENOBUFS: events were lost
	NotKernel uint64 // messages not sent by the kernel (port id != 0)
	Malformed uint64 // datagrams or messages whose lengths did not add up
	Oversized uint64 // datagrams too large to read whole (lost, reported as overruns)
}

// ErrOverrun is wrapped by the error a Socket returns when the kernel could
// not queue events for it (ENOBUFS): at least one event was lost.
var ErrOverrun = errors.New("netlink receive buffer overrun: kernel events were lost")
