package compare

import (
	"testing"
	"time"
)

var t0 = time.Unix(1000, 0)

func at(us int) time.Time { return t0.Add(time.Duration(us) * time.Microsecond) }

func arr(p Path, group uint32, msg string, us int) Arrival {
	return Arrival{Path: p, Group: group, Msg: []byte(msg), At: at(us)}
}

func TestMatcher(t *testing.T) {
	type step struct {
		a       *Arrival
		expire  int // when a is nil: Expire at this time (us)
		matched bool
		delta   time.Duration
		missed  []Path // for Expire: the paths missing, in order
		order   bool
	}
	a := func(p Path, g uint32, msg string, us int) *Arrival { x := arr(p, g, msg, us); return &x }
	for _, tc := range []struct {
		name  string
		steps []step
		want  Summary
	}{
		{"netlink first, then multicast", []step{
			{a: a(Netlink, 1, "A", 0)},
			{a: a(Multicast, 1, "A", 40), matched: true, delta: 40 * time.Microsecond},
		}, Summary{Netlink: 1, Multicast: 1, Matched: 1}},
		{"multicast first", []step{
			{a: a(Multicast, 1, "A", 10)},
			{a: a(Netlink, 1, "A", 25), matched: true, delta: -15 * time.Microsecond},
		}, Summary{Netlink: 1, Multicast: 1, Matched: 1, MulticastFirst: 1}},
		{"same bytes on another group do not match", []step{
			{a: a(Netlink, 1, "A", 0)},
			{a: a(Multicast, 5, "A", 10)},
			{expire: 2000, missed: []Path{Multicast, Netlink}},
		}, Summary{Netlink: 1, Multicast: 1, MissingMulticast: 1, MissingNetlink: 1}},
		{"identical messages pair in order", []step{
			{a: a(Netlink, 1, "A", 0)},
			{a: a(Netlink, 1, "A", 5)},
			{a: a(Multicast, 1, "A", 30), matched: true, delta: 30 * time.Microsecond},
			{a: a(Multicast, 1, "A", 45), matched: true, delta: 40 * time.Microsecond},
		}, Summary{Netlink: 2, Multicast: 2, Matched: 2}},
		{"reordered on multicast", []step{
			{a: a(Netlink, 1, "A", 0)},
			{a: a(Netlink, 1, "B", 1)},
			{a: a(Netlink, 1, "C", 2)},
			{a: a(Multicast, 1, "C", 30), matched: true, delta: 28 * time.Microsecond},
			{a: a(Multicast, 1, "A", 31), matched: true, delta: 31 * time.Microsecond, order: true},
			{a: a(Multicast, 1, "B", 32), matched: true, delta: 31 * time.Microsecond, order: true},
		}, Summary{Netlink: 3, Multicast: 3, Matched: 3, OrderDiffs: 2}},
		{"order across groups is not an order difference", []step{
			{a: a(Netlink, 1, "A", 0)},
			{a: a(Netlink, 5, "B", 1)},
			{a: a(Multicast, 5, "B", 30), matched: true, delta: 29 * time.Microsecond},
			{a: a(Multicast, 1, "A", 31), matched: true, delta: 31 * time.Microsecond},
		}, Summary{Netlink: 2, Multicast: 2, Matched: 2}},
		{"missing on multicast after the wait, not before", []step{
			{a: a(Netlink, 1, "A", 0)},
			{a: a(Netlink, 1, "B", 500)},
			{expire: 999},
			{expire: 1000, missed: []Path{Multicast}},
			{a: a(Multicast, 1, "B", 600), matched: true, delta: 100 * time.Microsecond},
			{a: a(Multicast, 1, "A", 1200)}, // too late: A is already missing
			{expire: 3000, missed: []Path{Netlink}},
		}, Summary{Netlink: 2, Multicast: 2, Matched: 1, MissingMulticast: 1, MissingNetlink: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMatcher(time.Millisecond)
			var deltas []time.Duration
			for i, s := range tc.steps {
				if s.a == nil {
					rs := m.Expire(at(s.expire))
					if len(rs) != len(s.missed) {
						t.Fatalf("step %d: Expire resolved %d, want %d", i, len(rs), len(s.missed))
					}
					for j, r := range rs {
						if !r.Missed || r.MissingOn() != s.missed[j] {
							t.Errorf("step %d: result %d missing on %v (missed %v), want %v", i, j, r.MissingOn(), r.Missed, s.missed[j])
						}
					}
					continue
				}
				r, ok := m.Add(*s.a)
				if ok != s.matched {
					t.Fatalf("step %d: matched %v, want %v", i, ok, s.matched)
				}
				if ok {
					if r.Delta() != s.delta || r.OutOfOrder != s.order || string(r.Msg) != string(s.a.Msg) {
						t.Errorf("step %d: delta %v order %v msg %q, want %v %v", i, r.Delta(), r.OutOfOrder, r.Msg, s.delta, s.order)
					}
					deltas = append(deltas, r.Delta())
				}
			}
			got := m.Summary()
			want := tc.want
			want.Added = Distribute(deltas)
			if got != want {
				t.Errorf("summary\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestFlushAndWaiting(t *testing.T) {
	m := NewMatcher(time.Second)
	m.Add(arr(Netlink, 1, "A", 0))
	m.Add(arr(Multicast, 1, "B", 0))
	m.Add(arr(Multicast, 1, "A", 10))
	if s := m.Summary(); s.Waiting != 1 || s.Matched != 1 {
		t.Fatalf("%+v", s)
	}
	rs := m.Flush()
	if len(rs) != 1 || rs[0].MissingOn() != Netlink || string(rs[0].Msg) != "B" {
		t.Fatalf("Flush: %+v", rs)
	}
	if s := m.Summary(); s.Waiting != 0 || s.MissingNetlink != 1 {
		t.Fatalf("%+v", s)
	}
}

func TestDistribute(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Microsecond)
	}
	d := Distribute(ds)
	want := Distribution{Count: 100, Min: 1, Mean: 50.5, P50: 50, P90: 90, P99: 99, Max: 100}
	if d != want {
		t.Errorf("got %+v, want %+v", d, want)
	}
	if (Distribute(nil) != Distribution{}) {
		t.Error("empty input")
	}
	one := Distribute([]time.Duration{-3 * time.Microsecond})
	if one.P50 != -3 || one.P99 != -3 || one.Min != -3 {
		t.Errorf("one negative value: %+v", one)
	}
}
