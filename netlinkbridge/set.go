package netlinkbridge

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sync/errgroup"

	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// A Set bridges streams of several netlink families: one Bridge per
// family, each with its own kernel socket, sender and epoch, run together.
// Resync requests are served by the rtnetlink bridge, the only family whose
// state can be dumped. The Set owns its bridges and the sender they share:
// Close closes them.
type Set struct {
	bridges    []*Bridge
	snd        *mcast.Sender
	warnings   []string // set by NewSet, read-only after
	ready      chan struct{}
	waiting    atomic.Int32   // bridges not ready yet
	receivers  *receiverWatch // nil: sock_diag unavailable
	needs      []Need         // Config.Needs's Run
	alive      func()         // Config.Alive: the Set watches its bridges together
	aliveEvery time.Duration
	closeOnce  sync.Once
}

// NewSet opens one Bridge per netlink family of cfg.Streams (nil or no
// streams: streams.Default). Every other field of cfg applies to each. The
// caller closes the Set with Close. When NewSet fails it leaves nothing
// open.
func NewSet(cfg *Config) (*Set, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sel := cfg.Streams
	if len(sel) == 0 {
		sel = streams.Default()
	}
	var order []uint16
	byFamily := map[uint16][]streams.Stream{}
	for _, s := range sel {
		if byFamily[s.Family] == nil {
			order = append(order, s.Family)
		}
		byFamily[s.Family] = append(byFamily[s.Family], s)
	}
	snd, err := mcast.NewSender(cfg.Sender)
	if err != nil {
		return nil, err
	}
	set := &Set{snd: snd, ready: make(chan struct{}), needs: cfg.Needs(-1).Run}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if w := portTrust(snd.Source(), cfg.KeyFile != ""); w != "" {
		log.Warn(w)
		set.warnings = []string{w}
	}
	shared := &sharedSender{snd: snd}
	for _, f := range order {
		c := *cfg
		c.shared = shared
		c.Streams = byFamily[f]
		c.Private = privateOf(cfg.Private, c.Streams)
		c.NoRequests = cfg.NoRequests || f != streams.FamilyRoute
		c.Logger = log.With("family", streams.FamilyName(f))
		b, err := New(&c)
		if err != nil {
			set.Close()
			return nil, err
		}
		b.onReady = set.bridgeReady
		set.alive, set.aliveEvery = b.alive, b.aliveEvery
		b.alive = nil // its loop is watched with the others' (Run)
		set.bridges = append(set.bridges, b)
	}
	set.waiting.Store(int32(len(set.bridges)))
	if set.receivers, err = openReceivers(cfg, set.bridges, snd.Source().Port(), log); err != nil {
		log.Warn("cannot watch the receivers' sockets (sock_diag); idle receivers are neither reported nor limited", "err", err)
	}
	return set, nil
}

// Close stops a Run in progress (each bridge says goodbye) and waits for
// it, then closes every bridge and, last, the sender they share. It is safe
// to call more than once: later calls return nil.
func (s *Set) Close() error {
	var err error
	s.closeOnce.Do(func() {
		var errs []error
		for _, b := range s.bridges {
			errs = append(errs, b.Close())
		}
		errs = append(errs, s.snd.Close()) // after every bridge said goodbye
		if s.receivers != nil {
			errs = append(errs, s.receivers.close())
		}
		err = errors.Join(errs...)
	})
	return err
}

// Ready returns a channel that is closed once every bridge of the set is
// ready (see Bridge.Ready).
func (s *Set) Ready() <-chan struct{} { return s.ready }

func (s *Set) bridgeReady() {
	if s.waiting.Add(-1) == 0 {
		close(s.ready)
	}
}

// Bridges returns the set's bridges, one per family, in the order of the
// first stream of each family in the configuration.
func (s *Set) Bridges() []*Bridge { return s.bridges }

// Run runs every bridge until ctx is done, Close is called, or one fails;
// a failure (reading from the kernel, for good) stops the others (each
// says goodbye on its streams). A panic in a bridge is not a failure: that
// bridge recovers it and restarts with a new epoch, the others go on
// (Bridge.Run). Beside
// them it watches the sockets bound to the streams' ports every
// ReceiversInterval (Config.MaxSocketsPerUID), and, with Config.Alive
// set, calls Alive every AliveEvery while every bridge's loop comes
// round (one hung loop stops the calls). Like
// Bridge.Run it closes nothing, may be called once, and returns ErrClosed
// on a closed Set.
func (s *Set) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, b := range s.bridges {
		g.Go(func() error { return b.Run(ctx) })
	}
	// Config.Alive: only while every bridge's loop comes round.
	defer startAlive(s.bridges, s.aliveEvery, s.alive)()
	if s.receivers != nil {
		// Beside the bridges, off their path; it ends with them.
		done, exited := make(chan struct{}), make(chan struct{})
		go func() { defer close(exited); s.receivers.run(done) }()
		defer func() { close(done); <-exited }()
	}
	return g.Wait()
}

// SetHeartbeat changes the heartbeat interval of every bridge of the set
// (Bridge.SetHeartbeat); an error changes none.
func (s *Set) SetHeartbeat(every time.Duration, off bool) error {
	if err := checkHeartbeat(every, off); err != nil {
		return err
	}
	for _, b := range s.bridges {
		b.SetHeartbeat(every, off)
	}
	return nil
}

// Family returns the netlink family of the bridge's streams.
func (b *Bridge) Family() uint16 { return b.family }

// sharedSender lets the bridges of a Set send from one socket, and so one
// source port: each WriteBatch holds the lock (the sender keeps per-call
// buffers). A lone bridge never contends for it.
type sharedSender struct {
	mu  sync.Mutex
	snd *mcast.Sender
}

func (s *sharedSender) WriteBatch(ms []ipv4.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snd.WriteBatch(ms)
}

// privateOf returns the entries of private for ss, and its "*" entry.
func privateOf(private map[string]Access, ss []streams.Stream) map[string]Access {
	if private == nil {
		return nil
	}
	m := map[string]Access{}
	if a, ok := private["*"]; ok {
		m["*"] = a
	}
	for _, s := range ss {
		if a, ok := private[s.Name]; ok {
			m[s.Name] = a
		}
	}
	return m
}
