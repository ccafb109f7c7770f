package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

	"golang.org/x/sys/unix"

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
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: setup.level}))
	cfg.Logger = log
	if err := checkCapabilities(cfg, who != nil); err != nil {
		return err
	}
	if setup.netns != "" || cfg.AllNSID { // allowed by --expose-netns: say what it costs
		log.Warn("other network namespaces' events are bridged: every local user here can read them", "netns", setup.netns, "all_nsid", cfg.AllNSID)
	}

	var stats *statsFile
	if setup.stats != "" {
		if stats, err = openStatsFile(setup.stats); err != nil {
			return fmt.Errorf("--stats: %w", err)
		}
		defer stats.close()
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
	if who != nil {
		if err := dropPrivileges(b, who, stats, cfg.KeyFile, log); err != nil {
			return err
		}
	} else if os.Geteuid() != 0 {
		if err := trimCapabilities(b, log); err != nil {
			return err
		}
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
	encodings string                // --encodings as given, for the log
	user      string                // --user
}

// bridgeFlagNames names the flag of each netlinkbridge.Config and
// mcast.SenderConfig field, for errors.
var bridgeFlagNames = map[string]string{
	"Streams": "--streams", "Map": "--base/--port", "Encodings": "--encodings", "AllNSID": "--all-nsid", "NetNS": "--netns",
	"ReadBuffer": "--read-buffer", "Batch": "--batch", "Heartbeat": "--heartbeat", "ResyncInterval": "--resync-interval",
	"RequestBurst": "--request-burst", "RequestEvery": "--request-every",
	"TotalRequestBurst": "--total-request-burst", "TotalRequestEvery": "--total-request-every", "AnswerRate": "--answer-rate",
	"MaxSocketsPerUID": "--max-sockets-per-uid", "HandoffAfter": "--handoff-after",
	"Interface": "--interface", "Source": "--source-port", "TTL": "--ttl", "KeyFile": "--key",
}

// bridgeConfig parses nlmcast bridge's flags into a valid config. It opens
// nothing.
func bridgeConfig(args []string, stderr io.Writer) (*bridgeSetup, error) {
	fs := newFlags("bridge", "[flags]",
		"Subscribes to kernel netlink multicast groups (rtnetlink, uevents, generic netlink, and\n"+
			"with --expose process events and conntrack) and sends every event, framed, to its\n"+
			"stream's loopback multicast group. Needs root, or the capabilities it names: joining the groups\n"+
			"and sending from the privileged source port that receivers check. With --user it then\n"+
			"runs as that user, keeping only the capabilities it still needs. Stops cleanly on SIGINT/SIGTERM.\n\n"+
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
	fs.BoolVar(&cfg.ExposeNetNS, "expose-netns", false, "allow --netns and --all-nsid, knowing that every local user here can then read those namespaces'\n"+
		"interface names, MAC addresses, addresses and routes (encrypted private streams will replace this)")
	fs.StringVar(&setup.encodings, "encodings", "raw,json", "encodings to send: raw, json, or both")
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
		"a multicast send that takes longer while netlink events queue up hands sending to another thread\n(multicast datagrams may then be dropped, never netlink events); 0: always send on the reading thread")
	fs.IntVar(&cfg.MaxSocketsPerUID, "max-sockets-per-uid", netlinkbridge.DefaultMaxSocketsPerUID,
		"sockets one user may have bound to each stream's port (one port per stream and encoding); every "+
			netlinkbridge.ReceiversInterval.String()+"\nthose beyond it are detached (they stay open but receive nothing more), idle ones first;\nroot and the bridge's own user are exempt; 0: no limit")
	fs.BoolVar(&cfg.JSONAlways, "json-always", false, "encode JSON for every event, even for streams whose JSON group nobody has joined (default: only joined ones, per /proc/net/igmp)")
	fs.StringVar(&cfg.KeyFile, "key", "", "key file (nlmcast keygen): authenticate every frame with its signing key; reloaded when it changes")
	fs.StringVar(&setup.stats, "stats", "", "write the bridge's counters, CPU time, peak RSS and allocations as JSON to this file on SIGUSR1 and on exit\n(a new file renamed over it each time; a directory every user can write to without the sticky bit is refused)")
	fs.StringVar(&setup.user, "user", "", "once every socket is open, switch to this user (a name or a uid; its group and groups too) on every thread,\n"+
		"keeping only the capabilities the configuration still needs, and set no_new_privs")
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
	cfg.NoHeartbeats = cfg.Heartbeat == 0         // --heartbeat 0: off
	cfg.NoSocketLimit = cfg.MaxSocketsPerUID == 0 // --max-sockets-per-uid 0: off
	cfg.NoHandoff = cfg.HandoffAfter == 0         // --handoff-after 0: off
	cfg.NoRequests = !*requests
	cfg.Sender.NoSegmentation = !*segment
	if err := setup.level.UnmarshalText([]byte(*level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", *level)
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
		return &flagError{fmt.Sprintf("%s: %s; to do so anyway, add --expose-netns (encrypted private streams will replace it)",
			bridgeFlagNames[ne.Field], ne.Reason()), err}
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
