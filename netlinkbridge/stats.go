package netlinkbridge

import (
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
