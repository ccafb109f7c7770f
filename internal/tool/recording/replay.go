package recording

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/streams"
)

// ReplayConfig configures Replay. The zero ReplayConfig is not usable:
// Files are needed.
type ReplayConfig struct {
	// Files are the recordings to replay, in order: pcapng files of
	// nlmcast record, or LINKTYPE_NETLINK pcap or pcapng files of tcpdump
	// -i nlmon0 or Wireshark.
	Files []string
	// Bridge configures the bridges that send the events, one per netlink
	// family of the recording, as nlmcast bridge does: Map, Encodings,
	// Heartbeat, KeyFile, Private, Sender, NoRequests... Its Streams are
	// set to those of the recording. The rtnetlink bridge answers resyncs
	// and requests (unless NoRequests) from the tables as the replayed
	// events left them. A private stream (process events, conntrack) with
	// no entry in Private is sent in the clear: the recording is the
	// caller's. Nil: every default.
	Bridge *netlinkbridge.Config
	// Speed scales the recorded pacing: 2 replays twice as fast; not
	// negative. Zero: 1, the recorded pacing.
	Speed float64
	// NoPacing sends every event as fast as the bridge takes it; Speed and
	// Rate must then be zero. Zero: paced.
	NoPacing bool
	// Rate sends this many events a second, evenly, whatever their
	// recorded times; not negative, and not with Speed. Zero: the
	// recorded pacing.
	Rate float64
	// Loop replays the files again and again until the context ends; the
	// bridges keep their epochs, and numbering goes on. Zero: once.
	Loop bool
	// Linger is how long the bridges keep running after the last event
	// before their goodbye, not negative: a receiver without a key
	// delivers frames only while the kernel shows their sender's socket
	// held by the bridge's uid (PROTOCOL.md, Trusting a frame), so the
	// replay's sockets stay open until receivers have read the last
	// events. An injected goodbye (InjectGoodbye) waits as long before
	// it stops the bridge and closes the socket that sent what came
	// before it. Zero: DefaultLinger.
	Linger time.Duration
	// Inject lists synthetic events to make during the replay (see
	// Injection). Zero: none.
	Inject []Injection
	// Ready is called once every bridge is ready, before the first event.
	// Nil: none.
	Ready func()
	// Logger receives the bridges' messages and what was skipped. Nil:
	// slog.Default().
	Logger *slog.Logger
}

// DefaultLinger is ReplayConfig.Linger's default.
const DefaultLinger = 500 * time.Millisecond

// ReplayStats counts what Replay did.
type ReplayStats struct {
	Events   uint64 // kernel messages handed to the bridges
	Overruns uint64 // overruns replayed
	Rounds   int    // times the files were replayed
	Skipped  Skipped
	Epochs   map[uint16]uint64 // each family's bridge's epoch (the last, with restarts)
}

// Validate reports the first rule c breaks, as a *ConfigError or an error
// of its bridge config.
func (c *ReplayConfig) Validate() error {
	switch {
	case len(c.Files) == 0:
		return &ConfigError{"Files", "name at least one recording"}
	case c.Speed < 0:
		return &ConfigError{"Speed", "must not be negative"}
	case c.Linger < 0:
		return &ConfigError{"Linger", "must not be negative"}
	case c.Rate < 0:
		return &ConfigError{"Rate", "must not be negative"}
	case c.Rate > 0 && c.Speed > 0:
		return &ConfigError{"Rate", "replaces the recorded pacing: give Speed or Rate, not both"}
	case c.NoPacing && (c.Speed > 0 || c.Rate > 0):
		return &ConfigError{"NoPacing", "sends as fast as possible: Speed and Rate must be zero"}
	}
	for i, in := range c.Inject {
		if err := in.validate(); err != nil {
			return &ConfigError{fmt.Sprintf("Inject[%d]", i), err.Error()}
		}
	}
	return nil
}

// Replay sends the recorded events to the multicast groups through real
// bridges (package netlinkbridge), one per netlink family, each reading
// the recording as its kernel source: the frames are exactly a live
// bridge's, with a fresh epoch, heartbeats, fragments, and a goodbye at
// the end. It returns when the recording is done (or, with Loop, when ctx
// ends). A file cut short is replayed up to its last whole block, and
// Replay then returns a *TruncatedError.
func Replay(ctx context.Context, cfg *ReplayConfig) (ReplayStats, error) {
	stats := ReplayStats{Epochs: map[uint16]uint64{}}
	if err := cfg.Validate(); err != nil {
		return stats, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	// First pass: which streams of which families, and the file's faults
	// before anything is sent.
	byFamily := map[uint16][]streams.Stream{}
	var skipped Skipped
	scanErr := Read(cfg.Files, &skipped, func(it *Item) error {
		ss := byFamily[it.Stream.Family]
		if !slices.ContainsFunc(ss, func(s streams.Stream) bool { return s.Name == it.Stream.Name }) {
			byFamily[it.Stream.Family] = append(ss, it.Stream)
		}
		return nil
	})
	var trunc *TruncatedError
	if scanErr != nil && !errors.As(scanErr, &trunc) {
		return stats, scanErr
	}
	if trunc != nil {
		log.Warn(trunc.Error())
	}
	for _, in := range cfg.Inject {
		s, err := streams.Resolve(in.Stream)
		if err != nil {
			return stats, &ConfigError{"Inject", err.Error()}
		}
		for _, s := range s {
			ss := byFamily[s.Family]
			if !slices.ContainsFunc(ss, func(x streams.Stream) bool { return x.Name == s.Name }) {
				byFamily[s.Family] = append(ss, s)
			}
		}
	}
	if len(byFamily) == 0 {
		return stats, fmt.Errorf("recording: %v holds no event of a stream nlmcast knows (skipped: %+v)", cfg.Files, skipped)
	}

	base := netlinkbridge.Config{}
	if cfg.Bridge != nil {
		base = *cfg.Bridge
	}
	snd, err := mcast.NewSender(base.Sender)
	if err != nil {
		return stats, err
	}
	sink := &lockedSink{s: snd}
	defer sink.close()
	inj := newInjector(cfg.Inject, sink)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fams := slices.Sorted(func(yield func(uint16) bool) {
		for f := range byFamily {
			if !yield(f) {
				return
			}
		}
	})
	run := map[uint16]*running{}
	defer func() {
		cancel()
		for _, r := range run {
			r.stop()
		}
	}()
	for _, f := range fams {
		bc := base
		bc.Streams = byFamily[f]
		bc.NoRequests = true
		bc.Logger = log
		bc.Private = map[string]netlinkbridge.Access{}
		for k, v := range base.Private {
			if k == "*" || slices.ContainsFunc(bc.Streams, func(s streams.Stream) bool { return s.Name == k }) {
				bc.Private[k] = v
			}
		}
		if _, ok := bc.Private["*"]; !ok {
			bc.Private["*"] = netlinkbridge.Access{Cleartext: true}
		}
		if f == streams.FamilyGeneric {
			// Replayed groups are not probed: the recording is the caller's.
			bc.GenlProbe = func(int, []streams.Stream) (map[string]kernel.Access, error) { return nil, nil }
		}
		r := &running{cfg: bc, requests: !base.NoRequests, src: newChanSource(), sink: inj.sinkFor()}
		if f == streams.FamilyRoute {
			// Resyncs and receivers' requests are answered from the
			// tables as the replayed events left them.
			r.src.state = newStateDumper()
		}
		if err := r.start(ctx); err != nil {
			return stats, err
		}
		inj.sources[f] = r.src
		run[f] = r
	}
	inj.restart = func(f uint16) error {
		r := run[f]
		// What the bridge sent is read from the socket that sent it,
		// as at the end: a receiver that reads it only once that
		// socket is closed cannot tell whose it was, and drops it.
		if err := cfg.linger(ctx); err != nil {
			return err
		}
		r.stop()
		// A restarted bridge sends from a new socket: receivers take
		// nothing more from the socket that said goodbye.
		if err := sink.renew(base.Sender); err != nil {
			return err
		}
		if err := r.start(ctx); err != nil {
			return err
		}
		select {
		case <-r.b.Ready():
			return nil
		case <-r.done:
			return fmt.Errorf("recording: a bridge stopped before it was ready: %v", r.err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, f := range fams {
		select {
		case <-run[f].b.Ready():
		case <-run[f].done:
			return stats, fmt.Errorf("recording: a bridge stopped before it was ready: %v", run[f].err)
		case <-ctx.Done():
			return stats, nil
		}
	}
	if cfg.Ready != nil {
		cfg.Ready()
	}

	p := newPacer(cfg)
	send := func(it *Item) error {
		if err := p.wait(ctx, it.Time); err != nil {
			return err
		}
		r := run[it.Stream.Family]
		if err := inj.before(ctx, stats.Events); err != nil {
			return err
		}
		if it.Overrun {
			stats.Overruns++
		} else {
			stats.Events++
		}
		inj.seen(it)
		return r.src.push(ctx, it)
	}
	var replayErr error
	for {
		stats.Skipped = Skipped{}
		err := Read(cfg.Files, &stats.Skipped, send)
		stats.Rounds++
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if !errors.As(err, &trunc) {
				return stats, err
			}
			replayErr = err
		}
		if !cfg.Loop || ctx.Err() != nil {
			break
		}
		p.restart()
	}
	if err := inj.after(ctx); err != nil && ctx.Err() == nil {
		return stats, err
	}
	// Let each bridge take its last batch, then say goodbye.
	for _, f := range fams {
		run[f].src.drain(ctx)
	}
	if ctx.Err() == nil {
		_ = cfg.linger(ctx)
	}
	for f, r := range run {
		stats.Epochs[f] = r.b.Epoch()
	}
	for _, f := range fams {
		if err := run[f].stop(); err != nil && replayErr == nil {
			replayErr = err
		}
	}
	if s := stats.Skipped; s != (Skipped{}) {
		log.Info("replay skipped", "not_netlink", s.NotNetlink, "no_stream", s.NoStream, "cut", s.Cut, "notes", s.Notes, "dump_entries", s.DumpEntries)
	}
	return stats, replayErr
}

// linger waits Linger before a bridge says goodbye and its socket closes,
// so that receivers read its last frames while the kernel still shows the
// socket held by the bridge's uid. It returns ctx's error if ctx ends
// first.
func (c *ReplayConfig) linger(ctx context.Context) error {
	t := time.NewTimer(cmp.Or(c.Linger, DefaultLinger))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// running is one family's bridge of a replay.
type running struct {
	cfg      netlinkbridge.Config
	requests bool // answer receivers' requests (rtnetlink)
	src      *chanSource
	sink     netlinkbridge.Sink

	b      *netlinkbridge.Bridge
	req    *mcast.Receiver // nil: requests off
	cancel func()
	done   chan struct{} // closed when Run returned, with err set
	err    error         // Run's, once done is closed
}

// start makes a new bridge (a new epoch) and runs it.
func (r *running) start(ctx context.Context) error {
	var dump netlinkbridge.Dumper
	if r.src.state != nil {
		dump = r.src.state
	}
	b, err := netlinkbridge.NewWithSource(&r.cfg, r.src, dump, r.sink)
	if err != nil {
		return err
	}
	if dump != nil && r.requests {
		req, err := requestListener(&r.cfg)
		if err != nil {
			b.Close()
			return err
		}
		b.ListenRequests(req)
		r.req = req
	}
	rctx, cancel := context.WithCancel(ctx)
	r.b, r.cancel, r.done, r.err = b, cancel, make(chan struct{}), nil
	go func() {
		r.err = b.Run(rctx)
		if r.err != nil {
			r.src.Close() // a bridge that failed takes nothing more: push says so
		}
		close(r.done)
	}()
	return nil
}

// stop ends the bridge's Run (with its goodbye) and closes it; it returns
// Run's error. A second call does nothing.
func (r *running) stop() error {
	if r.cancel == nil {
		return r.err
	}
	r.cancel()
	<-r.done
	r.b.Close()
	if r.req != nil {
		r.req.Close()
		r.req = nil
	}
	r.cancel = nil
	return r.err
}

// requestListener joins the control group, as netlinkbridge.New does.
func requestListener(cfg *netlinkbridge.Config) (*mcast.Receiver, error) {
	rc := &mcast.ReceiverConfig{AnySource: true, ReadBuffer: 64 << 10, Batch: 16}
	if cfg.Sender != nil {
		rc.Interface, rc.AllowNonLoopback = cfg.Sender.Interface, cfg.Sender.AllowNonLoopback
	}
	req, err := mcast.NewReceiver(rc)
	if err != nil {
		return nil, &netlinkbridge.RequestsError{Group: cfg.Map.Control(), Err: err}
	}
	if err := req.Join(cfg.Map.Control()); err != nil {
		req.Close()
		return nil, &netlinkbridge.RequestsError{Group: cfg.Map.Control(), Err: err}
	}
	return req, nil
}

// lockedSink lets the bridges of several families share one sender.
type lockedSink struct {
	mu sync.Mutex
	s  *mcast.Sender
}

// renew replaces the sender with a new socket.
func (l *lockedSink) renew(cfg *mcast.SenderConfig) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s.Close()
	s, err := mcast.NewSender(cfg)
	if err != nil {
		return err
	}
	l.s = s
	return nil
}

func (l *lockedSink) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s.Close()
}

func (l *lockedSink) WriteBatch(ms []ipv4.Message) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s.WriteBatch(ms)
}

// pacer waits until each item is due.
type pacer struct {
	cfg     *ReplayConfig
	start   time.Time
	first   int64
	started bool
	n       int
}

func newPacer(cfg *ReplayConfig) *pacer { return &pacer{cfg: cfg} }

func (p *pacer) restart() { p.started = false; p.n = 0 }

func (p *pacer) wait(ctx context.Context, t int64) error {
	if p.cfg.NoPacing {
		return ctx.Err()
	}
	if !p.started {
		p.start, p.first, p.started = time.Now(), t, true
	}
	var due time.Time
	if p.cfg.Rate > 0 {
		due = p.start.Add(time.Duration(float64(p.n) / p.cfg.Rate * float64(time.Second)))
		p.n++
	} else {
		speed := p.cfg.Speed
		if speed == 0 {
			speed = 1
		}
		due = p.start.Add(time.Duration(float64(max(0, t-p.first)) / speed))
	}
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// chanSource is a netlinkbridge.Source fed by Replay: each push is one
// batch of one message (or an overrun).
type chanSource struct {
	ch     chan *Item
	taken  chan struct{} // a ReadBatch returned what it got
	mu     sync.Mutex
	dl     time.Time
	wake   chan struct{} // closed and replaced when the deadline changes
	closed chan struct{}
	once   sync.Once
	msgs   atomic.Uint64
	over   atomic.Uint64
	buf    []byte
	state  *stateDumper // rtnetlink: the tables, updated as messages are taken; nil: none
}

func newChanSource() *chanSource {
	return &chanSource{ch: make(chan *Item), taken: make(chan struct{}, 1), wake: make(chan struct{}), closed: make(chan struct{})}
}

// push hands it to the bridge's next ReadBatch.
func (s *chanSource) push(ctx context.Context, it *Item) error {
	select {
	case s.ch <- it:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closed:
		return errBridgeFailed
	}
	// ReadBatch copied it: wait, so that its data may change.
	select {
	case <-s.taken:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closed:
		return errBridgeFailed
	}
}

var errBridgeFailed = errors.New("recording: a bridge of the replay failed (see its log above)")

// drain waits until the bridge has forwarded what it was given: it is
// back in ReadBatch, waiting for more.
func (s *chanSource) drain(ctx context.Context) {
	_ = s.push(ctx, &Item{}) // an empty batch: the bridge forwarded the one before
}

func (s *chanSource) ReadBatch(ms []kernel.Message) (int, error) {
	for {
		s.mu.Lock()
		dl, wake := s.dl, s.wake
		s.mu.Unlock()
		var timeout <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case it := <-s.ch:
			defer func() { s.taken <- struct{}{} }()
			switch {
			case it.restart:
				panic("nlmcast replay: injected restart")
			case it.Overrun:
				s.over.Add(1)
				return 0, fmt.Errorf("replayed: %w", kernel.ErrOverrun)
			case it.Data == nil || len(ms) == 0:
				return 0, nil
			}
			if s.state != nil {
				s.state.apply(it)
			}
			s.buf = append(s.buf[:0], it.Data...)
			ms[0] = kernel.Message{Group: it.Stream.Group, Data: s.buf, NSID: it.NSID, HasNSID: it.Flags != 0}
			s.msgs.Add(1)
			return 1, nil
		case <-wake:
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		case <-s.closed:
			return 0, net.ErrClosed
		}
	}
}

func (s *chanSource) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.dl = t
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
	return nil
}

func (s *chanSource) Stats() kernel.Stats {
	return kernel.Stats{Messages: s.msgs.Load(), Overruns: s.over.Load()}
}

func (s *chanSource) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}
