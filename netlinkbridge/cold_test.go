package netlinkbridge

import (
	"encoding"
	"net"
	"testing"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/mcast"
	"golang.org/x/sys/unix"
)

// addrPair is what an address event brings at a few events a second: the
// address and its local route, two streams, as the kernel has them for
// ip addr add 10.9.9.9/24 dev eth0.
func addrPair(b testing.TB) []kernel.Message {
	ip := net.IPv4(10, 9, 9, 9).To4()
	addr := &rtnetlink.AddressMessage{Family: unix.AF_INET, PrefixLength: 24, Scope: unix.RT_SCOPE_UNIVERSE, Index: 2,
		Attributes: &rtnetlink.AddressAttributes{Address: ip, Local: ip, Broadcast: net.IPv4(10, 9, 9, 255).To4(), Label: "eth0",
			Flags: unix.IFA_F_PERMANENT, CacheInfo: rtnetlink.CacheInfo{Preferred: 0xffffffff, Valid: 0xffffffff}}}
	route := &rtnetlink.RouteMessage{Family: unix.AF_INET, DstLength: 32, Table: unix.RT_TABLE_LOCAL, Protocol: unix.RTPROT_KERNEL,
		Scope: unix.RT_SCOPE_HOST, Type: unix.RTN_LOCAL,
		Attributes: rtnetlink.RouteAttributes{Dst: ip, Src: ip, Table: unix.RT_TABLE_LOCAL, OutIface: 2}}
	var msgs []kernel.Message
	for _, m := range []struct {
		group uint32
		typ   uint16
		body  encoding.BinaryMarshaler
	}{{unix.RTNLGRP_IPV4_IFADDR, unix.RTM_NEWADDR, addr}, {unix.RTNLGRP_IPV4_ROUTE, unix.RTM_NEWROUTE, route}} {
		body, err := m.body.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, kernel.Message{Group: m.group, Data: testmsg.Nlmsg(m.typ, body)})
	}
	return msgs
}

// coldBridge is a bridge in its default configuration (every rtnetlink
// stream, raw and JSON) sending to sink, with a receiver of every JSON
// group if joined, and none otherwise (as its watch of the memberships
// would find them).
func coldBridge(b testing.TB, sink Sink, joined bool) *Bridge {
	br, err := NewWithSource(&Config{Logger: quiet, NoHeartbeats: true}, newFakeSource(), nil, sink)
	if err != nil {
		b.Fatal(err)
	}
	for _, st := range br.byGroup {
		if st != nil {
			st.jsonOn.Store(joined)
		}
	}
	return br
}

// BenchmarkForwardPairCold forwards an address pair through the bridge and
// a real loopback socket, with the caches evicted before each
// (ns/cold-op), no one joined to JSON: the per-event path as the latency
// rows at 20 events/s meet it. mcast's BenchmarkSendtoPairCold is the same
// two datagrams sent by two bare sendto calls, as a plain relay sends
// them.
func BenchmarkForwardPairCold(b *testing.B) {
	snd, err := mcast.NewSender(&mcast.SenderConfig{EphemeralPort: true})
	if err != nil {
		b.Fatal(err)
	}
	defer snd.Close()
	br, msgs := coldBridge(b, snd, false), addrPair(b)
	testenv.ColdLoop(b, func() { br.forward(msgs, 1) })
	if br.jsonSkipped.Load() == 0 {
		b.Fatal("JSON encoded with no one joined")
	}
	if st := snd.Stats(); st.Sent != uint64(2*(b.N+1)) {
		b.Fatalf("sent %d datagrams of %d", st.Sent, 2*(b.N+1))
	}
}

// BenchmarkForwardPairColdNoSend is the bridge's own part of it: the same
// with a sink that sends nothing.
func BenchmarkForwardPairColdNoSend(b *testing.B) {
	br, msgs := coldBridge(b, &discardSink{}, false), addrPair(b)
	testenv.ColdLoop(b, func() { br.forward(msgs, 1) })
	if br.jsonSkipped.Load() == 0 {
		b.Fatal("JSON encoded with no one joined")
	}
}

// BenchmarkForwardPairColdJSON is the bridge's own part with someone
// joined to every JSON group: the pair decoded and encoded in JSON too.
func BenchmarkForwardPairColdJSON(b *testing.B) {
	br, msgs := coldBridge(b, &discardSink{}, true), addrPair(b)
	testenv.ColdLoop(b, func() { br.forward(msgs, 1) })
	if br.jsonSkipped.Load() != 0 {
		b.Fatal("JSON skipped with every group joined")
	}
	for _, st := range br.byGroup {
		if st != nil && st.jsonBytes.Load() != 0 && st.stream.Name != "ipv4-ifaddr" && st.stream.Name != "ipv4-route" {
			b.Fatalf("JSON on stream %s", st.stream.Name)
		}
	}
	if a, r := br.byGroup[unix.RTNLGRP_IPV4_IFADDR], br.byGroup[unix.RTNLGRP_IPV4_ROUTE]; a.jsonBytes.Load() == 0 || r.jsonBytes.Load() == 0 {
		b.Fatal("no JSON encoded for the address or its route")
	}
}

// BenchmarkForwardPairJSON is BenchmarkForwardPairColdJSON warm: the
// bridge's own work for the pair, decoded and encoded in JSON too.
func BenchmarkForwardPairJSON(b *testing.B) {
	br, msgs := coldBridge(b, &discardSink{}, true), addrPair(b)
	b.ReportAllocs()
	for b.Loop() {
		br.forward(msgs, 1)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/event")
}

// The JSON path of an address and its route, the events of everyday
// changes, must not allocate either: this is its guard.
func TestForwardPairJSONAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	br, msgs := coldBridge(t, &discardSink{}, true), addrPair(t)
	br.forward(msgs, 1) // the buffers grow once
	if a := testing.AllocsPerRun(200, func() { br.forward(msgs, 1) }); a != 0 {
		t.Fatalf("forwarding an address and its route in raw and JSON allocates %v times", a)
	}
	for _, g := range []uint32{unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV4_ROUTE} {
		if st := br.byGroup[g]; st.jsonBytes.Load() == 0 || st.events.Load() == 0 {
			t.Fatalf("stream %s: %d events, %d bytes of JSON", st.stream.Name, st.events.Load(), st.jsonBytes.Load())
		}
	}
}

// In the default configuration the bridge reads every link event for the
// JSON's interface names, JSON joined or not; a link whose name it knows
// costs no allocation (TestNamesUpdate's guard, through the bridge).
func TestForwardLinkAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	br := coldBridge(t, &discardSink{}, false)
	msgs := []kernel.Message{{Group: unix.RTNLGRP_LINK, Data: linkMsg(3, "eth0")}}
	br.forward(msgs, 1)
	if br.names.Lookup(3) != "eth0" {
		t.Fatal("the link's name was not learnt")
	}
	if a := testing.AllocsPerRun(200, func() { br.forward(msgs, 1) }); a != 0 {
		t.Fatalf("forwarding a link event raw allocates %v times", a)
	}
}

// With JSON joined, a link event is encoded without allocating too
// (decode.AppendRoute's direct path for links).
func TestForwardLinkJSONAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	br := coldBridge(t, &discardSink{}, true)
	msgs := []kernel.Message{{Group: unix.RTNLGRP_LINK, Data: linkMsg(3, "eth0")}}
	br.forward(msgs, 1) // the buffers grow once
	if a := testing.AllocsPerRun(200, func() { br.forward(msgs, 1) }); a != 0 {
		t.Fatalf("forwarding a link event in raw and JSON allocates %v times", a)
	}
	if st := br.byGroup[unix.RTNLGRP_LINK]; st.jsonBytes.Load() == 0 {
		t.Fatal("no JSON encoded for the link event")
	}
}
