package mcast

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
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
func unprivSender(t *testing.T) *Sender {
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

func TestUnprivilegedSourceIsDropped(t *testing.T) {
	g := randomGroups(1)[0]
	s := unprivSender(t)
	r := receiverFor(t, nil, g) // default: privileged port on 127.0.0.1 only
	send(t, s, g, "forged", "forged")
	r.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	ds := make([]Datagram, 4)
	if n, err := r.ReadBatch(ds); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %d datagrams, err %v; want none", n, err)
	}
	if st := r.Stats(); st.WrongSource != 2 || st.Received != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPrivilegedSourceIsAccepted(t *testing.T) {
	testenv.RequireRoot(t)
	g := randomGroups(1)[0]
	s, err := NewSender(&SenderConfig{Source: netip.AddrPortFrom(netip.Addr{}, uint16(900+rand.IntN(100)))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := receiverFor(t, nil, g)
	send(t, s, g, "real")
	if got := readAll(t, r, 1); got[0] != g.String()+" real" {
		t.Fatalf("got %v", got)
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
