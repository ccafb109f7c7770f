package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// RelayConfig configures a Relay. NewRelay checks it with Validate.
type RelayConfig struct {
	// Source says which host's frames to relay, from where; Source.Map
	// is the remote bridge's address map. Required: Source.Host.
	Source SourceConfig
	// Streams are the streams to relay. Zero: streams.Default().
	Streams []streams.Stream
	// Map is the local address map the frames are sent on: a block of its
	// own, apart from the local bridge's (another Base). Zero: the
	// default map, which suits a host without a bridge of its own.
	Map streams.Map
	// Sender configures the sending socket: its Source port is the one
	// the local receivers must accept (their --source-port). Nil: lo,
	// 127.0.0.1:1021, as a bridge.
	Sender *mcast.SenderConfig
}

// Validate reports the first rule c breaks.
func (c *RelayConfig) Validate() error {
	if c == nil {
		return (&SourceConfig{}).Validate()
	}
	if err := c.Source.Validate(); err != nil {
		return err
	}
	if err := c.Map.Validate(); err != nil {
		return &ConfigError{Config: "RelayConfig", Field: "Map", Reason: err.Error()}
	}
	return c.Sender.Validate()
}

// RelayStats counts what a Relay did.
type RelayStats struct {
	Relayed uint64 // frames sent on the local groups
	Lost    uint64 // frames the publisher's overrun markers said were lost
	Failed  uint64 // frames the local socket refused
}

// A Relay re-emits a remote host's frames, byte for byte, on local
// loopback groups, so that any local receiver (C, Python, socat) receives
// them as a bridge's. Only the raw encoding is relayed. Frames keep their
// epochs and sequence numbers, so local receivers see the remote
// bridge's gaps and restarts; a frame authenticated or sealed for the
// remote bridge's group verifies only at that group and port: relay those
// on a Map equal to the remote one.
type Relay struct {
	src                   *Source
	snd                   *mcast.Sender
	m                     streams.Map
	rm                    streams.Map
	sel                   []streams.Stream
	relayed, lost, failed atomic.Uint64
}

// NewRelay connects to NATS and opens the local sending socket.
func NewRelay(cfg *RelayConfig) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	src, err := NewSource(&cfg.Source)
	if err != nil {
		return nil, err
	}
	sel := cfg.Streams
	if len(sel) == 0 {
		sel = streams.Default()
	}
	for _, s := range sel {
		if err := src.Join(cfg.Source.Map.Addr(s, streams.Raw)); err != nil {
			src.Close()
			return nil, err
		}
	}
	if err := src.Start(); err != nil {
		src.Close()
		return nil, err
	}
	snd, err := mcast.NewSender(cfg.Sender)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("fleet: relay: %w", err)
	}
	return &Relay{src: src, snd: snd, m: cfg.Map, rm: cfg.Source.Map, sel: sel}, nil
}

// Run relays until ctx ends; it returns nil then, and closes nothing.
func (r *Relay) Run(ctx context.Context) error {
	ds := make([]mcast.Datagram, 256)
	for ctx.Err() == nil {
		n, err := r.src.ReadBatchUntil(ds, time.Now().Add(200*time.Millisecond))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, mcast.ErrClosed) {
				return nil
			}
			return err
		}
		for i := range ds[:n] {
			d := &ds[i]
			r.lost.Add(uint64(d.Drops))
			s, _, ok := r.rm.Stream(d.Group)
			if !ok {
				continue
			}
			if err := r.snd.Send(d.Data, r.m.Addr(s, streams.Raw)); err != nil {
				r.failed.Add(1)
				continue
			}
			r.relayed.Add(1)
		}
	}
	return nil
}

// Stats returns the Relay's counters.
func (r *Relay) Stats() RelayStats {
	return RelayStats{Relayed: r.relayed.Load(), Lost: r.lost.Load(), Failed: r.failed.Load()}
}

// Close closes the NATS connection and the sending socket. It is safe to
// call more than once: later calls return nil.
func (r *Relay) Close() error {
	return errors.Join(r.src.Close(), r.snd.Close())
}
