package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/nlmcast/nlmcast/internal/tool/compare"
)

// RateResult is a latency row: at one rate, Rounds rounds of a run
// through the bridge in its default configuration, one through the
// reference relay (relay.c), unless Config.NoGoRelay one through the Go
// reference relay, and unless Config.NoRelayAgain a second one through
// relay.c, in an order that changes from round to round (see roundOrder),
// each with Receivers receivers beside a direct netlink subscriber, then
// a bare multicast hop. Distributions pool the rounds,
// and the receivers of each run.
type RateResult struct {
	Rate   float64 `json:"rate_per_s"`
	Events int     `json:"events_per_run"`
	Rounds int     `json:"rounds"`
	// Receivers is the receivers of each run: of the bridge's raw stream
	// in the bridge's runs, of the relay's group in the relay's.
	Receivers int `json:"receivers"`
	// JSON tells that the bridge's runs had one more receiver, of the
	// stream's JSON group, so that the bridge encoded JSON for every
	// event. It is in JSONReceiver, not in Bridge: the row compares the
	// raw receivers. The relay's runs then have one more receiver too, of
	// the relay's group (in RelaySecond, not in Relay), so that both wake
	// as many processes for every event.
	JSON bool `json:"json"`
	// Direct is the direct subscriber's time from the request, over the
	// bridge's runs and relay.c's (not the Go relay's, nor the control's).
	Direct compare.Distribution `json:"direct_from_request"`
	Bridge RatePath             `json:"bridge"`
	Relay  RatePath             `json:"relay"`
	// JSONReceiver is the JSON receiver of the bridge's runs, rounds
	// pooled; nil unless JSON.
	JSONReceiver *RateJSON `json:"json_receiver,omitempty"`
	// RelaySecond is the relays' runs' receiver beside the compared ones
	// (relay.c's, the Go relay's and relay.c's second runs'), the JSON
	// receiver's counterpart, rounds pooled; nil unless JSON.
	RelaySecond *RateJSON `json:"relay_second_receiver,omitempty"`
	// BareHop is datagrams of the bridge's size at the same rate to a
	// blocking recvfrom: what this machine charges for any hop. Measured
	// once per rate, and shared by that rate's rows.
	BareHop *compare.Distribution `json:"bare_multicast_hop"`
	// P50Ratio and P99Ratio are the bridge's added latency over the
	// relay's (Bridge.Added over Relay.Added), at the median and the
	// 99th percentile: at most 1 when the bridge is no slower.
	P50Ratio float64 `json:"bridge_relay_p50_ratio"`
	P99Ratio float64 `json:"bridge_relay_p99_ratio"`
	// FromRequestP50Ratio and FromRequestP99Ratio are the bridge's
	// receivers' time from the request over the relay's receivers', at the
	// median and the 99th percentile. A path that delays the direct
	// subscriber (one that runs before it: a thread that asks the
	// scheduler for a shorter slice; LATENCY.md, "A shorter time slice")
	// lowers its added latency, and not this.
	FromRequestP50Ratio float64 `json:"bridge_relay_from_request_p50_ratio"`
	FromRequestP99Ratio float64 `json:"bridge_relay_from_request_p99_ratio"`
	// GoRelay is the Go reference relay's runs (GoRelay: relay.c written
	// in Go), rounds pooled, and GoP50Ratio and GoP99Ratio its added
	// latency over relay.c's: what Go itself costs a relay here (zero
	// where relay.c's is not positive, as P50Ratio). Nil and zero with
	// Config.NoGoRelay.
	GoRelay    *RatePath `json:"go_relay,omitempty"`
	GoP50Ratio float64   `json:"go_relay_relay_p50_ratio"`
	GoP99Ratio float64   `json:"go_relay_relay_p99_ratio"`
	// RelayAgain is relay.c's second runs in the same rounds (the
	// control), rounds pooled, and AgainP50Ratio and AgainP99Ratio its
	// added latency over the first runs': two identical paths, so how far
	// these are from 1 is how far this row's P50Ratio and P99Ratio can be
	// from 1 with nothing to tell the paths apart (zero where relay.c's is
	// not positive, as P50Ratio). Nil and zero with Config.NoRelayAgain.
	RelayAgain    *RatePath `json:"relay_again,omitempty"`
	AgainP50Ratio float64   `json:"relay_again_relay_p50_ratio"`
	AgainP99Ratio float64   `json:"relay_again_relay_p99_ratio"`
	// RoundP50Ratios and RoundP99Ratios are the same ratios round by
	// round: their spread is the noise of the machine.
	RoundP50Ratios []float64 `json:"round_p50_ratios"`
	RoundP99Ratios []float64 `json:"round_p99_ratios"`
}

// RateJSON is the JSON receiver of a latency row's bridge runs, its
// rounds pooled: what proves the bridge encoded JSON.
type RateJSON struct {
	Received int                  `json:"received"`
	Lost     int                  `json:"lost"`
	Added    compare.Distribution `json:"added_latency"`
}

// RatePath is one path of a latency row, its rounds pooled.
type RatePath struct {
	Received int `json:"received"`
	Lost     int `json:"lost"`
	// Added is the latency added over direct netlink, per event;
	// FromRequest the time from the request to the receiver; both pool
	// every compared receiver.
	Added       compare.Distribution `json:"added_latency"`
	FromRequest compare.Distribution `json:"from_request"`
	// Handled is what the bridge counted as events, or the messages the
	// relay says it relayed, over every round: what proves the path ran.
	Handled uint64 `json:"handled"`
	// CPUPerEventUS is the bridge's CPU time per event (its stats); zero
	// for the relay, which keeps none.
	CPUPerEventUS float64 `json:"cpu_us_per_event,omitempty"`
	// CPUPerGeneratedUS is the path's process's CPU time while events
	// were generated, per generated event, averaged over the rounds
	// (RunResult.PathCPUPerGeneratedUS): the bridge's and the relays'
	// alike.
	CPUPerGeneratedUS float64 `json:"cpu_us_per_generated"`
}

// rateEvents is the events of a latency row's run at rate rt.
func rateEvents(cfg Config, rt float64) int {
	n := int(math.Ceil(rt * cfg.LatencyTime.Seconds()))
	n = min(max(n, MinRateEvents), max(cfg.LatencyEvents, MinRateEvents))
	return roundUp(n, 2)
}

// A rateGroup is what a group of latency rows varies: the receivers of
// each run, and JSON on or off.
type rateGroup struct {
	receivers int
	json      bool
}

// rateGroups are the groups of latency rows cfg asks for: each receiver
// count, with JSON off, then on if LatencyJSON.
func rateGroups(cfg Config) []rateGroup {
	var gs []rateGroup
	for _, r := range cfg.LatencyReceivers {
		gs = append(gs, rateGroup{r, false})
		if cfg.LatencyJSON {
			gs = append(gs, rateGroup{r, true})
		}
	}
	return gs
}

func (g rateGroup) String() string {
	s := fmt.Sprintf("%d receiver", g.receivers)
	if g.receivers != 1 {
		s += "s"
	}
	if g.json {
		return s + ", JSON on"
	}
	return s + ", JSON off"
}

// The paths of a latency row's rounds.
const (
	pathBridge = iota
	pathRelay
	pathGoRelay
	pathRelayAgain
)

// roundOrder is the order of paths in a round: backwards in odd rounds
// and, with more than two paths, turned by one every two rounds, so that
// no path always goes first, or always right after another: two paths
// alternate; with three, six rounds run every order once.
func roundOrder(paths []int, round int) []int {
	k := 0
	if len(paths) > 2 {
		k = (round / 2) % len(paths)
	}
	order := slices.Concat(paths[k:], paths[:k])
	if round%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

// rates runs the latency rows, group by group and rate by rate; size is
// the datagrams' bytes.
func (b *bench) rates(ctx context.Context, size int) ([]RateResult, error) {
	if _, err := b.buildRelay(); err != nil {
		return nil, err
	}
	paths := []int{pathBridge, pathRelay}
	if !b.cfg.NoGoRelay {
		paths = append(paths, pathGoRelay)
	}
	if !b.cfg.NoRelayAgain {
		paths = append(paths, pathRelayAgain)
	}
	var rows []RateResult
	hops := map[float64]*compare.Distribution{}
	for _, grp := range rateGroups(b.cfg) {
		for _, rt := range b.cfg.LatencyRates {
			n := rateEvents(b.cfg, rt)
			runs := make([][]*RunResult, pathRelayAgain+1)
			for round := range b.cfg.LatencyRounds {
				for _, p := range roundOrder(paths, round) {
					var run *RunResult
					var err error
					switch p {
					case pathBridge:
						b.logf("latency %s, %s, round %d: the bridge (default streams and encodings), %d events", rateText(rt), grp, round+1, n)
						run, err = b.bridgeRun(ctx, grp.receivers, n, rt, 1, true, Way{defaults: true, json: grp.json})
					case pathRelay:
						b.logf("latency %s, %s, round %d: the reference relay, %d events", rateText(rt), grp, round+1, n)
						run, err = b.relayRun(ctx, grp.receivers, n, rt, grp.json, false)
					case pathGoRelay:
						b.logf("latency %s, %s, round %d: the Go reference relay, %d events", rateText(rt), grp, round+1, n)
						run, err = b.relayRun(ctx, grp.receivers, n, rt, grp.json, true)
					case pathRelayAgain:
						b.logf("latency %s, %s, round %d: the reference relay again (the control), %d events", rateText(rt), grp, round+1, n)
						run, err = b.relayRun(ctx, grp.receivers, n, rt, grp.json, false)
					}
					if err != nil {
						return nil, err
					}
					runs[p] = append(runs[p], run)
				}
			}
			row := rateRow(rt, n, grp.receivers, grp.json, runs[pathBridge], runs[pathRelay])
			if !b.cfg.NoGoRelay {
				row.addGoRelay(runs[pathGoRelay])
			}
			if !b.cfg.NoRelayAgain {
				row.addRelayAgain(runs[pathRelayAgain])
			}
			if grp.json {
				row.RelaySecond = poolBeside(slices.Concat(runs[pathRelay], runs[pathGoRelay], runs[pathRelayAgain]))
			}
			if _, ok := hops[rt]; !ok {
				b.logf("latency %s: bare hop, %d datagrams", rateText(rt), n)
				hop, err := b.hop(ctx, ModeBare, n, rt, size)
				if err != nil {
					return nil, err
				}
				hops[rt] = hop
			}
			row.BareHop = hops[rt]
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// rateRow pools the rounds of one rate: the bridge's runs and the relay's,
// as many of each, r receivers each, the bridge's with a JSON receiver if
// json.
func rateRow(rt float64, n, r int, json bool, bridges, relays []*RunResult) RateResult {
	row := RateResult{Rate: rt, Events: n, Rounds: len(bridges), Receivers: r, JSON: json}
	row.Bridge, row.Relay = poolPath(bridges), poolPath(relays)
	var direct []time.Duration
	for _, r := range slices.Concat(bridges, relays) {
		direct = append(direct, r.directGen...)
	}
	row.Direct = compare.Distribute(direct)
	if json {
		row.JSONReceiver, row.RelaySecond = poolBeside(bridges), poolBeside(relays)
	}
	row.P50Ratio = ratio(row.Bridge.Added.P50, row.Relay.Added.P50)
	row.P99Ratio = ratio(row.Bridge.Added.P99, row.Relay.Added.P99)
	row.FromRequestP50Ratio = ratio(row.Bridge.FromRequest.P50, row.Relay.FromRequest.P50)
	row.FromRequestP99Ratio = ratio(row.Bridge.FromRequest.P99, row.Relay.FromRequest.P99)
	for i := range min(len(bridges), len(relays)) {
		row.RoundP50Ratios = append(row.RoundP50Ratios, ratio(bridges[i].Added.P50, relays[i].Added.P50))
		row.RoundP99Ratios = append(row.RoundP99Ratios, ratio(bridges[i].Added.P99, relays[i].Added.P99))
	}
	return row
}

// poolPath pools the compared receivers of a path's runs.
func poolPath(runs []*RunResult) RatePath {
	var p RatePath
	var added, gen []time.Duration
	var cpu float64
	for _, r := range runs {
		added = append(added, r.added...)
		gen = append(gen, r.bridgeGen...)
		for _, br := range r.Bridge {
			p.Received += br.Received
			p.Lost += br.Lost
		}
		p.Handled += r.BridgeEvents
		cpu += r.BridgeCPUPerEventUS / float64(len(runs))
		p.CPUPerGeneratedUS += r.PathCPUPerGeneratedUS / float64(len(runs))
	}
	p.Added, p.FromRequest, p.CPUPerEventUS = compare.Distribute(added), compare.Distribute(gen), cpu
	return p
}

// addGoRelay adds the Go reference relay's runs to a row made of the
// bridge's and relay.c's: the path and its ratios to relay.c. The direct
// subscriber's times stay the bridge's and relay.c's runs'.
func (row *RateResult) addGoRelay(runs []*RunResult) {
	row.GoRelay, row.GoP50Ratio, row.GoP99Ratio = row.againstRelay(runs)
}

// addRelayAgain adds relay.c's second runs (the control) to a row made of
// the bridge's and relay.c's: the path and its ratios to relay.c's first
// runs. The direct subscriber's times stay those of the bridge's and
// relay.c's first runs.
func (row *RateResult) addRelayAgain(runs []*RunResult) {
	row.RelayAgain, row.AgainP50Ratio, row.AgainP99Ratio = row.againstRelay(runs)
}

// againstRelay pools the runs of a path compared with relay.c and gives
// its ratios to relay.c's added latency, at p50 and p99.
func (row *RateResult) againstRelay(runs []*RunResult) (*RatePath, float64, float64) {
	p := poolPath(runs)
	return &p, ratio(p.Added.P50, row.Relay.Added.P50), ratio(p.Added.P99, row.Relay.Added.P99)
}

// poolBeside pools the receiver beside the compared ones of runs: the
// bridge's JSON receiver, or the relay's second receiver.
func poolBeside(runs []*RunResult) *RateJSON {
	js := &RateJSON{}
	var added []time.Duration
	for _, r := range runs {
		if r.JSONReceiver != nil {
			js.Received += r.JSONReceiver.Received
			js.Lost += r.JSONReceiver.Lost
		}
		added = append(added, r.jsonAdded...)
	}
	js.Added = compare.Distribute(added)
	return js
}

// writeRates prints the latency rows, a table per group of rows with the
// same receivers and JSON.
func writeRates(w io.Writer, rows []RateResult) {
	if len(rows) == 0 {
		return
	}
	first := rows[0]
	fmt.Fprintf(w, "\nlatency by rate, %d rounds of each path, in an order that changes every round:\n", first.Rounds)
	fmt.Fprintln(w, "  bridge: as it runs by default (every rtnetlink stream, raw and JSON)")
	fmt.Fprintln(w, "  relay: the reference relay, relay.c (blocking recv, one sendto per message)")
	if first.GoRelay != nil {
		fmt.Fprintln(w, "  go relay: relay.c written in Go (one thread, blocking recvmsg, one sendto)")
	}
	if first.RelayAgain != nil {
		fmt.Fprintln(w, "  again: relay.c a second time, the control")
	}
	for len(rows) > 0 {
		grp := rateGroup{rows[0].Receivers, rows[0].JSON}
		n := 1
		for n < len(rows) && rows[n].Receivers == grp.receivers && rows[n].JSON == grp.json {
			n++
		}
		writeRateGroup(w, grp, rows[:n])
		rows = rows[n:]
	}
	fmt.Fprintln(w, "added: arrival through the path minus arrival at the direct netlink subscriber, per event, rounds")
	fmt.Fprintln(w, "and receivers pooled; by round: the lowest and highest ratio of single rounds, the machine's noise;")
	fmt.Fprintln(w, "from request: bridge/relay of the receivers' time from the request, which a path that delays the direct")
	fmt.Fprintln(w, "subscriber cannot lower;")
	fmt.Fprintln(w, "bare hop: measured once per rate; cpu/event: the CPU time of the path's process (the bridge, the relay)")
	fmt.Fprintln(w, "while events were generated, per event, its idle work included: what it costs at that rate.")
	if first.GoRelay != nil {
		fmt.Fprintln(w, "go/relay: the Go relay's added latency over relay.c's, what Go itself costs a relay on this machine.")
	}
	if first.RelayAgain != nil {
		fmt.Fprintln(w, "again/relay: relay.c's second runs over its first, two identical paths: how far it lies from 1.00 is how")
		fmt.Fprintln(w, "far bridge/relay may lie from 1.00 in that row with no difference between the paths for it to find.")
	}
}

// writeRateGroup prints the rows of one group.
func writeRateGroup(w io.Writer, grp rateGroup, rows []RateResult) {
	plural := "s"
	if grp.receivers == 1 {
		plural = ""
	}
	if grp.json {
		fmt.Fprintf(w, "\n%d receiver%s per run (the bridge's raw stream, the relay's group), JSON on: the bridge's runs have one\n", grp.receivers, plural)
		fmt.Fprintln(w, "more receiver, of the JSON group, so that the bridge encodes JSON (its latency is apart, in json added,")
		fmt.Fprintln(w, "not in bridge added); the relay's runs have one more receiver of its group (second), so that both")
		fmt.Fprintln(w, "wake as many processes for every event:")
	} else {
		fmt.Fprintf(w, "\n%d receiver%s per run (the bridge's raw stream, the relay's group), JSON off (no one joined the JSON group):\n", grp.receivers, plural)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "events/s\tevents/run\tdirect p50\tp99\tbridge added p50\tp99\trelay added p50\tp99\tbare hop p50\tp99\tbridge/relay p50\tp99\tby round p50\tp99\tfrom request p50\tp99\tlost bridge\trelay\tcpu/event bridge\trelay\t"
	goRelay := rows[0].GoRelay != nil
	if goRelay {
		head += "go relay added p50\tp99\tgo/relay p50\tp99\tlost go\tcpu/event go\t"
	}
	again := rows[0].RelayAgain != nil
	if again {
		head += "again/relay p50\tp99\tlost again\t"
	}
	if grp.json {
		head += "json added p50\tp99\tjson lost\tsecond lost\t"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		hop50, hop99 := "-", "-"
		if r.BareHop != nil {
			hop50, hop99 = us(r.BareHop.P50), us(r.BareHop.P99)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t%s\t%.2f\t%.2f\t%d\t%d\t%.0f us\t%.0f us\t", kilo(r.Rate), r.Events,
			us(r.Direct.P50), us(r.Direct.P99), us(r.Bridge.Added.P50), us(r.Bridge.Added.P99), us(r.Relay.Added.P50), us(r.Relay.Added.P99),
			hop50, hop99, r.P50Ratio, r.P99Ratio, spread(r.RoundP50Ratios), spread(r.RoundP99Ratios),
			r.FromRequestP50Ratio, r.FromRequestP99Ratio, r.Bridge.Lost, r.Relay.Lost,
			r.Bridge.CPUPerGeneratedUS, r.Relay.CPUPerGeneratedUS)
		if goRelay {
			if g := r.GoRelay; g != nil {
				fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%d\t%.0f us\t", us(g.Added.P50), us(g.Added.P99), r.GoP50Ratio, r.GoP99Ratio, g.Lost, g.CPUPerGeneratedUS)
			} else {
				fmt.Fprint(tw, "-\t-\t-\t-\t-\t-\t")
			}
		}
		if again {
			if a := r.RelayAgain; a != nil {
				fmt.Fprintf(tw, "%.2f\t%.2f\t%d\t", r.AgainP50Ratio, r.AgainP99Ratio, a.Lost)
			} else {
				fmt.Fprint(tw, "-\t-\t-\t")
			}
		}
		if grp.json {
			if j := r.JSONReceiver; j != nil {
				fmt.Fprintf(tw, "%s\t%s\t%d\t", us(j.Added.P50), us(j.Added.P99), j.Lost)
			} else {
				fmt.Fprint(tw, "-\t-\t-\t")
			}
			if s := r.RelaySecond; s != nil {
				fmt.Fprintf(tw, "%d\t", s.Lost)
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// spread prints the range of vs, "lo..hi" (either may be negative).
func spread(vs []float64) string {
	if len(vs) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f..%.2f", slices.Min(vs), slices.Max(vs))
}
