package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/nlmcast/nlmcast/internal/tool/bench"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", "[flags]",
		"Measures the bridge against direct netlink delivery, as root, in a network namespace of its\n"+
			"own (nothing outside it changes). A generator adds and deletes addresses on lo with batched\n"+
			"netlink requests, as fast as the kernel takes them; a direct netlink subscriber is the\n"+
			"baseline; 'ip -o monitor address' consumes the same burst; then, for each receiver count R,\n"+
			"the raw ceiling of loopback multicast (plain datagrams of the same size to R receivers) and\n"+
			"a run through the bridge with R receiver processes: loss, latency added over direct\n"+
			"netlink (p50/p99/max), delivered rate and its ratio to the ceiling, the bridge's CPU time,\n"+
			"allocations per event and peak RSS. Then a latency run at a modest rate, beside the same\n"+
			"hop read bare and read by the receiver library, and a burst to one library receiver.\n"+
			"With --ways R, what each way to speed buys: runs through the bridge with each turned off.\n"+
			"Takes a minute.", stderr)
	recvs := fs.String("receivers", "1,8,32", "comma-separated receiver counts to sweep")
	events := fs.Int("events", 100000, "events generated per run")
	rate := fs.Float64("rate", 0, "cap on the generation rate in events/s (0: as fast as the kernel takes them)")
	batch := fs.Int("batch", 64, "netlink requests per sendmsg")
	latRate := fs.Float64("latency-rate", 5000, "events/s of the latency run")
	latEvents := fs.Int("latency-events", 10000, "events of the latency run (0: skip it)")
	burst := fs.Int("burst", 200000, "datagrams of the burst to one receiver of package mcast (0: skip it)")
	noIPMon := fs.Bool("no-ip-monitor", false, "skip ip monitor")
	noCeil := fs.Bool("no-ceiling", false, "skip the raw multicast ceiling")
	rbuf := fs.Int("receiver-buffer", 0, "socket receive buffer of each multicast receiver (bridge runs, ceiling, library hop,\nburst), bytes (0: the library's default)")
	nice := fs.Int("bridge-nice", 0, "nice value to run the bridge at, -20 to 19 (0: the bench's own); a bridge feeding\nmany receivers on few CPUs needs more of them than any one receiver")
	ways := fs.Int("ways", 0, "receivers of the ways runs: through the bridge with every way to speed on, then with\neach turned off in turn (netlink-batch, segmentation, coalescing, receiver-batch,\njson-when-joined); 0 skips them")
	asJSON := fs.Bool("json", false, "print the results as JSON instead of a table")
	plot := fs.String("plot", "", "write the latency run's distributions, direct versus bridge, to this SVG file")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	var rs []int
	for _, f := range strings.Split(*recvs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 256 {
			return fmt.Errorf("--receivers %q: want counts from 1 to 256, like 1,8,32", *recvs)
		}
		rs = append(rs, n)
	}
	switch {
	case *events < 1:
		return fmt.Errorf("--events %d: must be positive", *events)
	case *rate < 0 || *latRate <= 0:
		return fmt.Errorf("--rate must not be negative, --latency-rate must be positive")
	case *batch < 1 || *batch > 4096:
		return fmt.Errorf("--batch %d: use 1 to 4096", *batch)
	case *nice < -20 || *nice > 19:
		return fmt.Errorf("--bridge-nice %d: use -20 to 19", *nice)
	case *burst < 0:
		return fmt.Errorf("--burst %d: must not be negative", *burst)
	case *latEvents < 0:
		return fmt.Errorf("--latency-events %d: must not be negative", *latEvents)
	case *ways < 0 || *ways > 256:
		return fmt.Errorf("--ways %d: use 1 to 256 receivers, or 0 to skip the ways runs", *ways)
	case *plot != "" && *latEvents == 0:
		return fmt.Errorf("--plot needs the latency run (--latency-events above 0)")
	}
	if done, err := bench.EnterNamespace(); done {
		var ee *bench.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.Code) // the copy in the namespace has said why
		}
		return err
	}
	if *latEvents == 0 {
		*latEvents = -1
	}
	if *burst == 0 {
		*burst = -1
	}
	rep, err := bench.Run(ctx, bench.Config{
		Receivers: rs, Events: *events, Rate: *rate, Batch: *batch,
		LatencyRate: *latRate, LatencyEvents: *latEvents, Burst: *burst,
		NoIPMonitor: *noIPMon, NoCeiling: *noCeil, ReceiverBuffer: *rbuf, BridgeNice: *nice, Ways: *ways, Log: stderr,
	})
	if err != nil {
		return err
	}
	if *plot != "" {
		if err := bench.WritePlot(*plot, rep); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: latency plot written to %s\n", *plot)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteTable(stdout)
}

// runBenchRecv is a receiving process of the benchmark (not for direct use).
func runBenchRecv(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench-recv", "[flags]", "A receiving process of 'nlmcast bench'; not for direct use.", stderr)
	mode := fs.String("mode", bench.ModeBridge, "netlink, bridge or raw")
	group := fs.String("group", bench.CeilingGroup.String(), "raw mode: the group to join")
	count := fs.Int("count", 0, "stop after this many events")
	out := fs.String("out", "", "file for the arrival records")
	rbuf := fs.Int("read-buffer", 0, "socket receive buffer in bytes (0: default)")
	rbatch := fs.Int("batch", 0, "bridge and raw modes: datagrams per read (0: the library's default)")
	noCoalesce := fs.Bool("no-coalesce", false, "bridge and raw modes: read runs datagram by datagram, not whole (no UDP_GRO)")
	getMap := mapFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	m, err := getMap()
	if err != nil {
		return err
	}
	g, err := netip.ParseAddrPort(*group)
	if err != nil {
		return fmt.Errorf("--group: %w", err)
	}
	if *count < 1 || *out == "" {
		return errors.New("--count and --out are required")
	}
	if *rbatch < 0 {
		return fmt.Errorf("--batch %d: must not be negative", *rbatch)
	}
	res, err := bench.Recv(ctx, bench.RecvConfig{Mode: *mode, Group: g, Map: m, Count: *count, Out: *out,
		ReadBuffer: *rbuf, Batch: *rbatch, NoCoalesce: *noCoalesce},
		func() { fmt.Fprintln(stderr, "ready") })
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}
