package bench

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/nlmcast/nlmcast/keys"
)

// A Way is one of the ways the bridge path is made fast, with the flags
// that turn it off: the bridge's, and each bridge receiver's (nlmcast
// bench-recv). Zero allocations per event, the other way, cannot be
// turned off: every run reports the bridge's allocations.
type Way struct {
	Name   string
	Off    string // what happens with the way turned off, for people
	On     string // for a feature turned on instead (Auth): what it does
	bridge []string
	recv   []string
	scrape string // a Unix socket whose /metrics the run scrapes every ScrapeEvery; "": none
	// defaults runs the bridge as it runs by default (every rtnetlink
	// stream, both encodings, requests), not on the bench's stream alone.
	defaults bool
	// json adds one receiver of the stream's JSON group (ModeJSON), so
	// that the bridge encodes JSON while the run lasts; its latencies are
	// kept apart from the raw receivers' (RunResult.JSONReceiver).
	json bool
}

// Ways are the ways a ways run turns off, one at a time (Config.Ways).
var Ways = []Way{
	{Name: "netlink-batch", Off: "the bridge reads one netlink datagram per system call (bridge --batch 1)",
		bridge: []string{"--batch", "1"}},
	{Name: "segmentation", Off: "the bridge sends datagram by datagram, not in UDP_SEGMENT runs (bridge --segment=false)",
		bridge: []string{"--segment=false"}},
	{Name: "coalescing", Off: "receivers take runs datagram by datagram from the kernel (no UDP_GRO)",
		recv: []string{"--no-coalesce"}},
	{Name: "receiver-batch", Off: "receivers read one datagram, or one coalesced run, per system call (no recvmmsg batch)",
		recv: []string{"--batch", "1"}},
	{Name: "json-when-joined", Off: "the bridge encodes and sends JSON for every event, though no one joined a JSON group (bridge --json-always)",
		bridge: []string{"--json-always"}},
}

// waysBridge are the bridge flags of every ways run: both encodings, as a
// bridge runs by default, so that encoding JSON only for joined groups is
// one of the ways.
var waysBridge = []string{"--encodings", "raw,json"}

// Auth is a feature the ways runs turn on once, after the ways: what
// authenticated frames cost (PROTOCOL.md, Authenticated frames). Its flags
// get the key file's path when the run starts.
var Auth = Way{Name: "auth", On: "the bridge authenticates every frame and every receiver verifies it (bridge and receivers --key)"}

// Sealed is a feature the ways runs turn on once, after Auth: what sealed
// frames cost (PROTOCOL.md, Sealed frames): the stream made private.
var Sealed = Way{Name: "sealed", On: "the stream is private: the bridge seals every frame and every receiver opens it (bridge --expose, receivers --private)"}

// Metrics is a feature the ways runs turn on last: the bridge serves
// --metrics on a Unix socket, which the bench scrapes every ScrapeEvery
// while events flow (RunResult.Scrapes). Its bridge CPU time per event,
// against the reference's, is what scraping costs.
var Metrics = Way{Name: "metrics", On: "the bridge serves --metrics, scraped every " + ScrapeEvery.String() +
	" while events flow (Prometheus scrapes every 15s by default)"}

// ScrapeEvery is how often the metrics way scrapes the bridge.
const ScrapeEvery = 100 * time.Millisecond

// WayResult is a run through the bridge with one way turned off, or Auth
// or Metrics turned on. Way "" is the reference: every way on, no authentication.
type WayResult struct {
	Way string     `json:"way"`
	Off string     `json:"off,omitempty"`
	On  string     `json:"on,omitempty"`
	Run *RunResult `json:"run"`
}

// ways runs the reference, then each way turned off, then Auth and
// Metrics on, r receivers each, at the kernel's peak rate.
func (b *bench) ways(ctx context.Context, r int) ([]WayResult, error) {
	out := make([]WayResult, 0, len(Ways)+4)
	keyFile := filepath.Join(b.dir, "keys")
	if _, err := keys.Create(keyFile, ""); err != nil {
		return nil, err
	}
	auth := Auth
	auth.bridge, auth.recv = []string{"--key", keyFile}, []string{"--key", keyFile}
	privateFile := filepath.Join(b.dir, "private.key")
	if _, err := keys.Create(privateFile, ""); err != nil {
		return nil, err
	}
	sealed := Sealed
	sealed.bridge, sealed.recv = []string{"--expose", "ipv4-ifaddr=" + privateFile}, []string{"--private", privateFile}
	metrics := Metrics
	metrics.scrape = filepath.Join(b.dir, "metrics.sock")
	metrics.bridge = []string{"--metrics", metrics.scrape}
	for _, w := range append(append([]Way{{}}, Ways...), auth, sealed, metrics) {
		what := "every way on"
		switch {
		case w.On != "":
			what = w.Name + " on"
		case w.Name != "":
			what = w.Name + " off"
		}
		b.logf("ways: %s, %d receivers, %d events at the kernel's peak rate", what, r, b.cfg.Events)
		w.bridge = append(append([]string(nil), waysBridge...), w.bridge...)
		run, err := b.bridgeRun(ctx, r, b.cfg.Events, 0, b.cfg.Batch, false, w)
		if err != nil {
			return nil, fmt.Errorf("ways run (%s): %w", what, err)
		}
		out = append(out, WayResult{Way: w.Name, Off: w.Off, On: w.On, Run: run})
	}
	return out, nil
}

// writeWays prints the ways runs for people.
func writeWays(w io.Writer, ws []WayResult, events int) {
	if len(ws) == 0 {
		return
	}
	fmt.Fprintf(w, "\nways to speed, each turned off in turn (%d receivers, %d events at the kernel's peak rate each):\n", ws[0].Run.Receivers, events)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "turned off\tgenerated/s\tdelivered/s\tmax lost\tbridge CPU/event\treceiver CPU/event\tnetlink msgs/read\tsent in runs\treceived in runs\tallocs/event\t")
	for _, x := range ws {
		name := x.Way
		switch {
		case name == "":
			name = "none"
		case x.On != "":
			name += " on"
		}
		r := x.Run
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.2f us\t%.2f us\t%.0f\t%.0f%%\t%.0f%%\t%.3f\t\n", name, kilo(r.GenRate), kilo(r.Delivered), r.MaxLost,
			r.BridgeCPUPerEventUS, r.ReceiverCPUPerEventUS, r.BridgeMessagesPerRead, 100*r.BridgeSegmentedShare, 100*r.CoalescedShare, r.AllocsPerEvent)
	}
	tw.Flush()
	for _, x := range ws[1:] {
		if x.On != "" {
			scrapes := ""
			if x.Run.Scrapes > 0 {
				scrapes = fmt.Sprintf(" (%d scrapes)", x.Run.Scrapes)
			}
			fmt.Fprintf(w, "%s on: %s; CPU/event against none: bridge %+.2f us, receiver %+.2f us%s.\n", x.Way, x.On,
				x.Run.BridgeCPUPerEventUS-ws[0].Run.BridgeCPUPerEventUS, x.Run.ReceiverCPUPerEventUS-ws[0].Run.ReceiverCPUPerEventUS, scrapes)
			continue
		}
		fmt.Fprintf(w, "%s off: %s.\n", x.Way, x.Off)
	}
}
