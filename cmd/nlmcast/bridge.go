package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/metrics"
	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/streams"
)

func runBridge(ctx context.Context, args []string, _, stderr io.Writer) error {
	setup, err := bridgeConfig(ctx, args, stderr)
	if err != nil {
		return err
	}
	cfg := setup.cfg
	var who *account
	if setup.user != "" {
		if who, err = lookupAccount(setup.user); err != nil {
			return fmt.Errorf("--user: %w", err)
		}
	}
	if setup.netns != "" {
		fd, err := kernel.OpenNetNS(setup.netns)
		if err != nil {
			return fmt.Errorf("--netns: %w", err)
		}
		defer syscall.Close(fd)
		cfg.NetNS = fd
	}
	level := new(slog.LevelVar)
	level.Set(setup.level)
	log := newLogger(stderr, setup.logFormat, level)
	cfg.Logger = log
	var hup chan os.Signal
	if setup.config != "" { // caught from now on: a SIGHUP must not stop a bridge that is starting
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	if err := checkCapabilities(cfg, who != nil); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Private)) {
		if a := cfg.Private[name]; a.Cleartext { // --cleartext-to-all-users: say what it costs, every start
			log.Warn("a private stream is sent in the clear: every local user can read it", "stream", strings.ReplaceAll(name, "*", "all"))
		}
	}

	var stats *statsFile
	if setup.stats != "" {
		if stats, err = openStatsFile(setup.stats); err != nil {
			return fmt.Errorf("--stats: %w", err)
		}
		defer stats.close()
	}
	// Opened before the privileges go: the port may be privileged, the
	// socket's directory root's.
	var metricsLn net.Listener
	if setup.metrics.Network != "" {
		if metricsLn, err = metrics.Listen(setup.metrics); err != nil {
			return fmt.Errorf("--metrics: %w", err)
		}
		defer metricsLn.Close() // once served, the server closes it
		if who != nil && setup.metrics.Network == "unix" {
			// The --user's, for its group to scrape (mode 0660).
			if err := os.Chown(setup.metrics.Address, who.uid, who.gid); err != nil {
				return fmt.Errorf("--metrics: %w", err)
			}
		}
	}
	// Opened before the privileges go: the socket may be root's alone.
	notifier, err := sdnotify.Open()
	if err != nil {
		log.Warn("cannot notify the service manager", "socket", os.Getenv(sdnotify.Socket), "err", err)
	}
	defer notifier.Close()
	if err := watchdog(cfg, notifier, log); err != nil {
		return err
	}
	b, err := netlinkbridge.NewSet(cfg)
	if err != nil {
		return bridgeError(err)
	}
	defer b.Close()
	if metricsLn != nil {
		stop := serveMetrics(metricsLn, setup.metrics, metrics.NewBridgeCollector(b), log)
		defer stop()
	}
	if who != nil {
		if err := dropPrivileges(b, who, stats, cfg.KeyFile, log); err != nil {
			return err
		}
	} else if os.Geteuid() != 0 {
		if err := trimCapabilities(b, log); err != nil {
			return err
		}
	}
	if hup != nil {
		stop := reloadOn(hup, &reloader{args: args, path: setup.config, running: setup.values, level: level, set: b, log: log})
		defer stop()
	}
	if stats != nil {
		stop := writeStatsOn(syscall.SIGUSR1, stats, b, log)
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
		if err := notifier.Send(sdnotify.Ready + "\nSTATUS=bridging"); err != nil {
			log.Warn("cannot notify the service manager", "socket", os.Getenv(sdnotify.Socket), "err", err)
		}
		log.Info("bridge ready", "streams", len(cfg.Streams), "encodings", setup.encodings, "config", setup.config)
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

// watchdog sets cfg.Alive to send WATCHDOG=1 at half the service
// manager's watchdog interval ($WATCHDOG_USEC), while every bridge loop
// comes round. Without a watchdog it changes nothing.
func watchdog(cfg *netlinkbridge.Config, n *sdnotify.Notifier, log *slog.Logger) error {
	every, err := sdnotify.WatchdogInterval()
	if err != nil {
		return err
	}
	if every == 0 {
		return nil
	}
	if n == nil {
		log.Warn("a watchdog is set but no notification socket: no WATCHDOG=1 will be sent", "watchdog", every)
		return nil
	}
	var failed atomic.Bool
	cfg.Alive = func() {
		if err := n.Send(sdnotify.Watchdog); err != nil && !failed.Swap(true) {
			log.Warn("cannot send WATCHDOG=1 to the service manager", "err", err)
		}
	}
	cfg.AliveEvery = every / 2
	log.Info("watchdog on", "interval", every, "ping_every", cfg.AliveEvery)
	return nil
}

// bridgeSetup is what nlmcast bridge's flags ask for.
type bridgeSetup struct {
	cfg       *netlinkbridge.Config // without NetNS and Logger
	netns     string                // --netns, opened by runBridge
	stats     string                // --stats
	level     slog.Level            // --log-level
	logFormat string                // --log-format
	encodings string                // --encodings as given, for the log
	user      string                // --user
	config    string                // --config; "": none
	values    map[string]string     // every flag's value (config file keys), for a reload's changes
	metrics   metrics.Addr          // --metrics; zero: none
}

// bridgeFlagNames names the flag of each netlinkbridge.Config and
// mcast.SenderConfig field, for errors.
var bridgeFlagNames = map[string]string{
	"Streams": "--streams", "Map": "--base/--port", "Encodings": "--encodings", "AllNSID": "--all-nsid", "NetNS": "--netns",
	"ReadBuffer": "--read-buffer", "Batch": "--batch", "Heartbeat": "--heartbeat", "ResyncInterval": "--resync-interval",
	"RequestBurst": "--request-burst", "RequestEvery": "--request-every",
	"TotalRequestBurst": "--total-request-burst", "TotalRequestEvery": "--total-request-every", "AnswerRate": "--answer-rate",
	"MaxSocketsPerUID": "--max-sockets-per-uid", "HandoffAfter": "--handoff-after",
	"Interface": "--interface", "Source": "--source-port", "TTL": "--ttl", "KeyFile": "--key", "Private": "--expose",
	"XfrmKeys": "--xfrm-keys",
}

// bridgeConfig parses nlmcast bridge's flags, and the file of --config,
// into a valid config. It opens nothing but the file.
func bridgeConfig(ctx context.Context, args []string, stderr io.Writer) (*bridgeSetup, error) {
	fs, finish := bridgeFlags(ctx, stderr)
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		return nil, fmt.Errorf("unexpected argument %q: streams are chosen with --streams", pos[0])
	}
	path := fs.Lookup("config").Value.String()
	var keys configKeys
	if path != "" {
		scratch := func() *flag.FlagSet { fs, _ := bridgeFlags(context.Background(), io.Discard); return fs }
		if keys, err = applyConfigFile(fs, path, scratch); err != nil {
			return nil, err
		}
	}
	setup, err := finish()
	if err != nil {
		return nil, keys.wrap(err)
	}
	setup.config, setup.values = path, flagValues(fs)
	return setup, nil
}

// bridgeFlags returns nlmcast bridge's flags, and a function that makes
// the config of them once they are parsed (and the config file applied).
// Every flag is a key of the config file: a new flag needs no more than
// its line in dist/nlmcast.toml, which a test checks. A flag that takes a
// list (comma-separated, or given once per item) takes a TOML array when
// its flag.Value is a listValue (listFlag, or SetList calling Set per item).
func bridgeFlags(ctx context.Context, stderr io.Writer) (*flag.FlagSet, func() (*bridgeSetup, error)) {
	fs := newFlags("bridge", "[flags]",
		"Subscribes to kernel netlink multicast groups (rtnetlink, uevents, generic netlink, and\n"+
			"with --expose process events and conntrack) and sends every event, framed, to its\n"+
			"stream's loopback multicast group. Needs root, or the capabilities it names: joining the groups\n"+
			"and sending from the privileged source port that receivers check. With --user it then\n"+
			"runs as that user, keeping only the capabilities it still needs. Stops cleanly on SIGINT/SIGTERM.\n\n"+
			"Private streams (proc, conntrack-*, some FAMILY:GROUP, and with --netns or --all-nsid every\n"+
			"stream) carry what the kernel shows only to privileged processes, or to another namespace:\n"+
			"every process's fork/exec/exit with pids and uids, every tracked connection's addresses\n"+
			"and ports, another namespace's interfaces and addresses. Any local user can join any\n"+
			"loopback group, so a private stream is sent sealed (encrypted and authenticated) under a\n"+
			"key file only its readers can read: --expose proc=/etc/nlmcast/private.key. In the clear\n"+
			"it takes --cleartext-to-all-users, which says what it does.", stderr)
	cfg := &netlinkbridge.Config{Sender: &mcast.SenderConfig{}}
	setup := &bridgeSetup{cfg: cfg}
	sel := &listFlag{"all"}
	fs.Var(sel, "streams", "comma-separated `list` of streams or aliases to bridge, FAMILY:GROUP for generic netlink (see 'nlmcast groups')")
	expose := &itemsFlag{}
	fs.Var(expose, "expose", "`STREAMS=KEYFILE`: bridge these private streams (comma-separated, or all: every private stream)\n"+
		"sealed under this key file (nlmcast keygen --group GROUP KEYFILE), so that only who can read it can\n"+
		"read them; may be repeated, one key file per group of readers")
	cleartext := &listFlag{}
	fs.Var(cleartext, "cleartext-to-all-users", "comma-separated `list` of private streams (or all) to bridge in the clear,\n"+
		"where EVERY LOCAL USER can read them")
	fs.BoolVar(&cfg.XfrmKeys, "xfrm-keys", false, "keep IPsec key material in xfrm streams' frames, which must then all be sealed (--expose xfrm=KEYFILE);\n"+
		"by default every key byte is overwritten with zeros in raw and JSON frames alike")
	fs.StringVar(&setup.netns, "netns", "", "read the events of this network namespace: a name from 'ip netns' or a path such as /proc/PID/ns/net (multicast is still sent here; frames carry the id it has here)")
	fs.BoolVar(&cfg.AllNSID, "all-nsid", false, "also bridge rtnetlink events of every namespace that has an id here ('ip netns set'); frames carry that id")
	encodings := &listFlag{"raw,json"}
	fs.Var(encodings, "encodings", "comma-separated `list` of encodings to send: raw, json, or both")
	fs.StringVar(&cfg.Sender.Interface, "interface", mcast.DefaultInterface, "interface to send multicast on")
	fs.BoolVar(&cfg.Sender.AllowNonLoopback, "allow-non-loopback", false, "allow a non-loopback --interface (events then leave the host)")
	fs.IntVar(&cfg.Sender.TTL, "ttl", 0, "multicast TTL; 0 keeps datagrams on the host")
	srcPort := fs.Uint("source-port", mcast.DefaultSourcePort, "UDP source port, the one receivers accept (their --source-port); they trust it only where it is\n"+
		"below net.ipv4.ip_unprivileged_port_start, and the bridge warns where it is not")
	fs.IntVar(&cfg.ReadBuffer, "read-buffer", netlinkbridge.DefaultReadBuffer, "netlink receive buffer in bytes (~830 bytes per queued event)")
	fs.IntVar(&cfg.Batch, "batch", netlinkbridge.DefaultBatch, "netlink datagrams read per system call")
	segment := fs.Bool("segment", true, "send runs of equal-size datagrams to a group with UDP segmentation offload (UDP_SEGMENT);\nfalse sends each datagram on its own (receivers see the same datagrams either way)")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", netlinkbridge.DefaultHeartbeat, "heartbeat interval on idle streams; 0 turns heartbeats off")
	fs.DurationVar(&cfg.ResyncInterval, "resync-interval", netlinkbridge.DefaultResyncInterval, "least time between two multicast resyncs (state dumps to every receiver, after overruns)")
	requests := fs.Bool("requests", true, "accept resync requests from local receivers on the control group (base address, --port), each answered to its sender alone")
	fs.IntVar(&cfg.RequestBurst, "request-burst", netlinkbridge.DefaultRequestBurst, "requests one sender (address and port) may have answered at once")
	fs.DurationVar(&cfg.RequestEvery, "request-every", netlinkbridge.DefaultRequestEvery, "a sender earns one more answer this often, up to --request-burst")
	fs.IntVar(&cfg.TotalRequestBurst, "total-request-burst", netlinkbridge.DefaultTotalRequestBurst, "requests of all senders together that may be answered at once")
	fs.DurationVar(&cfg.TotalRequestEvery, "total-request-every", netlinkbridge.DefaultTotalRequestEvery, "all senders together earn one more answer this often, up to --total-request-burst")
	fs.IntVar(&cfg.AnswerRate, "answer-rate", netlinkbridge.DefaultAnswerRate, "datagrams a second an answer is sent to its requester at most")
	fs.DurationVar(&cfg.HandoffAfter, "handoff-after", netlinkbridge.DefaultHandoffAfter,
		"a multicast send that takes longer while netlink events queue up hands sending to another thread\n(when it is full, the reader waits while the netlink buffer has room, 2s at most, then drops\nmulticast datagrams rather than let netlink overrun); 0: always send on the reading thread")
	fs.IntVar(&cfg.MaxSocketsPerUID, "max-sockets-per-uid", netlinkbridge.DefaultMaxSocketsPerUID,
		"sockets one user may have bound to each stream's port (one port per stream and encoding); every "+
			netlinkbridge.ReceiversInterval.String()+"\nthose beyond it are detached (they stay open but receive nothing more), idle ones first;\nroot and the bridge's own user are exempt; 0: no limit")
	fs.BoolVar(&cfg.JSONAlways, "json-always", false, "encode JSON for every event, even for streams whose JSON group nobody has joined (default: only joined ones, per /proc/net/igmp)")
	fs.StringVar(&cfg.KeyFile, "key", "", "key file (nlmcast keygen): authenticate every frame with its signing key; reloaded when it changes")
	fs.StringVar(&setup.stats, "stats", "", "write the bridge's counters, CPU time, peak RSS and allocations as JSON to this file on SIGUSR1 and on exit\n(a new file renamed over it each time; a directory every user can write to without the sticky bit is refused)")
	fs.StringVar(&setup.user, "user", "", "once every socket is open, switch to this user (a name or a uid; its group and groups too) on every thread,\n"+
		"keeping only the capabilities the configuration still needs, and set no_new_privs")
	getLog := logFlags(ctx, fs)
	fs.String("config", "", "read flags from this TOML file (keys: the flags without dashes; see dist/nlmcast.toml);\n"+
		"flags given here win over it; SIGHUP reloads it (log-level, heartbeat and the streams apply at once, the rest at a restart)")
	metricsAddr := metricsFlag(fs, "bridge")
	getMap := mapFlags(fs)
	return fs, func() (*bridgeSetup, error) {
		return finishBridge(setup, getMap, getLog, sel.s, expose.items, cleartext.s, encodings.s, *metricsAddr, *srcPort, *requests, *segment)
	}
}

// finishBridge makes setup.cfg of the flags' values and validates it.
func finishBridge(setup *bridgeSetup, getMap func() (streams.Map, error), getLog func() (slog.Level, string, error),
	sel string, expose []string, cleartext, encodings, metricsAddr string, srcPort uint, requests, segment bool) (*bridgeSetup, error) {
	cfg := setup.cfg
	var err error
	setup.encodings = encodings
	if setup.metrics, err = metrics.ParseAddr(metricsAddr); err != nil {
		return nil, fmt.Errorf("--metrics %w", err)
	}
	if cfg.Map, err = getMap(); err != nil {
		return nil, err
	}
	if cfg.Streams, err = streams.Resolve(sel); err != nil {
		return nil, fmt.Errorf("--streams: %w", err)
	}
	if err := privateFlags(cfg, expose, cleartext); err != nil {
		return nil, err
	}
	if cfg.XfrmKeys && !slices.ContainsFunc(cfg.Streams, func(s streams.Stream) bool { return s.Family == streams.FamilyXfrm }) {
		return nil, fmt.Errorf("--xfrm-keys: no xfrm stream is bridged; expose one sealed, such as --expose xfrm=KEYFILE")
	}
	for _, e := range strings.Split(setup.encodings, ",") {
		enc, err := streams.ParseEncoding(strings.TrimSpace(e))
		if err != nil {
			return nil, fmt.Errorf("--encodings: %w", err)
		}
		cfg.Encodings = append(cfg.Encodings, enc)
	}
	// The flag is wider than a port, and 0 is no port here.
	if srcPort == 0 || srcPort > 65535 {
		return nil, fmt.Errorf("--source-port %d: use a port from 1 to 65535", srcPort)
	}
	cfg.Sender.Source = netip.AddrPortFrom(netip.Addr{}, uint16(srcPort))
	cfg.NoHeartbeats = cfg.Heartbeat == 0         // --heartbeat 0: off
	cfg.NoSocketLimit = cfg.MaxSocketsPerUID == 0 // --max-sockets-per-uid 0: off
	cfg.NoHandoff = cfg.HandoffAfter == 0         // --handoff-after 0: off
	cfg.NoRequests = !requests
	cfg.Sender.NoSegmentation = !segment
	if setup.level, setup.logFormat, err = getLog(); err != nil {
		return nil, err
	}
	// runBridge opens --netns later: validate as it will run, with a
	// stand-in descriptor, so that the library's rules are checked once.
	check := *cfg
	if setup.netns != "" {
		check.NetNS = netnsStandIn
	}
	if err := check.Validate(); err != nil {
		return nil, bridgeError(err)
	}
	return setup, nil
}

// netnsStandIn stands for the descriptor of --netns while the flags are
// checked; nothing is opened.
const netnsStandIn = 1 << 30

// bridgeError says which flag to change when err is about the config.
func bridgeError(err error) error {
	var pe *netlinkbridge.PrivilegedError
	var re *netlinkbridge.RequestsError
	var ne *netlinkbridge.NamespaceError
	switch {
	case errors.As(err, &ne):
		return &flagError{fmt.Sprintf("%s: %s; %s", bridgeFlagNames[ne.Field], ne.Reason(), howToExpose("all")), err}
	case errors.As(err, &pe):
		// Only a stream of --streams can be private and not exposed.
		return &flagError{fmt.Sprintf("--streams: %s; %s", pe.Reason(), howToExpose(pe.Stream.Name)), err}
	case errors.As(err, &re):
		return &flagError{fmt.Sprintf("%v (turn them off with --requests=false)", re), err}
	}
	return withFlags(err, bridgeFlagNames)
}

// howToExpose says how to bridge the private stream name (or all).
func howToExpose(name string) string {
	return fmt.Sprintf("to bridge it, seal it under a key file that only its readers can read: --expose %s=/etc/nlmcast/private.key "+
		"(make one with: nlmcast keygen --group nlmcast-priv /etc/nlmcast/private.key), "+
		"or send it in the clear, readable by every local user, with --cleartext-to-all-users %s", name, name)
}

// privateFlags turns --expose STREAMS=KEYFILE and --cleartext-to-all-users
// STREAMS into cfg.Private, and adds the streams they name to cfg.Streams.
func privateFlags(cfg *netlinkbridge.Config, expose []string, cleartext string) error {
	var more []string
	add := func(flag, list string, a netlinkbridge.Access) error {
		list = strings.TrimSpace(list)
		if list == "" {
			return fmt.Errorf("%s: name the streams (comma-separated, or all)", flag)
		}
		if cfg.Private == nil {
			cfg.Private = map[string]netlinkbridge.Access{}
		}
		var ss []streams.Stream
		if list == "all" {
			ss = []streams.Stream{{Name: "*"}}
		} else {
			var err error
			if ss, err = streams.Resolve(list); err != nil {
				return fmt.Errorf("%s: %w", flag, err)
			}
			more = append(more, names(ss)...)
		}
		for _, s := range ss {
			if old, ok := cfg.Private[s.Name]; ok && old != a {
				return fmt.Errorf("%s: stream %s is given twice, with different readers", flag, strings.ReplaceAll(s.Name, "*", "all"))
			}
			cfg.Private[s.Name] = a
		}
		return nil
	}
	for _, e := range expose {
		list, file, ok := strings.Cut(e, "=")
		if !ok || strings.TrimSpace(file) == "" {
			return &flagError{fmt.Sprintf("--expose %s: say who may read it: --expose %s=KEYFILE, sealed under a key file only its readers can read "+
				"(make one with: nlmcast keygen --group nlmcast-priv /etc/nlmcast/private.key), or --cleartext-to-all-users %s to send it "+
				"in the clear, readable by every local user", e, e, e), nil}
		}
		if err := add("--expose", list, netlinkbridge.Access{KeyFile: strings.TrimSpace(file)}); err != nil {
			return err
		}
	}
	if cleartext != "" {
		if err := add("--cleartext-to-all-users", cleartext, netlinkbridge.Access{Cleartext: true}); err != nil {
			return err
		}
	}
	if len(more) > 0 {
		var err error
		if cfg.Streams, err = streams.Resolve(append(names(cfg.Streams), more...)...); err != nil {
			return err
		}
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

// writeStatsOn writes the set's StatsReport to f on every sig, and once more
// when the returned function is called.
func writeStatsOn(sig os.Signal, f *statsFile, set *netlinkbridge.Set, log *slog.Logger) (stop func()) {
	var n atomic.Int64
	write := func() {
		s := set.StatsReport()
		s.Snap = n.Add(1)
		data, _ := json.Marshal(s)
		if err := f.write(append(data, '\n')); err != nil {
			log.Warn("cannot write --stats", "file", f.path, "err", err)
		}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	stopServing := onSignal(ch, write)
	return func() {
		stopServing()
		write()
	}
}

// onSignal calls fn on every signal of ch, one at a time, until the
// returned function is called; that stops the signals to ch and returns
// once fn is not running.
func onSignal(ch chan os.Signal, fn func()) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-ch:
				fn()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
		<-exited
	}
}

// statsFile is the file of --stats, which the bridge writes as root. It
// writes a new file of a random name, created with O_EXCL and O_NOFOLLOW so
// that no file or link anyone put there is opened, and renames it over
// FILE, which replaces whatever FILE is (a link too, which rename does not
// follow). So root writes nothing but its own new file, in a directory
// fixed when the bridge starts, even in /tmp. A directory every user may
// write to without the sticky bit is refused: there, anyone could replace
// FILE after root wrote it.
type statsFile struct {
	dir  int    // the directory, O_PATH
	base string // FILE's name in it
	path string // FILE as given
}

func openStatsFile(path string) (*statsFile, error) {
	dir, base := filepath.Split(path)
	if base == "" || base == "." || base == ".." {
		return nil, fmt.Errorf("%s: not a file name", path)
	}
	dir = filepath.Clean(dir) // "" is "."
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, &os.PathError{Op: "open", Path: dir, Err: err})
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", path, &os.PathError{Op: "stat", Path: dir, Err: err})
	}
	if st.Mode&unix.S_IWOTH != 0 && st.Mode&unix.S_ISVTX == 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: directory %s is writable by every user and not sticky, so anyone could replace the file: "+
			"use a directory only root can write to (such as /run/nlmcast), or set its sticky bit (chmod +t)", path, dir)
	}
	return &statsFile{dir: fd, base: base, path: path}, nil
}

// write replaces the file with one holding data: readers never see half a
// file.
func (f *statsFile) write(data []byte) error {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := "." + f.base + "." + hex.EncodeToString(rnd[:]) + ".tmp"
	fd, err := unix.Openat(f.dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return &os.PathError{Op: "create", Path: tmp, Err: err}
	}
	file := os.NewFile(uintptr(fd), tmp)
	_, err = file.Write(data)
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if rerr := unix.Renameat(f.dir, tmp, f.dir, f.base); rerr != nil {
			err = &os.LinkError{Op: "rename", Old: tmp, New: f.base, Err: rerr}
		}
	}
	if err != nil {
		unix.Unlinkat(f.dir, tmp, 0)
		return err
	}
	return nil
}

func (f *statsFile) close() { unix.Close(f.dir) }
