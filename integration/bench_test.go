package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/internal/tool/bench"
)

// A short nlmcast bench, end to end: its own namespace, every part of the
// report present and consistent. Timings are reported, never asserted;
// losses are asserted where any loss would be a fault (modest bursts, the
// baseline and a single receiver). The fleet phase runs the nats-server
// built from this module's requirement in the JSON run, and the one in
// $PATH (scripts/deps.sh: Debian's) in the table run.
func TestBenchReport(t *testing.T) {
	nlmcast, _ := binaries(t)
	newNetNS(t) // root and namespaces are there (bench makes its own)
	plot := filepath.Join(t.TempDir(), "latency.svg")
	cmd := exec.Command(nlmcast, "bench", "--events", "2560", "--receivers", "1,3",
		"--latency-events", "400", "--latency-rate", "2000",
		"--latency-rates", "200,2000", "--latency-json", "--latency-rounds", "2", "--latency-time", "500ms", "--bridge-nice", "-5", "--burst", "3000", "--ways", "2", "--json", "--plot", plot,
		"--nats-server", natsServer(t))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	n := rep.Events
	if n != 2560 || rep.DatagramBytes <= 48 || rep.CPUs < 1 || rep.Kernel == "" {
		t.Errorf("header: %d events, %d-byte datagrams, %d CPUs, kernel %q", n, rep.DatagramBytes, rep.CPUs, rep.Kernel)
	}
	b := rep.Baseline
	if b == nil || b.Generated != n || b.GenRate <= 0 || b.Direct.Received != n || b.Direct.Lost != 0 {
		t.Fatalf("baseline %+v", b)
	}
	// Its marker lines (the bench's readiness signs) are not counted.
	if m := b.IPMonitor; m == nil || m.Received+m.Lost != n || m.Received == 0 || m.Lost < 0 {
		t.Errorf("ip monitor %+v", m)
	}
	if len(rep.Runs) != 2 {
		t.Fatalf("%d runs, want 2", len(rep.Runs))
	}
	for i, run := range rep.Runs {
		r := []int{1, 3}[i]
		if run.Receivers != r || len(run.Bridge) != r || run.Generated != n || run.Direct.Lost != 0 {
			t.Errorf("run %d: %d receivers (%d results), %d generated, %d lost directly", i, run.Receivers, len(run.Bridge), run.Generated, run.Direct.Lost)
		}
		for j, br := range run.Bridge {
			if br.Received+br.Lost != n || br.Added == nil || br.Added.Count != br.Received {
				t.Errorf("run %d receiver %d: %+v", i, j, br)
			}
		}
		if run.BridgeNice != -5 || rep.BridgeNice != -5 {
			t.Errorf("run %d: the bridge ran at nice %d (report: %d), want -5", i, run.BridgeNice, rep.BridgeNice)
		}
		if run.BridgeEvents < uint64(n) || run.BridgeCPUPerEventUS <= 0 || run.BridgeRSS <= 0 {
			t.Errorf("run %d bridge: %d events, %.2f us CPU/event, RSS %d", i, run.BridgeEvents, run.BridgeCPUPerEventUS, run.BridgeRSS)
		}
		// The raw path allocates nothing per event; a few allocations
		// of the bridge's timers over the run stay far below this.
		if run.AllocsPerEvent > 0.05 {
			t.Errorf("run %d: %.3f allocations per event", i, run.AllocsPerEvent)
		}
		if c := run.Ceiling; c == nil || c.Sent != n || c.Rate <= 0 || run.CeilingRatio <= 0 || c.ReceiverCPUPerEventUS <= 0 {
			t.Errorf("run %d ceiling %+v ratio %v", i, c, run.CeilingRatio)
		}
		if c := run.Ceiling; c != nil && (run.Limit != min(c.Rate, rep.PeakRate) || run.LimitRatio != run.Delivered/run.Limit) {
			t.Errorf("run %d: limit %.0f/s, ratio %.2f; ceiling %.0f/s, peak %.0f/s, delivered %.0f/s",
				i, run.Limit, run.LimitRatio, c.Rate, rep.PeakRate, run.Delivered)
		}
		if run.GenRate > rep.PeakRate || run.ReceiverCPUPerEventUS <= 0 || run.EventsPerRead < 1 {
			t.Errorf("run %d: generated %.0f/s over the peak %.0f/s, receivers %.2f us/event, %.1f events/read",
				i, run.GenRate, rep.PeakRate, run.ReceiverCPUPerEventUS, run.EventsPerRead)
		}
	}
	if rep.PeakRate < b.GenRate {
		t.Errorf("peak %.0f/s below the baseline's %.0f/s", rep.PeakRate, b.GenRate)
	}
	if rep.Runs[0].MaxLost != 0 {
		t.Errorf("one receiver lost %d of %d events", rep.Runs[0].MaxLost, n)
	}
	l := rep.Latency
	if l == nil || l.Generated != 400 || l.DirectFromGen == nil || l.BridgeFromGen == nil ||
		l.DirectFromGen.Count != 400 || l.BridgeFromGen.Count != 400-l.MaxLost || l.TargetRate != 2000 {
		t.Errorf("latency run %+v", l)
	}
	// The bare hop's socket has the kernel's default buffer, which a
	// receiver starved of CPU by other work may overflow: some timed is
	// enough.
	if h := rep.BareHop; h == nil || h.Count < 1 || h.Count > 400 || h.P50 <= 0 || h.P99 < h.P50 {
		t.Errorf("bare hop %+v: want up to 400 datagrams timed", h)
	}
	if h := rep.LibraryHop; h == nil || h.Count != 400 || h.P50 <= 0 || h.P99 < h.P50 {
		t.Errorf("library hop %+v: want 400 datagrams timed", h)
	}
	// 3,000 datagrams fit the receiver's 4 MiB buffer even unread: none
	// may be lost.
	if c := rep.Burst; c == nil || c.Sent != 3000 || c.Lost != 0 || c.Rate <= 0 || c.SendRate <= 0 {
		t.Errorf("burst %+v: want 3000 sent, none lost", c)
	}
	checkRates(t, &rep, []float64{200, 2000}, []int{100, 400}, 2)
	checkWays(t, &rep)
	checkFleet(t, &rep)
	svg, err := os.ReadFile(plot)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(svg), "<svg") || strings.Count(string(svg), "<polyline") != 2 {
		t.Errorf("plot is not an SVG with two curves:\n%.300s", svg)
	}
	// The table form prints the same sections.
	tcmd := exec.Command(nlmcast, "bench", "--events", "256", "--receivers", "1", "--latency-events", "100", "--no-ceiling", "--burst", "500", "--ways", "1",
		"--latency-rates", "500", "--latency-rounds", "1", "--latency-time", "200ms")
	if _, err := exec.LookPath(bench.DefaultNATSServer); err != nil {
		if testenv.CI() {
			t.Errorf("no nats-server in $PATH (%v): scripts/deps.sh installs it", err)
		}
		tcmd.Args = append(tcmd.Args, "--nats-server", natsServer(t))
	}
	stderr.Reset()
	tcmd.Stderr = &stderr
	table, err := tcmd.Output()
	if err != nil {
		t.Fatalf("bench table: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"generated:", "direct netlink:", "ip -o monitor:", "receivers", "added by the bridge", "a bare multicast hop",
		"read by package mcast", "burst: 500 datagrams", "lost 0", "ways to speed", "segmentation off: ", "metrics on: the bridge serves --metrics",
		"latency by rate", "relay: the reference relay, relay.c", "bridge/relay p50", "from request p50", "again/relay p50",
		"fleet: the stream through 'nlmcast publish' and nats-server", "nlmcast publish CPU/event", "nats-server CPU/event"} {
		if !strings.Contains(string(table), want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

// checkFleet asserts that the fleet phase ran at the sweep's rate (the
// kernel's peak) and the latency run's, each event the local receiver got
// reaching the consumer through JetStream too (the fleet path loses
// nothing of its own: what the bridge drops, short of CPU beside the
// publisher and the server, both paths miss), both paths timed against
// direct netlink, and the publisher's and the server's CPU time counted.
func checkFleet(t *testing.T, rep *bench.Report) {
	t.Helper()
	f := rep.Fleet
	if f == nil || !strings.HasPrefix(f.Server, "nats-server") || len(f.Runs) != 2 {
		t.Fatalf("fleet phase %+v", f)
	}
	for i, r := range f.Runs {
		n, rate, batch := []int{rep.Events, 400}[i], []float64{0, 2000}[i], []int{rep.Batch, 1}[i]
		if r.Generated != n || r.TargetRate != rate || r.Batch != batch || r.GenRate <= 0 || r.Direct.Received != n || r.Direct.Lost != 0 {
			t.Errorf("fleet run %d: %d generated at %.0f/s (target %.0f/s), %d per sendmsg, direct %+v; want %d at %.0f/s, %d per sendmsg",
				i, r.Generated, r.GenRate, r.TargetRate, r.Batch, r.Direct, n, rate, batch)
		}
		for name, p := range map[string]bench.PathResult{"local": r.Local, "fleet": r.Fleet} {
			if p.Received == 0 || p.Received+p.Lost != n || p.Added == nil || p.Added.Count != p.Received || p.Rate <= 0 || p.CPUPerEventUS <= 0 {
				t.Errorf("fleet run %d %s path: %+v, want %d received or lost, each received timed", i, name, p, n)
			}
		}
		if r.Fleet.Lost != r.Local.Lost || r.Fleet.Lost == 0 && r.FleetGaps != 0 {
			t.Errorf("fleet run %d: lost %d through JetStream, %d locally; bridge: %d overruns, %d dropped; %d gaps",
				i, r.Fleet.Lost, r.Local.Lost, r.BridgeOverruns, r.BridgeHandoffDropped, r.FleetGaps)
		}
		if pc := r.Publisher; pc["Received"] < uint64(r.Fleet.Received) || pc["Published"] < uint64(r.Fleet.Received) || pc["Dropped"] != 0 {
			t.Errorf("fleet run %d: publisher counters %v, consumer received %d", i, pc, r.Fleet.Received)
		}
		if r.BridgeCPUPerEventUS <= 0 {
			t.Errorf("fleet run %d: bridge %.2f us CPU/event", i, r.BridgeCPUPerEventUS)
		}
		// CPU time is counted in ticks of 10 ms: a short run may have
		// none of the server's, but never less system time than none.
		if r.PublisherCPUPerEventUS < r.PublisherSysPerEventUS || r.ServerCPUPerEventUS < r.ServerSysPerEventUS || r.PublisherSysPerEventUS < 0 || r.ServerSysPerEventUS < 0 {
			t.Errorf("fleet run %d: CPU/event: publisher %.2f us (system %.2f), nats-server %.2f us (system %.2f)",
				i, r.PublisherCPUPerEventUS, r.PublisherSysPerEventUS, r.ServerCPUPerEventUS, r.ServerSysPerEventUS)
		}
	}
	// Publishing thousands of frames takes some ticks.
	if r := f.Runs[0]; r.PublisherCPUPerEventUS+r.ServerCPUPerEventUS <= 0 {
		t.Errorf("fleet run at the peak: no CPU time counted for publishing %d events", r.Generated)
	}
}

// checkRates asserts that the latency rows ran at the rates asked, JSON
// off then on, each with its rounds of the bridge, of the reference relay,
// of the Go reference relay and of the reference relay again (the
// control), every event received on every path (one
// receiver at a modest rate: any loss is a fault), the relays' processes
// relaying them, and the ratios computed from the row's own
// distributions. With JSON on, the bridge's runs had their JSON receiver
// and the relay's their second receiver, each of which got every event
// too.
func checkRates(t *testing.T, rep *bench.Report, rates []float64, events []int, rounds int) {
	t.Helper()
	if len(rep.Rates) != 2*len(rates) {
		t.Fatalf("%d latency rows, want %d with JSON off and %[2]d with JSON on", len(rep.Rates), len(rates))
	}
	for i, r := range rep.Rates {
		k, json := i%len(rates), i >= len(rates)
		n := events[k] * rounds
		if r.Rate != rates[k] || r.Events != events[k] || r.Rounds != rounds || r.Receivers != 1 || r.JSON != json {
			t.Errorf("row %d: %.0f/s, %d events, %d rounds, %d receivers, JSON %v; want %.0f/s, %d, %d, 1, %v",
				i, r.Rate, r.Events, r.Rounds, r.Receivers, r.JSON, rates[k], events[k], rounds, json)
		}
		// The relays' second receivers are pooled: relay.c's, the Go
		// relay's and the control's.
		for name, c := range map[string]struct {
			p     *bench.RateJSON
			paths int
		}{"JSON receiver": {r.JSONReceiver, 1}, "relays' second receiver": {r.RelaySecond, 3}} {
			p, paths := c.p, c.paths
			switch {
			case !json && p != nil:
				t.Errorf("row %d, JSON off: a %s %+v", i, name, p)
			case json && (p == nil || p.Received != paths*n || p.Lost != 0 || p.Added.Count != paths*n):
				t.Errorf("row %d, JSON on: %s %+v; want %d received, none lost", i, name, p, paths*n)
			}
		}
		if r.Direct.Count != 2*n {
			t.Errorf("row %d: direct netlink timed %d events, want %d (the bridge's and relay.c's runs)", i, r.Direct.Count, 2*n)
		}
		if r.GoRelay == nil || r.RelayAgain == nil {
			t.Errorf("row %d: Go reference relay %v, control %v; want both", i, r.GoRelay, r.RelayAgain)
			continue
		}
		for name, p := range map[string]bench.RatePath{"bridge": r.Bridge, "relay": r.Relay, "go relay": *r.GoRelay, "relay again": *r.RelayAgain} {
			if p.Received != n || p.Lost != 0 || p.Added.Count != n || p.FromRequest.Count != n || p.Handled < uint64(n) {
				t.Errorf("row %d %s: received %d, lost %d, %d added timed, %d from the request, handled %d; want %d, none lost",
					i, name, p.Received, p.Lost, p.Added.Count, p.FromRequest.Count, p.Handled, n)
			}
			if p.CPUPerGeneratedUS <= 0 {
				t.Errorf("row %d %s: %.2f us CPU per generated event, want the time its process ran", i, name, p.CPUPerGeneratedUS)
			}
		}
		if r.GoP50Ratio != ratio(r.GoRelay.Added.P50, r.Relay.Added.P50) || r.GoP99Ratio != ratio(r.GoRelay.Added.P99, r.Relay.Added.P99) {
			t.Errorf("row %d: Go relay's ratios %.3f, %.3f not from the row's distributions %+v / %+v", i, r.GoP50Ratio, r.GoP99Ratio, r.GoRelay.Added, r.Relay.Added)
		}
		if r.AgainP50Ratio != ratio(r.RelayAgain.Added.P50, r.Relay.Added.P50) || r.AgainP99Ratio != ratio(r.RelayAgain.Added.P99, r.Relay.Added.P99) {
			t.Errorf("row %d: the control's ratios %.3f, %.3f not from the row's distributions %+v / %+v", i, r.AgainP50Ratio, r.AgainP99Ratio, r.RelayAgain.Added, r.Relay.Added)
		}
		if r.Bridge.CPUPerEventUS <= 0 || r.Relay.CPUPerEventUS != 0 {
			t.Errorf("row %d: CPU per event: bridge %.2f us (want some), relay %.2f (keeps none)", i, r.Bridge.CPUPerEventUS, r.Relay.CPUPerEventUS)
		}
		if r.P50Ratio != ratio(r.Bridge.Added.P50, r.Relay.Added.P50) || r.P99Ratio != ratio(r.Bridge.Added.P99, r.Relay.Added.P99) {
			t.Errorf("row %d: ratios %.3f, %.3f not from the row's distributions %+v / %+v", i, r.P50Ratio, r.P99Ratio, r.Bridge.Added, r.Relay.Added)
		}
		if r.FromRequestP50Ratio <= 0 || r.FromRequestP50Ratio != ratio(r.Bridge.FromRequest.P50, r.Relay.FromRequest.P50) ||
			r.FromRequestP99Ratio != ratio(r.Bridge.FromRequest.P99, r.Relay.FromRequest.P99) {
			t.Errorf("row %d: from-request ratios %.3f, %.3f not from the row's distributions %+v / %+v", i,
				r.FromRequestP50Ratio, r.FromRequestP99Ratio, r.Bridge.FromRequest, r.Relay.FromRequest)
		}
		if len(r.RoundP50Ratios) != rounds || len(r.RoundP99Ratios) != rounds {
			t.Errorf("row %d: %d and %d round ratios, want %d", i, len(r.RoundP50Ratios), len(r.RoundP99Ratios), rounds)
		}
		if h := r.BareHop; h == nil || h.Count < 1 || h.Count > events[k] {
			t.Errorf("row %d: bare hop %+v, want up to %d datagrams timed", i, h, events[k])
		}
	}
}

// ratio is a over b, zero where b is not positive (as the bench has it:
// an added latency can be negative).
func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// checkWays asserts that the ways runs ran, and that each way was really
// off in its run: what the bridge and the receivers counted shows it.
func checkWays(t *testing.T, rep *bench.Report) {
	t.Helper()
	if len(rep.Ways) != len(bench.Ways)+4 {
		t.Fatalf("%d ways runs, want the reference, %d ways, auth, sealed and metrics", len(rep.Ways), len(bench.Ways))
	}
	runs := map[string]*bench.RunResult{}
	for i, w := range rep.Ways {
		if want := ""; i > 0 {
			want = append(bench.Ways, bench.Auth, bench.Sealed, bench.Metrics)[i-1].Name
			if w.Way != want {
				t.Errorf("ways run %d is %q, want %q", i, w.Way, want)
			}
		}
		if r := w.Run; r == nil || r.Receivers != 2 || len(r.Bridge) != 2 || r.Generated != rep.Events || r.BridgeEvents == 0 {
			t.Fatalf("ways run %q: %+v", w.Way, r)
		}
		runs[w.Way] = w.Run
	}
	ref := runs[""]
	if ref.AllocsPerEvent > 0.05 || ref.CoalescedShare == 0 || ref.BridgeJSONSkipped < uint64(rep.Events) {
		t.Errorf("reference: %.3f allocations per event, %.2f of datagrams coalesced, %d events not encoded in JSON (want all %d)",
			ref.AllocsPerEvent, ref.CoalescedShare, ref.BridgeJSONSkipped, rep.Events)
	}
	if r := runs["netlink-batch"]; r.BridgeMessagesPerRead != 1 {
		t.Errorf("netlink-batch off: %.2f messages per netlink read, want 1", r.BridgeMessagesPerRead)
	}
	if r := runs["segmentation"]; r.BridgeSegmentedShare != 0 {
		t.Errorf("segmentation off: %.2f of datagrams sent in runs, want none", r.BridgeSegmentedShare)
	}
	if r := runs["coalescing"]; r.CoalescedShare != 0 {
		t.Errorf("coalescing off: %.2f of datagrams received in runs, want none", r.CoalescedShare)
	}
	if r := runs["receiver-batch"]; r.EventsPerRead > 1.5 {
		t.Errorf("receiver-batch off: %.2f events per read, want 1", r.EventsPerRead)
	}
	// Receivers given the key accept nothing else: they got the events,
	// so the frames were authenticated.
	if r := runs["auth"]; r.Delivered == 0 || r.MaxLost == r.Generated {
		t.Errorf("auth on: %.0f events/s delivered, %d lost of %d", r.Delivered, r.MaxLost, r.Generated)
	}
	// Receivers given the private key accept only sealed frames.
	if r := runs["sealed"]; r.Delivered == 0 || r.MaxLost == r.Generated {
		t.Errorf("sealed on: %.0f events/s delivered, %d lost of %d", r.Delivered, r.MaxLost, r.Generated)
	}
	// Scraped at least before and after the events, every scrape with the
	// bridge's metrics; the other runs were not scraped.
	if r := runs["metrics"]; r.Scrapes < 2 || ref.Scrapes != 0 {
		t.Errorf("metrics on: %d scrapes (reference: %d); want at least 2 (none)", r.Scrapes, ref.Scrapes)
	}
	if r := runs["json-when-joined"]; r.BridgeJSONSkipped != 0 {
		t.Errorf("json-when-joined off: %d events not encoded in JSON, want none", r.BridgeJSONSkipped)
	}
}
