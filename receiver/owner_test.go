package receiver

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// ownerSource is the bridge's address in these tests (a privileged port).
var ownerSource = netip.MustParseAddrPort("127.0.0.1:1021")

// bridgeAndReceiver binds ownerSource as the bridge would, and opens a
// receiver of ss on testMap's groups, in the calling thread's network
// namespace; both are closed when the test ends.
func bridgeAndReceiver(t *testing.T, ss ...streams.Stream) (*mcast.Sender, *Receiver, streams.Map) {
	t.Helper()
	bridge, err := mcast.NewSender(&mcast.SenderConfig{Source: ownerSource})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bridge.Close() })
	m := testMap()
	r, err := New(&Config{Streams: ss, Map: m, NoSilentNotices: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return bridge, r, m
}

// The owner check follows the sockets that hold the bridge's address: a
// bridge's confirms, the same socket after its goodbye does not, and a
// restarted bridge's (another socket) does again, at once.
func TestOwnerFollowsTheBridgesSocket(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		src := ownerSource
		now := time.Now()
		o, w := openOwner(src, 0, now)
		if o == nil {
			return fmt.Errorf("no owner check: %s", w)
		}
		defer o.Close()
		if o.ok() {
			return fmt.Errorf("confirmed with no socket on %v", src)
		}
		bridge, err := mcast.NewSender(&mcast.SenderConfig{Source: src})
		if err != nil {
			return err
		}
		o.due(now) // nobody held it at the last look: due at once
		if !o.ok() {
			return fmt.Errorf("root's socket on %v not confirmed", src)
		}
		o.due(now.Add(time.Millisecond))
		if !o.ok() || o.next.Sub(now) < ownerEvery/2 {
			return fmt.Errorf("a confirmed owner is looked at again at %v", o.next)
		}
		o.goodbye(now)
		if o.ok() {
			return fmt.Errorf("still confirmed after the goodbye, its socket open")
		}
		bridge.Close()
		again, err := mcast.NewSender(&mcast.SenderConfig{Source: src})
		if err != nil {
			return err
		}
		defer again.Close()
		o.due(now.Add(time.Millisecond)) // no rate limit: nobody else held it
		if !o.ok() {
			return fmt.Errorf("a restarted bridge's socket not confirmed")
		}
		other := &owner{diag: o.diag, src: src, uid: 1000}
		other.look(now)
		if other.ok() || other.next.Sub(now) != ownerRetry {
			return fmt.Errorf("root's socket confirmed for uid 1000, or looked at again at %v", other.next)
		}
		return nil
	})
}

// A receiver of several streams reads their sockets in any order: the
// goodbye of one stream may come before the last events of another. Those
// are still the bridge's (each went out before its own stream's goodbye),
// and are delivered; a frame of a stream after its own goodbye, from the
// closing socket, is not.
func TestGoodbyeOfOneStreamLetsOthersFinish(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		src := ownerSource
		link, _ := streams.Lookup("link")
		addr, _ := streams.Lookup("ipv4-ifaddr")
		_, r, m := bridgeAndReceiver(t, link, addr)
		now := time.Now()
		epoch := frame.NewEpoch(now)
		dgram := func(s streams.Stream, k frame.Kind, seq uint64) mcast.Datagram {
			h := frame.Header{Kind: k, Family: s.Family, Group: s.Group, Epoch: epoch, Seq: seq, Time: now.UnixNano()}
			return mcast.Datagram{Group: m.Addr(s, streams.Raw), Source: src, Data: frame.Append(nil, h, []byte("message"))}
		}
		// As the sockets were read: link's goodbye before addr's last
		// events, then a link frame from the closing socket.
		ds := []mcast.Datagram{
			dgram(link, frame.KindEvent, 1), dgram(addr, frame.KindEvent, 1),
			dgram(link, frame.KindGoodbye, 1),
			dgram(addr, frame.KindEvent, 2), dgram(addr, frame.KindGoodbye, 2),
			dgram(link, frame.KindEvent, 2),
		}
		evs := make([]Event, 16)
		r.mu.Lock()
		r.out = evs[:0]
		for i := range ds {
			r.decode(&ds[i], now)
		}
		n := len(r.out)
		r.out = nil
		r.mu.Unlock()
		var got []string
		for _, ev := range evs[:n] {
			if !ev.IsNotice() {
				got = append(got, fmt.Sprintf("%s %s #%d", ev.Stream.Name, ev.Header.Kind, ev.Header.Seq))
			}
		}
		want := []string{"link event #1", "ipv4-ifaddr event #1", "link goodbye #1", "ipv4-ifaddr event #2", "ipv4-ifaddr goodbye #2"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("delivered %q, want %q", got, want)
		}
		if st := r.Stats(); st.Unattested != 1 {
			return fmt.Errorf("%d frames unattested, want 1: link's after its goodbye", st.Unattested)
		}
		return nil
	})
}

// ownerBatch decodes ds as ReadBatch does a batch read at now: a look if
// one is due, then each datagram. It returns the frames and restarts
// delivered.
func ownerBatch(r *Receiver, now time.Time, ds ...mcast.Datagram) []string {
	r.owner.due(now)
	evs := make([]Event, 4*len(ds))
	r.mu.Lock()
	r.out = evs[:0]
	for i := range ds {
		r.decode(&ds[i], now)
	}
	n := len(r.out)
	r.out = nil
	r.mu.Unlock()
	var got []string
	for _, ev := range evs[:n] {
		switch {
		case ev.Notice.Kind == Restart:
			got = append(got, ev.Stream.Name+" restart")
		case !ev.IsNotice():
			got = append(got, fmt.Sprintf("%s %s %x#%d", ev.Stream.Name, ev.Header.Kind, ev.Header.Epoch&0xf, ev.Header.Seq))
		}
	}
	return got
}

// ownerDgram makes a frame of stream s as the bridge sends it at now.
func ownerDgram(m streams.Map, s streams.Stream, k frame.Kind, epoch, seq uint64, now time.Time) mcast.Datagram {
	h := frame.Header{Kind: k, Family: s.Family, Group: s.Group, Epoch: epoch, Seq: seq, Time: now.UnixNano()}
	return mcast.Datagram{Group: m.Addr(s, streams.Raw), Data: frame.Append(nil, h, []byte("message"))}
}

// bindPort binds a UDP socket to src as the calling thread's user.
func bindPort(src netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.Addr().As4(), Port: int(src.Port())}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// A goodbye read once the bridge that sent it has closed its socket and a
// new bridge has bound the address (a fast restart, a receiver reading
// late) marks the new bridge's socket closing: that is the one the look
// before it found. The new bridge's frames, of a new epoch after each
// stream's goodbye, are delivered all the same, whatever order the
// streams' sockets are read in.
func TestGoodbyeReadAfterARestart(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		src := ownerSource
		link, _ := streams.Lookup("link")
		addr, _ := streams.Lookup("ipv4-ifaddr")
		m := testMap()
		r, err := New(&Config{Streams: []streams.Stream{link, addr}, Map: m, NoSilentNotices: true})
		if err != nil {
			return err
		}
		defer r.Close()
		old, err := mcast.NewSender(&mcast.SenderConfig{Source: src})
		if err != nil {
			return err
		}
		old.Close() // it sent its last frames and goodbyes, unread yet
		again, err := mcast.NewSender(&mcast.SenderConfig{Source: src})
		if err != nil {
			return err
		}
		defer again.Close()
		now := time.Now()
		e1, e2 := uint64(0x10000001), uint64(0x20000002)
		d := func(s streams.Stream, k frame.Kind, epoch, seq uint64) mcast.Datagram {
			return ownerDgram(m, s, k, epoch, seq, now)
		}
		// Link's socket is read ahead of addr's: addr's goodbye comes
		// after the new bridge's first link frame.
		got := ownerBatch(r, now, d(link, frame.KindEvent, e1, 1), d(addr, frame.KindEvent, e1, 1), d(link, frame.KindGoodbye, e1, 1))
		got = append(got, ownerBatch(r, now.Add(time.Millisecond), d(link, frame.KindEvent, e2, 1), d(addr, frame.KindGoodbye, e1, 1))...)
		got = append(got, ownerBatch(r, now.Add(2*time.Millisecond), d(addr, frame.KindEvent, e2, 1), d(link, frame.KindEvent, e2, 2))...)
		want := []string{
			"link event 1#1", "ipv4-ifaddr event 1#1", "link goodbye 1#1",
			"link restart", "link event 2#1", "ipv4-ifaddr goodbye 1#1",
			"ipv4-ifaddr restart", "ipv4-ifaddr event 2#1", "link event 2#2",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("delivered %q, want %q", got, want)
		}
		if n := r.Stats().Unattested; n != 0 {
			return fmt.Errorf("%d frames unattested", n)
		}
		if !r.owner.ok() {
			return fmt.Errorf("the new bridge's socket is not confirmed")
		}
		return nil
	})
}

// After a goodbye, another user who binds the port once the bridge has
// closed it gets nothing through on that stream, not even frames of a new
// epoch, as a restarted bridge's would be: neither while its socket holds
// the address, nor once it has closed it before the look.
func TestGoodbyeThenAnotherUsersNewEpoch(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		src := ownerSource
		link, _ := streams.Lookup("link")
		bridge, r, m := bridgeAndReceiver(t, link)
		// Any user may bind the port from here on (New refuses to start so).
		if err := testenv.SetPortStart(0); err != nil {
			return err
		}
		now := time.Now()
		e1, e2 := uint64(0x10000001), uint64(0x20000002)
		d := func(k frame.Kind, epoch, seq uint64) mcast.Datagram { return ownerDgram(m, link, k, epoch, seq, now) }
		got := ownerBatch(r, now, d(frame.KindEvent, e1, 1), d(frame.KindGoodbye, e1, 1))
		bridge.Close()
		if err := testenv.BecomeNobody(); err != nil {
			return err
		}
		fd, err := bindPort(src)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		got = append(got, ownerBatch(r, now.Add(time.Millisecond), d(frame.KindEvent, e2, 1))...)
		unix.Close(fd)
		// Past the wait between looks while another user held it.
		got = append(got, ownerBatch(r, now.Add(2*ownerRetry), d(frame.KindEvent, e2, 2))...)
		if want := []string{"link event 1#1", "link goodbye 1#1"}; fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("delivered %q, want %q", got, want)
		}
		if n := r.Stats().Unattested; n != 2 {
			return fmt.Errorf("%d frames unattested, want 2", n)
		}
		return nil
	})
}

// Another user's goodbye marks nothing closing: its socket, were it
// marked, would pass for the closing bridge's on the streams whose own
// goodbye has not come.
func TestGoodbyeFromAnotherUser(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		src := ownerSource
		link, _ := streams.Lookup("link")
		addr, _ := streams.Lookup("ipv4-ifaddr")
		m := testMap()
		r, err := New(&Config{Streams: []streams.Stream{link, addr}, Map: m, NoSilentNotices: true})
		if err != nil {
			return err
		}
		defer r.Close()
		// Any user may bind the port from here on (New refuses to start so).
		if err := testenv.SetPortStart(0); err != nil {
			return err
		}
		if err := testenv.BecomeNobody(); err != nil {
			return err
		}
		fd, err := bindPort(src)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		now := time.Now()
		const e1 = 0x10000001
		got := ownerBatch(r, now, ownerDgram(m, link, frame.KindGoodbye, e1, 1, now), ownerDgram(m, addr, frame.KindEvent, e1, 1, now))
		// A goodbye is delivered whoever sent it: it only says a bridge stopped.
		if want := []string{"link goodbye 1#1"}; fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("delivered %q, want %q", got, want)
		}
		if n := r.Stats().Unattested; n != 1 {
			return fmt.Errorf("%d frames unattested, want 1", n)
		}
		return nil
	})
}

// A frame of a new epoch after a goodbye is a restart only if a look made
// after it was read finds the bridge's uid alone: when sock_diag fails,
// the last look is older than the frame, which a sender that bound the
// port since may have sent. A goodbye whose own look fails (sock_diag
// worked before) leaves the owner unconfirmed, not confirmed as the look
// before it was.
func TestGoodbyeThenNewEpochUnseen(t *testing.T) {
	for _, failsBefore := range []bool{false, true} {
		t.Run(fmt.Sprintf("looks fail before the goodbye: %v", failsBefore), func(t *testing.T) {
			testenv.InNewNetNS(t, func() error {
				link, _ := streams.Lookup("link")
				bridge, r, m := bridgeAndReceiver(t, link)
				now := time.Now()
				e1, e2 := uint64(0x10000001), uint64(0x20000002)
				d := func(k frame.Kind, epoch, seq uint64) mcast.Datagram { return ownerDgram(m, link, k, epoch, seq, now) }
				if !r.owner.ok() {
					return fmt.Errorf("the bridge's socket holds the address: want the owner confirmed at New")
				}
				if failsBefore {
					r.owner.diag.Close() // every look fails from here on
				}
				got := ownerBatch(r, now, d(frame.KindEvent, e1, 1), d(frame.KindGoodbye, e1, 1))
				bridge.Close()
				if !failsBefore {
					r.owner.diag.Close()
				}
				got = append(got, ownerBatch(r, now.Add(time.Millisecond), d(frame.KindEvent, e2, 1))...)
				if want := []string{"link event 1#1", "link goodbye 1#1"}; fmt.Sprint(got) != fmt.Sprint(want) {
					return fmt.Errorf("delivered %q, want %q", got, want)
				}
				return nil
			})
		})
	}
}

// ownerAnswer decodes d as ReadBatch does a datagram that came to the
// request socket at now, and returns the answer frames delivered.
func ownerAnswer(r *Receiver, now time.Time, d mcast.Datagram) []string {
	r.owner.due(now)
	evs := make([]Event, 4)
	r.mu.Lock()
	r.out = evs[:0]
	r.answer(&d, now)
	n := len(r.out)
	r.out = nil
	r.mu.Unlock()
	var got []string
	for _, ev := range evs[:n] {
		if !ev.IsNotice() {
			got = append(got, fmt.Sprintf("%s answer %s #%d", ev.Stream.Name, ev.Header.Kind, ev.Header.Seq))
		}
	}
	return got
}

// A running bridge that drops a stream (a reload) says goodbye on it with
// FlagDropped, from its socket that stays open: that marks nothing. The
// bridge stays confirmed, so its other streams go on and its answers are
// taken; and the stream added back, its numbers going on in the same
// epoch, is delivered.
func TestDroppedStreamsGoodbyeKeepsTheBridge(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		src := ownerSource
		link, _ := streams.Lookup("link")
		addr, _ := streams.Lookup("ipv4-ifaddr")
		_, r, m := bridgeAndReceiver(t, link, addr)
		now := time.Now()
		const e1 = 0x10000001
		d := func(s streams.Stream, k frame.Kind, seq uint64) mcast.Datagram {
			return ownerDgram(m, s, k, e1, seq, now)
		}
		h := frame.Header{Kind: frame.KindGoodbye, Flags: frame.FlagDropped, Family: addr.Family, Group: addr.Group, Epoch: e1, Seq: 1, Time: now.UnixNano()}
		dropped := mcast.Datagram{Group: m.Addr(addr, streams.Raw), Data: frame.Append(nil, h, nil)}
		var bad []string
		got := ownerBatch(r, now, d(link, frame.KindEvent, 1), d(addr, frame.KindEvent, 1), dropped)
		if !r.owner.ok() {
			bad = append(bad, "the bridge's socket is not confirmed after a dropped stream's goodbye")
		}
		// Past a look that finds the bridge's socket still there.
		got = append(got, ownerBatch(r, now.Add(2*ownerEvery), d(link, frame.KindEvent, 2))...)
		if !r.owner.ok() {
			bad = append(bad, "the bridge's socket, open, is not confirmed at the next look")
		}
		h = frame.Header{Kind: frame.KindResyncBegin, Flags: frame.FlagAnswer, Family: link.Family, Group: link.Group, Epoch: e1, Seq: 2, Time: now.UnixNano()}
		got = append(got, ownerAnswer(r, now.Add(2*ownerEvery), mcast.Datagram{Group: netip.MustParseAddrPort("127.0.0.1:40000"), Source: src, Data: frame.Append(nil, h, nil)})...)
		// Added back: an overrun, then its events, numbered on.
		got = append(got, ownerBatch(r, now.Add(2*ownerEvery), d(addr, frame.KindOverrun, 2), d(addr, frame.KindEvent, 3))...)
		want := []string{
			"link event 1#1", "ipv4-ifaddr event 1#1", "ipv4-ifaddr goodbye 1#1",
			"link event 1#2", "link answer resync-begin #2",
			"ipv4-ifaddr overrun 1#2", "ipv4-ifaddr event 1#3",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			bad = append(bad, fmt.Sprintf("delivered %q, want %q", got, want))
		}
		if n := r.Stats().Unattested; n != 0 {
			bad = append(bad, fmt.Sprintf("%d frames unattested", n))
		}
		if bad != nil {
			return errors.New(strings.Join(bad, "; "))
		}
		return nil
	})
}

// A goodbye with FlagDropped says the bridge goes on: it is taken only
// from the bridge. After a bridge's real goodbye, another user who binds
// the port gets nothing through with one, neither it nor what follows on
// that stream.
func TestDroppedGoodbyeFromAnotherUser(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		src := ownerSource
		link, _ := streams.Lookup("link")
		addr, _ := streams.Lookup("ipv4-ifaddr")
		bridge, r, m := bridgeAndReceiver(t, link, addr)
		// Any user may bind the port from here on (New refuses to start so).
		if err := testenv.SetPortStart(0); err != nil {
			return err
		}
		now := time.Now()
		const e1 = 0x10000001
		d := func(s streams.Stream, k frame.Kind, flags frame.Flags, seq uint64) mcast.Datagram {
			h := frame.Header{Kind: k, Flags: flags, Family: s.Family, Group: s.Group, Epoch: e1, Seq: seq, Time: now.UnixNano()}
			return mcast.Datagram{Group: m.Addr(s, streams.Raw), Data: frame.Append(nil, h, nil)}
		}
		got := ownerBatch(r, now, d(link, frame.KindEvent, 0, 1), d(addr, frame.KindEvent, 0, 1), d(link, frame.KindGoodbye, 0, 1))
		bridge.Close()
		if err := testenv.BecomeNobody(); err != nil {
			return err
		}
		fd, err := bindPort(src)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		got = append(got, ownerBatch(r, now.Add(time.Millisecond),
			d(addr, frame.KindGoodbye, frame.FlagDropped, 1), d(addr, frame.KindOverrun, 0, 2), d(addr, frame.KindEvent, 0, 3))...)
		want := []string{"link event 1#1", "ipv4-ifaddr event 1#1", "link goodbye 1#1"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("delivered %q, want %q", got, want)
		}
		if n := r.Stats().Unattested; n != 3 {
			return fmt.Errorf("%d frames unattested, want 3", n)
		}
		if r.owner.ok() || r.owner.closing() {
			return fmt.Errorf("another user's socket passes for the bridge's")
		}
		return nil
	})
}
