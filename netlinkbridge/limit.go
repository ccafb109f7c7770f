package netlinkbridge

import (
	"net/netip"
	"time"
)

// bucket is a token bucket: it holds at most burst tokens and earns one
// every interval.
type bucket struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

// refill brings b up to date at now.
func (b *bucket) refill(now time.Time, every time.Duration, burst int) {
	if el := now.Sub(b.at); el > 0 {
		b.tokens += float64(el) / float64(every)
	}
	if b.tokens > float64(burst) {
		b.tokens = float64(burst)
	}
	b.at = now
}

// limiter bounds the answers to requests: each sender (address and port)
// has a bucket of burst answers earning one every interval, and all
// senders together share one more. A request is answered only when both
// its sender's bucket and the shared one hold a token. Its methods are
// called from serveRequests alone.
type limiter struct {
	every, allEvery time.Duration
	burst, allBurst int
	maxSenders      int

	all     bucket
	senders map[netip.AddrPort]*bucket
}

// maxSenders bounds the senders a limiter remembers. A sender whose
// bucket is full is as good as forgotten; when the map is full of
// senders that are not, new senders are refused until some refill.
const maxSenders = 4096

func newLimiter(every time.Duration, burst int, allEvery time.Duration, allBurst int, now time.Time) *limiter {
	return &limiter{
		every: every, burst: burst, allEvery: allEvery, allBurst: allBurst, maxSenders: maxSenders,
		all:     bucket{tokens: float64(allBurst), at: now},
		senders: map[netip.AddrPort]*bucket{},
	}
}

// allow reports whether a request from src may be answered at now, and
// if so takes a token from src's bucket and the shared one.
func (l *limiter) allow(src netip.AddrPort, now time.Time) bool {
	l.all.refill(now, l.allEvery, l.allBurst)
	b := l.senders[src]
	if b == nil {
		if len(l.senders) >= l.maxSenders {
			l.forgetFull(now)
			if len(l.senders) >= l.maxSenders {
				return false
			}
		}
		b = &bucket{tokens: float64(l.burst), at: now}
		l.senders[src] = b
	}
	b.refill(now, l.every, l.burst)
	if b.tokens < 1 || l.all.tokens < 1 {
		return false
	}
	b.tokens--
	l.all.tokens--
	return true
}

// forgetFull forgets the senders whose buckets are full again.
func (l *limiter) forgetFull(now time.Time) {
	for src, b := range l.senders {
		if b.refill(now, l.every, l.burst); b.tokens >= float64(l.burst) {
			delete(l.senders, src)
		}
	}
}
