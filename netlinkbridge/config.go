package netlinkbridge

import (
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// Config configures a Bridge or a Set. The zero Config, like a nil
// *Config, means every default. New, NewWithSource and NewSet check it
// with Validate.
type Config struct {
	// Streams are the streams to bridge: for a Bridge all of one netlink
	// family, for a Set of any. A private one needs an entry in Private.
	// Zero: every rtnetlink stream (streams.Default).
	Streams []streams.Stream
	// Private says who may read each private stream, by stream name (the
	// entry "*" stands for every private stream not named). Private
	// streams are those the kernel shows only to privileged processes
	// (Stream.Privileged, or found so by GenlProbe: process events,
	// conntrack, some generic netlink groups) and, with NetNS or AllNSID,
	// every stream: other namespaces' events are private to them. Their
	// frames are sealed under the entry's key file, so that only those who
	// can read the file can read the stream (PROTOCOL.md, Sealed frames),
	// or sent in the clear where the entry says Cleartext. A stream that is
	// not private may be named too, to seal it. Zero: no stream is sealed,
	// and a private stream in Streams is refused with a *PrivilegedError
	// (a *NamespaceError with NetNS or AllNSID).
	Private map[string]Access
	// XfrmKeys keeps IPsec key material in the frames of xfrm streams
	// (authentication, encryption, AEAD and compression keys of SA
	// messages); every xfrm stream bridged must then be sealed under a key
	// file in Private, or Validate refuses it: keys are for the key file's
	// readers alone. Zero: the bridge overwrites every key byte with zeros
	// in the netlink message itself before framing it, so that no frame,
	// raw or JSON, sealed or not, holds a key (lengths are kept; JSON says
	// key_redacted; Stats.XfrmRedacted counts them).
	XfrmKeys bool
	// Map assigns groups and ports; it must pass Map.Validate. Zero:
	// streams.DefaultBase and streams.DefaultPort.
	Map streams.Map
	// Encodings are the encodings to send, each streams.Raw or
	// streams.JSON. Zero: raw and JSON.
	Encodings []streams.Encoding
	// NetNS is a network namespace file descriptor whose events are read:
	// the netlink sockets are opened in it. Multicast is still sent from
	// the calling thread's namespace, so every stream is private (see
	// Private), and every event frame carries the id that namespace gives
	// the read one (frame.FlagNSID; New has the kernel assign one if it has
	// none, which takes CAP_NET_ADMIN). Not with AllNSID. Not negative.
	// Zero: the calling thread's namespace.
	NetNS int
	// AllNSID also reads rtnetlink events of every network namespace that
	// has an id in the bridged one (NETLINK_LISTEN_ALL_NSID; see `ip netns
	// set`); their frames carry that id (frame.FlagNSID). Every stream must
	// then be an rtnetlink one, and is private (see Private). Zero: only
	// the bridged namespace's events.
	AllNSID bool
	// ReadBuffer is the netlink socket's receive buffer in bytes, not
	// negative. Zero: DefaultReadBuffer.
	ReadBuffer int
	// Batch is how many netlink datagrams are read per system call, not
	// negative. Zero: DefaultBatch.
	Batch int
	// Heartbeat is how often an idle stream gets a heartbeat frame, not
	// negative. Zero: DefaultHeartbeat.
	Heartbeat time.Duration
	// NoHeartbeats turns heartbeats off; Heartbeat must then be zero.
	// Zero: heartbeats every Heartbeat.
	NoHeartbeats bool
	// ResyncInterval is the least time between the starts of two
	// multicast resyncs (after overruns, or Bridge.Request), not
	// negative; those in between are coalesced into the next one.
	// Requests from receivers are answered to each alone, bounded by the
	// token buckets below instead. Zero: DefaultResyncInterval.
	ResyncInterval time.Duration
	// NoRequests turns off the listener for resync requests on
	// Map.Control(). Zero: requests are accepted from any local process
	// and answered to their sender alone (unicast), as far as the token
	// buckets below allow.
	NoRequests bool
	// RequestBurst is how many requests one sender (an address and port)
	// may have answered at once; not negative. Zero:
	// DefaultRequestBurst.
	RequestBurst int
	// RequestEvery is how often a sender earns one more answer, up to
	// RequestBurst; not negative. Zero: DefaultRequestEvery.
	RequestEvery time.Duration
	// TotalRequestBurst is how many requests of all senders together may
	// be answered at once, so that many ports of one user cost no more;
	// not negative. Zero: DefaultTotalRequestBurst.
	TotalRequestBurst int
	// TotalRequestEvery is how often all senders together earn one more
	// answer, up to TotalRequestBurst; not negative. Zero:
	// DefaultTotalRequestEvery.
	TotalRequestEvery time.Duration
	// AnswerRate is how many datagrams a second an answer is sent to its
	// requester at most, so that a large table does not overflow the
	// requester's receive buffer; not negative. Zero: DefaultAnswerRate.
	AnswerRate int
	// JSONAlways encodes every event in JSON even when nobody has joined
	// the stream's JSON group. Zero: JSON, the costly encoding, is made
	// only for JSON groups that some socket of the bridge's network
	// namespace has joined on the sender's interface, as listed in
	// /proc/net/igmp, checked every MembersInterval. Heartbeats go to a
	// JSON group only while its JSON is encoded, and one goes there at
	// once when a check finds it newly joined: a JSON receiver's first
	// frame says that the events after it are encoded
	// (receiver.Receiver.Heard). Raw frames and the other control frames
	// are always sent.
	JSONAlways bool
	// KeyFile is a key file (package keys, `nlmcast keygen`): every frame
	// sent, but those of sealed streams (which their seal authenticates),
	// ends with an authentication trailer under its signing key, and the
	// file is reloaded when it changes, so keys rotate without a restart.
	// Zero: frames are not authenticated.
	KeyFile string
	// HandoffAfter bounds how long the netlink reader may spend in one
	// multicast send while it is behind (its last read took Batch
	// datagrams' worth of messages or more: the kernel had a backlog),
	// not negative. The reader sends each batch itself, with no thread
	// hand-off. Thousands of sockets joined to a group make every send
	// slow (the kernel charges delivery to each to the sender); when a
	// send takes longer than this while the reader is behind, the reader
	// hands the following batches to a relay goroutine and goes back to
	// reading netlink. When the relay is full the reader waits for it
	// while the netlink socket's buffer has room (a quarter and 2 MiB
	// free) for 2 s at most, and then drops what does not fit (counted,
	// logged, seen by receivers as a gap): slow sends cost latency, then
	// multicast datagrams, not a netlink overrun. It sends by itself again once
	// the relay is empty and sends have been fast for a second. Zero:
	// DefaultHandoffAfter.
	HandoffAfter time.Duration
	// NoHandoff keeps every send on the reader's thread, however slow;
	// HandoffAfter must then be zero. Zero: hand-off after HandoffAfter.
	NoHandoff bool
	// MaxSocketsPerUID is how many sockets one user may have bound to
	// each of the streams' ports (a stream's raw or JSON port) in the
	// sender's network namespace; not negative. The kernel makes the
	// sender pay for every datagram delivered to every such socket, read
	// or not, so a user with thousands of them slows the bridge for
	// everyone. Every ReceiversInterval a Set lists them (sock_diag) and
	// detaches those of a user beyond the limit on a port, idle ones
	// first (sockdiag.Detach: the socket stays open but receives nothing
	// more; needs CAP_SYS_PTRACE and CAP_NET_RAW), logging and counting
	// them. Per port, not in all: a receiving process needs one socket per
	// stream and encoding, and the cost of a datagram grows with the
	// sockets of its port alone. Sockets of root and of the bridge's own
	// effective uid are not limited. Zero: DefaultMaxSocketsPerUID.
	MaxSocketsPerUID int
	// NoSocketLimit turns the limit off; MaxSocketsPerUID must then be
	// zero. Sockets are still listed and idle ones reported. Zero: the
	// limit is MaxSocketsPerUID.
	NoSocketLimit bool
	// GenlProbe says which generic netlink groups of Streams the kernel
	// lets a socket without capabilities join (kernel.ProbeGenl's answer,
	// by stream name). The kernel does not list the capability flags of a
	// group (GENL_MCAST_CAP_NET_ADMIN, GENL_MCAST_CAP_SYS_ADMIN) and adds
	// them to more groups over time, so New tries: a stream the probe
	// finds privileged is privileged, whatever Stream.Privileged says, and
	// is refused with a *PrivilegedError unless it is in Expose. A group
	// not registered when New runs is probed when it appears, and not
	// joined if it is privileged and not in Expose. Where the probe cannot
	// tell (an error, or a group not registered) Stream.Privileged stands;
	// generic netlink groups outside the catalog are privileged anyway.
	// Zero: kernel.ProbeGenl.
	GenlProbe func(netns int, ss []streams.Stream) (map[string]kernel.Access, error)
	// Alive, when not nil, is called every AliveEvery by a goroutine of
	// Run (Bridge.Run; for a Set, Set.Run, once for all its bridges), but
	// only when every bridge's event loop has come round since the
	// previous check: a loop that hangs (a read that never returns, a send
	// that blocks, a handler that never ends) stops the calls while the
	// process lives on. A service manager's watchdog is the intended user
	// (nlmcast bridge sends sd_notify WATCHDOG=1 from it). While it is set
	// each loop wakes at least every AliveEvery/2, even with nothing due
	// and no heartbeats. It must not block. Zero: no calls, and a loop
	// wakes only for events and what is due.
	Alive func()
	// AliveEvery is how often Alive is called while every loop comes
	// round; not negative. Zero: DefaultAliveEvery.
	AliveEvery time.Duration
	// Sender configures the multicast socket; it must pass its Validate.
	// Nil: loopback defaults.
	Sender *mcast.SenderConfig
	// Logger receives warnings (overruns, drops) and lifecycle messages.
	// Nil: slog.Default().
	Logger *slog.Logger

	shared *sharedSender // set by NewSet: one sender for every family
}

// An Access says who may read a private stream (Config.Private).
type Access struct {
	// KeyFile is a key file (package keys, `nlmcast keygen`, meant to be
	// readable by the group of the stream's readers): the stream's frames
	// are sealed under its signing key, and the file is reloaded when it
	// changes, as Config.KeyFile is. Sealed frames are raw: the stream
	// has no JSON encoding. Zero: Cleartext must be set.
	KeyFile string
	// Cleartext sends the stream in the clear, where every local user of
	// the namespace multicast is sent in can read it. KeyFile must then be
	// empty. Zero: sealed under KeyFile.
	Cleartext bool
}

// Defaults of Config.
const (
	DefaultReadBuffer     = kernel.DefaultReadBuffer
	DefaultBatch          = kernel.DefaultBatch
	DefaultHeartbeat      = time.Second
	DefaultResyncInterval = time.Second
	// DefaultRequestBurst lets a Mirror of every rtnetlink table (14
	// streams) be answered at once as it starts.
	DefaultRequestBurst      = 16
	DefaultRequestEvery      = time.Second
	DefaultTotalRequestBurst = 32
	DefaultTotalRequestEvery = 500 * time.Millisecond
	// DefaultAnswerRate sends a table of 100,000 routes in a second;
	// a receive buffer of 4 MiB holds what a busy reader leaves.
	DefaultAnswerRate = 100000
	// MembersInterval is how often the bridge reads the host's multicast
	// memberships to learn which JSON groups are joined.
	MembersInterval = 100 * time.Millisecond
	// DefaultHandoffAfter is ten times what a full batch (128 datagrams)
	// costs with a few receivers and a few idle sockets per port (under
	// 0.5 ms), so that a peak-rate burst is sent late rather than dropped;
	// 2,000 idle sockets on a group make such a batch take 60 ms. And it
	// is short beside the time the netlink buffer lasts at the kernel's
	// peak rate (DefaultReadBuffer holds about 10,000 events: 50 ms at
	// 200,000 events/s).
	DefaultHandoffAfter = 5 * time.Millisecond
	// DefaultMaxSocketsPerUID lets one user run eight receivers of the
	// same stream and encoding at once (an `nlmcast listen` of every
	// stream in both encodings is one socket on each of 36 ports), and
	// bounds what a user's unread sockets add to each datagram to eight
	// deliveries (README, "Receivers that do not read").
	DefaultMaxSocketsPerUID = 8
	// ReceiversInterval is how often a Set lists the sockets bound to its
	// streams' ports, to report idle ones and enforce MaxSocketsPerUID.
	ReceiversInterval = 2 * time.Second
	// DefaultAliveEvery is how often Config.Alive is called: half of a
	// 10 s watchdog.
	DefaultAliveEvery = 5 * time.Second
)

// A ConfigError reports a Config field that breaks a rule. Find it with
// errors.As. Errors of the Sender field are *mcast.ConfigError, a
// privileged stream with no entry in Private is a *PrivilegedError, and
// another namespace's stream with none a *NamespaceError.
type ConfigError struct {
	Field  string // the field's name, such as "Heartbeat"
	Value  any    // the value refused; nil when Reason says it
	Reason string // what is wrong, such as "must not be negative"
}

func (e *ConfigError) Error() string {
	if e.Value == nil {
		return fmt.Sprintf("netlinkbridge: Config.%s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("netlinkbridge: Config.%s %v: %s", e.Field, e.Value, e.Reason)
}

// PrivilegedError is returned for a stream the kernel shows only to
// privileged processes that has no entry in Config.Private: nobody said
// who may read it.
type PrivilegedError struct {
	Stream streams.Stream
	// Probed is true when the stream is privileged because the kernel
	// refused to let a socket without capabilities join its group
	// (Config.GenlProbe), though nlmcast's catalog marks it unprivileged.
	Probed bool
}

func (e *PrivilegedError) Error() string {
	return "netlinkbridge: " + e.Reason() + "; give it a key file in Config.Private"
}

// Reason says why, without naming a field.
func (e *PrivilegedError) Reason() string {
	if e.Probed {
		return fmt.Sprintf("stream %s is private: this kernel lets only privileged sockets join its group (found by trying without capabilities), and every local user can read what is sent in the clear (%s)",
			e.Stream.Name, e.Stream.Doc)
	}
	return fmt.Sprintf("stream %s is private: the kernel shows it only to privileged processes, and every local user can read what is sent in the clear (%s)",
		e.Stream.Name, e.Stream.Doc)
}

// NamespaceError is returned for a Config that reads the events of other
// network namespaces (Field "NetNS" or "AllNSID") while a stream has no
// entry in Private.
type NamespaceError struct {
	Field  string // "NetNS" or "AllNSID"
	Stream string // the stream without an entry
}

func (e *NamespaceError) Error() string {
	return fmt.Sprintf("netlinkbridge: Config.%s: %s; give it a key file in Config.Private", e.Field, e.Reason())
}

// Reason says why, without naming a field.
func (e *NamespaceError) Reason() string {
	what := "the events of another network namespace are"
	if e.Field == "AllNSID" {
		what = "the events of every network namespace with an id in the bridged one are"
	}
	return "stream " + e.Stream + " is private: " + what + " private to it (interface names, MAC addresses, addresses, routes), and every local user here can read what is sent in the clear"
}

// RequestsError is returned by New when the listener for resync requests
// cannot be opened (Config.NoRequests turns it off).
type RequestsError struct {
	Group netip.AddrPort // the control group, Map.Control()
	Err   error
}

func (e *RequestsError) Error() string {
	return fmt.Sprintf("resync requests on %s: %v", e.Group, e.Err)
}

func (e *RequestsError) Unwrap() error { return e.Err }

// Validate reports the first rule c breaks, as a *ConfigError, a
// *PrivilegedError, a *NamespaceError or a *mcast.ConfigError. A nil c is valid. A Bridge
// (New, NewWithSource) also needs streams of one netlink family; a Set
// does not.
func (c *Config) Validate() error {
	if c == nil {
		return nil
	}
	bad := func(field string, v any, reason string) error {
		return &ConfigError{Field: field, Value: v, Reason: reason}
	}
	if err := c.Map.Validate(); err != nil {
		return bad("Map", nil, err.Error())
	}
	for _, e := range c.Encodings {
		if e != streams.Raw && e != streams.JSON {
			return bad("Encodings", uint8(e), "must be streams.Raw or streams.JSON")
		}
	}
	switch {
	case c.NetNS < 0:
		return bad("NetNS", c.NetNS, "must not be negative")
	case c.ReadBuffer < 0:
		return bad("ReadBuffer", c.ReadBuffer, "must not be negative")
	case c.Batch < 0:
		return bad("Batch", c.Batch, "must not be negative")
	case checkHeartbeat(c.Heartbeat, c.NoHeartbeats) != nil:
		return checkHeartbeat(c.Heartbeat, c.NoHeartbeats)
	case c.ResyncInterval < 0:
		return bad("ResyncInterval", c.ResyncInterval, "must not be negative")
	case c.RequestBurst < 0:
		return bad("RequestBurst", c.RequestBurst, "must not be negative")
	case c.RequestEvery < 0:
		return bad("RequestEvery", c.RequestEvery, "must not be negative")
	case c.TotalRequestBurst < 0:
		return bad("TotalRequestBurst", c.TotalRequestBurst, "must not be negative")
	case c.AnswerRate < 0:
		return bad("AnswerRate", c.AnswerRate, "must not be negative")
	case c.TotalRequestEvery < 0:
		return bad("TotalRequestEvery", c.TotalRequestEvery, "must not be negative")
	case c.HandoffAfter < 0:
		return bad("HandoffAfter", c.HandoffAfter, "must not be negative")
	case c.NoHandoff && c.HandoffAfter != 0:
		return bad("HandoffAfter", c.HandoffAfter, "is set, but NoHandoff keeps sends on the reader")
	case c.MaxSocketsPerUID < 0:
		return bad("MaxSocketsPerUID", c.MaxSocketsPerUID, "must not be negative")
	case c.NoSocketLimit && c.MaxSocketsPerUID != 0:
		return bad("MaxSocketsPerUID", c.MaxSocketsPerUID, "is set, but NoSocketLimit turns the limit off")
	case c.AliveEvery < 0:
		return bad("AliveEvery", c.AliveEvery, "must not be negative")
	}
	for _, s := range c.Streams {
		switch {
		case newDriver(s.Family) == nil:
			return bad("Streams", s.Name, fmt.Sprintf("netlink family %d is not supported", s.Family))
		case s.Group > maxGroup:
			return bad("Streams", s.Name, fmt.Sprintf("group %d is out of range (at most %d)", s.Group, maxGroup))
		case c.AllNSID && s.Family != streams.FamilyRoute:
			return bad("AllNSID", nil, "applies to rtnetlink streams only, not "+s.Name)
		}
	}
	sel := c.Streams
	if len(sel) == 0 {
		sel = streams.Default()
	}
	bridged := map[string]bool{}
	for _, s := range sel {
		bridged[s.Name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(c.Private)) {
		a := c.Private[name]
		switch {
		case name != "*" && !bridged[name]:
			return bad("Private", name, "is not in Streams")
		case a.KeyFile == "" && !a.Cleartext:
			return bad("Private", name, "needs a KeyFile, or Cleartext")
		case a.KeyFile != "" && a.Cleartext:
			return bad("Private", name, "has a KeyFile and Cleartext: choose one")
		}
	}
	raw := len(c.Encodings) == 0 || slices.Contains(c.Encodings, streams.Raw)
	for _, s := range sel {
		a, ok := c.access(s)
		switch {
		case !ok && c.NetNS != 0:
			return &NamespaceError{Field: "NetNS", Stream: s.Name}
		case !ok && c.AllNSID:
			return &NamespaceError{Field: "AllNSID", Stream: s.Name}
		case !ok:
			return &PrivilegedError{Stream: s}
		case a.KeyFile != "" && !raw:
			return bad("Encodings", nil, "stream "+s.Name+" is sealed, and sealed frames are raw: add the raw encoding")
		case c.XfrmKeys && s.Family == streams.FamilyXfrm && a.KeyFile == "":
			return bad("XfrmKeys", nil, "keeps IPsec key material, which only a stream sealed under a key file may carry, and "+s.Name+
				" is sent in the clear, where every local user can read it: seal it in Private, or leave the keys redacted")
		}
	}
	return c.Sender.Validate()
}

// private reports whether s is a private stream under c: one only
// privileged processes may read, or any stream of another namespace.
func (c *Config) private(s streams.Stream) bool {
	return s.Privileged || c.NetNS != 0 || c.AllNSID
}

// access returns who may read s: its entry in Private (or the "*" entry
// for a private stream), and false for a private stream without one. A
// stream that is not private and not named is sent in the clear.
func (c *Config) access(s streams.Stream) (Access, bool) {
	if a, ok := c.Private[s.Name]; ok {
		return a, true
	}
	if !c.private(s) {
		return Access{Cleartext: true}, true
	}
	a, ok := c.Private["*"]
	return a, ok
}

// maxGroup is the highest netlink group a stream may have.
const maxGroup = 255

// validateBridge is Validate for a single Bridge: one netlink family.
func (c *Config) validateBridge() error {
	if err := c.Validate(); err != nil {
		return err
	}
	for _, s := range c.Streams {
		if first := c.Streams[0]; s.Family != first.Family {
			return &ConfigError{Field: "Streams", Reason: fmt.Sprintf("streams %s and %s are of different netlink families (%s, %s): bridge them with a Set",
				first.Name, s.Name, streams.FamilyName(first.Family), streams.FamilyName(s.Family))}
		}
	}
	return nil
}

// probed returns c with the generic netlink streams that c.GenlProbe finds
// privileged marked so, or a *PrivilegedError for one of them with no
// entry in Private. c passed Validate. A probe that fails is logged and changes
// nothing: the streams keep their catalog's marks.
func (c *Config) probed() (*Config, error) {
	var genl []streams.Stream
	for _, s := range c.Streams {
		if s.Family == streams.FamilyGeneric {
			genl = append(genl, s)
		}
	}
	if len(genl) == 0 {
		return c, nil
	}
	probe := c.GenlProbe
	if probe == nil {
		probe = kernel.ProbeGenl
	}
	got, err := probe(c.NetNS, genl)
	if err != nil {
		log := c.Logger
		if log == nil {
			log = slog.Default()
		}
		log.Warn("cannot probe which generic netlink groups need privilege; nlmcast's catalog decides", "err", err)
		return c, nil
	}
	c2 := *c
	c2.Streams = append([]streams.Stream(nil), c.Streams...)
	for i := range c2.Streams {
		s := &c2.Streams[i]
		if got[s.Name] != kernel.AccessPrivileged || s.Privileged {
			continue
		}
		s.Privileged = true
		if _, ok := c2.access(*s); !ok {
			return nil, &PrivilegedError{Stream: *s, Probed: true}
		}
	}
	return &c2, nil
}

// checkHeartbeat holds Validate's rules of Heartbeat and NoHeartbeats, for
// SetHeartbeat too.
func checkHeartbeat(every time.Duration, off bool) error {
	switch {
	case every < 0:
		return &ConfigError{Field: "Heartbeat", Value: every, Reason: "must not be negative"}
	case off && every != 0:
		return &ConfigError{Field: "Heartbeat", Value: every, Reason: "is set, but NoHeartbeats turns heartbeats off"}
	}
	return nil
}
