package netlinkbridge

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// failingSink fails every send.
type failingSink struct{}

func (failingSink) WriteBatch([]ipv4.Message) error {
	defer notify()
	return errors.New("no buffer space")
}

// failingDumper fails every dump.
type failingDumper struct{}

func (failingDumper) Dump(kernel.DumpRequest) ([][]byte, bool, error) {
	return nil, false, errors.New("dump refused")
}
func (failingDumper) Close() error { return nil }

// Warnings that a stream of kernel messages, failed sends or failed dumps
// can repeat are rate-limited: twenty of each in a burst make one log line
// each, and the counters count all twenty.
func TestWarningsRateLimited(t *testing.T) {
	link, _ := streams.Lookup("link")
	huge := linkMsg(3, "eth0")
	huge = append(huge, make([]byte, frame.MaxRawMessage)...)
	const n = 20
	var batches [][]kernel.Message
	for range n {
		batches = append(batches, []kernel.Message{{Group: 1, Data: huge}, {Group: 1, Data: linkMsg(3, "eth0")}})
	}
	logs := &syncBuffer{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link}, NoHeartbeats: true, ResyncInterval: time.Nanosecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}, newFakeSource(batches...), failingDumper{}, failingSink{})
	if err != nil {
		t.Fatal(err)
	}
	// The flood takes its time on a loaded machine, under -race: the
	// rate limits' clock stands still, so that it all falls in one
	// interval.
	frozen := time.Now()
	b.logNow = func() time.Time { return frozen }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, "every batch", func() bool { s := b.Stats(); return s.TooLarge == n && s.SendErrors >= n })
	for i := 1; i <= n; i++ {
		b.Request(uint32(link.Group))
		waitFor(t, "a failed dump", func() bool { return b.Stats().DumpFailures >= uint64(i) })
	}
	log := logs.String()
	for _, line := range []string{
		"netlink message larger than receivers accept, dropped",
		"multicast send failed; datagrams lost",
		"resync: dump failed; stream not resynced",
	} {
		if got := strings.Count(log, line); got != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", line, got, log)
		}
	}
}
