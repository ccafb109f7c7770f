package bench

import (
	"context"
	"net/netip"
	"time"

	"github.com/nlmcast/nlmcast/internal/tool/compare"
)

// Baseline is the run without the bridge: the generator, a direct netlink
// subscriber, and ip monitor on the same burst.
type Baseline struct {
	Generated int        `json:"generated"`
	GenRate   float64    `json:"generated_per_s"`
	Direct    PathResult `json:"direct"`
	IPMonitor *IPMonitor `json:"ip_monitor,omitempty"`
}

// PathResult is what one subscriber got.
type PathResult struct {
	Received    int                   `json:"received"`
	Lost        int                   `json:"lost"`
	Rate        float64               `json:"received_per_s"` // from its first event to its last
	Added       *compare.Distribution `json:"added_latency,omitempty"`
	SocketDrops uint64                `json:"socket_drops,omitempty"`
	Overruns    int                   `json:"overruns,omitempty"`
	// The receiving process's CPU time per event received, and events per
	// read call and per wake-up (how well its reads batch).
	CPUPerEventUS float64 `json:"cpu_us_per_event"`
	SysPerEventUS float64 `json:"system_cpu_us_per_event"`
	EventsPerRead float64 `json:"events_per_read"`
	EventsPerWake float64 `json:"events_per_wakeup"`
}

// IPMonitor is what `ip -o monitor address` printed of the burst.
type IPMonitor struct {
	Received int     `json:"received"`
	Lost     int     `json:"lost"`
	Rate     float64 `json:"received_per_s"`
	LagMS    float64 `json:"lag_ms"` // its last line after the direct subscriber's last event
}

// baseline generates the events with a direct netlink subscriber and ip
// monitor listening, and no bridge. It sets b.size.
func (b *bench) baseline(ctx context.Context) (*Baseline, error) {
	n := b.cfg.Events
	g := &group{}
	defer g.close()
	var ipm *ipMonitor
	if !b.cfg.NoIPMonitor {
		var err error
		if ipm, err = b.startIPMonitor(ctx, g); err != nil {
			return nil, err
		}
		// Subscribed once it prints a marker. The direct subscriber
		// starts after: it sees no marker.
		if err := ipm.sync(ctx, markers[0], 50*time.Millisecond, readyTimeout); err != nil {
			return nil, err
		}
	}
	direct, files, err := b.receivers(ctx, g, ModeNetlink, 1, n, "base", netip.AddrPort{})
	if err != nil {
		return nil, err
	}
	gen, first, err := b.churn(ctx, n, b.cfg.Rate, b.cfg.Batch, nil)
	if err != nil {
		return nil, err
	}
	res, err := finish(direct, 5*time.Second)
	if err != nil {
		return nil, err
	}
	rs, err := collect(res, files)
	if err != nil {
		return nil, err
	}
	b.size = res[0].MsgBytes
	base := &Baseline{Generated: gen.Requests, GenRate: gen.Rate()}
	base.Direct = pathResult(rs[0].keys, rs[0].times, first, n)
	base.Direct.Overruns = res[0].Overruns
	if ipm != nil {
		// ip monitor prints as fast as it can: a marker after the burst
		// says it has printed all it will.
		if err := ipm.sync(ctx, markers[1], 100*time.Millisecond, 10*time.Second); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			b.logf("%v: counting what it printed", err)
		}
		ipm.c.stop()
		lines, last := ipm.counts()
		base.IPMonitor = ipMonitorResult(n, lines, last, rs[0].times)
	}
	return base, nil
}
