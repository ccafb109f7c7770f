package receiver

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// addrMsg builds an RTM_NEWADDR or RTM_DELADDR for 10.0.0.last/24 on ifindex.
func addrMsg(typ uint16, ifindex uint32, last byte) []byte {
	b := make([]byte, unix.SizeofNlMsghdr+unix.SizeofIfAddrmsg+8)
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	body := b[unix.SizeofNlMsghdr:]
	body[0], body[1] = unix.AF_INET, 24
	binary.NativeEndian.PutUint32(body[4:], ifindex)
	a := body[unix.SizeofIfAddrmsg:]
	binary.NativeEndian.PutUint16(a, 8)
	binary.NativeEndian.PutUint16(a[2:], unix.IFA_LOCAL)
	copy(a[4:], []byte{10, 0, 0, last})
	return b
}

func TestStateKey(t *testing.T) {
	k1, rm1, ok1 := StateKey(addrMsg(unix.RTM_NEWADDR, 2, 1))
	k2, rm2, ok2 := StateKey(addrMsg(unix.RTM_DELADDR, 2, 1))
	k3, _, _ := StateKey(addrMsg(unix.RTM_NEWADDR, 3, 1))
	if !ok1 || !ok2 || rm1 || !rm2 || k1 != k2 || k1 == k3 {
		t.Fatalf("%q %v %v / %q %v %v / %q", k1, rm1, ok1, k2, rm2, ok2, k3)
	}
	if k1 != "addr 2/2 10.0.0.1/24 peer -" {
		t.Errorf("key %q", k1)
	}
	for _, bad := range [][]byte{nil, make([]byte, 15), addrMsg(unix.RTM_NEWADDR, 2, 1)[:20]} {
		if _, _, ok := StateKey(bad); ok {
			t.Errorf("StateKey(% x) accepted", bad)
		}
	}
}

func TestMirrorAppliesResyncsAndAsksAfterAGap(t *testing.T) {
	m := testMap()
	addr, _ := streams.Lookup("ipv4-ifaddr")
	ctl, err := mcast.NewReceiver(&mcast.ReceiverConfig{AnySource: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	ctl.Join(m.Control())
	mir, ctx, stop := runMirror(t, &MirrorConfig{Streams: []streams.Stream{addr}, Map: m, Mcast: &mcast.ReceiverConfig{AnySource: true}, RequestEvery: 50 * time.Millisecond})
	defer stop()

	// The mirror asks for a resync as it starts.
	waitRequest := func() {
		t.Helper()
		ctl.SetReadDeadline(time.Now().Add(3 * time.Second))
		ds := make([]mcast.Datagram, 8)
		n, err := ctl.ReadBatch(ds)
		if err != nil {
			t.Fatalf("no resync request: %v", err)
		}
		if h, _, err := frame.Parse(ds[n-1].Data); err != nil || h.Kind != frame.KindRequest || h.Group != addr.Group {
			t.Fatalf("request %+v %v", h, err)
		}
	}
	waitRequest()

	w := newWire(t, m)
	dump := func(h frame.Header, msg []byte) []byte { h.Flags = frame.FlagDump; return frame.Append(nil, h, msg) }
	hd := func(k frame.Kind, seq uint64) frame.Header {
		return frame.Header{Kind: k, Group: addr.Group, Epoch: 5, Seq: seq, Time: time.Now().UnixNano()}
	}
	w.frame(addr, frame.KindEvent, 5, 1, addrMsg(unix.RTM_NEWADDR, 2, 9)) // before the dump: replaced by it
	w.frame(addr, frame.KindResyncBegin, 5, 2, nil)
	w.send(addr, streams.Raw, dump(hd(frame.KindEvent, 3), addrMsg(unix.RTM_NEWADDR, 2, 1)))
	w.send(addr, streams.Raw, dump(hd(frame.KindEvent, 4), addrMsg(unix.RTM_NEWADDR, 2, 2)))
	w.frame(addr, frame.KindResyncEnd, 5, 5, nil)
	w.frame(addr, frame.KindEvent, 5, 6, addrMsg(unix.RTM_NEWADDR, 2, 3))
	w.frame(addr, frame.KindEvent, 5, 7, addrMsg(unix.RTM_DELADDR, 2, 1))
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	defer wcancel()
	if err := mir.WaitSynced(wctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"addr 2/2 10.0.0.2/24 peer -", "addr 2/2 10.0.0.3/24 peer -"}
	waitMirror(t, mir, func() bool { return slices.Equal(mir.Keys(addr), want) },
		func() string { return fmt.Sprintf("table %q, want %q", mir.Keys(addr), want) })
	// A gap: out of sync, and a request follows.
	w.frame(addr, frame.KindEvent, 5, 9, addrMsg(unix.RTM_NEWADDR, 2, 4))
	waitRequest()
	if mir.Synced(addr) {
		t.Error("still synced after a gap")
	}
	if st := mir.Stats(); st.Resyncs != 1 || st.Requests < 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestMirrorIsBounded: forged entries cannot grow a Mirror without end. An
// entry over MaxEntries or MaxBytes is refused and counted, and the table
// is resynced; a dump that does not fit is given up without asking again;
// Stats reports the sizes.
func TestMirrorIsBounded(t *testing.T) {
	addr, _ := streams.Lookup("ipv4-ifaddr")
	mir, err := NewMirror(&MirrorConfig{Streams: []streams.Stream{addr}, Map: testMap(), Mcast: &mcast.ReceiverConfig{AnySource: true}, MaxEntries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer mir.Close()
	seq := uint64(0)
	apply := func(k frame.Kind, flags frame.Flags, msg []byte) {
		seq++
		ev := Event{Stream: addr, Header: frame.Header{Kind: k, Flags: flags, Group: addr.Group, Epoch: 1, Seq: seq}, Payload: msg}
		mir.mu.Lock()
		mir.apply(&ev)
		mir.mu.Unlock()
	}
	resync := func(n byte) {
		apply(frame.KindResyncBegin, 0, nil)
		for i := byte(1); i <= n; i++ {
			apply(frame.KindEvent, frame.FlagDump, addrMsg(unix.RTM_NEWADDR, 2, i))
		}
		apply(frame.KindResyncEnd, 0, nil)
	}
	asking := func() bool { mir.mu.Lock(); defer mir.mu.Unlock(); return !mir.asked[addr.ID].IsZero() }
	entry := len(addrMsg(unix.RTM_NEWADDR, 2, 1))
	key, _, _ := StateKey(addrMsg(unix.RTM_NEWADDR, 2, 1))
	entry += len(key)

	resync(3)
	if st := mir.Stats(); !mir.Synced(addr) || st.Entries != 3 || st.Bytes != uint64(3*entry) || st.Refused != 0 {
		t.Fatalf("after a dump of 3: synced %v, stats %+v", mir.Synced(addr), st)
	}
	// A fourth entry (forged, say) is refused, and the table resynced.
	apply(frame.KindEvent, 0, addrMsg(unix.RTM_NEWADDR, 2, 50))
	if st := mir.Stats(); mir.Synced(addr) || !asking() || st.Entries != 3 || st.Refused != 1 {
		t.Fatalf("after a fourth entry: synced %v, asking %v, stats %+v", mir.Synced(addr), asking(), st)
	}
	resync(2)
	if st := mir.Stats(); !mir.Synced(addr) || asking() || st.Entries != 2 || st.Bytes != uint64(2*entry) {
		t.Fatalf("after a dump of 2: synced %v, asking %v, stats %+v", mir.Synced(addr), asking(), st)
	}
	// A dump that cannot fit is given up, and not asked for again. (Its
	// entries apply to the table as events do: the first three fit.)
	resync(5)
	if st := mir.Stats(); mir.Synced(addr) || asking() || st.Refused != 4 || st.Entries != 3 || st.Bytes != uint64(3*entry) {
		t.Fatalf("after a dump of 5: synced %v, asking %v, stats %+v", mir.Synced(addr), asking(), st)
	}
	// Removals free bytes; a gap asks again.
	apply(frame.KindEvent, 0, addrMsg(unix.RTM_DELADDR, 2, 1))
	if st := mir.Stats(); st.Entries != 2 || st.Bytes != uint64(2*entry) {
		t.Fatalf("after a removal: stats %+v", st)
	}
	mir.mu.Lock()
	mir.apply(&Event{Stream: addr, Notice: Notice{Kind: Gap, Count: 1}})
	mir.mu.Unlock()
	if !asking() {
		t.Fatal("no resync asked after a gap")
	}

	// MaxBytes bounds every table and resync together: here a table of
	// two and its resync, or a table of four.
	small, err := NewMirror(&MirrorConfig{Streams: []streams.Stream{addr}, Map: testMap(), Mcast: &mcast.ReceiverConfig{AnySource: true}, MaxBytes: 4 * entry})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	mir = small
	resync(2)
	for i := byte(3); i <= 5; i++ {
		apply(frame.KindEvent, 0, addrMsg(unix.RTM_NEWADDR, 2, i))
	}
	if st := mir.Stats(); st.Resyncs != 1 || st.Entries != 4 || st.Bytes != uint64(4*entry) || st.Refused != 1 {
		t.Fatalf("MaxBytes %d: stats %+v", 4*entry, st)
	}
}

// waitMirror waits until cond holds, checking again after every change the
// mirror applies; after 5 s it fails with what describe says.
// runMirror makes a Mirror of cfg and runs it; stop ends Run, checks what
// it returned and closes the Mirror. ctx ends with stop.
func runMirror(t *testing.T, cfg *MirrorConfig) (mir *Mirror, ctx context.Context, stop func()) {
	t.Helper()
	mir, err := NewMirror(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- mir.Run(ctx) }()
	return mir, ctx, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		mir.Close()
	}
}

func waitMirror(t *testing.T, mir *Mirror, cond func() bool, describe func() string) {
	t.Helper()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		changed := mir.Changed() // before the check: no change is missed
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatal(describe())
		}
	}
}

// TestMirrorKeepsNamespacesApart: events of peer namespaces (frames with
// FlagNSID, a bridge with --all-nsid) about the same ifindex and address
// as the bridged namespace's own go to tables of their own: neither
// changes nor removes the other's entry, a resync replaces the bridged
// namespace's table and empties the peers'.
func TestMirrorKeepsNamespacesApart(t *testing.T) {
	addr, _ := streams.Lookup("ipv4-ifaddr")
	mir, err := NewMirror(&MirrorConfig{Streams: []streams.Stream{addr}, Map: testMap(), Mcast: &mcast.ReceiverConfig{AnySource: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer mir.Close()
	seq := uint64(0)
	apply := func(k frame.Kind, flags frame.Flags, nsid int32, msg []byte) {
		seq++
		ev := Event{Stream: addr, Header: frame.Header{Kind: k, Flags: flags, NSID: nsid, Group: addr.Group, Epoch: 1, Seq: seq}, Payload: msg}
		mir.mu.Lock()
		mir.apply(&ev)
		mir.mu.Unlock()
	}
	own := func(typ uint16, last byte) { apply(frame.KindEvent, 0, 0, addrMsg(typ, 1, last)) }
	peer := func(nsid int32, typ uint16, last byte) {
		msg := addrMsg(typ, 1, last)
		msg[unix.SizeofNlMsghdr+2] = byte(nsid) // ifa_flags: not in the key, tells the messages apart
		apply(frame.KindEvent, frame.FlagNSID, nsid, msg)
	}
	key := func(last byte) string { k, _, _ := StateKey(addrMsg(unix.RTM_NEWADDR, 1, last)); return k }
	// tables splits the mirror's keys by namespace (-1: the bridged one).
	tables := func() map[int32][]string {
		out := map[int32][]string{}
		for _, k := range mir.Keys(addr) {
			nsid, isPeer, sk := SplitPeerKey(k)
			if !isPeer {
				nsid = -1
			}
			out[nsid] = append(out[nsid], sk)
		}
		return out
	}
	check := func(when string, want map[int32][]string) {
		t.Helper()
		got := tables()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: tables %v, want %v", when, got, want)
		}
		if !mir.Synced(addr) {
			t.Errorf("%s: not synced", when)
		}
	}

	apply(frame.KindResyncBegin, 0, 0, nil)
	apply(frame.KindEvent, frame.FlagDump, 0, addrMsg(unix.RTM_NEWADDR, 1, 1))
	apply(frame.KindResyncEnd, 0, 0, nil)
	peer(42, unix.RTM_NEWADDR, 1) // the same ifindex and address as the bridged namespace's
	own(unix.RTM_NEWADDR, 2)
	peer(42, unix.RTM_NEWADDR, 3)
	peer(7, unix.RTM_NEWADDR, 1)
	check("after events of three namespaces", map[int32][]string{-1: {key(1), key(2)}, 7: {key(1)}, 42: {key(1), key(3)}})
	if b, ok := mir.Get(addr, PeerKey(42, key(1))); !ok || b[unix.SizeofNlMsghdr+2] != 42 {
		t.Errorf("namespace 42's entry: % x %v, want its own message", b, ok)
	}
	if b, ok := mir.Get(addr, key(1)); !ok || b[unix.SizeofNlMsghdr+2] != 0 {
		t.Errorf("the bridged namespace's entry: % x %v, want its own message", b, ok)
	}

	own(unix.RTM_DELADDR, 1) // leaves the peers' entries of the same key
	check("after deleting the bridged namespace's", map[int32][]string{-1: {key(2)}, 7: {key(1)}, 42: {key(1), key(3)}})
	peer(42, unix.RTM_DELADDR, 1) // leaves namespace 7's
	check("after deleting namespace 42's", map[int32][]string{-1: {key(2)}, 7: {key(1)}, 42: {key(3)}})

	// A resync dumps the bridged namespace alone: the peers' entries,
	// which no dump covers, go with the table it replaces.
	apply(frame.KindResyncBegin, 0, 0, nil)
	apply(frame.KindEvent, frame.FlagDump, 0, addrMsg(unix.RTM_NEWADDR, 1, 4))
	peer(42, unix.RTM_NEWADDR, 5) // live during the resync: kept
	apply(frame.KindResyncEnd, 0, 0, nil)
	check("after a resync", map[int32][]string{-1: {key(4)}, 42: {key(5)}})
	if st := mir.Stats(); st.Entries != 2 {
		t.Errorf("stats %+v, want 2 entries", st)
	}
}

func TestPeerKey(t *testing.T) {
	for _, nsid := range []int32{0, 42, -1, 1<<31 - 1} {
		k := PeerKey(nsid, "link 0/7")
		if got, peer, key := SplitPeerKey(k); got != nsid || !peer || key != "link 0/7" {
			t.Errorf("SplitPeerKey(%q) = %d %v %q", k, got, peer, key)
		}
	}
	if k := PeerKey(42, "link 0/7"); k != "nsid 42: link 0/7" {
		t.Errorf("PeerKey: %q", k)
	}
	// The bridged namespace's keys, the nsid table's among them, are not
	// a peer's.
	for _, k := range []string{"link 0/7", "nsid 5", "nsid x: link 0/7", "nsid 99999999999: link 0/7"} {
		if nsid, peer, key := SplitPeerKey(k); peer || nsid != 0 || key != k {
			t.Errorf("SplitPeerKey(%q) = %d %v %q, want the key itself", k, nsid, peer, key)
		}
	}
}
