package bench

// The analysis: pure functions from what the processes of a run reported
// and recorded to the report's figures. No I/O here.

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nlmcast/nlmcast/internal/tool/compare"
	"github.com/nlmcast/nlmcast/netlinkbridge"
)

// roundUp rounds n up to a multiple of m.
func roundUp(n, m int) int { return (n + m - 1) / m * m }

// parseRecords reads a records file's bytes into a map from key to arrival
// time (the first arrival, should a key repeat) and every arrival time in
// file order.
func parseRecords(data []byte) (map[uint32]int64, []int64, error) {
	if len(data)%recordLen != 0 {
		return nil, nil, fmt.Errorf("%d bytes is not a whole number of records", len(data))
	}
	m := make(map[uint32]int64, len(data)/recordLen)
	times := make([]int64, 0, len(data)/recordLen)
	for b := data; len(b) > 0; b = b[recordLen:] {
		k, at := binary.LittleEndian.Uint32(b), int64(binary.LittleEndian.Uint64(b[4:]))
		if _, dup := m[k]; !dup {
			m[k] = at
		}
		times = append(times, at)
	}
	return m, times, nil
}

// countRange counts the keys from first to first+n-1, sequence numbers
// that may wrap past 2^32.
func countRange(keys map[uint32]int64, first uint32, n int) int {
	c := 0
	for k := range keys {
		if k-first < uint32(n) {
			c++
		}
	}
	return c
}

// rate is events per second from the first arrival to the last: the
// events after the first over the time they took. Zero for fewer than two
// arrivals or none of the time between them.
func rate(times []int64) float64 {
	if len(times) < 2 {
		return 0
	}
	lo, hi := times[0], times[0]
	for _, t := range times {
		lo, hi = min(lo, t), max(hi, t)
	}
	if hi == lo {
		return 0
	}
	return float64(len(times)-1) / (float64(hi-lo) / 1e9)
}

// since returns, for each key of at that from also has, at[key] minus
// from[key]: the time from generation to arrival, or added over direct
// delivery. In no particular order.
func since(at, from map[uint32]int64) []time.Duration {
	var ds []time.Duration
	for k, t := range at {
		if f, ok := from[k]; ok {
			ds = append(ds, time.Duration(t-f))
		}
	}
	return ds
}

// pathResult is what a subscriber with these records got of the n events
// from first.
func pathResult(keys map[uint32]int64, times []int64, first uint32, n int) PathResult {
	got := countRange(keys, first, n)
	return PathResult{Received: got, Lost: n - got, Rate: rate(times)}
}

// costs fills the per-event CPU, events per read and per wake-up from a
// receiver's report; each stays zero when what it is divided by is.
func (p *PathResult) costs(res RecvResult) {
	if res.Received > 0 {
		p.CPUPerEventUS = float64(res.CPUNS) / 1e3 / float64(res.Received)
		p.SysPerEventUS = float64(res.SysNS) / 1e3 / float64(res.Received)
	}
	if res.Reads > 0 {
		p.EventsPerRead = float64(res.Received) / float64(res.Reads)
	}
	if res.Waits > 0 {
		p.EventsPerWake = float64(res.Received) / float64(res.Waits)
	}
}

// ipMonitorResult is what ip monitor printed of n events: lines lines, the
// last at lastLine, against the direct subscriber's arrival times.
func ipMonitorResult(n, lines int, lastLine int64, direct []int64) *IPMonitor {
	im := &IPMonitor{Received: lines, Lost: n - lines}
	if len(direct) > 0 && lines > 0 {
		im.LagMS = float64(lastLine-direct[len(direct)-1]) / 1e6
		if d := lastLine - direct[0]; d > 0 {
			im.Rate = float64(lines) / (float64(d) / 1e9)
		}
	}
	return im
}

// ceilingResult sums up n datagrams sent in elapsed to receivers rs: the
// slowest one's rate, the most any lost, and their mean costs.
func ceilingResult(n int, elapsed time.Duration, rs []recvData) *Ceiling {
	c := &Ceiling{Sent: n}
	if elapsed > 0 {
		c.SendRate = float64(n) / elapsed.Seconds()
	}
	for i, r := range rs {
		rt := rate(r.times)
		if i == 0 || rt < c.Rate {
			c.Rate = rt
		}
		c.Lost = max(c.Lost, n-len(r.times))
		var p PathResult
		p.costs(r.res)
		c.ReceiverCPUPerEventUS += p.CPUPerEventUS / float64(len(rs))
		c.EventsPerRead += p.EventsPerRead / float64(len(rs))
		c.EventsPerWake += p.EventsPerWake / float64(len(rs))
	}
	return c
}

// bridgePaths returns each bridge receiver's result of the n events from
// first, with the latency it added over direct delivery, and those added
// latencies of all receivers pooled.
func bridgePaths(rs []recvData, direct map[uint32]int64, first uint32, n int) ([]PathResult, []time.Duration) {
	paths := make([]PathResult, 0, len(rs))
	var pooled []time.Duration
	for _, r := range rs {
		added := since(r.keys, direct)
		pooled = append(pooled, added...)
		dist := compare.Distribute(added)
		p := pathResult(r.keys, r.times, first, n)
		p.Added, p.SocketDrops = &dist, r.res.SocketDrops
		p.costs(r.res)
		paths = append(paths, p)
	}
	return paths, pooled
}

// summarizeReceivers fills run's summaries over its bridge receivers: the
// most any lost, the slowest one's rate, and the means of their costs and
// of their shares of datagrams that arrived coalesced.
func summarizeReceivers(run *RunResult, paths []PathResult, res []RecvResult) {
	for i, p := range paths {
		run.ReceiverCPUPerEventUS += p.CPUPerEventUS / float64(len(paths))
		run.EventsPerRead += p.EventsPerRead / float64(len(paths))
		run.EventsPerWake += p.EventsPerWake / float64(len(paths))
		if res[i].Received > 0 {
			run.CoalescedShare += float64(res[i].Coalesced) / float64(res[i].Received) / float64(len(paths))
		}
		run.MaxLost = max(run.MaxLost, p.Lost)
		if i == 0 || p.Rate < run.Delivered {
			run.Delivered = p.Rate
		}
	}
}

// bridgeCosts fills what the bridge process did and cost between stats
// snapshots before and after the run. calib is a snapshot taken just
// before before: taking one allocates, and that is not the run's.
func bridgeCosts(run *RunResult, calib, before, after netlinkbridge.StatsReport) {
	ev := after.Bridge.Events - before.Bridge.Events
	run.BridgeEvents = ev
	if ev > 0 {
		run.BridgeCPUPerEventUS = float64(after.Process.CPU()-before.Process.CPU()) / 1e3 / float64(ev)
		run.BridgeSysPerEventUS = float64(after.Process.SystemNS-before.Process.SystemNS) / 1e3 / float64(ev)
		own := before.Process.Mallocs - calib.Process.Mallocs
		run.AllocsPerEvent = max(0, float64(after.Process.Mallocs-before.Process.Mallocs)-float64(own)) / float64(ev)
	}
	run.BridgeRSS = after.Process.MaxRSS
	if reads := after.Bridge.Source.Reads - before.Bridge.Source.Reads; reads > 0 {
		run.BridgeMessagesPerRead = float64(after.Bridge.Source.Messages-before.Bridge.Source.Messages) / float64(reads)
	}
	if sent := after.Sender.Sent - before.Sender.Sent; sent > 0 {
		run.BridgeSegmentedShare = float64(after.Sender.Segmented-before.Sender.Segmented) / float64(sent)
	}
	run.BridgeJSONSkipped = after.Bridge.JSONSkipped - before.Bridge.JSONSkipped
	run.BridgeOverruns = after.Bridge.Source.Overruns - before.Bridge.Source.Overruns
	run.BridgeHandoffDropped = after.Bridge.HandoffDropped - before.Bridge.HandoffDropped
	run.BridgeDetached = after.Receivers.Detached
}

// sweepRate is the generation rate of a sweep run: the configured one
// (zero: the kernel's peak), but no more than 0.9 of the raw ceiling
// where that is below the baseline's generation rate: with more receivers
// than the host can feed at the kernel's peak, generate at what the
// ceiling allows. Nil ceil: none measured.
func sweepRate(configured float64, ceil *Ceiling, baseline float64) float64 {
	if ceil == nil {
		return configured
	}
	if limit := 0.9 * ceil.Rate; limit < baseline && (configured == 0 || configured > limit) {
		return limit
	}
	return configured
}

// ratio is a over b, zero when b is not positive.
func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// applyLimits sets the report's peak generation rate, the fastest of the
// baseline and every run (the baseline's alone varies from run to run by
// a fifth), and each run's limit, the lower of its ceiling and that peak,
// with its delivered rate's share of it.
func applyLimits(rep *Report) {
	if rep.Baseline != nil {
		rep.PeakRate = rep.Baseline.GenRate
	}
	for _, run := range rep.Runs {
		rep.PeakRate = max(rep.PeakRate, run.GenRate)
	}
	for i := range rep.Runs {
		if run := &rep.Runs[i]; run.Ceiling != nil && run.Ceiling.Rate > 0 {
			run.Limit = min(run.Ceiling.Rate, rep.PeakRate)
			run.LimitRatio = run.Delivered / run.Limit
		}
	}
}

// pct returns the q-quantile of sorted by rank q*len, for the plot.
func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// fleetFigures sums up a fleet run of n events from first: the direct
// subscriber's, the local receiver's and the fleet consumer's records, and
// the CPU time nlmcast publish and nats-server spent over it, per event
// generated.
func fleetFigures(n int, first uint32, direct, local, fleet recvData, pub, srv cpuSpent) FleetRun {
	fr := FleetRun{Direct: pathResult(direct.keys, direct.times, first, n)}
	fr.Direct.Overruns = direct.res.Overruns
	fr.Direct.costs(direct.res)
	paths, _ := bridgePaths([]recvData{local, fleet}, direct.keys, first, n)
	fr.Local, fr.Fleet = paths[0], paths[1]
	fr.FleetGaps = fleet.res.Gaps
	if n > 0 {
		fr.PublisherCPUPerEventUS = float64(pub.total) / 1e3 / float64(n)
		fr.PublisherSysPerEventUS = float64(pub.system) / 1e3 / float64(n)
		fr.ServerCPUPerEventUS = float64(srv.total) / 1e3 / float64(n)
		fr.ServerSysPerEventUS = float64(srv.system) / 1e3 / float64(n)
	}
	return fr
}

// publisherCounters reads the counters nlmcast publish logs as it stops,
// the last line of its stderr with counters="{Received:1 Published:2 ...}"
// (fleet.PublisherStats printed with %+v). Nil when there is none.
func publisherCounters(stderr string) map[string]uint64 {
	const key = `counters="{`
	i := strings.LastIndex(stderr, key)
	if i < 0 {
		return nil
	}
	rest := stderr[i+len(key):]
	j := strings.Index(rest, `}"`)
	if j < 0 {
		return nil
	}
	m := map[string]uint64{}
	for _, f := range strings.Fields(rest[:j]) {
		name, v, ok := strings.Cut(f, ":")
		if n, err := strconv.ParseUint(v, 10, 64); ok && err == nil {
			m[name] = n
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}
