package netlinkbridge

import (
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/kernel"
)

// The per-stream counters add up what forward sent: events and bytes per
// encoding, JSON made and skipped, frames by kind, the last event's time.
func TestStreamStats(t *testing.T) {
	b, err := NewWithSource(&Config{Logger: quiet}, newFakeSource(), nil, &discardSink{})
	if err != nil {
		t.Fatal(err)
	}
	addr := testmsg.Nlmsg(unix.RTM_NEWADDR, make([]byte, 60))
	link := linkMsg(3, "eth0")
	b.byGroup[unix.RTNLGRP_IPV4_IFADDR].jsonOn.Store(false) // nobody joined its JSON group
	b.forward([]kernel.Message{{Group: unix.RTNLGRP_LINK, Data: link}, {Group: unix.RTNLGRP_IPV4_IFADDR, Data: addr},
		{Group: unix.RTNLGRP_LINK, Data: link}, {Group: unix.RTNLGRP_IPV4_IFADDR, Data: addr}}, 7e9)
	b.forward([]kernel.Message{{Group: unix.RTNLGRP_LINK, Data: link}}, 8e9)
	now := time.Unix(9, 0)
	b.sendHeartbeats(now.Add(time.Hour)) // every stream is idle
	b.goodbye(now)

	st := b.Stats()
	if st.Events != 5 || len(st.Streams) != len(b.streams) {
		t.Fatalf("events %d, %d streams; want 5, %d", st.Events, len(st.Streams), len(b.streams))
	}
	byName := map[string]StreamStats{}
	for _, s := range st.Streams {
		byName[s.Name] = s
	}
	l, a := byName["link"], byName["ipv4-ifaddr"]
	if l.Events != 3 || l.RawBytes != uint64(3*len(link)) || l.JSONEvents != 3 || l.JSONBytes < l.RawBytes || l.JSONSkipped != 0 ||
		!l.JSONJoined || !l.Raw || !l.JSON || !l.LastEvent.Equal(time.Unix(8, 0)) {
		t.Errorf("link: %+v", l)
	}
	if a.Events != 2 || a.RawBytes != uint64(2*len(addr)) || a.JSONEvents != 0 || a.JSONBytes != 0 || a.JSONSkipped != 2 ||
		a.JSONJoined || !a.LastEvent.Equal(time.Unix(7, 0)) {
		t.Errorf("ipv4-ifaddr: %+v", a)
	}
	if r := byName["ipv6-route"]; r.Events != 0 || !r.LastEvent.IsZero() || !r.JSONJoined {
		t.Errorf("ipv6-route, idle: %+v", r)
	}
	if st.JSONSkipped != 2 {
		t.Errorf("JSONSkipped %d, want 2", st.JSONSkipped)
	}
	// Raw and JSON frames of every event but two skipped; a heartbeat in
	// both encodings on every stream but ipv4-ifaddr, whose JSON nobody
	// reads; a goodbye in both encodings on every stream.
	n := uint64(len(b.streams))
	if want := (FrameCounts{Event: 5 + 3, Heartbeat: 2*n - 1, Goodbye: 2 * n}); st.Frames != want {
		t.Errorf("frames %+v, want %+v", st.Frames, want)
	}
}

// The resync's duration is added up.
func TestResyncTime(t *testing.T) {
	b, err := NewWithSource(&Config{Logger: quiet}, newFakeSource(), &slowDumper{d: 20 * time.Millisecond}, &discardSink{})
	if err != nil {
		t.Fatal(err)
	}
	b.pending.Add(unix.RTNLGRP_LINK)
	b.resync(time.Now())
	st := b.Stats()
	if st.Resyncs != 1 || st.ResyncTime < 20*time.Millisecond {
		t.Errorf("%d resyncs, %v; want 1, at least 20ms", st.Resyncs, st.ResyncTime)
	}
	if st.Frames.ResyncBegin != 2 || st.Frames.ResyncEnd != 2 || st.Frames.Event != 2 {
		t.Errorf("frames %+v, want a resync-begin, an event and a resync-end in both encodings", st.Frames)
	}
}

// slowDumper answers every dump with one link after d.
type slowDumper struct{ d time.Duration }

func (s *slowDumper) Dump(kernel.DumpRequest) ([][]byte, bool, error) {
	time.Sleep(s.d) // the dump's duration under test, not a wait for readiness
	return [][]byte{linkMsg(1, "lo")}, false, nil
}
func (s *slowDumper) Close() error { return nil }

// The forwarding path with and without a scraper reading Stats, as the
// metrics collector does at every scrape, every millisecond (Prometheus
// scrapes every 15 s by default): ns/op is per event. The counters are
// atomics the loop adds to anyway; a scrape only loads them.
func BenchmarkForwardScraped(b *testing.B) {
	for _, scrape := range []time.Duration{0, time.Millisecond} {
		name := "no-scraper"
		if scrape > 0 {
			name = "scrape-every-" + scrape.String()
		}
		b.Run(name, func(b *testing.B) {
			br, msgs := rawBridge(b, &discardSink{})
			done := make(chan struct{})
			var wg sync.WaitGroup
			if scrape > 0 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t := time.NewTicker(scrape)
					defer t.Stop()
					for {
						select {
						case <-done:
							return
						case <-t.C:
							_ = br.Stats()
						}
					}
				}()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				br.forward(msgs[:1], 1)
			}
			b.StopTimer()
			close(done)
			wg.Wait()
		})
	}
}
