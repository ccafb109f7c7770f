package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/nlmcast/nlmcast/internal/sys/procstat"
	"github.com/nlmcast/nlmcast/internal/tool/compare"
	"github.com/nlmcast/nlmcast/mcast"
)

// latency runs the latency run, one receiver at a modest rate and one
// request per sendmsg, and beside it the same hop read bare and read by
// package mcast. It fills rep's Latency, BareHop and LibraryHop.
func (b *bench) latency(ctx context.Context, rep *Report) error {
	n, rt := b.cfg.LatencyEvents, b.cfg.LatencyRate
	b.logf("latency: 1 receiver, %d events at %s, one request per sendmsg", n, rateText(rt))
	run, err := b.bridgeRun(ctx, 1, n, rt, 1, true, Way{})
	if err != nil {
		return err
	}
	rep.Latency = run
	b.logf("bare hop: %d datagrams at %s to a blocking recvfrom", n, rateText(rt))
	if rep.BareHop, err = b.hop(ctx, ModeBare, n, rt, rep.DatagramBytes); err != nil {
		return err
	}
	b.logf("library hop: %d datagrams at %s to a receiver of package mcast", n, rateText(rt))
	rep.LibraryHop, err = b.hop(ctx, ModeRaw, n, rt, rep.DatagramBytes)
	return err
}

// hop measures one loopback multicast hop: datagrams of the bridge's size
// sent one per sendmsg at the latency run's rate, to a receiving process
// of a mode: ModeBare, a socket read with blocking recvfrom and nothing of
// nlmcast, or ModeRaw, package mcast. The bare hop is what this machine
// charges for any hop, the floor of what the bridge can add; the other,
// less the bare one, is what the receiving library adds.
func (b *bench) hop(ctx context.Context, mode string, n int, rt float64, size int) (*compare.Distribution, error) {
	g := &group{}
	defer g.close()
	cs, files, err := b.receivers(ctx, g, mode, 1, n, "hop-"+mode, CeilingGroup)
	if err != nil {
		return nil, err
	}
	snd, err := mcast.NewSender(&mcast.SenderConfig{EphemeralPort: true, NoSegmentation: true})
	if err != nil {
		return nil, err
	}
	defer snd.Close()
	buf := make([]byte, max(size, 4))
	ms := []ipv4Message{{Buffers: [][]byte{buf}, Addr: udpAddr(CeilingGroup)}}
	sent := make(map[uint32]int64, n)
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		// Pace the sends: datagram i leaves at i/rt seconds.
		if d := time.Until(start.Add(time.Duration(float64(i) / rt * float64(time.Second)))); d > 0 {
			time.Sleep(d)
		}
		binary.BigEndian.PutUint32(buf, uint32(i))
		sent[uint32(i)] = procstat.Monotonic()
		if err := snd.WriteBatch(ms); err != nil {
			return nil, fmt.Errorf("bench: %s hop send: %w", mode, err)
		}
	}
	res, err := finish(cs, 3*time.Second)
	if err != nil {
		return nil, err
	}
	rs, err := collect(res, files)
	if err != nil {
		return nil, err
	}
	d := compare.Distribute(since(rs[0].keys, sent))
	return &d, nil
}
