package netlinkbridge

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// After an overrun, the socket still holds the events queued before it,
// and the kernel drops every new one, silently, until the socket is empty.
// A dump made before the bridge has read them all would be followed by
// events older than it, with the ones that undo them lost: a receiver
// would keep them. So the resync waits until a read finds the socket empty.
func TestResyncAfterOverrunWaitsForQueuedEvents(t *testing.T) {
	addr, _ := streams.Lookup("ipv4-ifaddr")
	src := newFakeSource()
	// The overrun, then what the socket held: read in a row.
	src.queue = append(src.queue, item{err: kernel.ErrOverrun},
		item{batch: []kernel.Message{{Group: unix.RTNLGRP_IPV4_IFADDR, Data: addrMsg(2, 7)}}})
	dump := &fakeDumper{tables: map[uint16][][]byte{unix.RTM_GETADDR: {addrMsg(2, 1)}}}
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{
		Streams: []streams.Stream{addr}, Encodings: []streams.Encoding{streams.Raw},
		NoHeartbeats: true, ResyncInterval: time.Millisecond, Logger: quiet,
	}, src, dump, sink)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, b)
	waitFor(t, "a resync", func() bool { return b.Stats().Resyncs == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	hs, ps := raws(t, sink, addr)
	want := []frame.Kind{frame.KindOverrun, frame.KindEvent, frame.KindResyncBegin, frame.KindEvent, frame.KindResyncEnd, frame.KindGoodbye}
	got := kinds(hs)
	if len(got) != len(want) {
		t.Fatalf("kinds %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("kinds %v, want %v: the queued event must come before the resync", got, want)
		}
	}
	if !bytes.Equal(ps[1], addrMsg(2, 7)) || hs[1].Flags&frame.FlagDump != 0 {
		t.Errorf("frame 1: %x flags %v, want the queued event", ps[1], hs[1].Flags)
	}
	if !bytes.Equal(ps[3], addrMsg(2, 1)) || hs[3].Flags&frame.FlagDump == 0 {
		t.Errorf("frame 3: %x flags %v, want the dump", ps[3], hs[3].Flags)
	}
}
