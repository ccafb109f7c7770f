package fleet

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// BenchmarkFleet: frames of a fake bridge, as fast as the publisher takes
// them without loss (in runs of 64, paced by what it published), through
// a JetStream server in this process to one consumer. It reports events
// a second end to end and the latency from the frame's time to its
// delivery (median and 99th percentile). Every piece shares this
// process's CPUs.
func BenchmarkFleet(b *testing.B) {
	testenv.RequireRoot(b)
	srv := natsServer(b, 0, "")
	url := srv.ClientURL()
	testenv.InNewNetNS(b, func() error {
		br := newBridge(b)
		p, err := NewPublisher(&PublisherConfig{Conn: Conn{URL: url}, Host: "a", Streams: []streams.Stream{link}})
		if err != nil {
			return err
		}
		defer p.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		defer func() { cancel(); <-done }()
		src, err := NewSource(&SourceConfig{Conn: Conn{URL: url}, Host: "a"})
		if err != nil {
			return err
		}
		r, err := receiver.New(&receiver.Config{Streams: []streams.Stream{link}, Source: src, NoSilentNotices: true})
		if err != nil {
			return err
		}
		defer r.Close()
		if err := src.Start(); err != nil {
			return err
		}
		lat := make([]time.Duration, 0, b.N)
		got := make(chan error, 1)
		go func() {
			evs := make([]receiver.Event, 256)
			for len(lat) < b.N {
				n, err := r.ReadBatch(evs)
				if err != nil {
					got <- err
					return
				}
				now := time.Now().UnixNano()
				for _, ev := range evs[:n] {
					if ev.IsNotice() {
						b.Errorf("notice %v", ev.Notice)
					} else if ev.Header.Kind == frame.KindEvent {
						lat = append(lat, time.Duration(now-ev.Header.Time))
					}
				}
			}
			got <- nil
		}()
		b.ResetTimer()
		start := time.Now()
		for sent := 0; sent < b.N; {
			n := min(64, b.N-sent)
			for range n {
				br.event(b, false)
			}
			sent += n
			for int(p.Stats().Received) < sent-4096 { // no more than the socket holds in flight
				time.Sleep(100 * time.Microsecond)
			}
		}
		if err := <-got; err != nil {
			return err
		}
		el := time.Since(start)
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		return nil
	})
}

// BenchmarkFleetLatency: one event at a time, through the publisher and
// a JetStream server in this process to one consumer: ns/op is the
// latency of an event, from the bridge's send to the consumer's delivery,
// on an idle path.
func BenchmarkFleetLatency(b *testing.B) {
	testenv.RequireRoot(b)
	srv := natsServer(b, 0, "")
	url := srv.ClientURL()
	testenv.InNewNetNS(b, func() error {
		br := newBridge(b)
		p, err := NewPublisher(&PublisherConfig{Conn: Conn{URL: url}, Host: "a", Streams: []streams.Stream{link}})
		if err != nil {
			return err
		}
		defer p.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		defer func() { cancel(); <-done }()
		src, err := NewSource(&SourceConfig{Conn: Conn{URL: url}, Host: "a"})
		if err != nil {
			return err
		}
		r, err := receiver.New(&receiver.Config{Streams: []streams.Stream{link}, Source: src, NoSilentNotices: true})
		if err != nil {
			return err
		}
		defer r.Close()
		if err := src.Start(); err != nil {
			return err
		}
		evs := make([]receiver.Event, 16)
		b.ResetTimer()
		for range b.N {
			br.event(b, false)
			for got := false; !got; {
				n, err := r.ReadBatch(evs)
				if err != nil {
					return err
				}
				for _, ev := range evs[:n] {
					got = got || (!ev.IsNotice() && ev.Header.Kind == frame.KindEvent)
				}
			}
		}
		return nil
	})
}
