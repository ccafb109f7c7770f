package main

import (
	"context"
	"encoding/json"
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
	fs := newFlags("bridge", "[flags]",
		"Subscribes to kernel netlink multicast groups (rtnetlink, uevents, generic netlink, and\n"+
			"with --expose process events and conntrack) and sends every event, framed, to its\n"+
			"stream's loopback multicast group. Needs root: joining the groups and sending from the\n"+
			"privileged source port that receivers check. Stops cleanly on SIGINT/SIGTERM.\n\n"+
			"Privileged streams (proc, conntrack-*, some FAMILY:GROUP) carry what the kernel shows only\n"+
			"to CAP_NET_ADMIN: every process's fork/exec/exit with pids and uids, every tracked\n"+
			"connection's addresses and ports. Bridging one makes it readable by every local user, so\n"+
			"it is never in --streams: name it with --expose, knowing that.", stderr)
	sel := fs.String("streams", "all", "comma-separated streams or aliases to bridge, FAMILY:GROUP for generic netlink (see 'nlmcast groups')")
	expose := fs.String("expose", "", "comma-separated privileged streams to bridge as well, readable by every local user once bridged (e.g. proc,conntrack)")
	netnsArg := fs.String("netns", "", "read the events of this network namespace: a name from 'ip netns' or a path such as /proc/PID/ns/net (multicast is still sent here)")
	allNSID := fs.Bool("all-nsid", false, "also bridge rtnetlink events of every namespace that has an id here ('ip netns set'); frames carry that id")
	encs := fs.String("encodings", "raw,json", "encodings to send: raw, json, or both")
	ifname := fs.String("interface", mcast.DefaultInterface, "interface to send multicast on")
	allowNonLoop := fs.Bool("allow-non-loopback", false, "allow a non-loopback --interface (events then leave the host)")
	ttl := fs.Int("ttl", 0, "multicast TTL; 0 keeps datagrams on the host")
	srcPort := fs.Uint("source-port", mcast.DefaultSourcePort, "UDP source port; receivers accept only ports below 1024 by default")
	readBuf := fs.Int("read-buffer", netlinkbridge.DefaultReadBuffer, "netlink receive buffer in bytes (~830 bytes per queued event)")
	batch := fs.Int("batch", netlinkbridge.DefaultBatch, "netlink datagrams read per system call")
	segment := fs.Bool("segment", true, "send runs of equal-size datagrams to a group with UDP segmentation offload (UDP_SEGMENT);\nfalse sends each datagram on its own (receivers see the same datagrams either way)")
	heartbeat := fs.Duration("heartbeat", netlinkbridge.DefaultHeartbeat, "heartbeat interval on idle streams; 0 turns heartbeats off")
	resyncEvery := fs.Duration("resync-interval", netlinkbridge.DefaultResyncInterval, "least time between two resyncs (state dumps after overruns or requests)")
	requests := fs.Bool("requests", true, "accept resync requests from local receivers on the control group (base address, --port)")
	jsonAlways := fs.Bool("json-always", false, "encode JSON for every event, even for streams whose JSON group nobody has joined (default: only joined ones, per /proc/net/igmp)")
	statsFile := fs.String("stats", "", "write the bridge's counters, CPU time, peak RSS and allocations as JSON to this file on SIGUSR1 and on exit")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	getMap := mapFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q: streams are chosen with --streams", pos[0])
	}
	m, err := getMap()
	if err != nil {
		return err
	}
	ss, err := streams.Resolve(*sel)
	if err != nil {
		return fmt.Errorf("--streams: %w", err)
	}
	for _, s := range ss {
		if s.Privileged {
			return fmt.Errorf("--streams: %w", &netlinkbridge.PrivilegedError{Stream: s})
		}
	}
	if *expose != "" {
		more, err := streams.Resolve(*expose)
		if err != nil {
			return fmt.Errorf("--expose: %w", err)
		}
		ss, err = streams.Resolve(append(names(ss), names(more)...)...)
		if err != nil {
			return fmt.Errorf("--expose: %w", err)
		}
	}
	netns := 0
	if *netnsArg != "" {
		fd, err := kernel.OpenNetNS(*netnsArg)
		if err != nil {
			return fmt.Errorf("--netns: %w", err)
		}
		defer syscall.Close(fd)
		netns = fd
	}
	var encodings []streams.Encoding
	for _, e := range strings.Split(*encs, ",") {
		enc, err := streams.ParseEncoding(strings.TrimSpace(e))
		if err != nil {
			return fmt.Errorf("--encodings: %w", err)
		}
		encodings = append(encodings, enc)
	}
	if *srcPort == 0 || *srcPort > 65535 {
		return fmt.Errorf("--source-port %d: use a port from 1 to 65535", *srcPort)
	}
	if *ttl < 0 || *ttl > 255 {
		return fmt.Errorf("--ttl %d: use 0 to 255", *ttl)
	}
	if *heartbeat < 0 || *resyncEvery < 0 {
		return fmt.Errorf("--heartbeat and --resync-interval must not be negative")
	}
	if *heartbeat == 0 {
		*heartbeat = -1 // Config: negative means off
	}
	if *resyncEvery == 0 {
		*resyncEvery = netlinkbridge.DefaultResyncInterval
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", *level)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))

	b, err := netlinkbridge.NewSet(&netlinkbridge.Config{
		Streams:          ss,
		ExposePrivileged: *expose != "",
		NetNS:            netns,
		AllNSID:          *allNSID,
		Map:              m,
		Encodings:        encodings,
		ReadBuffer:       *readBuf,
		Batch:            *batch,
		Heartbeat:        *heartbeat,
		ResyncInterval:   *resyncEvery,
		NoRequests:       !*requests,
		JSONAlways:       *jsonAlways,
		Logger:           log,
		Sender: &mcast.SenderConfig{
			Interface:        *ifname,
			AllowNonLoopback: *allowNonLoop,
			Source:           netip.AddrPortFrom(netip.Addr{}, uint16(*srcPort)),
			TTL:              *ttl,
			NoSegmentation:   !*segment,
		},
	})
	if err != nil {
		return err
	}
	if *statsFile != "" {
		stop := writeStatsOn(syscall.SIGUSR1, *statsFile, b, log)
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
		log.Info("bridge ready", "streams", len(ss), "encodings", *encs)
	}()
	if err := b.Run(ctx); err != nil {
		return err
	}
	for _, br := range b.Bridges() {
		st := br.Stats()
		log.Info("bridge totals", "family", streams.FamilyName(br.Family()), "events", st.Events, "datagrams", st.Datagrams,
			"overruns", st.Source.Overruns, "resyncs", st.Resyncs, "requests", st.Requests,
			"fragmented", st.Fragmented, "too_large", st.TooLarge, "malformed", st.Source.Malformed,
			"send_errors", st.SendErrors)
	}
	return nil
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
