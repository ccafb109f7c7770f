package bench

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/nlmcast/nlmcast/internal/sys/procstat"
	"github.com/nlmcast/nlmcast/internal/tool/compare"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/netlinkbridge"
	"golang.org/x/sys/unix"
)

const s = int64(time.Second)

func TestRoundUp(t *testing.T) {
	for _, c := range []struct{ n, m, want int }{
		{0, 128, 0}, {1, 128, 128}, {128, 128, 128}, {129, 128, 256}, {2560, 128, 2560}, {3, 2, 4}, {0, 2, 0},
	} {
		if got := roundUp(c.n, c.m); got != c.want {
			t.Errorf("roundUp(%d, %d) = %d, want %d", c.n, c.m, got, c.want)
		}
	}
}

func recs(rs ...record) []byte {
	var b []byte
	for _, r := range rs {
		b = binary.LittleEndian.AppendUint32(b, r.key)
		b = binary.LittleEndian.AppendUint64(b, uint64(r.at))
	}
	return b
}

func TestParseRecords(t *testing.T) {
	for _, c := range []struct {
		name      string
		data      []byte
		keys      map[uint32]int64
		times     []int64
		wantError string
	}{
		{"empty", nil, map[uint32]int64{}, []int64{}, ""},
		{"one", recs(record{7, 100}), map[uint32]int64{7: 100}, []int64{100}, ""},
		{"a repeated key keeps its first arrival", recs(record{7, 100}, record{8, 150}, record{7, 200}),
			map[uint32]int64{7: 100, 8: 150}, []int64{100, 150, 200}, ""},
		{"the widest values", recs(record{math.MaxUint32, math.MaxInt64}), map[uint32]int64{math.MaxUint32: math.MaxInt64}, []int64{math.MaxInt64}, ""},
		{"a partial record", append(recs(record{1, 1}), 0), nil, nil, "13 bytes is not a whole number of records"},
	} {
		keys, times, err := parseRecords(c.data)
		if c.wantError != "" {
			if err == nil || err.Error() != c.wantError {
				t.Errorf("%s: error %v, want %q", c.name, err, c.wantError)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(keys, c.keys) || !reflect.DeepEqual(times, c.times) {
			t.Errorf("%s: %v %v %v, want %v %v", c.name, keys, times, err, c.keys, c.times)
		}
	}
}

func keySet(ks ...uint32) map[uint32]int64 {
	m := map[uint32]int64{}
	for _, k := range ks {
		m[k] = 1
	}
	return m
}

func TestCountRange(t *testing.T) {
	for _, c := range []struct {
		name  string
		keys  map[uint32]int64
		first uint32
		n     int
		want  int
	}{
		{"no keys", nil, 10, 5, 0},
		{"none wanted", keySet(10, 11), 10, 0, 0},
		{"all in", keySet(10, 11, 14), 10, 5, 3},
		{"below and above are out", keySet(9, 10, 14, 15), 10, 5, 2},
		{"wrapping past 2^32", keySet(math.MaxUint32-2, math.MaxUint32-1, math.MaxUint32, 0, 1, 2), math.MaxUint32 - 1, 4, 4},
	} {
		if got := countRange(c.keys, c.first, c.n); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

func TestRate(t *testing.T) {
	for _, c := range []struct {
		name  string
		times []int64
		want  float64
	}{
		{"none", nil, 0},
		{"one", []int64{5 * s}, 0},
		{"all at once", []int64{s, s, s}, 0},
		{"two a second apart", []int64{0, s}, 1},
		{"three over a second", []int64{0, s / 2, s}, 2},
		{"out of order", []int64{s, 0, s / 2}, 2},
		{"equal last times", []int64{0, s / 4, s / 4}, 8},
	} {
		if got := rate(c.times); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSince(t *testing.T) {
	for _, c := range []struct {
		name     string
		at, from map[uint32]int64
		want     []time.Duration
	}{
		{"nothing", nil, nil, nil},
		{"nothing in common", map[uint32]int64{1: 10}, map[uint32]int64{2: 5}, nil},
		{"common keys only, earlier arrivals negative", map[uint32]int64{1: 10, 2: 20, 3: 30}, map[uint32]int64{1: 4, 3: 35, 4: 0},
			[]time.Duration{-5, 6}},
	} {
		got := since(c.at, c.from)
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestPathResultAndCosts(t *testing.T) {
	p := pathResult(map[uint32]int64{100: 0, 101: s / 2, 102: s, 99: s}, []int64{0, s / 2, s, s}, 100, 4)
	if want := (PathResult{Received: 3, Lost: 1, Rate: 3}); p != want {
		t.Errorf("pathResult: %+v, want %+v", p, want)
	}
	for _, c := range []struct {
		name string
		res  RecvResult
		want PathResult
	}{
		{"nothing received", RecvResult{CPUNS: 5000, Reads: 0, Waits: 3}, PathResult{}},
		{"every figure", RecvResult{Received: 4, CPUNS: 8000, SysNS: 2000, Reads: 2, Waits: 4},
			PathResult{CPUPerEventUS: 2, SysPerEventUS: 0.5, EventsPerRead: 2, EventsPerWake: 1}},
		{"no reads nor waits counted", RecvResult{Received: 10, CPUNS: 1000}, PathResult{CPUPerEventUS: 0.1}},
	} {
		var got PathResult
		got.costs(c.res)
		if got != c.want {
			t.Errorf("costs, %s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestIPMonitorResult(t *testing.T) {
	for _, c := range []struct {
		name      string
		n, lines  int
		lastLine  int64
		direct    []int64
		want      IPMonitor
		wantFloat bool
	}{
		{"printed nothing", 10, 0, 0, []int64{s, 2 * s}, IPMonitor{Lost: 10}, false},
		{"no direct arrivals", 10, 4, 3 * s, nil, IPMonitor{Received: 4, Lost: 6}, false},
		{"behind direct", 10, 10, 5 * s / 2, []int64{s, 2 * s}, IPMonitor{Received: 10, Rate: 10 / 1.5, LagMS: 500}, false},
		{"done before direct's first", 4, 4, s / 2, []int64{s, 2 * s}, IPMonitor{Received: 4, LagMS: -1500}, false},
		{"one direct arrival", 1, 1, s + s/1000, []int64{s}, IPMonitor{Received: 1, Rate: 1000, LagMS: 1}, false},
	} {
		if got := ipMonitorResult(c.n, c.lines, c.lastLine, c.direct); *got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, *got, c.want)
		}
	}
}

func TestCeilingResult(t *testing.T) {
	fast := recvData{res: RecvResult{Received: 4, CPUNS: 4000, Reads: 1, Waits: 2}, times: []int64{0, s / 6, s / 3, s / 2}}
	slow := recvData{res: RecvResult{Received: 3, CPUNS: 6000, Reads: 3, Waits: 3}, times: []int64{0, s, 2 * s}}
	for _, c := range []struct {
		name    string
		n       int
		elapsed time.Duration
		rs      []recvData
		want    Ceiling
	}{
		{"no receivers", 4, time.Second / 2, nil, Ceiling{Sent: 4, SendRate: 8}},
		{"no time", 4, 0, []recvData{fast}, Ceiling{Sent: 4, Rate: 6, ReceiverCPUPerEventUS: 1, EventsPerRead: 4, EventsPerWake: 2}},
		{"the slowest rate, the most lost, mean costs", 4, 2 * time.Second, []recvData{fast, slow},
			Ceiling{Sent: 4, SendRate: 2, Rate: 1, Lost: 1, ReceiverCPUPerEventUS: 1.5, EventsPerRead: 2.5, EventsPerWake: 1.5}},
		{"the slowest first", 4, 2 * time.Second, []recvData{slow, fast},
			Ceiling{Sent: 4, SendRate: 2, Rate: 1, Lost: 1, ReceiverCPUPerEventUS: 1.5, EventsPerRead: 2.5, EventsPerWake: 1.5}},
		{"one got nothing", 4, time.Second, []recvData{fast, {}},
			Ceiling{Sent: 4, SendRate: 4, Rate: 0, Lost: 4, ReceiverCPUPerEventUS: 0.5, EventsPerRead: 2, EventsPerWake: 1}},
	} {
		if got := ceilingResult(c.n, c.elapsed, c.rs); *got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, *got, c.want)
		}
	}
}

func TestBridgePathsAndSummary(t *testing.T) {
	const first, n = 10, 4
	direct := map[uint32]int64{10: 1000, 11: 2000, 12: 3000, 13: 4000}
	// Receiver a got every event, 100 to 400 ns after direct delivery;
	// b lost two and got a key from before the run.
	a := recvData{res: RecvResult{Received: 4, CPUNS: 8000, Reads: 2, Waits: 1, Coalesced: 4, SocketDrops: 1},
		keys: map[uint32]int64{10: 1100, 11: 2200, 12: 3300, 13: 4400}, times: []int64{1100, 2200, 3300, s + 1100}}
	b := recvData{res: RecvResult{Received: 3, CPUNS: 3000, Reads: 3, Waits: 3, Coalesced: 0},
		keys: map[uint32]int64{9: 500, 10: 1500, 13: 4500}, times: []int64{500, 1500, 2*s + 500}}
	paths, pooled := bridgePaths([]recvData{a, b}, direct, first, n)
	slices.Sort(pooled)
	if want := []time.Duration{100, 200, 300, 400, 500, 500}; !slices.Equal(pooled, want) {
		t.Errorf("pooled %v, want %v", pooled, want)
	}
	da := compare.Distribute([]time.Duration{100, 200, 300, 400})
	db := compare.Distribute([]time.Duration{500, 500})
	want := []PathResult{
		{Received: 4, Lost: 0, Rate: 3, Added: &da, SocketDrops: 1, CPUPerEventUS: 2, EventsPerRead: 2, EventsPerWake: 4},
		{Received: 2, Lost: 2, Rate: 1, Added: &db, CPUPerEventUS: 1, EventsPerRead: 1, EventsPerWake: 1},
	}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths\n%+v\nwant\n%+v", paths, want)
	}
	if da.Count != 4 || da.P50 != 0.2 || da.Max != 0.4 {
		t.Errorf("a's added latency %+v", da)
	}
	var run RunResult
	summarizeReceivers(&run, paths, []RecvResult{a.res, b.res})
	if run.MaxLost != 2 || run.Delivered != 1 || run.ReceiverCPUPerEventUS != 1.5 || run.EventsPerRead != 1.5 ||
		run.EventsPerWake != 2.5 || run.CoalescedShare != 0.5 {
		t.Errorf("summary: max lost %d, delivered %v, CPU %v, per read %v, per wake %v, coalesced %v",
			run.MaxLost, run.Delivered, run.ReceiverCPUPerEventUS, run.EventsPerRead, run.EventsPerWake, run.CoalescedShare)
	}
	// No receivers: nothing summed, nothing divided by zero.
	paths, pooled = bridgePaths(nil, direct, first, n)
	var empty RunResult
	summarizeReceivers(&empty, paths, nil)
	if len(paths) != 0 || pooled != nil || !reflect.DeepEqual(empty, RunResult{}) {
		t.Errorf("no receivers: %v %v %+v", paths, pooled, empty)
	}
}

func stats(events, reads, msgs, sent, segmented, skipped uint64, user, sys int64, mallocs uint64, rss int64) netlinkbridge.StatsReport {
	return netlinkbridge.StatsReport{
		Bridge:  netlinkbridge.Stats{Events: events, JSONSkipped: skipped, Source: kernel.Stats{Reads: reads, Messages: msgs}},
		Sender:  mcast.SenderStats{Sent: sent, Segmented: segmented},
		Process: procstat.Snapshot{UserNS: user, SystemNS: sys, Mallocs: mallocs, MaxRSS: rss},
	}
}

func TestBridgeCosts(t *testing.T) {
	for _, c := range []struct {
		name                 string
		calib, before, after netlinkbridge.StatsReport
		want                 RunResult
	}{
		{"a run",
			stats(0, 0, 0, 0, 0, 0, 0, 0, 100, 1<<20),
			stats(0, 0, 0, 0, 0, 0, 1000, 500, 110, 1<<20),
			// 1000 events, 3 ms user and 1 ms system CPU, and 20
			// allocations, 10 of them the snapshot's own.
			stats(1000, 50, 1000, 2000, 1500, 1000, 3_001_000, 1_000_500, 130, 3<<20),
			RunResult{BridgeEvents: 1000, BridgeCPUPerEventUS: 4, BridgeSysPerEventUS: 1, AllocsPerEvent: 0.01,
				BridgeRSS: 3 << 20, BridgeMessagesPerRead: 20, BridgeSegmentedShare: 0.75, BridgeJSONSkipped: 1000}},
		{"fewer allocations than a snapshot's own",
			stats(0, 0, 0, 0, 0, 0, 0, 0, 100, 0),
			stats(0, 0, 0, 0, 0, 0, 0, 0, 120, 0),
			stats(10, 0, 0, 0, 0, 0, 0, 0, 125, 7),
			RunResult{BridgeEvents: 10, BridgeRSS: 7}},
		{"no events, reads or sends",
			stats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
			stats(5, 2, 9, 4, 4, 3, 1000, 1000, 10, 0),
			stats(5, 2, 9, 4, 4, 3, 9000, 9000, 90, 1<<20),
			RunResult{BridgeRSS: 1 << 20}},
	} {
		var got RunResult
		bridgeCosts(&got, c.calib, c.before, c.after)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n%+v\nwant\n%+v", c.name, got, c.want)
		}
	}
}

func TestSweepRate(t *testing.T) {
	for _, c := range []struct {
		name                 string
		configured, baseline float64
		ceil                 *Ceiling
		want                 float64
	}{
		{"no ceiling measured", 0, 1000, nil, 0},
		{"no ceiling measured, a set rate", 500, 1000, nil, 500},
		{"the ceiling is above the peak", 0, 1000, &Ceiling{Rate: 2000}, 0},
		{"0.9 of the ceiling exactly the peak", 0, 900, &Ceiling{Rate: 1000}, 0},
		{"the ceiling is below the peak", 0, 1000, &Ceiling{Rate: 1000}, 900},
		{"a set rate below the ceiling's", 800, 1000, &Ceiling{Rate: 1000}, 800},
		{"a set rate above the ceiling's", 950, 1000, &Ceiling{Rate: 1000}, 900},
		{"a ceiling of nothing", 500, 1000, &Ceiling{}, 0},
	} {
		if got := sweepRate(c.configured, c.ceil, c.baseline); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRatio(t *testing.T) {
	for _, c := range []struct{ a, b, want float64 }{{1, 2, 0.5}, {3, 0, 0}, {3, -1, 0}, {0, 4, 0}} {
		if got := ratio(c.a, c.b); got != c.want {
			t.Errorf("ratio(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestApplyLimits(t *testing.T) {
	rep := &Report{
		Baseline: &Baseline{GenRate: 100},
		Runs: []RunResult{
			{GenRate: 150, Delivered: 60, Ceiling: &Ceiling{Rate: 120}}, // limited by the ceiling
			{GenRate: 90, Delivered: 75, Ceiling: &Ceiling{Rate: 400}},  // by the peak, another run's
			{GenRate: 80, Delivered: 80},                                // no ceiling
			{GenRate: 80, Delivered: 80, Ceiling: &Ceiling{}},           // a ceiling of nothing
		},
	}
	applyLimits(rep)
	if rep.PeakRate != 150 {
		t.Errorf("peak %v, want 150", rep.PeakRate)
	}
	for i, want := range [][2]float64{{120, 0.5}, {150, 0.5}, {0, 0}, {0, 0}} {
		if r := rep.Runs[i]; r.Limit != want[0] || r.LimitRatio != want[1] {
			t.Errorf("run %d: limit %v, ratio %v; want %v, %v", i, r.Limit, r.LimitRatio, want[0], want[1])
		}
	}
	// The baseline alone, and nothing at all.
	rep = &Report{Baseline: &Baseline{GenRate: 100}}
	if applyLimits(rep); rep.PeakRate != 100 {
		t.Errorf("baseline only: peak %v, want 100", rep.PeakRate)
	}
	rep = &Report{}
	if applyLimits(rep); rep.PeakRate != 0 {
		t.Errorf("empty report: peak %v, want 0", rep.PeakRate)
	}
}

func TestPct(t *testing.T) {
	ten := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{nil, 0.5, 0}, {[]time.Duration{7}, 0.5, 7}, {[]time.Duration{7}, 0.995, 7},
		{ten, 0, 1}, {ten, 0.5, 6}, {ten, 0.99, 10}, {ten, 0.995, 10}, {ten, 1, 10},
	} {
		if got := pct(c.sorted, c.q); got != c.want {
			t.Errorf("pct(%v, %v) = %v, want %v", c.sorted, c.q, got, c.want)
		}
	}
}

func TestStatNice(t *testing.T) {
	for _, c := range []struct {
		stat    string
		want    int
		wantErr bool
	}{
		{"1234 (nlmcast) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 25 5 4 0 100 0 0", 5, false},
		{"1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 39 19 4 0", 19, false},
		{"1234 (nlmcast) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 0 -20 4", -20, false},
		{"1234 (nlmcast) S 1 2", 0, true},
		{"1234 nlmcast S", 0, true},
	} {
		got, err := statNice([]byte(c.stat))
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("statNice(%q) = %d, %v; want %d, error %v", c.stat, got, err, c.want, c.wantErr)
		}
	}
}

func TestConfig(t *testing.T) {
	d := DefaultConfig()
	if err := d.Validate(); err != nil {
		t.Fatalf("the default config: %v", err)
	}
	if d.Events != DefaultEvents || d.Batch != DefaultBatch || d.LatencyEvents != DefaultLatencyEvents ||
		d.LatencyRate != DefaultLatencyRate || d.Burst != DefaultBurst || !slices.Equal(d.Receivers, DefaultReceivers) {
		t.Errorf("DefaultConfig %+v", d)
	}
	if !slices.Equal(d.LatencyRates, DefaultLatencyRates) || d.LatencyRounds != DefaultLatencyRounds || d.LatencyTime != DefaultLatencyTime {
		t.Errorf("DefaultConfig latency rows %v, %d rounds, %v", d.LatencyRates, d.LatencyRounds, d.LatencyTime)
	}
	if !slices.Equal(d.LatencyReceivers, []int{1}) || d.LatencyJSON {
		t.Errorf("DefaultConfig latency rows: receivers %v, JSON %v; want [1], off", d.LatencyReceivers, d.LatencyJSON)
	}
	d.Receivers[0] = 99
	if DefaultReceivers[0] == 99 {
		t.Error("DefaultConfig shares DefaultReceivers")
	}
	for _, c := range []struct {
		field string
		set   func(*Config)
	}{
		{"Receivers", func(c *Config) { c.Receivers = []int{1, 0} }},
		{"Receivers", func(c *Config) { c.Receivers = []int{MaxReceivers + 1} }},
		{"Events", func(c *Config) { c.Events = 0 }},
		{"Rate", func(c *Config) { c.Rate = -1 }},
		{"Batch", func(c *Config) { c.Batch = 0 }},
		{"Batch", func(c *Config) { c.Batch = MaxBatch + 1 }},
		{"LatencyEvents", func(c *Config) { c.LatencyEvents = -1 }},
		{"LatencyRate", func(c *Config) { c.LatencyRate = 0 }},
		{"Burst", func(c *Config) { c.Burst = -1 }},
		{"ReceiverBuffer", func(c *Config) { c.ReceiverBuffer = -1 }},
		{"BridgeNice", func(c *Config) { c.BridgeNice = MinNice - 1 }},
		{"BridgeNice", func(c *Config) { c.BridgeNice = MaxNice + 1 }},
		{"Ways", func(c *Config) { c.Ways = -1 }},
		{"Ways", func(c *Config) { c.Ways = MaxReceivers + 1 }},
		{"LatencyRates", func(c *Config) { c.LatencyRates = []float64{20, 0} }},
		{"LatencyRounds", func(c *Config) { c.LatencyRounds = 0 }},
		{"LatencyRounds", func(c *Config) { c.LatencyRounds = MaxLatencyRounds + 1 }},
		{"LatencyTime", func(c *Config) { c.LatencyTime = 0 }},
		{"LatencyReceivers", func(c *Config) { c.LatencyReceivers = nil }},
		{"LatencyReceivers", func(c *Config) { c.LatencyReceivers = []int{1, 0} }},
		{"LatencyReceivers", func(c *Config) { c.LatencyReceivers = []int{-8} }},
		{"LatencyReceivers", func(c *Config) { c.LatencyReceivers = []int{MaxReceivers + 1} }},
		{"", func(c *Config) { c.LatencyReceivers, c.LatencyJSON = []int{1, MaxReceivers}, true }},
		{"", func(c *Config) { c.LatencyRates, c.LatencyReceivers = nil, nil }},              // no rows: no receivers needed
		{"", func(c *Config) { c.LatencyRates, c.LatencyRounds, c.LatencyTime = nil, 0, 0 }}, // no rows: no rounds needed
		{"", func(c *Config) { c.LatencyEvents, c.LatencyRate = 0, 0 }},                      // no latency run: no rate needed
		{"", func(c *Config) { c.Receivers, c.Burst, c.Ways = nil, 0, MaxReceivers }},
	} {
		cfg := DefaultConfig()
		c.set(&cfg)
		err := cfg.Validate()
		ce, _ := err.(*ConfigError)
		if c.field == "" && err != nil || c.field != "" && (ce == nil || ce.Field != c.field) {
			t.Errorf("%+v: %v, want an error of field %q", cfg, err, c.field)
		}
	}
	cfg := DefaultConfig()
	cfg.Events, cfg.Batch, cfg.LatencyEvents = 1000, 64, 7
	n, err := cfg.normalized()
	if err != nil || n.Events != 1024 || n.LatencyEvents != 8 || n.Self == "" || n.Log == nil {
		t.Errorf("normalized: %+v, %v", n, err)
	}
}

// A latency row's events: LatencyTime at its rate, within MinRateEvents
// and LatencyEvents, even.
func TestRateEvents(t *testing.T) {
	cfg := DefaultConfig()
	for _, c := range []struct {
		rate float64
		want int
	}{{20, 100}, {200, 1000}, {2000, DefaultLatencyEvents}, {5000, DefaultLatencyEvents}, {1, MinRateEvents}, {40.05, 202}} {
		if got := rateEvents(cfg, c.rate); got != c.want {
			t.Errorf("%v/s: %d events, want %d", c.rate, got, c.want)
		}
	}
	cfg.LatencyEvents = 10 // below the floor: the floor
	if got := rateEvents(cfg, 5000); got != MinRateEvents {
		t.Errorf("LatencyEvents 10: %d events, want %d", got, MinRateEvents)
	}
}

// A latency row pools its rounds per path, and its ratios come from the
// pooled distributions, round ratios from each round's pair.
func TestRateRow(t *testing.T) {
	us := func(vs ...int) []time.Duration {
		ds := make([]time.Duration, len(vs))
		for i, v := range vs {
			ds[i] = time.Duration(v) * time.Microsecond
		}
		return ds
	}
	run := func(added []time.Duration, handled uint64, cpu float64) *RunResult {
		r := &RunResult{added: added, directGen: us(10, 10), bridgeGen: us(50, 60), BridgeEvents: handled, BridgeCPUPerEventUS: cpu,
			Bridge: []PathResult{{Received: len(added), Lost: 2 - len(added)}}}
		r.Added = compare.Distribute(slices.Clone(added))
		return r
	}
	bridges := []*RunResult{run(us(40, 40), 2, 3), run(us(20, 20), 2, 5)}
	relays := []*RunResult{run(us(20, 20), 4, 0), run(us(40), 4, 0)}
	relays[0].bridgeGen, relays[1].bridgeGen = us(25, 40), us(25)
	bridges[0].PathCPUPerGeneratedUS, bridges[1].PathCPUPerGeneratedUS = 1000, 3000
	relays[0].PathCPUPerGeneratedUS, relays[1].PathCPUPerGeneratedUS = 70, 90
	row := rateRow(200, 2, 1, false, bridges, relays)
	if row.Bridge.CPUPerGeneratedUS != 2000 || row.Relay.CPUPerGeneratedUS != 80 {
		t.Errorf("CPU per generated event: bridge %v, relay %v; want the rounds' means, 2000 and 80", row.Bridge.CPUPerGeneratedUS, row.Relay.CPUPerGeneratedUS)
	}
	if row.Rate != 200 || row.Events != 2 || row.Rounds != 2 || row.Direct.Count != 8 || row.Receivers != 1 || row.JSON || row.JSONReceiver != nil {
		t.Errorf("row %+v", row)
	}
	if b := row.Bridge; b.Received != 4 || b.Lost != 0 || b.Added.Count != 4 || b.FromRequest.Count != 4 || b.Handled != 4 || b.CPUPerEventUS != 4 {
		t.Errorf("bridge %+v", b)
	}
	if r := row.Relay; r.Received != 3 || r.Lost != 1 || r.Added.Count != 3 || r.Handled != 8 || r.CPUPerEventUS != 0 {
		t.Errorf("relay %+v", r)
	}
	if row.P50Ratio != row.Bridge.Added.P50/row.Relay.Added.P50 || row.P99Ratio != row.Bridge.Added.P99/row.Relay.Added.P99 {
		t.Errorf("ratios %v %v from %+v / %+v", row.P50Ratio, row.P99Ratio, row.Bridge.Added, row.Relay.Added)
	}
	// From the request: the bridge's receivers at 50 and 60 us, the
	// relay's at 25, 25 and 40, whatever the direct subscriber's times.
	if row.FromRequestP50Ratio != 2 || row.FromRequestP99Ratio != 1.5 {
		t.Errorf("from-request ratios %v %v from %+v / %+v, want 2 1.5", row.FromRequestP50Ratio, row.FromRequestP99Ratio,
			row.Bridge.FromRequest, row.Relay.FromRequest)
	}
	if !slices.Equal(row.RoundP50Ratios, []float64{2, 0.5}) || !slices.Equal(row.RoundP99Ratios, []float64{2, 0.5}) {
		t.Errorf("round ratios %v %v, want [2 0.5]", row.RoundP50Ratios, row.RoundP99Ratios)
	}
	if row.GoRelay != nil || row.GoP50Ratio != 0 {
		t.Errorf("a Go relay %+v (ratio %v) in a row without its runs", row.GoRelay, row.GoP50Ratio)
	}
	// The Go relay's runs: a path of their own, their ratios to relay.c's,
	// and the direct subscriber's times still the other runs'.
	goRuns := []*RunResult{run(us(60, 60), 3, 0), run(us(60, 60), 3, 0)}
	goRuns[0].PathCPUPerGeneratedUS, goRuns[1].PathCPUPerGeneratedUS = 120, 140
	row.addGoRelay(goRuns)
	g := row.GoRelay
	if g == nil || g.Received != 4 || g.Lost != 0 || g.Added.Count != 4 || g.Handled != 6 || g.Added.P50 != 60 {
		t.Fatalf("go relay %+v", g)
	}
	if row.GoP50Ratio != 60/row.Relay.Added.P50 || row.GoP99Ratio != 60/row.Relay.Added.P99 || row.Direct.Count != 8 {
		t.Errorf("go relay ratios %v %v from %+v, direct %d", row.GoP50Ratio, row.GoP99Ratio, row.Relay.Added, row.Direct.Count)
	}
	if row.RelayAgain != nil || row.AgainP50Ratio != 0 {
		t.Errorf("relay.c's second runs %+v (ratio %v) in a row without them", row.RelayAgain, row.AgainP50Ratio)
	}
	// relay.c's second runs, the control: a path of their own, their
	// ratios to relay.c's first runs, one event lost, and the direct
	// subscriber's times still those of the bridge's and relay.c's first
	// runs.
	again := []*RunResult{run(us(30, 30), 4, 0), run(us(30), 4, 0)}
	row.addRelayAgain(again)
	if a := row.RelayAgain; a == nil || a.Received != 3 || a.Lost != 1 || a.Added.Count != 3 || a.Handled != 8 || a.Added.P50 != 30 {
		t.Fatalf("relay again %+v", a)
	}
	if row.AgainP50Ratio != 30/row.Relay.Added.P50 || row.AgainP99Ratio != 30/row.Relay.Added.P99 || row.Direct.Count != 8 || row.GoP50Ratio != 60/row.Relay.Added.P50 {
		t.Errorf("again ratios %v %v from %+v, direct %d, go ratio %v", row.AgainP50Ratio, row.AgainP99Ratio, row.Relay.Added, row.Direct.Count, row.GoP50Ratio)
	}
	var buf strings.Builder
	writeRates(&buf, []RateResult{row})
	if out := buf.String(); !strings.Contains(out, "go/relay p50") || !strings.Contains(out, "60 us") {
		t.Errorf("no Go relay's columns in:\n%s", out)
	}
	if out := buf.String(); !strings.Contains(out, "again: relay.c a second time") || !strings.Contains(out, "again/relay:") {
		t.Errorf("the control is not explained in:\n%s", out)
	}
	// Each path's CPU per event, under its header.
	lines := strings.Split(buf.String(), "\n")
	for i, l := range lines {
		if !strings.Contains(l, "cpu/event bridge") {
			continue
		}
		if !strings.Contains(l, "cpu/event go") || !regexp.MustCompile(`2000 us +80 us .* 130 us +`).MatchString(lines[i+1]) {
			t.Errorf("CPU per event not 2000, 80 and 130 us in:\n%s\n%s", l, lines[i+1])
		}
		// The control's ratios and loss after the Go relay's columns.
		want := fmt.Sprintf(`130 us +%.2f +%.2f +1 *$`, row.AgainP50Ratio, row.AgainP99Ratio)
		if !regexp.MustCompile(`cpu/event go +again/relay p50 +p99 +lost again *$`).MatchString(l) || !regexp.MustCompile(want).MatchString(lines[i+1]) {
			t.Errorf("the control's columns not %s in:\n%s\n%s", want, l, lines[i+1])
		}
		// The from-request ratios after the ratios by round.
		if !regexp.MustCompile(`by round p50 +p99 +from request p50 +p99`).MatchString(l) ||
			!regexp.MustCompile(`\.\.[0-9.]+ +2\.00 +1\.50 +0 +`).MatchString(lines[i+1]) {
			t.Errorf("from-request ratios not 2.00 and 1.50 after the ratios by round in:\n%s\n%s", l, lines[i+1])
		}
		return
	}
	t.Errorf("no CPU per event columns in:\n%s", buf.String())
}

// A latency row of R receivers with JSON on: the raw receivers' added
// latencies pooled over receivers and rounds, the ratios from those pooled
// figures, and the JSON receiver's apart, in none of them.
func TestRateRowReceiversJSON(t *testing.T) {
	us := func(vs ...int) []time.Duration {
		ds := make([]time.Duration, len(vs))
		for i, v := range vs {
			ds[i] = time.Duration(v) * time.Microsecond
		}
		return ds
	}
	const n = 2
	// run is a run of three receivers, each of which got both events,
	// the first adding added[0] to both, the second added[1], the third
	// added[2]; json, if set, is the JSON receiver's added latency.
	run := func(added [3]int, json []time.Duration) *RunResult {
		r := &RunResult{Receivers: 3, directGen: us(10, 10), bridgeGen: us(50, 60), BridgeEvents: n}
		for _, a := range added {
			r.added = append(r.added, us(a, a)...)
			r.Bridge = append(r.Bridge, PathResult{Received: n})
		}
		r.Added = compare.Distribute(slices.Clone(r.added))
		if json != nil {
			r.JSONReceiver = &PathResult{Received: len(json), Lost: n - len(json)}
			r.jsonAdded = json
		}
		return r
	}
	// The JSON receiver is far slower than every raw one: were it pooled,
	// the bridge's p99 would show it.
	bridges := []*RunResult{run([3]int{10, 20, 30}, us(5000, 5000)), run([3]int{20, 30, 40}, us(6000))}
	// The relay's second receiver, slow too, is in none of the relay's
	// figures either.
	relays := []*RunResult{run([3]int{20, 20, 20}, us(7000, 7000)), run([3]int{40, 40, 40}, us(8000, 8000))}
	row := rateRow(2000, n, 3, true, bridges, relays)
	if row.Receivers != 3 || !row.JSON || row.Rounds != 2 || row.Direct.Count != 8 {
		t.Errorf("row %+v", row)
	}
	b, r := row.Bridge, row.Relay
	if b.Received != 12 || b.Lost != 0 || b.Added.Count != 12 || r.Received != 12 || r.Added.Count != 12 {
		t.Errorf("bridge %+v, relay %+v: want 3 receivers × 2 rounds × 2 events pooled each", b, r)
	}
	if b.Added.Max != float64(40) || b.Added.P99 > 40 {
		t.Errorf("bridge added %+v: the JSON receiver's latency is pooled in it", b.Added)
	}
	want := compare.Distribute(us(10, 10, 20, 20, 30, 30, 20, 20, 30, 30, 40, 40))
	if b.Added != want {
		t.Errorf("bridge added %+v, want %+v", b.Added, want)
	}
	if row.P50Ratio != b.Added.P50/r.Added.P50 || row.P99Ratio != b.Added.P99/r.Added.P99 {
		t.Errorf("ratios %v %v from %+v / %+v", row.P50Ratio, row.P99Ratio, b.Added, r.Added)
	}
	j := row.JSONReceiver
	if j == nil || j.Received != 3 || j.Lost != 1 || j.Added.Count != 3 || j.Added.Min != 5000 || j.Added.Max != 6000 {
		t.Errorf("JSON receiver %+v, want 3 received, 1 lost, 5000 to 6000 us added", j)
	}
	if r.Added.Max != 40 {
		t.Errorf("relay added %+v: the second receiver's latency is pooled in it", r.Added)
	}
	s := row.RelaySecond
	if s == nil || s.Received != 4 || s.Lost != 0 || s.Added.Count != 4 || s.Added.Min != 7000 || s.Added.Max != 8000 {
		t.Errorf("relay's second receiver %+v, want 4 received, none lost, 7000 to 8000 us added", s)
	}
	if len(row.RoundP50Ratios) != 2 || row.RoundP50Ratios[0] != bridges[0].Added.P50/relays[0].Added.P50 {
		t.Errorf("round ratios %v", row.RoundP50Ratios)
	}
}

// The groups of latency rows: each receiver count, JSON off, then on
// when asked; the default is one group, 1 receiver and JSON off, as the
// rows always were.
func TestRateGroups(t *testing.T) {
	cfg := DefaultConfig()
	if got := rateGroups(cfg); !slices.Equal(got, []rateGroup{{1, false}}) {
		t.Errorf("default: %v", got)
	}
	cfg.LatencyReceivers, cfg.LatencyJSON = []int{1, 8}, true
	want := []rateGroup{{1, false}, {1, true}, {8, false}, {8, true}}
	if got := rateGroups(cfg); !slices.Equal(got, want) {
		t.Errorf("1,8 with JSON: %v, want %v", got, want)
	}
	if s := (rateGroup{8, true}).String(); s != "8 receivers, JSON on" {
		t.Errorf("%q", s)
	}
}

// The rows print a table per group, each under a header saying its
// receivers and JSON; the JSON group's has the JSON receiver's columns
// and says the relay has no JSON.
func TestWriteRates(t *testing.T) {
	hop := compare.Distribute([]time.Duration{time.Microsecond})
	row := func(r int, json bool) RateResult {
		x := RateResult{Rate: 200, Events: 2000, Rounds: 1, Receivers: r, JSON: json, BareHop: &hop, P50Ratio: 0.5, P99Ratio: 0.75}
		if json {
			x.JSONReceiver = &RateJSON{Received: 2000, Added: compare.Distribute([]time.Duration{77 * time.Microsecond})}
			x.RelaySecond = &RateJSON{Received: 1997, Lost: 3}
		}
		return x
	}
	var buf strings.Builder
	writeRates(&buf, []RateResult{row(1, false), row(1, true), row(8, false), row(8, true)})
	out := buf.String()
	for _, want := range []string{
		"1 receiver per run (the bridge's raw stream, the relay's group), JSON off",
		"1 receiver per run (the bridge's raw stream, the relay's group), JSON on",
		"8 receivers per run (the bridge's raw stream, the relay's group), JSON off",
		"8 receivers per run (the bridge's raw stream, the relay's group), JSON on",
		"the relay's runs have one more receiver of its group (second)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if c := strings.Count(out, "json added p50"); c != 2 {
		t.Errorf("%d tables with the JSON receiver's columns, want 2:\n%s", c, out)
	}
	if c := strings.Count(out, "events/s"); c != 4 {
		t.Errorf("%d tables, want 4:\n%s", c, out)
	}
	if !strings.Contains(out, "77 us") {
		t.Errorf("no JSON receiver's latency in:\n%s", out)
	}
	if c := strings.Count(out, "second lost"); c != 2 {
		t.Errorf("%d tables with the relay's second receiver's losses, want 2:\n%s", c, out)
	}
	if !regexp.MustCompile(`(?m) 3 *$`).MatchString(out) {
		t.Errorf("no second receiver's 3 lost at the end of a row in:\n%s", out)
	}
}

// The report's JSON says each row's receivers and JSON, and has the JSON
// receiver only where JSON was on.
func TestRateResultJSON(t *testing.T) {
	for _, c := range []struct {
		row  RateResult
		want []string
		not  []string
	}{
		{RateResult{Receivers: 8, JSON: true, JSONReceiver: &RateJSON{Received: 5}, RelaySecond: &RateJSON{Received: 4}},
			[]string{`"receivers":8`, `"json":true`, `"json_receiver":{"received":5`, `"relay_second_receiver":{"received":4`}, nil},
		{RateResult{Receivers: 1}, []string{`"receivers":1`, `"json":false`}, []string{"json_receiver", "relay_second_receiver"}},
	} {
		b, err := json.Marshal(c.row)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("no %s in %s", w, b)
			}
		}
		for _, w := range c.not {
			if strings.Contains(string(b), w) {
				t.Errorf("%s in %s", w, b)
			}
		}
	}
}

// A JSON receiver's key is the decoded event's netlink sequence number.
func TestJSONKey(t *testing.T) {
	for _, c := range []struct {
		event string
		key   uint32
		ok    bool
	}{
		{`{"type":"RTM_NEWADDR","type_num":20,"nlmsg":{"len":76,"flags":0,"seq":4242,"pid":7},"addr":{}}`, 4242, true},
		{`{"type":"RTM_DELADDR","nlmsg":{"seq":0}}`, 0, true},
		{`{"type":"RTM_NEWADDR"}`, 0, false},
		{`not json`, 0, false},
		{``, 0, false},
	} {
		key, ok := jsonKey(json.RawMessage(c.event))
		if key != c.key || ok != c.ok {
			t.Errorf("%s: %d %v, want %d %v", c.event, key, ok, c.key, c.ok)
		}
	}
}

// The bridge encodes JSON for a stream when its report says the stream
// has JSON and someone joined it.
func TestJSONJoined(t *testing.T) {
	rep := func(ss ...netlinkbridge.StreamStats) netlinkbridge.StatsReport {
		return netlinkbridge.StatsReport{Bridge: netlinkbridge.Stats{Streams: ss}}
	}
	for _, c := range []struct {
		rep  netlinkbridge.StatsReport
		want bool
	}{
		{rep(netlinkbridge.StreamStats{Name: "link", JSON: true, JSONJoined: true}, netlinkbridge.StreamStats{Name: benchStream, JSON: true, JSONJoined: true}), true},
		{rep(netlinkbridge.StreamStats{Name: "link", JSON: true, JSONJoined: true}, netlinkbridge.StreamStats{Name: benchStream, JSON: true}), false},
		{rep(netlinkbridge.StreamStats{Name: benchStream, JSONJoined: true}), false}, // sealed: no JSON events
		{rep(netlinkbridge.StreamStats{Name: "link", JSON: true, JSONJoined: true}), false},
		{rep(), false},
	} {
		if got := jsonJoined(c.rep, benchStream); got != c.want {
			t.Errorf("%+v: %v, want %v", c.rep.Bridge.Streams, got, c.want)
		}
	}
}

// The Go reference relay finds each message's group in its control
// message as relay.c does, past any other control message, and a
// message without one goes to group 0.
func TestPktGroup(t *testing.T) {
	cmsg := func(level, typ int32, data []byte) []byte {
		b := make([]byte, unix.CmsgSpace(len(data)))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(len(data)))
		copy(b[unix.CmsgLen(0):], data)
		return b
	}
	group := binary.NativeEndian.AppendUint32(nil, 7)
	for _, c := range []struct {
		name string
		oob  []byte
		want uint32
	}{
		{"pktinfo", cmsg(unix.SOL_NETLINK, unix.NETLINK_PKTINFO, group), 7},
		{"after another", slices.Concat(cmsg(unix.SOL_SOCKET, unix.SCM_CREDENTIALS, make([]byte, 12)), cmsg(unix.SOL_NETLINK, unix.NETLINK_PKTINFO, group)), 7},
		{"none", nil, 0},
		{"other only", cmsg(unix.SOL_SOCKET, unix.SCM_CREDENTIALS, make([]byte, 12)), 0},
		{"truncated", cmsg(unix.SOL_NETLINK, unix.NETLINK_PKTINFO, group)[:unix.CmsgLen(0)+2], 0},
	} {
		if g := pktGroup(c.oob); g != c.want {
			t.Errorf("%s: group %d, want %d", c.name, g, c.want)
		}
	}
}

// The paths of a latency row change order every round: two alternate;
// with three, six rounds run each of the six orders once, so that each path goes first
// as often, and right after each other path as often; the first two
// rounds already put a different path first, and relay.c beside each of
// the others in both orders.
func TestRoundOrder(t *testing.T) {
	paths := []int{pathBridge, pathRelay, pathGoRelay}
	seen := map[[3]int]bool{}
	first := map[int]int{}
	after := map[[2]int]int{}
	for round := range 6 {
		o := roundOrder(paths, round)
		if len(o) != 3 {
			t.Fatalf("round %d: order %v", round, o)
		}
		seen[[3]int(o)] = true
		first[o[0]]++
		after[[2]int{o[0], o[1]}]++
		after[[2]int{o[1], o[2]}]++
	}
	if len(seen) != 6 {
		t.Errorf("six rounds ran %d orders, want all 6: %v", len(seen), seen)
	}
	for _, p := range paths {
		if first[p] != 2 {
			t.Errorf("path %d first in %d of 6 rounds, want 2", p, first[p])
		}
	}
	for pair, n := range after {
		if n != 2 {
			t.Errorf("path %d right before %d in %d of 6 rounds, want 2", pair[0], pair[1], n)
		}
	}
	a, b := roundOrder(paths, 0), roundOrder(paths, 1)
	rb := slices.Clone(b)
	slices.Reverse(rb)
	if a[0] == b[0] || !slices.Equal(a, rb) {
		t.Errorf("rounds 1 and 2: %v, %v; want one the other backwards", a, b)
	}
	two := []int{pathBridge, pathRelay}
	for round := range 6 {
		want := []int{pathBridge, pathRelay}
		if round%2 == 1 {
			want = []int{pathRelay, pathBridge}
		}
		if o := roundOrder(two, round); !slices.Equal(o, want) {
			t.Errorf("two paths, round %d: %v, want %v (they alternate)", round, o, want)
		}
	}
	if !slices.Equal(paths, []int{pathBridge, pathRelay, pathGoRelay}) {
		t.Errorf("roundOrder changed its argument: %v", paths)
	}
	// The default four paths: in the first two rounds the bridge and the
	// control (relay.c again) run first and last, relay.c between them,
	// so that the control stands where the bridge stands; each pair of
	// rounds is an order and its reverse; over eight rounds each path
	// goes first twice.
	four := []int{pathBridge, pathRelay, pathGoRelay, pathRelayAgain}
	for round := 0; round < 8; round += 2 {
		a, b := roundOrder(four, round), roundOrder(four, round+1)
		slices.Reverse(b)
		if !slices.Equal(a, b) {
			t.Errorf("four paths, rounds %d and %d: %v, %v; want one the other backwards", round+1, round+2, a, roundOrder(four, round+1))
		}
	}
	for round := range 2 {
		o := roundOrder(four, round)
		ends := []int{o[0], o[3]}
		slices.Sort(ends)
		if !slices.Equal(ends, []int{pathBridge, pathRelayAgain}) || o[1] != pathRelay && o[2] != pathRelay {
			t.Errorf("four paths, round %d: %v; want the bridge and the control at the ends, relay.c between", round, o)
		}
	}
	clear(first)
	for round := range 8 {
		first[roundOrder(four, round)[0]]++
	}
	for _, p := range four {
		if first[p] != 2 {
			t.Errorf("four paths: path %d first in %d of 8 rounds, want 2", p, first[p])
		}
	}
}
