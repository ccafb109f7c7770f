package netlinkbridge

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// fakeProbe answers Config.GenlProbe from a table it lets tests change,
// and counts its calls.
type fakeProbe struct {
	mu     sync.Mutex
	answer map[string]kernel.Access
	err    error
	calls  int
}

func (p *fakeProbe) probe(_ int, ss []streams.Stream) (map[string]kernel.Access, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.err != nil {
		return nil, p.err
	}
	out := map[string]kernel.Access{}
	for _, s := range ss {
		if a, ok := p.answer[s.Name]; ok {
			out[s.Name] = a
		}
	}
	return out, nil
}

func (p *fakeProbe) set(name string, a kernel.Access) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answer[name] = a
}

// A group nlmcast's catalog calls unprivileged is privileged when this
// kernel refuses it to a socket without capabilities (it added a
// capability flag): refused without an entry in Private, before anything is opened.
func TestProbedPrivilegedRefused(t *testing.T) {
	defer testenv.NoLeaks(t)()
	st, _ := streams.Lookup("thermal:event")
	if st.Privileged {
		t.Fatal("the catalog marks thermal:event privileged: pick a group it does not")
	}
	p := &fakeProbe{answer: map[string]kernel.Access{st.Name: kernel.AccessPrivileged}}
	cfg := &Config{Streams: []streams.Stream{st}, GenlProbe: p.probe, Logger: quiet}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate, which probes nothing: %v", err)
	}
	var pe *PrivilegedError
	if _, err := New(cfg); !errors.As(err, &pe) || pe.Stream.Name != st.Name || !pe.Probed || !pe.Stream.Privileged {
		t.Fatalf("New: %v (%+v), want a probed *PrivilegedError for %s", err, pe, st.Name)
	}
	if _, err := NewSet(cfg); !errors.As(err, &pe) || !pe.Probed {
		t.Fatalf("NewSet: %v, want a probed *PrivilegedError", err)
	}
	if _, err := NewWithSource(cfg, newFakeSource(), nil, &fakeSink{}); !errors.As(err, &pe) || !pe.Probed {
		t.Fatalf("NewWithSource: %v, want a probed *PrivilegedError", err)
	}

	// Named in Private, it is bridged, and marked privileged.
	cfg.Private = cleartext(cfg.Streams[0].Name)
	b, err := NewWithSource(cfg, newFakeSource(), nil, &fakeSink{})
	if err != nil {
		t.Fatal(err)
	}
	if !b.streams[0].stream.Privileged {
		t.Error("the bridged stream is not marked privileged")
	}
	b.Close()
	if cfg.Streams[0].Privileged {
		t.Error("the caller's Config was changed")
	}

	// Open, or when the probe fails, the catalog decides.
	cfg.Private = nil
	for _, probe := range []*fakeProbe{
		{answer: map[string]kernel.Access{st.Name: kernel.AccessOpen}},
		{answer: map[string]kernel.Access{}},
		{err: errors.New("no generic netlink")},
	} {
		cfg.GenlProbe = probe.probe
		b, err := NewWithSource(cfg, newFakeSource(), nil, &fakeSink{})
		if err != nil {
			t.Fatalf("probe %+v: %v", probe, err)
		}
		b.Close()
		if probe.calls != 1 {
			t.Errorf("probe called %d times, want 1", probe.calls)
		}
	}
}

// A group that registers after the bridge started is probed before it is
// joined: one the kernel keeps to privileged sockets is not joined unless
// exposed; an open one is.
func TestGenlPrivilegedGroupAppears(t *testing.T) {
	ev, _ := streams.Lookup("thermal:event")
	sampling, _ := streams.Lookup("thermal:sampling")
	if ev.Privileged || sampling.Privileged {
		t.Fatal("the catalog marks thermal's groups privileged: pick groups it does not")
	}
	// Not registered at start: the probe knows nothing of them.
	p := &fakeProbe{answer: map[string]kernel.Access{}}
	src := &joinSource{fakeSource: newFakeSource(), joined: map[uint32]bool{}}
	cfg := &Config{Streams: []streams.Stream{ev, sampling}, Encodings: []streams.Encoding{streams.Raw}, GenlProbe: p.probe, Logger: quiet}
	b, err := NewWithSource(cfg, src, nil, &fakeSink{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()

	p.set(ev.Name, kernel.AccessPrivileged)
	p.set(sampling.Name, kernel.AccessOpen)
	src.push([]kernel.Message{{Group: decode.CtrlGroup, Data: testmsg.Ctrl(t, testmsg.CtrlCmdNewFamily, "thermal", 40, map[string]uint32{"event": 33, "sampling": 34})}}, nil)
	// The family's groups are handled one by one, in the message's order,
	// which the map above leaves open: wait for both outcomes before
	// looking at either.
	waitFor(t, "the open group to be joined and the privileged one refused", func() bool {
		s := b.Stats()
		return s.GenlJoined == 1 && src.has(34) && s.GenlRefused == 1
	})
	if s := b.Stats(); src.has(33) || s.GenlRefused != 1 || s.GenlJoined != 1 {
		t.Errorf("privileged group joined %v, refused %d times, %d joined; want not joined, refused once, one joined", src.has(33), s.GenlRefused, s.GenlJoined)
	}
	ms := []kernel.Message{{Group: 33, Data: testmsg.Nlmsg(40, []byte{1, 1, 0, 0})}}
	src.push(ms, nil)
	waitFor(t, "an event of the refused group to be skipped", func() bool { return b.Stats().NotStreams == 2 }) // and the nlctrl message
	if b.Stats().Events != 0 {
		t.Error("an event of the refused group was bridged")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Named in Private, a group that appears is joined without asking the probe.
func TestGenlExposedGroupAppears(t *testing.T) {
	ev, _ := streams.Lookup("thermal:event")
	p := &fakeProbe{answer: map[string]kernel.Access{}}
	src := &joinSource{fakeSource: newFakeSource(), joined: map[uint32]bool{}}
	cfg := &Config{Streams: []streams.Stream{ev}, Private: cleartext(ev.Name), Encodings: []streams.Encoding{streams.Raw}, GenlProbe: p.probe, Logger: quiet}
	b, err := NewWithSource(cfg, src, nil, &fakeSink{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	p.set(ev.Name, kernel.AccessPrivileged)
	src.push([]kernel.Message{{Group: decode.CtrlGroup, Data: testmsg.Ctrl(t, testmsg.CtrlCmdNewFamily, "thermal", 40, map[string]uint32{"event": 33})}}, nil)
	waitFor(t, "the exposed group to be joined", func() bool { return b.Stats().GenlJoined == 1 && src.has(33) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p.calls != 1 { // New's, at start
		t.Errorf("probe called %d times, want once (at start)", p.calls)
	}
}
