package netlinkbridge

import (
	"net/netip"
	"testing"
	"time"
)

// TestLimiter: with a clock of the test's own, each sender gets its burst
// and then one answer per interval; all senders together get the shared
// burst and rate however many ports they use; the senders remembered are
// bounded.
func TestLimiter(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	port := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p) }
	count := func(l *limiter, now time.Time, srcs ...netip.AddrPort) (n int) {
		for _, s := range srcs {
			if l.allow(s, now) {
				n++
			}
		}
		return n
	}
	repeat := func(s netip.AddrPort, n int) []netip.AddrPort {
		out := make([]netip.AddrPort, n)
		for i := range out {
			out[i] = s
		}
		return out
	}

	// One sender, 1,000 requests at once: its burst.
	l := newLimiter(time.Second, 4, 100*time.Millisecond, 100, t0)
	if n := count(l, t0, repeat(port(40000), 1000)...); n != 4 {
		t.Errorf("one sender's 1000 requests: %d answered, want its burst 4", n)
	}
	// Then one per second: 2.5 s later, two more.
	if n := count(l, t0.Add(2500*time.Millisecond), repeat(port(40000), 10)...); n != 2 {
		t.Errorf("2.5 s later: %d answered, want 2", n)
	}
	// Another sender has its own bucket.
	if n := count(l, t0.Add(2500*time.Millisecond), repeat(port(40001), 10)...); n != 4 {
		t.Errorf("another sender: %d answered, want 4", n)
	}

	// Many ports: the shared bucket bounds them, 10 at once and then
	// one per 100 ms.
	l = newLimiter(time.Second, 4, 100*time.Millisecond, 10, t0)
	var many []netip.AddrPort
	for p := uint16(30000); p < 31000; p++ {
		many = append(many, port(p))
	}
	if n := count(l, t0, many...); n != 10 {
		t.Errorf("1000 ports at once: %d answered, want the shared burst 10", n)
	}
	total := 0
	for i := 1; i <= 10; i++ { // ten seconds, a request from every port each second
		total += count(l, t0.Add(time.Duration(i)*time.Second), many...)
	}
	if total != 100 {
		t.Errorf("1000 ports over 10 s: %d answered, want 100 (10 per second)", total)
	}

	// The senders remembered are bounded; full buckets are forgotten
	// to make room.
	l = newLimiter(time.Second, 2, time.Nanosecond, 1<<30, t0)
	l.maxSenders = 8
	for p := uint16(1); p <= 8; p++ {
		l.allow(port(p), t0)
	}
	if l.allow(port(9), t0) {
		t.Error("a new sender answered with the table of senders full of empty buckets")
	}
	if !l.allow(port(9), t0.Add(2*time.Second)) || len(l.senders) > 8 {
		t.Errorf("after the buckets refilled: %d senders", len(l.senders))
	}
}
