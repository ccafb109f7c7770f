package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/tool/rtgen"
)

type bench struct {
	cfg   Config
	dir   string
	seq   uint32 // next request sequence number
	runs  int    // bridge runs so far
	size  int    // netlink message bytes of one event
	relay string // the reference relay's program, once built
}

// Run runs the benchmark. It must run as root in a network namespace of its
// own (see EnterNamespace): it brings lo up and starts processes there.
// Every phase stops the processes it started before it returns, whether it
// failed or not.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	if err := loopbackUp(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "nlmcast-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b := &bench{cfg: cfg, dir: dir, seq: 1 << 20}
	rep := &Report{Events: cfg.Events, CPUs: runtime.NumCPU(), Kernel: kernelRelease(), Batch: cfg.Batch, BridgeNice: cfg.BridgeNice,
		IdleSockets: cfg.IdleSockets, NoSocketLimit: cfg.NoSocketLimit, NoHandoff: cfg.NoHandoff}
	if cfg.IdleSockets > 0 {
		b.logf("idle sockets: %d of uid 65534 joined to the stream, never read", cfg.IdleSockets)
		closeIdle, err := openIdleSockets(cfg.IdleSockets)
		if err != nil {
			return nil, err
		}
		defer closeIdle()
	}

	// Direct delivery and ip monitor first: the peak rate and the
	// message size, which the ceiling needs.
	b.logf("baseline: %d events, direct netlink subscriber%s", cfg.Events, map[bool]string{false: " and ip monitor", true: ""}[cfg.NoIPMonitor])
	if rep.Baseline, err = b.baseline(ctx); err != nil {
		return nil, err
	}
	rep.DatagramBytes = frame.HeaderLen + b.size
	if rep.Runs, err = b.sweep(ctx, rep.Baseline.GenRate, rep.DatagramBytes); err != nil {
		return nil, err
	}
	applyLimits(rep)
	if cfg.Ways > 0 {
		if rep.Ways, err = b.ways(ctx, cfg.Ways); err != nil {
			return nil, err
		}
	}
	if cfg.LatencyEvents > 0 {
		if err := b.latency(ctx, rep); err != nil {
			return nil, err
		}
	}
	if cfg.LatencyEvents > 0 && len(cfg.LatencyRates) > 0 {
		if rep.Rates, err = b.rates(ctx, rep.DatagramBytes); err != nil {
			return nil, err
		}
	}
	if !cfg.NoFleet {
		if rep.Fleet, err = b.fleet(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.Burst > 0 {
		if rep.Burst, err = b.burst(ctx, rep.DatagramBytes); err != nil {
			return nil, err
		}
	}
	return rep, ctx.Err()
}

// sweep runs, for each receiver count, the raw ceiling and a run through
// the bridge. baseRate is the baseline's generation rate; size the
// datagrams' bytes.
func (b *bench) sweep(ctx context.Context, baseRate float64, size int) ([]RunResult, error) {
	var runs []RunResult
	for _, r := range b.cfg.Receivers {
		var ceil *Ceiling
		if !b.cfg.NoCeiling {
			b.logf("raw ceiling: %d receivers, %d datagrams of %d bytes", r, b.cfg.Events, size)
			var err error
			if ceil, err = b.ceiling(ctx, r, size); err != nil {
				return nil, err
			}
		}
		rate := sweepRate(b.cfg.Rate, ceil, baseRate)
		b.logf("bridge: %d receivers, %d events at %s", r, b.cfg.Events, rateText(rate))
		run, err := b.bridgeRun(ctx, r, b.cfg.Events, rate, b.cfg.Batch, false, Way{})
		if err != nil {
			return nil, err
		}
		run.Ceiling = ceil
		if ceil != nil {
			run.CeilingRatio = ratio(run.Delivered, ceil.Rate)
		}
		runs = append(runs, *run)
	}
	return runs, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.cfg.Log, "bench: "+format+"\n", args...)
}

func rateText(r float64) string {
	if r == 0 {
		return "the kernel's peak rate"
	}
	return fmt.Sprintf("%.0f/s", r)
}

// churn generates n events from the next sequence numbers. sent, if set,
// is called with each batch's first and last number just before it is sent.
func (b *bench) churn(ctx context.Context, n int, rate float64, batch int, sent func(first, last uint32)) (rtgen.ChurnResult, uint32, error) {
	first := b.seq
	b.seq += uint32(n) + 1000
	if n%(2*batch) != 0 {
		return rtgen.ChurnResult{}, 0, fmt.Errorf("bench: %d events is not a whole number of add-then-delete pairs of %d-request batches", n, batch)
	}
	res, err := rtgen.Churn(ctx, rtgen.ChurnConfig{Events: n, Rate: rate, Batch: batch, FirstSeq: first, Sending: sent})
	if err == nil && res.Failed > 0 {
		err = fmt.Errorf("bench: the kernel refused %d of %d requests", res.Failed, res.Requests)
	}
	return res, first, err
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return strings.TrimRight(string(u.Release[:]), "\x00")
}
