package mcast

import (
	"encoding/binary"
	"net"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// UDP segmentation offload (UDP_SEGMENT, Linux 4.18) on multicast: one send
// of k equal-size datagrams (the last may be shorter) travels the sending
// stack and the loopback device once, and the kernel cuts it back into k
// datagrams for each receiving socket (that has not asked for UDP_GRO). The
// per-datagram cost of a send is mostly that trip, so runs make sending
// several times cheaper.

const (
	// maxRun is the most datagrams a segmented send starts with: the
	// kernel's UDP_MAX_SEGMENTS, 128 since Linux 6.9. A kernel with the
	// older limit, 64, refuses a longer run; the Sender then falls back
	// to oldMaxRun for good.
	maxRun    = 128
	oldMaxRun = 64
	// maxRunBytes bounds a run's payload below the 64 KiB IP limit.
	maxRunBytes = 60000
	// maxGroups is the most destinations of a batch that group sorts
	// together; a batch to more is sent in its own order.
	maxGroups = 32
)

// segmenter turns a batch into runs. Its slices are reused from batch to
// batch, so that a steady stream of batches allocates nothing.
type segmenter struct {
	on    bool
	max   int            // the most datagrams in one run
	out   []ipv4.Message // the batch as sent: runs and single datagrams
	count []int          // how many of the caller's messages each out holds
	iovs  [][]byte       // the runs' buffers, back to back
	oob   [][]byte       // a UDP_SEGMENT control message per out slot

	dsts    []net.Addr     // a batch's destinations, in order of appearance
	grouped []ipv4.Message // a batch with each destination's datagrams together
}

// group returns ms with the datagrams to each destination together:
// destinations in the order they first appear, each one's datagrams in
// their own order. Datagrams to different groups reach different sockets,
// with no order between them, so no receiver can tell; but runs can form
// where a batch interleaves groups, as a raw and a JSON frame per event
// do, or events of several streams. The result is valid until the next
// call.
func (g *segmenter) group(ms []ipv4.Message) []ipv4.Message {
	g.dsts = g.dsts[:0]
	for i := range ms {
		seen := false
		for _, d := range g.dsts {
			if sameDst(d, ms[i].Addr) {
				seen = true
				break
			}
		}
		if !seen {
			g.dsts = append(g.dsts, ms[i].Addr)
			if len(g.dsts) > maxGroups {
				break
			}
		}
	}
	out := ms
	if n := len(g.dsts); n > 1 && n <= maxGroups {
		g.grouped = g.grouped[:0]
		for _, d := range g.dsts {
			for i := range ms {
				if sameDst(d, ms[i].Addr) {
					g.grouped = append(g.grouped, ms[i])
				}
			}
		}
		out = g.grouped
	}
	clear(g.dsts) // keep no destination past the batch
	return out
}

func msgLen(m *ipv4.Message) int {
	n := 0
	for _, b := range m.Buffers {
		n += len(b)
	}
	return n
}

func sameDst(a, b net.Addr) bool {
	if a == b {
		return true
	}
	ua, ok1 := a.(*net.UDPAddr)
	ub, ok2 := b.(*net.UDPAddr)
	return ok1 && ok2 && ua.Port == ub.Port && ua.IP.Equal(ub.IP)
}

// plan fills out and count from ms.
func (g *segmenter) plan(ms []ipv4.Message) {
	g.out, g.count, g.iovs = g.out[:0], g.count[:0], g.iovs[:0]
	for i := 0; i < len(ms); {
		size := msgLen(&ms[i])
		j, total := i+1, size
		if size > 0 {
			for j < len(ms) && j-i < g.max && total+size <= maxRunBytes && sameDst(ms[j].Addr, ms[i].Addr) {
				l := msgLen(&ms[j])
				if l > size || l == 0 {
					break
				}
				j, total = j+1, total+l
				if l < size {
					break // a shorter datagram ends a run
				}
			}
		}
		k := len(g.out)
		if k == len(g.oob) {
			g.oob = append(g.oob, make([]byte, unix.CmsgSpace(2)))
		}
		m := ipv4.Message{Addr: ms[i].Addr, Buffers: ms[i].Buffers}
		if j-i > 1 {
			start := len(g.iovs)
			for x := i; x < j; x++ {
				g.iovs = append(g.iovs, ms[x].Buffers...)
			}
			m.Buffers = g.iovs[start:len(g.iovs):len(g.iovs)]
			m.OOB = segmentCmsg(g.oob[k], size)
		}
		g.out = append(g.out, m)
		g.count = append(g.count, j-i)
		i = j
	}
}

// segmentCmsg writes a UDP_SEGMENT control message for size into b.
func segmentCmsg(b []byte, size int) []byte {
	h := (*unix.Cmsghdr)(unsafePointer(b))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return b
}

// writeSegmented sends ms in runs, each destination's datagrams together.
func (s *Sender) writeSegmented(ms []ipv4.Message) error {
	err := s.writeRuns(s.seg.group(ms))
	clear(s.seg.grouped) // drop references to the caller's buffers
	return err
}

// writeRuns sends ms in runs of consecutive datagrams.
func (s *Sender) writeRuns(ms []ipv4.Message) error {
	g := &s.seg
	g.plan(ms)
	if len(g.out) == len(ms) {
		return s.writePlain(ms) // no runs in this batch
	}
	err := s.write(g.out, g.count, ms)
	for i := range g.out {
		g.out[i] = ipv4.Message{} // drop references to the caller's buffers
	}
	clear(g.iovs)
	return err
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
