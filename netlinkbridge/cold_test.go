package netlinkbridge

import (
	"net/netip"
	"testing"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/mcast"
	"golang.org/x/sys/unix"
)

// addrPair is what an address event brings at a few events a second: the
// address and its local route, two streams.
func addrPair() []kernel.Message {
	return []kernel.Message{
		{Group: unix.RTNLGRP_IPV4_IFADDR, Data: testmsg.Nlmsg(unix.RTM_NEWADDR, make([]byte, 60))},
		{Group: unix.RTNLGRP_IPV4_ROUTE, Data: testmsg.Nlmsg(unix.RTM_NEWROUTE, make([]byte, 60))},
	}
}

// coldBridge is a bridge in its default configuration (every rtnetlink
// stream, raw and JSON) sending to sink, with a receiver of every JSON
// group if joined, and none otherwise (as its watch of the memberships
// would find them).
func coldBridge(b *testing.B, sink Sink, joined bool) *Bridge {
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
	snd, err := mcast.NewSender(&mcast.SenderConfig{Source: netip.AddrPortFrom(netip.Addr{}, 0xfff1)})
	if err != nil {
		b.Skip("no loopback multicast here:", err)
	}
	defer snd.Close()
	br, msgs := coldBridge(b, snd, false), addrPair()
	testenv.ColdLoop(b, func() { br.forward(msgs, 1) })
	if br.jsonSkipped.Load() == 0 {
		b.Fatal("JSON encoded with no one joined")
	}
}

// BenchmarkForwardPairColdNoSend is the bridge's own part of it: the same
// with a sink that sends nothing.
func BenchmarkForwardPairColdNoSend(b *testing.B) {
	br, msgs := coldBridge(b, &discardSink{}, false), addrPair()
	testenv.ColdLoop(b, func() { br.forward(msgs, 1) })
}

// BenchmarkForwardPairColdJSON is the bridge's own part with someone
// joined to every JSON group: the pair decoded and encoded in JSON too.
func BenchmarkForwardPairColdJSON(b *testing.B) {
	br, msgs := coldBridge(b, &discardSink{}, true), addrPair()
	testenv.ColdLoop(b, func() { br.forward(msgs, 1) })
	if br.jsonSkipped.Load() != 0 {
		b.Fatal("JSON skipped with every group joined")
	}
}
