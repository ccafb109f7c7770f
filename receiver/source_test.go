package receiver

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
	"golang.org/x/sys/unix"
)

// fakeSource hands out the datagrams it holds, then waits for Close.
type fakeSource struct {
	ds     []mcast.Datagram
	joined map[netip.AddrPort]bool
	closed chan struct{}
}

func newFakeSource() *fakeSource {
	return &fakeSource{joined: map[netip.AddrPort]bool{}, closed: make(chan struct{})}
}

func (f *fakeSource) Join(g netip.AddrPort) error     { f.joined[g] = true; return nil }
func (f *fakeSource) Leave(g netip.AddrPort) error    { delete(f.joined, g); return nil }
func (f *fakeSource) SetReadDeadline(time.Time) error { return nil }
func (f *fakeSource) Close() error {
	select {
	case <-f.closed:
	default:
		close(f.closed)
	}
	return nil
}

func (f *fakeSource) ReadBatchUntil(ds []mcast.Datagram, until time.Time) (int, error) {
	if len(f.ds) > 0 {
		n := copy(ds, f.ds)
		f.ds = f.ds[n:]
		return n, nil
	}
	var timer <-chan time.Time
	if !until.IsZero() {
		timer = time.After(time.Until(until))
	}
	select {
	case <-f.closed:
		return 0, mcast.ErrClosed
	case <-timer:
		return 0, os.ErrDeadlineExceeded
	}
}

// TestSource: a receiver reading another Source than the loopback groups
// checks its frames as its own (a gap, the Source's drops, and those
// before it) and owns it.
func TestSource(t *testing.T) {
	link := streams.Default()[0]
	g := streams.Map{}.Addr(link, streams.Raw)
	src := newFakeSource()
	for _, seq := range []uint64{1, 2, 5, 9} {
		h := frame.Header{Kind: frame.KindEvent, Family: link.Family, Group: link.Group, Epoch: 7 << 20, Seq: seq, Time: time.Now().UnixNano()}
		d := mcast.Datagram{Group: g, Data: frame.Append(nil, h, []byte("x"))}
		switch seq {
		case 5:
			d.Drops = 2
		case 9:
			d.Lost = 3
		}
		src.ds = append(src.ds, d)
	}
	if _, err := New(&Config{Source: newFakeSource(), Mcast: &mcast.ReceiverConfig{}}); err == nil {
		t.Error("New took a Source with Mcast set")
	}
	r, err := New(&Config{Streams: []streams.Stream{link}, Source: src, NoSilentNotices: true})
	if err != nil {
		t.Fatal(err)
	}
	if !src.joined[g] {
		t.Errorf("the source joined %v, not %v", src.joined, g)
	}
	var got []string
	evs := make([]Event, 8)
	for len(got) < 8 {
		n, err := r.ReadBatch(evs)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs[:n] {
			if ev.IsNotice() {
				got = append(got, ev.Notice.Kind.String())
			} else {
				got = append(got, "event")
			}
		}
	}
	want := "[event event " + SocketDrops.String() + " " + Gap.String() + " event " + UpstreamDrops.String() + " " + Gap.String() + " event]"
	if s := fmtList(got); s != want {
		t.Errorf("got %s, want %s", s, want)
	}
	if err := r.RequestResync(); !errors.Is(err, ErrNoRequests) {
		t.Errorf("RequestResync: %v, want ErrNoRequests", err)
	}
	if r.Mcast() != nil {
		t.Error("Mcast() is not nil with a Source")
	}
	r.Close()
	select {
	case <-src.closed:
	default:
		t.Error("Close left the Source open")
	}
}

func fmtList(ss []string) string {
	s := "["
	for i, x := range ss {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s + "]"
}

// askingSource is a Source and a Requester: its datagrams come through a
// channel, and a request queues the answer its answer func makes.
type askingSource struct {
	ch       chan mcast.Datagram
	closed   chan struct{}
	deadline chan time.Time // the last read deadline set, if not yet taken
	asked    chan []streams.Stream
	answer   func(s streams.Stream) []mcast.Datagram
}

func newAskingSource(answer func(s streams.Stream) []mcast.Datagram) *askingSource {
	return &askingSource{ch: make(chan mcast.Datagram, 64), closed: make(chan struct{}), deadline: make(chan time.Time, 1), asked: make(chan []streams.Stream, 16), answer: answer}
}

func (a *askingSource) Join(netip.AddrPort) error  { return nil }
func (a *askingSource) Leave(netip.AddrPort) error { return nil }
func (a *askingSource) SetReadDeadline(t time.Time) error {
	select {
	case <-a.deadline: // replaced
	default:
	}
	a.deadline <- t
	return nil
}

func (a *askingSource) Close() error {
	select {
	case <-a.closed:
	default:
		close(a.closed)
	}
	return nil
}

func (a *askingSource) RequestResync(ss ...streams.Stream) error {
	a.asked <- ss
	for _, s := range ss {
		for _, d := range a.answer(s) {
			a.ch <- d
		}
	}
	return nil
}

func (a *askingSource) ReadBatchUntil(ds []mcast.Datagram, until time.Time) (int, error) {
	for {
		var timer <-chan time.Time
		if !until.IsZero() {
			t := time.NewTimer(time.Until(until))
			defer t.Stop()
			timer = t.C
		}
		select {
		case d := <-a.ch:
			ds[0] = d
			return 1, nil
		case <-a.closed:
			return 0, mcast.ErrClosed
		case <-timer:
			return 0, os.ErrDeadlineExceeded
		case d := <-a.deadline:
			if !d.IsZero() && (until.IsZero() || d.Before(until)) {
				until = d
			}
		}
	}
}

// TestMirrorAsksThroughItsSource: a Mirror reading a Source that is a
// Requester (package fleet's) asks it for resyncs, and fills its table
// from the answer that comes back through it; a Source that is none is
// refused, since the Mirror could never fill its tables.
func TestMirrorAsksThroughItsSource(t *testing.T) {
	addr, _ := streams.Lookup("ipv4-ifaddr")
	reqAddr := netip.MustParseAddrPort("127.0.0.1:40000") // the publisher's request socket
	src := newAskingSource(func(s streams.Stream) []mcast.Datagram {
		var ds []mcast.Datagram
		for _, f := range [][]byte{
			answerFrame(s, frame.KindResyncBegin, 0, 5<<20, 0, nil),
			answerFrame(s, frame.KindEvent, frame.FlagDump, 5<<20, 0, addrMsg(unix.RTM_NEWADDR, 2, 1)),
			answerFrame(s, frame.KindEvent, frame.FlagDump, 5<<20, 0, addrMsg(unix.RTM_NEWADDR, 2, 2)),
			answerFrame(s, frame.KindResyncEnd, 0, 5<<20, 0, countPayload(2)),
		} {
			ds = append(ds, mcast.Datagram{Group: reqAddr, Data: f})
		}
		return ds
	})
	if _, err := NewMirror(&MirrorConfig{Streams: []streams.Stream{addr}, Source: newFakeSource()}); !errors.As(err, new(*ConfigError)) {
		t.Errorf("NewMirror with a Source that cannot ask: %v, want a *ConfigError", err)
	}
	mir, ctx, stop := runMirror(t, &MirrorConfig{Streams: []streams.Stream{addr}, Source: src})
	defer stop()
	select {
	case ss := <-src.asked:
		if len(ss) != 1 || ss[0].Name != addr.Name {
			t.Errorf("asked for %v, want %s", ss, addr.Name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the Mirror asked its Source for nothing")
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := mir.WaitSynced(wctx); err != nil {
		t.Fatalf("not in sync: %v; %+v", err, mir.Stats())
	}
	want := []string{"addr 2/2 10.0.0.1/24 peer -", "addr 2/2 10.0.0.2/24 peer -"}
	if got := mir.Keys(addr); !slices.Equal(got, want) {
		t.Errorf("table %q, want %q", got, want)
	}
}
