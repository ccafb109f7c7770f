package netlinkbridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/keys"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// Sink is where the bridge sends datagrams; *mcast.Sender is one.
type Sink interface {
	WriteBatch(ms []ipv4.Message) error
}

// Bridge moves kernel events to multicast streams. Create it with New,
// call Run, and Close it when done: Close releases what New opened, Run
// or not.
type Bridge struct {
	src   Source
	fam   driver
	dump  Dumper      // nil: no resyncs
	owned []io.Closer // what New opened, in order; Close closes them
	log   *slog.Logger
	epoch uint64 // the loop's; a panic recovered replaces it (recovered)

	epochNow atomic.Uint64 // epoch, for Epoch
	handling []byte        // the message being handled, for a panic's log; nil between messages
	mark     outboxMark    // the outbox when handling began: a panic drops what came after
	panics   atomic.Uint64 // panics recovered (Stats.Panics)

	family        uint16                             // netlink family of every stream
	streams       []*streamState                     // bridged streams, in catalog order
	byGroup       [256]*streamState                  // indexed by netlink group
	json          bool                               // some stream is sent as JSON
	members       func() (map[netip.Addr]int, error) // users by group; nil: encode JSON always
	membersFailed atomic.Bool
	names         decode.Names
	lookup        decode.IfNames      // names.Lookup, made once
	logNow        func() time.Time    // the rate limits' clock; nil: time.Now (tests set it before Run)
	keys          *keys.Store         // nil: frames are not authenticated
	sealings      map[string]*sealing // by key file: of sealed streams (Config.Private)
	out           outbox
	in            []kernel.Message
	readBatch     int // datagrams per read (Config.Batch)
	// jsonSum and jsonEv hold the JSON view (summary, event) of the
	// message being framed, for a driver that writes it there
	// (jsonAppender).
	jsonSum, jsonEv []byte
	// rawPass: forward's first pass over a batch that is no backlog,
	// raw frames only; the JSON encodings are left in jsonLater, for the
	// second pass (forward, sendEvent).
	rawPass   bool
	jsonLater []laterJSON
	jsonAt    int        // the next of jsonLater to encode (jsonFrom)
	later     int        // the index in its batch of the message being framed
	late      *latePanic // the batch's first panic, for its end (panicLater)

	heartbeat      time.Duration
	newHeartbeat   atomic.Pointer[time.Duration] // SetHeartbeat's, for the loop to take up; 0: off
	announce       atomic.Bool                   // some stream's JSON came on (streamState.announce)
	resyncInterval time.Duration
	nextHeartbeat  time.Time
	lastResync     time.Time
	resyncable     kernel.GroupSet                 // groups of streams that can be resynced; the loop's (SetStreams changes it)
	resyncableNow  atomic.Pointer[kernel.GroupSet] // resyncable, for other goroutines (Request, Answer)
	streamsNow     atomic.Pointer[[]*streamState]  // streams, for other goroutines (the members watch)
	cfg            Config                          // as New was given it, filled in; SetStreams starts from it
	encs           []streams.Encoding              // the encodings sent
	reconf         chan *reconfig                  // SetStreams's changes, for the loop
	reconfMu       sync.Mutex                      // one SetStreams at a time
	sealMu         sync.Mutex                      // guards sealings, which SetStreams adds to
	pending        kernel.GroupSet                 // streams waiting for a resync
	dropped        map[string]droppedStream        // the streams SetStreams dropped, by name: where their numbers stopped
	requested      [4]atomic.Uint64
	overrunSent    bool // OVERRUN announced, resync not yet run
	drained        bool // a read found the socket empty since the last overrun
	armed          time.Time

	turns      atomic.Uint64 // turns of the loop (steps), for the liveness watch
	alive      func()        // Config.Alive; nil in a Set's bridges (the Set watches) or when unset
	aliveEvery time.Duration // Config.AliveEvery, defaulted
	aliveWake  time.Duration // the longest a read may wait while watched; 0: unwatched

	ready     chan struct{} // closed when Run first waits for events
	readyOnce sync.Once
	onReady   func() // called once with ready (set by NewSet)

	requests    *mcast.Receiver // nil: requests off
	limit       *limiter        // answers to requests; used by serveRequests and Answer
	limitMu     sync.Mutex
	answerMu    sync.Mutex
	answerQ     []answerReq // requests to answer, one per destination and encoding
	answerWant  atomic.Bool // answerQ is not empty
	allowRemote bool        // answers may leave the host (Sender.AllowNonLoopback)
	answerRate  int         // datagrams a second to each requester
	cur         *answering  // the answer being sent; the loop's
	curIndex    int         // cur's stream's index in streams
	requestWG   sync.WaitGroup
	requestStop atomic.Bool // Run is returning: serveRequests stops
	lastLog     map[string]time.Time
	logMu       sync.Mutex           // guards sharedLog
	sharedLog   map[string]time.Time // rateLimitedShared's, for other goroutines than the loop
	seenMalform uint64
	warnings    []string // of its own sender; set by New, read-only after
	nsid        int32    // the Config.NetNS namespace's id here, with stampNSID
	stampNSID   bool     // events carry nsid (stamp); set by New, read-only after

	notStreams, jsonSkipped, fragmented, tooLarge, jsonTooLarge, heartbeats, overruns, resyncs,
	dumpFailures, requestsOK, badRequests, refused, answers, genlJoined, genlGone, genlRefused, xfrmRedacted atomic.Uint64
	frames        [frame.KindGoodbye + 1]atomic.Uint64 // control frames sent, by kind (control)
	resyncTime    atomic.Int64                         // nanoseconds spent in resyncs
	xfrmKeys      bool                                 // Config.XfrmKeys: sealed xfrm streams keep their keys
	groupsRefused atomic.Uint64
	refusedMu     sync.Mutex
	refusals      []Refusal // guarded by refusedMu

	life      sync.Mutex
	closed    bool               // Close has begun
	stopRun   context.CancelFunc // ends Run; nil until Run starts
	runDone   chan struct{}      // closed when Run returns; nil until Run starts
	closeOnce sync.Once
}

// ErrClosed is returned by Run on a Bridge or Set already closed.
var ErrClosed = errors.New("netlinkbridge: closed")

type streamState struct {
	stream    streams.Stream
	seq       uint64
	last      time.Time    // when a frame was last sent
	raw, json *net.UDPAddr // nil when that encoding is off
	jsonGroup netip.Addr
	jsonOn    atomic.Bool // someone has joined the JSON group (or JSONAlways)
	announce  atomic.Bool // jsonOn came on, or more joined: a heartbeat on the JSON group is due
	users     int         // memberships of the JSON group at the last check; refreshMembers's
	seal      *sealing    // nil: sent in the clear (Config.Private)

	// Counters the loop adds to and Stats reads (StreamStats).
	events, rawBytes, jsonBytes, jsonSkipped, jsonTooLarge atomic.Uint64
	lastEvent                                              atomic.Int64 // unix ns; 0: no event yet
}

// New opens the kernel source, the dump socket, the multicast sender and
// the request listener for cfg. The caller closes the Bridge with Close.
// When New fails it leaves nothing open.
func New(cfg *Config) (*Bridge, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if err := cfg.validateBridge(); err != nil {
		return nil, err
	}
	cfg, err := cfg.probed()
	if err != nil {
		return nil, err
	}
	var owned []io.Closer
	fail := func(err error) (*Bridge, error) {
		closeAll(owned)
		return nil, err
	}
	snd, sink := cfg.shared, Sink(nil)
	if snd == nil {
		s, err := mcast.NewSender(cfg.Sender)
		if err != nil {
			return nil, err
		}
		snd, sink = &sharedSender{snd: s}, s
		owned = append(owned, s)
	} else {
		sink = snd // the Set's: it closes it
	}
	b, err := newBridge(cfg, nil, nil, sink)
	if err != nil {
		return fail(err)
	}
	if cfg.NetNS != 0 {
		if err := b.stampNetNS(cfg); err != nil {
			return fail(err)
		}
	}
	if cfg.shared == nil { // a Set warns of the sender it shares
		if w := portTrust(snd.snd.Source(), cfg.KeyFile != ""); w != "" {
			b.log.Warn(w)
			b.warnings = []string{w}
		}
	}
	src, err := b.fam.open(b, cfg)
	if err != nil {
		return fail(err)
	}
	owned = append(owned, src)
	if r, ok := src.(interface{ Refused() []uint32 }); ok {
		for _, g := range r.Refused() {
			if int(g) < len(b.byGroup) && b.byGroup[g] != nil {
				b.refuse(b.byGroup[g], g, true)
			}
		}
	}
	var dump Dumper
	if b.family == streams.FamilyRoute {
		kd, err := kernel.OpenDumper(cfg.NetNS)
		if err != nil {
			return fail(err)
		}
		dump = kd
		owned = append(owned, kd)
	}
	if b.family != streams.FamilyRoute {
		cfg2 := *cfg
		cfg2.NoRequests = true // only rtnetlink streams can be resynced
		cfg = &cfg2
	}
	if !cfg.NoRequests {
		rc := &mcast.ReceiverConfig{AnySource: true, ReadBuffer: 64 << 10, Batch: 16}
		if cfg.Sender != nil {
			rc.Interface, rc.AllowNonLoopback = cfg.Sender.Interface, cfg.Sender.AllowNonLoopback
		}
		req, err := mcast.NewReceiver(rc)
		if err == nil {
			err = req.Join(cfg.Map.Control())
			if err != nil {
				req.Close()
			}
		}
		if err != nil {
			return fail(&RequestsError{Group: cfg.Map.Control(), Err: err})
		}
		b.requests = req
		owned = append(owned, req)
	}
	b.src, b.dump, b.owned = src, dump, owned
	if b.json && !cfg.JSONAlways {
		ifname := ""
		if cfg.Sender != nil {
			ifname = cfg.Sender.Interface
		}
		// The file kept open, of the namespace the sender is in: ten looks
		// a second cost no open and close, and no allocation. Without it,
		// every look fails, and JSON is encoded for all (refreshMembers).
		if f, err := mcast.OpenMembers(); err == nil {
			b.owned = append(b.owned, f)
			b.members = func() (map[netip.Addr]int, error) { return f.Read(ifname) }
		} else {
			b.members = func() (map[netip.Addr]int, error) { return nil, err }
		}
		b.refreshMembers()
	}
	if b.json && b.family == streams.FamilyRoute {
		// One socket in the namespace, opened now, answers every cache
		// miss: after a privilege drop no new one could be opened there.
		links, err := kernel.OpenLinks(cfg.NetNS)
		if err != nil {
			b.log.Warn("interface names unavailable until links change", "err", err)
		} else {
			b.owned = append(b.owned, links)
			b.names.Miss = links.Name
			if names, err := links.Names(); err != nil {
				b.log.Warn("interface names unavailable until links change", "err", err)
			} else {
				b.names.Set(names)
			}
		}
	}
	requests := "off"
	if b.requests != nil {
		requests = cfg.Map.Control().String()
	}
	if want := cfg.ReadBuffer; want > 0 && readBuffer(src) < want {
		b.log.Warn("netlink receive buffer smaller than asked (SO_RCVBUFFORCE needs CAP_NET_ADMIN; SO_RCVBUF is capped by net.core.rmem_max)",
			"asked", want, "got", readBuffer(src))
	}
	b.log.Info("bridge subscribed", "groups", b.groups(), "netlink_read_buffer", readBuffer(src),
		"source", snd.snd.Source().String(), "epoch", fmt.Sprintf("%016x", b.epoch), "requests", requests)
	return b, nil
}

// NewWithSource returns a Bridge reading events from src, tables from dump
// (nil: no resyncs) and writing to sink, none of which need be real
// sockets: tests use fakes. Resync requests come only through Request.
// The caller keeps src, dump and sink: Close closes none of them.
func NewWithSource(cfg *Config, src Source, dump Dumper, sink Sink) (*Bridge, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if err := cfg.validateBridge(); err != nil {
		return nil, err
	}
	cfg, err := cfg.probed()
	if err != nil {
		return nil, err
	}
	return newBridge(cfg, src, dump, sink)
}

// ListenRequests makes a Bridge of NewWithSource answer the resync
// requests that req reads, as New's bridge answers those of Map.Control():
// req must be a receiver joined to that group (mcast.ReceiverConfig
// AnySource, as New opens it), and the bridge needs a Dumper. Call it
// before Run; the caller keeps req and closes it after Run returned.
func (b *Bridge) ListenRequests(req *mcast.Receiver) {
	b.requests = req
}

func newBridge(cfg *Config, src Source, dump Dumper, sink Sink) (*Bridge, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	b := &Bridge{
		src: src, dump: dump, log: log, epoch: freshEpoch(frame.NewEpoch(time.Now())),
		heartbeat: cfg.Heartbeat, resyncInterval: cfg.ResyncInterval, lastLog: map[string]time.Time{},
		ready: make(chan struct{}), reconf: make(chan *reconfig, 1),
	}
	b.epochNow.Store(b.epoch)
	b.lookup = b.names.Lookup
	// cfg passed validateBridge: fill in the defaults.
	if b.heartbeat == 0 {
		b.heartbeat = DefaultHeartbeat
	}
	if cfg.NoHeartbeats {
		b.heartbeat = 0 // off
	}
	if b.resyncInterval == 0 {
		b.resyncInterval = DefaultResyncInterval
	}
	b.limit = newLimiter(cmp.Or(cfg.RequestEvery, DefaultRequestEvery), cmp.Or(cfg.RequestBurst, DefaultRequestBurst),
		cmp.Or(cfg.TotalRequestEvery, DefaultTotalRequestEvery), cmp.Or(cfg.TotalRequestBurst, DefaultTotalRequestBurst), time.Now())
	b.allowRemote = cfg.Sender != nil && cfg.Sender.AllowNonLoopback
	b.xfrmKeys = cfg.XfrmKeys
	b.answerRate = cmp.Or(cfg.AnswerRate, DefaultAnswerRate)
	sel := cfg.Streams
	if len(sel) == 0 {
		sel = streams.Default()
	}
	b.family = sel[0].Family
	b.fam = newDriver(b.family)
	if d, ok := b.fam.(*genlDriver); ok {
		d.setup(cfg)
	}
	encs := cfg.Encodings
	if len(encs) == 0 {
		encs = []streams.Encoding{streams.Raw, streams.JSON}
	}
	b.cfg, b.encs = *cfg, encs
	seen := map[string]bool{}
	for _, s := range sel {
		if seen[s.Name] {
			continue
		}
		seen[s.Name] = true
		st := b.newStream(s)
		if s.Group != 0 {
			b.byGroup[s.Group] = st
		}
		if s.Resync && s.Group != 0 {
			b.resyncable.Add(s.Group)
		}
		b.streams = append(b.streams, st)
	}
	b.publishStreams()

	n := cfg.Batch
	if n == 0 {
		n = DefaultBatch
	}
	// A datagram usually holds one message; leave room for a few more.
	b.in = make([]kernel.Message, 2*n)
	if cfg.KeyFile != "" {
		ks, err := keys.Open(cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("netlinkbridge: %w", err)
		}
		b.keys = ks
	}
	b.readBatch = n
	b.out.init(sink, 2*len(b.in), b.sendFailed, b.keys)
	// Every key file of Private is opened now, for the streams sealed
	// under it and for a generic netlink group found private later.
	b.sealings = map[string]*sealing{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Private)) {
		f := cfg.Private[name].KeyFile
		if f == "" || b.sealings[f] != nil {
			continue
		}
		ks, err := keys.Open(f)
		if err != nil {
			return nil, fmt.Errorf("netlinkbridge: private stream %s: %w", name, err)
		}
		sl := newSealing(ks)
		b.sealings[f] = sl
		b.out.sealings = append(b.out.sealings, sl)
	}
	for _, st := range b.streams {
		a, ok := cfg.access(st.stream)
		if !ok {
			// Validate refused it; a generic netlink stream is decided
			// when its group appears.
			continue
		}
		if err := b.setAccess(st, a); err != nil {
			return nil, err
		}
	}
	if !cfg.NoHandoff {
		b.out.bound = cmp.Or(cfg.HandoffAfter, DefaultHandoffAfter)
	}
	b.out.handed, b.out.dropped = b.handedOff, b.handoffDropped
	b.setupAlive(cfg)
	return b, nil
}

// newStream returns the state of a stream s to bridge, with the
// encodings of the bridge's config.
func (b *Bridge) newStream(s streams.Stream) *streamState {
	st := &streamState{stream: s}
	for _, e := range b.encs {
		ua := net.UDPAddrFromAddrPort(b.cfg.Map.Addr(s, e))
		if e == streams.JSON {
			st.json, st.jsonGroup = ua, b.cfg.Map.Addr(s, e).Addr()
			st.jsonOn.Store(true)
			b.json = true
		} else {
			st.raw = ua
		}
	}
	return st
}

// publishStreams makes the loop's streams and resyncable groups what
// other goroutines see (streamsNow, resyncableNow).
func (b *Bridge) publishStreams() {
	ss := slices.Clone(b.streams)
	b.streamsNow.Store(&ss)
	rs := b.resyncable
	b.resyncableNow.Store(&rs)
}

// setAccess makes st sealed under a's key file, or sent in the clear.
// Sealed frames are raw: the JSON group of a sealed stream gets its
// heartbeats and goodbye alone, marked sealed (control), so that a JSON
// reader learns why it gets nothing else.
func (b *Bridge) setAccess(st *streamState, a Access) error {
	if a.KeyFile == "" {
		st.seal = nil
		return nil
	}
	sl := b.sealings[a.KeyFile]
	if sl == nil {
		return fmt.Errorf("netlinkbridge: key file %s of private stream %s not opened", a.KeyFile, st.stream.Name)
	}
	st.seal = sl
	return nil
}

// groups returns the netlink groups to join: the bridged ones, plus those
// the family's driver watches (links for interface names, nlctrl).
func (b *Bridge) groups() []uint32 {
	var gs []uint32
	for g, st := range b.byGroup {
		if st != nil || b.fam.watches(b, uint32(g)) {
			gs = append(gs, uint32(g))
		}
	}
	return gs
}

// Epoch returns the bridge's epoch, carried in every frame: its start time
// and a random part (frame.NewEpoch).
// A bridge that recovered from a panic has a new one (Stats.Panics). It
// may be called from any goroutine.
func (b *Bridge) Epoch() uint64 { return b.epochNow.Load() }

// Stats returns the bridge's counters.
func (b *Bridge) Stats() Stats {
	st := Stats{
		Source: b.src.Stats(), Datagrams: b.out.datagrams.Load(),
		NotStreams: b.notStreams.Load(), JSONSkipped: b.jsonSkipped.Load(), Fragmented: b.fragmented.Load(), TooLarge: b.tooLarge.Load(), JSONTooLarge: b.jsonTooLarge.Load(),
		SendErrors: b.out.sendErrors.Load(), Handoffs: b.out.handoffs.Load(), HandoffDropped: b.out.handoffDropped.Load(), Heartbeats: b.heartbeats.Load(), Overruns: b.overruns.Load(),
		Resyncs: b.resyncs.Load(), DumpFailures: b.dumpFailures.Load(), Requests: b.requestsOK.Load(),
		BadRequests: b.badRequests.Load(), RequestsRefused: b.refused.Load(), Answers: b.answers.Load(),
		GenlJoined: b.genlJoined.Load(), GenlGone: b.genlGone.Load(), GenlRefused: b.genlRefused.Load(), Panics: b.panics.Load(),
		XfrmRedacted: b.xfrmRedacted.Load(), GroupsRefused: b.groupsRefused.Load(),
	}
	b.streamStats(&st)
	return st
}

// Run bridges events until ctx is done or Close is called, then sends a
// goodbye frame on every stream and returns nil. It closes no socket: the
// goroutines it starts, it stops before it returns; the sockets are
// Close's. It returns an error only when reading from the kernel fails for
// good: lost events (overruns), malformed messages and send errors are
// counted, logged and dealt with, and bridging goes on. A panic in the
// loop is recovered too: the bridge drops the message being handled, logs
// it, and goes on with a new epoch (isolate.go). Run may be called once;
// on a closed Bridge it returns ErrClosed.
func (b *Bridge) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.life.Lock()
	switch {
	case b.closed:
		b.life.Unlock()
		return ErrClosed
	case b.runDone != nil:
		b.life.Unlock()
		return errors.New("netlinkbridge: Run called twice")
	}
	b.stopRun, b.runDone = cancel, make(chan struct{})
	b.life.Unlock()
	defer close(b.runDone)

	if b.out.bound > 0 {
		// Idle until a send is slow; sends what it holds before Run returns.
		if s, ok := b.src.(interface{ Backlog() (int, int, error) }); ok {
			b.out.backlog = s.Backlog
		}
		b.setWaitFor()
		b.out.startRelay(b.out.bound, b.relayFailed)
		defer b.out.stopRelay()
	}
	if b.requests != nil {
		b.requestWG.Add(1)
		go b.serveRequests()
		defer func() {
			b.requestStop.Store(true)
			_ = b.requests.SetReadDeadline(time.Unix(1, 0)) // wakes serveRequests
			b.requestWG.Wait()
		}()
	}
	{ // key files may come later too (SetStreams)
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); b.watchKeys(done) }()
		defer func() { close(done); wg.Wait() }()
	}
	if b.members != nil {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); b.watchMembers(done) }()
		defer func() { close(done); wg.Wait() }()
	}
	// Cancellation wakes the loop through the read deadline, so that it
	// can still say goodbye on the open sockets.
	woke := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { b.wake(); close(woke) })
	defer func() {
		if !stop() {
			<-woke // leave no goroutine behind
		}
	}()

	stopAlive := startAlive([]*Bridge{b}, b.aliveEvery, b.alive) // nil alive in a Set: Set.Run watches
	defer stopAlive()

	now := time.Now()
	b.nextHeartbeat = now.Add(b.heartbeat)
	for {
		if done, err := b.step(ctx, &now); done {
			return err
		}
	}
}

// step runs one turn of Run's loop: a read and what it brought, then
// housekeeping. It reports whether Run is done, and with what. A panic in
// it is recovered: the bridge restarts with a new epoch (recovered) and
// the loop goes on. The deferred recover costs nothing while nothing
// panics.
func (b *Bridge) step(ctx context.Context, now *time.Time) (done bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			b.recovered(r)
			done, err = false, nil
		}
	}()
	b.turns.Add(1)
	b.arm(*now)
	if ctx.Err() != nil {
		b.goodbye(time.Now())
		return true, nil
	}
	b.readyOnce.Do(b.markReady)
	n := 0
	if !b.requestedAny() && !b.answerDue() && b.newHeartbeat.Load() == nil && len(b.reconf) == 0 && !b.announce.Load() {
		n, err = b.src.ReadBatch(b.in)
	}
	*now = time.Now()
	switch {
	case err == nil:
		// A read's worth of messages or more: the kernel had a backlog
		// (the read took as many datagrams as one system call does).
		b.out.behind = n >= b.readBatch
		b.forward(b.in[:n], now.UnixNano())
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Whoever set it (arm, or wake from another goroutine), the
		// source's deadline is now in the past: say so, so that arm
		// sets the next one, or clears it when nothing is due.
		b.armed = pastDeadline
		b.drained = true // the socket is empty: it waited for the deadline
	case errors.Is(err, kernel.ErrOverrun):
		b.overrun(*now, err)
	case ctx.Err() != nil:
		b.goodbye(*now)
		return true, nil
	default:
		return true, err
	}
	b.housekeep(*now)
	return false, nil
}

// Close stops a Run in progress and waits for it to return (after its
// goodbye frames), then closes everything New opened: the kernel source,
// the dump socket, the request listener, the links socket, the file of
// multicast memberships and the sender, unless the sender is a Set's (the
// Set closes it). A Bridge made by NewWithSource owns nothing to close.
// Close is safe to call more than once and from any goroutine but Run's;
// later calls return nil.
func (b *Bridge) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.life.Lock()
		b.closed = true
		stop, done := b.stopRun, b.runDone
		b.life.Unlock()
		if stop != nil {
			stop()
			<-done
		}
		err = closeAll(b.owned)
		b.owned = nil
	})
	return err
}

// closeAll closes cs, the last opened first.
func closeAll(cs []io.Closer) error {
	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		errs = append(errs, cs[i].Close())
	}
	return errors.Join(errs...)
}

// Ready returns a channel that is closed once Run waits for events: every
// socket is open and every group joined (New did that), and the first read
// is armed. A supervisor learns from it that events from now on reach the
// multicast groups (the command reports it with sd_notify READY=1).
func (b *Bridge) Ready() <-chan struct{} { return b.ready }

func (b *Bridge) markReady() {
	close(b.ready)
	if b.onReady != nil {
		b.onReady()
	}
}

// pastDeadline is a read deadline long past: a read returns at once.
var pastDeadline = time.Unix(1, 0)

// wake makes a blocked ReadBatch return at once.
func (b *Bridge) wake() { _ = b.src.SetReadDeadline(pastDeadline) }

// arm sets the source's read deadline to the next due housekeeping.
func (b *Bridge) arm(now time.Time) {
	var due time.Time
	if b.heartbeat > 0 {
		due = b.nextHeartbeat
	}
	if !b.pending.Empty() {
		if r := b.lastResync.Add(b.resyncInterval); due.IsZero() || r.Before(due) {
			due = r
		}
	}
	if b.cur != nil && (due.IsZero() || b.cur.due.Before(due)) {
		due = b.cur.due // the answer's next chunk
	}
	due = b.aliveDeadline(now, due)
	if !due.IsZero() && !due.After(now) {
		due = pastDeadline
	}
	if !due.Equal(b.armed) {
		b.armed = due
		_ = b.src.SetReadDeadline(due)
	}
}

// refreshMembers learns which JSON groups are joined. When the memberships
// cannot be read, JSON is encoded for every stream: wasted work, never
// missing events.
func (b *Bridge) refreshMembers() {
	joined, err := b.members()
	if err != nil && !b.membersFailed.Swap(true) {
		b.log.Warn("cannot tell which JSON groups are joined; encoding JSON for all", "err", err)
	}
	if err == nil && b.membersFailed.Swap(false) {
		b.log.Info("JSON groups' memberships readable again")
	}
	woke := false
	for _, st := range *b.streamsNow.Load() {
		users := joined[st.jsonGroup]
		on := st.json != nil && (err != nil || users > 0)
		greet := on && (!st.jsonOn.Load() || users > st.users)
		st.jsonOn.Store(on) // before announce: the loop sends only while on
		st.users = users
		if greet {
			// Tell the new JSON receivers at once that their events are
			// encoded: their first frame (a heartbeat) says so.
			st.announce.Store(true)
			woke = true
		}
	}
	if woke {
		b.announce.Store(true)
		b.wake()
	}
}

// watchMembers refreshes the JSON memberships every MembersInterval until
// done is closed. It runs beside the event loop, which only loads a flag.
func (b *Bridge) watchMembers(done <-chan struct{}) { tick(done, MembersInterval, b.refreshMembers) }

// watchKeys reloads the key files (Config.KeyFile, and those of
// Config.Private) when they change, every keys.ReloadEvery until done is
// closed. The outbox takes up new keys after its next batch.
func (b *Bridge) watchKeys(done <-chan struct{}) {
	failing := map[string]bool{}
	tick(done, keys.ReloadEvery, func() {
		for _, ks := range b.keyStores() {
			changed, err := ks.Check()
			switch {
			case err != nil && !failing[ks.Path()]:
				b.log.Warn("cannot reload a key file; using the keys loaded before", "file", ks.Path(), "err", err)
			case err == nil && failing[ks.Path()]:
				b.log.Info("key file readable again", "file", ks.Path())
			}
			failing[ks.Path()] = err != nil
			if changed {
				v := ks.View()
				b.log.Info("keys changed", "file", ks.Path(), "keys", len(v.Keys), "signing_key", fmt.Sprintf("%08x", v.Signing.ID))
			}
		}
	})
}

// keyStores returns every key file the bridge uses now.
func (b *Bridge) keyStores() []*keys.Store {
	var ks []*keys.Store
	if b.keys != nil {
		ks = append(ks, b.keys)
	}
	b.sealMu.Lock()
	defer b.sealMu.Unlock()
	for _, f := range slices.Sorted(maps.Keys(b.sealings)) {
		ks = append(ks, b.sealings[f].keys)
	}
	return ks
}

// housekeep sends due heartbeats and runs a due resync.
func (b *Bridge) housekeep(now time.Time) {
	select {
	case rc := <-b.reconf:
		rc.done <- b.applyStreams(rc, now)
	default:
	}
	if hb := b.newHeartbeat.Swap(nil); hb != nil {
		b.heartbeat = *hb
		b.setWaitFor()
		b.nextHeartbeat = now.Add(*hb)
	}
	if b.heartbeat > 0 && !now.Before(b.nextHeartbeat) {
		b.sendHeartbeats(now)
		b.nextHeartbeat = now.Add(b.heartbeat)
	}
	if b.announce.Swap(false) {
		b.announceJSON(now)
	}
	for i := range b.requested {
		b.pending[i] |= b.requested[i].Swap(0)
	}
	// After an overrun the socket still holds events older than a dump
	// made now, and until it is empty the kernel drops new ones with no
	// further ENOBUFS: sent after RESYNC-END, an old event whose undoing
	// was dropped would stay in the receivers' tables. So the dump waits
	// until a read finds the socket empty (a due resync arms a past
	// deadline: that read does not wait).
	if !b.pending.Empty() && (!b.overrunSent || b.drained) && !now.Before(b.lastResync.Add(b.resyncInterval)) {
		b.resync(now)
	}
	if b.cur != nil || b.answerDue() {
		b.answer(now)
	}
	if m := b.src.Stats().Malformed; m != b.seenMalform {
		if b.rateLimited("malformed", 10*time.Second) {
			b.log.Warn("malformed netlink datagrams skipped", "new", m-b.seenMalform, "total", m)
			b.seenMalform = m
		}
	}
}

// setWaitFor bounds the reader's waits for a full relay by relayWaitFor,
// or by two heartbeat intervals if that is shorter.
func (b *Bridge) setWaitFor() {
	b.out.waitFor = relayWaitFor
	if b.heartbeat > 0 {
		b.out.waitFor = min(relayWaitFor, 2*b.heartbeat)
	}
}

// SetHeartbeat changes the heartbeat interval of the bridge, running or
// not, as Config.Heartbeat and Config.NoHeartbeats would: every is the new
// interval, not negative, zero meaning DefaultHeartbeat; off turns
// heartbeats off, and every must then be zero. A running loop takes it up
// at once (it is woken): the next heartbeats are due every after that. It
// returns a *ConfigError, changing nothing, for values Validate refuses.
func (b *Bridge) SetHeartbeat(every time.Duration, off bool) error {
	if err := checkHeartbeat(every, off); err != nil {
		return err
	}
	if every == 0 {
		every = DefaultHeartbeat
	}
	if off {
		every = 0
	}
	b.newHeartbeat.Store(&every)
	b.wake()
	return nil
}

// rateLimited reports whether a log line of this key may be written now,
// at most once per every.
func (b *Bridge) rateLimited(key string, every time.Duration) bool {
	now := b.logClock()
	if now.Sub(b.lastLog[key]) < every {
		return false
	}
	b.lastLog[key] = now
	return true
}

// logClock is the clock of the log's rate limits: time.Now, or a test's.
func (b *Bridge) logClock() time.Time {
	if b.logNow != nil {
		return b.logNow()
	}
	return time.Now()
}

func (b *Bridge) sendFailed(err error) {
	if b.rateLimited("send", time.Second) {
		b.log.Warn("multicast send failed; datagrams lost, receivers will see a gap", "err", err,
			"send_errors_total", b.out.sendErrors.Load())
	}
}

// handedOff logs that sending moved to the relay.
func (b *Bridge) handedOff(d time.Duration) {
	if b.rateLimited("handoff", 10*time.Second) {
		b.log.Warn("multicast send slow; sending handed to another thread so that netlink reads go on",
			"send_took", d, "bound", b.out.bound, "handoffs_total", b.out.handoffs.Load())
	}
}

// handoffDropped logs datagrams dropped because the relay was full.
func (b *Bridge) handoffDropped(n int) {
	if b.rateLimited("handoff-dropped", time.Second) {
		b.log.Warn("multicast sends slower than kernel events; datagrams dropped, receivers will see a gap",
			"dropped", n, "dropped_total", b.out.handoffDropped.Load())
	}
}

// relayFailed logs a failed send of the relay (its goroutine rate-limits
// the calls).
func (b *Bridge) relayFailed(err error) {
	b.log.Warn("multicast send failed; datagrams lost, receivers will see a gap", "err", err,
		"send_errors_total", b.out.sendErrors.Load())
}

// forward frames and sends one batch of messages. A message whose
// handling panics is dropped and the bridge restarts with a new epoch
// (recovered; see forwardFrom for when).
//
// When the batch is no backlog (events come one or a few at a time, as on
// most hosts) and the bridge has JSON streams, every raw frame of it is
// sent before any JSON is encoded:
// decoding and encoding a message costs tens of microseconds, which raw
// receivers would otherwise wait for, message after message. A second pass
// then encodes the JSON, in the messages' order, and sends it: one more
// send per batch, only while someone has joined a JSON group and the
// bridge keeps up. A backlog is framed in one pass and one send.
func (b *Bridge) forward(msgs []kernel.Message, now int64) {
	b.rawPass = !b.out.behind && b.json
	for i := 0; i < len(msgs); {
		i = b.forwardFrom(msgs, i, now)
	}
	if b.rawPass {
		b.rawPass = false
		b.out.flush()
		b.jsonAt = 0
		for i := 0; i < len(msgs); {
			i = b.jsonFrom(msgs, i)
		}
		clear(b.jsonLater) // keep no stream past the batch
		b.jsonLater = b.jsonLater[:0]
	}
	b.out.flush()
	if p := b.late; p != nil {
		b.late = nil
		b.restart(p.r, p.msg, p.stack)
	}
}

// laterJSON is a JSON encoding left for forward's second pass: msgs[i]'s,
// with the header its raw frame had.
type laterJSON struct {
	i  int
	st *streamState
	h  frame.Header
}

// latePanic is a panic of forward's two passes, recovered and kept for
// the end of the batch (panicLater).
type latePanic struct {
	r          any
	msg, stack []byte
}

// jsonFrom is forward's second pass from msgs[i]: the JSON left by the
// first pass is encoded, in the messages' order. (The first pass has let
// the family see every message (observe): an event's JSON names the
// interfaces, and generic netlink families, as they are at the end of its
// batch: a family's events just before its removal, in the same batch,
// show its number alone.)
func (b *Bridge) jsonFrom(msgs []kernel.Message, i int) (next int) {
	defer func() {
		if r := recover(); r != nil {
			b.panicLater(r)
			next = i + 1
		}
	}()
	for ; i < len(msgs); i++ {
		m := &msgs[i]
		b.handle(m.Data)
		for b.jsonAt < len(b.jsonLater) && b.jsonLater[b.jsonAt].i <= i {
			l := b.jsonLater[b.jsonAt]
			b.jsonAt++ // first: a panic in it skips it
			if l.i == i {
				b.encodeJSON(l.st, m, l.h)
			}
		}
		b.handling = nil
	}
	return i
}

// forwardFrom frames msgs from index i and returns the index to go on
// from: len(msgs), or the one after a message whose handling panicked.
// Its deferred recover costs nothing while nothing panics.
//
// In forward's two passes a panic drops its message, raw frames and JSON
// (panicLater), and the rest of the batch goes on in its epoch, both
// passes: what the receivers of either encoding get is whole, and the
// restart comes at the end of the batch. Otherwise the bridge restarts at
// once, and the messages after it go on in the new epoch.
func (b *Bridge) forwardFrom(msgs []kernel.Message, i int, now int64) (next int) {
	defer func() {
		if r := recover(); r != nil {
			next = i + 1
			if b.rawPass {
				b.panicLater(r)
				return
			}
			b.recovered(r)
		}
	}()
	for ; i < len(msgs); i++ {
		b.later = i
		b.event(&msgs[i], now, 0)
	}
	return i
}

// panicLater drops what the message being handled added to the outbox
// (it may be partial) and keeps the first panic of the batch, with that
// message and the stack, for forward to restart the bridge with once the
// batch is sent; later ones are counted.
func (b *Bridge) panicLater(r any) {
	b.out.rollback(b.mark)
	if b.late == nil {
		b.late = &latePanic{r: r, msg: b.handling, stack: debug.Stack()}
	} else {
		b.panics.Add(1)
	}
	b.handling = nil
}

// event sends one kernel message on its stream. While it does, the
// message is the one a panic blames (recovered).
func (b *Bridge) event(m *kernel.Message, now int64, flags frame.Flags) {
	b.handle(m.Data)
	b.sendEvent(m, now, flags)
	b.handling = nil
}

func (b *Bridge) sendEvent(m *kernel.Message, now int64, flags frame.Flags) {
	b.fam.observe(b, m)
	var st *streamState
	if m.Group < uint32(len(b.byGroup)) {
		st = b.byGroup[m.Group]
	}
	if st == nil {
		b.notStreams.Add(1)
		return
	}
	if len(m.Data) > frame.MaxRawMessage {
		// Receivers reassemble nothing larger (the kernel socket passes
		// nothing larger either).
		if b.tooLarge.Add(1); b.rateLimited("too-large", 10*time.Second) {
			b.log.Warn("netlink message larger than receivers accept, dropped", "stream", st.stream.Name, "bytes", len(m.Data), "max", frame.MaxRawMessage,
				"too_large_total", b.tooLarge.Load())
		}
		return
	}
	st.seq++
	st.last = time.Unix(0, now)
	h := frame.Header{
		Kind: frame.KindEvent, Flags: flags, Family: st.stream.Family, Group: m.Group,
		Epoch: b.epoch, Seq: st.seq, Time: now, PayloadLen: uint32(len(m.Data)),
	}
	if m.HasNSID {
		h.Flags |= frame.FlagNSID
		h.NSID = m.NSID
	}
	b.stamp(&h)
	if st.raw != nil && len(m.Data) > b.out.rawLimit(st.seal) {
		b.fragmented.Add(1)
	}
	if st.raw != nil {
		b.out.raw(st.raw, h, m.Data, st.seal)
		st.rawBytes.Add(uint64(len(m.Data)))
	}
	if st.json != nil && st.seal == nil {
		switch {
		case !st.jsonOn.Load():
			b.jsonSkipped.Add(1)
			st.jsonSkipped.Add(1)
		case b.rawPass:
			b.jsonLater = append(b.jsonLater, laterJSON{i: b.later, st: st, h: h})
		default:
			b.encodeJSON(st, m, h)
		}
	}
	st.events.Add(1)
	st.lastEvent.Store(now)
}

// maxKeptEvent bounds the JSON view buffers the bridge keeps between
// events: a datagram's worth.
const maxKeptEvent = frame.MaxDatagram

// encodeJSON decodes m and sends its JSON frame, with its raw frame's
// header h, on st's JSON group.
func (b *Bridge) encodeJSON(st *streamState, m *kernel.Message, h frame.Header) {
	var n int
	if a, ok := b.fam.(jsonAppender); ok {
		b.jsonSum, b.jsonEv = a.appendJSON(b, m, b.jsonSum[:0], b.jsonEv[:0])
		n = b.out.jsonBytes(st.json, h, st.stream.Name, b.jsonSum, b.jsonEv)
		if cap(b.jsonEv) > maxKeptEvent {
			b.jsonSum, b.jsonEv = nil, nil // a rare large event's buffer is not kept
		}
	} else {
		d := b.fam.decode(b, m)
		n = b.out.json(st.json, h, st.stream.Name, d.Summary, d.Event)
	}
	st.jsonBytes.Add(uint64(n))
	if n > frame.MaxJSONMessage {
		b.jsonTooLarge.Add(1)
		st.jsonTooLarge.Add(1)
		if b.rateLimited("json-too-large", 10*time.Second) {
			b.log.Warn("JSON frame larger than receivers accept, not sent (its raw frame was)", "stream", st.stream.Name, "seq", h.Seq, "bytes", n,
				"max", frame.MaxJSONMessage, "json_too_large_total", b.jsonTooLarge.Load())
		}
	}
}

// stampNetNS finds the id that the bridge's namespace gives the --netns
// one, now while it may still assign one, for stamp. Peers' ids from
// AllNSID would be that namespace's numbering, not this one's, and one of
// them could equal its id here: the two are not bridged together.
func (b *Bridge) stampNetNS(cfg *Config) error {
	id, same, err := kernel.NetNSID(0, cfg.NetNS)
	if err != nil {
		return fmt.Errorf("netlinkbridge: the id of the namespace of Config.NetNS here: %w", err)
	}
	if same {
		return nil // the bridge's own namespace: no other's events
	}
	if cfg.AllNSID {
		return &ConfigError{Field: "AllNSID", Value: true, Reason: "cannot be used with NetNS of another namespace: " +
			"the peers' ids would be that namespace's numbering, not this one's, and could equal its own id here; bridge each namespace apart"}
	}
	b.nsid, b.stampNSID = id, true
	return nil
}

// stamp marks an event header of a bridge reading another namespace
// (Config.NetNS) with that namespace's id here, as peers' events of
// AllNSID are: every event of it, live, dumped or answered.
func (b *Bridge) stamp(h *frame.Header) {
	if b.stampNSID && h.Flags&frame.FlagNSID == 0 {
		h.Flags |= frame.FlagNSID
		h.NSID = b.nsid
	}
}

// control sends a frame without payload of kind k on st. Kinds that take a
// sequence number get the next one; the others repeat the last.
func (b *Bridge) control(st *streamState, k frame.Kind, now time.Time) {
	b.controlFlags(st, k, 0, now)
}

// controlFlags sends the control frame of kind k on st with flags (a
// dropped stream's goodbye: frame.FlagDropped).
func (b *Bridge) controlFlags(st *streamState, k frame.Kind, flags frame.Flags, now time.Time) {
	b.controlSaying(st, k, flags, "", now)
}

// controlSaying is controlFlags with the JSON frame's summary, or ""
// for the kind's own (jsonSummary).
func (b *Bridge) controlSaying(st *streamState, k frame.Kind, flags frame.Flags, summary string, now time.Time) {
	if k.Sequenced() {
		st.seq++
	}
	st.last = now
	h := frame.Header{Kind: k, Flags: flags, Family: st.stream.Family, Group: st.stream.Group, Epoch: b.epoch, Seq: st.seq, Time: now.UnixNano()}
	if st.raw != nil {
		b.out.raw(st.raw, h, nil, st.seal)
		b.frames[k].Add(1)
	}
	if k != frame.KindHeartbeat || st.jsonOn.Load() {
		b.jsonControl(st, h, summary)
	}
}

// jsonControl sends the control frame h on st's JSON group, if st has
// one. A heartbeat goes there only while JSON is encoded for st (jsonOn),
// so that a JSON receiver's first frame tells it that its events are
// (nlmcast listen is ready only then).
func (b *Bridge) jsonControl(st *streamState, h frame.Header, summary string) {
	switch k := h.Kind; {
	case st.json == nil:
	case st.seal == nil:
		if summary == "" {
			summary = b.jsonSummary(st, h)
		}
		b.out.json(st.json, h, st.stream.Name, summary, nil)
		b.frames[k].Add(1)
	case k == frame.KindHeartbeat || k == frame.KindGoodbye:
		h.Flags |= frame.FlagSealed
		b.out.json(st.json, h, st.stream.Name, sealedSummary, nil)
		b.frames[k].Add(1)
	}
}

// announceJSON sends a heartbeat on the JSON group of every stream whose
// JSON came on since the last call, once encoded events follow it.
func (b *Bridge) announceJSON(now time.Time) {
	for _, st := range b.streams {
		if st.announce.Swap(false) && st.jsonOn.Load() {
			b.jsonControl(st, frame.Header{Kind: frame.KindHeartbeat, Family: st.stream.Family, Group: st.stream.Group, Epoch: b.epoch, Seq: st.seq, Time: now.UnixNano()}, "")
			b.heartbeats.Add(1)
		}
	}
	b.out.flush()
}

// sealedSummary is the summary of the heartbeats and goodbye on the JSON
// group of a sealed stream.
const sealedSummary = "a private stream: its events are sealed raw frames, for the holders of its key file"

// droppedSummary is the summary of the goodbye of a stream a running
// bridge stopped bridging (frame.FlagDropped).
const droppedSummary = "stream dropped; the bridge goes on"

// jsonSummary is the summary of the JSON control frame h on st: its kind's,
// but for a dropped stream's goodbye, and an overrun on a stream that gets
// no resync (its kind has no dump, or the bridge no dump socket).
func (b *Bridge) jsonSummary(st *streamState, h frame.Header) string {
	switch {
	case h.Flags&frame.FlagDropped != 0:
		return droppedSummary
	case h.Kind == frame.KindOverrun && !b.resynced(st):
		return overrunNoResyncSummary
	}
	return controlSummary[h.Kind]
}

// resynced reports whether st is resynced after an overrun.
func (b *Bridge) resynced(st *streamState) bool {
	return b.dump != nil && st.stream.Resync && st.stream.Group != 0
}

// The summaries of an overrun on a stream with no resync, and of the
// overrun that starts a stream added back by a reload (SetStreams).
const (
	overrunNoResyncSummary = "kernel events lost (netlink overrun); this stream has no resync"
	readdedSummary         = "stream bridged again after a reload: its events meanwhile were not bridged"
)

var controlSummary = map[frame.Kind]string{
	frame.KindHeartbeat:   "bridge alive",
	frame.KindOverrun:     "kernel events lost (netlink overrun); a resync follows",
	frame.KindResyncBegin: "resync: current state follows",
	frame.KindResyncEnd:   "resync complete",
	frame.KindGoodbye:     "bridge shutting down",
}

func (b *Bridge) sendHeartbeats(now time.Time) {
	for _, st := range b.streams {
		if now.Sub(st.last) >= b.heartbeat {
			b.control(st, frame.KindHeartbeat, now)
			b.heartbeats.Add(1)
		}
	}
	b.out.flush()
}

func (b *Bridge) goodbye(now time.Time) {
	// Whatever the relay holds goes first, and the goodbye is sent inline:
	// the relay may be full, and a goodbye is never dropped for it.
	b.out.stopRelay()
	for _, st := range b.streams {
		b.control(st, frame.KindGoodbye, now)
	}
	b.out.flush()
	b.log.Info("bridge stopped; goodbye sent", "epoch", fmt.Sprintf("%016x", b.epoch))
}
