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

// RateResult is a latency row: at one rate, Rounds alternating rounds of
// a run through the bridge in its default configuration and one through
// the reference relay, each with one receiver beside a direct netlink
// subscriber, then a bare multicast hop. Distributions pool the rounds.
type RateResult struct {
	Rate   float64 `json:"rate_per_s"`
	Events int     `json:"events_per_run"`
	Rounds int     `json:"rounds"`
	// Direct is the direct subscriber's time from the request, over the
	// bridge's runs and the relay's.
	Direct compare.Distribution `json:"direct_from_request"`
	Bridge RatePath             `json:"bridge"`
	Relay  RatePath             `json:"relay"`
	// BareHop is datagrams of the bridge's size at the same rate to a
	// blocking recvfrom: what this machine charges for any hop.
	BareHop *compare.Distribution `json:"bare_multicast_hop"`
	// P50Ratio and P99Ratio are the bridge's added latency over the
	// relay's (Bridge.Added over Relay.Added), at the median and the
	// 99th percentile: at most 1 when the bridge is no slower.
	P50Ratio float64 `json:"bridge_relay_p50_ratio"`
	P99Ratio float64 `json:"bridge_relay_p99_ratio"`
	// RoundP50Ratios and RoundP99Ratios are the same ratios round by
	// round: their spread is the noise of the machine.
	RoundP50Ratios []float64 `json:"round_p50_ratios"`
	RoundP99Ratios []float64 `json:"round_p99_ratios"`
}

// RatePath is one path of a latency row, its rounds pooled.
type RatePath struct {
	Received int `json:"received"`
	Lost     int `json:"lost"`
	// Added is the latency added over direct netlink, per event;
	// FromRequest the time from the request to the receiver.
	Added       compare.Distribution `json:"added_latency"`
	FromRequest compare.Distribution `json:"from_request"`
	// Handled is what the bridge counted as events, or the messages the
	// relay says it relayed, over every round: what proves the path ran.
	Handled uint64 `json:"handled"`
	// CPUPerEventUS is the bridge's CPU time per event (its stats); zero
	// for the relay, which keeps none.
	CPUPerEventUS float64 `json:"cpu_us_per_event,omitempty"`
}

// rateEvents is the events of a latency row's run at rate rt.
func rateEvents(cfg Config, rt float64) int {
	n := int(math.Ceil(rt * cfg.LatencyTime.Seconds()))
	n = min(max(n, MinRateEvents), max(cfg.LatencyEvents, MinRateEvents))
	return roundUp(n, 2)
}

// rates runs the latency rows, rate by rate; size is the datagrams' bytes.
func (b *bench) rates(ctx context.Context, size int) ([]RateResult, error) {
	if _, err := b.buildRelay(); err != nil {
		return nil, err
	}
	var rows []RateResult
	for _, rt := range b.cfg.LatencyRates {
		n := rateEvents(b.cfg, rt)
		var bridges, relays []*RunResult
		for round := range b.cfg.LatencyRounds {
			// Alternate which goes first, so that neither always follows
			// the other.
			order := []bool{true, false}
			if round%2 == 1 {
				order = []bool{false, true}
			}
			for _, bridge := range order {
				if bridge {
					b.logf("latency %s, round %d: the bridge (default streams and encodings), %d events", rateText(rt), round+1, n)
					run, err := b.bridgeRun(ctx, 1, n, rt, 1, true, Way{defaults: true})
					if err != nil {
						return nil, err
					}
					bridges = append(bridges, run)
				} else {
					b.logf("latency %s, round %d: the reference relay, %d events", rateText(rt), round+1, n)
					run, err := b.relayRun(ctx, n, rt)
					if err != nil {
						return nil, err
					}
					relays = append(relays, run)
				}
			}
		}
		b.logf("latency %s: bare hop, %d datagrams", rateText(rt), n)
		hop, err := b.hop(ctx, ModeBare, n, rt, size)
		if err != nil {
			return nil, err
		}
		row := rateRow(rt, n, bridges, relays)
		row.BareHop = hop
		rows = append(rows, row)
	}
	return rows, nil
}

// rateRow pools the rounds of one rate: the bridge's runs and the relay's,
// as many of each.
func rateRow(rt float64, n int, bridges, relays []*RunResult) RateResult {
	row := RateResult{Rate: rt, Events: n, Rounds: len(bridges)}
	var direct []time.Duration
	pool := func(runs []*RunResult) RatePath {
		var p RatePath
		var added, gen []time.Duration
		var cpu float64
		for _, r := range runs {
			direct = append(direct, r.directGen...)
			added = append(added, r.added...)
			gen = append(gen, r.bridgeGen...)
			for _, br := range r.Bridge {
				p.Received += br.Received
				p.Lost += br.Lost
			}
			p.Handled += r.BridgeEvents
			cpu += r.BridgeCPUPerEventUS / float64(len(runs))
		}
		p.Added, p.FromRequest, p.CPUPerEventUS = compare.Distribute(added), compare.Distribute(gen), cpu
		return p
	}
	row.Bridge, row.Relay = pool(bridges), pool(relays)
	row.Direct = compare.Distribute(direct)
	row.P50Ratio = ratio(row.Bridge.Added.P50, row.Relay.Added.P50)
	row.P99Ratio = ratio(row.Bridge.Added.P99, row.Relay.Added.P99)
	for i := range min(len(bridges), len(relays)) {
		row.RoundP50Ratios = append(row.RoundP50Ratios, ratio(bridges[i].Added.P50, relays[i].Added.P50))
		row.RoundP99Ratios = append(row.RoundP99Ratios, ratio(bridges[i].Added.P99, relays[i].Added.P99))
	}
	return row
}

// writeRates prints the latency rows.
func writeRates(w io.Writer, rows []RateResult) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nlatency by rate, 1 receiver, %d alternating rounds of the bridge (as it runs by default: every rtnetlink\n", rows[0].Rounds)
	fmt.Fprintln(w, "stream, raw and JSON) and the reference relay (relay.c: blocking recv, one sendto per message):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "events/s\tevents/run\tdirect p50\tp99\tbridge added p50\tp99\trelay added p50\tp99\tbare hop p50\tp99\tbridge/relay p50\tp99\tby round p50\tp99\tlost bridge\trelay\t")
	for _, r := range rows {
		hop50, hop99 := "-", "-"
		if r.BareHop != nil {
			hop50, hop99 = us(r.BareHop.P50), us(r.BareHop.P99)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t%s\t%d\t%d\t\n", kilo(r.Rate), r.Events,
			us(r.Direct.P50), us(r.Direct.P99), us(r.Bridge.Added.P50), us(r.Bridge.Added.P99), us(r.Relay.Added.P50), us(r.Relay.Added.P99),
			hop50, hop99, r.P50Ratio, r.P99Ratio, spread(r.RoundP50Ratios), spread(r.RoundP99Ratios), r.Bridge.Lost, r.Relay.Lost)
	}
	tw.Flush()
	fmt.Fprintln(w, "added: arrival through the path minus arrival at the direct netlink subscriber, per event, rounds pooled;")
	fmt.Fprintln(w, "by round: the lowest and highest ratio of single rounds, the machine's noise.")
}

// spread prints the range of vs, "lo..hi" (either may be negative).
func spread(vs []float64) string {
	if len(vs) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f..%.2f", slices.Min(vs), slices.Max(vs))
}
