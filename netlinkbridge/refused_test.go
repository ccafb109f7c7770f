package netlinkbridge

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// refusingSource is a joinSource whose kernel refuses some groups (EPERM),
// as it does a generic netlink group marked GENL_MCAST_CAP_NET_ADMIN to a
// bridge without the capability.
type refusingSource struct {
	*joinSource
	refuse map[uint32]bool
}

func (s *refusingSource) Join(g uint32) error {
	if s.refuse[g] {
		return unix.EPERM
	}
	return s.joinSource.Join(g)
}

// A generic netlink group that registers while the bridge runs and that
// the kernel refuses to join is reported (Refused, GroupsRefused) by its
// stream's name; the stream sends nothing, and the other stream of the
// family, joined before and after, goes on forwarding.
func TestGroupRefusedLaterOthersGoOn(t *testing.T) {
	a, b := streams.Genl("nlmtesta", "events"), streams.Genl("nlmtestb", "events")
	src := &refusingSource{joinSource: &joinSource{fakeSource: newFakeSource(), joined: map[uint32]bool{}}, refuse: map[uint32]bool{33: true}}
	sink := &fakeSink{}
	cfg := &Config{Streams: []streams.Stream{a, b}, Encodings: []streams.Encoding{streams.Raw}, Private: cleartext(a.Name, b.Name), Logger: quiet}
	br, err := NewWithSource(cfg, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- br.Run(ctx) }()

	evA, evB := testmsg.Nlmsg(40, []byte{1, 1, 0, 0}), testmsg.Nlmsg(41, []byte{1, 1, 0, 0})
	src.push([]kernel.Message{{Group: decode.CtrlGroup, Data: testmsg.Ctrl(t, testmsg.CtrlCmdNewFamily, "nlmtestb", 41, map[string]uint32{"events": 34})}}, nil)
	waitFor(t, "b's group to be joined", func() bool { return src.has(34) && br.Stats().GenlJoined == 1 })
	src.push([]kernel.Message{{Group: 34, Data: evB}}, nil)
	waitFor(t, "b's first event to be bridged", func() bool { return br.Stats().Events == 1 })

	src.push([]kernel.Message{{Group: decode.CtrlGroup, Data: testmsg.Ctrl(t, testmsg.CtrlCmdNewFamily, "nlmtesta", 40, map[string]uint32{"events": 33})}}, nil)
	waitFor(t, "a's group to be refused", func() bool { return br.Stats().GroupsRefused == 1 })
	r := br.Refused()
	if len(r) != 1 || r[0].Stream.Name != a.Name || r[0].Group != 33 || r[0].Needs&(CapNetAdmin|CapSysAdmin) == 0 ||
		!strings.Contains(r[0].String(), a.Name) {
		t.Errorf("Refused() = %+v, want %s's group 33, needing CAP_NET_ADMIN or CAP_SYS_ADMIN", r, a.Name)
	}
	if src.has(33) || br.Stats().GenlJoined != 1 {
		t.Errorf("the refused group counted as joined")
	}
	src.push([]kernel.Message{{Group: 33, Data: evA}, {Group: 34, Data: evB}}, nil)
	waitFor(t, "b's second event to be bridged", func() bool { return br.Stats().Events == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	events := map[netip.AddrPort]int{}
	for _, s := range sink.out {
		h, _, err := frame.Parse(s.data)
		if err != nil {
			t.Fatal(err)
		}
		if h.Kind == frame.KindEvent {
			events[s.dst]++
		}
	}
	m := streams.Map{}
	if n := events[m.Addr(b, streams.Raw)]; n != 2 {
		t.Errorf("%d events on %s, want 2", n, b.Name)
	}
	if n := events[m.Addr(a, streams.Raw)]; n != 0 {
		t.Errorf("%d events on the refused stream %s", n, a.Name)
	}
}
