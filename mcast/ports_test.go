package mcast

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

// TestWhyNotASocketFilter: a socket filter (SO_ATTACH_FILTER) would drop
// others' datagrams in the kernel too, but Linux counts what it drops as
// the socket's drops, which the receiver reads (SO_RXQ_OVFL) as its buffer
// overflowing. A connected socket, the Receiver's kernel filter, drops
// nothing of its own.
func TestWhyNotASocketFilter(t *testing.T) {
	g := randomGroups(1)[0]
	right, other := unprivSender(t), unprivSender(t)
	src := netip.AddrPortFrom(LoopbackSource, right.Source().Port())
	connected := receiverFor(t, &ReceiverConfig{Source: src}, g)
	filtered := receiverFor(t, &ReceiverConfig{Source: src, NoKernelFilter: true}, g)
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 2}, // the UDP source port
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(src.Port()), SkipFalse: 1},
		bpf.RetConstant{Val: 0xffffffff},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(filtered.members[g].fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		t.Fatalf("SO_ATTACH_FILTER: %v", err)
	}
	for range 3 {
		send(t, other, g, "forged")
	}
	send(t, right, g, "real")
	for _, c := range []struct {
		name  string
		r     *Receiver
		drops uint64
	}{{"connected", connected, 0}, {"socket filter", filtered, 3}} {
		if got := readAll(t, c.r, 1); got[0] != g.String()+" real" {
			t.Fatalf("%s: got %v", c.name, got)
		}
		if st := c.r.Stats(); st.KernelDrops != c.drops || st.WrongSource != 0 {
			t.Errorf("%s: %+v, want %d kernel drops and no wrong source", c.name, st, c.drops)
		}
	}
}

// TestUnprivilegedPortStart reads the setting of the calling thread's
// namespace: a new namespace's own (1024, whatever the host's), then what
// was set there, while the host's stays as it was.
func TestUnprivilegedPortStart(t *testing.T) {
	host, err := UnprivilegedPortStart()
	if err != nil {
		t.Fatal(err)
	}
	testenv.InNewNetNS(t, func() error {
		if n, err := UnprivilegedPortStart(); n != 1024 || err != nil {
			return fmt.Errorf("in a new namespace: %d, %v; want 1024", n, err)
		}
		if err := testenv.SetPortStart(0); err != nil {
			return err
		}
		if n, err := UnprivilegedPortStart(); n != 0 || err != nil {
			return fmt.Errorf("set to 0: %d, %v", n, err)
		}
		return nil
	})
	if n, err := UnprivilegedPortStart(); n != host || err != nil {
		t.Errorf("the host's: %d, %v; it was %d", n, err, host)
	}
}

// TestSenderPortCannotBeShared: while a Sender holds its port, no other
// socket can bind it, not even one of another user with SO_REUSEADDR and
// SO_REUSEPORT, in a namespace where every user may bind every port: the
// Sender sets neither option. Once it is closed, that user can.
func TestSenderPortCannotBeShared(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		if err := testenv.SetPortStart(0); err != nil {
			return err
		}
		s, err := NewSender(nil)
		if err != nil {
			return err
		}
		defer s.Close()
		if want := netip.MustParseAddrPort("127.0.0.1:1021"); s.Source() != want {
			return fmt.Errorf("sender's source %v, want %v", s.Source(), want)
		}
		rc, err := s.conn.SyscallConn()
		if err != nil {
			return err
		}
		var opts [2]int
		rc.Control(func(fd uintptr) {
			opts[0], _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR)
			opts[1], _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT)
		})
		if opts != [2]int{} {
			return fmt.Errorf("the sender's socket has SO_REUSEADDR %d, SO_REUSEPORT %d; want neither", opts[0], opts[1])
		}
		// From here on this thread is uid 65534 (the thread is never
		// reused; raw system calls change only its own credentials).
		if err := testenv.BecomeNobody(); err != nil {
			return err
		}
		if err := bindAsNobody(); !errors.Is(err, unix.EADDRINUSE) {
			return fmt.Errorf("uid %d bound 127.0.0.1:1021 beside the sender: %v; want EADDRINUSE", unix.Getuid(), err)
		}
		s.Close()
		if err := bindAsNobody(); err != nil {
			return fmt.Errorf("uid %d, port start 0, the sender closed: bind 127.0.0.1:1021: %v", unix.Getuid(), err)
		}
		return nil
	})
}

// bindAsNobody binds a UDP socket with SO_REUSEADDR and SO_REUSEPORT to
// 127.0.0.1:1021, as an attacker would to share the Sender's port.
func bindAsNobody() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, o := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o, 1); err != nil {
			return err
		}
	}
	return unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: DefaultSourcePort})
}
