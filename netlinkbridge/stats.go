package netlinkbridge

import (
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/sys/procstat"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// Stats counts what the bridge did.
type Stats struct {
	Source       kernel.Stats
	Events       uint64 // kernel messages sent on a stream
	Datagrams    uint64 // datagrams handed to the sink
	NotStreams   uint64 // messages on groups that are not bridged (joined for interface names)
	JSONSkipped  uint64 // events not encoded in JSON because nobody had joined the JSON group
	Fragmented   uint64 // messages sent in fragments
	TooLarge     uint64 // messages over frame.MaxRawMessage (dropped, logged)
	JSONTooLarge uint64 // JSON frames over frame.MaxJSONMessage (not sent, logged; the raw frame was)
	SendErrors   uint64 // failed WriteBatch calls
	// Handoffs counts the times a slow send made the reader hand sending
	// to the relay (Config.HandoffAfter); HandoffDropped the datagrams
	// the relay had no room for (receivers see a gap).
	Handoffs       uint64
	HandoffDropped uint64
	Heartbeats     uint64 // heartbeat frames
	Overruns       uint64 // overrun announcements (each one frame per stream)
	Resyncs        uint64 // resyncs run
	DumpFailures   uint64 // dumps that failed (the stream was not resynced)
	Requests       uint64 // valid resync requests received
	BadRequests    uint64 // datagrams on the control group that were not valid requests
	// RequestsRefused counts valid requests not answered: their sender's
	// or everyone's token bucket was empty (Config.RequestBurst, ...).
	RequestsRefused uint64
	Answers         uint64 // resyncs of one stream sent to one requester alone
	GenlJoined      uint64 // generic netlink groups joined after they registered
	GenlGone        uint64 // generic netlink groups that unregistered while bridged
	// Panics counts panics recovered in the bridge's loop (a decoder's,
	// say): each dropped the message being handled, was logged with it in
	// hex, and restarted the bridge with a new epoch. Other families'
	// bridges go on.
	Panics uint64
	// GenlRefused counts generic netlink groups not joined when they
	// registered: the kernel lets only privileged sockets join them
	// (Config.GenlProbe) and they are not in Config.Expose.
	GenlRefused uint64
	// XfrmRedacted counts xfrm messages whose key material the bridge
	// overwrote with zeros before framing them (Config.XfrmKeys).
	XfrmRedacted uint64
	// GroupsRefused counts streams whose netlink group the kernel refused
	// to let the bridge join for lack of a capability (Bridge.Refused
	// says which and what is missing); the others went on.
	GroupsRefused uint64
	// ResyncTime is the time spent in resyncs (dumps and sending them),
	// all of them together: over Resyncs, their mean duration.
	ResyncTime time.Duration
	// Frames counts the frames sent to the streams' groups, by kind.
	Frames FrameCounts
	// Streams holds each bridged stream's counters, in the order of the
	// configuration; nil for a bridge of no stream.
	Streams []StreamStats
}

// FrameCounts counts frames sent to the streams' groups, by kind: one per
// encoding a frame is sent in (a raw and a JSON frame of one event count
// two), and one for a message sent in fragments. Answers to requests,
// sent to their requester alone, are not counted here (Stats.Answers).
// The zero value is no frames.
type FrameCounts struct {
	Event, Heartbeat, Overrun, ResyncBegin, ResyncEnd, Goodbye uint64
}

// StreamStats counts what the bridge sent on one stream. Every counter
// only grows; the zero value is a stream that sent nothing.
type StreamStats struct {
	Name string // the stream's name (streams.Stream.Name)
	// Raw and JSON tell which encodings the stream is sent in.
	Raw, JSON bool
	// Events counts the kernel messages sent on the stream, those of
	// resyncs (dumps) included.
	Events uint64
	// RawBytes counts the bytes of those netlink messages (the raw
	// frames' payloads, without headers); zero unless Raw.
	RawBytes uint64
	// JSONEvents counts the events encoded in JSON and sent; JSONBytes
	// the bytes of their JSON frames (a frame sent in fragments counts
	// whole, its fragment headers not). Zero unless JSON.
	JSONEvents, JSONBytes uint64
	// JSONSkipped counts the events not encoded in JSON because nobody
	// had joined the stream's JSON group.
	JSONSkipped uint64
	// JSONJoined tells whether JSON is encoded for the stream now: its
	// JSON group is joined by someone (or Config.JSONAlways, or the
	// memberships are unreadable). False when the stream has no JSON.
	JSONJoined bool
	// LastEvent is when the stream's last event was read from the
	// kernel (its frame's time); zero: none yet.
	LastEvent time.Time
}

// streamStats fills in st's per-stream counters and what they add up to.
func (b *Bridge) streamStats(st *Stats) {
	k := func(kind frame.Kind) uint64 { return b.frames[kind].Load() }
	st.Frames = FrameCounts{Heartbeat: k(frame.KindHeartbeat), Overrun: k(frame.KindOverrun),
		ResyncBegin: k(frame.KindResyncBegin), ResyncEnd: k(frame.KindResyncEnd), Goodbye: k(frame.KindGoodbye)}
	st.ResyncTime = time.Duration(b.resyncTime.Load())
	streams := *b.streamsNow.Load() // any goroutine may ask: the loop's, as published
	if len(streams) > 0 {
		st.Streams = make([]StreamStats, len(streams))
	}
	for i, s := range streams {
		ss := StreamStats{
			// A sealed stream's JSON group carries heartbeats alone.
			Name: s.stream.Name, Raw: s.raw != nil, JSON: s.json != nil && s.seal == nil, Events: s.events.Load(),
			RawBytes: s.rawBytes.Load(), JSONBytes: s.jsonBytes.Load(), JSONSkipped: s.jsonSkipped.Load(),
			JSONJoined: s.json != nil && s.jsonOn.Load(),
		}
		if ss.JSON {
			// Every event is encoded, skipped, or encoded too large to send.
			ss.JSONEvents = ss.Events - min(ss.Events, ss.JSONSkipped+s.jsonTooLarge.Load())
			st.Frames.Event += ss.JSONEvents
		}
		if ss.Raw {
			st.Frames.Event += ss.Events
		}
		if ns := s.lastEvent.Load(); ns != 0 {
			ss.LastEvent = time.Unix(0, ns)
		}
		st.Events += ss.Events
		st.Streams[i] = ss
	}
}

// SetStats is a snapshot of a Set's counters: every bridge's and their
// sender's. Unlike StatsReport it reads nothing of the process.
// The zero value is a set of no bridges that sent nothing.
type SetStats struct {
	// Families holds every family's bridge, by family name
	// (streams.FamilyName).
	Families map[string]Stats
	// Sender is the multicast sender the bridges share.
	Sender mcast.SenderStats
}

// Stats returns the counters of every bridge of the set and of their
// sender. It may be called from any goroutine, while the set runs; it
// takes no lock the bridges' loops take.
func (s *Set) Stats() SetStats {
	r := SetStats{Families: make(map[string]Stats, len(s.bridges)), Sender: s.snd.Stats()}
	for _, b := range s.bridges {
		r.Families[streams.FamilyName(b.family)] = b.Stats()
	}
	return r
}

// StatsReport is a snapshot of a Set's counters and its process's costs:
// the JSON document that `nlmcast bridge --stats FILE` writes and that
// `nlmcast bench` reads, one schema for both.
type StatsReport struct {
	// Snap numbers the reports a process wrote, from 1; the writer sets it.
	Snap int64 `json:"snap"`
	// Bridge is the first family's bridge (rtnetlink when it is bridged).
	Bridge Stats `json:"bridge"`
	// Families holds every family's bridge, by family name.
	Families map[string]Stats `json:"families"`
	// Sender is the multicast sender the bridges share.
	Sender mcast.SenderStats `json:"sender"`
	// Process is the process's CPU time, peak RSS and allocations.
	Process procstat.Snapshot `json:"process"`
	// Warnings are what the set warned of when it started (Set.Warnings),
	// such as a source port that any user may bind; none: omitted.
	Warnings []string `json:"warnings,omitempty"`
	// Receivers tells of the sockets bound to the streams' ports, per
	// uid: joined, idle, detached for the per-user limit.
	Receivers ReceiversReport `json:"receivers"`
}

// StatsReport returns the counters of every bridge of the set, of their
// sender, and of the process.
func (s *Set) StatsReport() StatsReport {
	r := StatsReport{Families: map[string]Stats{}, Sender: s.snd.Stats(), Process: procstat.Take(), Warnings: s.Warnings()}
	for i, b := range s.bridges {
		st := b.Stats()
		if i == 0 {
			r.Bridge = st
		}
		r.Families[streams.FamilyName(b.family)] = st
	}
	if s.receivers != nil {
		r.Receivers = s.receivers.snapshot()
	}
	return r
}
