package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// DumpSocket dumps rtnetlink tables over its own netlink socket, apart
// from the multicast one, so that answers never mix with events.
type DumpSocket struct {
	conn  *netlink.Conn
	rc    syscall.RawConn
	buf   []byte
	arena []byte
	ends  []int
	msgs  [][]byte
	seq   uint32
	shut  atomic.Bool // Close has run

	// state of the read callback
	rn   int
	rerr error
}

// OpenDumper opens a NETLINK_ROUTE socket in the network namespace
// netns (zero: the calling thread's).
func OpenDumper(netns int) (*DumpSocket, error) {
	conn, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("netlink: open dump socket: %w", err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	// A dump is flow-controlled (the kernel fills the next part when the
	// previous one is read), so a modest buffer is enough.
	_ = conn.SetReadBuffer(1 << 20)
	return &DumpSocket{conn: conn, rc: rc, buf: make([]byte, 256<<10)}, nil
}

// Dump implements netlinkbridge.Dumper.
func (d *DumpSocket) Dump(req DumpRequest) ([][]byte, bool, error) {
	d.seq++
	body := make([]byte, req.HdrLen)
	body[0] = req.Family
	sent, err := d.conn.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(req.Type), Flags: netlink.Request | netlink.Dump, Sequence: d.seq},
		Data:   body,
	})
	if err != nil {
		return nil, false, fmt.Errorf("netlink: dump request type %d: %w", req.Type, err)
	}
	seq := sent.Header.Sequence
	d.arena, d.ends = d.arena[:0], d.ends[:0]
	interrupted := false
	for {
		n, err := d.read()
		if err != nil {
			return nil, false, fmt.Errorf("netlink: dump type %d: %w", req.Type, err)
		}
		b := d.buf[:n]
		for len(b) > 0 {
			l, ok := messageLen(b)
			if !ok {
				return nil, false, fmt.Errorf("netlink: dump type %d: malformed answer", req.Type)
			}
			m := b[:l]
			b = b[min(align4(l), len(b)):]
			typ := binary.NativeEndian.Uint16(m[4:])
			flags := binary.NativeEndian.Uint16(m[6:])
			if binary.NativeEndian.Uint32(m[8:]) != seq {
				continue // a late answer to an earlier request
			}
			if flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch typ {
			case unix.NLMSG_DONE:
				return d.result(), interrupted, nil
			case unix.NLMSG_ERROR:
				if len(m) >= unix.SizeofNlMsghdr+4 {
					if code := int32(binary.NativeEndian.Uint32(m[unix.SizeofNlMsghdr:])); code != 0 {
						return nil, false, fmt.Errorf("netlink: dump type %d: %w", req.Type, syscall.Errno(-code))
					}
				}
				return d.result(), interrupted, nil
			}
			d.arena = append(d.arena, m...)
			d.ends = append(d.ends, len(d.arena))
		}
	}
}

func (d *DumpSocket) read() (int, error) {
	err := d.rc.Read(func(fd uintptr) bool {
		d.rn, _, d.rerr = unix.Recvfrom(int(fd), d.buf, unix.MSG_DONTWAIT)
		return d.rerr != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	if errors.Is(d.rerr, unix.EINTR) {
		return d.read()
	}
	return d.rn, d.rerr
}

func (d *DumpSocket) result() [][]byte {
	d.msgs = d.msgs[:0]
	start := 0
	for _, end := range d.ends {
		d.msgs = append(d.msgs, d.arena[start:end])
		start = end
	}
	return d.msgs
}

// Close implements netlinkbridge.Dumper. It is safe to call more than
// once: later calls return nil.
func (d *DumpSocket) Close() error {
	if d.shut.Swap(true) {
		return nil
	}
	return d.conn.Close()
}
