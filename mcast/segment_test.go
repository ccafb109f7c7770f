package mcast

import (
	"cmp"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

func TestPlanRuns(t *testing.T) {
	a := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("239.1.1.1:2000"))
	a2 := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("239.1.1.1:2000")) // equal, not the same pointer
	b := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("239.1.1.2:2000"))
	msg := func(dst *net.UDPAddr, sizes ...int) ipv4.Message {
		var bufs [][]byte
		for _, s := range sizes {
			bufs = append(bufs, make([]byte, s))
		}
		return ipv4.Message{Addr: dst, Buffers: bufs}
	}
	var big []ipv4.Message
	for range 140 {
		big = append(big, msg(a, 100))
	}
	for _, tc := range []struct {
		name string
		ms   []ipv4.Message
		want []int
		max  int // zero: maxRun
	}{
		{"one group, one size", []ipv4.Message{msg(a, 48, 52), msg(a, 100), msg(a2, 60, 40)}, []int{3}, 0},
		{"a shorter one ends a run", []ipv4.Message{msg(a, 100), msg(a, 100), msg(a, 90), msg(a, 90)}, []int{3, 1}, 0},
		{"a longer one starts a new run", []ipv4.Message{msg(a, 90), msg(a, 100), msg(a, 100)}, []int{1, 2}, 0},
		{"groups split runs", []ipv4.Message{msg(a, 100), msg(b, 100), msg(b, 100), msg(a, 100)}, []int{1, 2, 1}, 0},
		{"at most maxRun per run", big, []int{128, 12}, 0},
		{"the older limit", big, []int{64, 64, 12}, oldMaxRun},
		{"bytes bound a run", []ipv4.Message{msg(a, 30000), msg(a, 30000), msg(a, 30000)}, []int{2, 1}, 0},
		{"empty datagrams go alone", []ipv4.Message{msg(a), msg(a), msg(a, 10)}, []int{1, 1, 1}, 0},
	} {
		g := segmenter{max: cmp.Or(tc.max, maxRun)}
		g.plan(tc.ms)
		if len(g.count) != len(tc.want) {
			t.Errorf("%s: runs %v, want %v", tc.name, g.count, tc.want)
			continue
		}
		for i, c := range g.count {
			if c != tc.want[i] {
				t.Errorf("%s: runs %v, want %v", tc.name, g.count, tc.want)
				break
			}
			if (g.out[i].OOB != nil) != (c > 1) {
				t.Errorf("%s: run %d of %d has OOB %v", tc.name, i, c, g.out[i].OOB)
			}
		}
	}
}

// Runs arrive as the datagrams they were made of, in order, at every
// receiver: one that reads runs coalesced (UDP_GRO) into room for fewer
// datagrams than a run holds, one with room for all, one that has the
// kernel split them. A steady stream of batches allocates nothing.
func TestSegmentedSendArrivesWholeAndAllocatesNothing(t *testing.T) {
	gs := randomGroups(2)
	s := unprivSender(t)
	r1 := receiverFor(t, &ReceiverConfig{AnySource: true}, gs...)
	r2 := receiverFor(t, &ReceiverConfig{AnySource: true, NoCoalesce: true}, gs...)
	r3 := receiverFor(t, &ReceiverConfig{AnySource: true}, gs...)
	var ms []ipv4.Message
	var want [][]byte
	for i := range 40 {
		size := 124
		if i == 19 || i == 39 {
			size = 77 // ends a run
		}
		b := make([]byte, size)
		binary.BigEndian.PutUint32(b, uint32(i))
		dst := gs[0]
		if i >= 30 {
			dst = gs[1]
		}
		// header and payload as two buffers, as the bridge sends them
		ms = append(ms, ipv4.Message{Buffers: [][]byte{b[:48], b[48:]}, Addr: net.UDPAddrFromAddrPort(dst)})
		want = append(want, b)
	}
	if err := s.WriteBatch(ms); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Segmented < 30 || st.Sent != 40 {
		t.Fatalf("stats %+v: want 40 sent, most of them in runs", st)
	}
	for _, r := range []*Receiver{r1, r2, r3} {
		got := map[netip.AddrPort][][]byte{}
		ds := make([]Datagram, 64)
		if r == r3 {
			ds = ds[:3]
		}
		deadline := time.Now().Add(5 * time.Second)
		for n := 0; n < 40 && time.Now().Before(deadline); {
			k, err := r.ReadBatchUntil(ds, deadline)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range ds[:k] {
				got[d.Group] = append(got[d.Group], append([]byte(nil), d.Data...))
			}
			n += k
		}
		all := append(got[gs[0]], got[gs[1]]...)
		if len(all) != 40 {
			t.Fatalf("received %d datagrams, want 40", len(all))
		}
		for i, b := range all {
			if string(b) != string(want[i]) {
				t.Fatalf("datagram %d: %d bytes, number %d; want %d bytes, number %d", i, len(b),
					binary.BigEndian.Uint32(b), len(want[i]), i)
			}
		}
		st := r.Stats()
		if st.Received != 40 {
			t.Errorf("stats %+v: want 40 received", st)
		}
		if coalescing := r != r2; coalescing != (st.Runs > 0 && st.Coalesced >= 30) {
			t.Errorf("coalescing %v, stats %+v: want most datagrams in runs exactly when coalescing", coalescing, st)
		}
	}
	if testenv.Race {
		return
	}
	drain := make([]Datagram, 64)
	allocs := testing.AllocsPerRun(50, func() {
		if err := s.WriteBatch(ms); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < 40; {
			k, _ := r1.ReadBatch(drain)
			n += k
		}
		for n := 0; n < 40; {
			k, _ := r2.ReadBatch(drain)
			n += k
		}
		for n := 0; n < 40; {
			k, _ := r3.ReadBatch(drain[:3])
			n += k
		}
	})
	if allocs != 0 {
		t.Errorf("a segmented batch allocates %v times", allocs)
	}
}

// TestRefusedRunFallsBack: a run longer than the kernel takes (here 256,
// over every kernel's UDP_MAX_SEGMENTS) is refused with EINVAL; the Sender
// falls back to runs of the older limit, and every datagram still arrives,
// in order, in runs.
func TestRefusedRunFallsBack(t *testing.T) {
	g := randomGroups(1)[0]
	s := unprivSender(t)
	s.seg.max = 256
	r := receiverFor(t, &ReceiverConfig{AnySource: true, ReadBuffer: 1 << 20}, g)
	var ms []ipv4.Message
	for i := range 300 {
		b := make([]byte, 100)
		binary.BigEndian.PutUint32(b, uint32(i))
		ms = append(ms, ipv4.Message{Buffers: [][]byte{b}, Addr: net.UDPAddrFromAddrPort(g)})
	}
	if err := s.WriteBatch(ms); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Sent != 300 || st.Dropped != 0 || st.Runs < 5 || !s.seg.on || s.seg.max != oldMaxRun {
		t.Fatalf("stats %+v, segmentation %v in runs of %d: want all 300 sent in runs of %d", st, s.seg.on, s.seg.max, oldMaxRun)
	}
	ds := make([]Datagram, 64)
	deadline := time.Now().Add(5 * time.Second)
	for n := 0; n < 300; {
		k, err := r.ReadBatchUntil(ds, deadline)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", n, err)
		}
		for _, d := range ds[:k] {
			if got := binary.BigEndian.Uint32(d.Data); got != uint32(n) {
				t.Fatalf("datagram %d carries number %d", n, got)
			}
			n++
		}
	}
}

func TestGroupByDestination(t *testing.T) {
	a := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("239.1.1.1:2000"))
	a2 := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("239.1.1.1:2000")) // equal, not the same pointer
	b := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("239.1.1.2:2001"))
	msg := func(dst *net.UDPAddr, size int) ipv4.Message {
		return ipv4.Message{Addr: dst, Buffers: [][]byte{make([]byte, size)}}
	}
	// A raw frame and a JSON frame per event, as the bridge sends them.
	ms := []ipv4.Message{msg(a, 100), msg(b, 300), msg(a, 100), msg(b, 280), msg(a2, 100)}
	orig := append([]ipv4.Message(nil), ms...)
	var g segmenter
	g.max = maxRun
	got := g.group(ms)
	want := []int{0, 2, 4, 1, 3}
	if len(got) != len(want) {
		t.Fatalf("%d datagrams grouped, want %d", len(got), len(want))
	}
	for i, j := range want {
		if &got[i].Buffers[0][0] != &ms[j].Buffers[0][0] {
			t.Errorf("grouped %d is not datagram %d", i, j)
		}
	}
	for i := range ms {
		if ms[i].Addr != orig[i].Addr || &ms[i].Buffers[0][0] != &orig[i].Buffers[0][0] {
			t.Fatalf("group changed the caller's batch at %d", i)
		}
	}
	g.plan(got)
	if len(g.count) != 2 || g.count[0] != 3 || g.count[1] != 2 {
		t.Errorf("runs %v after grouping, want [3 2]", g.count)
	}
	// One destination: the batch itself. More than maxGroups: as it came.
	one := []ipv4.Message{msg(a, 10), msg(a2, 10)}
	if got := g.group(one); &got[0] != &one[0] {
		t.Error("a batch to one destination was copied")
	}
	var many []ipv4.Message
	for i := range maxGroups + 1 {
		many = append(many, msg(net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("239.1.2.1"), uint16(3000+i))), 10), msg(a, 10))
	}
	if got := g.group(many); &got[0] != &many[0] {
		t.Errorf("a batch to %d destinations was regrouped", maxGroups+2)
	}
	// Exactly maxGroups: grouped, a's datagrams together after the first.
	many = many[:2*(maxGroups-1)]
	if got := g.group(many); &got[1].Buffers[0][0] != &many[1].Buffers[0][0] || &got[2].Buffers[0][0] != &many[3].Buffers[0][0] {
		t.Errorf("a batch to %d destinations was not grouped", maxGroups)
	}
}

// Interleaved groups are sent in runs, and each group's datagrams arrive
// in their order.
func TestInterleavedGroupsAreSentInRuns(t *testing.T) {
	gs := randomGroups(2)
	s := unprivSender(t)
	r := receiverFor(t, &ReceiverConfig{AnySource: true, NoCoalesce: true}, gs...)
	var ms []ipv4.Message
	for i := range 20 {
		b := make([]byte, 100)
		binary.BigEndian.PutUint32(b, uint32(i))
		ms = append(ms, ipv4.Message{Buffers: [][]byte{b}, Addr: net.UDPAddrFromAddrPort(gs[i%2])})
	}
	if err := s.WriteBatch(ms); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Sent != 20 || st.Segmented != 20 || st.Runs != 2 {
		t.Errorf("stats %+v: want 20 sent in 2 runs", st)
	}
	last := map[netip.AddrPort]int{gs[0]: -2, gs[1]: -1}
	ds := make([]Datagram, 64)
	deadline := time.Now().Add(5 * time.Second)
	for n := 0; n < 20; {
		k, err := r.ReadBatchUntil(ds, deadline)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", n, err)
		}
		for _, d := range ds[:k] {
			i := int(binary.BigEndian.Uint32(d.Data))
			if i != last[d.Group]+2 {
				t.Errorf("%v: datagram %d after %d", d.Group, i, last[d.Group])
			}
			last[d.Group] = i
		}
		n += k
	}
}

// pair is what the bridge sends for an address event at a few events a
// second: the event and its local route, one datagram to each of two
// groups, header and payload in two buffers.
func pair() []ipv4.Message {
	gs := randomGroups(2)
	raw := make([]byte, 124)
	return []ipv4.Message{
		{Buffers: [][]byte{raw[:48], raw[48:]}, Addr: net.UDPAddrFromAddrPort(gs[0])},
		{Buffers: [][]byte{raw[:48], raw[48:]}, Addr: net.UDPAddrFromAddrPort(gs[1])},
	}
}

// BenchmarkWritePair sends a pair in one batch, warm (no receivers).
func BenchmarkWritePair(b *testing.B) {
	s, ms := unprivSender(b), pair()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.WriteBatch(ms); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWritePairCold sends a pair with the caches evicted before each
// batch (ns/cold-op), as at a few events a second.
func BenchmarkWritePairCold(b *testing.B) {
	s, ms := unprivSender(b), pair()
	testenv.ColdLoop(b, func() {
		if err := s.WriteBatch(ms); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkSendtoPairCold is the reference: the same two datagrams by two
// bare sendto calls on a plain socket, as a plain relay sends them.
func BenchmarkSendtoPairCold(b *testing.B) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInet4Addr(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, [4]byte{127, 0, 0, 1}); err != nil {
		b.Fatal(err)
	}
	ms := pair()
	var buf []byte
	for _, p := range ms[0].Buffers {
		buf = append(buf, p...)
	}
	to := make([]*unix.SockaddrInet4, len(ms))
	for i, m := range ms {
		ua := m.Addr.(*net.UDPAddr)
		to[i] = &unix.SockaddrInet4{Port: ua.Port, Addr: [4]byte(ua.IP.To4())}
	}
	testenv.ColdLoop(b, func() {
		for _, a := range to {
			if err := unix.Sendto(fd, buf, 0, a); err != nil {
				b.Fatal(err)
			}
		}
	})
}
