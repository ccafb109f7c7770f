package bench

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"time"
)

// Defaults of nlmcast bench, the values DefaultConfig returns.
const (
	DefaultEvents        = 100_000
	DefaultBatch         = 64
	DefaultLatencyRate   = 5000
	DefaultLatencyEvents = 10_000
	DefaultBurst         = 200_000
	// DefaultLatencyRounds and DefaultLatencyTime: four rounds of 5 s
	// rather than two of 10 s, in the same time. A round's ratios move
	// with where the scheduler puts each process for that run, not with
	// the run's length, so more runs average more of it out (LATENCY.md,
	// "Rounds, not length").
	DefaultLatencyRounds = 4
	DefaultLatencyTime   = 5 * time.Second
	// MinRateEvents is the fewest events of a latency row's run, whatever
	// LatencyTime gives at its rate.
	MinRateEvents = 100
	// MaxLatencyRounds bounds LatencyRounds.
	MaxLatencyRounds = 100
)

// DefaultLatencyRates are the rates of the latency rows: sparse, everyday,
// busy, and the latency run's.
var DefaultLatencyRates = []float64{20, 200, 2000, 5000}

// DefaultLatencyReceivers are the receiver counts of the latency rows.
var DefaultLatencyReceivers = []int{1}

// DefaultReceivers is the default sweep of receiver counts.
var DefaultReceivers = []int{1, 8, 32}

// Limits of Config fields.
const (
	MaxReceivers = 256  // receivers of a run
	MaxBatch     = 4096 // requests per sendmsg
	MinNice      = -20
	MaxNice      = 19
	// MaxIdleSockets bounds IdleSockets (each one a descriptor of the
	// bench).
	MaxIdleSockets = 10_000
)

// Config configures a benchmark. Start from DefaultConfig; a zero field
// means what its comment says, not the default.
type Config struct {
	// Self is the nlmcast binary: the bridge and the receivers are its
	// subcommands. Zero: os.Executable.
	Self string
	// Receivers is the sweep of receiver counts, each 1 to MaxReceivers:
	// a raw ceiling and a run through the bridge for each. Zero: no sweep.
	Receivers []int
	// Events is the events generated per run, at least 1. Run rounds it
	// up to whole add-then-delete pairs of batches.
	Events int
	// Rate caps the generation rate (events/s). Zero: as fast as the
	// kernel takes them.
	Rate float64
	// Batch is the requests per sendmsg of the generator, 1 to MaxBatch.
	Batch int
	// LatencyEvents and LatencyRate set the latency run: one receiver,
	// events spread evenly at LatencyRate (events/s, positive when there
	// is a latency run). Zero LatencyEvents: no latency run.
	LatencyEvents int
	LatencyRate   float64
	// LatencyRates are the rates (events/s, each positive) of the latency
	// rows: at each, in LatencyRounds rounds, a run through the bridge in
	// its default configuration (every rtnetlink stream, both encodings),
	// one through the reference relay (relay/relay.c, built with the
	// system cc), one through the Go reference relay (unless NoGoRelay)
	// and a second one through relay.c (unless NoRelayAgain), R receivers
	// each beside a direct subscriber
	// (for each R of LatencyReceivers); then a bare multicast hop at the
	// same rate (once per rate). Each run has the events of LatencyTime at
	// its rate, at least MinRateEvents and at most LatencyEvents. Zero (or
	// zero LatencyEvents): no latency rows.
	LatencyRates []float64
	// LatencyRounds is the rounds of each latency row, 1 to
	// MaxLatencyRounds. Zero: invalid when there are rows (DefaultConfig
	// has DefaultLatencyRounds); ignored otherwise.
	LatencyRounds int
	// LatencyTime is how long a latency row's run generates events at its
	// rate (before the LatencyEvents cap). Zero: invalid when there are
	// rows (DefaultConfig has DefaultLatencyTime); ignored otherwise.
	LatencyTime time.Duration
	// LatencyReceivers are the receiver counts of the latency rows, each
	// 1 to MaxReceivers: the rows are run for each count R, with R
	// receivers of the bridge's raw stream and R of the relay's group.
	// Zero: invalid when there are rows (DefaultConfig has
	// DefaultLatencyReceivers); ignored otherwise.
	LatencyReceivers []int
	// LatencyJSON runs every latency row a second time with JSON on: the
	// bridge's runs have one more receiver, of the stream's JSON group, so
	// that the bridge encodes JSON for each event; its latency is kept
	// apart from the raw receivers', which the rows compare. The relay's
	// runs (it has no JSON) then have one more receiver of its group, kept
	// apart too, so that both wake as many processes for every event.
	LatencyJSON bool
	// NoGoRelay leaves the Go reference relay (GoRelay: relay.c written
	// in Go, run by this program) out of the latency rows. Zero: each
	// round of a row has a run through it too, and the row its ratio to
	// relay.c, what Go itself costs a relay on this machine.
	NoGoRelay bool
	// NoRelayAgain leaves the control out of the latency rows: a second
	// run through relay.c in each round (RateResult.RelayAgain). Zero:
	// each row has it, and its ratio to relay.c's first runs, which two
	// identical paths give on this machine in that row.
	NoRelayAgain bool
	// Burst is the datagrams of the burst: sent one per message, as fast
	// as sendmmsg goes, to one receiver built on package mcast, which
	// loses what its buffer and its reading cannot keep up with. Zero: no
	// burst.
	Burst int
	// NoIPMonitor skips the ip monitor run; NoCeiling the raw ceiling.
	NoIPMonitor bool
	NoCeiling   bool
	// ReceiverBuffer is each multicast receiver's socket buffer, bytes.
	// Zero: mcast's default.
	ReceiverBuffer int
	// BridgeNice is the nice value the bridge runs at (under nice(1)), from
	// MinNice (most favoured) to MaxNice. Zero: the bench's own. A bridge
	// feeding many receivers on few CPUs needs a larger share of them than
	// any one receiver: the scheduler otherwise gives it the same.
	BridgeNice int
	// Ways is the receivers of the ways runs, 0 to MaxReceivers: a run
	// through the bridge with every way to speed on, then one with each of
	// Ways turned off. Zero: no ways runs.
	Ways int
	// IdleSockets is how many UDP sockets of uid 65534 the bench opens
	// before its first run, bound to the bridged stream's group and port,
	// joined, and never read: the hostile receivers of issue 14. They stay
	// open for every run (sockets the bridge detaches stay detached).
	// Zero: none.
	IdleSockets int
	// NoSocketLimit runs the bridge with --max-sockets-per-uid 0, so that
	// it leaves IdleSockets alone. Zero: the bridge's default limit.
	NoSocketLimit bool
	// NoHandoff runs the bridge with --handoff-after 0: it sends on its
	// reading thread however slow sends are. Zero: the bridge's default.
	NoHandoff bool
	// NoFleet skips the fleet phase: the bridge's stream published by
	// nlmcast publish to a JetStream nats-server in the namespace and read
	// back by one consumer through package fleet, beside a receiver of the
	// loopback groups, at Rate with Events, then at LatencyRate with
	// LatencyEvents (if any).
	NoFleet bool
	// NATSServer is the nats-server program of the fleet phase (2.2 or
	// later: JetStream). Zero: nats-server, looked up in $PATH.
	NATSServer string
	// Log receives a line per step. Zero: discarded.
	Log io.Writer
}

// DefaultConfig returns the configuration of a plain nlmcast bench.
func DefaultConfig() Config {
	return Config{
		Receivers:        slices.Clone(DefaultReceivers),
		Events:           DefaultEvents,
		Batch:            DefaultBatch,
		LatencyEvents:    DefaultLatencyEvents,
		LatencyRate:      DefaultLatencyRate,
		LatencyRates:     slices.Clone(DefaultLatencyRates),
		LatencyRounds:    DefaultLatencyRounds,
		LatencyTime:      DefaultLatencyTime,
		LatencyReceivers: slices.Clone(DefaultLatencyReceivers),
		Burst:            DefaultBurst,
		NATSServer:       DefaultNATSServer,
	}
}

// A ConfigError is a Config field out of its range.
type ConfigError struct {
	Field string // the Config field, like "Events"
	Value any    // its value
	Want  string // the rule, for people: "must be positive", "use 1 to 4096"
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("bench: Config.%s %v: %s", e.Field, e.Value, e.Want)
}

// Validate returns a *ConfigError for the first field out of its range.
func (c *Config) Validate() error {
	bad := func(field string, v any, want string) error { return &ConfigError{Field: field, Value: v, Want: want} }
	if c.LatencyEvents > 0 && len(c.LatencyRates) > 0 {
		for _, r := range c.LatencyRates {
			if !(r > 0) {
				return bad("LatencyRates", r, "each must be positive")
			}
		}
		if c.LatencyRounds < 1 || c.LatencyRounds > MaxLatencyRounds {
			return bad("LatencyRounds", c.LatencyRounds, fmt.Sprintf("use 1 to %d", MaxLatencyRounds))
		}
		if c.LatencyTime <= 0 {
			return bad("LatencyTime", c.LatencyTime, "must be positive")
		}
		if len(c.LatencyReceivers) == 0 {
			return bad("LatencyReceivers", c.LatencyReceivers, fmt.Sprintf("give at least one count, 1 to %d", MaxReceivers))
		}
		for _, r := range c.LatencyReceivers {
			if r < 1 || r > MaxReceivers {
				return bad("LatencyReceivers", r, fmt.Sprintf("use 1 to %d", MaxReceivers))
			}
		}
	}
	for _, r := range c.Receivers {
		if r < 1 || r > MaxReceivers {
			return bad("Receivers", r, fmt.Sprintf("use 1 to %d", MaxReceivers))
		}
	}
	switch {
	case c.Events < 1:
		return bad("Events", c.Events, "must be positive")
	case c.Rate < 0:
		return bad("Rate", c.Rate, "must not be negative")
	case c.Batch < 1 || c.Batch > MaxBatch:
		return bad("Batch", c.Batch, fmt.Sprintf("use 1 to %d", MaxBatch))
	case c.LatencyEvents < 0:
		return bad("LatencyEvents", c.LatencyEvents, "must not be negative")
	case c.LatencyEvents > 0 && c.LatencyRate <= 0:
		return bad("LatencyRate", c.LatencyRate, "must be positive")
	case c.Burst < 0:
		return bad("Burst", c.Burst, "must not be negative")
	case c.ReceiverBuffer < 0:
		return bad("ReceiverBuffer", c.ReceiverBuffer, "must not be negative")
	case c.BridgeNice < MinNice || c.BridgeNice > MaxNice:
		return bad("BridgeNice", c.BridgeNice, fmt.Sprintf("use %d to %d", MinNice, MaxNice))
	case c.IdleSockets < 0 || c.IdleSockets > MaxIdleSockets:
		return bad("IdleSockets", c.IdleSockets, fmt.Sprintf("use 0 to %d", MaxIdleSockets))
	case c.Ways < 0 || c.Ways > MaxReceivers:
		return bad("Ways", c.Ways, fmt.Sprintf("use 1 to %d receivers, or 0 to skip the ways runs", MaxReceivers))
	}
	return nil
}

// normalized validates c and returns it as Run uses it: Self and Log
// filled in, event counts rounded up so that every run leaves lo as it
// found it and makes exactly the events counted.
func (c Config) normalized() (Config, error) {
	if err := c.Validate(); err != nil {
		return c, err
	}
	if c.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return c, err
		}
		c.Self = self
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if !c.NoFleet {
		prog := c.NATSServer
		if prog == "" {
			prog = DefaultNATSServer
		}
		path, err := exec.LookPath(prog)
		if err != nil {
			return c, fmt.Errorf("bench: the fleet phase needs nats-server with JetStream: %w; install it (Debian: apt-get install nats-server), "+
				"or build it (go build -o nats-server github.com/nats-io/nats-server/v2) and give its path with --nats-server, or skip the phase with --no-fleet", err)
		}
		c.NATSServer = path
	}
	c.Receivers = slices.Clone(c.Receivers)
	c.LatencyRates = slices.Clone(c.LatencyRates)
	c.LatencyReceivers = slices.Clone(c.LatencyReceivers)
	c.Events = roundUp(c.Events, 2*c.Batch)
	c.LatencyEvents = roundUp(c.LatencyEvents, 2)
	return c, nil
}

// DefaultNATSServer is the fleet phase's nats-server when
// Config.NATSServer is zero: looked up in $PATH.
const DefaultNATSServer = "nats-server"

// CeilingGroup is where the raw ceiling is measured: outside the default
// stream map (239.255.78.0/23).
var CeilingGroup = netip.MustParseAddrPort("239.255.77.250:17990")
