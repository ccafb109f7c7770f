package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nlmcast/nlmcast/internal/tool/compare"
)

// FleetHost is the host name the fleet phase publishes under: its subject
// is nlmcast.bench.ipv4-ifaddr.
const FleetHost = "bench"

// fleetReady is what nats-server logs once it takes connections.
const fleetReady = "Server is ready"

// FleetResult is the fleet phase: the bridge's stream published by
// nlmcast publish to a JetStream nats-server in the bench's namespace and
// read back by one consumer through package fleet, beside a receiver of
// the bridge's loopback group, in the same runs.
type FleetResult struct {
	Server string     `json:"nats_server"` // what nats-server --version printed, like "nats-server: v2.9.10"
	Runs   []FleetRun `json:"runs"`
}

// FleetRun is one run of the fleet phase: Generated events at a rate, read
// by a direct netlink subscriber, by a receiver of the loopback group (the
// local path) and by a consumer through JetStream (the fleet path), each
// in a process of its own. Added latencies are over direct netlink, as the
// bridge runs' are.
type FleetRun struct {
	TargetRate float64    `json:"target_per_s,omitempty"` // zero: the kernel's peak
	Batch      int        `json:"requests_per_sendmsg"`
	Generated  int        `json:"generated"`
	GenRate    float64    `json:"generated_per_s"`
	Direct     PathResult `json:"direct"`
	Local      PathResult `json:"local"`
	Fleet      PathResult `json:"fleet"`
	// FleetGaps is the frames the consumer's Gap notices said were
	// missing from the bridge's sequence: lost before JetStream stored
	// them, by the bridge (BridgeOverruns, BridgeHandoffDropped: the local
	// receiver misses those too), the publisher's socket, or its buffer
	// (an overrun marker).
	FleetGaps uint64 `json:"fleet_gaps"`
	// What the bridge counted over the run (its stats): netlink overruns,
	// datagrams its relay dropped, and its CPU time per event.
	BridgeOverruns       uint64  `json:"bridge_overruns"`
	BridgeHandoffDropped uint64  `json:"bridge_handoff_dropped"`
	BridgeCPUPerEventUS  float64 `json:"bridge_cpu_us_per_event"`
	// The CPU time per event generated of nlmcast publish and of
	// nats-server, from their /proc/PID/stat (ticks of 10 ms) over the run,
	// from before the first event to the consumer's last; the kernel's
	// share of each separately.
	PublisherCPUPerEventUS float64 `json:"publisher_cpu_us_per_event"`
	PublisherSysPerEventUS float64 `json:"publisher_system_cpu_us_per_event"`
	ServerCPUPerEventUS    float64 `json:"nats_server_cpu_us_per_event"`
	ServerSysPerEventUS    float64 `json:"nats_server_system_cpu_us_per_event"`
	// Publisher is the publisher's counters as it logged them when it
	// stopped (fleet.PublisherStats: Received, Published, Dropped, ...).
	Publisher map[string]uint64 `json:"publisher_counters,omitempty"`
}

// cpuSpent is a process's CPU time over a run, in nanoseconds.
type cpuSpent struct{ total, system int64 }

// fleet runs the fleet phase: one nats-server for the phase, and a run at
// Config.Rate with Config.Events, then one at LatencyRate with
// LatencyEvents, one request per sendmsg, if there is a latency run.
func (b *bench) fleet(ctx context.Context) (*FleetResult, error) {
	ver, err := exec.CommandContext(ctx, b.cfg.NATSServer, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("bench: %s --version: %w", b.cfg.NATSServer, err)
	}
	res := &FleetResult{Server: strings.TrimSpace(string(ver))}
	g := &group{}
	defer g.close()
	store := filepath.Join(b.dir, "nats")
	if err := os.Mkdir(store, 0o700); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	b.logf("fleet: %s with JetStream on 127.0.0.1:%d, storage in %s", res.Server, port, store)
	srv, err := g.start(ctx, spec{name: "nats-server", printed: fleetReady,
		argv: []string{b.cfg.NATSServer, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", store}})
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	type run struct {
		n, batch int
		rate     float64
	}
	runs := []run{{b.cfg.Events, b.cfg.Batch, b.cfg.Rate}}
	if b.cfg.LatencyEvents > 0 {
		runs = append(runs, run{b.cfg.LatencyEvents, 1, b.cfg.LatencyRate})
	}
	for _, r := range runs {
		b.logf("fleet: %d events at %s, %d per sendmsg, through nlmcast publish and JetStream to one consumer, beside a local receiver",
			r.n, rateText(r.rate), r.batch)
		fr, err := b.fleetRun(ctx, srv, url, r.n, r.rate, r.batch)
		if err != nil {
			return nil, err
		}
		res.Runs = append(res.Runs, *fr)
	}
	return res, nil
}

// fleetRun runs the bridge, nlmcast publish to the server srv at url, a
// direct subscriber, a local receiver and a fleet consumer while n events
// are generated at rate rt, batch requests per sendmsg.
func (b *bench) fleetRun(ctx context.Context, srv *child, url string, n int, rt float64, batch int) (*FleetRun, error) {
	b.runs++
	tag := fmt.Sprintf("run%d", b.runs)
	statsFile := filepath.Join(b.dir, "bridge-"+tag+".json")
	stats, err := watchStats(statsFile)
	if err != nil {
		return nil, err
	}
	defer stats.close()
	g := &group{}
	defer g.close()
	br, err := g.start(ctx, spec{name: "bridge", argv: b.bridgeArgs(statsFile, Way{}), notify: true})
	if err != nil {
		return nil, err
	}
	// Ready once it has joined the group and JetStream has the stream.
	pub, err := g.start(ctx, spec{name: "nlmcast publish", notify: true,
		argv: []string{b.cfg.Self, "publish", "--nats", url, "--host", FleetHost, "--log-level", "info", "ipv4-ifaddr"}})
	if err != nil {
		return nil, err
	}
	direct, dfiles, err := b.receivers(ctx, g, ModeNetlink, 1, n, tag, netip.AddrPort{})
	if err != nil {
		return nil, err
	}
	local, lfiles, err := b.receivers(ctx, g, ModeBridge, 1, n, tag, netip.AddrPort{})
	if err != nil {
		return nil, err
	}
	// Ready once its JetStream consumer is made: it reads every frame
	// stored from then on.
	fl, ffiles, err := b.receivers(ctx, g, ModeFleet, 1, n, tag, netip.AddrPort{}, "--nats", url, "--host", FleetHost)
	if err != nil {
		return nil, err
	}
	before, err := stats.snapshot(br, 1)
	if err != nil {
		return nil, err
	}
	pub0, err := spent(pub)
	if err != nil {
		return nil, err
	}
	srv0, err := spent(srv)
	if err != nil {
		return nil, err
	}
	gen, first, err := b.churn(ctx, n, rt, batch, nil)
	if err != nil {
		return nil, err
	}
	dres, err := finish(direct, 10*time.Second)
	if err != nil {
		return nil, err
	}
	lres, err := finish(local, 5*time.Second)
	if err != nil {
		return nil, err
	}
	fres, err := finish(fl, 10*time.Second)
	if err != nil {
		return nil, err
	}
	pub1, err := spent(pub)
	if err != nil {
		return nil, err
	}
	srv1, err := spent(srv)
	if err != nil {
		return nil, err
	}
	after, err := stats.snapshot(br, 2)
	if err != nil {
		return nil, err
	}
	pub.stop() // it logs its counters as it stops
	if err := pub.failed(); err != nil {
		return nil, err
	}
	recs, err := collect(append(append(dres, lres...), fres...), append(append(dfiles, lfiles...), ffiles...))
	if err != nil {
		return nil, err
	}
	fr := fleetFigures(n, first, recs[0], recs[1], recs[2],
		cpuSpent{pub1.total - pub0.total, pub1.system - pub0.system}, cpuSpent{srv1.total - srv0.total, srv1.system - srv0.system})
	fr.TargetRate, fr.Batch, fr.Generated, fr.GenRate = rt, batch, gen.Requests, gen.Rate()
	fr.Publisher = publisherCounters(pub.Stderr())
	fr.BridgeOverruns = after.Bridge.Source.Overruns - before.Bridge.Source.Overruns
	fr.BridgeHandoffDropped = after.Bridge.HandoffDropped - before.Bridge.HandoffDropped
	if ev := after.Bridge.Events - before.Bridge.Events; ev > 0 {
		fr.BridgeCPUPerEventUS = float64(after.Process.CPU()-before.Process.CPU()) / 1e3 / float64(ev)
	}
	return &fr, nil
}

// spent returns a child's CPU time so far.
func spent(c *child) (cpuSpent, error) {
	u, s, err := c.cpu()
	return cpuSpent{u + s, s}, err
}

// freePort returns a TCP port of 127.0.0.1 that no one listens on now.
// In the bench's own namespace, no one else takes it before the server.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: a free port for nats-server: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeFleet prints the fleet phase: for each run, the local path's row
// and the fleet path's, then what publishing cost.
func writeFleet(w io.Writer, f *FleetResult) {
	if f == nil || len(f.Runs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nfleet: the stream through 'nlmcast publish' and %s (JetStream, file storage, 127.0.0.1 in the namespace)\n",
		strings.Replace(f.Server, ": ", " ", 1))
	fmt.Fprintln(w, "to one consumer (package fleet), beside a receiver of the loopback group in the same run:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate\tpath\tgenerated/s\treceived\tlost\tdelivered/s\tadded p50\tp99\tmax\treceiver CPU/event\t")
	for _, r := range f.Runs {
		rt := rateText(r.TargetRate)
		if r.TargetRate == 0 {
			rt = "peak"
		}
		row := func(name string, p PathResult) {
			added := &compare.Distribution{}
			if p.Added != nil {
				added = p.Added
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%.2f us\t\n", rt, name, kilo(r.GenRate), p.Received, p.Lost, kilo(p.Rate),
				us(added.P50), us(added.P99), us(added.Max), p.CPUPerEventUS)
		}
		row("local", r.Local)
		row("fleet", r.Fleet)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nwhat publishing cost, per event generated (CPU time from /proc/PID/stat, in ticks of 10 ms), and where")
	fmt.Fprintln(w, "events were lost:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate\tevents\tbridge CPU/event\tnlmcast publish CPU/event\tof it system\tnats-server CPU/event\tof it system\tfleet lost beyond local\tbridge overruns\tbridge dropped\tconsumer gaps\tpublisher counters\t")
	for _, r := range f.Runs {
		rt := rateText(r.TargetRate)
		if r.TargetRate == 0 {
			rt = "peak"
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f us\t%.2f us\t%.2f us\t%.2f us\t%.2f us\t%d\t%d\t%d\t%d\t%s\t\n", rt, r.Generated, r.BridgeCPUPerEventUS,
			r.PublisherCPUPerEventUS, r.PublisherSysPerEventUS, r.ServerCPUPerEventUS, r.ServerSysPerEventUS,
			r.Fleet.Lost-r.Local.Lost, r.BridgeOverruns, r.BridgeHandoffDropped, r.FleetGaps, counterText(r.Publisher))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nadded: arrival minus direct netlink arrival, per event. fleet: the bridge's frame read from the loopback")
	fmt.Fprintln(w, "group by nlmcast publish, published to JetStream, stored, and delivered to the consumer's Source.")
	fmt.Fprintln(w, "consumer gaps: frames missing from the bridge's sequence when they reached the consumer: lost by the bridge")
	fmt.Fprintln(w, "(its overruns, its relay's drops: the local receiver misses those too), or by the publisher's socket.")
}

// counterText prints the publisher's counters that tell where frames went.
func counterText(m map[string]uint64) string {
	if m == nil {
		return "-"
	}
	var parts []string
	for _, k := range []string{"Received", "Published", "Dropped", "Markers", "Retries"} {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %d", strings.ToLower(k), v))
		}
	}
	return strings.Join(parts, ", ")
}
