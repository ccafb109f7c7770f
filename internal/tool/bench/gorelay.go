package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// GoRelayConfig is the Go reference relay's: where it sends, and which
// rtnetlink groups it reads.
type GoRelayConfig struct {
	// Base and Port are where each group's messages go: Base plus the
	// group number, on Port (RelayBase and RelayPort in the bench).
	Base netip.Addr
	Port uint16
	// Groups are the rtnetlink multicast groups to read; at least one.
	Groups []uint32
}

// GoRelay is relay.c written in Go, as plainly: a netlink socket, a
// blocking recvmsg, one sendto per message to a loopback group, no
// framing, no batching, no timers. The reading goroutine is locked to its
// thread and the netlink socket is not in the runtime's poller, so that it
// waits as relay.c does, in recvmsg, and it allocates nothing per
// message (its counters are atomic, for the goroutine that reports them:
// nanoseconds a message against microseconds of system calls). Beside
// relay.c in the latency rows, it measures what Go itself costs a relay
// on this machine, apart from what the bridge does.
//
// ready is called once the groups are joined. GoRelay returns when ctx is
// done, with the messages relayed and the sends that failed. The reading
// goroutine is then still blocked in recvmsg, as relay.c is until its
// signal: the process is to exit.
func GoRelay(ctx context.Context, cfg GoRelayConfig, ready func()) (relayed, failed int64, err error) {
	if !cfg.Base.Is4() || len(cfg.Groups) == 0 {
		return 0, 0, fmt.Errorf("go relay: an IPv4 base and at least one group are needed (got %v, %v)", cfg.Base, cfg.Groups)
	}
	nl, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return 0, 0, os.NewSyscallError("go relay: netlink socket", err)
	}
	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		unix.Close(nl)
		return 0, 0, os.NewSyscallError("go relay: udp socket", err)
	}
	// The reading goroutine may outlive this function (above): it owns
	// the sockets, and closes them if it ever returns.
	if err := relaySetup(nl, udp, cfg.Groups); err != nil {
		unix.Close(nl)
		unix.Close(udp)
		return 0, 0, err
	}
	var sent, lost atomic.Int64
	done := make(chan error, 1)
	go func() {
		defer unix.Close(nl)
		defer unix.Close(udp)
		runtime.LockOSThread()
		done <- relayLoop(nl, udp, cfg.Base.As4(), cfg.Port, &sent, &lost)
	}()
	ready()
	select {
	case <-ctx.Done():
		return sent.Load(), lost.Load(), nil
	case err := <-done:
		return sent.Load(), lost.Load(), err
	}
}

// relaySetup joins groups on the netlink socket nl, asks it for each
// message's group, and points the multicast socket udp at loopback.
func relaySetup(nl, udp int, groups []uint32) error {
	// As relay.c: a buffer the bursts of the bench fit in.
	unix.SetsockoptInt(nl, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	if err := unix.Bind(nl, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return os.NewSyscallError("go relay: bind", err)
	}
	for _, g := range groups {
		if err := unix.SetsockoptInt(nl, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(g)); err != nil {
			return os.NewSyscallError(fmt.Sprintf("go relay: joining group %d", g), err)
		}
	}
	if err := unix.SetsockoptInt(nl, unix.SOL_NETLINK, unix.NETLINK_PKTINFO, 1); err != nil {
		return os.NewSyscallError("go relay: NETLINK_PKTINFO", err)
	}
	if err := unix.SetsockoptByte(udp, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 0); err != nil {
		return os.NewSyscallError("go relay: IP_MULTICAST_TTL", err)
	}
	if err := unix.SetsockoptInet4Addr(udp, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, [4]byte{127, 0, 0, 1}); err != nil {
		return os.NewSyscallError("go relay: IP_MULTICAST_IF", err)
	}
	return nil
}

// relayLoop is relay.c's loop: read a datagram, send each netlink message
// in it to the group's address. It returns only on a read error other
// than EINTR or ENOBUFS (which relay.c also reads past).
func relayLoop(nl, udp int, base [4]byte, port uint16, sent, lost *atomic.Int64) error {
	buf := make([]byte, 1<<16)
	oob := make([]byte, unix.CmsgSpace(4)) // struct nl_pktinfo: the group, a __u32
	to := &unix.SockaddrInet4{Port: int(port)}
	// The message header is built once: unix.Recvmsg would allocate the
	// sender's address for every message, which relay.c does not.
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	var mh unix.Msghdr
	mh.Iov, mh.Iovlen = &iov, 1
	for {
		mh.Control = &oob[0]
		mh.SetControllen(len(oob))
		r, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(nl), uintptr(unsafe.Pointer(&mh)), 0)
		if errno == unix.EINTR || errno == unix.ENOBUFS {
			continue
		}
		if errno != 0 {
			return os.NewSyscallError("go relay: recvmsg", errno)
		}
		n := int(r)
		dst := binary.BigEndian.Uint32(base[:]) + pktGroup(oob[:mh.Controllen])
		binary.BigEndian.PutUint32(to.Addr[:], dst)
		for msg := buf[:n]; len(msg) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(msg))
			if l < unix.NLMSG_HDRLEN || l > len(msg) {
				break
			}
			if unix.Sendto(udp, msg[:l], 0, to) != nil {
				lost.Add(1)
			} else {
				sent.Add(1)
			}
			msg = msg[min(nlmsgAlign(l), len(msg)):]
		}
	}
}

// pktGroup is the group in a NETLINK_PKTINFO control message, or 0.
func pktGroup(oob []byte) uint32 {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if h.Level == unix.SOL_NETLINK && h.Type == unix.NETLINK_PKTINFO && len(data) >= 4 {
			return binary.NativeEndian.Uint32(data)
		}
		oob = rest
	}
	return 0
}

func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
