package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// Socket is what sock_diag tells of one IPv4 UDP socket.
type Socket struct {
	Local, Remote netip.AddrPort // Remote is 0.0.0.0:0 unless connected
	Interface     uint32         // bound interface index (SO_BINDTODEVICE); 0: none
	State         uint8          // TCP state numbers: 7 (CLOSE) unconnected, 1 (ESTABLISHED) connected
	UID           uint32         // owner (the creator's effective uid)
	Inode         uint32         // socket inode, as in /proc/PID/fd links "socket:[INODE]"
	Cookie        uint64         // the kernel's id of the socket, unique while it lives
	RecvQueue     uint32         // bytes waiting to be read
	// From INET_DIAG_SKMEMINFO, valid when HasMem is set:
	HasMem    bool
	RmemAlloc uint32 // receive memory charged (queued datagrams and their overhead)
	Rcvbuf    uint32 // receive buffer limit (SO_RCVBUF); datagrams are dropped beyond it
	Drops     uint32 // datagrams dropped, mostly for a full queue (SK_MEMINFO_DROPS)
}

// Full reports whether the socket's receive memory is near its limit: half
// of it or more. A socket that keeps up with its datagrams does not sit
// there. (Half, not more: the kernel charges a datagram's whole buffer, and
// with a small SO_RCVBUF a queue that drops everything can be at two
// thirds of it.)
func (s *Socket) Full() bool {
	return s.HasMem && s.Rcvbuf > 0 && uint64(s.RmemAlloc)*2 >= uint64(s.Rcvbuf)
}

// Wire constants (linux/netlink.h, linux/inet_diag.h, linux/sock_diag.h).
const (
	nlmsgHdrLen     = 16
	nlmsgError      = 2
	nlmsgDone       = 3
	sockDiagByFam   = 20 // SOCK_DIAG_BY_FAMILY
	sockDestroy     = 21 // SOCK_DESTROY
	diagMsgLen      = 72 // struct inet_diag_msg
	diagReqLen      = 56 // struct inet_diag_req_v2
	attrSkMeminfo   = 7  // INET_DIAG_SKMEMINFO
	meminfoRmem     = 0  // SK_MEMINFO_RMEM_ALLOC
	meminfoRcvbuf   = 1  // SK_MEMINFO_RCVBUF
	meminfoDrops    = 8  // SK_MEMINFO_DROPS
	afInet          = 2
	ipprotoUDP      = 17
	allStates       = 0xffffffff
	extSkMeminfo    = 1 << (attrSkMeminfo - 1)
	nlmFRequest     = 0x1
	nlmFAck         = 0x4
	nlmFDump        = 0x300
	nlmFMulti       = 0x2
	ifaceSockIDOffs = 4 + 4 + 16 + 16 // in inet_diag_msg: family..retrans, ports, src, dst
)

// ErrMalformed is wrapped by ParseDump for bytes that are not a sock_diag
// answer.
var ErrMalformed = errors.New("sockdiag: malformed answer")

// ParseDump decodes netlink messages of a SOCK_DIAG_BY_FAMILY answer to
// request seq, appending the sockets to out. done reports NLMSG_DONE.
// Messages of other sequence numbers are skipped; an NLMSG_ERROR message
// is returned as a syscall.Errno. It is a pure function of its bytes.
func ParseDump(b []byte, seq uint32, out []Socket) (_ []Socket, done bool, err error) {
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return out, false, fmt.Errorf("%w: %d bytes left, short of a message header", ErrMalformed, len(b))
		}
		n := int(binary.NativeEndian.Uint32(b[0:4]))
		typ := binary.NativeEndian.Uint16(b[4:6])
		mseq := binary.NativeEndian.Uint32(b[8:12])
		if n < nlmsgHdrLen || n > len(b) {
			return out, false, fmt.Errorf("%w: message length %d of %d bytes", ErrMalformed, n, len(b))
		}
		body := b[nlmsgHdrLen:n]
		b = b[min(align4(n), len(b)):]
		if mseq != seq {
			continue
		}
		switch typ {
		case nlmsgDone:
			return out, true, nil
		case nlmsgError:
			if err := parseError(body); err != nil {
				return out, false, err
			}
		case sockDiagByFam:
			s, err := ParseSocket(body)
			if err != nil {
				return out, false, err
			}
			out = append(out, s)
		}
	}
	return out, false, nil
}

// parseError returns the errno of an NLMSG_ERROR body, nil for an ack.
func parseError(body []byte) error {
	if len(body) < 4 {
		return fmt.Errorf("%w: error message of %d bytes", ErrMalformed, len(body))
	}
	if e := int32(binary.NativeEndian.Uint32(body)); e != 0 {
		return syscall.Errno(-e)
	}
	return nil
}

// ParseSocket decodes one struct inet_diag_msg and its attributes.
func ParseSocket(b []byte) (Socket, error) {
	var s Socket
	if len(b) < diagMsgLen {
		return s, fmt.Errorf("%w: inet_diag_msg of %d bytes, want %d", ErrMalformed, len(b), diagMsgLen)
	}
	if b[0] != afInet {
		return s, fmt.Errorf("%w: address family %d, want AF_INET", ErrMalformed, b[0])
	}
	s.State = b[1]
	id := b[4:]
	s.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(id[4:8])), binary.BigEndian.Uint16(id[0:2]))
	s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(id[20:24])), binary.BigEndian.Uint16(id[2:4]))
	s.Interface = binary.NativeEndian.Uint32(id[36:40])
	s.Cookie = uint64(binary.NativeEndian.Uint32(id[40:44])) | uint64(binary.NativeEndian.Uint32(id[44:48]))<<32
	rest := b[52:]
	s.RecvQueue = binary.NativeEndian.Uint32(rest[4:8])
	s.UID = binary.NativeEndian.Uint32(rest[12:16])
	s.Inode = binary.NativeEndian.Uint32(rest[16:20])
	attrs := b[diagMsgLen:]
	for len(attrs) >= 4 {
		n := int(binary.NativeEndian.Uint16(attrs[0:2]))
		typ := binary.NativeEndian.Uint16(attrs[2:4]) & 0x3fff // without NLA_F_NESTED, NLA_F_NET_BYTEORDER
		if n < 4 || n > len(attrs) {
			return s, fmt.Errorf("%w: attribute length %d of %d bytes", ErrMalformed, n, len(attrs))
		}
		if typ == attrSkMeminfo {
			v := attrs[4:n]
			if len(v) < 4*(meminfoDrops+1) {
				return s, fmt.Errorf("%w: INET_DIAG_SKMEMINFO of %d bytes", ErrMalformed, len(v))
			}
			word := func(i int) uint32 { return binary.NativeEndian.Uint32(v[4*i:]) }
			s.HasMem, s.RmemAlloc, s.Rcvbuf, s.Drops = true, word(meminfoRmem), word(meminfoRcvbuf), word(meminfoDrops)
		}
		attrs = attrs[min(align4(n), len(attrs)):]
	}
	return s, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

// request returns a netlink message of type typ carrying an
// inet_diag_req_v2 for IPv4 UDP sockets matching id.
func request(typ, flags uint16, seq uint32, ext uint8, s *Socket) []byte {
	b := make([]byte, nlmsgHdrLen+diagReqLen)
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], typ)
	binary.NativeEndian.PutUint16(b[6:8], flags)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	r := b[nlmsgHdrLen:]
	r[0], r[1], r[2] = afInet, ipprotoUDP, ext
	binary.NativeEndian.PutUint32(r[4:8], allStates)
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:2], s.Local.Port())
	binary.BigEndian.PutUint16(id[2:4], s.Remote.Port())
	if s.Local.Addr().Is4() {
		a := s.Local.Addr().As4()
		copy(id[4:8], a[:])
	}
	if s.Remote.Addr().Is4() {
		a := s.Remote.Addr().As4()
		copy(id[20:24], a[:])
	}
	binary.NativeEndian.PutUint32(id[36:40], s.Interface)
	binary.NativeEndian.PutUint32(id[40:44], uint32(s.Cookie))
	binary.NativeEndian.PutUint32(id[44:48], uint32(s.Cookie>>32))
	return b
}

func nativeUint32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }
func nativeUint16(b []byte) uint16 { return binary.NativeEndian.Uint16(b) }
