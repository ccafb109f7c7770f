package fleet

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/streams"
)

// hostLog is what a HostWatcher reported.
type hostLog struct {
	mu     sync.Mutex
	found  []FoundHost
	listed []string
	ready  bool // Listed was called
}

func (l *hostLog) watch(t *testing.T, ctx context.Context, url string) {
	w := &HostWatcher{
		Conn: Conn{URL: url}, Every: 20 * time.Millisecond, Logf: t.Logf,
		Found: func(h FoundHost) error {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.found = append(l.found, h)
			return nil
		},
		Listed: func(hosts []string) {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.ready {
				t.Errorf("Listed called twice: %q, then %q", l.listed, hosts)
			}
			l.listed, l.ready = hosts, true
		},
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "the hosts at the start listed", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.ready })
}

func (l *hostLog) has(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.found, func(h FoundHost) bool { return h.Name == name })
}

// TestHostWatcher: a watcher reports the hosts there at its start, then
// each host that starts publishing later, once, Late; one started before
// the stream existed waits, and finds them all, Late. A late host's
// consumer (ForHost) reads every frame it published before it was made.
func TestHostWatcher(t *testing.T) {
	testenv.RequireRoot(t)
	srv := natsServer(t, 0, "")
	url := srv.ClientURL()
	testenv.InNewNetNS(t, func() error {
		ctx := context.Background()
		b := newBridge(t)
		early := &hostLog{}
		early.watch(t, ctx, url) // no stream yet
		pa, stopA := publisher(t, ctx, PublisherConfig{Conn: Conn{URL: url}, Host: "a", Streams: []streams.Stream{link}})
		defer stopA()
		b.event(t, false)
		waitFor(t, "host a's first frame published", func() bool { return pa.Stats().Published == 1 })
		w := &hostLog{}
		w.watch(t, ctx, url)

		// Host b starts publishing after w started: its frames (the
		// bridge's, from here on) come whole to a consumer made once w
		// found it.
		_, stopB := publisher(t, ctx, PublisherConfig{Conn: Conn{URL: url}, Host: "b", Streams: []streams.Stream{link}})
		defer stopB()
		first := len(b.sent)
		for range 5 {
			b.event(t, false)
		}
		waitFor(t, "host b found", func() bool { return w.has("b") })
		l := listen(t, (&SourceConfig{Conn: Conn{URL: url}}).ForHost(FoundHost{Name: "b", Late: true}))
		l.wait(t, "host b's frames from its first", func(evs [][]byte, notes []string) bool {
			return samePayloads(evs, b.sent[first:]) && len(notes) == 0
		})

		// Host c after b: by the time c is found, b was seen again, and
		// not reported again.
		_, stopC := publisher(t, ctx, PublisherConfig{Conn: Conn{URL: url}, Host: "c", Streams: []streams.Stream{link}})
		defer stopC()
		b.event(t, false)
		waitFor(t, "host c found", func() bool { return w.has("c") && early.has("c") })
		want := []FoundHost{{Name: "a"}, {Name: "b", Late: true}, {Name: "c", Late: true}}
		w.mu.Lock()
		if !slices.Equal(w.found, want) || !slices.Equal(w.listed, []string{"a"}) {
			t.Errorf("listed %q, found %+v; want listed [a], found %+v", w.listed, w.found, want)
		}
		w.mu.Unlock()
		late := []FoundHost{{Name: "a", Late: true}, {Name: "b", Late: true}, {Name: "c", Late: true}}
		early.mu.Lock()
		sorted := slices.SortedFunc(slices.Values(early.found), func(x, y FoundHost) int { return strings.Compare(x.Name, y.Name) })
		if len(early.listed) != 0 || !slices.Equal(sorted, late) {
			t.Errorf("the watcher started before the stream: listed %q, found %+v; want none listed, found %+v", early.listed, early.found, late)
		}
		early.mu.Unlock()
		return nil
	})
}

// TestForHost: a host's config for a HostWatcher's host: its durable
// consumer, and every frame of a host found late unless a start is given.
func TestForHost(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		cfg  SourceConfig
		h    FoundHost
		want SourceConfig
	}{
		{SourceConfig{}, FoundHost{Name: "a"}, SourceConfig{Host: "a"}},
		{SourceConfig{}, FoundHost{Name: "a", Late: true}, SourceConfig{Host: "a", All: true}},
		{SourceConfig{Durable: "ops"}, FoundHost{Name: "a", Late: true}, SourceConfig{Host: "a", Durable: "ops_a", All: true}},
		{SourceConfig{Durable: "ops"}, FoundHost{Name: "a"}, SourceConfig{Host: "a", Durable: "ops_a"}},
		{SourceConfig{StartSeq: 7}, FoundHost{Name: "a", Late: true}, SourceConfig{Host: "a", StartSeq: 7}},
		{SourceConfig{StartTime: start}, FoundHost{Name: "a", Late: true}, SourceConfig{Host: "a", StartTime: start}},
		{SourceConfig{All: true}, FoundHost{Name: "a"}, SourceConfig{Host: "a", All: true}},
	} {
		got := tc.cfg.ForHost(tc.h)
		if got.Host != tc.want.Host || got.Durable != tc.want.Durable || got.All != tc.want.All || got.StartSeq != tc.want.StartSeq || !got.StartTime.Equal(tc.want.StartTime) {
			t.Errorf("%+v.ForHost(%+v) = %+v, want %+v", tc.cfg, tc.h, got, tc.want)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%+v.ForHost(%+v): %v", tc.cfg, tc.h, err)
		}
	}
}
