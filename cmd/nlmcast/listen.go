package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

func runListen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("listen", "[STREAM...] [flags]",
		"Joins the streams' multicast groups and prints one line per event, like ip monitor:\n"+
			"stream, the time the bridge read the event, sequence number, and the decoded event.\n"+
			"STREAM is a stream name or alias (see 'nlmcast groups'); none means all. Needs no privilege.", stderr)
	asJSON := fs.Bool("json", false, "print each event's JSON object (one per line, for jq)")
	asRaw := fs.Bool("raw", false, "receive the raw encoding and print header fields and the netlink message in hex")
	count := fs.Int("count", 0, "exit after this many events (0: run until interrupted)")
	ifname := fs.String("interface", mcast.DefaultInterface, "interface to join groups on")
	allowNonLoop := fs.Bool("allow-non-loopback", false, "allow a non-loopback --interface")
	srcPort := fs.Uint("source-port", 0, "accept frames only from this sender port (0: any privileged port)")
	anySource := fs.Bool("any-source", false, "accept frames from any sender, privileged or not (unsafe: any local user can send)")
	getMap := mapFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *asJSON && *asRaw {
		return errors.New("--json and --raw exclude each other")
	}
	m, err := getMap()
	if err != nil {
		return err
	}
	ss, err := streams.Resolve(pos...)
	if err != nil {
		return err
	}
	if *srcPort > 65535 {
		return fmt.Errorf("--source-port %d: not a port number", *srcPort)
	}
	enc := streams.JSON
	if *asRaw {
		enc = streams.Raw
	}
	r, err := receiver.New(&receiver.Config{
		Streams: ss, Encoding: enc, Map: m,
		Mcast: &mcast.ReceiverConfig{
			Interface: *ifname, AllowNonLoopback: *allowNonLoop, AnySource: *anySource,
			Source: netip.AddrPortFrom(netip.Addr{}, uint16(*srcPort)),
		},
	})
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { r.Close() })
	defer stop()
	defer r.Close()

	w := bufio.NewWriter(stdout)
	defer w.Flush()
	evs := make([]receiver.Event, mcast.DefaultBatch)
	seen := 0
	for *count == 0 || seen < *count {
		n, err := r.ReadBatch(evs)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, mcast.ErrClosed) {
				break
			}
			return err
		}
		for i := range evs[:n] {
			printEvent(w, &evs[i], *asJSON)
			if seen++; *count != 0 && seen >= *count {
				break
			}
		}
		if err := w.Flush(); err != nil {
			return err // stdout closed: stop quietly with an error code
		}
	}
	st := r.Stats()
	if st.Malformed+st.Mismatch+st.Mcast.WrongSource+st.Mcast.WrongInterface+st.Mcast.KernelDrops > 0 {
		fmt.Fprintf(stderr, "nlmcast listen: dropped: %d malformed, %d mismatched, %d from a wrong sender, %d from a wrong interface; lost in the socket buffer: %d\n",
			st.Malformed, st.Mismatch, st.Mcast.WrongSource, st.Mcast.WrongInterface, st.Mcast.KernelDrops)
	}
	return nil
}

func printEvent(w *bufio.Writer, ev *receiver.Event, asJSON bool) {
	switch {
	case asJSON:
		w.Write(ev.Payload) // the datagram is one JSON line
	case ev.JSON != nil:
		fmt.Fprintf(w, "[%s] %s #%d %s\n", ev.Stream.Name, stamp(ev.Header.Time), ev.Header.Seq, ev.JSON.Summary)
	default:
		fmt.Fprintf(w, "[%s] %s #%d epoch %016x %s len %d %s\n", ev.Stream.Name, stamp(ev.Header.Time),
			ev.Header.Seq, ev.Header.Epoch, ev.Header.Kind, len(ev.Payload), hex.EncodeToString(ev.Payload))
	}
}

func stamp(ns int64) string {
	return time.Unix(0, ns).Format("15:04:05.000000")
}
