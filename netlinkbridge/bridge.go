// Package netlinkbridge subscribes to kernel netlink multicast groups and
// re-emits every event as a framed datagram on loopback IP multicast groups,
// one group per stream and encoding (see package streams for the map and
// package frame for the wire format).
//
// The path of one event: KernelSource reads a batch of datagrams with
// recvmmsg and splits them into netlink messages; Bridge prefixes each with a
// frame header (raw encoding, header and message passed as two iovecs, no
// copy) and, when enabled, decodes it to JSON; mcast.Sender sends the whole
// batch with sendmmsg. The raw path allocates nothing in steady state.
package netlinkbridge

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// Config configures a Bridge. A nil *Config means every default.
type Config struct {
	// Streams are the streams to bridge. Zero: every stream (streams.All).
	Streams []streams.Stream
	// Map assigns groups and ports. Zero: streams.DefaultBase and
	// streams.DefaultPort.
	Map streams.Map
	// Encodings are the encodings to send. Zero: raw and JSON.
	Encodings []streams.Encoding
	// NetNS is a network namespace file descriptor whose events are read.
	// Zero: the calling thread's namespace.
	NetNS int
	// ReadBuffer is the netlink socket's receive buffer in bytes.
	// Zero: DefaultReadBuffer.
	ReadBuffer int
	// Batch is how many netlink datagrams are read per system call.
	// Zero: DefaultBatch.
	Batch int
	// Sender configures the multicast socket. Nil: loopback defaults.
	Sender *mcast.SenderConfig
	// Logger receives warnings (overruns, drops) and lifecycle messages.
	// Nil: slog.Default().
	Logger *slog.Logger
}

// Sink is where the bridge sends datagrams; *mcast.Sender is one.
type Sink interface {
	WriteBatch(ms []ipv4.Message) error
}

// Stats counts what the bridge did.
type Stats struct {
	Source     SourceStats
	Events     uint64 // kernel messages sent on a stream
	Datagrams  uint64 // datagrams handed to the sink
	NotStreams uint64 // messages on groups that are not bridged (joined for interface names)
	TooLarge   uint64 // messages that do not fit one datagram (dropped, logged)
	SendErrors uint64 // failed WriteBatch calls
}

// Bridge moves kernel events to multicast streams. Create it with New, then
// call Run.
type Bridge struct {
	src    Source
	sink   Sink
	closer func() error // closes what New opened besides src
	log    *slog.Logger
	epoch  uint64

	byGroup [256]*streamState // indexed by netlink group
	json    bool              // some stream is sent as JSON
	names   *ifNames

	in      []Message
	out     []ipv4.Message
	hdrs    [][frame.HeaderLen]byte
	iovs    [][2][]byte
	jsonBuf [][]byte

	events, datagrams, notStreams, tooLarge, sendErrors atomic.Uint64
	lastOverrunLog                                      time.Time
}

type streamState struct {
	stream    streams.Stream
	seq       uint64
	raw, json *net.UDPAddr // nil when that encoding is off
}

// New opens the kernel source and the multicast sender for cfg.
func New(cfg *Config) (*Bridge, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if err := cfg.Map.Validate(); err != nil {
		return nil, fmt.Errorf("address map: %w", err)
	}
	snd, err := mcast.NewSender(cfg.Sender)
	if err != nil {
		return nil, err
	}
	b, err := newBridge(cfg, nil, snd)
	if err != nil {
		snd.Close()
		return nil, err
	}
	groups := b.groups()
	src, err := NewKernelSource(&KernelConfig{Groups: groups, NetNS: cfg.NetNS, ReadBuffer: cfg.ReadBuffer, Batch: cfg.Batch})
	if err != nil {
		snd.Close()
		return nil, err
	}
	b.src = src
	b.closer = snd.Close
	if b.json {
		if err := b.names.load(cfg.NetNS); err != nil {
			b.log.Warn("interface names unavailable until links change", "err", err)
		}
	}
	b.log.Info("bridge subscribed", "groups", groups, "netlink_read_buffer", src.ReadBuffer(),
		"source", snd.Source().String(), "epoch", fmt.Sprintf("%016x", b.epoch))
	return b, nil
}

// NewWithSource returns a Bridge reading from src and writing to sink,
// which need not be real sockets: tests use fakes.
func NewWithSource(cfg *Config, src Source, sink Sink) (*Bridge, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if err := cfg.Map.Validate(); err != nil {
		return nil, fmt.Errorf("address map: %w", err)
	}
	return newBridge(cfg, src, sink)
}

func newBridge(cfg *Config, src Source, sink Sink) (*Bridge, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var e [8]byte
	_, _ = crand.Read(e[:]) // never fails on Linux
	b := &Bridge{src: src, sink: sink, log: log, epoch: binary.BigEndian.Uint64(e[:]), names: newIfNames()}

	sel := cfg.Streams
	if len(sel) == 0 {
		sel = streams.All()
	}
	encs := cfg.Encodings
	if len(encs) == 0 {
		encs = []streams.Encoding{streams.Raw, streams.JSON}
	}
	for _, s := range sel {
		if s.Group >= uint32(len(b.byGroup)) {
			return nil, fmt.Errorf("stream %s: group %d out of range", s.Name, s.Group)
		}
		st := &streamState{stream: s}
		for _, e := range encs {
			ap := cfg.Map.Addr(s, e)
			ua := net.UDPAddrFromAddrPort(ap)
			if e == streams.JSON {
				st.json = ua
				b.json = true
			} else {
				st.raw = ua
			}
		}
		b.byGroup[s.Group] = st
	}

	n := cfg.Batch
	if n <= 0 {
		n = DefaultBatch
	}
	// A datagram usually holds one message; leave room for a few more.
	b.in = make([]Message, 2*n)
	b.out = make([]ipv4.Message, 2*len(b.in))
	b.hdrs = make([][frame.HeaderLen]byte, len(b.out))
	b.iovs = make([][2][]byte, len(b.out))
	b.jsonBuf = make([][]byte, len(b.out))
	return b, nil
}

// groups returns the netlink groups to join: the bridged ones, plus links
// when JSON needs interface names.
func (b *Bridge) groups() []uint32 {
	var gs []uint32
	for g, st := range b.byGroup {
		if st != nil || (b.json && g == unix.RTNLGRP_LINK) {
			gs = append(gs, uint32(g))
		}
	}
	return gs
}

// Epoch returns the bridge's random epoch, carried in every frame.
func (b *Bridge) Epoch() uint64 { return b.epoch }

// Stats returns the bridge's counters.
func (b *Bridge) Stats() Stats {
	return Stats{
		Source: b.src.Stats(), Events: b.events.Load(), Datagrams: b.datagrams.Load(),
		NotStreams: b.notStreams.Load(), TooLarge: b.tooLarge.Load(), SendErrors: b.sendErrors.Load(),
	}
}

// Run bridges events until ctx is done, then closes the source (and the
// sender, if New opened it) and returns nil. It returns an error only when
// reading from the kernel fails for good; lost events (overruns) and send
// errors are logged and counted, and bridging goes on.
func (b *Bridge) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { b.src.Close() })
	defer func() {
		if stop() {
			b.src.Close()
		}
		if b.closer != nil {
			b.closer()
		}
	}()
	for {
		n, err := b.src.ReadBatch(b.in)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrOverrun) {
				b.logOverrun()
				continue
			}
			return err
		}
		b.forward(b.in[:n], time.Now().UnixNano())
	}
}

// forward frames and sends one batch of messages.
func (b *Bridge) forward(msgs []Message, now int64) {
	k := 0
	for i := range msgs {
		if k+2 > len(b.out) {
			b.flush(k)
			k = 0
		}
		k = b.frame(&msgs[i], now, k)
	}
	b.flush(k)
}

// frame adds the datagrams of one message at b.out[k:] and returns the new k.
func (b *Bridge) frame(m *Message, now int64, k int) int {
	if b.json && m.Group == unix.RTNLGRP_LINK {
		b.names.update(m.Data)
	}
	var st *streamState
	if m.Group < uint32(len(b.byGroup)) {
		st = b.byGroup[m.Group]
	}
	if st == nil {
		b.notStreams.Add(1)
		return k
	}
	if len(m.Data) > frame.MaxPayload {
		b.tooLarge.Add(1)
		b.log.Warn("netlink message too large for one datagram, dropped", "stream", st.stream.Name, "bytes", len(m.Data))
		return k
	}
	st.seq++
	h := frame.Header{
		Kind: frame.KindEvent, Family: st.stream.Family, Group: m.Group,
		Epoch: b.epoch, Seq: st.seq, Time: now, PayloadLen: uint32(len(m.Data)),
	}
	if st.raw != nil {
		h.Put(b.hdrs[k][:])
		b.iovs[k] = [2][]byte{b.hdrs[k][:], m.Data}
		b.out[k] = ipv4.Message{Buffers: b.iovs[k][:], Addr: st.raw}
		k++
	}
	if st.json != nil {
		d := Decode(m.Data, b.names.lookup)
		buf := frame.AppendJSON(b.jsonBuf[k][:0], h, st.stream.Name, d.Summary, d.Event)
		b.jsonBuf[k] = buf
		if len(buf) > frame.MaxDatagram {
			b.tooLarge.Add(1)
			b.log.Warn("JSON frame too large for one datagram, dropped", "stream", st.stream.Name, "bytes", len(buf))
		} else {
			b.iovs[k] = [2][]byte{buf}
			b.out[k] = ipv4.Message{Buffers: b.iovs[k][:1], Addr: st.json}
			k++
		}
	}
	b.events.Add(1)
	return k
}

func (b *Bridge) flush(k int) {
	if k == 0 {
		return
	}
	if err := b.sink.WriteBatch(b.out[:k]); err != nil {
		b.sendErrors.Add(1)
		b.log.Warn("multicast send failed", "err", err)
	}
	b.datagrams.Add(uint64(k))
	for i := range b.out[:k] {
		b.iovs[i] = [2][]byte{} // drop references to the read buffers
	}
}

func (b *Bridge) logOverrun() {
	if time.Since(b.lastOverrunLog) < time.Second {
		return
	}
	b.lastOverrunLog = time.Now()
	b.log.Warn("kernel events lost: netlink receive buffer overrun (ENOBUFS); raise --read-buffer",
		"overruns_total", b.src.Stats().Overruns)
}
