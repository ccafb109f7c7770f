package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/streams"
)

func runBridge(ctx context.Context, args []string, _, stderr io.Writer) error {
	setup, err := bridgeConfig(args, stderr)
	if err != nil {
		return err
	}
	cfg := setup.cfg
	if setup.netns != "" {
		fd, err := kernel.OpenNetNS(setup.netns)
		if err != nil {
			return fmt.Errorf("--netns: %w", err)
		}
		defer syscall.Close(fd)
		cfg.NetNS = fd
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: setup.level}))
	cfg.Logger = log

	b, err := netlinkbridge.NewSet(cfg)
	if err != nil {
		return bridgeError(err)
	}
	defer b.Close()
	if setup.stats != "" {
		stop := writeStatsOn(syscall.SIGUSR1, setup.stats, b, log)
		defer stop()
	}
	ran := make(chan struct{})
	defer close(ran)
	go func() {
		select {
		case <-b.Ready():
		case <-ran:
			return
		}
		// Every socket is open, every group joined and the first read armed.
		if err := sdnotify.Notify(sdnotify.Ready + "\nSTATUS=bridging"); err != nil {
			log.Warn("cannot notify the service manager", "socket", os.Getenv(sdnotify.Socket), "err", err)
		}
		log.Info("bridge ready", "streams", len(cfg.Streams), "encodings", setup.encodings)
	}()
	if err := b.Run(ctx); err != nil {
		return err
	}
	for _, br := range b.Bridges() {
		st := br.Stats()
		log.Info("bridge totals", "family", streams.FamilyName(br.Family()), "events", st.Events, "datagrams", st.Datagrams,
			"overruns", st.Source.Overruns, "resyncs", st.Resyncs, "requests", st.Requests,
			"fragmented", st.Fragmented, "too_large", st.TooLarge, "json_too_large", st.JSONTooLarge, "malformed", st.Source.Malformed,
			"send_errors", st.SendErrors)
	}
	return nil
}

// bridgeSetup is what nlmcast bridge's flags ask for.
type bridgeSetup struct {
	cfg       *netlinkbridge.Config // without NetNS and Logger
	netns     string                // --netns, opened by runBridge
	stats     string                // --stats
	level     slog.Level            // --log-level
	encodings string                // --encodings as given, for the log
}

// bridgeFlagNames names the flag of each netlinkbridge.Config and
// mcast.SenderConfig field, for errors.
var bridgeFlagNames = map[string]string{
	"Streams": "--streams", "Map": "--base/--port", "Encodings": "--encodings", "AllNSID": "--all-nsid",
	"ReadBuffer": "--read-buffer", "Batch": "--batch", "Heartbeat": "--heartbeat", "ResyncInterval": "--resync-interval",
	"Interface": "--interface", "Source": "--source-port", "TTL": "--ttl",
}

// bridgeConfig parses nlmcast bridge's flags into a valid config. It opens
// nothing.
func bridgeConfig(args []string, stderr io.Writer) (*bridgeSetup, error) {
	fs := newFlags("bridge", "[flags]",
		"Subscribes to kernel netlink multicast groups (rtnetlink, uevents, generic netlink, and\n"+
			"with --expose process events and conntrack) and sends every event, framed, to its\n"+
			"stream's loopback multicast group. Needs root: joining the groups and sending from the\n"+
			"privileged source port that receivers check. Stops cleanly on SIGINT/SIGTERM.\n\n"+
			"Privileged streams (proc, conntrack-*, some FAMILY:GROUP) carry what the kernel shows only\n"+
			"to CAP_NET_ADMIN: every process's fork/exec/exit with pids and uids, every tracked\n"+
			"connection's addresses and ports. Bridging one makes it readable by every local user, so\n"+
			"it is never in --streams: name it with --expose, knowing that.", stderr)
	cfg := &netlinkbridge.Config{Sender: &mcast.SenderConfig{}}
	setup := &bridgeSetup{cfg: cfg}
	sel := fs.String("streams", "all", "comma-separated streams or aliases to bridge, FAMILY:GROUP for generic netlink (see 'nlmcast groups')")
	expose := fs.String("expose", "", "comma-separated privileged streams to bridge as well, readable by every local user once bridged (e.g. proc,conntrack)")
	fs.StringVar(&setup.netns, "netns", "", "read the events of this network namespace: a name from 'ip netns' or a path such as /proc/PID/ns/net (multicast is still sent here)")
	fs.BoolVar(&cfg.AllNSID, "all-nsid", false, "also bridge rtnetlink events of every namespace that has an id here ('ip netns set'); frames carry that id")
	fs.StringVar(&setup.encodings, "encodings", "raw,json", "encodings to send: raw, json, or both")
	fs.StringVar(&cfg.Sender.Interface, "interface", mcast.DefaultInterface, "interface to send multicast on")
	fs.BoolVar(&cfg.Sender.AllowNonLoopback, "allow-non-loopback", false, "allow a non-loopback --interface (events then leave the host)")
	fs.IntVar(&cfg.Sender.TTL, "ttl", 0, "multicast TTL; 0 keeps datagrams on the host")
	srcPort := fs.Uint("source-port", mcast.DefaultSourcePort, "UDP source port; receivers accept only ports below 1024 by default")
	fs.IntVar(&cfg.ReadBuffer, "read-buffer", netlinkbridge.DefaultReadBuffer, "netlink receive buffer in bytes (~830 bytes per queued event)")
	fs.IntVar(&cfg.Batch, "batch", netlinkbridge.DefaultBatch, "netlink datagrams read per system call")
	segment := fs.Bool("segment", true, "send runs of equal-size datagrams to a group with UDP segmentation offload (UDP_SEGMENT);\nfalse sends each datagram on its own (receivers see the same datagrams either way)")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", netlinkbridge.DefaultHeartbeat, "heartbeat interval on idle streams; 0 turns heartbeats off")
	fs.DurationVar(&cfg.ResyncInterval, "resync-interval", netlinkbridge.DefaultResyncInterval, "least time between two resyncs (state dumps after overruns or requests)")
	requests := fs.Bool("requests", true, "accept resync requests from local receivers on the control group (base address, --port)")
	fs.BoolVar(&cfg.JSONAlways, "json-always", false, "encode JSON for every event, even for streams whose JSON group nobody has joined (default: only joined ones, per /proc/net/igmp)")
	fs.StringVar(&setup.stats, "stats", "", "write the bridge's counters, CPU time, peak RSS and allocations as JSON to this file on SIGUSR1 and on exit")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	getMap := mapFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		return nil, fmt.Errorf("unexpected argument %q: streams are chosen with --streams", pos[0])
	}
	if cfg.Map, err = getMap(); err != nil {
		return nil, err
	}
	if cfg.Streams, err = streams.Resolve(*sel); err != nil {
		return nil, fmt.Errorf("--streams: %w", err)
	}
	if *expose != "" {
		if cfg.Expose, err = streams.Resolve(*expose); err != nil {
			return nil, fmt.Errorf("--expose: %w", err)
		}
		if cfg.Streams, err = streams.Resolve(append(names(cfg.Streams), names(cfg.Expose)...)...); err != nil {
			return nil, fmt.Errorf("--expose: %w", err)
		}
	}
	for _, e := range strings.Split(setup.encodings, ",") {
		enc, err := streams.ParseEncoding(strings.TrimSpace(e))
		if err != nil {
			return nil, fmt.Errorf("--encodings: %w", err)
		}
		cfg.Encodings = append(cfg.Encodings, enc)
	}
	// The flag is wider than a port, and 0 is no port here.
	if *srcPort == 0 || *srcPort > 65535 {
		return nil, fmt.Errorf("--source-port %d: use a port from 1 to 65535", *srcPort)
	}
	cfg.Sender.Source = netip.AddrPortFrom(netip.Addr{}, uint16(*srcPort))
	cfg.NoHeartbeats = cfg.Heartbeat == 0 // --heartbeat 0: off
	cfg.NoRequests = !*requests
	cfg.Sender.NoSegmentation = !*segment
	if err := setup.level.UnmarshalText([]byte(*level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", *level)
	}
	if err := cfg.Validate(); err != nil {
		return nil, bridgeError(err)
	}
	return setup, nil
}

// bridgeError says which flag to change when err is about the config.
func bridgeError(err error) error {
	var pe *netlinkbridge.PrivilegedError
	var re *netlinkbridge.RequestsError
	switch {
	case errors.As(err, &pe):
		// Only a stream of --streams can be privileged and not exposed.
		return &flagError{fmt.Sprintf("--streams: %v; to do so anyway, name it with --expose %s", pe, pe.Stream.Name), err}
	case errors.As(err, &re):
		return &flagError{fmt.Sprintf("%v (turn them off with --requests=false)", re), err}
	}
	return withFlags(err, bridgeFlagNames)
}

func names(ss []streams.Stream) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Name
	}
	return out
}

// writeStatsOn writes the set's StatsReport to file on every sig, and once more
// when the returned function is called.
func writeStatsOn(sig os.Signal, file string, set *netlinkbridge.Set, log *slog.Logger) (stop func()) {
	var n atomic.Int64
	write := func() {
		s := set.StatsReport()
		s.Snap = n.Add(1)
		data, _ := json.Marshal(s)
		tmp := filepath.Join(filepath.Dir(file), "."+filepath.Base(file)+".tmp")
		err := os.WriteFile(tmp, append(data, '\n'), 0o644)
		if err == nil {
			err = os.Rename(tmp, file) // readers never see half a file
		}
		if err != nil {
			log.Warn("cannot write --stats", "file", file, "err", err)
		}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-ch:
				write()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
		<-exited
		write()
	}
}
