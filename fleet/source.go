package fleet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// SourceStats counts what a Source saw.
type SourceStats struct {
	Messages  uint64 // frames passed on
	Markers   uint64 // overrun markers (their losses are passed on as Drops)
	Lost      uint64 // frames the markers said were lost
	Malformed uint64 // messages without a fitting Nlmcast-Group header (dropped)
	// StreamSeq is the JetStream stream sequence of the last message
	// passed on: where to start again (SourceConfig.StartSeq, plus one).
	StreamSeq uint64
}

// A Source reads one host's frames from NATS JetStream, for a
// receiver.Receiver (receiver.Config.Source): each message becomes the
// datagram the bridge sent, on the group of its Nlmcast-Group header, and
// an overrun marker becomes Lost on the next one of its group, which the
// Receiver reports as an UpstreamDrops notice (and the frames' sequence
// numbers as a Gap).
type Source struct {
	cfg SourceConfig
	nc  *nats.Conn
	js  jetstream.JetStream

	mu       sync.Mutex
	subjects map[string]netip.AddrPort // joined: subject → raw group
	dirty    bool                      // joined or left since the consumer was made
	cc       jetstream.ConsumeContext  // nil until the first read
	ccStop   chan struct{}             // closed when cc is being stopped
	cons     jetstream.Consumer
	drops    map[netip.AddrPort]uint64 // lost by markers, not yet passed on
	ack      jetstream.Msg             // the last message passed on, to acknowledge (Durable)
	resumeAt uint64                    // a durable consumer deleted to be made anew from this stream sequence, not yet made (resume)
	stopped  error                     // why the server stopped the consumer (deleted: another reader took the durable name)
	closed   bool

	msgs     chan jetstream.Msg
	done     chan struct{}
	wake     chan struct{}
	deadline atomic.Int64

	messages, markers, lost, malformed, streamSeq atomic.Uint64
}

var (
	_ receiver.Source    = (*Source)(nil)
	_ receiver.Requester = (*Source)(nil)
)

// NewSource connects to NATS and checks that the stream exists. The
// consumer is made at the first read, with the subjects joined by then.
func NewSource(cfg *SourceConfig) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{
		cfg: *cfg, subjects: map[string]netip.AddrPort{}, drops: map[netip.AddrPort]uint64{},
		msgs: make(chan jetstream.Msg, 1024), done: make(chan struct{}), wake: make(chan struct{}, 1),
	}
	if s.cfg.Stream == "" {
		s.cfg.Stream = DefaultStream
	}
	var err error
	if s.nc, err = cfg.Conn.dial("nlmcast listen " + cfg.Host); err != nil {
		return nil, err
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		s.nc.Close()
		return nil, fmt.Errorf("fleet: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.js.Stream(ctx, s.cfg.Stream); err != nil {
		s.nc.Close()
		return nil, fmt.Errorf("fleet: the JetStream stream %s: %w (has a publisher created it? is JetStream enabled?)", s.cfg.Stream, err)
	}
	return s, nil
}

// Join starts reading the frames the host's bridge sent to a raw group.
func (s *Source) Join(group netip.AddrPort) error {
	st, enc, ok := s.cfg.Map.Stream(group)
	if !ok {
		return fmt.Errorf("fleet: %v is no stream's group in the address map", group)
	}
	if enc != streams.Raw {
		return fmt.Errorf("fleet: stream %s: publishers carry the raw encoding only: receive it raw (and decode it with package decode)", st.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subjects[Subject(s.cfg.Host, st)] = group
	s.dirty = true
	return nil
}

// Leave stops reading a group's frames.
func (s *Source) Leave(group netip.AddrPort) error {
	st, _, ok := s.cfg.Map.Stream(group)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subjects, Subject(s.cfg.Host, st))
	s.dirty = true
	return nil
}

// SetReadDeadline sets the read deadline; the zero time means none.
func (s *Source) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		s.deadline.Store(0)
	} else {
		s.deadline.Store(t.UnixNano())
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// Start makes the JetStream consumer now, with the groups joined so far,
// rather than at the first read: with new messages only (the default),
// those stored from Start on are read. Joining or leaving later makes it
// again, going on after the last message read.
func (s *Source) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return mcast.ErrClosed
	}
	return s.consume()
}

// consume (re)makes the consumer when the subjects changed. s.mu is held.
func (s *Source) consume() error {
	if !s.dirty {
		return nil
	}
	s.stopConsuming()
	s.stopped = nil
	subs := make([]string, 0, len(s.subjects))
	for sub := range s.subjects {
		subs = append(subs, sub)
	}
	slices.Sort(subs)
	if len(subs) == 0 {
		s.dirty = false
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	policy, seq, t := jetstream.DeliverNewPolicy, s.cfg.StartSeq, s.cfg.StartTime
	var tp *time.Time
	switch {
	case s.streamSeq.Load() != 0: // again, after a Join: go on where we were
		policy, seq = jetstream.DeliverByStartSequencePolicy, s.streamSeq.Load()+1
	case s.resumeAt != 0: // deleted by resume, and not made again
		policy, seq = jetstream.DeliverByStartSequencePolicy, s.resumeAt
	case seq != 0:
		policy = jetstream.DeliverByStartSequencePolicy
	case !t.IsZero():
		policy, tp = jetstream.DeliverByStartTimePolicy, &t
	case s.cfg.All:
		policy = jetstream.DeliverAllPolicy
	}
	var err error
	if s.cfg.Durable == "" {
		s.cons, err = s.js.OrderedConsumer(ctx, s.cfg.Stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: subs, DeliverPolicy: policy, OptStartSeq: seq, OptStartTime: tp,
		})
	} else {
		s.cons, err = s.js.Consumer(ctx, s.cfg.Stream, s.cfg.Durable)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			s.cons, err = s.js.CreateConsumer(ctx, s.cfg.Stream, jetstream.ConsumerConfig{
				Durable: s.cfg.Durable, FilterSubjects: subs, DeliverPolicy: policy, OptStartSeq: seq, OptStartTime: tp,
				AckPolicy: jetstream.AckAllPolicy, MaxAckPending: 65536,
			})
			if err == nil {
				s.resumeAt = 0
			}
		case err == nil:
			s.cons, err = s.resume(ctx, s.cons.CachedInfo(), subs)
		}
	}
	if errors.Is(err, jetstream.ErrConsumerMultipleFilterSubjectsNotSupported) {
		return fmt.Errorf("fleet: reading %d streams of %s in one consumer needs nats-server 2.10 or later (Debian 12's is 2.9.10): upgrade the server (go build github.com/nats-io/nats-server/v2), or read one stream per listener: %w", len(subs), s.cfg.Host, err)
	}
	if err != nil && s.resumeAt != 0 {
		return fmt.Errorf("fleet: making the durable consumer %s of %s again, from stream sequence %d: %w (it is asked again at the next read; or start a listener with --since %d)", s.cfg.Durable, s.cfg.Host, s.resumeAt, err, s.resumeAt)
	}
	if err != nil {
		return fmt.Errorf("fleet: making the JetStream consumer of %s: %w", s.cfg.Host, err)
	}
	stop := make(chan struct{})
	s.cc, err = s.cons.Consume(func(m jetstream.Msg) {
		select {
		case <-stop: // first: a stopped consumer's messages never go on
			return
		default:
		}
		select {
		case s.msgs <- m:
		case <-stop:
		}
	}, jetstream.ConsumeErrHandler(s.consumeError))
	if err != nil {
		return fmt.Errorf("fleet: consuming %s: %w", s.cfg.Host, err)
	}
	s.ccStop, s.dirty = stop, false
	return nil
}

// consumeError takes the errors of the consumer. Those that stop it (the
// server deleted the consumer: another reader made the durable consumer
// anew, or an operator removed it) are kept for ReadBatchUntil to return;
// the others (missed heartbeats, a reconnect) the client library recovers
// from.
func (s *Source) consumeError(_ jetstream.ConsumeContext, err error) {
	if !errors.Is(err, jetstream.ErrConsumerDeleted) && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return
	}
	s.mu.Lock()
	if s.stopped == nil {
		s.stopped = fmt.Errorf("fleet: the JetStream consumer of %s stopped: %w (a durable consumer is one reader's: another reader of %q took it over, or it was removed)", s.cfg.Host, err, s.cfg.Durable)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// resume goes on with a durable consumer that exists, reading subs. When
// it holds messages delivered and never acknowledged (a reader that
// stopped before it acknowledged them, or was killed), or when the
// subjects changed after a read, it is made anew from the first message
// not acknowledged, or the one after the last read: the server would
// deliver those messages again only when its AckWait ends, after newer
// ones, and a receiver takes a frame older than one it has seen as a
// duplicate. A durable consumer is the place of one reader at a time.
// s.mu is held.
func (s *Source) resume(ctx context.Context, info *jetstream.ConsumerInfo, subs []string) (jetstream.Consumer, error) {
	c := info.Config
	same := slices.Equal(c.FilterSubjects, subs) || len(subs) == 1 && c.FilterSubject == subs[0]
	read := s.streamSeq.Load()
	if same && info.NumAckPending == 0 {
		return s.cons, nil
	}
	if read == 0 && info.NumAckPending == 0 { // nothing to deliver again: other subjects
		c.FilterSubjects, c.FilterSubject = subs, ""
		return s.js.UpdateConsumer(ctx, s.cfg.Stream, c)
	}
	if info.NumWaiting > 0 {
		return nil, fmt.Errorf("the durable consumer %q is being read (its pull requests wait on the server): a durable consumer is one reader's; give this one another --durable name", c.Durable)
	}
	st, err := s.js.Stream(ctx, s.cfg.Stream)
	if err != nil {
		return nil, err
	}
	if st.CachedInfo().Config.Retention != jetstream.LimitsPolicy {
		// Deleting the consumer would let the stream drop what it has
		// not acknowledged: go on with it as it is.
		return s.cons, nil
	}
	from := info.AckFloor.Stream + 1
	if read != 0 {
		from = read + 1
	}
	c.FilterSubjects, c.FilterSubject = subs, ""
	c.DeliverPolicy, c.OptStartSeq, c.OptStartTime = jetstream.DeliverByStartSequencePolicy, from, nil
	if err := s.js.DeleteConsumer(ctx, s.cfg.Stream, c.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	s.resumeAt = from // if the making fails, the next try makes it from there
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := s.js.CreateConsumer(cctx, s.cfg.Stream, c)
	if err == nil {
		s.resumeAt = 0
	}
	return cons, err
}

// RequestResync asks the host's publisher to ask its bridge for a resync
// of the given streams that are joined and have a state (none given:
// every such stream), and returns once the publisher said it did
// (receiver.Requester); a *RefusedError if it refused some or all. The
// answer is published to the host's subjects like any frame, after the
// request: the consumer is made first, if it is not yet (as by Start), so
// that it reads it. Every reader of the host gets the answer; the
// receiver takes it as an answer (its Nlmcast-Group is the publisher's
// request socket).
func (s *Source) RequestResync(ss ...streams.Stream) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return mcast.ErrClosed
	}
	var err error
	if s.cc == nil { // the reader remakes one that exists, when it must
		err = s.consume()
	}
	joined := map[string]bool{}
	for _, group := range s.subjects {
		if st, _, ok := s.cfg.Map.Stream(group); ok && st.Resync {
			joined[st.Name] = true
		}
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	var names []string
	if len(ss) == 0 {
		names = slices.Collect(maps.Keys(joined))
	}
	for _, st := range ss {
		if joined[st.Name] {
			names = append(names, st.Name)
		}
	}
	if len(names) == 0 {
		return nil // nothing joined that has a state
	}
	slices.Sort(names)
	reply, err := s.nc.Request(RequestSubject(s.cfg.Host), []byte(strings.Join(names, ",")), requestTimeout)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("fleet: resync request: no publisher of host %s takes requests on %s: is 'nlmcast publish --host %s' running there?", s.cfg.Host, RequestSubject(s.cfg.Host), s.cfg.Host)
	case err != nil:
		return fmt.Errorf("fleet: resync request to the publisher of host %s: %w", s.cfg.Host, err)
	case reply.Header.Get(HeaderError) != "":
		re := &RefusedError{Host: s.cfg.Host, Reason: reply.Header.Get(HeaderError)}
		if len(reply.Data) > 0 {
			re.Asked = strings.Split(string(reply.Data), ",")
		}
		return re
	}
	return nil
}

// A RefusedError is a resync request that a host's publisher refused, in
// part (it asked its bridge for the streams Asked) or whole (Asked
// empty), saying why.
type RefusedError struct {
	Host   string
	Asked  []string
	Reason string
}

func (e *RefusedError) Error() string {
	if len(e.Asked) == 0 {
		return fmt.Sprintf("fleet: resync request: the publisher of host %s refused it: %s", e.Host, e.Reason)
	}
	return fmt.Sprintf("fleet: resync request: the publisher of host %s asked for %s, and refused the rest: %s", e.Host, strings.Join(e.Asked, ","), e.Reason)
}

// requestTimeout is how long RequestResync waits for the publisher's
// reply.
const requestTimeout = 5 * time.Second

// ReadBatchUntil waits for messages until the time until (zero: none) or
// the read deadline, and passes them on as datagrams.
func (s *Source) ReadBatchUntil(ds []mcast.Datagram, until time.Time) (int, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, mcast.ErrClosed
	}
	if s.ack != nil { // the caller is done with the last batch
		s.ack.Ack()
		s.ack = nil
	}
	err := s.consume()
	if err == nil {
		err = s.stopped
	}
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	for {
		end := until
		if d := s.deadline.Load(); d != 0 && (end.IsZero() || d < end.UnixNano()) {
			end = time.Unix(0, d)
		}
		var timer <-chan time.Time
		var t *time.Timer
		if !end.IsZero() {
			wait := time.Until(end)
			if wait <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			t = time.NewTimer(wait)
			timer = t.C
		}
		var m jetstream.Msg
		select {
		case m = <-s.msgs:
		case <-timer:
		case <-s.wake:
		case <-s.done:
			return 0, mcast.ErrClosed
		}
		if t != nil {
			t.Stop()
		}
		if m == nil {
			s.mu.Lock()
			err := s.stopped
			s.mu.Unlock()
			if err != nil {
				return 0, err
			}
			continue // the deadline, checked above, or a new one
		}
		n := 0
		for {
			if s.take(m, &ds[n]) {
				n++
			}
			if n == len(ds) {
				return n, nil
			}
			select {
			case m = <-s.msgs:
				continue
			default:
			}
			break
		}
		if n > 0 {
			return n, nil
		}
	}
}

// take turns a message into a datagram, or takes in a marker; it reports
// whether d was filled.
func (s *Source) take(m jetstream.Msg, d *mcast.Datagram) bool {
	if md, err := m.Metadata(); err == nil {
		s.streamSeq.Store(md.Sequence.Stream)
	}
	if s.cfg.Durable != "" {
		s.mu.Lock()
		s.ack = m
		s.mu.Unlock()
	}
	h := m.Headers()
	group, err := netip.ParseAddrPort(h.Get(HeaderGroup))
	s.mu.Lock()
	defer s.mu.Unlock()
	want, joined := s.subjects[m.Subject()]
	if err != nil || !joined || group != want && !group.Addr().IsLoopback() { // or an answer, to the publisher's request socket
		s.malformed.Add(1)
		return false
	}
	if lost := h.Get(HeaderLost); lost != "" && len(m.Data()) == 0 {
		n, err := strconv.ParseUint(lost, 10, 32)
		if err != nil {
			s.malformed.Add(1)
			return false
		}
		s.markers.Add(1)
		s.lost.Add(n)
		s.drops[group] += n
		return false
	}
	src, _ := netip.ParseAddrPort(h.Get(HeaderSource))
	drops := s.drops[group]
	delete(s.drops, group)
	*d = mcast.Datagram{Group: group, Source: src, Data: m.Data(), Lost: uint32(min(drops, 1<<32-1))}
	s.messages.Add(1)
	return true
}

// Stats returns the Source's counters.
func (s *Source) Stats() SourceStats {
	return SourceStats{
		Messages: s.messages.Load(), Markers: s.markers.Load(), Lost: s.lost.Load(),
		Malformed: s.malformed.Load(), StreamSeq: s.streamSeq.Load(),
	}
}

// Close stops the consumer (a durable one stays on the server, with what
// was acknowledged) and closes the connection. It is safe to call more
// than once: later calls return nil.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.done)
	s.stopConsuming()
	if s.ack != nil {
		// Acknowledged before the connection goes, so that the next
		// reader of the durable consumer goes on right after it.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.ack.DoubleAck(ctx) // if not, it is delivered again: at least once
		cancel()
		s.ack = nil
	}
	s.nc.Close()
	return nil
}

// stopConsuming stops the consumer, if there is one, and drops the
// messages it delivered that were not passed on: an ordered consumer is
// made again after the last one passed on, a durable one from the first
// not acknowledged (resume). s.mu is held.
func (s *Source) stopConsuming() {
	if s.cc == nil {
		return
	}
	close(s.ccStop)
	s.cc.Drain() // the server has seen it stop once Closed is
	select {
	case <-s.cc.Closed():
	case <-time.After(5 * time.Second): // a lost connection: the server forgets the consumer's requests anyway
	}
	s.cc, s.ccStop = nil, nil
	for {
		select {
		case <-s.msgs:
		default:
			return
		}
	}
}
