package receiver

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// A Receiver with its request socket open, closed twice, leaves no
// descriptor and no goroutine, and opens no request socket again.
func TestReceiverCloseLeavesNothing(t *testing.T) {
	check := testenv.NoLeaks(t)
	addr, _ := streams.Lookup("ipv4-ifaddr")
	r, err := New(&Config{Streams: []streams.Stream{addr}, Map: testMap(), Insecure: true}) // whatever the host's port start
	if err != nil {
		t.Fatal(err)
	}
	joined := len(testenv.OpenFDs(t))
	if err := r.RequestResync(addr); err != nil { // opens the request socket
		t.Fatal(err)
	}
	if n := len(testenv.OpenFDs(t)); n <= joined {
		t.Fatalf("RequestResync opened no socket (%d descriptors, %d before)", n, joined)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := r.RequestResync(addr); !errors.Is(err, mcast.ErrClosed) {
		t.Errorf("RequestResync after Close: %v, want mcast.ErrClosed", err)
	}
	check()
}

// Run ends with its context and closes nothing: the tables stay. Close
// while Run runs makes it return nil; then everything is closed.
func TestMirrorRunThenCloseLeavesNothing(t *testing.T) {
	check := testenv.NoLeaks(t)
	addr, _ := streams.Lookup("ipv4-ifaddr")
	m := testMap()
	w := newWire(t, m)
	mir, err := NewMirror(&MirrorConfig{Streams: []streams.Stream{addr}, Map: m, Mcast: &mcast.ReceiverConfig{AnySource: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mir.Close() })
	opened := testenv.OpenFDs(t)

	run := func() (<-chan error, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- mir.Run(ctx) }()
		return done, cancel
	}
	result := func(done <-chan error) error {
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return")
			return nil
		}
	}

	// A resync fills the table while Run runs.
	done, cancel := run()
	const epoch = 7
	w.frame(addr, frame.KindResyncBegin, epoch, 1, nil)
	dump := frame.Header{Kind: frame.KindEvent, Flags: frame.FlagDump, Group: addr.Group, Epoch: epoch, Seq: 2, Time: time.Now().UnixNano()}
	w.send(addr, streams.Raw, frame.Append(nil, dump, addrMsg(unix.RTM_NEWADDR, 2, 1)))
	w.frame(addr, frame.KindResyncEnd, epoch, 3, nil)
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := mir.WaitSynced(ctx); err != nil {
		t.Fatalf("not synced: %v", err)
	}
	cancel()
	if err := result(done); err != nil {
		t.Fatalf("Run ended by its context: %v", err)
	}
	if n := len(testenv.OpenFDs(t)); n != len(opened) {
		t.Errorf("Run changed the open descriptors: %d before, %d after", len(opened), n)
	}
	if mir.Len(addr) != 1 {
		t.Errorf("table has %d entries after Run, want 1", mir.Len(addr))
	}

	// Close while Run runs.
	done, cancel = run()
	defer cancel()
	if err := mir.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := result(done); err != nil {
		t.Errorf("Run ended by Close: %v", err)
	}
	if err := mir.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	w.snd.Close()
	check()
}
