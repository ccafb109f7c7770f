package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/sys/epollwait"
	"github.com/nlmcast/nlmcast/internal/sys/mmsg"
)

// Config configures a Socket. A nil *Config, like a zero one, means every
// default; Validate states the rules.
type Config struct {
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
	// Raw says datagrams carry no netlink message header: each is one
	// message, passed on whole (NETLINK_KOBJECT_UEVENT). Zero: datagrams
	// hold netlink messages, split at their headers.
	Raw bool
	// UserGroups are groups whose messages come from user space, not the
	// kernel (udevd's uevent group 2); only CAP_NET_ADMIN can send to
	// multicast groups of such families. Zero: messages whose sender is
	// not the kernel are dropped and counted in NotKernel.
	UserGroups []uint32
	// PartialJoin lets Open succeed when the kernel refuses this process
	// some of Groups for lack of a capability (EPERM, EACCES: generic
	// netlink groups marked GENL_MCAST_CAP_NET_ADMIN or _SYS_ADMIN, say):
	// those are left out and listed by Socket.Refused. Open still fails
	// when the kernel refuses every group. Zero: a refused group fails
	// Open.
	PartialJoin bool
	// AllNSID sets NETLINK_LISTEN_ALL_NSID: events of every network
	// namespace that has an id in this one arrive too, each marked with
	// that id (Message.NSID). Zero: only this namespace's events.
	AllNSID bool
}

// Defaults of Config.
const (
	// DefaultReadBuffer holds roughly 10,000 queued events (~830 bytes each).
	DefaultReadBuffer = 8 << 20
	DefaultBatch      = 128
	// slotSize is the largest datagram one slot holds by itself. One
	// larger datagram per read (up to slotSize+spillSize) still arrives
	// whole through the shared spill buffer; beyond that, or two in one
	// read, it is counted as Oversized and reported as an overrun.
	slotSize  = 64 << 10
	spillSize = 1 << 20
	// MaxDatagram is the largest netlink datagram, and so message, that
	// ReadBatch passes on (frame.MaxRawMessage says the same to receivers).
	MaxDatagram = slotSize + spillSize
)

// Socket reads multicast messages from a kernel netlink socket.
//
// ReadBatch never parks in the Go runtime's poller, which would add a
// hand-off between threads to every wake-up. Where the family answers a
// request that changes nothing (see wakeRequest), it blocks its thread in recvmmsg itself, as a
// C program would: the kernel wakes the reader with the event in hand.
// A deadline is the socket's SO_RCVTIMEO, and another goroutine wakes the
// reader by sending the kernel such a request, whose answer the reader
// takes and drops (wake). Other families block in epoll_wait (see
// internal/sys/epollwait), which an eventfd interrupts.
type Socket struct {
	conn   *netlink.Conn
	fd     int               // conn's descriptor; valid until Close
	w      *epollwait.Waiter // watches fd; nil when block
	readMu sync.Mutex        // held by ReadBatch; Close waits on it
	closed atomic.Bool

	// For block: the reader blocks in recvmmsg.
	block             bool
	wakeReq           []byte         // the request that wakes the reader (wakeRequest)
	pollFd            [1]unix.PollFd // pollUntil\'s
	deadline          atomic.Int64   // unix ns; 0: none
	waiting           atomic.Bool    // a ReadBatch may be blocked in recvmmsg
	fdMu              sync.RWMutex   // held for writing while fd closes: wake sends on fd
	fdClosed          bool
	timeo             int64             // SO_RCVTIMEO set now, in ns; 0: none
	yield             epollwait.Yielder // when a blocking read yields to the scheduler first
	wakes, wakeFailed atomic.Uint64

	batch    *mmsg.Batch
	bufGot   int
	pending  []byte // messages of the current datagram not yet passed on
	pendGrp  uint32
	nextSlot int    // next slot of batch to split
	filled   int    // slots filled by the last recvmmsg
	big      []byte // a spilled datagram, reassembled
	lost     bool   // a datagram was lost since the last ReadBatch
	raw      bool   // each datagram is one message without netlink header
	userGrp  GroupSet
	pendNSID int32
	pendHas  bool
	refused  []uint32 // groups the kernel refused (Config.PartialJoin); read-only

	messages, reads, overruns, notKernel, malformed, oversized atomic.Uint64
}

// nlCmsgLen is the size of the control buffer: NETLINK_PKTINFO and
// NETLINK_LISTEN_ALL_NSID, 4 bytes each.
var nlCmsgLen = 2 * unix.CmsgSpace(4)

// Open checks cfg (Validate), opens a netlink socket and joins the groups.
func Open(cfg *Config) (*Socket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = &Config{}
	}
	family := cfg.Family
	if family == 0 {
		family = unix.NETLINK_ROUTE
	}
	conn, err := netlink.Dial(family, &netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return nil, fmt.Errorf("netlink: open family %d: %w", family, err)
	}
	fail := func(err error) (*Socket, error) {
		conn.Close()
		return nil, err
	}
	var refused []uint32
	for _, g := range cfg.Groups {
		if err := conn.JoinGroup(g); err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
				if cfg.PartialJoin && len(refused) < len(cfg.Groups)-1 {
					refused = append(refused, g)
					continue
				}
				return fail(fmt.Errorf("netlink: the kernel refuses group %d to this process: it lacks a capability the group needs "+
					"(CAP_NET_ADMIN for most; run the bridge as root): %w", g, err))
			}
			return fail(fmt.Errorf("netlink: join group %d: %w", g, err))
		}
	}
	if err := conn.SetOption(netlink.PacketInfo, true); err != nil {
		return fail(fmt.Errorf("netlink: enable NETLINK_PKTINFO: %w", err))
	}
	if cfg.AllNSID {
		if err := conn.SetOption(netlink.ListenAllNSID, true); err != nil {
			return fail(fmt.Errorf("netlink: listen to all namespaces (NETLINK_LISTEN_ALL_NSID): %w", err))
		}
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
	var fd int
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return fail(fmt.Errorf("netlink: %w", err))
	}
	var w *epollwait.Waiter
	wakeType, wakeBody, block := wakeRequest(family)
	if block {
		// recvmmsg waits only on a blocking descriptor. The netlink
		// package sends on it too: a send to the kernel never waits.
		if err := unix.SetNonblock(fd, false); err != nil {
			return fail(fmt.Errorf("netlink: make the socket blocking: %w", err))
		}
	} else {
		if w, err = epollwait.New(1); err != nil {
			return fail(fmt.Errorf("netlink: %w", err))
		}
		if err := w.Add(fd); err != nil {
			w.Close()
			return fail(fmt.Errorf("netlink: %w", err))
		}
	}
	ks := &Socket{
		conn:    conn,
		fd:      fd,
		w:       w,
		block:   block,
		wakeReq: wakeMessage(wakeType, wakeBody),
		batch:   mmsg.NewSpill(n, slotSize, spillSize, unix.SizeofSockaddrNetlink, nlCmsgLen),
		bufGot:  got,
		raw:     cfg.Raw,
		refused: refused,
	}
	for _, g := range cfg.UserGroups {
		if g < 256 {
			ks.userGrp.Add(g)
		}
	}
	return ks, nil
}

// Join joins another multicast group while the source is open.
func (s *Socket) Join(group uint32) error { return s.conn.JoinGroup(group) }

// Refused returns the groups of Config.Groups the kernel refused to let
// this process join (Config.PartialJoin), in their order; nil when none.
func (s *Socket) Refused() []uint32 { return append([]uint32(nil), s.refused...) }

// Leave leaves a multicast group.
func (s *Socket) Leave(group uint32) error { return s.conn.LeaveGroup(group) }

// Send sends a message to the kernel on the source's socket, for families
// that subscribe by request rather than by group (the process connector).
func (s *Socket) Send(m netlink.Message) error {
	_, err := s.conn.Send(m)
	return err
}

// ReadBuffer returns the receive buffer size the kernel granted, in bytes.
func (s *Socket) ReadBuffer() int { return s.bufGot }

// Backlog returns what the kernel holds queued on the socket for reading
// and the most it holds before it drops events (ENOBUFS), in bytes of its
// own accounting (SO_MEMINFO: a queued event costs its message and the
// buffer's overhead, about 830 bytes for an address event). It must not be
// called after Close.
func (s *Socket) Backlog() (queued, limit int, err error) {
	s.fdMu.RLock()
	defer s.fdMu.RUnlock()
	if s.fdClosed || s.closed.Load() {
		return 0, 0, fmt.Errorf("netlink: backlog: %w", net.ErrClosed)
	}
	var mi [skMeminfoVars]uint32
	l := uint32(unsafe.Sizeof(mi))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mi)), uintptr(unsafe.Pointer(&l)), 0); errno != 0 {
		return 0, 0, fmt.Errorf("netlink: backlog (SO_MEMINFO): %w", errno)
	}
	return int(mi[skMeminfoRmemAlloc]), int(mi[skMeminfoRcvbuf]), nil
}

// The first entries of SO_MEMINFO's array (linux/sock_diag.h), and room
// for those later kernels add.
const (
	skMeminfoRmemAlloc = 0
	skMeminfoRcvbuf    = 1
	skMeminfoVars      = 16
)

// ReadBatch implements netlinkbridge.Source. It reads datagrams with recvmmsg, drops those
// not sent by the kernel, and splits each into its netlink messages. A
// datagram too large to read whole is lost: the next call reports it as an
// overrun.
func (s *Socket) ReadBatch(ms []Message) (int, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	n := 0
	for n == 0 {
		if s.closed.Load() {
			return 0, fmt.Errorf("netlink: receive: %w", net.ErrClosed)
		}
		if s.lost {
			s.lost = false
			return 0, fmt.Errorf("netlink: message larger than %d bytes: %w", slotSize+spillSize, ErrOverrun)
		}
		if len(s.pending) == 0 && s.nextSlot >= s.filled {
			// Read first: when events are queued, as under load, no wait.
			got, err := s.batch.RecvFd(s.fd, 0, s.batch.Len(), unix.MSG_DONTWAIT)
			if errors.Is(err, unix.EAGAIN) {
				if s.block {
					got, err = s.recvBlocking()
				} else {
					_, err = s.w.Wait(time.Time{})
					if err == nil {
						continue // readable, or woken: look again
					}
				}
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return 0, err
				}
			}
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, net.ErrClosed) {
				// SO_RCVTIMEO ran out, a signal came, or closed: look
				// again, and wait (recvBlocking) only as long as is left.
				continue
			}
			if err != nil {
				if errors.Is(err, unix.ENOBUFS) {
					s.overruns.Add(1)
					return 0, fmt.Errorf("netlink: %w", ErrOverrun)
				}
				return 0, fmt.Errorf("netlink: receive: %w", err)
			}
			s.filled, s.nextSlot = got, 0
			s.reads.Add(1)
		}
		n = s.split(ms)
	}
	s.messages.Add(uint64(n))
	return n, nil
}

// recvBlocking blocks in recvmmsg until a datagram comes, the deadline
// passes (os.ErrDeadlineExceeded) or wake is called (the answer to its
// request comes, which admit drops). It returns EAGAIN when
// SO_RCVTIMEO ran out before the deadline (rounding), EINTR when a signal
// came, and net.ErrClosed when the socket is closing; the caller looks
// again, and the next call sets SO_RCVTIMEO to what is left until the
// deadline, so that no signal postpones it.
//
// waiting is set before the deadline and closed are read, and wake reads
// it after they are written: either this reader sees the new deadline, or
// the waker sees a reader that may block and sends its request, whose answer
// then ends (or prevents) the wait. No wake-up is lost.
func (s *Socket) recvBlocking() (int, error) {
	s.yield.BeforeWait() // as epollwait.Waiter.Wait does, and for the same reason
	s.waiting.Store(true)
	defer s.waiting.Store(false)
	if s.closed.Load() {
		return 0, net.ErrClosed
	}
	timeo := int64(maxBlock)
	if d := s.deadline.Load(); d != 0 {
		left := d - time.Now().UnixNano()
		if left <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		if left < int64(preciseBelow) {
			return s.pollUntil(left)
		}
		// Back a little before the deadline, for the rest in ppoll.
		timeo = min(timeo, (left-int64(preciseBelow)+999)/1000*1000+1000) // whole microseconds, never 0
	}
	if timeo != s.timeo {
		tv := unix.NsecToTimeval(timeo)
		if err := unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return 0, os.NewSyscallError("setsockopt SO_RCVTIMEO", err)
		}
		s.timeo = timeo
	}
	return s.batch.RecvFd(s.fd, 0, s.batch.Len(), unix.MSG_WAITFORONE)
}

// preciseBelow is how near a deadline must be for recvBlocking to wait in
// ppoll instead: the kernel counts SO_RCVTIMEO in jiffies (4 ms at 250 Hz,
// 10 at 100 Hz, and a wait may last one more), which would make an answer
// paced at a chunk every few milliseconds several times slower, and a
// deadline late; ppoll's timeout is precise. A farther deadline is waited
// for in recvmmsg, with its direct wake-up, until it is this near: at one
// heartbeat a second, 2% of the time is spent in ppoll. (A variable for
// tests only, which need a wide window.)
var preciseBelow = 20 * time.Millisecond

// pollUntil waits in ppoll until the socket is readable or left
// nanoseconds have passed, then returns EAGAIN: ReadBatch reads what came,
// or recvBlocking finds the deadline passed. A wake's answer makes the
// socket readable as well.
func (s *Socket) pollUntil(left int64) (int, error) {
	ts := unix.NsecToTimespec(left)
	s.pollFd[0] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN}
	if _, err := unix.Ppoll(s.pollFd[:], &ts, nil); err != nil && err != unix.EINTR {
		return 0, os.NewSyscallError("ppoll", err)
	}
	return 0, unix.EAGAIN
}

// wakeRequest returns the request that wake sends on a socket of family,
// and whether the family has one: a request the kernel answers at once,
// whatever the sender's privileges, on the sender's socket, with an
// acknowledgement or an error (which wakes the reader as well), and that
// changes nothing. Rtnetlink and xfrm get a read request that names no
// object (an error: SELinux's tables know read requests, while a NOOP
// there is "unrecognized", logged, and refused under a policy that denies
// unknown messages; xfrm refuses any request without CAP_NET_ADMIN);
// generic netlink and nfnetlink, which SELinux does not check message by
// message, a NOOP (nfnetlink answers EPERM without CAP_NET_ADMIN). The
// process connector, uevents and audit answer no such request, or may
// log it: their readers wait in epoll_wait.
func wakeRequest(family int) (typ uint16, body int, ok bool) {
	switch family {
	case unix.NETLINK_ROUTE:
		return unix.RTM_GETLINK, unix.SizeofIfInfomsg, true // index 0, no name: EINVAL
	case unix.NETLINK_XFRM:
		return xfrmMsgGetSA, sizeofXfrmUsersaID, true // no such SA (or EPERM)
	case unix.NETLINK_GENERIC, unix.NETLINK_NETFILTER:
		return unix.NLMSG_NOOP, 0, true
	}
	return 0, 0, false
}

// From linux/xfrm.h: XFRM_MSG_GETSA and struct xfrm_usersa_id (daddr, spi,
// family, proto; padded).
const (
	xfrmMsgGetSA       = 0x12
	sizeofXfrmUsersaID = 24
)

// wakeSeq is the sequence number of the request that wake sends.
const wakeSeq = 0x6e6c6d77 // "nlmw"

// wakeMessage builds the request of type typ, with a zeroed body of body
// bytes, that wake sends.
func wakeMessage(typ uint16, body int) []byte {
	m := make([]byte, unix.SizeofNlMsghdr+body)
	binary.NativeEndian.PutUint32(m[0:], uint32(len(m)))
	binary.NativeEndian.PutUint16(m[4:], typ)
	binary.NativeEndian.PutUint16(m[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(m[8:], wakeSeq)
	return m
}

// wake makes a blocked recvBlocking return, when a reader may be blocked:
// it sends the kernel a request (wakeRequest) whose answer lands on this
// socket. If the receive buffer is full the answer is dropped, but the
// reader then has data, or the overrun, to return with. Should the send
// fail, the reader still returns within maxBlock.
func (s *Socket) wake() {
	if !s.waiting.Load() {
		return
	}
	s.fdMu.RLock()
	defer s.fdMu.RUnlock()
	if s.fdClosed {
		return
	}
	if err := unix.Sendto(s.fd, s.wakeReq, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		s.wakeFailed.Add(1)
	}
}

// isWake reports whether a datagram from the kernel on no group is the
// answer to wake's request (an acknowledgement, or an error).
func (s *Socket) isWake(b []byte) bool {
	const errLen = unix.SizeofNlMsghdr + 4 + unix.SizeofNlMsghdr
	return len(b) >= errLen &&
		binary.NativeEndian.Uint16(b[4:]) == unix.NLMSG_ERROR &&
		binary.NativeEndian.Uint32(b[8:]) == wakeSeq &&
		binary.NativeEndian.Uint16(b[unix.SizeofNlMsghdr+4+4:]) == binary.NativeEndian.Uint16(s.wakeReq[4:])
}

// maxBlock bounds one wait in recvmmsg: a wake-up that could not be sent
// (wake) delays the reader by no more.
const maxBlock = time.Second

// split passes on messages from the current and following slots until ms is
// full or the slots are used up.
func (s *Socket) split(ms []Message) int {
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
		l, ok := len(s.pending), true
		if !s.raw {
			l, ok = messageLen(s.pending)
		}
		if !ok {
			s.malformed.Add(1)
			s.pending = nil
			continue
		}
		ms[n] = Message{Group: s.pendGrp, Data: s.pending[:l], NSID: s.pendNSID, HasNSID: s.pendHas}
		n++
		s.pending = s.pending[min(align4(l), len(s.pending)):]
	}
	return n
}

// admit checks slot i's sender and truncation and records its group.
func (s *Socket) admit(i int) bool {
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
	s.pendGrp, s.pendHas, s.pendNSID = 0, false, 0
	mmsg.Cmsgs(s.batch.OOB(i), func(level, typ int32, data []byte) {
		if level != unix.SOL_NETLINK || len(data) < 4 {
			return
		}
		switch typ {
		case unix.NETLINK_PKTINFO:
			s.pendGrp = binary.NativeEndian.Uint32(data)
		case unix.NETLINK_LISTEN_ALL_NSID:
			s.pendNSID, s.pendHas = int32(binary.NativeEndian.Uint32(data)), true
		}
	})
	sa := (*unix.RawSockaddrNetlink)(unsafe.Pointer(&name[0]))
	if sa.Pid != 0 && (s.pendGrp >= 256 || !s.userGrp.Has(s.pendGrp)) {
		s.notKernel.Add(1)
		return false
	}
	if s.block && sa.Pid == 0 && s.pendGrp == 0 && s.isWake(s.batch.Data(i)) {
		s.wakes.Add(1)
		return false
	}
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

// Stats implements netlinkbridge.Source.
func (s *Socket) Stats() Stats {
	return Stats{
		Messages:  s.messages.Load(),
		Reads:     s.reads.Load(),
		Overruns:  s.overruns.Load(),
		NotKernel: s.notKernel.Load(),
		Malformed: s.malformed.Load(),
		Oversized: s.oversized.Load(),
	}
}

// SetReadDeadline implements netlinkbridge.Source. A blocked ReadBatch sees the new
// deadline at once.
func (s *Socket) SetReadDeadline(t time.Time) error {
	if !s.block {
		s.w.SetDeadline(t)
		return nil
	}
	if t.IsZero() {
		s.deadline.Store(0)
	} else {
		s.deadline.Store(t.UnixNano())
	}
	s.wake()
	return nil
}

// Close implements netlinkbridge.Source. It makes a blocked ReadBatch return an error
// wrapping net.ErrClosed, and is safe to call more than once.
func (s *Socket) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if !s.block {
		s.w.Wake()
		s.readMu.Lock() // wait for a ReadBatch in progress to return
		defer s.readMu.Unlock()
		return errors.Join(s.w.Close(), s.conn.Close())
	}
	s.wake()
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.fdMu.Lock()
	defer s.fdMu.Unlock()
	s.fdClosed = true
	return s.conn.Close()
}
