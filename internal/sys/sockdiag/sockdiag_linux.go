package sockdiag

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is a NETLINK_SOCK_DIAG socket, in the network namespace of the
// thread that opened it. Its methods may be called from any goroutine, one
// at a time (they hold a lock); each blocks until the kernel answers, which
// it does at once.
type Conn struct {
	mu   sync.Mutex
	fd   int
	seq  uint32
	buf  []byte
	done bool
}

// Open opens a sock_diag socket. The caller closes it with Close.
func Open() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sockdiag: socket: %w", err)
	}
	// The kernel answers at once; the timeout only keeps a caller from
	// hanging on a kernel that does not.
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sockdiag: SO_RCVTIMEO: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sockdiag: bind: %w", err)
	}
	return &Conn{fd: fd, buf: make([]byte, 64<<10)}, nil
}

// Close closes the socket. A second call returns nil.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil
	}
	c.done = true
	return unix.Close(c.fd)
}

// Filter selects sockets in the kernel; a zero field matches any.
type Filter struct {
	LocalPort  uint16
	RemotePort uint16
}

// List returns the IPv4 UDP sockets of the namespace that match f, with
// their memory counters (Socket.HasMem). It works unprivileged.
func (c *Conn) List(f Filter) ([]Socket, error) {
	return c.list(f, nil)
}

func (c *Conn) list(f Filter, out []Socket) ([]Socket, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil, unix.EBADF
	}
	c.seq++
	req := request(sockDiagByFam, nlmFRequest|nlmFDump, c.seq, extSkMeminfo, &Socket{
		Local:  netip.AddrPortFrom(netip.IPv4Unspecified(), f.LocalPort),
		Remote: netip.AddrPortFrom(netip.IPv4Unspecified(), f.RemotePort),
		Cookie: ^uint64(0), // INET_DIAG_NOCOOKIE
	})
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sockdiag: send: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			return nil, fmt.Errorf("sockdiag: receive: %w", err)
		}
		var done bool
		out, done, err = ParseDump(c.buf[:n], c.seq, out)
		if err != nil {
			return nil, fmt.Errorf("sockdiag: dump: %w", err)
		}
		if done {
			return out, nil
		}
	}
}

// Destroy asks the kernel to destroy s with SOCK_DESTROY (s as List
// returned it: its addresses, interface and cookie name it). It needs
// CAP_NET_ADMIN. The kernel answers ENOENT when the socket is gone, or
// when its lookup by addresses finds another socket bound to the same
// address and port first; see the package documentation for what a
// destroyed UDP socket still does.
func (c *Conn) Destroy(s Socket) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return unix.EBADF
	}
	c.seq++
	req := request(sockDestroy, nlmFRequest|nlmFAck, c.seq, 0, &s)
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sockdiag: send: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			return fmt.Errorf("sockdiag: receive: %w", err)
		}
		b := c.buf[:n]
		for len(b) >= nlmsgHdrLen {
			l := int(nativeUint32(b[0:4]))
			if l < nlmsgHdrLen || l > len(b) {
				return fmt.Errorf("sockdiag: destroy: %w", ErrMalformed)
			}
			if nativeUint16(b[4:6]) == nlmsgError && nativeUint32(b[8:12]) == c.seq {
				if err := parseError(b[nlmsgHdrLen:l]); err != nil {
					return fmt.Errorf("sockdiag: destroy %s inode %d: %w", s.Local, s.Inode, err)
				}
				return nil
			}
			b = b[min(align4(l), len(b)):]
		}
	}
}

// List returns the IPv4 UDP sockets that match f, in the calling thread's
// network namespace. It works unprivileged.
func List(f Filter) ([]Socket, error) {
	c, err := Open()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.List(f)
}

// Owners returns the owner uids of the IPv4 UDP sockets that could send
// from ap, in the calling thread's network namespace, each uid once in
// increasing order: those bound to ap's port on ap's address or on the
// wildcard address 0.0.0.0 (ap's address may itself be 0.0.0.0: then any
// local address matches). A receiver asks it to learn who holds the
// bridge's source address: the kernel attests the uid, which a datagram
// cannot forge. It works unprivileged: sock_diag shows every socket of the
// namespace, with its uid, to every user.
func Owners(ap netip.AddrPort) ([]uint32, error) {
	c, err := Open()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Owners(ap)
}

// Owners is the function Owners on c, in c's network namespace (the one
// Open was called in), whatever the calling thread's.
func (c *Conn) Owners(ap netip.AddrPort) ([]uint32, error) {
	ss, err := c.List(Filter{LocalPort: ap.Port()})
	if err != nil {
		return nil, err
	}
	return ownersOf(ss, ap), nil
}

func ownersOf(ss []Socket, ap netip.AddrPort) []uint32 {
	var uids []uint32
	for _, s := range ss {
		if s.Local.Port() != ap.Port() {
			continue
		}
		a := s.Local.Addr()
		if a.IsUnspecified() || ap.Addr().Unmap().IsUnspecified() || a == ap.Addr().Unmap() {
			uids = append(uids, s.UID)
		}
	}
	slices.Sort(uids)
	return slices.Compact(uids)
}
