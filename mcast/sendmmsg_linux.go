package mcast

import (
	"encoding/binary"
	"net"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// A Sender sends with sendmmsg on its socket's descriptor (sendDirect)
// rather than through ipv4.PacketConn.WriteBatch, which does the same
// system call behind the runtime's poller and x/net's message marshalling.
// At everyday rates, a few events a second, that longer path runs cold:
// it was part of why the bridge's send of one datagram took 7 to 25 us
// longer than a plain relay's sendto on this project's 2-vCPU VM, and
// about 10 us now (timestamps around each send, 120 to 1,200 events per
// run; LATENCY.md, "The send itself"). The socket stays non-blocking and in
// the poller: a send that would block (a full send buffer, on a real
// interface) goes through WriteBatch, which waits in the poller for room.

// mmsgOut holds the headers of a sendmmsg call, reused from call to call so
// that a steady stream of batches allocates nothing.
type mmsgOut struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4
}

// sendmmsg is the system call (Sender.sendmmsg, which tests replace).
func sendmmsg(fd int, hdrs []unix.Mmsghdr) (int, unix.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd),
		uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
	return int(n), errno
}

// sendDirect sends ms with one sendmmsg on s.fd, as s.pc.WriteBatch would:
// it returns how many messages the kernel took, and the error of the call
// when it took none. (It sets no Message.N: WriteBatch's callers read
// none, and a batch sent in runs is not the caller's messages.) done is
// false when sendDirect did not send: a destination that is not an IPv4
// *net.UDPAddr, or a send that would block (EAGAIN); the caller then sends
// through s.pc.
func (s *Sender) sendDirect(ms []ipv4.Message) (n int, err error, done bool) {
	if len(ms) == 0 {
		return 0, nil, true
	}
	if !s.out.fill(ms) {
		s.out.release()
		return 0, nil, false
	}
	raceReadBuffers(ms) // the kernel reads them, as x/net tells the race detector
	s.fdMu.RLock()
	if s.fdClosed {
		s.fdMu.RUnlock()
		s.out.release()
		return 0, net.ErrClosed, true
	}
	n, errno := s.sendmmsg(s.fd, s.out.hdrs)
	s.fdMu.RUnlock()
	runtime.KeepAlive(ms)
	s.out.release()
	switch errno {
	case 0:
		return n, nil, true
	case unix.EAGAIN:
		return 0, nil, false
	}
	return 0, os.NewSyscallError("sendmmsg", errno), true
}

// fill builds the headers of ms: false if a destination is not an IPv4
// *net.UDPAddr.
func (o *mmsgOut) fill(ms []ipv4.Message) bool {
	bufs := 0
	for i := range ms {
		bufs += len(ms[i].Buffers)
	}
	if cap(o.hdrs) < len(ms) {
		o.hdrs = make([]unix.Mmsghdr, len(ms))
		o.names = make([]unix.RawSockaddrInet4, len(ms))
	}
	if cap(o.iovs) < bufs {
		o.iovs = make([]unix.Iovec, bufs)
	}
	o.hdrs, o.names, o.iovs = o.hdrs[:len(ms)], o.names[:len(ms)], o.iovs[:0]
	for i := range ms {
		a, ok := ms[i].Addr.(*net.UDPAddr)
		if !ok {
			return false
		}
		ip := a.IP.To4()
		if ip == nil {
			return false
		}
		sa := &o.names[i]
		sa.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], uint16(a.Port))
		copy(sa.Addr[:], ip)
		h := &o.hdrs[i]
		*h = unix.Mmsghdr{}
		h.Hdr.Name = (*byte)(unsafe.Pointer(sa))
		h.Hdr.Namelen = unix.SizeofSockaddrInet4
		first := len(o.iovs)
		for _, b := range ms[i].Buffers {
			if len(b) == 0 {
				continue
			}
			iov := unix.Iovec{Base: &b[0]}
			iov.SetLen(len(b))
			o.iovs = append(o.iovs, iov) // within capacity: no move
		}
		if n := len(o.iovs) - first; n > 0 {
			h.Hdr.Iov = &o.iovs[first]
			h.Hdr.SetIovlen(n)
		}
		if oob := ms[i].OOB; len(oob) > 0 {
			h.Hdr.Control = &oob[0]
			h.Hdr.SetControllen(len(oob))
		}
	}
	return true
}

// release drops the headers' references to the caller's buffers, which
// the Sender must not keep alive.
func (o *mmsgOut) release() {
	clear(o.hdrs)
	clear(o.iovs)
}
