package mcast

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/sys/epollwait"
	"github.com/nlmcast/nlmcast/internal/sys/mmsg"
)

// Datagram is one received datagram.
type Datagram struct {
	Group  netip.AddrPort // the group (and port) it was sent to
	Source netip.AddrPort // the sender
	Data   []byte         // valid until the next ReadBatch
	// Drops is how many packets the kernel dropped on this group's
	// socket, for want of buffer space, since the last datagram passed
	// on from it (SO_RXQ_OVFL). A coalesced run counts as one packet:
	// sequence numbers in the data, if any, tell how many datagrams.
	Drops uint32
	// Lost is how many datagrams of this group a transport between the
	// sender and this reader dropped since the last one passed on: set by
	// sources that carry datagrams further than a socket (package fleet's,
	// whose publisher's buffer overflowed), never by a Receiver.
	Lost uint32
}

// ReceiverStats counts what a Receiver saw. Datagrams that fail a check are
// dropped and counted here, never passed on.
type ReceiverStats struct {
	Received       uint64 // datagrams passed to the caller
	WrongInterface uint64 // arrived on another interface than the configured one
	WrongSource    uint64 // not from the expected sender address or port (that the kernel filter let through)
	Truncated      uint64 // larger than a receive slot (cannot happen on IPv4)
	KernelDrops    uint64 // packets dropped by the kernel: this receiver's buffer was full (SO_RXQ_OVFL)
	// Coalesced counts the datagrams that arrived in coalesced runs
	// (UDP_GRO), Runs the reads they took.
	Coalesced, Runs uint64
}

// A Receiver receives datagrams sent to the groups it has joined. ReadBatch
// may be called from one goroutine at a time; Join, Leave, Close, Stats and
// SetReadDeadline from any.
type Receiver struct {
	ifi        *net.Interface
	source     netip.AddrPort
	anySource  bool
	connect    bool // connect every group socket to source: the kernel's filter
	readBuffer int
	coalesce   bool

	w *epollwait.Waiter // every member's socket; ReadBatch blocks in it

	mu      sync.RWMutex // guards members and byFD; held for reading while sockets are read
	members map[netip.AddrPort]*member
	byFD    map[int32]*member
	gotBuf  int // smallest receive buffer the kernel granted

	readMu sync.Mutex // held by ReadBatch; Close waits on it before freeing fds
	batch  *mmsg.Batch
	runs   []run // the accepted slots of the last read, in order
	next   int   // runs[next:] are not yet passed on
	closed atomic.Bool

	received, wrongIf, wrongSrc, truncated, kernelDrops, coalesced, runCount atomic.Uint64
}

// run is one accepted slot of a read: a datagram, or a coalesced run of
// datagrams of seg bytes each (the last may be shorter), still to be passed
// on from data.
type run struct {
	m     *member
	src   netip.AddrPort
	data  []byte
	seg   int    // 0: one datagram
	drops uint32 // reported with the run's first datagram
}

type member struct {
	group    netip.AddrPort
	fd       int    // the socket, closed by Leave or Close; an attached one's owner closes it
	attached bool   // added by Attach: a Sender's socket, not ours to close
	lastOvfl uint32 // last SO_RXQ_OVFL counter seen
	drops    uint32 // drops not yet reported with a datagram
}

// Control buffer space: IP_PKTINFO, SO_RXQ_OVFL and UDP_GRO, rounded up.
const recvOOBLen = 128

// NewReceiver returns a Receiver with no groups; add them with Join.
func NewReceiver(cfg *ReceiverConfig) (*Receiver, error) {
	if cfg == nil {
		cfg = &ReceiverConfig{}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ifi, err := lookupInterface(cfg.Interface, cfg.AllowNonLoopback)
	if err != nil {
		return nil, err
	}
	src, anySource := cfg.AcceptedSource()
	batch := cfg.Batch
	if batch == 0 {
		batch = DefaultBatch
	}
	rb := cfg.ReadBuffer
	if rb == 0 {
		rb = DefaultReadBuffer
	}
	w, err := epollwait.New(batch)
	if err != nil {
		return nil, fmt.Errorf("mcast: %w", err)
	}
	return &Receiver{
		ifi:        ifi,
		source:     src,
		anySource:  anySource,
		connect:    !anySource && !cfg.NoKernelFilter,
		readBuffer: rb,
		coalesce:   !cfg.NoCoalesce,
		w:          w,
		members:    make(map[netip.AddrPort]*member),
		byFD:       make(map[int32]*member),
		batch:      mmsg.New(batch, MaxDatagram+1, unix.SizeofSockaddrInet6, recvOOBLen),
		runs:       make([]run, 0, batch),
	}, nil
}

// Join starts receiving datagrams sent to group (a multicast address and
// port). Joining a group twice is a no-op.
func (r *Receiver) Join(group netip.AddrPort) error {
	if err := checkGroup(group); err != nil {
		return err
	}
	if r.closed.Load() {
		return ErrClosed
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.members[group]; ok {
		return nil
	}
	m, granted, err := r.open(group)
	if err != nil {
		return err
	}
	if err := r.w.Add(m.fd); err != nil {
		unix.Close(m.fd)
		return fmt.Errorf("mcast: join %s: %w", group, err)
	}
	r.members[group] = m
	r.byFD[int32(m.fd)] = m
	if r.gotBuf == 0 || granted < r.gotBuf {
		r.gotBuf = granted
	}
	return nil
}

// open makes one group's socket: bound to the group's address and port
// (not the wildcard address, as Go's ListenPacket would bind it), shared
// with other receivers, connected to the source unless any is accepted,
// with the control messages the checks need, and joined on the interface,
// last, so that nothing of another sender is ever queued.
func (r *Receiver) open(group netip.AddrPort) (*member, int, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, 0, fmt.Errorf("mcast: join %s: %w", group, err)
	}
	fail := func(what string, err error) (*member, int, error) {
		unix.Close(s)
		return nil, 0, fmt.Errorf("mcast: join %s: %s: %w", group, what, err)
	}
	if err := errors.Join(
		unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
		unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0),
		unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1),
		unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_PKTINFO, 1),
		setBuffer(s, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, r.readBuffer),
	); err != nil {
		return fail("socket options", err)
	}
	if r.coalesce {
		// Best effort: without it (Linux < 5.0) the kernel splits runs
		// before queueing them, and nothing else changes.
		_ = unix.SetsockoptInt(s, unix.SOL_UDP, unix.UDP_GRO, 1)
	}
	var granted int
	// The kernel reports twice the usable size; report what was set.
	if v, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil {
		granted = v / 2
	}
	if err := unix.Bind(s, &unix.SockaddrInet4{Addr: group.Addr().As4(), Port: int(group.Port())}); err != nil {
		return fail("bind", err)
	}
	if r.connect {
		if err := connectSource(s, r.source); err != nil {
			return fail("kernel filter", err)
		}
	}
	mreq := &unix.IPMreqn{Multiaddr: group.Addr().As4(), Ifindex: int32(r.ifi.Index)}
	if err := unix.SetsockoptIPMreqn(s, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq); err != nil {
		return fail("join on "+r.ifi.Name, err)
	}
	return &member{group: group, fd: s}, granted, nil
}

// Attach adds s's socket to those ReadBatch reads, so that datagrams sent
// to s's own address (unicast answers to what s sent) are read with the
// groups': each comes with Group set to s.Source() and passes the same
// interface and sender checks. The Receiver does not own the socket: the
// caller Detaches it before closing s. Attaching s twice is a no-op.
func (r *Receiver) Attach(s *Sender) error {
	if r.closed.Load() {
		return ErrClosed
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	at := s.Source()
	if _, ok := r.members[at]; ok {
		return nil
	}
	m := &member{group: at, attached: true}
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("mcast: attach %s: %w", at, err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		m.fd = int(fd)
		serr = errors.Join(
			unix.SetsockoptInt(m.fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1),
			unix.SetsockoptInt(m.fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1),
			setBuffer(m.fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, r.readBuffer),
		)
		if r.coalesce {
			_ = unix.SetsockoptInt(m.fd, unix.SOL_UDP, unix.UDP_GRO, 1)
		}
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("mcast: attach %s: %w", at, err)
	}
	if err := r.w.Add(m.fd); err != nil {
		return fmt.Errorf("mcast: attach %s: %w", at, err)
	}
	r.members[at] = m
	r.byFD[int32(m.fd)] = m
	return nil
}

// Detach removes s's socket, added by Attach, from those ReadBatch reads,
// without closing it. Detaching a socket not attached is a no-op.
func (r *Receiver) Detach(s *Sender) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.members[s.Source()]
	if !ok || !m.attached {
		return nil
	}
	delete(r.members, m.group)
	delete(r.byFD, int32(m.fd))
	if r.closed.Load() {
		return nil // Close removed it with the epoll set
	}
	return r.w.Del(m.fd)
}

// Leave stops receiving a group. Leaving a group not joined is a no-op.
func (r *Receiver) Leave(group netip.AddrPort) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.members[group]
	if !ok || m.attached {
		return nil // not joined, or attached: Detach removes it
	}
	delete(r.members, group)
	delete(r.byFD, int32(m.fd))
	// Removing from the epoll set before closing keeps a stale event from
	// naming a reused descriptor; readers hold mu, so none is mid-read.
	_ = r.w.Del(m.fd)
	return unix.Close(m.fd)
}

// Groups returns the groups joined.
func (r *Receiver) Groups() []netip.AddrPort {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]netip.AddrPort, 0, len(r.members))
	for g, m := range r.members {
		if !m.attached {
			out = append(out, g)
		}
	}
	return out
}

// ReadBuffer returns the smallest receive buffer, in bytes, that the kernel
// granted to a group's socket: compare it with ReceiverConfig.ReadBuffer.
func (r *Receiver) ReadBuffer() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.gotBuf
}

// SetReadDeadline makes ReadBatch return os.ErrDeadlineExceeded once t has
// passed with nothing to read. The zero time means no deadline.
func (r *Receiver) SetReadDeadline(t time.Time) error {
	r.w.SetDeadline(t)
	return nil
}

// ReadBatch waits until datagrams are queued on any joined group, then fills
// ds with as many as fit, and returns how many it filled. Datagrams from the
// wrong interface or sender are dropped and counted (see Stats). Data of the
// returned datagrams is valid until the next call. In steady state it
// allocates nothing. It returns ErrClosed after Close.
func (r *Receiver) ReadBatch(ds []Datagram) (int, error) {
	return r.ReadBatchUntil(ds, time.Time{})
}

// ReadBatchUntil is ReadBatch with a deadline for this call only, on top of
// the one SetReadDeadline sets (the earlier applies); the zero time means
// none. Unlike SetReadDeadline it costs no system call.
func (r *Receiver) ReadBatchUntil(ds []Datagram, until time.Time) (int, error) {
	r.readMu.Lock()
	defer r.readMu.Unlock()
	if len(ds) > r.batch.Len() {
		ds = ds[:r.batch.Len()]
	}
	for {
		if r.closed.Load() {
			return 0, ErrClosed
		}
		if r.next < len(r.runs) {
			return r.emit(ds), nil // the rest of the last read first
		}
		ready, err := r.w.Wait(until)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, err
			}
			return 0, fmt.Errorf("mcast: %w", err)
		}
		if n := r.drain(ds, ready); n > 0 {
			return n, nil
		}
	}
}

// drain reads from every ready socket into the batch's slots, at most one
// per entry of ds, and passes on what fits of the datagrams they hold.
func (r *Receiver) drain(ds []Datagram, ready []unix.EpollEvent) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.runs, r.next = r.runs[:0], 0
	slot := 0
	for _, ev := range ready {
		m := r.byFD[ev.Fd]
		if m == nil || slot >= len(ds) {
			continue // left since the wait, or no room: epoll reports it again
		}
		got, err := r.batch.RecvFd(m.fd, slot, len(ds)-slot, unix.MSG_DONTWAIT)
		if err != nil || got == 0 {
			continue
		}
		for i := slot; i < slot+got; i++ {
			src, seg, ok := r.accept(m, i)
			if !ok {
				continue
			}
			r.runs = append(r.runs, run{m: m, src: src, data: r.batch.Data(i), seg: seg, drops: m.drops})
			m.drops = 0
		}
		slot += got
	}
	return r.emit(ds)
}

// emit passes on datagrams from the runs not yet passed on, splitting
// coalesced runs at their segment size, until ds is full.
func (r *Receiver) emit(ds []Datagram) int {
	n := 0
	for n < len(ds) && r.next < len(r.runs) {
		rn := &r.runs[r.next]
		d := rn.data
		if rn.seg > 0 && len(d) > rn.seg {
			d = d[:rn.seg]
		}
		// Field by field: a composite literal would be built aside and copied.
		dg := &ds[n]
		dg.Group, dg.Source, dg.Data, dg.Drops = rn.m.group, rn.src, d, rn.drops
		rn.drops = 0
		rn.data = rn.data[len(d):]
		n++
		if len(rn.data) == 0 {
			r.runs[r.next] = run{} // keep no member alive past Leave
			r.next++
		}
	}
	r.received.Add(uint64(n))
	return n
}

// accept applies the interface and source checks to slot i, accounts for
// kernel drops reported with it, and returns its source and, for a
// coalesced run, its segment size.
func (r *Receiver) accept(m *member, i int) (netip.AddrPort, int, bool) {
	ifindex, seg := int32(-1), 0
	mmsg.Cmsgs(r.batch.OOB(i), func(level, typ int32, data []byte) {
		switch {
		case level == unix.SOL_UDP && typ == unix.UDP_GRO && len(data) >= 4:
			seg = int(int32(binary.NativeEndian.Uint32(data)))
		case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			ifindex = (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0])).Ifindex
		case level == unix.SOL_SOCKET && typ == unix.SO_RXQ_OVFL && len(data) >= 4:
			v := binary.NativeEndian.Uint32(data)
			if d := v - m.lastOvfl; d != 0 {
				r.kernelDrops.Add(uint64(d))
				m.lastOvfl = v
				m.drops += d
			}
		}
	})
	count := uint64(1)
	if l := len(r.batch.Data(i)); seg <= 0 || seg >= l {
		seg = 0
	} else {
		count = uint64((l + seg - 1) / seg)
	}
	if r.batch.Flags(i)&unix.MSG_TRUNC != 0 {
		r.truncated.Add(1) // a run cut short has lost its end: count one
		return netip.AddrPort{}, 0, false
	}
	if ifindex != int32(r.ifi.Index) {
		r.wrongIf.Add(count)
		return netip.AddrPort{}, 0, false
	}
	src := sockaddrInet4(r.batch.Name(i))
	if !r.anySource && src != r.source { // the kernel filter's check, again
		r.wrongSrc.Add(count)
		return netip.AddrPort{}, 0, false
	}
	if seg > 0 {
		r.runCount.Add(1)
		r.coalesced.Add(count)
	}
	return src, seg, true
}

func sockaddrInet4(b []byte) netip.AddrPort {
	if len(b) < unix.SizeofSockaddrInet4 {
		return netip.AddrPort{}
	}
	sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&b[0]))
	if sa.Family != unix.AF_INET {
		return netip.AddrPort{}
	}
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
}

// Stats returns the Receiver's counters.
func (r *Receiver) Stats() ReceiverStats {
	return ReceiverStats{
		Received:       r.received.Load(),
		WrongInterface: r.wrongIf.Load(),
		WrongSource:    r.wrongSrc.Load(),
		Truncated:      r.truncated.Load(),
		KernelDrops:    r.kernelDrops.Load(),
		Coalesced:      r.coalesced.Load(),
		Runs:           r.runCount.Load(),
	}
}

// Close leaves every group and unblocks a pending ReadBatch, which returns
// ErrClosed. It is safe to call more than once.
func (r *Receiver) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.w.Wake()
	r.readMu.Lock() // wait for a ReadBatch in progress to return
	defer r.readMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for g, m := range r.members {
		if !m.attached { // an attached socket is its owner's
			errs = append(errs, unix.Close(m.fd))
		}
		delete(r.members, g)
	}
	clear(r.byFD)
	errs = append(errs, r.w.Close())
	return errors.Join(errs...)
}
