package netlinkbridge

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// TestNetNSEventsCarryTheirNSID: a bridge reading another namespace
// (Config.NetNS; here its id as New finds it, set by hand) marks every
// event with that id, raw and JSON: live, dumped in a resync and in an
// answer, as --all-nsid marks a peer's. Its control frames carry none.
func TestNetNSEventsCarryTheirNSID(t *testing.T) {
	addr, _ := streams.Lookup("ipv4-ifaddr")
	src := newFakeSource([]kernel.Message{{Group: addr.Group, Data: addrMsg(2, 9)}})
	dump := &fakeDumper{tables: map[uint16][][]byte{unix.RTM_GETADDR: {addrMsg(2, 1), addrMsg(2, 2)}}}
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{addr}, JSONAlways: true, NoHeartbeats: true, Logger: quiet}, src, dump, sink)
	if err != nil {
		t.Fatal(err)
	}
	b.nsid, b.stampNSID = -7, true // signed, as the kernel's ids are
	stop := running(t, b)
	waitFor(t, "the live event", func() bool { return b.Stats().Events == 1 })
	b.Request(addr.Group)
	waitFor(t, "the resync", func() bool { return b.Stats().Resyncs == 1 })
	raw, js := netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:40001")
	if !b.Answer(raw, addr.Group, false) || !b.Answer(js, addr.Group, true) {
		t.Fatal("requests refused")
	}
	waitFor(t, "the answers", func() bool { return b.Stats().Answers == 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	var events, dumped, answered, jsonEvents int
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, o := range sink.out {
		if o.data[0] == '{' {
			f, err := frame.ParseJSON(o.data)
			if err != nil {
				t.Fatal(err)
			}
			if isEvent := f.Kind == "event"; isEvent != (f.NSID != nil && *f.NSID == -7) {
				t.Errorf("JSON %s frame to %v: nsid %v, want -7 on events alone", f.Kind, o.dst, f.NSID)
			} else if isEvent {
				jsonEvents++
			}
			continue
		}
		h, _, err := frame.Parse(o.data)
		if err != nil {
			t.Fatal(err)
		}
		isEvent := h.Kind == frame.KindEvent
		if has := h.Flags&frame.FlagNSID != 0 && h.NSID == -7; has != isEvent {
			t.Errorf("raw %v frame to %v: flags %v nsid %d, want NSID -7 on events alone", h.Kind, o.dst, h.Flags, h.NSID)
		}
		switch {
		case !isEvent:
		case h.Flags&frame.FlagAnswer != 0:
			answered++
		case h.Flags&frame.FlagDump != 0:
			dumped++
		default:
			events++
		}
	}
	// One live event and the two-entry dump on the stream; the answers'
	// two entries, raw to one requester, JSON to the other.
	if events != 1 || dumped != 2 || answered != 2 || jsonEvents != 5 {
		t.Errorf("%d live, %d dumped, %d answered raw events, %d JSON events; want 1, 2, 2 and 5", events, dumped, answered, jsonEvents)
	}
}

// TestStampNetNS: New finds the id its namespace gives the Config.NetNS
// one (assigning one), stamps none for its own namespace, and refuses
// AllNSID with another namespace, whose peers' ids would be numbered
// there, not here.
func TestStampNetNS(t *testing.T) {
	var here, there int
	testenv.InNewNetNS(t, func() (err error) {
		here, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	})
	defer unix.Close(here)
	testenv.InNewNetNS(t, func() (err error) {
		there, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	})
	defer unix.Close(there)
	// From here: the calling thread's namespace is here's.
	testenv.InNewNetNS(t, func() error {
		if err := unix.Setns(here, unix.CLONE_NEWNET); err != nil {
			return err
		}
		var b Bridge
		if err := b.stampNetNS(&Config{NetNS: there}); err != nil || !b.stampNSID {
			t.Errorf("another namespace: %v, stamped %v", err, b.stampNSID)
		}
		if id, _, err := kernel.NetNSID(here, there); err != nil || id != b.nsid {
			t.Errorf("stamped id %d, the kernel says %d (%v)", b.nsid, id, err)
		}
		var own Bridge
		if err := own.stampNetNS(&Config{NetNS: here, AllNSID: true}); err != nil || own.stampNSID {
			t.Errorf("its own namespace: %v, stamped %v", err, own.stampNSID)
		}
		var both Bridge
		var ce *ConfigError
		if err := both.stampNetNS(&Config{NetNS: there, AllNSID: true}); !errors.As(err, &ce) || ce.Field != "AllNSID" {
			t.Errorf("AllNSID with another namespace: %v, want a ConfigError of AllNSID", err)
		}
		return nil
	})
}
