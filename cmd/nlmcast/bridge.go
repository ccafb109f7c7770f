package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/streams"
)

func runBridge(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlags("bridge", "[flags]",
		"Subscribes to kernel rtnetlink multicast groups and sends every event, framed, to its\n"+
			"stream's loopback multicast group. Needs root (or CAP_NET_BIND_SERVICE) to send from\n"+
			"the privileged source port that receivers check. Stops cleanly on SIGINT/SIGTERM.", stderr)
	sel := fs.String("streams", "all", "comma-separated streams or aliases to bridge (see 'nlmcast groups')")
	encs := fs.String("encodings", "raw,json", "encodings to send: raw, json, or both")
	ifname := fs.String("interface", mcast.DefaultInterface, "interface to send multicast on")
	allowNonLoop := fs.Bool("allow-non-loopback", false, "allow a non-loopback --interface (events then leave the host)")
	ttl := fs.Int("ttl", 0, "multicast TTL; 0 keeps datagrams on the host")
	srcPort := fs.Uint("source-port", mcast.DefaultSourcePort, "UDP source port; receivers accept only ports below 1024 by default")
	readBuf := fs.Int("read-buffer", netlinkbridge.DefaultReadBuffer, "netlink receive buffer in bytes (~830 bytes per queued event)")
	batch := fs.Int("batch", netlinkbridge.DefaultBatch, "netlink datagrams read per system call")
	heartbeat := fs.Duration("heartbeat", netlinkbridge.DefaultHeartbeat, "heartbeat interval on idle streams; 0 turns heartbeats off")
	resyncEvery := fs.Duration("resync-interval", netlinkbridge.DefaultResyncInterval, "least time between two resyncs (state dumps after overruns or requests)")
	requests := fs.Bool("requests", true, "accept resync requests from local receivers on the control group (base address, --port)")
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

	b, err := netlinkbridge.New(&netlinkbridge.Config{
		Streams:        ss,
		Map:            m,
		Encodings:      encodings,
		ReadBuffer:     *readBuf,
		Batch:          *batch,
		Heartbeat:      *heartbeat,
		ResyncInterval: *resyncEvery,
		NoRequests:     !*requests,
		Logger:         log,
		Sender: &mcast.SenderConfig{
			Interface:        *ifname,
			AllowNonLoopback: *allowNonLoop,
			Source:           netip.AddrPortFrom(netip.Addr{}, uint16(*srcPort)),
			TTL:              *ttl,
		},
	})
	if err != nil {
		return err
	}
	log.Info("bridge ready", "streams", len(ss), "encodings", *encs)
	if err := b.Run(ctx); err != nil {
		return err
	}
	st := b.Stats()
	log.Info("bridge totals", "events", st.Events, "datagrams", st.Datagrams,
		"overruns", st.Source.Overruns, "resyncs", st.Resyncs, "requests", st.Requests,
		"fragmented", st.Fragmented, "too_large", st.TooLarge, "malformed", st.Source.Malformed,
		"send_errors", st.SendErrors)
	return nil
}
