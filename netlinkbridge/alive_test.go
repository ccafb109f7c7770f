package netlinkbridge

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// pings counts Config.Alive calls and signals each.
type pings struct {
	n  atomic.Int64
	ch chan struct{}
}

func newPings() *pings { return &pings{ch: make(chan struct{}, 1000)} }

func (p *pings) alive() { p.n.Add(1); p.ch <- struct{}{} }

// await waits for k more calls; it fails t after 5 s.
func (p *pings) await(t *testing.T, k int, what string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for range k {
		select {
		case <-p.ch:
		case <-timeout:
			t.Fatalf("no Alive call %s (in 5 s)", what)
		}
	}
}

// TestAliveStopsWhenALoopHangs: Alive is called every AliveEvery while
// every loop comes round, even an idle one without heartbeats (the loop
// wakes by itself); once one loop hangs in its read (held, deadlines
// ignored) the calls stop though the others go on, and they start again
// when it comes round.
func TestAliveStopsWhenALoopHangs(t *testing.T) {
	const every = 20 * time.Millisecond
	link, _ := streams.Lookup("link")
	for _, c := range []struct {
		name    string
		bridges int
	}{{"lone bridge", 1}, {"one of a set's two", 2}} {
		t.Run(c.name, func(t *testing.T) {
			p := newPings()
			var bridges []*Bridge
			var srcs []*fakeSource
			for range c.bridges {
				src := newFakeSource()
				cfg := &Config{Streams: []streams.Stream{link}, NoHeartbeats: true, NoRequests: true, Logger: quiet, AliveEvery: every}
				if c.bridges == 1 {
					cfg.Alive = p.alive // Bridge.Run watches itself
				} else {
					cfg.Alive = func() {} // loops wake as watched; the set's watch below calls p
				}
				b, err := NewWithSource(cfg, src, nil, &fakeSink{})
				if err != nil {
					t.Fatal(err)
				}
				if c.bridges > 1 {
					b.alive = nil // as NewSet does
				}
				bridges, srcs = append(bridges, b), append(srcs, src)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, len(bridges))
			for _, b := range bridges {
				go func() { done <- b.Run(ctx) }()
			}
			if c.bridges > 1 {
				stop := startAlive(bridges, every, p.alive) // as Set.Run does
				defer stop()
			}
			defer func() {
				cancel()
				for range bridges {
					if err := <-done; err != nil {
						t.Errorf("Run: %v", err)
					}
				}
			}()

			p.await(t, 3, "from idle loops without heartbeats")

			frozen := srcs[len(srcs)-1]
			release := sync.OnceFunc(frozen.hold())
			defer release() // before Run's end is awaited: a held read ignores ctx
			waitFor(t, "the loop parked in its read", frozen.isParked)
			// A check in flight as the read parked (it loaded the turns
			// before the last one, and calls Alive after), and the next,
			// which counts the turn that led into the read, may still call
			// Alive; none after them. A watch that ignored the hang would
			// call it every interval: 25 times here.
			before := p.n.Load()
			time.Sleep(25 * every) // a window for calls that must not come
			if got := p.n.Load() - before; got > 2 {
				t.Fatalf("%d Alive calls in %v while a loop hung (at most 2 may straddle the hang)", got, 25*every)
			}
			if c.bridges > 1 { // the other loop went on meanwhile
				turns := bridges[0].turns.Load()
				waitFor(t, "the other loop comes round", func() bool { return bridges[0].turns.Load() > turns+2 })
			}
			for len(p.ch) > 0 {
				<-p.ch
			}
			release()
			p.await(t, 2, "once the loop came round again")
		})
	}
}

// TestAliveArmsNoDeadlinePerRead: while watched, a busy loop keeps the
// read deadline it armed instead of setting a new one for every read.
func TestAliveArmsNoDeadlinePerRead(t *testing.T) {
	link, _ := streams.Lookup("link")
	var batches [][]kernel.Message
	for i := range 200 {
		batches = append(batches, []kernel.Message{{Group: 1, Data: linkMsg(uint32(i+1), "x")}})
	}
	src := newFakeSource(batches...)
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link}, NoHeartbeats: true, NoRequests: true, Logger: quiet,
		Alive: func() {}, AliveEvery: time.Hour}, src, nil, &fakeSink{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	waitFor(t, "200 events", func() bool { return b.Stats().Events == 200 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if n := len(src.deadlines); n == 0 || n > 5 {
		t.Fatalf("%d read deadlines set for 200 reads, want 1 to 5: %v", n, src.deadlines)
	}
	if first := src.deadlines[0]; time.Until(first) < 20*time.Minute {
		t.Fatalf("first deadline %v, want about half an hour ahead (AliveEvery/2)", first)
	}
}

// An AliveEvery below zero is refused.
func TestAliveEveryValidated(t *testing.T) {
	err := (&Config{AliveEvery: -time.Second}).Validate()
	if ce, ok := err.(*ConfigError); !ok || ce.Field != "AliveEvery" {
		t.Fatalf("Validate: %v, want a ConfigError for AliveEvery", err)
	}
}

// A Set calls Alive once per AliveEvery for all its bridges (they do not
// each call it), and stops when one family's loop hangs: here the uevent
// bridge's real socket is swapped for a fake source held in its read.
func TestSetAliveWatchesEveryBridge(t *testing.T) {
	testenv.RequireRoot(t)
	const every = 20 * time.Millisecond
	link, _ := streams.Lookup("link")
	ue, _ := streams.Lookup("uevent")
	p := newPings()
	var set *Set
	t.Cleanup(func() {
		if set != nil {
			set.Close()
		}
	})
	testenv.InNewNetNS(t, func() (err error) {
		set, err = NewSet(&Config{Streams: []streams.Stream{link, ue}, NoHeartbeats: true, Logger: quiet, Alive: p.alive, AliveEvery: every})
		return err
	})
	if set.alive == nil || set.aliveEvery != every {
		t.Fatalf("the Set watches nothing (alive set: %v, every %v)", set.alive != nil, set.aliveEvery)
	}
	for _, b := range set.Bridges() {
		if b.alive != nil || b.aliveWake != every/2 {
			t.Fatalf("%s bridge: calls Alive itself (%v) or wakes every %v, want %v", streams.FamilyName(b.Family()), b.alive != nil, b.aliveWake, every/2)
		}
	}
	fake := newFakeSource()
	uev := set.Bridges()[1]
	uev.src = fake // its socket stays in owned: Close closes it

	done, cancel := startRun(t, set)
	start := time.Now()
	p.await(t, 5, "from a Set of two idle bridges")
	if n, max := p.n.Load(), int64(time.Since(start)/every)+2; n > max {
		t.Errorf("%d Alive calls in %v: more than one per AliveEvery (%d at most)", n, time.Since(start), max)
	}

	release := sync.OnceFunc(fake.hold())
	defer release()
	waitFor(t, "the uevent loop parked in its read", fake.isParked)
	before := p.n.Load()
	time.Sleep(25 * every) // a window for calls that must not come
	if got := p.n.Load() - before; got > 1 {
		t.Fatalf("%d Alive calls in %v while the uevent loop hung", got, 25*every)
	}
	release()
	for len(p.ch) > 0 {
		<-p.ch
	}
	p.await(t, 2, "once the uevent loop came round again")
	cancel()
	if err := runResult(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
