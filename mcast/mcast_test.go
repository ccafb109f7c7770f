package mcast

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

// Tests send only on the host's loopback interface, to random groups in
// 239.255.0.0/16 so that parallel runs do not meet.

func randomGroups(n int) []netip.AddrPort {
	base := rand.IntN(200) + 20
	port := uint16(30000 + rand.IntN(20000))
	out := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{239, 255, byte(base), byte(i + 1)}), port+uint16(i))
	}
	return out
}

// unprivSender sends from an unprivileged port, so no root is needed.
func unprivSender(t testing.TB) *Sender {
	t.Helper()
	s, err := NewSender(&SenderConfig{Source: netip.AddrPortFrom(netip.Addr{}, uint16(50000+rand.IntN(10000)))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func receiverFor(t *testing.T, cfg *ReceiverConfig, groups ...netip.AddrPort) *Receiver {
	t.Helper()
	r, err := NewReceiver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	for _, g := range groups {
		if err := r.Join(g); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func send(t *testing.T, s *Sender, g netip.AddrPort, payloads ...string) {
	t.Helper()
	ms := make([]ipv4.Message, len(payloads))
	for i, p := range payloads {
		ms[i] = ipv4.Message{Buffers: [][]byte{[]byte(p)}, Addr: net.UDPAddrFromAddrPort(g)}
	}
	if err := s.WriteBatch(ms); err != nil {
		t.Fatal(err)
	}
}

// readAll reads until n datagrams arrived or the deadline passes.
func readAll(t *testing.T, r *Receiver, n int) []string {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(3 * time.Second))
	ds := make([]Datagram, 16)
	var out []string
	for len(out) < n {
		k, err := r.ReadBatch(ds)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(out), n, err)
		}
		for _, d := range ds[:k] {
			out = append(out, fmt.Sprintf("%s %s", d.Group, d.Data))
		}
	}
	return out
}

func TestEveryReceiverGetsACopy(t *testing.T) {
	g := randomGroups(1)[0]
	s := unprivSender(t)
	any := &ReceiverConfig{AnySource: true}
	rs := []*Receiver{receiverFor(t, any, g), receiverFor(t, any, g), receiverFor(t, any, g)}
	send(t, s, g, "one", "two", "three")
	for i, r := range rs {
		got := readAll(t, r, 3)
		want := []string{g.String() + " one", g.String() + " two", g.String() + " three"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("receiver %d got %v", i, got)
		}
		if r.ReadBuffer() <= 0 {
			t.Errorf("receiver %d reports no buffer size", i)
		}
	}
}

func TestMoreGroupsThanOneSocketCanJoin(t *testing.T) {
	groups := randomGroups(30) // above igmp_max_memberships (20)
	s := unprivSender(t)
	r := receiverFor(t, &ReceiverConfig{AnySource: true}, groups...)
	for _, g := range groups {
		send(t, s, g, "x")
	}
	if got := readAll(t, r, len(groups)); len(got) != len(groups) {
		t.Fatalf("got %d datagrams", len(got))
	}
}

// A Receiver accepts only its Source, address and port. The kernel filter
// drops the rest before it is queued, so that the receiver never reads it
// (WrongSource stays 0); without the filter the receiver drops and counts
// it itself. Either way the Source's datagrams arrive, in runs coalesced
// with UDP_GRO (the default) as well as one by one.
func TestOnlyTheSourceIsAccepted(t *testing.T) {
	g := randomGroups(1)[0]
	right := unprivSender(t)
	port := right.Source().Port()
	other := unprivSender(t) // 127.0.0.1, another port
	otherAddr, err := NewSender(&SenderConfig{Source: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 2}), port)})
	if err != nil {
		t.Fatal(err)
	}
	defer otherAddr.Close()
	src := netip.AddrPortFrom(LoopbackSource, port)
	type rcv struct {
		name string
		r    *Receiver
		want []string // what it reads, in order
		// wrong is the WrongSource count: what got past the kernel to it.
		wrong uint64
	}
	var rcvs []rcv
	real := []string{"real-1", "real-2", "real-3", "real-4", "real-5", "end"}
	forged := []string{"forged-p", "forged-p", "forged-p", "forged-p", "forged-a", "forged-a", "forged-a", "forged-a"}
	for _, c := range []struct {
		name string
		cfg  ReceiverConfig
		want []string
	}{
		{"filtered, coalesced", ReceiverConfig{Source: src}, real},
		{"filtered, one by one", ReceiverConfig{Source: src, NoCoalesce: true}, real},
		{"unfiltered", ReceiverConfig{Source: src, NoKernelFilter: true}, real},
		{"any source", ReceiverConfig{AnySource: true}, append(slices.Clone(forged), real...)},
	} {
		w := uint64(0)
		if c.cfg.NoKernelFilter {
			w = uint64(len(forged))
		}
		rcvs = append(rcvs, rcv{c.name, receiverFor(t, &c.cfg, g), c.want, w})
	}
	// Each sender's datagrams are of one size: runs (UDP_SEGMENT), which
	// coalescing receivers get whole.
	send(t, other, g, forged[:4]...)
	send(t, otherAddr, g, forged[4:]...)
	send(t, right, g, real[:5]...)
	send(t, right, g, real[5:]...) // last: once it is read, everything sent before was filtered or queued
	for _, c := range rcvs {
		got := readAll(t, c.r, len(c.want))
		for i := range got {
			got[i] = strings.TrimPrefix(got[i], g.String()+" ")
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
		st := c.r.Stats()
		if st.WrongSource != c.wrong || st.KernelDrops != 0 {
			t.Errorf("%s: WrongSource %d, want %d, and no kernel drops: %+v", c.name, st.WrongSource, c.wrong, st)
		}
		if coalesced := c.r.coalesce; coalesced != (st.Coalesced >= 5) {
			t.Errorf("%s: coalescing %v, but %d datagrams arrived coalesced", c.name, coalesced, st.Coalesced)
		}
	}
}

// TestDefaultSource: by default a Receiver accepts 127.0.0.1:1021 only,
// with the kernel filter: its socket, bound to the group's address, is
// connected to that source.
func TestDefaultSource(t *testing.T) {
	g := randomGroups(1)[0]
	r := receiverFor(t, nil, g)
	fd := r.members[g].fd
	local, _ := unix.Getsockname(fd)
	peer, _ := unix.Getpeername(fd)
	if l, ok := local.(*unix.SockaddrInet4); !ok || l.Addr != g.Addr().As4() || l.Port != int(g.Port()) {
		t.Errorf("socket bound to %+v, want %v", local, g)
	}
	if p, ok := peer.(*unix.SockaddrInet4); !ok || p.Addr != [4]byte{127, 0, 0, 1} || p.Port != DefaultSourcePort {
		t.Errorf("socket connected to %+v, want 127.0.0.1:1021", peer)
	}
	if want := netip.MustParseAddrPort("127.0.0.1:1021"); r.source != want || r.anySource {
		t.Errorf("default source %v (any: %v), want %v", r.source, r.anySource, want)
	}
	if !r.connect {
		t.Error("no kernel filter by default")
	}
	for _, cfg := range []*ReceiverConfig{{AnySource: true}, {NoKernelFilter: true}} {
		if r := receiverFor(t, cfg); r.connect {
			t.Errorf("%+v: kernel filter on", cfg)
		}
	}
}

func TestJoinLeaveWhileReading(t *testing.T) {
	gs := randomGroups(2)
	s := unprivSender(t)
	r := receiverFor(t, &ReceiverConfig{AnySource: true}, gs[0])
	got := make(chan []string)
	tid := make(chan int, 1)
	go func() {
		runtime.LockOSThread() // the thread ends with the goroutine
		tid <- unix.Gettid()
		got <- readAll(t, r, 2)
	}()
	send(t, s, gs[0], "a")
	// Join while the reader waits in epoll_wait (most likely for "b",
	// having read "a"; if for "a", its wake-up is under way). Either way
	// the read sees the new member: the result does not depend on which.
	testenv.WaitInEpollWait(t, <-tid)
	if err := r.Join(gs[1]); err != nil {
		t.Fatal(err)
	}
	send(t, s, gs[1], "b")
	if g := <-got; fmt.Sprint(g) != fmt.Sprint([]string{gs[0].String() + " a", gs[1].String() + " b"}) {
		t.Fatalf("got %v", g)
	}
	if err := r.Leave(gs[0]); err != nil {
		t.Fatal(err)
	}
	send(t, s, gs[0], "gone")
	send(t, s, gs[1], "c")
	if g := readAll(t, r, 1); g[0] != gs[1].String()+" c" {
		t.Fatalf("after leave got %v", g)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	r := receiverFor(t, nil, randomGroups(1)...)
	errc := make(chan error)
	tid := make(chan int, 1)
	go func() {
		runtime.LockOSThread() // the thread ends with the goroutine
		tid <- unix.Gettid()
		_, err := r.ReadBatch(make([]Datagram, 4))
		errc <- err
	}()
	testenv.WaitInEpollWait(t, <-tid) // Close wakes a reader that waits
	r.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("ReadBatch after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock ReadBatch")
	}
}

func TestRefusesNonLoopbackAndBadGroups(t *testing.T) {
	if _, err := NewSender(&SenderConfig{Interface: "no-such-if0"}); err == nil {
		t.Error("unknown interface accepted")
	}
	ifs, _ := net.Interfaces()
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback == 0 && ifi.Flags&net.FlagUp != 0 {
			if _, err := NewReceiver(&ReceiverConfig{Interface: ifi.Name}); !errors.Is(err, ErrNotLoopback) {
				t.Errorf("%s: %v, want ErrNotLoopback", ifi.Name, err)
			}
			break
		}
	}
	r := receiverFor(t, nil)
	for _, g := range []string{"10.0.0.1:1000", "239.1.1.1:0"} {
		if err := r.Join(netip.MustParseAddrPort(g)); err == nil {
			t.Errorf("joined %s", g)
		}
	}
}

func TestReadAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	g := randomGroups(1)[0]
	s := unprivSender(t)
	r := receiverFor(t, &ReceiverConfig{AnySource: true}, g)
	ms := []ipv4.Message{{Buffers: [][]byte{make([]byte, 200)}, Addr: net.UDPAddrFromAddrPort(g)}}
	ds := make([]Datagram, 4)
	allocs := testing.AllocsPerRun(200, func() {
		if err := s.WriteBatch(ms); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadBatch(ds); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a send and a read allocate %v times", allocs)
	}
}
