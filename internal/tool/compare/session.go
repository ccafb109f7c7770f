package compare

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// Config configures a Session. A nil *Config means every default.
type Config struct {
	// Streams to compare. Zero: every stream.
	Streams []streams.Stream
	// Map is the bridge's address map. Zero: the default map.
	Map streams.Map
	// Mcast configures the multicast sockets. Nil: lo, the bridge's
	// default source 127.0.0.1:1021.
	Mcast *mcast.ReceiverConfig
	// Insecure is receiver.Config.Insecure: start even where any user may
	// send from the accepted source port. Zero: Open refuses there.
	Insecure bool
	// Wait is how long an event seen on one path waits for the other
	// before it counts as missing there. Zero: DefaultWait.
	Wait time.Duration
	// ReadBuffer is the netlink socket's receive buffer.
	// Zero: kernel.DefaultReadBuffer.
	ReadBuffer int
}

// DefaultWait is Config.Wait's default.
const DefaultWait = time.Second

// Report is something a Session saw: an event resolved (Result), or a note
// about one path (Note, with Path).
type Report struct {
	Result *Result
	Stream streams.Stream // of Result, or the stream a note is about
	// Summary is a one-line description of Result's message.
	Summary string
	Path    Path
	Note    string // a notice, a control frame, a netlink overrun
	// Step is a change the caller announced with Session.Step, reported
	// in order with the events: before those that arrived after it.
	Step string
}

// Totals is a Session's Summary and what the paths reported besides events.
type Totals struct {
	Summary
	NetlinkOverruns int `json:"netlink_overruns"`  // the netlink socket overran (events lost there)
	Notices         int `json:"multicast_notices"` // the receiver's notices (gaps, restarts, ...)
	ControlFrames   int `json:"control_frames"`    // overrun, resync and goodbye frames
	StateEvents     int `json:"state_events"`      // dump events of resyncs (not compared)
}

// Session reads the same streams directly from netlink and through the
// bridge's multicast groups, and matches them.
type Session struct {
	cfg     Config
	src     *kernel.Socket
	rcv     *receiver.Receiver
	names   *decode.Names
	m       *Matcher
	tot     Totals
	reading chan struct{} // closed once both paths' readers run
	stop    atomic.Bool   // set by Run on its way out: readers return
	once    sync.Once
	in      inbox // what the readers stamped, for Run's loop
}

// Open subscribes to both paths: from then on the events of both queue in
// the sockets' buffers. Close releases them.
func Open(cfg *Config) (*Session, error) {
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if len(c.Streams) == 0 {
		c.Streams = streams.Default()
	}
	if c.Wait <= 0 {
		c.Wait = DefaultWait
	}
	groups := make([]uint32, len(c.Streams))
	for i, s := range c.Streams {
		groups[i] = s.Group
	}
	src, err := kernel.Open(&kernel.Config{Groups: groups, ReadBuffer: c.ReadBuffer})
	if err != nil {
		return nil, err
	}
	rcv, err := receiver.New(&receiver.Config{Streams: c.Streams, Encoding: streams.Raw, Map: c.Map, Mcast: c.Mcast, Insecure: c.Insecure})
	if err != nil {
		src.Close()
		return nil, err
	}
	names := &decode.Names{Miss: func(i uint32) string { return kernel.LinkName(0, i) }}
	if all, err := kernel.LinkNames(0); err == nil { // without names, events show indexes
		names.Set(all)
	}
	return &Session{cfg: c, src: src, rcv: rcv, names: names, m: NewMatcher(c.Wait), reading: make(chan struct{})}, nil
}

// Step announces a change the caller is about to make: Run reports it
// (Report.Step) at its next tick, before the events that arrive after it.
// Printing it there rather than at once keeps the caller's output, and
// whoever it wakes, out of the moments the change's events are stamped in.
// Safe to call from any goroutine.
func (s *Session) Step(desc string) { s.in.put(batch{notes: []Report{{Step: desc}}}) }

// Warnings returns the multicast receiver's warnings
// (receiver.Receiver.Warnings).
func (s *Session) Warnings() []string { return s.rcv.Warnings() }

// A batch is what one read of a path brought.
type batch struct {
	arrivals []Arrival
	notes    []Report
	// counts for Totals
	overruns, notices, control, state int
}

// An inbox holds the readers' batches until Run's loop takes them, at its
// next tick. A reader that handed each batch to the loop as it came would
// wake the loop's thread while the bridge is still at work on the same
// burst of events, and the loop would match and print then (a write, which
// wakes whoever reads the output): on a machine with few CPUs, the
// measuring program's own work would sit in the path it measures. So the
// readers only stamp, copy and put; put never blocks and wakes no one.
type inbox struct {
	mu      sync.Mutex
	batches []batch
}

func (in *inbox) put(b batch) {
	in.mu.Lock()
	in.batches = append(in.batches, b)
	in.mu.Unlock()
}

// take returns the batches put since the last take, in the order they were
// put.
func (in *inbox) take() []batch {
	in.mu.Lock()
	defer in.mu.Unlock()
	bs := in.batches
	in.batches = nil
	return bs
}

// MinProcs is the fewest Go processors (GOMAXPROCS) Run compares with:
// one for each path's reader, one for Run's own loop, which matches and
// reports, and one for whatever else the program does (compare
// --generate makes changes). A reader whose read returns needs a processor
// to stamp the arrival; with fewer, one path's reader waits for the
// other's, or for the loop's printing, and the added latency measured is
// the program's own.
//
// Run's loop takes the readers' arrivals every Config.Wait/10 (100 ms by
// default), not as they come (see inbox): an event is reported up to that
// much later than its second arrival, which changes none of its figures.
const MinProcs = 4

// Run compares until ctx is done, calling report for every event resolved
// and every note, from Run's goroutine, and returns the totals. Events
// still waiting for their twin when ctx ends are counted as Waiting, not
// missing. It stops the readers it starts and closes nothing: Close does.
// While it runs, GOMAXPROCS is at least MinProcs (it restores it after).
// Run is called once.
func (s *Session) Run(ctx context.Context, report func(Report)) (Totals, error) {
	if prev := runtime.GOMAXPROCS(0); prev < MinProcs {
		runtime.GOMAXPROCS(MinProcs)
		defer runtime.GOMAXPROCS(prev)
	}
	errc := make(chan error, 2) // a reader sends at most one, and returns
	var wg, started sync.WaitGroup
	wg.Add(2)
	started.Add(2)
	go func() { defer wg.Done(); started.Done(); s.readNetlink(errc) }()
	go func() { defer wg.Done(); started.Done(); s.readMulticast(errc) }()
	started.Wait()
	close(s.reading)
	defer func() {
		// A past deadline wakes both readers; stop tells them it is time.
		s.stop.Store(true)
		_ = s.src.SetReadDeadline(time.Unix(1, 0))
		_ = s.rcv.SetReadDeadline(time.Unix(1, 0))
		wg.Wait()
	}()

	tick := time.NewTicker(s.cfg.Wait / 10)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.takeAll(report)
			s.tot.Summary = s.m.Summary()
			return s.tot, nil
		case now := <-tick.C:
			s.takeAll(report)
			for _, r := range s.m.Expire(now) {
				s.emit(report, r)
			}
		case err := <-errc:
			s.takeAll(report)
			s.tot.Summary = s.m.Summary()
			return s.tot, err
		}
	}
}

// takeAll matches and reports what the readers put in the inbox.
func (s *Session) takeAll(report func(Report)) {
	for _, b := range s.in.take() {
		s.tot.NetlinkOverruns += b.overruns
		s.tot.Notices += b.notices
		s.tot.ControlFrames += b.control
		s.tot.StateEvents += b.state
		for i := range b.notes {
			report(b.notes[i])
		}
		for _, a := range b.arrivals {
			if a.Path == Netlink {
				s.names.Update(a.Msg)
			}
			if r, ok := s.m.Add(a); ok {
				s.emit(report, r)
			}
		}
	}
}

func (s *Session) emit(report func(Report), r Result) {
	st, _ := streams.ByGroup(streams.FamilyRoute, r.Group)
	report(Report{Result: &r, Stream: st, Summary: decode.Route(r.Msg, s.names.Lookup).Summary})
}

// Reading returns a channel closed once Run's readers of both paths run.
// Events are queued from Open on; a change made before the readers run
// arrives all the same, but is stamped late.
func (s *Session) Reading() <-chan struct{} { return s.reading }

// Close closes both paths' sockets. It is safe to call more than once.
func (s *Session) Close() error {
	var err error
	s.once.Do(func() { err = errors.Join(s.src.Close(), s.rcv.Close()) })
	return err
}

// done reports whether a read error ends a reader: Run is stopping, or
// the sockets are closed.
func (s *Session) done(err error) bool {
	return closed(err) || (s.stop.Load() && errors.Is(err, os.ErrDeadlineExceeded))
}

// readNetlink reads the kernel's messages, stamps and copies them into the
// inbox. It sends errc the error that ends it, unless Run is stopping.
func (s *Session) readNetlink(errc chan<- error) {
	ms := make([]kernel.Message, 64)
	for !s.stop.Load() {
		n, err := s.src.ReadBatch(ms)
		now := time.Now()
		switch {
		case errors.Is(err, kernel.ErrOverrun):
			s.in.put(batch{overruns: 1, notes: []Report{{Path: Netlink, Note: "netlink socket overrun: the kernel dropped events on the netlink path"}}})
			continue
		case err != nil:
			if !s.done(err) {
				errc <- fmt.Errorf("netlink path: %w", err)
			}
			return
		}
		b := batch{arrivals: make([]Arrival, n)}
		for i, m := range ms[:n] {
			b.arrivals[i] = Arrival{Path: Netlink, Group: m.Group, Msg: append([]byte(nil), m.Data...), At: now}
		}
		s.in.put(b)
	}
}

// readMulticast reads the raw streams, stamps and copies kernel events, and
// passes notices and control frames on as notes, into the inbox. It sends
// errc the error that ends it, unless Run is stopping.
func (s *Session) readMulticast(errc chan<- error) {
	evs := make([]receiver.Event, mcast.DefaultBatch)
	for !s.stop.Load() {
		n, err := s.rcv.ReadBatch(evs)
		now := time.Now()
		if err != nil {
			if !s.done(err) {
				errc <- fmt.Errorf("multicast path: %w", err)
			}
			return
		}
		var b batch
		for i := range evs[:n] {
			ev := &evs[i]
			switch {
			case ev.IsNotice():
				b.notices++
				b.notes = append(b.notes, Report{Path: Multicast, Stream: ev.Stream, Note: ev.Notice.String()})
			case ev.Header.Kind == frame.KindHeartbeat:
			case ev.Header.Kind != frame.KindEvent:
				b.control++
				b.notes = append(b.notes, Report{Path: Multicast, Stream: ev.Stream, Note: ev.Header.Kind.String() + " frame"})
			case ev.Header.Flags&frame.FlagDump != 0:
				b.state++ // a resync's dump: state, not a kernel event
			default:
				b.arrivals = append(b.arrivals, Arrival{Path: Multicast, Group: ev.Stream.Group, Msg: append([]byte(nil), ev.Payload...), At: now})
			}
		}
		if b.arrivals != nil || b.notes != nil || b.state != 0 {
			s.in.put(b) // not heartbeats alone
		}
	}
}

// closed reports an error from reading a closed socket.
func closed(err error) bool {
	return errors.Is(err, mcast.ErrClosed) || errors.Is(err, os.ErrClosed)
}
