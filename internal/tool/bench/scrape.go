package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// scraper scrapes the bridge's /metrics on a Unix socket, as Prometheus
// would: once at once, then every interval, and once more when stopped.
type scraper struct {
	client *http.Client
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	n      int   // scrapes that returned the bridge's metrics
	err    error // the first that did not
}

func startScraper(path string, every time.Duration) *scraper {
	s := &scraper{done: make(chan struct{}), client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.scrape()
			select {
			case <-s.done:
				s.scrape()
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *scraper) scrape() {
	resp, err := s.client.Get("http://nlmcast/metrics")
	if err == nil {
		var body []byte
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && (resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "nlmcast_bridge_events_total{")) {
			err = fmt.Errorf("%s, %d bytes without the bridge's events", resp.Status, len(body))
		}
	}
	if err != nil {
		if s.err == nil {
			s.err = fmt.Errorf("bench: scraping the bridge's metrics: %w", err)
		}
		return
	}
	s.n++
}

// stop scrapes a last time, and returns how many scrapes got the bridge's
// metrics and the first error. Calls after the first return the same.
func (s *scraper) stop() (int, error) {
	s.once.Do(func() { close(s.done); s.wg.Wait() })
	return s.n, s.err
}
