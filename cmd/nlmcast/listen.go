package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/fleet"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/metrics"
	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

func runListen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	setup, err := listenConfig(ctx, args, stderr)
	if err != nil {
		return err
	}
	log := newLogger(stderr, setup.logFormat, setup.level)
	var metricsLn net.Listener
	if setup.metrics.Network != "" {
		if metricsLn, err = metrics.Listen(setup.metrics); err != nil {
			return fmt.Errorf("--metrics: %w", err)
		}
		defer metricsLn.Close() // once served, the server closes it
	}
	if setup.fleet != nil && setup.fleet.Host == "all" {
		return listenHosts(ctx, setup, stdout, log)
	}
	r, err := openListener(setup, setup.cfg, setup.fleet)
	if err != nil {
		return err
	}
	for _, w := range r.Warnings() {
		log.Warn(w)
	}
	stop := context.AfterFunc(ctx, func() { r.Close() })
	defer stop()
	defer r.Close()
	if metricsLn != nil {
		stopMetrics := serveMetrics(metricsLn, setup.metrics, metrics.NewListenCollector(r, setup.cfg.Encoding.String()), log)
		defer stopMetrics()
	}

	ready := func() {
		if err := sdnotify.Notify(sdnotify.Ready); err != nil {
			log.Warn("cannot notify the service manager", "socket", os.Getenv(sdnotify.Socket), "err", err)
		}
	}
	if setup.fleet == nil && setup.cfg.Encoding == streams.JSON {
		// The bridge encodes a stream's JSON only once it has seen the
		// join (/proc/net/igmp, every 100 ms): until a frame came on every
		// group, an event could be missed with no gap to show for it. Raw
		// frames are always sent.
		var stop func()
		ready, stop = whenHeard(r, heardWait, ready, log)
		defer stop()
	}
	var answered func(*receiver.Event)
	if setup.resync {
		if err := resync(r, setup, log, ""); err != nil {
			return err
		}
		// Ready once the state came: a command started with 'replay
		// --wait-ready', or a unit ordered after this one, then sees the
		// state before the events that follow it.
		var stop func()
		answered, stop = awaitAnswers(setup.cfg.Streams, answerWait, ready, log)
		defer stop()
	} else {
		ready()
	}
	return readListener(ctx, r, setup, stdout, log, "", answered)
}

// openListener opens the receiver of nlmcast listen: on the loopback
// groups, or with fc through NATS.
func openListener(setup *listenSetup, cfg *receiver.Config, fc *fleet.SourceConfig) (*receiver.Receiver, error) {
	var src *fleet.Source
	if fc != nil {
		var err error
		if src, err = fleet.NewSource(fc); err != nil {
			return nil, withFlags(err, fleetFlagNames)
		}
		cfg.Source = src // the receiver's from now on
	}
	r, err := receiver.New(cfg)
	if err != nil {
		return nil, receiverError(err, listenFlagNames)
	}
	if src != nil {
		if err := src.Start(); err != nil { // before READY=1: new frames from now on
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// listenHosts is nlmcast listen --nats URL --host all: one receiver per
// host that publishes to the stream, those there at the start and each
// one that starts later (fleet.HostWatcher, every --hosts-every), printed
// together, each line's stream prefixed with its host (HOST/STREAM). With
// --count, each host's receiver stops after that many events, and listen
// once every host found so far stopped.
func listenHosts(ctx context.Context, setup *listenSetup, stdout io.Writer, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &lockedWriter{w: stdout}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		running int  // receivers reading
		listed  bool // every host there at the start has its reader: none ending may stop the others before
		errs    []error
	)
	w := &fleet.HostWatcher{
		Conn: setup.fleet.Conn, Stream: setup.fleet.Stream, Every: setup.hostsEvery,
		Found: func(h fleet.FoundHost) error {
			cfg, fc := *setup.cfg, setup.fleet.ForHost(h)
			r, err := openListener(setup, &cfg, &fc)
			if err != nil {
				return fmt.Errorf("host %s: %w", h.Name, err)
			}
			if h.Late {
				log.Info("a new host publishes: listening to it", "host", h.Name)
			}
			mu.Lock()
			running++
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if setup.resync { // here, not in the watcher: the publisher may take seconds to reply
					if err := resync(r, setup, log, h.Name); err != nil {
						log.Warn("no state of this host", "host", h.Name, "err", err) // its events still come
					}
				}
				stop := context.AfterFunc(ctx, func() { r.Close() })
				defer stop()
				defer r.Close()
				err := readListener(ctx, r, setup, out, log, h.Name, nil)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("host %s: %w", h.Name, err))
				}
				if running--; running == 0 && listed {
					cancel() // every host found read its --count events, or failed
				}
			}()
			return nil
		},
		Listed: func(hosts []string) {
			mu.Lock()
			listed = true // the readers of the hosts there at the start all run or ran
			if running == 0 && len(hosts) > 0 {
				cancel()
			}
			mu.Unlock()
			if len(hosts) == 0 {
				log.Info("no host has published yet: waiting for the first", "stream", setup.fleet.Stream)
			}
			if err := sdnotify.Notify(sdnotify.Ready); err != nil {
				log.Warn("cannot notify the service manager", "socket", os.Getenv(sdnotify.Socket), "err", err)
			}
		},
		Logf: func(format string, args ...any) { log.Warn(fmt.Sprintf(format, args...)) },
	}
	err := w.Run(ctx)
	cancel()
	wg.Wait()
	return errors.Join(append([]error{err}, errs...)...)
}

// heardWait is how long listen waits for a first frame on every stream
// before it says it is ready all the same: a bridge's heartbeats come
// every second.
const heardWait = 5 * time.Second

// whenHeard returns a function that calls ready once r has heard from the
// bridge on every stream it joined (receiver.Receiver.Heard), or after
// wait, saying so, in a goroutine of its own: the frames are read
// meanwhile. stop ends the wait.
func whenHeard(r *receiver.Receiver, wait time.Duration, ready func(), log *slog.Logger) (start, stop func()) {
	done := make(chan struct{})
	var once sync.Once
	start = func() {
		go func() {
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-r.Heard():
			case <-t.C:
				log.Warn("no frame from a bridge on every stream yet: ready all the same (is a bridge running in this network namespace, with these streams?)", "after", wait)
			case <-done:
				return
			}
			ready()
		}()
	}
	return start, func() { once.Do(func() { close(done) }) }
}

// answerWait is how long listen --resync waits for the answers before it
// says it is ready all the same (a bridge that refused the request, its
// rate limits reached, or one started with --requests=false).
const answerWait = 5 * time.Second

// awaitAnswers returns a function to give every event read, which calls
// ready once the answer of each stream of ss that has a state ended
// (its resync-end, or an AnswerLost notice), or after wait, saying so;
// stop stops the wait.
func awaitAnswers(ss []streams.Stream, wait time.Duration, ready func(), log *slog.Logger) (each func(*receiver.Event), stop func()) {
	pending := map[uint8]bool{}
	for _, s := range ss {
		if s.Resync {
			pending[s.ID] = true
		}
	}
	if len(ss) == 0 {
		for _, s := range streams.Default() {
			if s.Resync {
				pending[s.ID] = true
			}
		}
	}
	var once sync.Once
	t := time.AfterFunc(wait, func() {
		once.Do(func() {
			log.Warn("no whole answer to the resync request yet: ready without it (the bridge may have refused it)", "after", wait)
			ready()
		})
	})
	if len(pending) == 0 {
		t.Stop()
		once.Do(ready)
	}
	return func(ev *receiver.Event) {
		if len(pending) == 0 {
			return
		}
		end := !ev.IsNotice() && ev.Header.Flags&frame.FlagAnswer != 0 && ev.Header.Kind == frame.KindResyncEnd
		if end || ev.IsNotice() && ev.Notice.Kind == receiver.AnswerLost {
			delete(pending, ev.Stream.ID)
			if len(pending) == 0 && t.Stop() {
				once.Do(ready)
			}
		}
	}, func() { t.Stop() }
}

// resync asks r for the state of the streams listened to (--resync). A
// publisher that refused some of them (they have no state, or it does not
// publish them) is a warning; host, if not "", names the host.
func resync(r *receiver.Receiver, setup *listenSetup, log *slog.Logger, host string) error {
	err := r.RequestResync(setup.cfg.Streams...)
	var re *fleet.RefusedError
	if errors.As(err, &re) && len(re.Asked) > 0 {
		log.Warn("the state of some streams only", "host", re.Host, "asked", strings.Join(re.Asked, ","), "refused", re.Reason)
		return nil
	}
	return err
}

// lockedWriter writes whole buffers of several writers' lines, one at a
// time.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// readListener prints what r returns until ctx ends, r is closed, or
// --count events came; host, if not "", prefixes each stream's name.
func readListener(ctx context.Context, r *receiver.Receiver, setup *listenSetup, stdout io.Writer, log *slog.Logger, host string, each func(*receiver.Event)) error {
	w := bufio.NewWriterSize(stdout, 1<<20) // whole lines per write, for --host all
	defer w.Flush()
	evs := make([]receiver.Event, mcast.DefaultBatch)
	var line []byte // for --json: a frame made safe to print, reused
	seen := 0
	count := setup.count
	for count == 0 || seen < count {
		n, err := r.ReadBatch(evs)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, mcast.ErrClosed) {
				break
			}
			return err
		}
		for i := range evs[:n] {
			ev := &evs[i]
			if each != nil {
				each(ev)
			}
			if host != "" {
				ev.Stream.Name = host + "/" + ev.Stream.Name
			}
			if !ev.IsNotice() && ev.Header.Kind == frame.KindHeartbeat && !setup.heartbeats {
				continue
			}
			if setup.decode && !ev.IsNotice() && ev.Header.Kind == frame.KindEvent {
				// Sealed frames are raw: decode them here, as the bridge
				// would have for the JSON encoding.
				line = printDecoded(w, ev, setup.json, line)
			} else {
				line = printEvent(w, ev, setup.json, line)
			}
			if ev.IsNotice() || ev.Header.Kind != frame.KindEvent {
				continue
			}
			if seen++; count != 0 && seen >= count {
				break
			}
		}
		if err := w.Flush(); err != nil {
			return err // stdout closed: stop quietly with an error code
		}
	}
	st := r.Stats()
	if st.Unattested > 0 {
		log.Warn(fmt.Sprintf("refused: %d while the kernel did not show the bridge's address held by uid %d alone (another user's socket, or none, after a goodbye)",
			st.Unattested, setup.cfg.BridgeUID))
	}
	if st.Unauthenticated+st.UnknownKey+st.BadTag > 0 {
		log.Warn(fmt.Sprintf("refused: %d not authenticated, %d with a key not in %s, %d with a bad tag (forged or altered)",
			st.Unauthenticated, st.UnknownKey, setup.cfg.KeyFile, st.BadTag))
	}
	if st.NotSealed+st.BadSeal > 0 {
		log.Warn(fmt.Sprintf("refused on private streams: %d not sealed, %d sealed frames that did not open (forged or altered)",
			st.NotSealed, st.BadSeal))
	}
	if st.Sealed > 0 {
		log.Warn(fmt.Sprintf("%d sealed frames of private streams not read: give their key file with --private STREAMS=KEYFILE", st.Sealed))
	}
	if st.Malformed+st.Mismatch+st.UnknownKind+st.BadFragment+st.TooLarge+st.Mcast.WrongSource+st.Mcast.WrongInterface+st.Mcast.KernelDrops+st.Missing > 0 {
		log.Warn(fmt.Sprintf("dropped: %d malformed, %d mismatched, %d of unknown kind, %d bad fragments, %d fragments of too large messages, %d from a wrong sender, %d from a wrong interface; lost in the socket buffer: %d; frames missing: %d",
			st.Malformed, st.Mismatch, st.UnknownKind, st.BadFragment, st.TooLarge, st.Mcast.WrongSource, st.Mcast.WrongInterface, st.Mcast.KernelDrops, st.Missing))
	}
	return nil
}

// listenSetup is what nlmcast listen's flags ask for.
type listenSetup struct {
	cfg        *receiver.Config
	json       bool                // --json
	resync     bool                // --resync
	heartbeats bool                // --heartbeats
	count      int                 // --count
	decode     bool                // private streams and --nats: raw frames, decoded here
	fleet      *fleet.SourceConfig // --nats: read a host's frames through NATS
	level      slog.Level          // --log-level
	logFormat  string              // --log-format
	metrics    metrics.Addr        // --metrics; zero: none
	hostsEvery time.Duration       // --hosts-every, with --host all
}

// listenFlagNames names the flag of each receiver.Config and
// mcast.ReceiverConfig field, for errors.
var listenFlagNames = map[string]string{
	"Map": "--base/--port", "Silence": "--silence", "Interface": "--interface", "Source": "--source-port",
	"KeyFile": "--key", "Private": "--private",
}

// listenConfig parses nlmcast listen's arguments into a valid config. It
// opens nothing.
func listenConfig(ctx context.Context, args []string, stderr io.Writer) (*listenSetup, error) {
	fs := newFlags("listen", "[STREAM...] [flags]",
		"Joins the streams' multicast groups and prints one line per event, like ip monitor:\n"+
			"stream, the time the bridge read the event, sequence number, and the decoded event.\n"+
			"STREAM is a stream name or alias (see 'nlmcast groups'); none means all. Needs no privilege.\n"+
			"Lines starting with '!!' are notices: frames lost (gap), duplicates, reordering, a bridge\n"+
			"restart, socket buffer drops, or a silent bridge. Overrun, resync and goodbye frames from\n"+
			"the bridge are printed as '--' lines; events of a state dump are marked 'state', and those\n"+
			"of another network namespace (a bridge with --all-nsid or --netns) 'nsid N', with its id.", stderr)
	mc := &mcast.ReceiverConfig{}
	cfg := &receiver.Config{Encoding: streams.JSON, Mcast: mc}
	setup := &listenSetup{cfg: cfg}
	fs.BoolVar(&setup.json, "json", false, "print each event's JSON object (one per line, for jq)")
	asRaw := fs.Bool("raw", false, "receive the raw encoding and print header fields and the netlink message in hex")
	fs.IntVar(&setup.count, "count", 0, "exit after this many events (0: run until interrupted)")
	fs.StringVar(&mc.Interface, "interface", mcast.DefaultInterface, "interface to join groups on")
	fs.BoolVar(&mc.AllowNonLoopback, "allow-non-loopback", false, "allow a non-loopback --interface")
	srcPort := sourcePortFlag(fs)
	fs.BoolVar(&cfg.Insecure, "insecure", false, insecureUsage)
	fs.BoolVar(&mc.AnySource, "any-source", false, "accept frames from any sender, whatever its address and port (unsafe: any local user can send)")
	fs.BoolVar(&setup.resync, "resync", false, "ask the bridge for the current state first (printed as 'state' events);\n"+
		"with --nats, the host's publisher asks its bridge, and every reader of that host gets the answer")
	fs.BoolVar(&setup.heartbeats, "heartbeats", false, "print heartbeat frames too")
	bridgeUID := fs.Uint("bridge-uid", 0, "without --key: deliver frames only while the kernel shows the bridge's address held by this uid alone (sock_diag)")
	fs.StringVar(&cfg.KeyFile, "key", "", "the bridge's key file (nlmcast keygen): accept only frames authenticated with one of its keys")
	var private []string
	fs.Func("private", "STREAMS=KEYFILE: these streams (comma-separated, or all: every stream listened to) are private,\n"+
		"sealed by the bridge under this key file (its --expose): open their frames with it, refuse any other;\n"+
		"may be repeated", func(v string) error {
		private = append(private, v)
		return nil
	})
	fs.DurationVar(&cfg.Silence, "silence", receiver.DefaultSilence, "report a stream silent after this long without frames (0: never)")
	fc := &fleet.SourceConfig{}
	natsFlags(fs, &fc.Conn)
	fs.StringVar(&fc.Host, "host", "", "with --nats: the host whose frames to read (its publisher's --host), or all: every host that publishes,\n"+
		"those there at the start and each new one (see --hosts-every), each line's stream prefixed with its host (HOST/STREAM);\n"+
		"with none yet, it waits for the first")
	hostsEvery := fs.Duration("hosts-every", fleet.DefaultHostsEvery, "with --host all: how often to ask the server for new hosts (a new host's frames\n"+
		"are read from its first, up to this late)")
	fs.StringVar(&fc.Stream, "stream", fleet.DefaultStream, "with --nats: the JetStream stream")
	since := fs.String("since", "", "with --nats: start at a JetStream stream sequence, all, a time (RFC 3339) or a duration ago (default: new frames)")
	fs.StringVar(&fc.Durable, "durable", "", "with --nats: a durable consumer's name: start again where it stopped")
	getLog := logFlags(ctx, fs)
	metricsAddr := metricsFlag(fs, "listen")
	getMap := mapFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	if setup.level, setup.logFormat, err = getLog(); err != nil {
		return nil, err
	}
	if setup.metrics, err = metrics.ParseAddr(*metricsAddr); err != nil {
		return nil, fmt.Errorf("--metrics %w", err)
	}
	if setup.json && *asRaw {
		return nil, errors.New("--json and --raw exclude each other")
	}
	if *asRaw {
		cfg.Encoding = streams.Raw
	}
	if cfg.Map, err = getMap(); err != nil {
		return nil, err
	}
	if cfg.Streams, err = streams.Resolve(pos...); err != nil {
		return nil, err
	}
	if cfg.Private, err = privateStreams(private, cfg.Streams); err != nil {
		return nil, err
	}
	natsEnv(&fc.Conn)
	if fc.Conn.URL != "" {
		if fc.Host == "" {
			return nil, errors.New("--nats needs --host H: whose frames to read (its publisher's --host)")
		}
		if err := sinceFlag(*since, fc); err != nil {
			return nil, err
		}
		fc.Map, cfg.Mcast, setup.fleet = cfg.Map, nil, fc
		if err := fc.Validate(); err != nil {
			return nil, withFlags(err, fleetFlagNames)
		}
		if !*asRaw { // publishers carry raw frames: decode them here
			cfg.Encoding, setup.decode = streams.Raw, true
		}
	} else if fc.Host != "" || *since != "" || fc.Durable != "" {
		return nil, errors.New("--host, --since and --durable read through NATS: give --nats URL too")
	}
	if len(cfg.Private) > 0 && !*asRaw {
		// Sealed frames are raw: receive raw, and decode here what the
		// JSON encoding would have carried.
		cfg.Encoding, setup.decode = streams.Raw, true
	}
	if *bridgeUID > 1<<32-1 {
		return nil, fmt.Errorf("--bridge-uid %d: not a uid", *bridgeUID)
	}
	cfg.BridgeUID = uint32(*bridgeUID)
	everySet := false
	fs.Visit(func(f *flag.Flag) { everySet = everySet || f.Name == "hosts-every" })
	switch {
	case *hostsEvery <= 0:
		return nil, fmt.Errorf("--hosts-every %v: give a positive duration", *hostsEvery)
	case setup.fleet != nil && setup.fleet.Host == "all":
		setup.hostsEvery = *hostsEvery
	case everySet:
		return nil, errors.New("--hosts-every is how often --host all looks for new hosts: give --nats URL --host all")
	}
	if *srcPort == 0 || *srcPort > 65535 { // the flag is wider than a port, and 0 is none
		return nil, fmt.Errorf("--source-port %d: use a port from 1 to 65535", *srcPort)
	}
	mc.Source = netip.AddrPortFrom(netip.Addr{}, uint16(*srcPort))
	cfg.NoSilentNotices = cfg.Silence == 0 // --silence 0: never
	if err := cfg.Validate(); err != nil {
		return nil, withFlags(err, listenFlagNames)
	}
	return setup, nil
}

// sourcePortFlag defines --source-port of the receiving commands.
func sourcePortFlag(fs *flag.FlagSet) *uint {
	return fs.Uint("source-port", mcast.DefaultSourcePort, "accept frames only from this sender port on 127.0.0.1: the bridge's --source-port")
}

const insecureUsage = "start even where any user may send from --source-port (net.ipv4.ip_unprivileged_port_start at or below it,\n" +
	"as container runtimes set it), though frames are not authenticated: any local user could then forge events\n" +
	"while the bridge is not running. A warning says so at every start"

// receiverError is a receiver's error in terms of the flags: a refusal to
// trust the source port says what to do.
func receiverError(err error, flags map[string]string) error {
	var pe *receiver.PortTrustError
	if errors.As(err, &pe) {
		return &flagError{pe.Reason() + ". Give the receiver the bridge's key (frames are then authenticated) or, knowing the risk, " +
			"use --insecure", err}
	}
	return withFlags(err, flags)
}

// warn prints a receiver's warnings on stderr.
func warn(stderr io.Writer, cmd string, warnings []string) {
	for _, w := range warnings {
		fmt.Fprintf(stderr, "nlmcast %s: warning: %s\n", cmd, safe(w))
	}
}

// printEvent prints one event or notice. Whatever came in a frame is
// escaped (safe, appendSafeJSON): any local user can send one. buf is
// scratch space for --json, returned for reuse.
func printEvent(w *bufio.Writer, ev *receiver.Event, asJSON bool, buf []byte) []byte {
	name := safe(ev.Stream.Name)
	if ev.IsNotice() {
		n := ev.Notice
		if asJSON {
			fmt.Fprintf(w, `{"notice":%q,"stream":%q,"count":%d,"from":%d,"epoch":"%016x","prev_epoch":"%016x","silence_s":%.3f,"text":%q}`+"\n",
				n.Kind.String(), name, n.Count, n.From, n.Epoch, n.PrevEpoch, n.Silence.Seconds(), safe(n.String()))
			return buf
		}
		fmt.Fprintf(w, "[%s] %s !! %s\n", name, stamp(time.Now().UnixNano()), safe(n.String()))
		return buf
	}
	h := &ev.Header
	state := statePrefix(h)
	switch {
	case asJSON:
		// The datagram is one JSON line, printed as received but for what
		// a terminal would act on.
		buf = appendSafeJSON(buf[:0], ev.Payload, true)
		w.Write(buf)
	case h.Kind == frame.KindGoodbye && h.Flags&frame.FlagDropped != 0:
		fmt.Fprintf(w, "[%s] %s #%d -- goodbye: stream dropped, the bridge goes on (epoch %016x)\n", name, stamp(h.Time), h.Seq, h.Epoch)
	case h.Kind != frame.KindEvent:
		fmt.Fprintf(w, "[%s] %s #%d -- %s (epoch %016x)\n", name, stamp(h.Time), h.Seq, h.Kind, h.Epoch)
	case ev.JSON != nil:
		fmt.Fprintf(w, "[%s] %s #%d %s%s\n", name, stamp(h.Time), h.Seq, state, safe(ev.JSON.Summary))
	default:
		fmt.Fprintf(w, "[%s] %s #%d epoch %016x %s%s len %d %s\n", name, stamp(h.Time),
			h.Seq, h.Epoch, state, h.Kind, len(ev.Payload), hex.EncodeToString(ev.Payload))
	}
	return buf
}

// privateStreams turns --private STREAMS=KEYFILE into receiver.Config's
// Private, for the streams listened to (sel).
func privateStreams(specs []string, sel []streams.Stream) (map[string]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	if len(sel) == 0 {
		sel = streams.Default()
	}
	in := map[string]bool{}
	for _, s := range sel {
		in[s.Name] = true
	}
	m := map[string]string{}
	for _, spec := range specs {
		list, file, ok := strings.Cut(spec, "=")
		if !ok || strings.TrimSpace(file) == "" || strings.TrimSpace(list) == "" {
			return nil, fmt.Errorf("--private %s: want STREAMS=KEYFILE, e.g. --private proc=/etc/nlmcast/private.key", spec)
		}
		file = strings.TrimSpace(file)
		ss := sel
		if list = strings.TrimSpace(list); list != "all" {
			var err error
			if ss, err = streams.Resolve(list); err != nil {
				return nil, fmt.Errorf("--private: %w", err)
			}
		}
		for _, s := range ss {
			if !in[s.Name] {
				return nil, fmt.Errorf("--private: stream %s is not listened to: name it as an argument too", s.Name)
			}
			if old, ok := m[s.Name]; ok && old != file {
				return nil, fmt.Errorf("--private: stream %s is given two key files", s.Name)
			}
			m[s.Name] = file
		}
	}
	return m, nil
}

// printDecoded prints an event of the raw encoding decoded here, as
// printEvent prints a JSON frame's: the same line, or with asJSON the
// JSON frame the bridge would have sent.
func printDecoded(w *bufio.Writer, ev *receiver.Event, asJSON bool, buf []byte) []byte {
	d := decodeMessage(ev.Stream, ev.Payload)
	if asJSON {
		h := ev.Header
		h.Flags &^= frame.FlagSealed
		buf = frame.AppendJSON(buf[:0], h, ev.Stream.Name, d.Summary, d.Event)
		buf = appendSafeJSON(buf[:0:0], buf, true)
		w.Write(buf)
		return buf
	}
	h := &ev.Header
	state := statePrefix(h)
	fmt.Fprintf(w, "[%s] %s #%d %s%s\n", safe(ev.Stream.Name), stamp(h.Time), h.Seq, state, safe(d.Summary))
	return buf
}

// decodeMessage decodes one netlink message of stream s, as the bridge
// does for the JSON encoding (generic netlink families by number: the
// bridge learns their names from the kernel).
func decodeMessage(s streams.Stream, msg []byte) decode.Result {
	switch s.Family {
	case streams.FamilyRoute:
		return decode.Route(msg, nil)
	case streams.FamilyUevent:
		return decode.Uevent(msg)
	case streams.FamilyConnector:
		return decode.Proc(msg)
	case streams.FamilyNetfilter:
		return decode.Netfilter(msg)
	case streams.FamilyGeneric:
		return decode.Genl(msg, nil)
	case streams.FamilyAudit:
		return decode.Audit(msg)
	case streams.FamilySELinux:
		return decode.SELinux(msg)
	case streams.FamilyRDMA:
		return decode.RDMA(msg)
	case streams.FamilyXfrm:
		return decode.Xfrm(msg, false) // keys are never printed, even from a sealed stream that kept them
	}
	return decode.Result{Summary: fmt.Sprintf("%d bytes of netlink family %d", len(msg), s.Family), Event: []byte("{}")}
}

// statePrefix is what an event's line says before its summary: "nsid N "
// for an event of another namespace (--all-nsid, --netns: its id, as the
// bridge's namespace numbers it), then "state " for one of a dump.
func statePrefix(h *frame.Header) string {
	state := ""
	if h.Flags&frame.FlagDump != 0 {
		state = "state "
	}
	if h.Flags&frame.FlagNSID != 0 {
		state = "nsid " + strconv.FormatInt(int64(h.NSID), 10) + " " + state
	}
	return state
}

func stamp(ns int64) string {
	return time.Unix(0, ns).Format("15:04:05.000000")
}
