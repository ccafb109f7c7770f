package netlinkbridge

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// joinSource is a fake source that records group changes.
type joinSource struct {
	*fakeSource
	mu     sync.Mutex
	joined map[uint32]bool
}

func (s *joinSource) Join(g uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.joined[g] = true
	return nil
}

func (s *joinSource) Leave(g uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.joined, g)
	return nil
}

func (s *joinSource) has(g uint32) bool { s.mu.Lock(); defer s.mu.Unlock(); return s.joined[g] }

func TestGenlFamilyAppearsAndGoes(t *testing.T) {
	st := streams.Genl("nlmtest", "events")
	src := &joinSource{fakeSource: newFakeSource(), joined: map[uint32]bool{}}
	sink := &fakeSink{}
	cfg := &Config{Streams: []streams.Stream{st}, Encodings: []streams.Encoding{streams.Raw}, Logger: quiet}
	if _, err := NewWithSource(cfg, src, nil, sink); !errors.As(err, new(*PrivilegedError)) {
		t.Fatalf("a generic netlink group outside the catalog was bridged without an entry in Private: %v", err)
	}
	cfg.Private = cleartext(cfg.Streams[0].Name)
	b, err := NewWithSource(cfg, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	if g := b.groups(); len(g) != 1 || g[0] != decode.CtrlGroup {
		t.Fatalf("joins %v at start, want only nlctrl's group", g)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()

	ev := testmsg.Nlmsg(40, []byte{1, 1, 0, 0}) // family 40, cmd 1
	src.push([]kernel.Message{{Group: 33, Data: ev}}, nil)
	waitFor(t, "an event on an unknown group to be skipped", func() bool { return b.Stats().NotStreams == 1 })

	src.push([]kernel.Message{{Group: decode.CtrlGroup, Data: testmsg.Ctrl(t, testmsg.CtrlCmdNewFamily, "nlmtest", 40, map[string]uint32{"events": 33, "other": 34})}}, nil)
	waitFor(t, "the new family's group to be joined", func() bool { return src.has(33) && b.Stats().GenlJoined == 1 })
	if src.has(34) {
		t.Error("joined a group nobody asked for")
	}
	src.push([]kernel.Message{{Group: 33, Data: ev}}, nil)
	waitFor(t, "the event to be bridged", func() bool { return b.Stats().Events == 1 })

	src.push([]kernel.Message{{Group: decode.CtrlGroup, Data: testmsg.Ctrl(t, testmsg.CtrlCmdDelFamily, "nlmtest", 40, nil)}}, nil)
	waitFor(t, "the family to be reported gone", func() bool { return b.Stats().GenlGone == 1 && !src.has(33) })
	src.push([]kernel.Message{{Group: 33, Data: ev}}, nil)
	waitFor(t, "events of the gone group to be skipped", func() bool { return b.Stats().NotStreams == 4 }) // and the two nlctrl messages
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	var events []frame.Header
	for _, s := range sink.out {
		h, p, err := frame.Parse(s.data)
		if err != nil {
			t.Fatal(err)
		}
		if s.dst != (streams.Map{}).Addr(st, streams.Raw) {
			t.Errorf("frame sent to %v", s.dst)
		}
		if h.Kind == frame.KindEvent {
			events = append(events, h)
			if string(p) != string(ev) {
				t.Errorf("payload %x", p)
			}
		}
	}
	if len(events) != 1 || events[0].Group != 33 || events[0].Family != streams.FamilyGeneric || events[0].Seq != 1 {
		t.Errorf("events sent: %+v, want one in group 33", events)
	}
}

func TestBridgeRefusesMixedFamiliesAndPrivileged(t *testing.T) {
	link, _ := streams.Lookup("link")
	proc, _ := streams.Lookup("proc")
	ue, _ := streams.Lookup("uevent")
	_, err := NewWithSource(&Config{Streams: []streams.Stream{link, ue}, Logger: quiet}, newFakeSource(), nil, &fakeSink{})
	if err == nil || !strings.Contains(err.Error(), "Set") {
		t.Errorf("mixed families: %v", err)
	}
	_, err = NewWithSource(&Config{Streams: []streams.Stream{proc}, Logger: quiet}, newFakeSource(), nil, &fakeSink{})
	var pe *PrivilegedError
	if !errors.As(err, &pe) || pe.Stream.Name != "proc" || strings.Contains(err.Error(), "--") {
		t.Errorf("privileged stream: %v", err)
	}
	_, err = NewWithSource(&Config{Streams: []streams.Stream{ue}, AllNSID: true, Logger: quiet}, newFakeSource(), nil, &fakeSink{})
	if err == nil {
		t.Error("all-nsid accepted for uevents")
	}
	// Other namespaces' events are refused before anything opens, unless
	// the operator accepts that every local user can read them.
	for name, cfg := range map[string]*Config{
		"AllNSID": {Streams: []streams.Stream{link}, AllNSID: true, Logger: quiet},
		"NetNS":   {Streams: []streams.Stream{link}, NetNS: 3, Logger: quiet},
	} {
		for ctor, err := range map[string]error{
			"New":           second(New(cfg)),
			"NewSet":        second(NewSet(cfg)),
			"NewWithSource": second(NewWithSource(cfg, newFakeSource(), nil, &fakeSink{})),
		} {
			var ne *NamespaceError
			if !errors.As(err, &ne) || ne.Field != name || strings.Contains(err.Error(), "--") {
				t.Errorf("%s with %s: %v, want a *NamespaceError for it", ctor, name, err)
			}
		}
	}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link}, AllNSID: true, Private: cleartext("*"), Logger: quiet}, newFakeSource(), nil, &fakeSink{})
	if err != nil {
		t.Errorf("AllNSID with every stream in the clear: %v", err)
	} else {
		b.Close()
	}
}
