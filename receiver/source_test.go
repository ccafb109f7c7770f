package receiver

import (
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
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
// checks its frames as its own (a gap, the Source's drops) and owns it.
func TestSource(t *testing.T) {
	link := streams.Default()[0]
	g := streams.Map{}.Addr(link, streams.Raw)
	src := newFakeSource()
	for _, seq := range []uint64{1, 2, 5} {
		h := frame.Header{Kind: frame.KindEvent, Family: link.Family, Group: link.Group, Epoch: 7 << 20, Seq: seq, Time: time.Now().UnixNano()}
		d := mcast.Datagram{Group: g, Data: frame.Append(nil, h, []byte("x"))}
		if seq == 5 {
			d.Drops = 2
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
	for len(got) < 5 {
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
	want := "[event event " + SocketDrops.String() + " " + Gap.String() + " event]"
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
