package bench

import "context"

// burst sends the burst, one datagram per message, to one receiver of
// package mcast: what it loses of it.
func (b *bench) burst(ctx context.Context, size int) (*Ceiling, error) {
	b.logf("burst: %d datagrams, one per message, as fast as sendmmsg goes, to one receiver of package mcast", b.cfg.Burst)
	return b.blast(ctx, 1, b.cfg.Burst, size, false, "burst")
}
