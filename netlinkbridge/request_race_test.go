package netlinkbridge

import (
	"testing"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// Request may be called from any goroutine, while the generic netlink
// driver binds and unbinds groups on the loop as nlctrl announces
// families. Under -race this fails if Request reads what the loop changes
// (byGroup, a stream's group number).
func TestRequestWhileGenlGroupsChange(t *testing.T) {
	const cycles = 200
	st := streams.Genl("nlmtest", "events")
	src := &joinSource{fakeSource: newFakeSource(), joined: map[uint32]bool{}}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{st}, Encodings: []streams.Encoding{streams.Raw},
		Private: cleartext(st.Name), NoHeartbeats: true, Logger: quiet}, src, nil, &fakeSink{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	done, cancel := startRun(t, b)

	stop, asked, first := make(chan struct{}), make(chan int), make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				asked <- n
				return
			default:
			}
			b.Request(33) // the group the family gets, then loses
			b.Request(34)
			if n++; n == 1 {
				close(first)
			}
		}
	}()
	<-first // requests are being made: the announcements now race with them
	added := testmsg.Ctrl(t, testmsg.CtrlCmdNewFamily, "nlmtest", 40, map[string]uint32{"events": 33})
	removed := testmsg.Ctrl(t, testmsg.CtrlCmdDelFamily, "nlmtest", 40, nil)
	for range cycles {
		src.push([]kernel.Message{{Group: decode.CtrlGroup, Data: added}}, nil)
		src.push([]kernel.Message{{Group: decode.CtrlGroup, Data: removed}}, nil)
	}
	waitFor(t, "every announcement to be handled", func() bool { return b.Stats().GenlGone == cycles })
	close(stop)
	n := <-asked
	cancel()
	if err := runResult(t, done); err != nil {
		t.Fatal(err)
	}

	s := b.Stats()
	if s.GenlJoined != cycles || s.GenlGone != cycles {
		t.Errorf("joined %d, gone %d times, want %d", s.GenlJoined, s.GenlGone, cycles)
	}
	// Generic netlink streams have no table to dump: no request counts.
	if n == 0 || b.requestedAny() || !b.pending.Empty() || s.Resyncs != 0 {
		t.Errorf("after %d requests: requested %v, pending %v, %d resyncs; want none", n, b.requestedAny(), b.pending, s.Resyncs)
	}
}
