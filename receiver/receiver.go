package receiver

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/keys"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// Event is one frame received on a stream, or a Notice about a stream.
type Event struct {
	Stream   streams.Stream
	Encoding streams.Encoding
	// Header is the frame's header. Fragments are never returned: a
	// message sent in fragments is returned whole, as one KindEvent.
	Header frame.Header
	// Payload is the netlink message (raw encoding) or the whole JSON
	// datagram (JSON encoding). It is valid until the next ReadBatch.
	Payload []byte
	// JSON is the decoded JSON frame (JSON encoding only).
	JSON   *frame.JSONFrame
	Source netip.AddrPort
	// Notice, when its Kind is not NoNotice, makes this Event a notice
	// about Stream rather than a frame: Header, Payload and JSON are zero.
	Notice Notice
}

// IsNotice reports whether ev is a notice rather than a frame.
func (ev *Event) IsNotice() bool { return ev.Notice.Kind != NoNotice }

// Stats counts what a Receiver saw.
type Stats struct {
	Mcast       mcast.ReceiverStats // socket-level drops and counts
	Events      uint64              // frames passed to the caller
	Notices     uint64              // notices passed to the caller
	Malformed   uint64              // datagrams that are not valid frames (dropped)
	Mismatch    uint64              // frames whose header names another stream than their group (dropped)
	UnknownKind uint64              // frames of a kind this receiver does not know (dropped)
	Missing     uint64              // frames reported lost in gaps
	Duplicates  uint64              // duplicate frames dropped
	Fragments   uint64              // fragments received
	Reassembled uint64              // messages reassembled from fragments
	BadFragment uint64              // fragments that did not fit their message (dropped)
	TooLarge    uint64              // fragments of messages over MaxMessage (dropped; each message is reported lost)
	Reassembly  uint64              // bytes the streams' partial messages hold now (a gauge)
	Rejected    uint64              // frames dropped as not the bridge's (Rejected notices)
	Disowned    uint64              // frames delivered, then found not the bridge's (Disowned notices)
	Answers     uint64              // frames of answers to this receiver's requests delivered (FlagAnswer)
	BadAnswers  uint64              // datagrams on the request socket that were not a fitting answer frame (dropped)
	// With a key file: frames dropped for want of a trailer, for a key
	// the file does not hold, and for a tag that does not match.
	Unauthenticated, UnknownKey, BadTag uint64
	// Unattested counts frames dropped because the kernel did not show
	// the bridge's address held by Config.BridgeUID alone when they came.
	Unattested uint64
	// On a private stream (Config.Private): frames dropped as not sealed,
	// and sealed frames that did not open (UnknownKey counts those sealed
	// under a key the file does not hold).
	NotSealed, BadSeal uint64
	// Sealed counts sealed frames of streams not in Config.Private,
	// dropped unread (Sealed notices).
	Sealed uint64
	// Streams holds the counters of each stream joined at some time, in
	// the order they were first joined; nil before any.
	Streams []StreamStats
}

// StreamStats counts what a Receiver passed to its caller for one stream.
// Every counter only grows; the zero value is a stream of which nothing
// came.
type StreamStats struct {
	Stream streams.Stream // the stream
	Joined bool           // joined now (not left)
	// Frames counts the frames of the stream passed to the caller (every
	// kind: events, heartbeats, overruns, ...); Events those of kind
	// event.
	Frames, Events uint64
	// Notices counts the notices about the stream passed to the caller,
	// by kind (index NoticeKind; NoNotice stays zero).
	Notices [UpstreamDrops + 1]uint64
	// Missing counts the frames the Gap notices reported lost;
	// SocketDrops the packets the SocketDrops notices reported dropped;
	// UpstreamDrops the frames the UpstreamDrops notices did.
	Missing, SocketDrops, UpstreamDrops uint64
	// Rejected counts the Rejected notices by reason (index
	// RejectReason).
	Rejected [Behind + 1]uint64
	// Heard is when a frame of the stream last arrived (or it was
	// joined, when none has yet).
	Heard time.Time
}

// streamCounts is what count adds to for one stream.
type streamCounts struct {
	stream                                              streams.Stream // as first joined; read-only after
	frames, events, missing, socketDrops, upstreamDrops atomic.Uint64
	notices                                             [UpstreamDrops + 1]atomic.Uint64
	rejected                                            [Behind + 1]atomic.Uint64
}

// Receiver receives events from nlmcast streams. ReadBatch may be called
// from one goroutine at a time; the other methods from any.
type Receiver struct {
	mc       Source          // where datagrams come from
	mcr      *mcast.Receiver // the loopback groups' receiver; nil with Config.Source
	mcfg     *mcast.ReceiverConfig
	m        streams.Map
	encoding streams.Encoding
	silence  time.Duration
	maxMsg   int
	fragTO   time.Duration
	ds       []mcast.Datagram
	warnings []string // set by New, read-only after
	owner    *owner   // nil: no owner check; ReadBatch's (decode holds r.mu)

	mu       sync.Mutex
	trackers [256]*tracker        // by stream ID; nil until first joined
	joined   []uint8              // IDs of the joined streams, for the timers: a slice, as ranging over a map costs a random start
	live     [256]*streams.Stream // the joined streams by ID: decode looks a stream up per datagram
	unheard  int                  // joined streams no frame has come on yet; Heard's
	heard    chan struct{}        // closed when unheard reached 0 (heardAll)
	heardAll bool

	// The last group decode looked up: a batch is mostly from one group.
	lastGroup netip.AddrPort
	lastID    uint8
	lastEnc   streams.Encoding
	lastOK    bool

	queue    []Event // decoded, not yet returned
	head     int
	out      []Event      // during a read: the caller's slice, filled before the queue
	deadline atomic.Int64 // unix ns; 0: none

	keys      *keys.Store     // nil: frames are not verified
	keysView  *keys.View      // the keys verifier was made for; r.mu
	verifier  *frame.Verifier // nil: frames are not verified; r.mu
	nextCheck time.Time       // next look at the key files; ReadBatch's

	openings []*opening          // one per key file of Config.Private
	private  map[string]*opening // by stream name, for Join
	openBy   [256]*opening       // by stream ID: nil for a stream in the clear; r.mu

	reqMu     sync.Mutex
	reqSnd    *mcast.Sender
	reqClosed bool // Close has run: no request socket is opened again

	reqAddr netip.AddrPort    // the request socket's address: answers come to it; guarded by mu
	answers [256]*answerState // by stream ID; nil until an answer begins

	events, notices, malformed, mismatch, unknownKind, missing, duplicates,
	fragments, reassembled, badFragment, tooLarge, rejected, disowned, answerFrames, badAnswers,
	unauthenticated, unknownKey, badTag, unattested, notSealed, badSeal, sealed atomic.Uint64

	// counts holds each stream's counters by stream ID, set when it is
	// first joined (under mu); count adds to them without mu.
	counts [256]atomic.Pointer[streamCounts]
	seen   []uint8 // IDs of the streams ever joined, in order; guarded by mu
}

// An opening opens the sealed frames of the private streams of one key
// file (Config.Private).
type opening struct {
	keys   *keys.Store
	view   *keys.View    // the keys opener was made for; r.mu
	opener *frame.Opener // r.mu
}

// New joins the configured streams. Where its source check proves nothing
// (see Config.Insecure) it refuses with a *PortTrustError, unless Insecure;
// it looks in the network namespace of the calling thread, where it opens
// its sockets.
func New(cfg *Config) (*Receiver, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if err := cfg.Validate(); err != nil {
		if cfg.Source != nil {
			cfg.Source.Close()
		}
		return nil, err
	}
	var warnings []string
	var err error
	if cfg.Source == nil {
		if warnings, err = cfg.trust(); err != nil {
			return nil, err
		}
	}
	var ks *keys.Store
	if cfg.KeyFile != "" {
		if ks, err = keys.Open(cfg.KeyFile); err != nil {
			if cfg.Source != nil {
				cfg.Source.Close()
			}
			return nil, fmt.Errorf("receiver: %w", err)
		}
	}
	var mc Source = cfg.Source
	var mcr *mcast.Receiver
	if mc == nil {
		if mcr, err = mcast.NewReceiver(cfg.Mcast); err != nil {
			return nil, err
		}
		mc = mcr
	}
	sel := cfg.Streams
	if len(sel) == 0 {
		sel = streams.Default()
	}
	batch := mcast.DefaultBatch
	if cfg.Mcast != nil && cfg.Mcast.Batch > 0 {
		batch = cfg.Mcast.Batch
	}
	silence := cfg.Silence
	if silence == 0 {
		silence = DefaultSilence
	}
	if cfg.NoSilentNotices {
		silence = 0 // r.silence 0: none
	}
	maxMsg := cfg.MaxMessage
	if maxMsg == 0 {
		maxMsg = frame.MaxRawMessage
		if cfg.Encoding == streams.JSON {
			maxMsg = frame.MaxJSONMessage
		}
	}
	r := &Receiver{
		mc: mc, mcr: mcr, mcfg: cfg.Mcast, m: cfg.Map, encoding: cfg.Encoding, silence: silence,
		maxMsg: maxMsg, fragTO: cfg.FragmentTimeout,
		ds: make([]mcast.Datagram, batch), keys: ks, nextCheck: time.Now().Add(keys.ReloadEvery), warnings: warnings,
		heard: make(chan struct{}),
	}
	r.private = map[string]*opening{}
	byFile := map[string]*opening{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Private)) {
		f := cfg.Private[name]
		if byFile[f] == nil {
			ks, err := keys.Open(f)
			if err != nil {
				mc.Close()
				return nil, fmt.Errorf("receiver: private stream %s: %w", name, err)
			}
			byFile[f] = &opening{keys: ks}
			r.openings = append(r.openings, byFile[f])
		}
		r.private[name] = byFile[f]
	}
	r.refreshKeys()
	for _, s := range sel {
		if err := r.Join(s); err != nil {
			mc.Close()
			return nil, err
		}
	}
	if r.unheard == 0 {
		r.heardAll = true
		close(r.heard)
	}
	// The kernel's word on who holds the bridge's address: moot when
	// frames are authenticated or any sender is accepted.
	if src, any := cfg.Mcast.AcceptedSource(); !any && ks == nil && !cfg.NoOwnerCheck && mcr != nil {
		var w string
		if r.owner, w = openOwner(src, cfg.BridgeUID, time.Now()); w != "" {
			r.warnings = append(r.warnings, w)
		}
	}
	return r, nil
}

// Join starts receiving a stream.
func (r *Receiver) Join(s streams.Stream) error {
	if err := r.mc.Join(r.m.Addr(s, r.encoding)); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live[s.ID] == nil {
		r.joined = append(r.joined, s.ID)
	}
	r.live[s.ID] = &s
	r.openBy[s.ID] = r.private[s.Name]
	if r.trackers[s.ID] == nil {
		r.trackers[s.ID] = &tracker{heard: time.Now(), reasm: frame.Reassembler{MaxMessage: r.maxMsg, Timeout: r.fragTO}}
		r.unheard++
	}
	if r.counts[s.ID].Load() == nil {
		r.counts[s.ID].Store(&streamCounts{stream: s})
		r.seen = append(r.seen, s.ID)
	}
	return nil
}

// Leave stops receiving a stream.
func (r *Receiver) Leave(s streams.Stream) error {
	r.mu.Lock()
	if r.live[s.ID] != nil {
		r.joined = slices.DeleteFunc(r.joined, func(id uint8) bool { return id == s.ID })
	}
	r.live[s.ID] = nil
	if t := r.trackers[s.ID]; t != nil {
		t.reasm.Reset() // no timer expires it now: hold nothing for it
		if !t.first {
			t.first = true // not waited for: Heard
			r.heardOne()
		}
	}
	r.mu.Unlock()
	return r.mc.Leave(r.m.Addr(s, r.encoding))
}

// Heard returns a channel closed once a frame of the bridge's (an event,
// a heartbeat or any control frame) has come on every stream joined so
// far. On a JSON group the bridge sends frames only once it encodes that
// stream's events for someone, which it learns shortly after the join: a
// receiver that waits for Heard gets every event sent after, and sees
// any it missed as a gap. The bridge's heartbeats bound the wait.
func (r *Receiver) Heard() <-chan struct{} { return r.heard }

// heardOne counts a stream off Heard's wait. r.mu is held.
func (r *Receiver) heardOne() {
	if r.unheard--; r.unheard <= 0 && !r.heardAll {
		r.heardAll = true
		close(r.heard)
	}
}

// Warnings returns what the caller should tell its user about this
// receiver's safety, one sentence each, if anything: that any local user
// can forge events, where Config.Insecure or Mcast.AnySource let it start
// all the same. A command prints them at every start.
func (r *Receiver) Warnings() []string { return slices.Clone(r.warnings) }

// Mcast returns the underlying multicast receiver, for buffer sizes and
// socket statistics; nil for a receiver with a Config.Source.
func (r *Receiver) Mcast() *mcast.Receiver { return r.mcr }

// SetReadDeadline makes ReadBatch return os.ErrDeadlineExceeded once t has
// passed with nothing to return. The zero time means no deadline.
func (r *Receiver) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		r.deadline.Store(0)
	} else {
		r.deadline.Store(t.UnixNano())
	}
	return r.mc.SetReadDeadline(t)
}

// Silence returns how long nothing has arrived on a joined stream.
func (r *Receiver) Silence(s streams.Stream) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.trackers[s.ID]; t != nil {
		return time.Since(t.heard)
	}
	return 0
}

// ReadBatch waits for frames and notices and fills evs with as many as are
// ready, returning how many. Datagrams that are not valid frames for their
// group are dropped and counted, never returned. In steady state, raw
// frames cost no allocation.
func (r *Receiver) ReadBatch(evs []Event) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	for {
		if n := r.dequeue(evs); n > 0 {
			return n, nil
		}
		now := time.Now()
		r.checkTimers(now)
		if r.hasKeys() && !now.Before(r.nextCheck) {
			r.checkKeys(now)
		}
		if r.head < len(r.queue) {
			continue
		}
		user := r.deadline.Load()
		if user != 0 && now.UnixNano() >= user {
			return 0, os.ErrDeadlineExceeded
		}
		n, err := r.mc.ReadBatchUntil(r.ds, r.nextTimer(now)) // the caller's deadline is the socket's
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue // a timer or the caller's deadline: both checked above
			}
			return 0, err
		}
		now = time.Now()
		if r.hasKeys() && !now.Before(r.nextCheck) {
			r.checkKeys(now) // before the frames that may need a new key
		}
		r.owner.due(now) // after the datagrams arrived: a sender that bound the port since shows
		r.mu.Lock()
		r.out = evs[:0]
		for i := range r.ds[:n] {
			r.decode(&r.ds[i], now)
		}
		n = len(r.out)
		r.out = nil
		r.mu.Unlock()
		if n > 0 {
			r.count(evs[:n])
			return n, nil
		}
	}
}

// put passes on an event: straight into the caller's slice while it has
// room (one copy, none queued), then onto the queue for the next calls.
func (r *Receiver) put(ev *Event) {
	*r.slot() = *ev
}

// slot returns where the next event passed on goes: the caller's slice
// while it has room, then the queue for the next calls.
func (r *Receiver) slot() *Event {
	if n := len(r.out); n < cap(r.out) {
		r.out = r.out[:n+1]
		return &r.out[n]
	}
	r.queue = append(r.queue, Event{})
	return &r.queue[len(r.queue)-1]
}

// dequeue moves queued events to evs.
func (r *Receiver) dequeue(evs []Event) int {
	n := copy(evs, r.queue[r.head:])
	r.head += n
	if r.head == len(r.queue) {
		clear(r.queue) // drop references to payloads
		r.queue, r.head = r.queue[:0], 0
	}
	r.count(evs[:n])
	return n
}

// count counts the events and notices passed to the caller, and each
// stream's.
func (r *Receiver) count(evs []Event) {
	for i := range evs {
		ev := &evs[i]
		c := r.counts[ev.Stream.ID].Load() // nil: a stream never joined (cannot be)
		if ev.IsNotice() {
			r.notices.Add(1)
			if c != nil {
				c.notice(&ev.Notice)
			}
			continue
		}
		r.events.Add(1)
		if c != nil {
			c.frames.Add(1)
			if ev.Header.Kind == frame.KindEvent {
				c.events.Add(1)
			}
		}
	}
}

// notice counts n.
func (c *streamCounts) notice(n *Notice) {
	if int(n.Kind) < len(c.notices) {
		c.notices[n.Kind].Add(1)
	}
	switch n.Kind {
	case Gap:
		c.missing.Add(n.Count)
	case SocketDrops:
		c.socketDrops.Add(n.Count)
	case UpstreamDrops:
		c.upstreamDrops.Add(n.Count)
	case Rejected:
		if int(n.Reason) < len(c.rejected) {
			c.rejected[n.Reason].Add(1)
		}
	}
}

// snapshot returns c's counters.
func (c *streamCounts) snapshot() StreamStats {
	ss := StreamStats{Stream: c.stream, Frames: c.frames.Load(), Events: c.events.Load(), Missing: c.missing.Load(),
		SocketDrops: c.socketDrops.Load(), UpstreamDrops: c.upstreamDrops.Load()}
	for i := range c.notices {
		ss.Notices[i] = c.notices[i].Load()
	}
	for i := range c.rejected {
		ss.Rejected[i] = c.rejected[i].Load()
	}
	return ss
}

// checkTimers queues Silent and FragmentLost notices that are due.
func (r *Receiver) checkTimers(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range r.joined {
		s, t := r.live[id], r.trackers[id]
		if seq, ok := t.reasm.Expire(now); ok {
			r.note(s, Notice{Kind: FragmentLost, From: seq, Epoch: t.epoch})
		}
		if r.silence > 0 && !t.silent && now.Sub(t.heard) >= r.silence {
			t.silent = true
			r.note(s, Notice{Kind: Silent, Silence: now.Sub(t.heard), Epoch: t.epoch})
		}
	}
}

// hasKeys reports whether the receiver reads key files.
func (r *Receiver) hasKeys() bool { return r.keys != nil || len(r.openings) > 0 }

// checkKeys reloads the key files that changed. A file that became
// unreadable or invalid leaves the keys loaded before in force: the
// frames say so, if they stop verifying.
func (r *Receiver) checkKeys(now time.Time) {
	r.nextCheck = now.Add(keys.ReloadEvery)
	changed := false
	if r.keys != nil {
		c, _ := r.keys.Check()
		changed = changed || c
	}
	for _, o := range r.openings {
		c, _ := o.keys.Check()
		changed = changed || c
	}
	if changed {
		r.mu.Lock()
		r.refreshKeys()
		r.mu.Unlock()
	}
}

// refreshKeys makes a new verifier or opener when a key file's keys
// changed. r.mu is held (or r is not shared yet).
func (r *Receiver) refreshKeys() {
	for _, o := range r.openings {
		if v := o.keys.View(); v != o.view {
			o.view, o.opener = v, frame.NewOpener(v.Keys)
		}
	}
	if r.keys == nil {
		return
	}
	if v := r.keys.View(); v != r.keysView {
		r.keysView, r.verifier = v, frame.NewVerifier(v.Keys)
	}
}

// open opens a sealed datagram of a private stream in place, counting
// what it refuses.
func (r *Receiver) open(o *opening, d *mcast.Datagram) bool {
	switch o.opener.Open(d.Data, d.Group) {
	case nil:
		return true
	case frame.ErrNotSealed:
		r.notSealed.Add(1)
	case frame.ErrUnknownKey:
		r.unknownKey.Add(1)
	default:
		r.badSeal.Add(1)
	}
	return false
}

// verify checks a datagram's trailer when the receiver has keys, counting
// what it refuses.
func (r *Receiver) verify(d *mcast.Datagram, json bool) bool {
	if r.verifier == nil {
		return true
	}
	var err error
	if json {
		err = r.verifier.VerifyJSON(d.Data, d.Group)
	} else {
		err = r.verifier.VerifyRaw(d.Data, d.Group)
	}
	switch err {
	case nil:
		return true
	case frame.ErrUnauthenticated:
		r.unauthenticated.Add(1)
	case frame.ErrUnknownKey:
		r.unknownKey.Add(1)
	default:
		r.badTag.Add(1)
	}
	return false
}

// nextTimer returns when checkTimers next has something to do (zero: never).
func (r *Receiver) nextTimer(now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var next time.Time
	earlier := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, id := range r.joined {
		t := r.trackers[id]
		if r.silence > 0 && !t.silent {
			earlier(t.heard.Add(r.silence))
		}
		if t.reasm.Pending() {
			earlier(now.Add(100 * time.Millisecond))
		}
	}
	if r.hasKeys() { // an idle receiver still takes up rotated keys in time
		earlier(r.nextCheck)
	}
	return next
}

func (r *Receiver) note(s *streams.Stream, n Notice) {
	switch n.Kind {
	case Gap:
		r.missing.Add(n.Count)
	case Duplicate:
		r.duplicates.Add(1)
	case Rejected:
		r.rejected.Add(1)
	case Disowned:
		r.disowned.Add(n.Count)
	}
	r.put(&Event{Stream: *s, Encoding: r.encoding, Notice: n})
}

// parsed is one datagram's frame, checked by parse.
type parsed struct {
	h       frame.Header
	payload []byte               // the raw payload, or the whole JSON datagram
	js      *frame.JSONFrame     // JSON only
	fh      frame.FragmentHeader // fragments only
	piece   []byte               // fragments only
	frag    bool                 // a fragment
}

// fragment returns the fragment header of f, nil if f is no fragment. (A
// pointer into f itself would make every parsed escape to the heap.)
func (f *parsed) fragment() *frame.FragmentHeader {
	switch {
	case f.js != nil:
		return f.js.Fragment
	case f.frag:
		fh := f.fh
		return &fh
	}
	return nil
}

// What parse found of a datagram.
type parseResult int

const (
	isFrame     parseResult = iota
	notAFrame               // not a frame of the encoding (PROTOCOL.md's rejection table)
	badFragment             // a raw fragment whose fragment header is wrong
	refused                 // its trailer did not verify, or its seal did not open (counted)
	sealedFrame             // sealed, of a stream this receiver has no key for
)

// parse checks datagram d of encoding enc into f: its structure, its
// trailer when the receiver has keys (before parsing JSON, so that a
// forgery costs no parsing; after the raw header, which costs nothing),
// or for a private stream its seal (opening it in place), and a raw
// fragment's header. The stream is the one of ID id, or, with id -1 (an
// answer), the one its header names. r.mu is held.
func (r *Receiver) parse(d *mcast.Datagram, enc streams.Encoding, f *parsed, id int) parseResult {
	if enc == streams.JSON {
		if !r.verify(d, true) {
			return refused
		}
		js, err := frame.ParseJSON(d.Data)
		if err != nil {
			return notAFrame
		}
		f.h, _ = js.Header() // checked by ParseJSON
		f.js, f.payload, f.piece, f.frag = js, d.Data, js.Data, js.Fragment != nil
		return isFrame
	}
	var err error
	if f.payload, err = frame.ParseInto(&f.h, d.Data); err != nil {
		return notAFrame
	}
	if id < 0 {
		if s := r.answerStream(&f.h); s != nil {
			id = int(s.ID)
		}
	}
	var o *opening
	if id >= 0 {
		o = r.openBy[id]
	}
	switch {
	case o != nil:
		if !r.open(o, d) {
			return refused
		}
	case f.h.Flags&frame.FlagSealed != 0:
		return sealedFrame
	case !r.verify(d, false):
		return refused
	}
	if f.h.Kind == frame.KindFragment {
		if f.fh, f.piece, err = frame.ParseFragment(f.payload); err != nil {
			return badFragment
		}
		f.frag = true
	}
	return isFrame
}

// noteSealed gives the stream's Sealed notice, once.
func (r *Receiver) noteSealed(s *streams.Stream, t *tracker, h *frame.Header) {
	if !t.sealedNoted {
		t.sealedNoted = true
		r.note(s, Notice{Kind: Sealed, From: h.Seq, Epoch: h.Epoch})
	}
}

// decode checks one datagram and queues what it yields. r.mu is held.
func (r *Receiver) decode(d *mcast.Datagram, now time.Time) {
	if d.Group != r.lastGroup || !r.lastOK {
		if d.Group == r.reqAddr {
			r.answer(d, now) // to our request socket, not a group
			return
		}
		r.lastID, r.lastEnc, r.lastOK = r.m.Index(d.Group)
		r.lastGroup = d.Group
	}
	id, enc := r.lastID, r.lastEnc
	if !r.lastOK {
		if r.mcr == nil && d.Group.Addr().IsLoopback() {
			// From another Source, an answer to a request of the
			// host's, with the address it was sent to (Config.Source).
			r.answer(d, now)
			return
		}
		r.mismatch.Add(1)
		return
	}
	s, t := r.live[id], r.trackers[id]
	if s == nil || t == nil {
		return // left meanwhile
	}
	if d.Drops > 0 {
		r.note(s, Notice{Kind: SocketDrops, Count: uint64(d.Drops), Epoch: t.epoch})
	}
	if d.Lost > 0 {
		r.note(s, Notice{Kind: UpstreamDrops, Count: uint64(d.Lost), Epoch: t.epoch})
	}
	var f parsed
	switch r.parse(d, enc, &f, int(id)) {
	case notAFrame:
		r.malformed.Add(1)
		return
	case badFragment:
		r.badFragment.Add(1)
		return
	case refused:
		return
	case sealedFrame:
		r.sealed.Add(1)
		r.noteSealed(s, t, &f.h)
		return
	}
	if enc == streams.JSON && f.h.Flags&frame.FlagSealed != 0 {
		// The JSON group of a private stream carries its heartbeats and
		// goodbye alone: say why nothing else comes, and keep them for
		// liveness.
		r.noteSealed(s, t, &f.h)
		if f.h.Kind != frame.KindHeartbeat && f.h.Kind != frame.KindGoodbye {
			r.sealed.Add(1)
			return
		}
	}
	h, payload, js, piece, frag := f.h, f.payload, f.js, f.piece, f.fragment()
	// A generic netlink group's number is the kernel's choice, made when
	// its family registers: the address alone names the stream.
	if h.Family != s.Family || (h.Group != s.Group && s.Family != streams.FamilyGeneric) {
		r.mismatch.Add(1)
		return
	}
	if h.Kind < frame.KindEvent || h.Kind > frame.KindFragment {
		r.unknownKind.Add(1)
		return
	}
	switch {
	case h.Kind == frame.KindGoodbye && h.Flags&frame.FlagDropped == 0:
		r.owner.goodbye(now) // delivered: it only says the bridge stopped
	case r.owner.ok():
		// A goodbye with FlagDropped among them: a stream a reload
		// dropped. The bridge and its socket go on, so it marks
		// nothing; it is delivered only from the bridge, as an event
		// is (owner).
	case r.owner.closing() && !t.ended:
		// The bridge is closing, but this stream's goodbye has not come:
		// its frames until then are the bridge's (owner.closing). Not
		// after a dropped stream's goodbye: no other comes to end this.
	case t.ended && h.Epoch != t.epoch && r.owner.restarted(now):
		// A new epoch after this stream's goodbye, from the bridge's uid
		// alone: a restart, even from a socket the goodbye marked
		// (owner.restarted).
	default:
		r.unattested.Add(1)
		return
	}
	t.heard, t.silent = now, false
	if !t.first && h.Kind != frame.KindGoodbye {
		// A goodbye says a bridge stopped, not that one encodes for us.
		t.first = true
		r.heardOne()
	}
	note := func(n Notice) { r.note(s, n) }
	if h.Kind == frame.KindFragment {
		ev := Event{Stream: *s, Encoding: enc, Header: h, Payload: payload, JSON: js, Source: d.Source}
		if r.reassemble(s, t, &ev, *frag, piece, now) && t.observe(&ev.Header, r.clock(&ev.Header, now), note) {
			r.put(&ev)
		}
		return
	}
	if t.observe(&h, r.clock(&h, now), note) {
		// Field by field where it goes, every field (the slot holds an
		// older event): an Event is a few hundred bytes, which a
		// composite literal would build aside and then copy.
		ev := r.slot()
		ev.Stream, ev.Encoding, ev.Header = *s, enc, h
		ev.Payload, ev.JSON, ev.Source, ev.Notice = payload, js, d.Source, Notice{}
	}
}

// clock returns the time a frame is checked at (unix ns): now, when it
// came from the loopback groups; its own time, from another Source,
// whose frames may be history replayed and come from a host whose clock
// is not this one's (Config.Source).
func (r *Receiver) clock(h *frame.Header, now time.Time) int64 {
	if r.mcr == nil {
		return h.Time
	}
	return now.UnixNano()
}

// reassemble feeds a fragment to the stream's reassembler and, when the
// message is complete, turns ev into the whole message's event.
func (r *Receiver) reassemble(s *streams.Stream, t *tracker, ev *Event, f frame.FragmentHeader, piece []byte, now time.Time) bool {
	r.fragments.Add(1)
	if t.known && ev.Header.Epoch != t.epoch {
		// Let observe see the new epoch first, so that the restart is
		// reported before anything of the new bridge.
		t.reasm = frame.Reassembler{MaxMessage: r.maxMsg, Timeout: r.fragTO}
	}
	partial := t.reasm.Seq()
	msg, done, abandoned, err := t.reasm.AddPiece(ev.Header, f, piece, now)
	if abandoned {
		r.note(s, Notice{Kind: FragmentLost, From: partial, Epoch: t.epoch})
	}
	if errors.Is(err, frame.ErrFragmentTooLarge) {
		r.tooLarge.Add(1)
		return false
	}
	if err != nil {
		r.badFragment.Add(1)
		return false
	}
	if !done {
		return false
	}
	r.reassembled.Add(1)
	msg = bytes.Clone(msg) // the reassembler reuses its buffer
	ev.Header.Kind = frame.KindEvent
	ev.Header.PayloadLen = uint32(len(msg))
	ev.Payload = msg
	if ev.Encoding == streams.JSON {
		f, err := frame.ParseJSON(msg)
		if err != nil {
			r.malformed.Add(1)
			return false
		}
		ev.JSON = f
		ev.Header, _ = f.Header()
	}
	return true
}

// RequestResync asks the bridge to send the current state of the given
// streams (none: every stream) to this receiver alone: an answer, read on
// the request socket and returned by ReadBatch as the stream's
// resync-begin, dump events and resync-end, each with frame.FlagAnswer
// set and the stream's last sequence number at the time of the dump
// (PROTOCOL.md, Answers). An answer that arrives incomplete is reported
// with an AnswerLost notice instead of its resync-end. The answer is in
// the receiver's encoding. Requests are rate-limited by the bridge (a
// request refused gets no answer: ask again later); a bridge started
// with --requests=false ignores them.
//
// The request socket is opened on first use, in the calling thread's
// network namespace, and closed by Close. With a Config.Source, the
// request goes through the Source if it is a Requester (an answer then
// comes through it, to every reader of the Source's host), and otherwise
// fails with ErrNoRequests.
func (r *Receiver) RequestResync(ss ...streams.Stream) error {
	if q, ok := r.mc.(Requester); ok && r.mcr == nil {
		r.reqMu.Lock()
		closed := r.reqClosed
		r.reqMu.Unlock()
		if closed {
			return fmt.Errorf("resync request: %w", mcast.ErrClosed)
		}
		return q.RequestResync(ss...)
	}
	r.reqMu.Lock()
	defer r.reqMu.Unlock()
	if err := r.openRequests(); err != nil {
		return err
	}
	groups := []uint32{0}
	if len(ss) > 0 {
		groups = groups[:0]
		for _, s := range ss {
			groups = append(groups, s.Group)
		}
	}
	for _, g := range groups {
		h := frame.Header{Kind: frame.KindRequest, Group: g, Time: time.Now().UnixNano()}
		if r.encoding == streams.JSON {
			h.Flags = frame.FlagJSON
		}
		b := frame.Append(nil, h, nil)
		if err := r.reqSnd.Send(b, r.m.Control()); err != nil {
			return fmt.Errorf("resync request: %w", err)
		}
	}
	return nil
}

// openRequests opens the request socket if it is not open. r.reqMu is held.
func (r *Receiver) openRequests() error {
	if r.reqClosed {
		return fmt.Errorf("resync request: %w", mcast.ErrClosed)
	}
	if r.mcr == nil {
		return ErrNoRequests
	}
	if r.reqSnd != nil {
		return nil
	}
	cfg := &mcast.SenderConfig{EphemeralPort: true}
	if mc := r.mcfg; mc != nil {
		cfg.Interface, cfg.AllowNonLoopback = mc.Interface, mc.AllowNonLoopback
	}
	snd, err := mcast.NewSender(cfg)
	if err != nil {
		return fmt.Errorf("resync request: %w", err)
	}
	// Answers come back to this socket: read it with the groups.
	if err := r.mcr.Attach(snd); err != nil {
		snd.Close()
		return fmt.Errorf("resync request: %w", err)
	}
	r.reqSnd = snd
	r.mu.Lock()
	r.reqAddr = snd.Source()
	r.mu.Unlock()
	return nil
}

// Stats returns the Receiver's counters.
func (r *Receiver) Stats() Stats {
	r.mu.Lock()
	held := 0
	for _, t := range r.trackers {
		if t != nil {
			held += t.reasm.Held()
		}
	}
	for _, a := range r.answers {
		if a != nil {
			held += a.reasm.Held()
		}
	}
	var per []StreamStats
	if len(r.seen) > 0 {
		per = make([]StreamStats, 0, len(r.seen))
	}
	for _, id := range r.seen {
		ss := r.counts[id].Load().snapshot()
		ss.Joined = r.live[id] != nil
		if t := r.trackers[id]; t != nil {
			ss.Heard = t.heard
		}
		per = append(per, ss)
	}
	r.mu.Unlock()
	var ms mcast.ReceiverStats
	if r.mcr != nil {
		ms = r.mcr.Stats()
	}
	return Stats{Streams: per,
		Mcast: ms, Events: r.events.Load(), Notices: r.notices.Load(),
		Malformed: r.malformed.Load(), Mismatch: r.mismatch.Load(), UnknownKind: r.unknownKind.Load(),
		Missing: r.missing.Load(), Duplicates: r.duplicates.Load(), Fragments: r.fragments.Load(),
		Reassembled: r.reassembled.Load(), BadFragment: r.badFragment.Load(), TooLarge: r.tooLarge.Load(),
		Reassembly: uint64(held), Rejected: r.rejected.Load(), Disowned: r.disowned.Load(),
		Answers: r.answerFrames.Load(), BadAnswers: r.badAnswers.Load(),
		Unauthenticated: r.unauthenticated.Load(), UnknownKey: r.unknownKey.Load(), BadTag: r.badTag.Load(),
		Unattested: r.unattested.Load(), NotSealed: r.notSealed.Load(), BadSeal: r.badSeal.Load(), Sealed: r.sealed.Load(),
	}
}

// Close leaves every stream, closes the request socket and unblocks a
// pending ReadBatch, which returns mcast.ErrClosed. It is safe to call more
// than once: later calls return nil.
func (r *Receiver) Close() error {
	r.reqMu.Lock()
	var err error
	if r.reqSnd != nil {
		// Detached first: the multicast receiver reads it no more.
		err = errors.Join(r.mcr.Detach(r.reqSnd), r.reqSnd.Close())
		r.reqSnd = nil
	}
	r.reqClosed = true
	r.reqMu.Unlock()
	return errors.Join(err, r.mc.Close(), r.owner.Close())
}
