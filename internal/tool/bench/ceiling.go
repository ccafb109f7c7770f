package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/nlmcast/nlmcast/mcast"
)

// Ceiling is loopback multicast's own rate for R receivers: plain
// datagrams of the bridge's size sent as fast as sendmmsg goes.
type Ceiling struct {
	Sent     int     `json:"sent"`
	SendRate float64 `json:"sent_per_s"`
	Rate     float64 `json:"delivered_per_s"` // the slowest receiver's
	Lost     int     `json:"lost"`            // by the receiver that lost most
	// Receivers' mean CPU time per datagram, datagrams per read and per
	// wake-up.
	ReceiverCPUPerEventUS float64 `json:"receiver_cpu_us_per_event"`
	EventsPerRead         float64 `json:"events_per_read"`
	EventsPerWake         float64 `json:"events_per_wakeup"`
}

// ceiling measures the raw ceiling for r receivers and datagrams of size
// bytes.
func (b *bench) ceiling(ctx context.Context, r, size int) (*Ceiling, error) {
	return b.blast(ctx, r, b.cfg.Events, size, true, fmt.Sprintf("ceil%d", r))
}

// blast sends n datagrams of size bytes as fast as sendmmsg goes, 128 per
// call, to r receiving processes of package mcast: in runs of 128 as the
// bridge sends them (segmented), or one datagram per message.
func (b *bench) blast(ctx context.Context, r, n, size int, segmented bool, tag string) (*Ceiling, error) {
	g := &group{}
	defer g.close()
	cs, files, err := b.receivers(ctx, g, ModeRaw, r, n, tag, CeilingGroup)
	if err != nil {
		return nil, err
	}
	snd, err := mcast.NewSender(&mcast.SenderConfig{EphemeralPort: true, WriteBuffer: 4 << 20, NoSegmentation: !segmented})
	if err != nil {
		return nil, err
	}
	defer snd.Close()
	const batch = 128 // the longest run the bridge sends, and a sendmmsg's worth
	bufs := make([][]byte, batch)
	ms := make([]ipv4Message, batch)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	dst := udpAddr(CeilingGroup)
	start := time.Now()
	for sent := 0; sent < n && ctx.Err() == nil; {
		k := min(batch, n-sent)
		for i := range k {
			binary.BigEndian.PutUint32(bufs[i], uint32(sent+i))
			ms[i] = ipv4Message{Buffers: [][]byte{bufs[i]}, Addr: dst}
		}
		if err := snd.WriteBatch(ms[:k]); err != nil {
			return nil, fmt.Errorf("bench: %s send: %w", tag, err)
		}
		sent += k
	}
	elapsed := time.Since(start)
	res, err := finish(cs, 3*time.Second)
	if err != nil {
		return nil, err
	}
	rs, err := collect(res, files)
	if err != nil {
		return nil, err
	}
	return ceilingResult(n, elapsed, rs), nil
}
