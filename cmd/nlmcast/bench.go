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

	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
	"github.com/nlmcast/nlmcast/internal/tool/bench"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, out, err := benchConfig(args, stderr)
	if err != nil {
		return err
	}
	if done, err := bench.EnterNamespace(); done {
		var ee *bench.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.Code) // the copy in the namespace has said why
		}
		return err
	}
	cfg.Log = stderr
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if out.plot != "" {
		if err := bench.WritePlot(out.plot, rep); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: latency plot written to %s\n", out.plot)
	}
	if out.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteTable(stdout)
}

// benchOutput is what nlmcast bench prints: JSON instead of the table, and
// the latency plot's file.
type benchOutput struct {
	json bool
	plot string
}

// benchFlagNames names the flag of each bench.Config field, for errors.
var benchFlagNames = map[string]string{
	"Receivers": "receivers", "Events": "events", "Rate": "rate", "Batch": "batch",
	"LatencyEvents": "latency-events", "LatencyRate": "latency-rate", "LatencyRates": "latency-rates", "LatencyRounds": "latency-rounds", "LatencyTime": "latency-time", "Burst": "burst",
	"ReceiverBuffer": "receiver-buffer", "BridgeNice": "bridge-nice", "Ways": "ways", "IdleSockets": "idle-sockets",
}

// benchConfig parses nlmcast bench's flags into a valid bench.Config; the
// flags' defaults are bench.DefaultConfig's.
func benchConfig(args []string, stderr io.Writer) (bench.Config, benchOutput, error) {
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
			"Then latency rows at --latency-rates: the bridge as it runs by default against a reference\n"+
			"relay in C (built with cc), the same relay in Go and the C relay again (the control), in\n"+
			"rotating rounds, with the ratios bridge/relay, go/relay (what Go itself costs a relay here)\n"+
			"and again/relay (how far two identical paths lie apart), for each of\n"+
			"--latency-receivers, and with --latency-json a second time with JSON encoded.\n"+
			"With --ways R, what each way to speed buys: runs through the bridge with each turned off.\n"+
			"Then the fleet phase: the stream published by 'nlmcast publish' to a JetStream nats-server in the\n"+
			"namespace and read back by one consumer (package fleet), beside a local receiver, at --rate and at\n"+
			"--latency-rate: events/s, loss, latency added over direct netlink, the publisher's and the server's\n"+
			"CPU time per event (--no-fleet skips it; it needs nats-server, see --nats-server).\n"+
			"Takes about five minutes.", stderr)
	cfg := bench.DefaultConfig()
	var out benchOutput
	recvs := fs.String("receivers", joinInts(cfg.Receivers), "comma-separated receiver counts to sweep")
	fs.IntVar(&cfg.Events, "events", cfg.Events, "events generated per run")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "cap on the generation rate in events/s (0: as fast as the kernel takes them)")
	fs.IntVar(&cfg.Batch, "batch", cfg.Batch, "netlink requests per sendmsg")
	fs.Float64Var(&cfg.LatencyRate, "latency-rate", cfg.LatencyRate, "events/s of the latency run")
	fs.IntVar(&cfg.LatencyEvents, "latency-events", cfg.LatencyEvents, "events of the latency run (0: skip it)")
	rates := fs.String("latency-rates", joinRates(cfg.LatencyRates), "comma-separated rates (events/s) of the latency rows: the bridge as it runs by default\nagainst the reference relay (relay.c, built with cc), the same relay in Go and relay.c again (the\ncontrol), in rounds, and a bare hop")
	fs.IntVar(&cfg.LatencyRounds, "latency-rounds", cfg.LatencyRounds, "rounds of each latency row (bridge, relay.c, Go relay, relay.c again, in an order that changes\nevery round)")
	latRecvs := fs.String("latency-receivers", joinInts(cfg.LatencyReceivers), "comma-separated receiver counts of the latency rows: the rows are run for each count R,\nwith R receivers in the bridge's runs and R in the relay's")
	fs.BoolVar(&cfg.LatencyJSON, "latency-json", cfg.LatencyJSON, "run each latency row a second time with JSON on: the bridge's runs get one more receiver,\nof the JSON group, so that the bridge encodes JSON (its latency is shown apart), and the relays'\none more of their group (the relay has no JSON), so that both wake as many processes per event")
	fs.BoolVar(&cfg.NoGoRelay, "no-go-relay", cfg.NoGoRelay, "leave out of the latency rows the Go reference relay (relay.c written in Go, run by this\nprogram), whose ratio to relay.c is what Go itself costs a relay on this machine")
	fs.BoolVar(&cfg.NoRelayAgain, "no-relay-again", cfg.NoRelayAgain, "leave out of the latency rows the control: a second run of relay.c in each round, whose\nratio to the first is how far two identical paths lie apart in that row")
	fs.DurationVar(&cfg.LatencyTime, "latency-time", cfg.LatencyTime, "how long each run of a latency row generates (its events: this at its rate, from\n"+strconv.Itoa(bench.MinRateEvents)+" to --latency-events)")
	fs.IntVar(&cfg.Burst, "burst", cfg.Burst, "datagrams of the burst to one receiver of package mcast (0: skip it)")
	fs.BoolVar(&cfg.NoIPMonitor, "no-ip-monitor", cfg.NoIPMonitor, "skip ip monitor")
	fs.BoolVar(&cfg.NoCeiling, "no-ceiling", cfg.NoCeiling, "skip the raw multicast ceiling")
	fs.IntVar(&cfg.ReceiverBuffer, "receiver-buffer", cfg.ReceiverBuffer, "socket receive buffer of each multicast receiver (bridge runs, ceiling, library hop,\nburst), bytes (0: the library's default)")
	fs.IntVar(&cfg.BridgeNice, "bridge-nice", cfg.BridgeNice, "nice value to run the bridge at, -20 to 19 (0: the bench's own); a bridge feeding\nmany receivers on few CPUs needs more of them than any one receiver")
	fs.IntVar(&cfg.Ways, "ways", cfg.Ways, "receivers of the ways runs: through the bridge with every way to speed on, then with\neach turned off in turn (netlink-batch, segmentation, coalescing, receiver-batch,\njson-when-joined), once each with authenticated frames (bridge and receivers --key) and sealed ones\n(bridge --expose, receivers --private), and once with the bridge's --metrics scraped every "+bench.ScrapeEvery.String()+"; 0 skips them")
	fs.IntVar(&cfg.IdleSockets, "idle-sockets", cfg.IdleSockets, "open this many sockets of uid 65534 joined to the bridged stream that never read,\nfor every run (the bridge detaches those over its --max-sockets-per-uid)")
	fs.BoolVar(&cfg.NoSocketLimit, "no-socket-limit", cfg.NoSocketLimit, "run the bridge with --max-sockets-per-uid 0: idle sockets are left alone")
	fs.BoolVar(&cfg.NoHandoff, "no-handoff", cfg.NoHandoff, "run the bridge with --handoff-after 0: it sends on its reading thread however slow sends are")
	fs.BoolVar(&cfg.NoFleet, "no-fleet", cfg.NoFleet, "skip the fleet phase: the bridge's stream through 'nlmcast publish' and a JetStream nats-server in the\nnamespace to one consumer (package fleet), beside a local receiver; its publisher's and server's CPU per event")
	fs.StringVar(&cfg.NATSServer, "nats-server", bench.DefaultNATSServer, "the fleet phase's nats-server program (run with JetStream on 127.0.0.1 in the namespace, storage in a\ntemporary directory); a bare name is looked up in $PATH")
	fs.BoolVar(&out.json, "json", false, "print the results as JSON instead of a table")
	fs.StringVar(&out.plot, "plot", "", "write the latency run's distributions, direct versus bridge, to this SVG file")
	pos, err := parse(fs, args)
	if err != nil {
		return cfg, out, err
	}
	if len(pos) > 0 {
		return cfg, out, fmt.Errorf("unexpected argument %q", pos[0])
	}
	badRecvs := fmt.Errorf("--receivers %q: want counts from 1 to %d, like 1,8,32", *recvs, bench.MaxReceivers)
	cfg.Receivers = nil
	for _, f := range strings.Split(*recvs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return cfg, out, badRecvs
		}
		cfg.Receivers = append(cfg.Receivers, n)
	}
	badLatRecvs := fmt.Errorf("--latency-receivers %q: want counts from 1 to %d, like 1,8", *latRecvs, bench.MaxReceivers)
	cfg.LatencyReceivers = nil
	for _, f := range strings.Split(*latRecvs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return cfg, out, badLatRecvs
		}
		cfg.LatencyReceivers = append(cfg.LatencyReceivers, n)
	}
	cfg.LatencyRates = nil
	if *rates != "" {
		for _, f := range strings.Split(*rates, ",") {
			r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				return cfg, out, fmt.Errorf("--latency-rates %q: want rates in events/s, like 20,200,2000", *rates)
			}
			cfg.LatencyRates = append(cfg.LatencyRates, r)
		}
	}
	var ce *bench.ConfigError
	if err := cfg.Validate(); errors.As(err, &ce) {
		switch ce.Field {
		case "Receivers":
			return cfg, out, badRecvs
		case "LatencyReceivers":
			return cfg, out, badLatRecvs
		}
		if name, ok := benchFlagNames[ce.Field]; ok {
			return cfg, out, fmt.Errorf("--%s %v: %s", name, ce.Value, ce.Want)
		}
		return cfg, out, err
	} else if err != nil {
		return cfg, out, err
	}
	if out.plot != "" && cfg.LatencyEvents == 0 {
		return cfg, out, fmt.Errorf("--plot needs the latency run (--latency-events above 0)")
	}
	return cfg, out, nil
}

func joinRates(rs []float64) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = strconv.FormatFloat(r, 'f', -1, 64)
	}
	return strings.Join(s, ",")
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// runBenchRelay is the Go reference relay of the benchmark's latency rows
// (not for direct use): relay.c's command line and output, in Go.
func runBenchRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench-relay", "BASE PORT GROUP...", "The Go reference relay of 'nlmcast bench'; not for direct use.", stderr)
	rest, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) < 3 {
		return fmt.Errorf("bench-relay: want BASE PORT GROUP..., got %q", rest)
	}
	cfg := bench.GoRelayConfig{}
	if cfg.Base, err = netip.ParseAddr(rest[0]); err != nil {
		return fmt.Errorf("bench-relay: base: %w", err)
	}
	port, err := strconv.ParseUint(rest[1], 10, 16)
	if err != nil {
		return fmt.Errorf("bench-relay: port: %w", err)
	}
	cfg.Port = uint16(port)
	for _, a := range rest[2:] {
		g, err := strconv.ParseUint(a, 10, 32)
		if err != nil {
			return fmt.Errorf("bench-relay: group: %w", err)
		}
		cfg.Groups = append(cfg.Groups, uint32(g))
	}
	relayed, failed, err := bench.GoRelay(ctx, cfg, func() { fmt.Fprintln(stdout, "ready") })
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "relayed %d failed %d\n", relayed, failed)
	return err
}

// runBenchRecv is a receiving process of the benchmark (not for direct use).
func runBenchRecv(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench-recv", "[flags]", "A receiving process of 'nlmcast bench'; not for direct use.", stderr)
	mode := fs.String("mode", bench.ModeBridge, "netlink, bridge, json, raw, bare, relay or fleet")
	group := fs.String("group", bench.CeilingGroup.String(), "raw, bare and relay modes: the group to join")
	count := fs.Int("count", 0, "stop after this many events")
	out := fs.String("out", "", "file for the arrival records")
	rbuf := fs.Int("read-buffer", 0, "socket receive buffer in bytes (0: default)")
	rbatch := fs.Int("batch", 0, "bridge and raw modes: datagrams per read (0: the library's default)")
	noCoalesce := fs.Bool("no-coalesce", false, "bridge and raw modes: read runs datagram by datagram, not whole (no UDP_GRO)")
	key := fs.String("key", "", "bridge mode: the bridge's key file; accept only authenticated frames")
	private := fs.String("private", "", "bridge mode: the key file the stream is sealed under; accept only sealed frames")
	natsURL := fs.String("nats", "", "fleet mode: the NATS server's URL")
	host := fs.String("host", "", "fleet mode: the host whose frames to read")
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
		ReadBuffer: *rbuf, Batch: *rbatch, NoCoalesce: *noCoalesce, KeyFile: *key, PrivateKeyFile: *private,
		NATS: *natsURL, Host: *host},
		func() {
			// The bench waits for this on its notification socket.
			if err := sdnotify.Notify(sdnotify.Ready); err != nil {
				fmt.Fprintf(stderr, "bench-recv: %v\n", err)
			}
		})
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}
