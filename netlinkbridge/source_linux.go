package netlinkbridge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/mmsg"
)

// KernelConfig configures a KernelSource.
type KernelConfig struct {
	// Family is the netlink family. Zero: NETLINK_ROUTE.
	Family int
	// Groups are the multicast groups to join, by number. Groups above 32
	// are joined too (with NETLINK_ADD_MEMBERSHIP, as all are).
	Groups []uint32
	// NetNS is a network namespace file descriptor to read events from.
	// Zero: the calling thread's network namespace.
	NetNS int
	// ReadBuffer is the socket receive buffer in bytes, set with
	// SO_RCVBUFFORCE when privileged, else SO_RCVBUF (capped by
	// net.core.rmem_max). Zero: DefaultReadBuffer.
	ReadBuffer int
	// Batch is how many datagrams one recvmmsg call reads at most.
	// Zero: DefaultBatch.
	Batch int
}

// Defaults of KernelConfig.
const (
	// DefaultReadBuffer holds roughly 10,000 queued events (~830 bytes each).
	DefaultReadBuffer = 8 << 20
	DefaultBatch      = 32
	// slotSize is the largest datagram one slot holds by itself. One
	// larger datagram per read (up to slotSize+spillSize) still arrives
	// whole through the shared spill buffer; beyond that, or two in one
	// read, it is counted as Oversized and reported as an overrun.
	slotSize  = 64 << 10
	spillSize = 1 << 20
)

// KernelSource reads multicast messages from a kernel netlink socket.
type KernelSource struct {
	conn     *netlink.Conn
	rc       syscall.RawConn
	batch    *mmsg.Batch
	bufGot   int
	pending  []byte // messages of the current datagram not yet passed on
	pendGrp  uint32
	nextSlot int    // next slot of batch to split
	filled   int    // slots filled by the last recvmmsg
	big      []byte // a spilled datagram, reassembled
	lost     bool   // a datagram was lost since the last ReadBatch

	messages, overruns, notKernel, malformed, oversized atomic.Uint64
}

// nlPktinfoLen is the size of the control buffer: one NETLINK_PKTINFO.
var nlPktinfoLen = unix.CmsgSpace(4)

// NewKernelSource opens a netlink socket and joins the groups.
func NewKernelSource(cfg *KernelConfig) (*KernelSource, error) {
	if cfg == nil {
		cfg = &KernelConfig{}
	}
	family := cfg.Family
	if family == 0 {
		family = unix.NETLINK_ROUTE
	}
	conn, err := netlink.Dial(family, &netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return nil, fmt.Errorf("netlink: open family %d: %w", family, err)
	}
	fail := func(err error) (*KernelSource, error) {
		conn.Close()
		return nil, err
	}
	for _, g := range cfg.Groups {
		if err := conn.JoinGroup(g); err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
				return fail(fmt.Errorf("netlink: joining group %d needs CAP_NET_ADMIN (run the bridge as root): %w", g, err))
			}
			return fail(fmt.Errorf("netlink: join group %d: %w", g, err))
		}
	}
	if err := conn.SetOption(netlink.PacketInfo, true); err != nil {
		return fail(fmt.Errorf("netlink: enable NETLINK_PKTINFO: %w", err))
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return fail(fmt.Errorf("netlink: %w", err))
	}
	size := cfg.ReadBuffer
	if size <= 0 {
		size = DefaultReadBuffer
	}
	var got int
	var serr error
	err = rc.Control(func(fd uintptr) {
		s := int(fd)
		if serr = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); serr != nil {
			serr = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
		if v, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil {
			got = v / 2
		}
	})
	if err = errors.Join(err, serr); err != nil {
		return fail(fmt.Errorf("netlink: set receive buffer to %d bytes: %w", size, err))
	}
	n := cfg.Batch
	if n <= 0 {
		n = DefaultBatch
	}
	return &KernelSource{
		conn:   conn,
		rc:     rc,
		batch:  mmsg.NewSpill(n, slotSize, spillSize, unix.SizeofSockaddrNetlink, nlPktinfoLen),
		bufGot: got,
	}, nil
}

// ReadBuffer returns the receive buffer size the kernel granted, in bytes.
func (s *KernelSource) ReadBuffer() int { return s.bufGot }

// ReadBatch implements Source. It reads datagrams with recvmmsg, drops those
// not sent by the kernel, and splits each into its netlink messages. A
// datagram too large to read whole is lost: the next call reports it as an
// overrun.
func (s *KernelSource) ReadBatch(ms []Message) (int, error) {
	n := 0
	for n == 0 {
		if s.lost {
			s.lost = false
			return 0, fmt.Errorf("netlink: message larger than %d bytes: %w", slotSize+spillSize, ErrOverrun)
		}
		if len(s.pending) == 0 && s.nextSlot >= s.filled {
			got, err := s.batch.Recv(s.rc, 0, s.batch.Len())
			if err != nil {
				if errors.Is(err, unix.ENOBUFS) {
					s.overruns.Add(1)
					return 0, fmt.Errorf("netlink: %w", ErrOverrun)
				}
				return 0, fmt.Errorf("netlink: receive: %w", err)
			}
			s.filled, s.nextSlot = got, 0
		}
		n = s.split(ms)
	}
	s.messages.Add(uint64(n))
	return n, nil
}

// split passes on messages from the current and following slots until ms is
// full or the slots are used up.
func (s *KernelSource) split(ms []Message) int {
	n := 0
	for n < len(ms) {
		if len(s.pending) == 0 {
			if s.nextSlot >= s.filled {
				break
			}
			i := s.nextSlot
			s.nextSlot++
			if !s.admit(i) {
				continue
			}
			s.pending = s.batch.Data(i)
			if s.batch.Spilled(i) {
				s.pending, _ = s.batch.Whole(s.big[:0], i)
				s.big = s.pending
			}
		}
		l, ok := messageLen(s.pending)
		if !ok {
			s.malformed.Add(1)
			s.pending = nil
			continue
		}
		ms[n] = Message{Group: s.pendGrp, Data: s.pending[:l]}
		n++
		s.pending = s.pending[min(align4(l), len(s.pending)):]
	}
	return n
}

// admit checks slot i's sender and truncation and records its group.
func (s *KernelSource) admit(i int) bool {
	if s.batch.Flags(i)&unix.MSG_TRUNC != 0 {
		s.oversized.Add(1)
		s.lost = true
		return false
	}
	if !s.batch.Intact(i) {
		s.oversized.Add(1)
		s.lost = true
		return false
	}
	name := s.batch.Name(i)
	if len(name) < unix.SizeofSockaddrNetlink {
		s.malformed.Add(1)
		return false
	}
	if sa := (*unix.RawSockaddrNetlink)(unsafe.Pointer(&name[0])); sa.Pid != 0 {
		s.notKernel.Add(1)
		return false
	}
	s.pendGrp = 0
	mmsg.Cmsgs(s.batch.OOB(i), func(level, typ int32, data []byte) {
		if level == unix.SOL_NETLINK && typ == unix.NETLINK_PKTINFO && len(data) >= 4 {
			s.pendGrp = binary.NativeEndian.Uint32(data)
		}
	})
	return true
}

// messageLen returns the length of the netlink message at the start of b,
// if its header is complete and its length fits.
func messageLen(b []byte) (int, bool) {
	if len(b) < unix.SizeofNlMsghdr {
		return 0, false
	}
	l := int(binary.NativeEndian.Uint32(b))
	if l < unix.SizeofNlMsghdr || l > len(b) {
		return 0, false
	}
	return l, true
}

func align4(n int) int { return (n + 3) &^ 3 }

// Stats implements Source.
func (s *KernelSource) Stats() SourceStats {
	return SourceStats{
		Messages:  s.messages.Load(),
		Overruns:  s.overruns.Load(),
		NotKernel: s.notKernel.Load(),
		Malformed: s.malformed.Load(),
		Oversized: s.oversized.Load(),
	}
}

// SetReadDeadline implements Source.
func (s *KernelSource) SetReadDeadline(t time.Time) error { return s.conn.SetReadDeadline(t) }

// Close implements Source.
func (s *KernelSource) Close() error { return s.conn.Close() }
