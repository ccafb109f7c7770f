package fleet

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// DefaultStream is the JetStream stream the fleet's subjects are stored in.
const DefaultStream = "NLMCAST"

// SubjectPrefix is the first token of every subject: nlmcast.HOST.STREAM.
const SubjectPrefix = "nlmcast"

// DefaultBufferBytes is how many bytes of frames a Publisher holds while
// NATS does not take them.
const DefaultBufferBytes = 64 << 20

// DefaultMaxAge is how long a stream the Publisher creates keeps frames.
const DefaultMaxAge = 24 * time.Hour

// DefaultDuplicates is the de-duplication window of a stream the
// Publisher creates: a frame published again within it is stored once.
const DefaultDuplicates = 2 * time.Minute

// Conn says how to reach NATS. The zero Conn connects to
// nats://127.0.0.1:4222 with no credentials and no TLS.
type Conn struct {
	// URL is the server's URL, or several, comma-separated (a cluster).
	// Zero: nats.DefaultURL.
	URL string
	// User and Password authenticate with a user name and password.
	// Zero: none (credentials in URL, if any, still count).
	User, Password string
	// Token authenticates with a token. Zero: none.
	Token string
	// CredsFile is a user credentials file (a JWT and an NKey seed).
	// Zero: none.
	CredsFile string
	// NKeyFile is an NKey seed file. Zero: none.
	NKeyFile string
	// CAFile is a PEM file of the certificate authorities to trust for
	// the server's TLS certificate; it turns TLS on. Zero: the system's,
	// if the URL asks for TLS (tls://).
	CAFile string
	// CertFile and KeyFile are a client certificate and its key, for
	// servers that verify clients; both or neither. Zero: none.
	CertFile, KeyFile string
	// Name is the connection's name, as the server shows it. Zero: the
	// caller's default ("nlmcast publish HOST", ...).
	Name string
}

// options turns c into the client library's options.
func (c *Conn) options(name string) ([]nats.Option, error) {
	if c.Name != "" {
		name = c.Name
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.CustomReconnectDelay(backoff),
	}
	if c.User != "" || c.Password != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("fleet: NKey seed file %s: %w", c.NKeyFile, err)
		}
		opts = append(opts, o)
	}
	if c.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	return opts, nil
}

// backoff is the wait before reconnect attempt n (after a whole pass over
// the servers): 250 ms, doubling, at most 5 s.
func backoff(attempts int) time.Duration {
	d := 250 * time.Millisecond
	for i := 1; i < attempts && d < 5*time.Second; i++ {
		d *= 2
	}
	return min(d, 5*time.Second)
}

// dial connects to NATS from the process's network namespace: from a
// goroutine of its own, never locked to the calling thread, as the client
// library reconnects from goroutines of its own. (The local sockets are
// opened by the calling thread, which may be in another.)
func (c *Conn) dial(name string, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := c.options(name)
	if err != nil {
		return nil, err
	}
	opts = append(opts, extra...)
	url := c.URL
	if url == "" {
		url = nats.DefaultURL
	}
	type result struct {
		nc  *nats.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(url, opts...)
		ch <- result{nc, err}
	}()
	r := <-ch
	nc, err := r.nc, r.err
	if err != nil {
		return nil, fmt.Errorf("fleet: connecting to NATS at %s: %w (is the server running, and are the credentials right?)", url, err)
	}
	return nc, nil
}

func (c *Conn) validate(bad func(string, any, string) error) error {
	if c == nil {
		return nil
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return bad("Conn.CertFile", c.CertFile, "and Conn.KeyFile go together: give both or neither")
	}
	if c.Token != "" && c.User != "" {
		return bad("Conn.Token", "set", "and Conn.User are two ways to authenticate: give one")
	}
	return nil
}

// ConfigError is a rule of a Config broken: the field, its value and why.
type ConfigError struct {
	Config, Field string
	Value         any
	Reason        string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("fleet: %s.%s %v: %s", e.Config, e.Field, e.Value, e.Reason)
}

// CheckHost reports whether h can be a host's token in a subject: letters,
// digits, '-' and '_', at most 64 bytes.
func CheckHost(h string) error {
	if h == "" || len(h) > 64 {
		return fmt.Errorf("host name %q must be 1 to 64 bytes", h)
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("host name %q has %q: a subject token takes letters, digits, '-' and '_' only", h, c)
		}
	}
	return nil
}

// Hostname returns this host's name as a subject token: os.Hostname with
// every character a token cannot hold ('.' among them) replaced by '_'.
func Hostname() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("fleet: host name: %w: give one", err)
	}
	h = strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			return c
		}
		return '_'
	}, h)
	if len(h) > 64 {
		h = h[:64]
	}
	return h, CheckHost(h)
}

// Subject returns the subject of a host's stream: nlmcast.HOST.STREAM. A
// generic netlink stream's name (FAMILY:GROUP) holds a ':', which a
// subject token may hold.
func Subject(host string, s streams.Stream) string {
	return SubjectPrefix + "." + host + "." + s.Name
}

// RequestPrefix is the first token of the subject a publisher takes
// resync requests on: nlmcast-resync.HOST, outside the stream's subjects
// (core NATS request and reply, nothing stored).
const RequestPrefix = "nlmcast-resync"

// RequestSubject returns the subject a host's publisher takes resync
// requests on (PROTOCOL.md, Beyond one host).
func RequestSubject(host string) string { return RequestPrefix + "." + host }

// HeaderError, on the reply to a resync request, says why the publisher
// refused it.
const HeaderError = "Nlmcast-Error"

// PublisherConfig configures a Publisher. The zero PublisherConfig, like a
// nil one, means every default. NewPublisher checks it with Validate.
type PublisherConfig struct {
	// Conn says how to reach NATS. Zero: nats://127.0.0.1:4222.
	Conn Conn
	// Host is this host's token in the subjects (CheckHost). Zero:
	// Hostname().
	Host string
	// Stream is the JetStream stream; NewPublisher creates it if it does
	// not exist (subjects nlmcast.>, file storage, MaxAge, Duplicates,
	// Replicas), and otherwise checks that it takes nlmcast.>. Zero:
	// DefaultStream.
	Stream string
	// MaxAge is how long a stream NewPublisher creates keeps frames; not
	// negative. Zero: DefaultMaxAge.
	MaxAge time.Duration
	// Replicas is the replicas of a stream NewPublisher creates (a
	// cluster's servers that hold it); 0 to 5. Zero: 1.
	Replicas int
	// Streams are the streams to publish. Zero: streams.Default(), every
	// rtnetlink stream.
	Streams []streams.Stream
	// Map is the local bridge's address map. Zero: the default map.
	Map streams.Map
	// Mcast configures the local sockets (accepted sender, buffer). Nil:
	// lo, the bridge's default source 127.0.0.1:1021 only.
	Mcast *mcast.ReceiverConfig
	// Insecure starts the publisher where the source check proves
	// nothing (receiver.Config.Insecure). Zero: refused there.
	Insecure bool
	// BufferBytes bounds the frames held while NATS does not take them;
	// not negative. Past it, frames are dropped and an overrun marker
	// takes their place (PROTOCOL.md). Zero: DefaultBufferBytes.
	BufferBytes int
	// Logf logs what the publisher does (reconnects, losses). Zero: no
	// log.
	Logf func(format string, args ...any)
}

// Validate reports the first rule c breaks, as a *ConfigError.
func (c *PublisherConfig) Validate() error {
	if c == nil {
		return nil
	}
	bad := func(field string, v any, reason string) error {
		return &ConfigError{Config: "PublisherConfig", Field: field, Value: v, Reason: reason}
	}
	if err := c.Map.Validate(); err != nil {
		return bad("Map", nil, err.Error())
	}
	if c.Host != "" {
		if err := CheckHost(c.Host); err != nil {
			return bad("Host", c.Host, err.Error())
		}
	}
	switch {
	case c.MaxAge < 0:
		return bad("MaxAge", c.MaxAge, "must not be negative")
	case c.Replicas < 0 || c.Replicas > 5:
		return bad("Replicas", c.Replicas, "must be 0 to 5")
	case c.BufferBytes < 0:
		return bad("BufferBytes", c.BufferBytes, "must not be negative")
	}
	if err := c.Conn.validate(bad); err != nil {
		return err
	}
	return c.Mcast.Validate()
}

// SourceConfig configures a Source. The zero SourceConfig reads the
// default stream's new frames of Host, which must be set. NewSource checks
// it with Validate.
type SourceConfig struct {
	// Conn says how to reach NATS. Zero: nats://127.0.0.1:4222.
	Conn Conn
	// Host is the host whose frames to read (CheckHost). Required.
	Host string
	// Stream is the JetStream stream. Zero: DefaultStream.
	Stream string
	// Map is the address map of the host's bridge, which names its
	// streams' groups (and which their trailers cover). Zero: the
	// default map.
	Map streams.Map
	// StartSeq starts at this JetStream stream sequence (the stream's
	// own numbering of its messages, not a frame's). Zero: see StartTime.
	StartSeq uint64
	// StartTime starts at the first message stored at or after it; not
	// with StartSeq. Zero (and StartSeq zero): with All, every message
	// kept; otherwise new messages only, or where Durable stopped.
	StartTime time.Time
	// All starts at the first message kept. Zero: see StartTime.
	All bool
	// Durable names a durable consumer: the server remembers what it
	// acknowledged, and a Source made again with the same name resumes
	// there (StartSeq, StartTime and All count only when it is created),
	// with what an earlier reader took and never acknowledged (it was
	// killed) first, in order. It is the place of one reader at a time:
	// a Source made while another reads it fails, saying so, and one
	// whose consumer the server deletes is told at its next read.
	// Zero: an ordered consumer, which the server forgets.
	Durable string
}

// Validate reports the first rule c breaks, as a *ConfigError.
func (c *SourceConfig) Validate() error {
	bad := func(field string, v any, reason string) error {
		return &ConfigError{Config: "SourceConfig", Field: field, Value: v, Reason: reason}
	}
	if c == nil {
		return bad("Host", "", "is required: whose frames to read")
	}
	if err := c.Map.Validate(); err != nil {
		return bad("Map", nil, err.Error())
	}
	if err := CheckHost(c.Host); err != nil {
		return bad("Host", c.Host, err.Error())
	}
	n := 0
	for _, b := range []bool{c.StartSeq != 0, !c.StartTime.IsZero(), c.All} {
		if b {
			n++
		}
	}
	if n > 1 {
		return bad("StartSeq", c.StartSeq, "StartSeq, StartTime and All are three places to start: give one")
	}
	if c.Durable != "" && strings.ContainsAny(c.Durable, ". *>\t") {
		return bad("Durable", c.Durable, "a consumer name has no '.', '*', '>' or white space")
	}
	return c.Conn.validate(bad)
}
