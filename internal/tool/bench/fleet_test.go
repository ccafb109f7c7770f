package bench

import (
	"errors"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/tool/compare"
)

// A fleet run's figures: each path against direct delivery as the bridge
// runs' are, and the publisher's and server's CPU time per event generated.
func TestFleetFigures(t *testing.T) {
	const first, n = 10, 4
	direct := recvData{res: RecvResult{Received: 4, Overruns: 1, CPUNS: 4000, Reads: 4, Waits: 4},
		keys: map[uint32]int64{10: 1000, 11: 2000, 12: 3000, 13: 4000}, times: []int64{1000, 2000, 3000, s + 1000}}
	local := recvData{res: RecvResult{Received: 4, CPUNS: 8000, Reads: 2, Waits: 1},
		keys: map[uint32]int64{10: 1100, 11: 2100, 12: 3100, 13: 4100}, times: []int64{1100, 2100, 3100, s + 1100}}
	// The consumer lost one frame before JetStream (a gap of 1), and got
	// the others 1 to 3 us after direct delivery.
	fleet := recvData{res: RecvResult{Received: 3, CPUNS: 30000, Reads: 3, Waits: 3, Gaps: 1},
		keys: map[uint32]int64{10: 2000, 11: 4000, 13: 7000}, times: []int64{2000, 4000, 2*s + 2000}}
	fr := fleetFigures(n, first, direct, local, fleet, cpuSpent{total: 40e3, system: 10e3}, cpuSpent{total: 80e3, system: 20e3})
	dl := compare.Distribute([]time.Duration{100, 100, 100, 100})
	df := compare.Distribute([]time.Duration{1000, 2000, 3000})
	want := FleetRun{
		Direct:                 PathResult{Received: 4, Rate: 3, Overruns: 1, CPUPerEventUS: 1, EventsPerRead: 1, EventsPerWake: 1},
		Local:                  PathResult{Received: 4, Rate: 3, Added: &dl, CPUPerEventUS: 2, EventsPerRead: 2, EventsPerWake: 4},
		Fleet:                  PathResult{Received: 3, Lost: 1, Rate: 1, Added: &df, CPUPerEventUS: 10, EventsPerRead: 1, EventsPerWake: 1},
		FleetGaps:              1,
		PublisherCPUPerEventUS: 10, PublisherSysPerEventUS: 2.5,
		ServerCPUPerEventUS: 20, ServerSysPerEventUS: 5,
	}
	if !reflect.DeepEqual(fr, want) {
		t.Errorf("fleet run\n%+v\nwant\n%+v", fr, want)
	}
	if fr.Fleet.Added.P50 != 2 || fr.Local.Added.P99 != 0.1 {
		t.Errorf("added latencies: fleet %+v, local %+v", *fr.Fleet.Added, *fr.Local.Added)
	}
	// No events: nothing divided by zero.
	if z := fleetFigures(0, first, recvData{}, recvData{}, recvData{}, cpuSpent{1, 1}, cpuSpent{1, 1}); z.PublisherCPUPerEventUS != 0 || z.ServerCPUPerEventUS != 0 {
		t.Errorf("no events: %+v", z)
	}
}

func TestPublisherCounters(t *testing.T) {
	log := "time=2026-11-30T09:22:12.295Z level=INFO msg=publishing host=bench nats=nats://127.0.0.1:4222\n" +
		`time=2026-11-30T09:22:13.295Z level=INFO msg=stopped counters="{Received:2562 Published:2561 Duplicate:0 Malformed:0 Dropped:1 Markers:1 Retries:0 Requests:0 Answers:0 Buffered:0}"` + "\n"
	got := publisherCounters(log)
	want := map[string]uint64{"Received": 2562, "Published": 2561, "Duplicate": 0, "Malformed": 0, "Dropped": 1, "Markers": 1,
		"Retries": 0, "Requests": 0, "Answers": 0, "Buffered": 0}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("counters %v, want %v", got, want)
	}
	if c := counterText(got); c != "received 2562, published 2561, dropped 1, markers 1, retries 0" {
		t.Errorf("counterText: %q", c)
	}
	for _, bad := range []string{"", "level=INFO msg=publishing\n", `counters="{Received:x}"`, `counters="{Received:1`} {
		if got := publisherCounters(bad); got != nil {
			t.Errorf("publisherCounters(%q) = %v, want nil", bad, got)
		}
	}
	if c := counterText(nil); c != "-" {
		t.Errorf("counterText(nil) = %q", c)
	}
}

func TestStatCPU(t *testing.T) {
	// utime and stime are fields 14 and 15; the command name may hold
	// spaces and parentheses.
	stat := "4242 (nats (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 150 37 0 0 20 0 9 0 100 1 1"
	u, s, err := statCPU([]byte(stat))
	if err != nil || u != 1500*time.Millisecond.Nanoseconds() || s != 370*time.Millisecond.Nanoseconds() {
		t.Errorf("statCPU = %d, %d, %v; want 1.5 s, 0.37 s", u, s, err)
	}
	for _, bad := range []string{"4242 nats S", "4242 (nats) S 1 2 3", "4242 (nats) S 1 4242 4242 0 -1 4194560 1 0 0 0 x 37 0"} {
		if _, _, err := statCPU([]byte(bad)); err == nil {
			t.Errorf("statCPU(%q): no error", bad)
		}
	}
}

// The table prints a local and a fleet row for each run of the fleet
// phase, with its figures, and the cost of publishing; no fleet phase, no
// section.
func TestWriteFleet(t *testing.T) {
	added := compare.Distribute([]time.Duration{250 * time.Microsecond, 250 * time.Microsecond})
	local := compare.Distribute([]time.Duration{30 * time.Microsecond})
	rep := &Report{Fleet: &FleetResult{Server: "nats-server: v2.9.10", Runs: []FleetRun{
		{Generated: 2560, GenRate: 150e3, Local: PathResult{Received: 2560, Rate: 140e3, Added: &local},
			Fleet: PathResult{Received: 2559, Lost: 1, Rate: 90e3, Added: &added, CPUPerEventUS: 5.5}, FleetGaps: 1,
			PublisherCPUPerEventUS: 11.75, ServerCPUPerEventUS: 19.5, BridgeCPUPerEventUS: 1.25, BridgeOverruns: 3, Publisher: map[string]uint64{"Received": 2559, "Published": 2559}},
		{TargetRate: 2000, Batch: 1, Generated: 400, GenRate: 1999, Local: PathResult{Received: 400, Rate: 1995, Added: &local},
			Fleet: PathResult{Received: 400, Rate: 1998}},
	}}}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	rows := map[string]string{} // rate and path to the rest of the row, fields single-spaced
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && (f[1] == "local" || f[1] == "fleet" || f[1] == "2560" || f[1] == "400") {
			rows[f[0]+" "+f[1]] = strings.Join(f[2:], " ")
		}
	}
	want := map[string]string{
		"peak local":   "150k 2560 0 140k 30 us 30 us 30 us 0.00 us",
		"peak fleet":   "150k 2559 1 90k 250 us 250 us 250 us 5.50 us",
		"2000/s local": "1999 400 0 1995 30 us 30 us 30 us 0.00 us",
		"2000/s fleet": "1999 400 0 1998 0 us 0 us 0 us 0.00 us", // no arrivals timed: zeros, no panic
		// The costs: bridge, publisher (system), server (system) per
		// event; the fleet path's loss beyond the local one's, the
		// bridge's, the consumer's gaps, the publisher's counters.
		"peak 2560":  "1.25 us 11.75 us 0.00 us 19.50 us 0.00 us 1 3 0 1 received 2559, published 2559",
		"2000/s 400": "0.00 us 0.00 us 0.00 us 0.00 us 0.00 us 0 0 0 0 -",
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows %q\nwant %q\n%s", rows, want, out)
	}
	for _, want := range []string{"through 'nlmcast publish' and nats-server v2.9.10 (JetStream", "nlmcast publish CPU/event"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	(&Report{}).WriteTable(&b)
	if strings.Contains(b.String(), "fleet") {
		t.Errorf("no fleet phase, yet:\n%s", b.String())
	}
}

// Without --no-fleet, Run needs nats-server: a bare name is looked up in
// $PATH, a missing one is an error that says how to get it or skip it.
func TestFleetServerLookup(t *testing.T) {
	c := DefaultConfig()
	c.Self = "/bin/true"
	c.NATSServer = filepath.Join(t.TempDir(), "nats-server")
	_, err := c.normalized()
	var ee *exec.Error
	if err == nil || errors.As(err, &ee) && ee.Name != c.NATSServer || !strings.Contains(err.Error(), "--nats-server") || !strings.Contains(err.Error(), "--no-fleet") {
		t.Errorf("a missing nats-server: %v", err)
	}
	c.NoFleet = true
	if _, err := c.normalized(); err != nil {
		t.Errorf("--no-fleet with no nats-server: %v", err)
	}
	c.NoFleet, c.NATSServer = false, "sh" // any program in $PATH
	n, err := c.normalized()
	want, lerr := exec.LookPath("sh")
	if lerr != nil {
		t.Fatal(lerr)
	}
	if err != nil || n.NATSServer != want {
		t.Errorf("nats-server sh: %q, %v; want %q", n.NATSServer, err, want)
	}
}
