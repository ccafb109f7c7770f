package integration

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// TestForgedFragmentsPinNoMemory: an unprivileged process sends, on every
// stream of both encodings, first fragments of messages that declare
// 16 MiB (the old limit, which each receiver allocated on the first
// fragment and kept) and of messages at the limit. Receivers that accept
// any sender (the port check is void in containers) refuse the first,
// hold no more of the second than arrived, and report both lost; their
// heap stays small. Before the bounds, each held 16 MiB per stream.
func TestForgedFragmentsPinNoMemory(t *testing.T) {
	ns := newNetNS(t)
	python := testenv.RequireCommand(t, "/usr/bin/python3") // a per-user shim is not runnable as nobody
	testenv.RequireCommand(t, "setpriv")
	ss := streams.Default()
	any := &mcast.ReceiverConfig{AnySource: true}
	raw := ns.collect(t, &receiver.Config{Streams: ss, Mcast: any, NoSilentNotices: true})
	defer raw.stop()
	js := ns.collect(t, &receiver.Config{Streams: ss, Mcast: any, NoSilentNotices: true, Encoding: streams.JSON})
	defer js.stop()
	base := heap()

	// The flood: per stream and encoding, 4 rounds of a huge message's
	// first fragment and one at the limit's. Then a heartbeat, sent once
	// the forger is done and stamped then (a flood sent slowly on a busy
	// host would have made one built with it stale), tells the test the
	// receiver has read them all.
	// Frames a receiver takes for a bridge's: a fresh epoch and times
	// (PROTOCOL.md, Trusting a frame).
	const rounds = 4
	now := time.Now()
	epoch := frame.NewEpoch(now)
	var flood bytes.Buffer
	put := func(s streams.Stream, enc streams.Encoding, d []byte) {
		a := streams.Map{}.Addr(s, enc)
		ip := a.Addr().As4()
		flood.Write(ip[:])
		flood.Write(binary.BigEndian.AppendUint16(nil, a.Port()))
		flood.Write(binary.BigEndian.AppendUint32(nil, uint32(len(d))))
		flood.Write(d)
	}
	sent := 0
	for _, s := range ss {
		h := frame.Header{Kind: frame.KindFragment, Family: s.Family, Group: s.Group, Epoch: epoch, Time: now.UnixNano()}
		for r := 0; r < rounds; r++ {
			for i, total := range []int{16 << 20, frame.MaxRawMessage} {
				h.Seq = uint64(2*r + i + 1)
				f := frame.FragmentHeader{Total: uint32(total), Count: uint16((total + frame.MaxPiece - 1) / frame.MaxPiece)}
				var fh [frame.FragmentHeaderLen]byte
				f.Put(fh[:])
				put(s, streams.Raw, frame.Append(nil, h, append(fh[:], make([]byte, frame.MaxPiece)...)))
				f.Count = uint16((total + frame.JSONMaxPiece - 1) / frame.JSONMaxPiece)
				put(s, streams.JSON, frame.AppendJSONFragment(nil, h, s.Name, f, make([]byte, frame.JSONMaxPiece)))
				sent += 2
			}
		}
	}
	forger := `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
data, i, n = sys.stdin.buffer.read(), 0, 0
while i < len(data):
    ip, port, l = struct.unpack_from(">4sHI", data, i)
    i += 10
    s.sendto(data[i:i + l], (socket.inet_ntoa(ip), port))
    i += l
    n += 1
print(n)
`
	cmd := exec.Command("ip", "netns", "exec", ns.name, "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", python, "-c", forger)
	cmd.Stdin = &flood
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != fmt.Sprint(sent) {
		t.Fatalf("forger: %v: %s (want %d datagrams sent)", err, out, sent)
	}
	// The forger has exited: its datagrams are queued before these. A
	// heartbeat repeats the last number sent.
	ns.do(t, func() error {
		snd, err := mcast.NewSender(&mcast.SenderConfig{EphemeralPort: true})
		if err != nil {
			return err
		}
		defer snd.Close()
		for _, s := range ss {
			hb := frame.Header{Kind: frame.KindHeartbeat, Family: s.Family, Group: s.Group, Epoch: epoch, Seq: 2 * rounds, Time: time.Now().UnixNano()}
			for enc, d := range map[streams.Encoding][]byte{streams.Raw: frame.Append(nil, hb, nil), streams.JSON: frame.AppendJSON(nil, hb, s.Name, "", nil)} {
				if err := snd.Send(d, streams.Map{}.Addr(s, enc)); err != nil {
					return err
				}
			}
		}
		return nil
	})

	heartbeats := func(c *goCollector) bool {
		n := 0
		for _, f := range c.frames() {
			if f.kind == frame.KindHeartbeat && f.epoch == epoch {
				n++
			}
		}
		return n == len(ss)
	}
	waitFor(t, &raw.changed, "the raw receiver to read the flood", func() bool { return heartbeats(raw) })
	waitFor(t, &js.changed, "the JSON receiver to read the flood", func() bool { return heartbeats(js) })
	const bound = 32 << 20
	grown := heap() - base
	t.Logf("heap grew by %.1f MiB under the flood", float64(grown)/(1<<20))
	if grown > bound {
		t.Fatalf("the receivers' heap grew by %.1f MiB under the flood (bound %d MiB)", float64(grown)/(1<<20), bound>>20)
	}
	for _, c := range []*goCollector{raw, js} {
		if st := c.r.Stats(); st.TooLarge != uint64(rounds*len(ss)) || st.BadFragment != 0 {
			t.Errorf("stats %+v: want %d fragments refused as too large", st, rounds*len(ss))
		}
	}
	// Every message is reported lost: the last of each stream when it
	// times out, after which nothing large is held.
	lost := func(c *goCollector) func() bool {
		return func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			n := 0
			for _, x := range c.notices {
				if x.Kind == receiver.FragmentLost {
					n++
				}
			}
			return n == 2*rounds*len(ss)
		}
	}
	waitFor(t, &raw.changed, "fragment-lost notices from the raw receiver", lost(raw))
	waitFor(t, &js.changed, "fragment-lost notices from the JSON receiver", lost(js))
	for _, c := range []*goCollector{raw, js} {
		if st := c.r.Stats(); st.Reassembly > uint64(len(ss))*(128<<10+8<<10) {
			t.Errorf("after the timeouts, a receiver's partial messages hold %.1f MiB", float64(st.Reassembly)/(1<<20))
		}
	}
}

// heap returns the bytes of live heap objects.
func heap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
