package mcast

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// A Sender sends with its own sendmmsg; a send that would block goes
// through the poller instead (ipv4.PacketConn.WriteBatch), and arrives
// all the same; after Close nothing reaches the descriptor.
func TestSendDirect(t *testing.T) {
	gs := randomGroups(2)
	r := receiverFor(t, &ReceiverConfig{AnySource: true, NoCoalesce: true}, gs...)
	s := unprivSender(t)
	calls, wouldBlock := 0, false
	s.sendmmsg = func(fd int, hdrs []unix.Mmsghdr) (int, unix.Errno) {
		calls++
		if wouldBlock {
			return 0, unix.EAGAIN
		}
		return sendmmsg(fd, hdrs)
	}
	batch := func(tag byte) []ipv4.Message {
		// Three datagrams, two buffers each, to two groups: no run, and
		// one header per datagram.
		var ms []ipv4.Message
		for i, g := range []int{0, 1, 0} {
			ms = append(ms, ipv4.Message{Buffers: [][]byte{{tag, byte(i)}, make([]byte, 10+i)}, Addr: net.UDPAddrFromAddrPort(gs[g])})
		}
		return ms
	}
	read := func(tag byte) {
		t.Helper()
		ds := make([]Datagram, 8)
		deadline := time.Now().Add(5 * time.Second)
		for got := 0; got < 3; {
			n, err := r.ReadBatchUntil(ds, deadline)
			if err != nil {
				t.Fatalf("tag %d: %d of 3 datagrams, then %v", tag, got, err)
			}
			for _, d := range ds[:n] {
				if len(d.Data) < 2 || len(d.Data) != 12+int(d.Data[1]) || d.Data[0] != tag || d.Group != gs[int(d.Data[1])%2] {
					t.Fatalf("tag %d: datagram %x to %v", tag, d.Data, d.Group)
				}
			}
			got += n
		}
	}
	if err := s.WriteBatch(batch(1)); err != nil {
		t.Fatal(err)
	}
	read(1)
	if calls != 1 {
		t.Errorf("%d sendmmsg calls of its own for a batch, want 1", calls)
	}

	for i := range s.out.iovs {
		if s.out.iovs[i].Base != nil {
			t.Fatalf("the Sender still holds buffer %d of the batch sent", i)
		}
	}

	wouldBlock, calls = true, 0
	if err := s.WriteBatch(batch(2)); err != nil {
		t.Fatal(err)
	}
	read(2)
	if calls == 0 {
		t.Error("the send that would block did not try sendmmsg first")
	}
	if st := s.Stats(); st.Sent != 6 || st.Dropped != 0 {
		t.Errorf("stats %+v, want 6 sent, none dropped", st)
	}

	wouldBlock, calls = false, 0
	s.Close()
	if err := s.WriteBatch(batch(3)); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteBatch after Close: %v, want ErrClosed", err)
	}
	if calls != 0 {
		t.Errorf("%d sendmmsg calls after Close", calls)
	}
}
