package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"

	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
	"github.com/nlmcast/nlmcast/internal/tool/recording"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

func runRecord(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, level, format, err := recordConfig(ctx, args, stderr)
	if err != nil {
		return err
	}
	log := newLogger(stderr, format, level)
	cfg.Logger = log
	cfg.Ready = func() {
		// Every group is joined: what is sent from now on is recorded.
		if err := sdnotify.Notify(sdnotify.Ready); err != nil {
			log.Warn("cannot notify the service manager", "socket", os.Getenv(sdnotify.Socket), "err", err)
		}
	}
	st, err := recording.Record(ctx, cfg)
	if err != nil {
		return receiverError(err, recordFlagNames)
	}
	fmt.Fprintf(stdout, "recorded %d events and %d notes in %d file(s), %d bytes\n", st.Events, st.Notes, st.Files, st.Written)
	return nil
}

// recordFlagNames names the flag of each config field, for errors.
var recordFlagNames = map[string]string{
	"Map": "--base/--port", "Interface": "--interface", "Source": "--source-port", "KeyFile": "--key", "Private": "--private",
	"Output": "-o", "MaxBytes": "--max-bytes", "MaxAge": "--max-age", "MaxFiles": "--max-files", "Count": "--count",
}

// recordConfig parses nlmcast record's arguments into a valid config. It
// opens nothing.
func recordConfig(ctx context.Context, args []string, stderr io.Writer) (*recording.RecordConfig, slog.Level, string, error) {
	fs := newFlags("record", "[STREAM...] -o FILE [flags]",
		"Records what arrives on the streams' multicast groups to a pcapng file that Wireshark and\n"+
			"tshark read as a netlink capture (as of an nlmon device): every event's netlink message,\n"+
			"one interface per netlink family, each packet's frame metadata in its comment; control\n"+
			"frames and notices (gaps, restarts, drops) are packets of an interface of their own.\n"+
			"STREAM is a stream name or alias (see 'nlmcast groups'); none means every rtnetlink stream.\n"+
			"Needs no privilege (--netlink records from the kernel instead). The file is mode 0600: a private stream's events are in it in the clear.\n"+
			"SIGINT or SIGTERM closes it whole. Replay it with 'nlmcast replay FILE'.", stderr)
	mc := &mcast.ReceiverConfig{}
	rc := &receiver.Config{Encoding: streams.Raw, Mcast: mc}
	cfg := &recording.RecordConfig{Receiver: rc}
	fs.StringVar(&cfg.Output, "o", "", "the file to write (required); with --max-bytes or --max-age, then FILE.1, FILE.2, ...")
	fs.Int64Var(&cfg.MaxBytes, "max-bytes", 0, "start a new file when one reaches this many bytes (0: never)")
	fs.DurationVar(&cfg.MaxAge, "max-age", 0, "start a new file when one is this old, as the next events come (0: never)")
	fs.IntVar(&cfg.MaxFiles, "max-files", 0, "with --max-bytes or --max-age: keep only the newest this many files (0: all)")
	fs.IntVar(&cfg.Count, "count", 0, "stop after this many events (0: until interrupted)")
	fs.BoolVar(&cfg.Heartbeats, "heartbeats", false, "record heartbeat frames too")
	fs.BoolVar(&cfg.Netlink, "netlink", false, "record straight from the kernel, with no bridge (rtnetlink, uevent and conntrack streams; root for conntrack)")
	fs.StringVar(&mc.Interface, "interface", mcast.DefaultInterface, "interface to join groups on")
	srcPort := sourcePortFlag(fs)
	fs.BoolVar(&rc.Insecure, "insecure", false, insecureUsage)
	fs.BoolVar(&mc.AnySource, "any-source", false, "accept frames from any sender, whatever its address and port (unsafe: any local user can send)")
	bridgeUID := fs.Uint("bridge-uid", 0, "without --key: record frames only while the kernel shows the bridge's address held by this uid alone (sock_diag)")
	fs.StringVar(&rc.KeyFile, "key", "", "the bridge's key file (nlmcast keygen): accept only frames authenticated with one of its keys")
	var private []string
	fs.Func("private", "STREAMS=KEYFILE: these streams (comma-separated, or all) are private, sealed by the bridge under\n"+
		"this key file: open their frames with it and record them in the clear; may be repeated", func(v string) error {
		private = append(private, v)
		return nil
	})
	fs.DurationVar(&rc.Silence, "silence", receiver.DefaultSilence, "record a silent notice after this long without frames (0: never)")
	getLog := logFlags(ctx, fs)
	getMap := mapFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return nil, 0, "", err
	}
	level, format, err := getLog()
	if err != nil {
		return nil, 0, "", err
	}
	if cfg.Output == "" {
		return nil, 0, "", fmt.Errorf("-o FILE: say where to record (e.g. nlmcast record -o events.pcapng)")
	}
	if rc.Map, err = getMap(); err != nil {
		return nil, 0, "", err
	}
	if rc.Streams, err = streams.Resolve(pos...); err != nil {
		return nil, 0, "", err
	}
	cfg.Streams = rc.Streams
	if rc.Private, err = privateStreams(private, rc.Streams); err != nil {
		return nil, 0, "", err
	}
	if *bridgeUID > 1<<32-1 {
		return nil, 0, "", fmt.Errorf("--bridge-uid %d: not a uid", *bridgeUID)
	}
	rc.BridgeUID = uint32(*bridgeUID)
	if *srcPort == 0 || *srcPort > 65535 {
		return nil, 0, "", fmt.Errorf("--source-port %d: use a port from 1 to 65535", *srcPort)
	}
	mc.Source = netip.AddrPortFrom(netip.Addr{}, uint16(*srcPort))
	rc.NoSilentNotices = rc.Silence == 0
	if err := cfg.Validate(); err != nil {
		return nil, 0, "", recordError(err, recordFlagNames)
	}
	if err := rc.Validate(); err != nil {
		return nil, 0, "", withFlags(err, recordFlagNames)
	}
	return cfg, level, format, nil
}

// recordError names the flag of a recording.ConfigError.
func recordError(err error, flags map[string]string) error {
	if ce, ok := err.(*recording.ConfigError); ok {
		if name, ok := flags[ce.Field]; ok {
			return &flagError{name + ": " + ce.Reason, err}
		}
	}
	return err
}
