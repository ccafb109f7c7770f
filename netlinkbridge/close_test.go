package netlinkbridge

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// runner is a Bridge or a Set.
type runner interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
	Close() error
}

// startRun starts r.Run, waits until r is ready, and returns Run's result
// channel and the function that cancels its context.
func startRun(t *testing.T, r runner) (<-chan error, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-r.Ready():
	case err := <-done:
		t.Fatalf("Run returned before it was ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready after 10s")
	}
	return done, cancel
}

func runResult(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// listen joins s's raw group in the calling thread's namespace.
func listen(s streams.Stream) (*mcast.Receiver, error) {
	r, err := mcast.NewReceiver(&mcast.ReceiverConfig{AnySource: true})
	if err != nil {
		return nil, err
	}
	if err := r.Join((streams.Map{}).Addr(s, streams.Raw)); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// waitGoodbye reads r until a goodbye frame comes.
func waitGoodbye(t *testing.T, r *mcast.Receiver) {
	t.Helper()
	ds := make([]mcast.Datagram, 16)
	end := time.Now().Add(5 * time.Second)
	for {
		n, err := r.ReadBatchUntil(ds, end)
		if err != nil {
			t.Fatalf("no goodbye frame: %v", err)
		}
		for _, d := range ds[:n] {
			if h, _, err := frame.Parse(d.Data); err == nil && h.Kind == frame.KindGoodbye {
				return
			}
		}
	}
}

// A Set of two families on real sockets: Run says goodbye and closes
// nothing; Close closes everything, once.
func TestSetRunThenCloseLeavesNothing(t *testing.T) {
	testenv.RequireRoot(t)
	check := testenv.NoLeaks(t)
	link, _ := streams.Lookup("link")
	ue, _ := streams.Lookup("uevent")
	var set *Set
	var rcv *mcast.Receiver
	t.Cleanup(func() {
		if set != nil {
			set.Close()
		}
		if rcv != nil {
			rcv.Close()
		}
	})
	testenv.InNewNetNS(t, func() (err error) {
		if set, err = NewSet(&Config{Streams: []streams.Stream{link, ue}, NoHeartbeats: true, Logger: quiet}); err != nil {
			return err
		}
		rcv, err = listen(link)
		return err
	})
	if n := len(set.Bridges()); n != 2 {
		t.Fatalf("%d bridges, want 2", n)
	}
	for _, b := range set.Bridges() {
		for _, c := range b.owned {
			if c == io.Closer(set.snd) {
				t.Errorf("the %s bridge would close the sender it shares", streams.FamilyName(b.Family()))
			}
		}
	}
	opened := testenv.OpenFDs(t)

	done, cancel := startRun(t, set)
	cancel()
	if err := runResult(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	waitGoodbye(t, rcv) // sent on the shared sender, still open
	if after := testenv.OpenFDs(t); len(after) != len(opened) {
		t.Errorf("Run changed the open descriptors: %d before, %d after", len(opened), len(after))
	}

	if err := set.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := set.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := set.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
	rcv.Close()
	check()
}

// Close while Run runs: Run says goodbye and returns nil before Close
// closes anything, and Close returns only after it.
func TestCloseStopsRun(t *testing.T) {
	testenv.RequireRoot(t)
	check := testenv.NoLeaks(t)
	link, _ := streams.Lookup("link")
	var b *Bridge
	var rcv *mcast.Receiver
	t.Cleanup(func() {
		if b != nil {
			b.Close()
		}
		if rcv != nil {
			rcv.Close()
		}
	})
	testenv.InNewNetNS(t, func() (err error) {
		if b, err = New(&Config{Streams: []streams.Stream{link}, NoHeartbeats: true, Logger: quiet}); err != nil {
			return err
		}
		rcv, err = listen(link)
		return err
	})
	done, _ := startRun(t, b)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Run's goodbye (raw and JSON on link) went out before Close returned.
	if n := b.Stats().Datagrams; n < 2 {
		t.Errorf("%d datagrams sent when Close returned, want the 2 goodbye frames", n)
	}
	if err := runResult(t, done); err != nil {
		t.Errorf("Run ended by Close: %v", err)
	}
	waitGoodbye(t, rcv)
	rcv.Close()
	check()
}

// A Bridge or a Set that is never run is closed by Close alone.
func TestCloseWithoutRunLeavesNothing(t *testing.T) {
	testenv.RequireRoot(t)
	link, _ := streams.Lookup("link")
	addr, _ := streams.Lookup("ipv4-ifaddr")
	ue, _ := streams.Lookup("uevent")
	for _, c := range []struct {
		name string
		open func() (runner, error)
	}{
		{"bridge", func() (runner, error) {
			return New(&Config{Streams: []streams.Stream{link, addr}, Logger: quiet})
		}},
		{"set", func() (runner, error) {
			return NewSet(&Config{Streams: []streams.Stream{link, ue}, Logger: quiet})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			check := testenv.NoLeaks(t)
			before := len(testenv.OpenFDs(t))
			var r runner
			testenv.InNewNetNS(t, func() (err error) { r, err = c.open(); return err })
			if n := len(testenv.OpenFDs(t)); n <= before {
				t.Fatalf("%d descriptors open after New, %d before: nothing opened?", n, before)
			}
			if err := r.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := r.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			check()
		})
	}
}

// New and NewSet that fail part-way close what they had opened.
func TestFailedNewLeavesNothing(t *testing.T) {
	testenv.RequireRoot(t)
	link, _ := streams.Lookup("link")
	ue, _ := streams.Lookup("uevent")
	proc, _ := streams.Lookup("proc")
	for _, c := range []struct {
		name string
		open func() (runner, error)
		want string // in the error
	}{
		{"bad map", func() (runner, error) {
			return New(&Config{Map: streams.Map{Base: netip.MustParseAddr("10.0.0.0")}, Logger: quiet})
		}, "Config.Map"},
		// The sender is open when the streams are checked.
		{"mixed families", func() (runner, error) {
			return New(&Config{Streams: []streams.Stream{link, ue}, Logger: quiet})
		}, "Set"},
		// The sender is open when the source fails: process events come
		// only in the initial namespace, and this is a new one (refused
		// up front, or by the kernel where that cannot be told).
		{"source fails", func() (runner, error) {
			return New(&Config{Streams: []streams.Stream{proc}, Private: cleartext("proc"), Logger: quiet})
		}, "process events"},
		// The rtnetlink bridge (source, dump socket, request listener) and
		// the shared sender are open when the second family fails.
		{"second family fails", func() (runner, error) {
			return NewSet(&Config{Streams: []streams.Stream{link, proc}, Private: cleartext("proc"), Logger: quiet})
		}, "process events"},
	} {
		t.Run(c.name, func(t *testing.T) {
			check := testenv.NoLeaks(t)
			var err error
			testenv.InNewNetNS(t, func() error {
				r, e := c.open()
				if e == nil {
					r.Close()
				}
				err = e
				return nil
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one about %q", err, c.want)
			}
			check()
		})
	}
}

// Run and Close on fakes: Close closes nothing the caller passed to
// NewWithSource, Run closes nothing at all, and Run runs once.
func TestRunAndCloseLeaveTheCallersSource(t *testing.T) {
	check := testenv.NoLeaks(t)
	src := newFakeSource()
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{NoHeartbeats: true, Logger: quiet}, src, &fakeDumper{}, sink)
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := startRun(t, b)
	cancel()
	if err := runResult(t, done); err != nil {
		t.Fatal(err)
	}
	if err := b.Run(context.Background()); err == nil || errors.Is(err, ErrClosed) {
		t.Errorf("second Run: %v, want an error that it ran already", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case <-src.closed:
		t.Error("the caller's source was closed")
	default:
	}
	goodbyes := 0
	for _, s := range sink.out {
		if k, _ := kindSeq(t, s.data); k == frame.KindGoodbye {
			goodbyes++
		}
	}
	if want := 2 * len(streams.Default()); goodbyes != want { // raw and JSON
		t.Errorf("%d goodbye frames, want %d", goodbyes, want)
	}
	check()

	// Closed before it ran: Run refuses.
	b, err = NewWithSource(&Config{Logger: quiet}, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := b.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
}
