package mmsg

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batch holds the buffers of one recvmmsg call. It is not safe for
// concurrent use.
type Batch struct {
	hdrs    []unix.Mmsghdr
	iovs    []unix.Iovec
	data    [][]byte
	names   []byte
	oobs    []byte
	nameLen int
	oobLen  int
	bufSize int
	spill   []byte // shared second iovec of every slot; nil: none
	spilled int    // last slot whose datagram ran into spill; -1: none
}

// New returns a batch of slots, each with a bufSize data buffer, a nameLen
// address buffer and an oobLen control buffer.
func New(slots, bufSize, nameLen, oobLen int) *Batch {
	return NewSpill(slots, bufSize, 0, nameLen, oobLen)
}

// NewSpill is New with a spill buffer of spill bytes shared by every slot
// as a second iovec, so that one datagram per call larger than a slot still
// arrives whole (see Spilled and Whole) without every slot being that large.
// Earlier datagrams of the same call that spilled are overwritten by later
// ones: Whole reports them as lost.
func NewSpill(slots, bufSize, spill, nameLen, oobLen int) *Batch {
	iovPer := 1
	if spill > 0 {
		iovPer = 2
	}
	b := &Batch{
		bufSize: bufSize,
		spilled: -1,
		hdrs:    make([]unix.Mmsghdr, slots),
		iovs:    make([]unix.Iovec, slots*iovPer),
		data:    make([][]byte, slots),
		names:   make([]byte, slots*nameLen),
		oobs:    make([]byte, slots*oobLen),
		nameLen: nameLen,
		oobLen:  oobLen,
	}
	if spill > 0 {
		b.spill = make([]byte, spill)
	}
	for i := range b.hdrs {
		b.data[i] = make([]byte, bufSize)
		iov := b.iovs[i*iovPer : (i+1)*iovPer]
		iov[0].Base = &b.data[i][0]
		iov[0].SetLen(bufSize)
		if spill > 0 {
			iov[1].Base = &b.spill[0]
			iov[1].SetLen(spill)
		}
		h := &b.hdrs[i].Hdr
		h.Iov = &iov[0]
		h.SetIovlen(iovPer)
		if nameLen > 0 {
			h.Name = &b.names[i*nameLen]
		}
		if oobLen > 0 {
			h.Control = &b.oobs[i*oobLen]
		}
	}
	return b
}

// Len returns the number of slots.
func (b *Batch) Len() int { return len(b.hdrs) }

// Data returns the datagram received into slot i, or its first part if it
// spilled (see Spilled).
func (b *Batch) Data(i int) []byte { return b.data[i][:min(int(b.hdrs[i].Len), b.bufSize)] }

// Spilled reports whether slot i's datagram was larger than a slot.
func (b *Batch) Spilled(i int) bool { return int(b.hdrs[i].Len) > b.bufSize }

// Intact reports whether slot i's datagram can be read whole: it did not
// spill, or it is the last one of its call that did.
func (b *Batch) Intact(i int) bool { return !b.Spilled(i) || i == b.spilled }

// Whole appends the whole datagram of a spilled slot i to dst. It returns
// false if a later datagram of the same call spilled over it.
func (b *Batch) Whole(dst []byte, i int) ([]byte, bool) {
	if i != b.spilled {
		return dst, false
	}
	dst = append(dst, b.data[i]...)
	return append(dst, b.spill[:int(b.hdrs[i].Len)-b.bufSize]...), true
}

// Name returns the source address (a raw sockaddr) of slot i.
func (b *Batch) Name(i int) []byte {
	return b.names[i*b.nameLen : i*b.nameLen+int(b.hdrs[i].Hdr.Namelen)]
}

// OOB returns the control messages of slot i.
func (b *Batch) OOB(i int) []byte {
	return b.oobs[i*b.oobLen : i*b.oobLen+int(b.hdrs[i].Hdr.Controllen)]
}

// Flags returns the message flags of slot i (MSG_TRUNC, MSG_CTRUNC, ...).
func (b *Batch) Flags(i int) int { return int(b.hdrs[i].Hdr.Flags) }

// reset prepares slots [start, start+count) for a call.
func (b *Batch) reset(start, count int) {
	for i := start; i < start+count; i++ {
		h := &b.hdrs[i]
		h.Len = 0
		h.Hdr.Namelen = uint32(b.nameLen)
		h.Hdr.SetControllen(b.oobLen)
		h.Hdr.Flags = 0
	}
}

// RecvFd fills slots [start, start+count) from fd with one recvmmsg call
// and returns how many datagrams it received. With MSG_DONTWAIT in flags and
// nothing queued it returns 0 and unix.EAGAIN.
//
// A signal that interrupts a wait before anything came ends it with
// unix.EINTR, which RecvFd returns rather than waiting again: the kernel
// restarts no wait bounded by SO_RCVTIMEO, and a new call would count that
// timeout afresh from the signal, so the caller, which knows its deadline,
// decides how long to wait next (the Go runtime sends its threads SIGURG
// to preempt them, often enough to postpone a deadline indefinitely).
func (b *Batch) RecvFd(fd int, start, count, flags int) (int, error) {
	if count <= 0 {
		return 0, nil
	}
	b.reset(start, count)
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd),
		uintptr(unsafe.Pointer(&b.hdrs[start])), uintptr(count), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	b.spilled = -1
	if b.spill != nil {
		for i := start; i < start+int(n); i++ {
			if b.Spilled(i) {
				b.spilled = i
			}
		}
	}
	return int(n), nil
}

// Cmsgs iterates over the control messages in oob, calling fn with each
// one's level, type and data. It stops at the first malformed header.
func Cmsgs(oob []byte, fn func(level, typ int32, data []byte)) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return
		}
		fn(h.Level, h.Type, oob[unix.CmsgLen(0):l])
		space := unix.CmsgSpace(l - unix.CmsgLen(0))
		if space > len(oob) {
			return
		}
		oob = oob[space:]
	}
}
