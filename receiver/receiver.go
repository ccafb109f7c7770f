// Package receiver reads nlmcast streams: it joins the multicast groups of
// the chosen streams (package mcast), checks and decodes every frame
// (package frame), and hands back events. It needs no privilege and knows
// nothing of netlink sockets.
package receiver

import (
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// Config configures a Receiver. A nil *Config means every default.
type Config struct {
	// Streams are the streams to join. Zero: every stream.
	Streams []streams.Stream
	// Encoding is the encoding to receive. Zero: streams.Raw.
	Encoding streams.Encoding
	// Map is the bridge's address map. Zero: the default map.
	Map streams.Map
	// Mcast configures the sockets: interface, accepted sender, buffer.
	// Nil: lo, sender 127.0.0.1 from a privileged port.
	Mcast *mcast.ReceiverConfig
}

// Event is one frame received on a stream.
type Event struct {
	Stream   streams.Stream
	Encoding streams.Encoding
	Header   frame.Header
	// Payload is the netlink message (raw encoding) or the whole JSON
	// datagram (JSON encoding). It is valid until the next ReadBatch.
	Payload []byte
	// JSON is the decoded JSON frame (JSON encoding only).
	JSON   *frame.JSONFrame
	Source netip.AddrPort
}

// Stats counts what a Receiver saw.
type Stats struct {
	Mcast     mcast.ReceiverStats // socket-level drops and counts
	Events    uint64              // frames passed to the caller
	Malformed uint64              // datagrams that are not valid frames (dropped)
	Mismatch  uint64              // frames whose header names another stream than their group (dropped)
}

// Receiver receives events from nlmcast streams.
type Receiver struct {
	mc       *mcast.Receiver
	m        streams.Map
	encoding streams.Encoding
	ds       []mcast.Datagram

	events, malformed, mismatch atomic.Uint64
}

// New joins the configured streams.
func New(cfg *Config) (*Receiver, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if err := cfg.Map.Validate(); err != nil {
		return nil, fmt.Errorf("address map: %w", err)
	}
	mc, err := mcast.NewReceiver(cfg.Mcast)
	if err != nil {
		return nil, err
	}
	sel := cfg.Streams
	if len(sel) == 0 {
		sel = streams.All()
	}
	batch := mcast.DefaultBatch
	if cfg.Mcast != nil && cfg.Mcast.Batch > 0 {
		batch = cfg.Mcast.Batch
	}
	r := &Receiver{mc: mc, m: cfg.Map, encoding: cfg.Encoding, ds: make([]mcast.Datagram, batch)}
	for _, s := range sel {
		if err := r.Join(s); err != nil {
			mc.Close()
			return nil, err
		}
	}
	return r, nil
}

// Join starts receiving a stream.
func (r *Receiver) Join(s streams.Stream) error {
	return r.mc.Join(r.m.Addr(s, r.encoding))
}

// Leave stops receiving a stream.
func (r *Receiver) Leave(s streams.Stream) error {
	return r.mc.Leave(r.m.Addr(s, r.encoding))
}

// Mcast returns the underlying multicast receiver, for deadlines and
// buffer sizes.
func (r *Receiver) Mcast() *mcast.Receiver { return r.mc }

// ReadBatch waits for frames and fills evs with as many as are ready,
// returning how many. Datagrams that are not valid frames for their group
// are dropped and counted, never returned.
func (r *Receiver) ReadBatch(evs []Event) (int, error) {
	ds := r.ds
	if len(evs) < len(ds) {
		ds = ds[:len(evs)]
	}
	for {
		n, err := r.mc.ReadBatch(ds)
		if err != nil {
			return 0, err
		}
		k := 0
		for i := range ds[:n] {
			if r.decode(&ds[i], &evs[k]) {
				k++
			}
		}
		if k > 0 {
			r.events.Add(uint64(k))
			return k, nil
		}
	}
}

// decode checks and decodes one datagram into ev.
func (r *Receiver) decode(d *mcast.Datagram, ev *Event) bool {
	s, enc, ok := r.m.Stream(d.Group)
	if !ok {
		r.mismatch.Add(1)
		return false
	}
	*ev = Event{Stream: s, Encoding: enc, Source: d.Source}
	if enc == streams.JSON {
		f, err := frame.ParseJSON(d.Data)
		if err != nil {
			r.malformed.Add(1)
			return false
		}
		h, _ := f.Header() // checked by ParseJSON
		ev.Header, ev.JSON, ev.Payload = h, f, d.Data
	} else {
		h, payload, err := frame.Parse(d.Data)
		if err != nil {
			r.malformed.Add(1)
			return false
		}
		ev.Header, ev.Payload = h, payload
	}
	if ev.Header.Family != s.Family || ev.Header.Group != s.Group {
		r.mismatch.Add(1)
		return false
	}
	return true
}

// Stats returns the Receiver's counters.
func (r *Receiver) Stats() Stats {
	return Stats{Mcast: r.mc.Stats(), Events: r.events.Load(), Malformed: r.malformed.Load(), Mismatch: r.mismatch.Load()}
}

// Close leaves every stream and unblocks a pending ReadBatch.
func (r *Receiver) Close() error { return r.mc.Close() }
