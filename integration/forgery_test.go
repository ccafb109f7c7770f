package integration

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// rawSender sends UDP datagrams from any address and port, as any root
// process can: a raw socket writes the IP and UDP headers itself. The
// bridge holds its port (without SO_REUSEADDR), so no UDP socket could
// bind it while it runs; this one sends from it all the same.
type rawSender struct{ fd int }

func (ns *netns) rawSender(t *testing.T) *rawSender {
	t.Helper()
	fd := -1
	ns.do(t, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		return unix.SetsockoptInet4Addr(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, [4]byte{127, 0, 0, 1})
	})
	t.Cleanup(func() { unix.Close(fd) })
	return &rawSender{fd}
}

// bridgeSource is where the bridge sends from by default.
var bridgeSource = netip.AddrPortFrom(mcast.LoopbackSource, mcast.DefaultSourcePort)

// send sends payload to the group to, from the address from.
func (s *rawSender) send(t *testing.T, from, to netip.AddrPort, payload []byte) {
	t.Helper()
	b := make([]byte, 28+len(payload))
	b[0] = 0x45 // IPv4, 20-byte header
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8], b[9] = 0, unix.IPPROTO_UDP // TTL 0, as the bridge's: looped back, never sent out
	copy(b[12:16], from.Addr().AsSlice())
	copy(b[16:20], to.Addr().AsSlice())
	u := b[20:]
	binary.BigEndian.PutUint16(u[0:], from.Port())
	binary.BigEndian.PutUint16(u[2:], to.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload) // checksum 0: none, which UDP over IPv4 allows
	if err := unix.Sendto(s.fd, b, 0, &unix.SockaddrInet4{Addr: to.Addr().As4()}); err != nil {
		t.Fatalf("raw send to %s: %v", to, err)
	}
}

// newLinkMsg is an RTM_NEWLINK for a link that does not exist.
func newLinkMsg(t *testing.T, index uint32, name string) []byte {
	t.Helper()
	body, err := (&rtnetlink.LinkMessage{Index: index, Flags: unix.IFF_UP,
		Attributes: &rtnetlink.LinkAttributes{Name: name, MTU: 1500}}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return testmsg.Nlmsg(unix.RTM_NEWLINK, body)
}

// rejections returns the Rejected notices a frameLog holds.
func (l *frameLog) rejections() []receiver.Notice {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ns []receiver.Notice
	for _, ev := range l.notices {
		if ev.Notice.Kind == receiver.Rejected {
			ns = append(ns, ev.Notice)
		}
	}
	return ns
}

// TestForgedFrameCannotBlindTheMirror: one raw event with the live epoch
// and sequence number 2^62, sent from the bridge's own address and port,
// passes every receiver's source check. Before, a Mirror took its fake
// link, dropped every later frame of the bridge as a duplicate and asked
// for a resync every second for good. Now the frame is held, and rejected
// when the bridge's next frame does not continue it: the Mirror applies
// the real changes, equals the kernel, and asks for nothing.
func TestForgedFrameCannotBlindTheMirror(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	ns.start(t, notified, nlmcast, "bridge", "--streams", "link,ipv4-ifaddr,ipv4-route", "--encodings", "raw")
	link := mustStream("link")
	var watch *receiver.Receiver
	ns.do(t, func() (err error) {
		watch, err = receiver.New(&receiver.Config{Streams: []streams.Stream{link}})
		return err
	})
	log := logFrames(watch)
	defer watch.Close()
	mir, _ := startMirror(t, ns)
	nl := ns.rtnl(t)
	mirrorMatches(t, mir, nl)

	// The live epoch, as anyone learns it: from a heartbeat.
	waitFor(t, &log.changed, "a heartbeat on the link stream", func() bool { return log.count("link", frame.KindHeartbeat) > 0 })
	log.mu.Lock()
	epoch := log.epochs[0]
	log.mu.Unlock()
	before := mir.Stats()

	const far = 1 << 62
	h := frame.Header{Kind: frame.KindEvent, Family: link.Family, Group: link.Group, Epoch: epoch, Seq: far, Time: time.Now().UnixNano()}
	ns.rawSender(t).send(t, bridgeSource, streams.Map{}.Addr(link, streams.Raw), frame.Append(nil, h, newLinkMsg(t, 99, "evil0")))

	// Real changes after it.
	ns.ip(t, "link", "add", "vx", "type", "veth", "peer", "name", "vy")
	ns.ip(t, "link", "set", "vx", "up")
	ns.ip(t, "addr", "add", "10.9.0.1/24", "dev", "vx")
	mirrorMatches(t, mir, nl)
	waitFor(t, &log.changed, "the forged frame rejected by the watching receiver", func() bool {
		return slices.ContainsFunc(log.rejections(), func(n receiver.Notice) bool {
			return n.From == far && n.Reason == receiver.Unconfirmed
		})
	})

	// No resync loop: two heartbeats later, still nothing asked (the
	// Mirror asks every 300 ms while out of sync).
	beats := log.count("link", frame.KindHeartbeat)
	waitFor(t, &log.changed, "two more heartbeats", func() bool { return log.count("link", frame.KindHeartbeat) >= beats+2 })
	if after := mir.Stats(); after.Requests != before.Requests || !mir.Synced(link) {
		t.Errorf("the mirror asked for resyncs after the forged frame: %+v, before %+v", after, before)
	}
	if k := log.noticeKinds(); k[receiver.Gap]+k[receiver.Duplicate]+k[receiver.Restart] != 0 {
		t.Errorf("the watching receiver reported %v", k)
	}
	if st := watch.Stats(); st.Mcast.WrongSource != 0 || st.Rejected != 1 {
		t.Errorf("watching receiver: %+v, want the forged frame past the source check and rejected", st)
	}
}

// TestReplayedFramesAreRejected: frames of a bridge's earlier run, sent
// again from its address and port after a restart, are rejected as of an
// older epoch: no restart notice, no resync, the Mirror unchanged.
func TestReplayedFramesAreRejected(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	args := []string{nlmcast, "bridge", "--streams", "link,ipv4-ifaddr,ipv4-route", "--encodings", "raw"}
	bridge := ns.start(t, notified, args...)
	link := mustStream("link")

	// A recording of the link stream, as any local user can make.
	var rec *mcast.Receiver
	ns.do(t, func() (err error) {
		if rec, err = mcast.NewReceiver(nil); err != nil {
			return err
		}
		return rec.Join(streams.Map{}.Addr(link, streams.Raw))
	})
	var (
		mu       sync.Mutex
		recorded [][]byte
		events   int
		changed  signal
	)
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		ds := make([]mcast.Datagram, 16)
		for {
			n, err := rec.ReadBatch(ds)
			if err != nil {
				return
			}
			mu.Lock()
			for _, d := range ds[:n] {
				recorded = append(recorded, slices.Clone(d.Data))
				if h, _, err := frame.Parse(d.Data); err == nil && h.Kind == frame.KindEvent {
					events++
				}
			}
			mu.Unlock()
			changed.notify()
		}
	}()
	defer func() { rec.Close(); <-recDone }()

	var watch *receiver.Receiver
	ns.do(t, func() (err error) {
		watch, err = receiver.New(&receiver.Config{Streams: []streams.Stream{link}})
		return err
	})
	log := logFrames(watch)
	defer watch.Close()
	mir, _ := startMirror(t, ns)
	nl := ns.rtnl(t)
	ns.veth(t)
	waitFor(t, &changed, "link events recorded", func() bool { mu.Lock(); defer mu.Unlock(); return events >= 3 })
	mirrorMatches(t, mir, nl)
	mu.Lock()
	replay := slices.Clone(recorded)
	mu.Unlock()

	// A clean restart: the Mirror resyncs each stream once it sees it.
	resynced := mir.Stats().Resyncs
	bridge.stop()
	ns.start(t, notified, args...)
	waitFor(t, &log.changed, "frames of the second bridge", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return len(log.epochs) == 2
	})
	untilMirror(t, mir, func() string { return fmt.Sprintf("mirror not resynced after the restart: %+v", mir.Stats()) }, patience,
		func() bool { return mir.Stats().Resyncs >= resynced+uint64(len(mirrored)) })
	mirrorMatches(t, mir, nl)
	before, kinds := mir.Stats(), log.noticeKinds()

	snd := ns.rawSender(t)
	for _, d := range replay {
		snd.send(t, bridgeSource, streams.Map{}.Addr(link, streams.Raw), d)
	}
	ns.ip(t, "link", "set", "vb", "down")
	mirrorMatches(t, mir, nl)
	waitFor(t, &log.changed, "every replayed frame rejected", func() bool { return len(log.rejections()) >= len(replay) })
	for _, n := range log.rejections() {
		if n.Reason != receiver.OldEpoch {
			t.Errorf("replayed frame rejected as %v, want old-epoch: %v", n.Reason, n)
		}
	}
	if k := log.noticeKinds(); k[receiver.Restart] != kinds[receiver.Restart] || k[receiver.Disowned] != kinds[receiver.Disowned] || k[receiver.Gap] != kinds[receiver.Gap] {
		t.Errorf("notices after the replay: %v, before %v", k, kinds)
	}
	if after := mir.Stats(); after.Requests != before.Requests {
		t.Errorf("the mirror asked for resyncs after the replay: %+v, before %+v", after, before)
	}
	if st := watch.Stats(); st.Rejected != uint64(len(replay)) || st.Mcast.WrongSource != 0 {
		t.Errorf("watching receiver: %+v, want all %d replayed frames past the source check and rejected", st, len(replay))
	}
}
