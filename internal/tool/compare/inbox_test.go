package compare

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// The readers put batches while Run's loop is busy elsewhere (printing, or
// between ticks): put never waits for a take, and take returns every batch
// put since the last one, each reader's in its order.
func TestInboxKeepsEveryBatchInOrder(t *testing.T) {
	var in inbox
	const perReader = 10000
	var wg sync.WaitGroup
	for _, p := range []Path{Netlink, Multicast} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perReader {
				in.put(batch{arrivals: []Arrival{{Path: p, Group: uint32(i)}}})
			}
		}()
	}
	wg.Wait() // no one took anything meanwhile
	next := map[Path]uint32{}
	for _, b := range in.take() {
		a := b.arrivals[0]
		if a.Group != next[a.Path] {
			t.Fatalf("path %v: batch %d taken where %d was due", a.Path, a.Group, next[a.Path])
		}
		next[a.Path]++
	}
	for _, p := range []Path{Netlink, Multicast} {
		if next[p] != perReader {
			t.Errorf("path %v: %d batches taken, want %d", p, next[p], perReader)
		}
	}
	if bs := in.take(); len(bs) != 0 {
		t.Errorf("a second take returned %d batches, want none", len(bs))
	}
	in.put(batch{state: 1})
	if bs := in.take(); len(bs) != 1 || bs[0].state != 1 {
		t.Errorf("take after one more put: %+v", bs)
	}
}

// A step the caller announces is reported after what came before it and
// before what came after, though Run reports both later, at its tick.
func TestStepIsReportedInOrder(t *testing.T) {
	s := &Session{m: NewMatcher(time.Second)}
	s.in.put(batch{notes: []Report{{Path: Multicast, Note: "before"}}})
	s.Step("ip link add")
	s.in.put(batch{notes: []Report{{Path: Multicast, Note: "after"}}})
	var got []string
	s.takeAll(func(r Report) { got = append(got, r.Step+r.Note) })
	if want := []string{"before", "ip link add", "after"}; !slices.Equal(got, want) {
		t.Errorf("reported %q, want %q", got, want)
	}
}
