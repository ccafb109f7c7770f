package receiver

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// Config configures a Receiver. The zero Config, like a nil *Config, means
// every default. New checks it with Validate.
type Config struct {
	// Streams are the streams to join. Zero: streams.Default(), every
	// rtnetlink stream.
	Streams []streams.Stream
	// Encoding is the encoding to receive, streams.Raw or streams.JSON.
	// Zero: streams.Raw.
	Encoding streams.Encoding
	// Map is the bridge's address map; it must pass Map.Validate. Zero:
	// the default map.
	Map streams.Map
	// Mcast configures the sockets: interface, accepted sender, buffer;
	// it must pass its Validate. Nil: lo, the bridge's default source
	// 127.0.0.1:1021 only.
	Mcast *mcast.ReceiverConfig
	// Insecure starts the receiver even where its source check proves
	// nothing: where net.ipv4.ip_unprivileged_port_start, in the network
	// namespace of the thread calling New, is at or below the accepted
	// source port (container runtimes set it to 0), or cannot be read, so
	// that any local user may send as the bridge (while the bridge is not
	// running), and frames are not authenticated. Warnings then says so.
	// Zero: New refuses, with a *PortTrustError. (With Mcast.AnySource
	// there is no source check to trust: New starts, and warns.)
	Insecure bool
	// Source is where the receiver reads datagrams instead of the
	// loopback groups: another transport carrying the bridge's frames
	// byte for byte, such as package fleet's NATS JetStream source. The
	// Receiver owns it from New on: New closes it when it fails, and
	// Close closes it. With a Source, Mcast must be nil, neither the
	// port trust (Insecure) nor the owner (BridgeUID) is checked, as the
	// Source vouches for where its frames come from, and RequestResync
	// asks through the Source if it is a Requester, and otherwise
	// returns ErrNoRequests. Frames are still checked one by one: their
	// sequence numbers, epochs, and with KeyFile or Private their
	// trailers and seals; but each is checked at its own time, not this
	// host's clock, as a Source may replay history and carry frames of
	// hosts whose clocks differ: no frame is stale or from the future
	// (PROTOCOL.md, Trusting a frame). A datagram whose Group is a
	// loopback address (127.0.0.0/8) is an answer to a request of a
	// receiver on the bridge's host (package fleet's publisher asks for
	// one after a loss), sent to that address: it is checked and returned
	// as answers are (see RequestResync). Zero: the loopback groups,
	// through an mcast.Receiver made from Mcast.
	Source Source
	// BridgeUID is the uid of the bridge's sending socket (root's, 0, when
	// the bridge is started as root, even if it drops privileges later).
	// Without a KeyFile, frames are delivered only while the kernel
	// (sock_diag) shows the accepted source address held by sockets of
	// this uid alone; the others are counted in Stats.Unattested. Zero:
	// root.
	BridgeUID uint32
	// NoOwnerCheck turns that check off. Zero: checked, unless frames are
	// authenticated (KeyFile) or any sender is accepted (Mcast.AnySource).
	NoOwnerCheck bool
	// Silence is how long a stream may go without any frame (the bridge
	// sends heartbeats every second) before a Silent notice; not negative.
	// Zero: DefaultSilence.
	Silence time.Duration
	// NoSilentNotices turns Silent notices off; Silence must then be zero.
	// Zero: a stream silent for Silence gets one.
	NoSilentNotices bool
	// MaxMessage bounds the size of a message reassembled from fragments,
	// in bytes; not negative. A stream's partial message holds at most
	// this much, and only as much as has arrived. Zero: the largest a
	// bridge sends, frame.MaxRawMessage (1 MiB + 64 KiB) for the raw
	// encoding, frame.MaxJSONMessage (4 MiB) for JSON.
	MaxMessage int
	// FragmentTimeout is how long an incomplete fragmented message waits;
	// not negative. Zero: frame.DefaultFragmentTimeout.
	FragmentTimeout time.Duration
	// KeyFile is the bridge's key file (package keys): every frame must
	// then carry a good authentication trailer under one of its keys, and
	// the others are dropped and counted by reason (Stats.Unauthenticated,
	// UnknownKey, BadTag). The file is reloaded when it changes. Zero:
	// trailers are skipped unchecked, and only the source check vouches
	// for a frame.
	KeyFile string
	// Private gives, by stream name, the key file of each private stream
	// of Streams: one the bridge seals under that file's keys (its
	// --expose STREAMS=KEYFILE; PROTOCOL.md, Sealed frames). Its frames
	// are opened with the file's keys, which are reloaded when it
	// changes; a frame that is not sealed, or does not open, is dropped
	// and counted (Stats.NotSealed, UnknownKey, BadSeal): anyone may send
	// to a group, but only the holders of the key can seal. Sealed frames
	// are raw: Encoding must be streams.Raw. A sealed frame of a stream
	// not named here is dropped, counted in Stats.Sealed, and reported
	// with a Sealed notice. Zero: no stream is private.
	Private map[string]string
}

// DefaultSilence is three missed heartbeats at the bridge's default rate.
const DefaultSilence = 3 * time.Second

// MirrorConfig configures a Mirror. The zero MirrorConfig, like a nil
// *MirrorConfig, means every default. NewMirror checks it with Validate.
type MirrorConfig struct {
	// Streams are the tables to mirror, each one the bridge can resync
	// (streams.Stream.Resync). Zero: every such stream.
	Streams []streams.Stream
	// Map is the bridge's address map; it must pass Map.Validate. Zero:
	// the default map.
	Map streams.Map
	// Mcast configures the sockets; it must pass its Validate. Nil: lo,
	// the bridge's default source 127.0.0.1:1021 only.
	Mcast *mcast.ReceiverConfig
	// Insecure is Config.Insecure: start even where any local user may
	// send from the accepted source port. Zero: NewMirror refuses there,
	// with a *PortTrustError.
	Insecure bool
	// BridgeUID and NoOwnerCheck are Config's.
	BridgeUID    uint32
	NoOwnerCheck bool
	// RequestEvery is the wait before the second resync request for a
	// stream out of sync (the first goes at once); each further one waits
	// twice as long as the one before, up to MaxRequestEvery, until the
	// stream is in sync again. Not negative. Zero: DefaultRequestEvery.
	RequestEvery time.Duration
	// MaxRequestEvery caps the wait between two requests; not negative,
	// and not less than RequestEvery. Zero: DefaultMaxRequestEvery, or
	// RequestEvery if that is longer. Set it to RequestEvery for no
	// back-off.
	MaxRequestEvery time.Duration
	// MaxEntries bounds the entries of each table, and of each resync in
	// progress; not negative. Zero: DefaultMaxEntries.
	MaxEntries int
	// MaxBytes bounds the bytes (keys and messages) of every table and
	// resync in progress together; not negative. Zero: DefaultMaxBytes.
	MaxBytes int
	// KeyFile is the bridge's key file, as in Config. Zero: frames are
	// not verified.
	KeyFile string
	// Private gives the key file of each private stream, as in Config.
	// Zero: no stream is private.
	Private map[string]string
	// Source is Config.Source: the Mirror reads the frames of another
	// host's bridge through it, and asks for resyncs through it, so it
	// must be a Requester (package fleet's Source is). Mcast must be nil
	// then. The Mirror owns it from NewMirror on, as a Receiver does.
	// Zero: the loopback groups.
	Source Source
}

// Defaults of MirrorConfig.
const (
	// DefaultRequestEvery is the wait before a Mirror's second resync
	// request for a stream out of sync.
	DefaultRequestEvery = time.Second
	// DefaultMaxRequestEvery caps a Mirror's back-off between requests.
	DefaultMaxRequestEvery = 30 * time.Second
	// DefaultMaxEntries is four times a full Internet routing table.
	DefaultMaxEntries = 4 << 20
	// DefaultMaxBytes holds such a table and its resync several times.
	DefaultMaxBytes = 1 << 30
)

// A ConfigError reports a field of a Config or MirrorConfig that breaks a
// rule. Find it with errors.As. Errors of the Mcast field are
// *mcast.ConfigError.
type ConfigError struct {
	Config string // "Config" or "MirrorConfig"
	Field  string // the field's name, such as "Silence"
	Value  any    // the value refused; nil when Reason says it
	Reason string // what is wrong, such as "must not be negative"
}

func (e *ConfigError) Error() string {
	if e.Value == nil {
		return fmt.Sprintf("receiver: %s.%s: %s", e.Config, e.Field, e.Reason)
	}
	return fmt.Sprintf("receiver: %s.%s %v: %s", e.Config, e.Field, e.Value, e.Reason)
}

// A PortTrustError is returned by New and NewMirror where the source check
// proves nothing and Insecure is not set: any user of the network
// namespace may bind the port the receiver accepts frames from, so that
// anyone could send as the bridge (while it is not running), and frames
// are not authenticated. Find it with errors.As.
type PortTrustError struct {
	Start int   // net.ipv4.ip_unprivileged_port_start; -1 when Err
	Port  int   // the accepted source port
	Err   error // why the setting could not be read; nil if it was
}

// Reason says why the source check proves nothing, in a sentence.
func (e *PortTrustError) Reason() string {
	if e.Err != nil {
		return fmt.Sprintf("cannot read net.ipv4.ip_unprivileged_port_start (%v), so cannot tell whether only root can send from port %d: "+
			"the source check proves nothing", e.Err, e.Port)
	}
	return fmt.Sprintf("net.ipv4.ip_unprivileged_port_start is %d in this network namespace, so any user can send from port %d: "+
		"the source check proves nothing", e.Start, e.Port)
}

func (e *PortTrustError) Error() string {
	return "receiver: " + e.Reason() + ". Give the receiver the bridge's key (frames are then authenticated) or, knowing the risk, set Insecure"
}

func (e *PortTrustError) Unwrap() error { return e.Err }

// portStart reads net.ipv4.ip_unprivileged_port_start; tests replace it.
var portStart = mcast.UnprivilegedPortStart

// authenticated reports whether the frames c receives are authenticated,
// so that they need not be trusted for their source port: signed, or
// every stream private (sealed).
func (c *Config) authenticated() bool {
	if c.KeyFile != "" {
		return true
	}
	if len(c.Private) == 0 {
		return false
	}
	for _, s := range c.selected() {
		if c.Private[s.Name] == "" {
			return false
		}
	}
	return true
}

// selected returns the streams c joins.
func (c *Config) selected() []streams.Stream {
	if len(c.Streams) == 0 {
		return streams.Default()
	}
	return c.Streams
}

// selected returns the streams c mirrors.
func (c *MirrorConfig) selected() []streams.Stream {
	if len(c.Streams) > 0 {
		return c.Streams
	}
	var ss []streams.Stream
	for _, s := range streams.All() {
		if s.Resync {
			ss = append(ss, s)
		}
	}
	return ss
}

// checkPrivate checks a Private map against the streams it is for.
func checkPrivate(private map[string]string, sel []streams.Stream, bad func(string, any, string) error) error {
	in := map[string]bool{}
	for _, s := range sel {
		in[s.Name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(private)) {
		switch {
		case !in[name]:
			return bad("Private", name, "is not a stream received")
		case private[name] == "":
			return bad("Private", name, "needs a key file")
		}
	}
	return nil
}

// trust decides whether a receiver with config c may start, where the
// calling thread's network namespace is: an error where the source check
// proves nothing and c is not Insecure, and the warnings to give when it
// starts all the same.
func (c *Config) trust() (warnings []string, err error) {
	src, any := c.Mcast.AcceptedSource()
	switch {
	case c.authenticated(): // only holders of the key can send a frame that verifies
		return nil, nil
	case any:
		return []string{"frames are accepted from any sender, so any local user can forge events"}, nil
	}
	start, err := portStart()
	if err == nil && start > int(src.Port()) {
		return nil, nil // only root or CAP_NET_BIND_SERVICE can bind the port
	}
	e := &PortTrustError{Start: start, Port: int(src.Port()), Err: err}
	if err != nil {
		e.Start = -1
	}
	if !c.Insecure {
		return nil, e
	}
	return []string{e.Reason() + ", and frames are not authenticated: any local user can forge events while the bridge is not running"}, nil
}

// Validate reports the first rule c breaks, as a *ConfigError or a
// *mcast.ConfigError. A nil c is valid.
func (c *Config) Validate() error {
	if c == nil {
		return nil
	}
	bad := func(field string, v any, reason string) error {
		return &ConfigError{Config: "Config", Field: field, Value: v, Reason: reason}
	}
	if err := c.Map.Validate(); err != nil {
		return bad("Map", nil, err.Error())
	}
	switch {
	case c.Encoding != streams.Raw && c.Encoding != streams.JSON:
		return bad("Encoding", uint8(c.Encoding), "must be streams.Raw or streams.JSON")
	case c.Silence < 0:
		return bad("Silence", c.Silence, "must not be negative")
	case c.NoSilentNotices && c.Silence != 0:
		return bad("Silence", c.Silence, "is set, but NoSilentNotices turns Silent notices off")
	case c.MaxMessage < 0:
		return bad("MaxMessage", c.MaxMessage, "must not be negative")
	case c.FragmentTimeout < 0:
		return bad("FragmentTimeout", c.FragmentTimeout, "must not be negative")
	case c.Source != nil && c.Mcast != nil:
		return bad("Mcast", "set", "configures the loopback sockets, which a receiver with a Source does not open: leave it nil")
	case len(c.Private) > 0 && c.Encoding != streams.Raw:
		return bad("Encoding", "json", "private streams are sealed, and sealed frames are raw: receive them raw")
	}
	if err := checkPrivate(c.Private, c.selected(), bad); err != nil {
		return err
	}
	return c.Mcast.Validate()
}

// Validate reports the first rule c breaks, as a *ConfigError or a
// *mcast.ConfigError. A nil c is valid.
func (c *MirrorConfig) Validate() error {
	if c == nil {
		return nil
	}
	bad := func(field string, v any, reason string) error {
		return &ConfigError{Config: "MirrorConfig", Field: field, Value: v, Reason: reason}
	}
	if err := c.Map.Validate(); err != nil {
		return bad("Map", nil, err.Error())
	}
	for _, s := range c.Streams {
		if !s.Resync {
			return bad("Streams", s.Name, "the bridge cannot dump this stream's state; mirror only streams whose Resync is set")
		}
	}
	switch {
	case c.RequestEvery < 0:
		return bad("RequestEvery", c.RequestEvery, "must not be negative")
	case c.MaxRequestEvery < 0:
		return bad("MaxRequestEvery", c.MaxRequestEvery, "must not be negative")
	case c.MaxRequestEvery != 0 && c.MaxRequestEvery < c.RequestEvery:
		return bad("MaxRequestEvery", c.MaxRequestEvery, "is less than RequestEvery")
	case c.MaxEntries < 0:
		return bad("MaxEntries", c.MaxEntries, "must not be negative")
	case c.MaxBytes < 0:
		return bad("MaxBytes", c.MaxBytes, "must not be negative")
	}
	if c.Source != nil {
		if c.Mcast != nil {
			return bad("Mcast", "set", "configures the loopback sockets, which a Mirror with a Source does not open: leave it nil")
		}
		if _, ok := c.Source.(Requester); !ok {
			return bad("Source", fmt.Sprintf("%T", c.Source), "cannot ask for resyncs (it is no Requester): a Mirror needs them to fill its tables")
		}
	}
	if err := checkPrivate(c.Private, c.selected(), bad); err != nil {
		return err
	}
	return c.Mcast.Validate()
}
