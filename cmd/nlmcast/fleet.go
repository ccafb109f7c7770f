package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/nlmcast/nlmcast/fleet"
	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// natsFlags defines the flags that say how to reach NATS into c.
func natsFlags(fs *flag.FlagSet, c *fleet.Conn) {
	fs.StringVar(&c.URL, "nats", "", "NATS server URL, or several comma-separated (a cluster), e.g. nats://10.0.0.1:4222")
	fs.StringVar(&c.User, "nats-user", "", "NATS user name (with --nats-password)")
	fs.StringVar(&c.Password, "nats-password", "", "NATS password (visible to ps: prefer --nats-creds, or $NLMCAST_NATS_PASSWORD)")
	fs.StringVar(&c.Token, "nats-token", "", "NATS token (visible to ps: prefer --nats-creds, or $NLMCAST_NATS_TOKEN)")
	fs.StringVar(&c.CredsFile, "nats-creds", "", "NATS user credentials file (JWT and NKey seed)")
	fs.StringVar(&c.NKeyFile, "nats-nkey", "", "NATS NKey seed file")
	fs.StringVar(&c.CAFile, "nats-ca", "", "PEM file of the CAs to trust for the server's TLS certificate (turns TLS on)")
	fs.StringVar(&c.CertFile, "nats-cert", "", "TLS client certificate (with --nats-key)")
	fs.StringVar(&c.KeyFile, "nats-key", "", "TLS client certificate's key (with --nats-cert)")
}

// natsEnv fills the secrets not given as flags from the environment.
func natsEnv(c *fleet.Conn) {
	if c.Password == "" {
		c.Password = os.Getenv("NLMCAST_NATS_PASSWORD")
	}
	if c.Token == "" {
		c.Token = os.Getenv("NLMCAST_NATS_TOKEN")
	}
}

// fleetFlagNames names the flag of each fleet config field, for errors.
var fleetFlagNames = map[string]string{
	"Map": "--base/--port", "Host": "--host", "Stream": "--stream", "MaxAge": "--max-age", "Replicas": "--replicas",
	"BufferBytes": "--buffer-bytes", "StartSeq": "--since", "Durable": "--durable",
	"Conn.CertFile": "--nats-cert", "Conn.Token": "--nats-token", "Interface": "--interface", "Source": "--source-port",
}

// publishSetup is what nlmcast publish's flags ask for.
type publishSetup struct {
	cfg       *fleet.PublisherConfig
	level     slog.Level    // --log-level
	logFormat string        // --log-format
	stats     time.Duration // --stats
}

// publishConfig parses nlmcast publish's arguments into a valid config. It
// opens nothing.
func publishConfig(ctx context.Context, args []string, stderr io.Writer) (*publishSetup, error) {
	fs := newFlags("publish", "--nats URL [STREAM...] [flags]",
		"Reads this host's streams from the bridge's raw groups, like any receiver (no privilege), and publishes\n"+
			"every frame, byte for byte, to NATS JetStream on subject nlmcast.HOST.STREAM (PROTOCOL.md, Beyond one host).\n"+
			"Creates the JetStream stream if it does not exist. While NATS is unreachable it holds up to --buffer-bytes\n"+
			"of frames; past that it drops frames and publishes an overrun marker in their place.\n"+
			"STREAM is a stream name or alias (see 'nlmcast groups'); none means every rtnetlink stream.", stderr)
	mc := &mcast.ReceiverConfig{}
	cfg := &fleet.PublisherConfig{Mcast: mc}
	natsFlags(fs, &cfg.Conn)
	fs.StringVar(&cfg.Host, "host", "", "this host's name in the subjects (letters, digits, '-', '_'; default: the hostname, '.' made '_')")
	fs.StringVar(&cfg.Stream, "stream", fleet.DefaultStream, "JetStream stream")
	fs.DurationVar(&cfg.MaxAge, "max-age", fleet.DefaultMaxAge, "how long a stream created here keeps frames")
	fs.IntVar(&cfg.Replicas, "replicas", 1, "replicas of a stream created here (the servers of a cluster that hold it)")
	fs.IntVar(&cfg.BufferBytes, "buffer-bytes", fleet.DefaultBufferBytes, "bytes of frames held while NATS does not take them")
	fs.StringVar(&mc.Interface, "interface", mcast.DefaultInterface, "interface to join groups on")
	srcPort := sourcePortFlag(fs)
	fs.BoolVar(&cfg.Insecure, "insecure", false, insecureUsage)
	stats := fs.Duration("stats", 0, "log the publisher's counters this often (0: at exit only)")
	getLog := logFlags(ctx, fs)
	getMap := mapFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	natsEnv(&cfg.Conn)
	if cfg.Conn.URL == "" {
		return nil, errors.New("--nats URL is required: the NATS server to publish to")
	}
	if cfg.Map, err = getMap(); err != nil {
		return nil, err
	}
	if cfg.Streams, err = streams.Resolve(pos...); err != nil {
		return nil, err
	}
	if *srcPort == 0 || *srcPort > 65535 {
		return nil, fmt.Errorf("--source-port %d: use a port from 1 to 65535", *srcPort)
	}
	mc.Source = netip.AddrPortFrom(netip.Addr{}, uint16(*srcPort))
	if err := cfg.Validate(); err != nil {
		return nil, withFlags(err, fleetFlagNames)
	}
	setup := &publishSetup{cfg: cfg, stats: *stats}
	if setup.level, setup.logFormat, err = getLog(); err != nil {
		return nil, err
	}
	return setup, nil
}

func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	setup, err := publishConfig(ctx, args, stderr)
	if err != nil {
		return err
	}
	cfg, every := setup.cfg, setup.stats
	log := newLogger(stderr, setup.logFormat, setup.level)
	cfg.Logf = func(f string, a ...any) { log.Warn(fmt.Sprintf(f, a...)) }
	p, err := fleet.NewPublisher(cfg)
	if err != nil {
		return withFlags(err, fleetFlagNames)
	}
	defer p.Close()
	if err := sdnotify.Notify(sdnotify.Ready); err != nil {
		log.Warn("cannot notify the service manager", "socket", os.Getenv(sdnotify.Socket), "err", err)
	}
	log.Info("publishing", "host", p.Host(), "nats", cfg.Conn.URL)
	if every > 0 {
		go func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					log.Info("stats", "counters", fmt.Sprintf("%+v", p.Stats()))
				}
			}
		}()
	}
	err = p.Run(ctx)
	log.Info("stopped", "counters", fmt.Sprintf("%+v", p.Stats()))
	return err
}

// sinceFlag parses --since: a JetStream stream sequence, "all", a time
// (RFC 3339), or a duration before now.
func sinceFlag(v string, c *fleet.SourceConfig) error {
	if v == "" {
		return nil
	}
	if v == "all" {
		c.All = true
		return nil
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil && n > 0 {
		c.StartSeq = n
		return nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		c.StartTime = t
		return nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		c.StartTime = time.Now().Add(-d)
		return nil
	}
	return fmt.Errorf("--since %q: give a JetStream stream sequence (1, 2, ...), all, a time (2006-01-02T15:04:05Z) or a duration before now (10m)", v)
}

// relayConfig parses nlmcast relay's arguments into a valid config. It
// opens nothing.
func relayConfig(ctx context.Context, args []string, stderr io.Writer) (*fleet.RelayConfig, slog.Level, string, error) {
	fs := newFlags("relay", "--nats URL --host H --base ADDR [STREAM...] [flags]",
		"Reads a remote host's frames from NATS JetStream (its 'nlmcast publish') and sends them, byte for byte,\n"+
			"on this host's loopback groups of the address map --base/--port, from 127.0.0.1:--source-port, so that\n"+
			"any local receiver (C, Python, socat, nlmcast listen --base ... --source-port ...) gets them as a bridge's.\n"+
			"Give it a block of its own, apart from the local bridge's (e.g. --base 239.255.80.0), and a source port\n"+
			"below 1024 of its own (binding it needs root or CAP_NET_BIND_SERVICE). Raw encoding only. Authenticated\n"+
			"and sealed frames verify only at the remote bridge's own groups: relay those with the remote --base.", stderr)
	cfg := &fleet.RelayConfig{Sender: &mcast.SenderConfig{}}
	natsFlags(fs, &cfg.Source.Conn)
	fs.StringVar(&cfg.Source.Host, "host", "", "the host whose frames to relay (its publisher's --host)")
	fs.StringVar(&cfg.Source.Stream, "stream", fleet.DefaultStream, "the JetStream stream")
	since := fs.String("since", "", "start at a JetStream stream sequence, all, a time (RFC 3339) or a duration ago (default: new frames)")
	fs.StringVar(&cfg.Source.Durable, "durable", "", "a durable consumer's name: start again where it stopped")
	remoteBase := fs.String("remote-base", streams.DefaultBase.String(), "the remote bridge's --base")
	remotePort := fs.Uint("remote-port", uint(streams.DefaultPort), "the remote bridge's --port")
	srcPort := fs.Uint("source-port", 1022, "local port to send from: the local receivers' --source-port")
	getLog := logFlags(ctx, fs)
	getMap := mapFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return nil, 0, "", err
	}
	natsEnv(&cfg.Source.Conn)
	if cfg.Source.Conn.URL == "" || cfg.Source.Host == "" {
		return nil, 0, "", errors.New("--nats URL and --host H are required: where, and whose frames, to relay")
	}
	if err := sinceFlag(*since, &cfg.Source); err != nil {
		return nil, 0, "", err
	}
	if cfg.Map, err = getMap(); err != nil {
		return nil, 0, "", err
	}
	rb, err := netip.ParseAddr(*remoteBase)
	if err != nil || *remotePort > 65535 {
		return nil, 0, "", fmt.Errorf("--remote-base %q --remote-port %d: give the remote bridge's --base and --port", *remoteBase, *remotePort)
	}
	cfg.Source.Map = streams.Map{Base: rb, Port: uint16(*remotePort)}
	if cfg.Map.Addr(streams.Default()[0], streams.Raw) == (streams.Map{}).Addr(streams.Default()[0], streams.Raw) && *srcPort == uint(mcast.DefaultSourcePort) {
		return nil, 0, "", errors.New("--base and --source-port are the local bridge's defaults: give the relay a block of its own (--base 239.255.80.0) and a port of its own (--source-port)")
	}
	if cfg.Streams, err = streams.Resolve(pos...); err != nil {
		return nil, 0, "", err
	}
	if *srcPort == 0 || *srcPort > 65535 {
		return nil, 0, "", fmt.Errorf("--source-port %d: use a port from 1 to 65535", *srcPort)
	}
	cfg.Sender.Source = netip.AddrPortFrom(netip.Addr{}, uint16(*srcPort))
	if err := cfg.Validate(); err != nil {
		return nil, 0, "", withFlags(err, fleetFlagNames)
	}
	level, format, err := getLog()
	return cfg, level, format, err
}

func runRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, level, format, err := relayConfig(ctx, args, stderr)
	if err != nil {
		return err
	}
	log := newLogger(stderr, format, level)
	r, err := fleet.NewRelay(cfg)
	if err != nil {
		return withFlags(err, fleetFlagNames)
	}
	defer r.Close()
	if err := sdnotify.Notify(sdnotify.Ready); err != nil {
		log.Warn("cannot notify the service manager", "socket", os.Getenv(sdnotify.Socket), "err", err)
	}
	log.Info("relaying", "host", cfg.Source.Host, "nats", cfg.Source.Conn.URL)
	err = r.Run(ctx)
	log.Info("stopped", "counters", fmt.Sprintf("%+v", r.Stats()))
	return err
}
