package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// PublisherStats counts what a Publisher did.
type PublisherStats struct {
	Received  uint64 // frames read from the local groups
	Published uint64 // messages JetStream acknowledged (frames and markers)
	Duplicate uint64 // of those, messages it had stored before (a retry)
	Malformed uint64 // datagrams that are not frames (dropped)
	Dropped   uint64 // frames dropped for want of buffer space
	Markers   uint64 // overrun markers queued in their place
	Retries   uint64 // batches published again after a failure
	Requests  uint64 // resync requests sent to the bridge, after a loss or for consumers
	Asked     uint64 // resync requests of consumers taken through NATS
	Coalesced uint64 // of those streams asked for, those already asked and not yet answered
	Answers   uint64 // frames of the bridge's answers published
	Buffered  uint64 // bytes of frames held now (a gauge)
}

// A Publisher publishes a host's frames to NATS JetStream.
type Publisher struct {
	cfg  PublisherConfig
	host string
	mc   *mcast.Receiver
	req  *mcast.Sender // the request socket: resyncs asked after a loss or for a consumer are answered to it
	nc   *nats.Conn
	js   jetstream.JetStream
	sel  []streams.Stream
	logf func(string, ...any)

	mu      sync.Mutex
	queue   []*item
	bytes   int
	last    [256]*frame.Header // the last frame queued per stream ID, for markers
	marker  [256]*item         // the open marker per stream ID: nil once a frame follows it
	more    chan struct{}      // a wakeup for the sender, capacity 1
	running atomic.Bool

	reqSub *nats.Subscription // resync requests of consumers
	reqMu  sync.Mutex
	asked  [256]time.Time // per stream ID: a request sent whose answer has not begun (zero: none)

	received, published, duplicate, malformed, dropped, markers, retries, requests, asked2, coalesced, answers atomic.Uint64

	closeOnce sync.Once
}

// item is one message to publish: a frame, or an overrun marker.
type item struct {
	subject string
	group   netip.AddrPort
	source  netip.AddrPort
	data    []byte
	id      string
	lost    uint64 // a marker: frames lost; r.mu while open
	sid     uint8  // the stream's ID
}

// NewPublisher joins the local raw groups of the configured streams,
// connects to NATS, creates or checks the JetStream stream, and takes
// consumers' resync requests (on RequestSubject(host)) from then on. Where
// the source check proves nothing it refuses, unless Insecure (see
// receiver.Config.Insecure). Run publishes, answers included.
func NewPublisher(cfg *PublisherConfig) (*Publisher, error) {
	if cfg == nil {
		cfg = &PublisherConfig{}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Publisher{cfg: *cfg, host: cfg.Host, sel: cfg.Streams, logf: cfg.Logf, more: make(chan struct{}, 1)}
	if p.host == "" {
		h, err := Hostname()
		if err != nil {
			return nil, err
		}
		p.host = h
	}
	if len(p.sel) == 0 {
		p.sel = streams.Default()
	}
	if p.logf == nil {
		p.logf = func(string, ...any) {}
	}
	if p.cfg.Stream == "" {
		p.cfg.Stream = DefaultStream
	}
	if p.cfg.BufferBytes == 0 {
		p.cfg.BufferBytes = DefaultBufferBytes
	}
	if src, any := cfg.Mcast.AcceptedSource(); !any && !cfg.Insecure {
		start, err := mcast.UnprivilegedPortStart()
		if err != nil || start <= int(src.Port()) {
			return nil, fmt.Errorf("fleet: any local user may send from port %d here (net.ipv4.ip_unprivileged_port_start is %d, %v), so the source check proves nothing: authenticate the bridge's frames (its --key), or accept the risk (Insecure)", src.Port(), start, err)
		}
	}
	var err error
	if p.mc, err = mcast.NewReceiver(cfg.Mcast); err != nil {
		return nil, err
	}
	for _, s := range p.sel {
		if err := p.mc.Join(p.cfg.Map.Addr(s, streams.Raw)); err != nil {
			p.mc.Close()
			return nil, err
		}
	}
	if err := p.openRequests(); err != nil {
		p.mc.Close()
		return nil, err
	}
	// No reconnect buffer: a frame published while disconnected fails at
	// once, and is published again in order after the ones before it,
	// instead of reaching a server before them.
	if p.nc, err = cfg.Conn.dial("nlmcast publish "+p.host, nats.ReconnectBufSize(-1)); err != nil {
		p.closeLocal()
		return nil, err
	}
	if p.js, err = jetstream.New(p.nc, jetstream.WithPublishAsyncMaxPending(1024), jetstream.WithPublishAsyncTimeout(5*time.Second)); err == nil {
		err = p.ensureStream()
	}
	if err == nil {
		err = p.serveRequests()
	}
	if err != nil {
		p.nc.Close()
		p.closeLocal()
		return nil, err
	}
	return p, nil
}

// openRequests opens the request socket, whose answers the multicast
// receiver reads with the groups.
func (p *Publisher) openRequests() error {
	cfg := &mcast.SenderConfig{EphemeralPort: true}
	if mc := p.cfg.Mcast; mc != nil {
		cfg.Interface, cfg.AllowNonLoopback = mc.Interface, mc.AllowNonLoopback
	}
	snd, err := mcast.NewSender(cfg)
	if err != nil {
		return fmt.Errorf("fleet: resync requests: %w", err)
	}
	if err := p.mc.Attach(snd); err != nil {
		snd.Close()
		return fmt.Errorf("fleet: resync requests: %w", err)
	}
	p.req = snd
	return nil
}

// closeLocal closes the local sockets.
func (p *Publisher) closeLocal() error {
	err := errors.Join(p.mc.Detach(p.req), p.req.Close())
	return errors.Join(err, p.mc.Close())
}

// requestResync asks the bridge to resync stream s to the request
// socket: its answer is published as any frame (PROTOCOL.md, Beyond one
// host). A request the bridge refuses (rate limits) goes unanswered:
// consumers still know of the loss, and a Mirror asks again. A stream
// already asked for whose answer has not begun is not asked again (its
// answer comes after the request being made now), unless the first
// request is older than answerWait; requestResync reports whether it
// coalesced the request so.
func (p *Publisher) requestResync(s streams.Stream) (coalesced bool) {
	if !s.Resync {
		return false
	}
	p.reqMu.Lock()
	defer p.reqMu.Unlock()
	now := time.Now()
	if t := p.asked[s.ID]; !t.IsZero() && now.Sub(t) < answerWait {
		return true
	}
	h := frame.Header{Kind: frame.KindRequest, Family: s.Family, Group: s.Group, Time: now.UnixNano()}
	if err := p.req.Send(frame.Append(nil, h, nil), p.cfg.Map.Control()); err != nil {
		p.logf("fleet: asking the bridge to resync %s: %v", s.Name, err)
		return false
	}
	p.asked[s.ID] = now
	p.requests.Add(1)
	return false
}

// answerWait is how long a request sent to the bridge stands for the
// requests of the same stream that follow it, if its answer does not
// begin: a bridge that refused it (rate limits) or never got it is asked
// again after that.
const answerWait = 2 * time.Second

// answerBegun notes that the answer of stream id began: a request from
// now on needs an answer of its own.
func (p *Publisher) answerBegun(id uint8) {
	p.reqMu.Lock()
	p.asked[id] = time.Time{}
	p.reqMu.Unlock()
}

// serveRequests takes consumers' resync requests on the host's request
// subject from now until Close: a message whose body names streams by
// name, comma-separated (empty: every stream published that can be
// resynced), each asked of the bridge (requestResync) at once; their
// answers are read and published by Run. The reply names the streams
// asked, or carries HeaderError. It returns once the server has the
// subscription.
func (p *Publisher) serveRequests() error {
	sub, err := p.nc.Subscribe(RequestSubject(p.host), func(m *nats.Msg) {
		asked, err := p.takeRequest(string(m.Data))
		reply := nats.NewMsg(m.Reply)
		reply.Data = []byte(strings.Join(asked, ","))
		if err != nil {
			reply.Header.Set(HeaderError, err.Error())
		}
		if m.Reply != "" {
			_ = m.RespondMsg(reply) // a requester that went away
		}
	})
	if err == nil {
		err = p.nc.Flush()
	}
	if err != nil {
		return fmt.Errorf("fleet: taking resync requests on %s: %w", RequestSubject(p.host), err)
	}
	p.reqSub = sub
	return nil
}

// takeRequest asks the bridge for the streams a consumer's request names
// that it publishes and that have a state, and returns their names, and
// an error naming the others.
func (p *Publisher) takeRequest(body string) ([]string, error) {
	var want []streams.Stream
	var refused []string
	if body = strings.TrimSpace(body); body == "" {
		for _, s := range p.sel {
			if s.Resync {
				want = append(want, s)
			}
		}
	} else {
		for name := range strings.SplitSeq(body, ",") {
			name = strings.TrimSpace(name)
			i := slices.IndexFunc(p.sel, func(s streams.Stream) bool { return s.Name == name })
			switch {
			case i < 0:
				refused = append(refused, fmt.Sprintf("stream %q is not published by host %s", name, p.host))
			case !p.sel[i].Resync:
				refused = append(refused, fmt.Sprintf("stream %q has no state to resync", name))
			default:
				want = append(want, p.sel[i])
			}
		}
	}
	names := make([]string, 0, len(want))
	for _, s := range want {
		p.asked2.Add(1)
		if p.requestResync(s) {
			p.coalesced.Add(1)
		}
		names = append(names, s.Name)
	}
	if len(refused) > 0 {
		return names, errors.New(strings.Join(refused, "; "))
	}
	return names, nil
}

// ensureStream creates the JetStream stream, or checks that it takes the
// fleet's subjects. A cluster that elects a new meta leader meanwhile
// drops the request unanswered: it is asked again, within 30 s in all.
func (p *Publisher) ensureStream() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := p.ensureStreamOnce()
		if !errors.Is(err, context.DeadlineExceeded) || time.Now().After(deadline) {
			return err
		}
	}
}

// streamAsk bounds one request of ensureStream.
const streamAsk = 10 * time.Second

func (p *Publisher) ensureStreamOnce() error {
	ctx, cancel := context.WithTimeout(context.Background(), streamAsk)
	defer cancel()
	want := SubjectPrefix + ".>"
	st, err := p.js.Stream(ctx, p.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		maxAge := p.cfg.MaxAge
		if maxAge == 0 {
			maxAge = DefaultMaxAge
		}
		_, err = p.js.CreateStream(ctx, jetstream.StreamConfig{
			Name: p.cfg.Stream, Subjects: []string{want}, Storage: jetstream.FileStorage,
			MaxAge: maxAge, Duplicates: DefaultDuplicates, Replicas: max(p.cfg.Replicas, 1),
			Description: "nlmcast frames: nlmcast.HOST.STREAM (PROTOCOL.md)",
		})
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("fleet: creating the JetStream stream %s: %w (is JetStream enabled on the server, and may this user create streams?)", p.cfg.Stream, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("fleet: looking up the JetStream stream %s: %w (is JetStream enabled on the server?)", p.cfg.Stream, err)
	}
	subs := st.CachedInfo().Config.Subjects
	if !slices.Contains(subs, want) && !slices.Contains(subs, ">") {
		return fmt.Errorf("fleet: the JetStream stream %s takes subjects %v, not %s: add it to the stream, or name another stream", p.cfg.Stream, subs, want)
	}
	return nil
}

// Host returns the host's token in the subjects.
func (p *Publisher) Host() string { return p.host }

// Run reads and publishes until ctx ends. It returns nil then; frames
// still held are not published (their consumers see the gap when the
// next publisher's frames arrive). It closes nothing.
func (p *Publisher) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("fleet: Run is already running: call it once")
	}
	defer p.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.send(ctx)
	}()
	err := p.read(ctx)
	cancel()
	wg.Wait()
	return err
}

// read reads the local groups into the queue.
func (p *Publisher) read(ctx context.Context) error {
	ds := make([]mcast.Datagram, mcast.DefaultBatch)
	var h frame.Header
	for ctx.Err() == nil {
		n, err := p.mc.ReadBatchUntil(ds, time.Now().Add(200*time.Millisecond))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fleet: reading the local groups: %w", err)
		}
		for i := range ds[:n] {
			d := &ds[i]
			if _, err := frame.ParseInto(&h, d.Data); err != nil {
				p.malformed.Add(1)
				continue
			}
			s, _, ok := p.cfg.Map.Stream(d.Group)
			if d.Group == p.req.Source() {
				s, ok = p.answerStream(&h)
				p.answers.Add(1)
				if ok && h.Kind == frame.KindResyncBegin {
					p.answerBegun(s.ID)
				}
			}
			if !ok {
				p.malformed.Add(1)
				continue
			}
			p.received.Add(1)
			p.enqueue(s, &h, d)
		}
		select {
		case p.more <- struct{}{}:
		default:
		}
	}
	return nil
}

// answerStream returns the stream an answer's frame is of.
func (p *Publisher) answerStream(h *frame.Header) (streams.Stream, bool) {
	if h.Flags&frame.FlagAnswer == 0 {
		return streams.Stream{}, false
	}
	for _, s := range p.sel {
		if s.Family == h.Family && s.Group == h.Group && s.Resync {
			return s, true
		}
	}
	return streams.Stream{}, false
}

// enqueue queues a frame, or when the buffer is full drops it and counts
// it in the stream's open marker.
func (p *Publisher) enqueue(s streams.Stream, h *frame.Header, d *mcast.Datagram) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bytes+len(d.Data) > p.cfg.BufferBytes {
		p.dropped.Add(1)
		if m := p.marker[s.ID]; m != nil {
			m.lost++
			return
		}
		var epoch, seq uint64
		if l := p.last[s.ID]; l != nil {
			epoch, seq = l.Epoch, l.Seq
		}
		m := &item{subject: Subject(p.host, s), group: p.cfg.Map.Addr(s, streams.Raw), source: d.Source, id: markerID(p.host, s, epoch, seq, p.markers.Add(1)), lost: 1, sid: s.ID}
		p.marker[s.ID] = m
		p.queue = append(p.queue, m)
		p.logf("fleet: buffer full (%d bytes): dropping frames of %s until NATS takes what it holds", p.bytes, s.Name)
		return
	}
	p.marker[s.ID] = nil
	if h.Flags&frame.FlagAnswer == 0 {
		hh := *h
		p.last[s.ID] = &hh
	}
	b := slices.Clone(d.Data)
	p.queue = append(p.queue, &item{subject: Subject(p.host, s), group: d.Group, source: d.Source, data: b, id: MsgID(p.host, s, h, b), sid: s.ID})
	p.bytes += len(b)
}

// peek waits for queued items and returns up to n of the first.
func (p *Publisher) peek(ctx context.Context, n int) []*item {
	for {
		p.mu.Lock()
		if len(p.queue) > 0 {
			b := slices.Clone(p.queue[:min(n, len(p.queue))])
			p.mu.Unlock()
			return b
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-p.more:
		}
	}
}

// pop removes the first n items, published.
func (p *Publisher) pop(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, it := range p.queue[:n] {
		p.bytes -= len(it.data)
		for id, m := range p.marker {
			if m == it {
				p.marker[id] = nil // published: a new loss needs a new marker
			}
		}
		p.queue[i] = nil
	}
	p.queue = p.queue[n:]
	if len(p.queue) == 0 {
		p.queue = nil // let the backing array go
	}
}

// message makes an item's NATS message. r.mu need not be held: lost is
// read while the item is no longer open (it was published) or under mu.
func (p *Publisher) message(it *item) *nats.Msg {
	m := nats.NewMsg(it.subject)
	m.Data = it.data
	m.Header.Set(HeaderMsgID, it.id)
	m.Header.Set(HeaderGroup, it.group.String())
	m.Header.Set(HeaderSource, it.source.String())
	m.Header.Set(HeaderHost, p.host)
	if it.data == nil {
		p.mu.Lock()
		m.Header.Set(HeaderLost, fmt.Sprint(it.lost))
		// Once on its way a marker counts no more: a later loss opens
		// another, after the frames queued since.
		for id, mk := range p.marker {
			if mk == it {
				p.marker[id] = nil
			}
		}
		p.mu.Unlock()
	}
	return m
}

// send publishes the queue in order, in batches, retrying a batch from
// its first message not acknowledged (JetStream drops the ones it stored
// already, by their ids) with a growing wait.
func (p *Publisher) send(ctx context.Context) {
	wait := 100 * time.Millisecond
	for {
		batch := p.peek(ctx, 256)
		if batch == nil {
			return
		}
		done, err := p.publish(ctx, batch)
		if done > 0 {
			p.pop(done)
			for _, it := range batch[:done] {
				if i := slices.IndexFunc(p.sel, func(s streams.Stream) bool { return s.ID == it.sid }); it.data == nil && i >= 0 {
					p.requestResync(p.sel[i]) // a marker stored: NATS takes frames again
				}
			}
		}
		if err == nil {
			wait = 100 * time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			return
		}
		p.retries.Add(1)
		p.logf("fleet: publishing to NATS: %v: trying again in %v (%d bytes held)", err, wait, p.Stats().Buffered)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// publish publishes a batch and returns how many of its first messages
// JetStream acknowledged.
func (p *Publisher) publish(ctx context.Context, batch []*item) (int, error) {
	futs := make([]jetstream.PubAckFuture, 0, len(batch))
	var err error
	for _, it := range batch {
		f, e := p.js.PublishMsgAsync(p.message(it))
		if e != nil {
			err = e
			break
		}
		futs = append(futs, f)
	}
	for i, f := range futs {
		select {
		case ack := <-f.Ok():
			p.published.Add(1)
			if ack.Duplicate {
				p.duplicate.Add(1)
			}
		case e := <-f.Err():
			return i, e
		case <-ctx.Done():
			return i, ctx.Err()
		}
	}
	return len(futs), err
}

// Stats returns the Publisher's counters.
func (p *Publisher) Stats() PublisherStats {
	p.mu.Lock()
	b := p.bytes
	p.mu.Unlock()
	return PublisherStats{
		Received: p.received.Load(), Published: p.published.Load(), Duplicate: p.duplicate.Load(),
		Malformed: p.malformed.Load(), Dropped: p.dropped.Load(), Markers: p.markers.Load(),
		Retries: p.retries.Load(), Requests: p.requests.Load(), Asked: p.asked2.Load(), Coalesced: p.coalesced.Load(),
		Answers: p.answers.Load(), Buffered: uint64(b),
	}
}

// Close closes the NATS connection and leaves the groups. It is safe to
// call more than once: later calls return nil.
func (p *Publisher) Close() error {
	var err error
	p.closeOnce.Do(func() {
		_ = p.reqSub.Unsubscribe() // closing the connection would do it too
		p.nc.Close()
		err = p.closeLocal()
	})
	return err
}
