package mcast

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// SenderStats counts what a Sender did.
type SenderStats struct {
	Sent    uint64 // datagrams handed to the kernel
	Retries uint64 // transient send errors (ENOBUFS, EAGAIN) retried
	Dropped uint64 // datagrams given up on after retries
	// Segmented counts the datagrams sent in UDP_SEGMENT runs, Runs the
	// sends they took.
	Segmented, Runs uint64
}

// A Sender sends datagrams to multicast groups. WriteBatch may be called from
// one goroutine at a time; Close and Stats from any.
type Sender struct {
	conn   *net.UDPConn
	pc     *ipv4.PacketConn // setup, and the sends sendDirect leaves (would block, not IPv4)
	source netip.AddrPort
	seg    segmenter // zero: segmentation off
	out    mmsgOut   // sendDirect's headers
	closed atomic.Bool

	// fd is conn's descriptor, which sendDirect uses while it holds fdMu
	// for reading; Close sets fdClosed holding it for writing, so that no
	// send reaches a descriptor number the process has reused.
	fd       int
	fdMu     sync.RWMutex
	fdClosed bool
	sendmmsg func(fd int, hdrs []unix.Mmsghdr) (int, unix.Errno)

	sent, retries, dropped, segmented, runs atomic.Uint64
}

// Send retry policy for transient errors.
const (
	sendRetries    = 5
	sendRetryDelay = 200 * time.Microsecond
)

// NewSender opens a sending socket.
func NewSender(cfg *SenderConfig) (*Sender, error) {
	if cfg == nil {
		cfg = &SenderConfig{}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ifi, err := lookupInterface(cfg.Interface, cfg.AllowNonLoopback)
	if err != nil {
		return nil, err
	}
	src := cfg.Source
	addr := src.Addr()
	if !addr.IsValid() {
		addr = netip.IPv4Unspecified()
		if ifi.Flags&net.FlagLoopback != 0 {
			addr = LoopbackSource
		}
	}
	port := src.Port()
	if port == 0 && !cfg.EphemeralPort {
		port = DefaultSourcePort
	}
	src = netip.AddrPortFrom(addr, port)

	// Neither SO_REUSEADDR nor SO_REUSEPORT: while the Sender holds its
	// source, no other socket of any user can bind it, so receivers that
	// check the source know who sent (where the port is privileged).
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if cfg.WriteBuffer > 0 {
				serr = setBuffer(int(fd), unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, cfg.WriteBuffer)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(context.Background(), "udp4", src.String())
	if err != nil {
		return nil, sourceError(src, err)
	}
	conn := c.(*net.UDPConn)
	pc := ipv4.NewPacketConn(conn)
	fail := func(what string, err error) (*Sender, error) {
		conn.Close()
		return nil, fmt.Errorf("mcast: sender: %s: %w", what, err)
	}
	if err := pc.SetMulticastInterface(ifi); err != nil {
		return fail("set multicast interface "+ifi.Name, err)
	}
	if err := pc.SetMulticastTTL(cfg.TTL); err != nil {
		return fail("set multicast TTL", err)
	}
	if err := pc.SetMulticastLoopback(true); err != nil {
		return fail("enable multicast loopback", err)
	}
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		src = netip.AddrPortFrom(addr, uint16(la.Port))
	}
	snd := &Sender{conn: conn, pc: pc, source: src, sendmmsg: sendmmsg}
	rc, err := conn.SyscallConn()
	if err != nil {
		return fail("descriptor", err)
	}
	if err := rc.Control(func(fd uintptr) { snd.fd = int(fd) }); err != nil {
		return fail("descriptor", err)
	}
	snd.seg.on, snd.seg.max = !cfg.NoSegmentation, maxRun
	return snd, nil
}

func sourceError(src netip.AddrPort, err error) error {
	switch {
	case errors.Is(err, unix.EACCES) && src.Port() < 1024:
		return fmt.Errorf("mcast: sender: binding privileged source port %s needs root or CAP_NET_BIND_SERVICE "+
			"(run as root; a port any user may bind proves nothing to receivers, which refuse it unless told to take the risk): %w", src, err)
	case errors.Is(err, unix.EADDRINUSE):
		return fmt.Errorf("mcast: sender: source %s is in use: is another bridge already running in this network namespace? %w", src, err)
	}
	return fmt.Errorf("mcast: sender: bind %s: %w", src, err)
}

// Send sends one datagram to dst.
func (s *Sender) Send(b []byte, dst netip.AddrPort) error {
	ms := []ipv4.Message{{Buffers: [][]byte{b}, Addr: net.UDPAddrFromAddrPort(dst)}}
	return s.WriteBatch(ms)
}

// Source returns the address and port datagrams are sent from.
func (s *Sender) Source() netip.AddrPort { return s.source }

// WriteBatch sends every message in ms (each with Addr set to its group, a
// *net.UDPAddr, and Buffers holding the datagram) with as few sendmmsg calls
// as the kernel allows. Transient errors are retried with a short bounded
// backoff; a message still failing after that is counted as dropped and
// skipped, and the first such error is returned after the rest are sent.
// It allocates nothing.
func (s *Sender) WriteBatch(ms []ipv4.Message) error {
	if s.seg.on && len(ms) > 1 {
		return s.writeSegmented(ms)
	}
	return s.writePlain(ms)
}

// writePlain sends each message as one datagram.
func (s *Sender) writePlain(ms []ipv4.Message) error { return s.write(ms, nil, ms) }

// write sends out, whose message i carries count[i] of the caller's
// datagrams orig (one each when count is nil), retrying transient errors
// and skipping a message that still fails. A run the kernel refuses
// outright (EINVAL, EIO, EOPNOTSUPP) is sent again in runs of the older
// limit if it was longer, else segmentation is off for good (none on this
// path) and the rest is sent one datagram at a time.
func (s *Sender) write(out []ipv4.Message, count []int, orig []ipv4.Message) error {
	holds := func(i int) int {
		if count == nil {
			return 1
		}
		return count[i]
	}
	advance := func(n int) {
		out = out[n:]
		if count != nil {
			count = count[n:]
		}
	}
	var firstErr error
	retries := 0
	for len(out) > 0 {
		n, err, done := s.sendDirect(out)
		if !done {
			n, err = s.pc.WriteBatch(out, 0)
		}
		sent, segmented, runs := 0, 0, 0
		for i := range n {
			c := holds(i)
			sent += c
			if c > 1 {
				segmented, runs = segmented+c, runs+1
			}
		}
		if n > 0 {
			s.sent.Add(uint64(sent))
			if runs > 0 {
				s.segmented.Add(uint64(segmented))
				s.runs.Add(uint64(runs))
			}
			orig = orig[sent:]
			advance(n)
			retries = 0
		}
		if err == nil {
			if n > 0 {
				continue
			}
			err = io.ErrShortWrite // no progress and no error: do not spin
		}
		if errors.Is(err, net.ErrClosed) {
			return ErrClosed
		}
		if transient(err) && retries < sendRetries {
			retries++
			s.retries.Add(1)
			time.Sleep(sendRetryDelay << retries)
			continue
		}
		c := holds(0)
		if c > 1 && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIO) || errors.Is(err, unix.EOPNOTSUPP)) {
			if c > oldMaxRun {
				s.seg.max = oldMaxRun
				return errors.Join(firstErr, s.writeRuns(orig))
			}
			s.seg.on = false
			return errors.Join(firstErr, s.write(orig, nil, orig))
		}
		// Give up on the first message and go on with the rest.
		s.dropped.Add(uint64(c))
		if firstErr == nil {
			firstErr = fmt.Errorf("mcast: send to %v: %w", out[0].Addr, err)
		}
		orig = orig[c:]
		advance(1)
		retries = 0
	}
	return firstErr
}

func transient(err error) bool {
	return errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ENOMEM)
}

// Stats returns the Sender's counters.
func (s *Sender) Stats() SenderStats {
	return SenderStats{Sent: s.sent.Load(), Retries: s.retries.Load(), Dropped: s.dropped.Load(),
		Segmented: s.segmented.Load(), Runs: s.runs.Load()}
}

// Close closes the socket. It is safe to call more than once: later calls
// return nil.
func (s *Sender) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.fdMu.Lock()
	s.fdClosed = true
	s.fdMu.Unlock()
	return s.conn.Close()
}

// setBuffer sets a socket buffer size, trying the privileged option (which
// may exceed the system maximum) first and falling back to the plain one.
func setBuffer(fd, force, plain, size int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size); err == nil {
		return nil
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size)
}
