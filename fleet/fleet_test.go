package fleet

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/keys"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// natsServer runs a JetStream server in this process, on a port of
// 127.0.0.1 the kernel picks (port 0 and dir "": new ones), in the
// process's network namespace.
func natsServer(t testing.TB, port int, dir string) *server.Server {
	t.Helper()
	return natsServerWith(t, &server.Options{Port: port, StoreDir: dir})
}

// withDefaults makes opts a JetStream server's on 127.0.0.1, storing in
// dir, silent.
func withDefaults(opts *server.Options, dir string) *server.Options {
	if opts.Port == 0 {
		opts.Port = -1
	}
	opts.Host, opts.StoreDir, opts.JetStream, opts.NoSigs, opts.NoLog = "127.0.0.1", dir, true, true, true
	return opts
}

// natsServerWith runs a JetStream server with opts (Port and StoreDir as
// natsServer's port and dir) on 127.0.0.1.
func natsServerWith(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	port, dir := opts.Port, opts.StoreDir
	if dir == "" {
		dir = t.TempDir()
	}
	if port == 0 {
		port = -1
	}
	opts.Port = port
	s, err := server.NewServer(withDefaults(opts, dir))
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server: not ready in 10 s")
	}
	t.Cleanup(s.Shutdown)
	return s
}

var link = streams.Default()[0]

// bridge sends frames of the link stream from 127.0.0.1:1021 like a
// bridge: events numbered from 1.
type bridge struct {
	sign  *frame.Signer // nil: frames without a trailer
	seal  *frame.Sealer // nil: frames in the clear
	snd   *mcast.Sender
	epoch uint64
	seq   uint64
	sent  [][]byte
}

func newBridge(t testing.TB) *bridge {
	snd, err := mcast.NewSender(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snd.Close() })
	return &bridge{snd: snd, epoch: uint64(time.Now().UnixMilli()) << 20}
}

// event sends the next event; skip loses it instead (a gap).
func (b *bridge) event(t testing.TB, skip bool) {
	b.seq++
	payload := fmt.Appendf(nil, "event %d of a fake bridge", b.seq)
	h := frame.Header{Kind: frame.KindEvent, Family: link.Family, Group: link.Group, Epoch: b.epoch, Seq: b.seq, Time: time.Now().UnixNano()}
	dst := streams.Map{}.Addr(link, streams.Raw)
	f := frame.Append(nil, h, payload)
	if b.sign != nil {
		f = b.sign.AppendRaw(nil, h, payload, dst)
	}
	if b.seal != nil {
		f = b.seal.SealRaw(nil, h, payload, dst)
	}
	if skip {
		return
	}
	b.sent = append(b.sent, payload)
	if err := b.snd.Send(f, dst); err != nil {
		t.Fatal(err)
	}
}

// listener reads events and notices of one host through NATS.
type listener struct {
	r      *receiver.Receiver
	mu     sync.Mutex
	events [][]byte
	notes  []string
	err    error // why it stopped reading, if not closed
	done   chan struct{}
}

func listen(t *testing.T, cfg SourceConfig) *listener {
	return listenKey(t, cfg, "")
}

// listenKey listens with the bridge's key file, if not "".
func listenKey(t *testing.T, cfg SourceConfig, keyFile string) *listener {
	return listenWith(t, cfg, &receiver.Config{KeyFile: keyFile})
}

// listenWith listens with rcfg's keys.
func listenWith(t *testing.T, cfg SourceConfig, rcfg *receiver.Config) *listener {
	src, err := NewSource(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	rcfg.Streams, rcfg.Source, rcfg.NoSilentNotices = []streams.Stream{link}, src, true
	r, err := receiver.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{r: r, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		evs := make([]receiver.Event, 64)
		for {
			n, err := r.ReadBatch(evs)
			if err != nil {
				if !errors.Is(err, mcast.ErrClosed) {
					l.mu.Lock()
					l.err = err
					l.mu.Unlock()
				}
				return
			}
			l.mu.Lock()
			for _, ev := range evs[:n] {
				if ev.IsNotice() {
					l.notes = append(l.notes, ev.Notice.String())
				} else if ev.Header.Kind == frame.KindEvent {
					l.events = append(l.events, bytes.Clone(ev.Payload))
				}
			}
			l.mu.Unlock()
		}
	}()
	t.Cleanup(l.close)
	return l
}

func (l *listener) close() { l.r.Close(); <-l.done }

// wait waits until cond holds of what l received, for at most 20 s.
func (l *listener) wait(t *testing.T, what string, cond func(events [][]byte, notes []string) bool) {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for {
		l.mu.Lock()
		ok := cond(l.events, l.notes)
		n, notes, err := len(l.events), strings.Join(l.notes, "; "), l.err
		l.mu.Unlock()
		if ok {
			return
		}
		if err != nil {
			t.Fatalf("%s: the listener stopped after %d events (notices: %s): %v", what, n, notes, err)
		}
		if time.Now().After(end) {
			t.Fatalf("%s: not in 20 s; %d events, notices: %s", what, n, notes)
		}
		time.Sleep(10 * time.Millisecond) // polls a condition, waits for no readiness
	}
}

// sameSet reports whether a holds the payloads of b, each once, in any
// order.
func sameSet(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[string]int{}
	for _, x := range b {
		count[string(x)]++
	}
	for _, x := range a {
		if count[string(x)]--; count[string(x)] < 0 {
			return false
		}
	}
	return true
}

func samePayloads(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func publisher(t *testing.T, ctx context.Context, cfg PublisherConfig) (*Publisher, func()) {
	p, err := NewPublisher(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return p, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		p.Close()
	}
}

// TestPublishListen carries a fake bridge's frames through JetStream:
// byte-identical, a gap reported, a second publisher of the same host
// (a restarted one) adding no duplicate, and a late consumer replaying.
func TestPublishListen(t *testing.T) {
	testenv.RequireRoot(t)
	srv := natsServer(t, 0, "")
	url := srv.ClientURL()
	testenv.InNewNetNS(t, func() error {
		ctx := context.Background()
		b := newBridge(t)
		_, stop1 := publisher(t, ctx, PublisherConfig{Conn: Conn{URL: url}, Host: "a", Streams: []streams.Stream{link}})
		l := listen(t, SourceConfig{Conn: Conn{URL: url}, Host: "a", All: true})
		for i := range 20 {
			b.event(t, i == 10)
		}
		l.wait(t, "19 events and a gap", func(evs [][]byte, notes []string) bool {
			return samePayloads(evs, b.sent) && len(notes) == 1 && strings.HasPrefix(notes[0], "gap")
		})
		// Two publishers of one host at once: each frame is stored once.
		_, stop2 := publisher(t, ctx, PublisherConfig{Conn: Conn{URL: url}, Host: "a", Streams: []streams.Stream{link}})
		for range 20 {
			b.event(t, false)
		}
		l.wait(t, "39 events once each", func(evs [][]byte, notes []string) bool { return samePayloads(evs, b.sent) })
		stop1()
		stop2()
		l.mu.Lock()
		notes := l.notes
		l.mu.Unlock()
		if len(notes) != 1 {
			t.Errorf("notices %q, want the one gap", notes)
		}
		// A late consumer replays from a sequence: the stream's 11th
		// message (frame 12, after the gap).
		late := listen(t, SourceConfig{Conn: Conn{URL: url}, Host: "a", StartSeq: 11})
		late.wait(t, "the replay from the 11th message", func(evs [][]byte, notes []string) bool {
			return samePayloads(evs, b.sent[10:]) && len(notes) == 0
		})
		return nil
	})
}

// TestOverflow: NATS down, a publisher's buffer overflows; when NATS is
// back its consumers learn of the loss from the marker (UpstreamDrops) and
// the sequence numbers (gap), never silently.
func TestOverflow(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	srv := natsServer(t, 0, dir)
	url := srv.ClientURL()
	port := srv.Addr().(*net.TCPAddr).Port
	testenv.InNewNetNS(t, func() error {
		ctx := context.Background()
		b := newBridge(t)
		p, stop := publisher(t, ctx, PublisherConfig{Conn: Conn{URL: url}, Host: "a", Streams: []streams.Stream{link}, BufferBytes: 1000, Logf: t.Logf})
		defer stop()
		b.event(t, false)
		waitFor(t, "the first frame published", func() bool { return p.Stats().Published == 1 })
		srv.Shutdown()
		for range 40 { // about 80 bytes each: a dozen fit
			b.event(t, false)
		}
		waitFor(t, "every frame read", func() bool { return p.Stats().Received == 41 })
		st := p.Stats()
		if st.Dropped == 0 || st.Markers != 1 {
			t.Fatalf("want frames dropped, one marker: %+v", st)
		}
		restarted := make(chan struct{})
		go func() { // its listener in the process's namespace, not this thread's
			defer close(restarted)
			natsServer(t, port, dir)
		}()
		<-restarted
		// The next frame once NATS took what was held: it would be
		// dropped too, otherwise.
		waitFor(t, "the frames held published", func() bool { st := p.Stats(); return st.Published-st.Duplicate == 41-st.Dropped+1 })
		b.event(t, false)
		l := listen(t, SourceConfig{Conn: Conn{URL: url}, Host: "a", All: true})
		last := b.sent[len(b.sent)-1]
		l.wait(t, "the last frame", func(evs [][]byte, notes []string) bool {
			return len(evs) > 0 && bytes.Equal(evs[len(evs)-1], last)
		})
		l.mu.Lock()
		defer l.mu.Unlock()
		got := len(l.events)
		want := []string{fmt.Sprintf("lost upstream: %d frames dropped on their way here (a publisher's buffer overflowed)", st.Dropped),
			fmt.Sprintf("gap: %d frames lost (#%d to #%d)", st.Dropped, got, 42-1)}
		if got+int(st.Dropped) != 42 || !slices.Equal(l.notes, want) {
			t.Errorf("%d events, notices %q; want %d, %q", got, l.notes, 42-st.Dropped, want)
		}
		return nil
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not in 20 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRelay: a host's frames through NATS, sent again on local groups of
// another block, from a port of the relay's own, reach an ordinary
// loopback receiver byte for byte.
func TestRelay(t *testing.T) {
	testenv.RequireRoot(t)
	srv := natsServer(t, 0, "")
	url := srv.ClientURL()
	testenv.InNewNetNS(t, func() error {
		ctx := context.Background()
		b := newBridge(t)
		_, stop := publisher(t, ctx, PublisherConfig{Conn: Conn{URL: url}, Host: "a", Streams: []streams.Stream{link}})
		defer stop()
		local := streams.Map{Base: netip.MustParseAddr("239.255.80.0")}
		rl, err := NewRelay(&RelayConfig{
			Source:  SourceConfig{Conn: Conn{URL: url}, Host: "a"},
			Streams: []streams.Stream{link}, Map: local,
			Sender: &mcast.SenderConfig{Source: netip.AddrPortFrom(netip.Addr{}, 1022)},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer rl.Close()
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- rl.Run(rctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()
		r, err := receiver.New(&receiver.Config{Streams: []streams.Stream{link}, Map: local, NoSilentNotices: true, NoOwnerCheck: true,
			Mcast: &mcast.ReceiverConfig{Source: netip.AddrPortFrom(netip.Addr{}, 1022)}})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for range 10 {
			b.event(t, false)
		}
		var got [][]byte
		evs := make([]receiver.Event, 16)
		r.SetReadDeadline(time.Now().Add(20 * time.Second))
		for len(got) < len(b.sent) {
			n, err := r.ReadBatch(evs)
			if err != nil {
				t.Fatalf("after %d events: %v", len(got), err)
			}
			for _, ev := range evs[:n] {
				if ev.IsNotice() {
					t.Errorf("notice %v", ev.Notice)
				} else {
					got = append(got, bytes.Clone(ev.Payload))
				}
			}
		}
		if !samePayloads(got, b.sent) {
			t.Errorf("relayed %q, want %q", got, b.sent)
		}
		return nil
	})
}

// TestAuth: the credentials given reach the server: the wrong ones are
// refused with an error that says what to check, the right ones carry
// frames, their trailers intact.
func TestAuth(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range []struct {
		name        string
		opts        server.Options
		good, wrong Conn
	}{
		{"user", server.Options{Username: "nl", Password: "s3cret"}, Conn{User: "nl", Password: "s3cret"}, Conn{User: "nl", Password: "nope"}},
		{"token", server.Options{Authorization: "t0ken"}, Conn{Token: "t0ken"}, Conn{Token: "other"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := natsServerWith(t, &tc.opts)
			tc.good.URL, tc.wrong.URL = srv.ClientURL(), srv.ClientURL()
			testenv.InNewNetNS(t, func() error {
				if _, err := NewPublisher(&PublisherConfig{Conn: tc.wrong, Host: "a", Streams: []streams.Stream{link}}); err == nil ||
					!strings.Contains(err.Error(), "credentials") {
					t.Errorf("wrong credentials: %v", err)
				}
				if _, err := NewSource(&SourceConfig{Conn: tc.wrong, Host: "a"}); err == nil {
					t.Error("a source connected with wrong credentials")
				}
				b := newBridge(t)
				_, stop := publisher(t, context.Background(), PublisherConfig{Conn: tc.good, Host: "a", Streams: []streams.Stream{link}})
				defer stop()
				l := listen(t, SourceConfig{Conn: tc.good, Host: "a", All: true})
				b.event(t, false)
				l.wait(t, "the event", func(evs [][]byte, notes []string) bool { return samePayloads(evs, b.sent) })
				return nil
			})
		})
	}
}

// TestAuthenticatedFrames: a bridge's authentication trailers, computed
// over the group it sent to, verify at a consumer through NATS with its
// key file, and only with it.
func TestAuthenticatedFrames(t *testing.T) {
	testenv.RequireRoot(t)
	srv := natsServer(t, 0, "")
	url := srv.ClientURL()
	dir := t.TempDir()
	keyFile, otherFile := filepath.Join(dir, "bridge.key"), filepath.Join(dir, "other.key")
	ring, err := keys.Create(keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Create(otherFile, ""); err != nil {
		t.Fatal(err)
	}
	testenv.InNewNetNS(t, func() error {
		b := newBridge(t)
		b.sign = frame.NewSigner(ring.Signing(time.Now()))
		_, stop := publisher(t, context.Background(), PublisherConfig{Conn: Conn{URL: url}, Host: "a", Streams: []streams.Stream{link}})
		defer stop()
		good := listenKey(t, SourceConfig{Conn: Conn{URL: url}, Host: "a", All: true}, keyFile)
		bad := listenKey(t, SourceConfig{Conn: Conn{URL: url}, Host: "a", All: true}, otherFile)
		for range 5 {
			b.event(t, false)
		}
		good.wait(t, "the authenticated events", func(evs [][]byte, notes []string) bool { return samePayloads(evs, b.sent) && len(notes) == 0 })
		waitFor(t, "the other key's refusals", func() bool { st := bad.r.Stats(); return st.UnknownKey+st.BadTag == 5 })
		bad.mu.Lock()
		defer bad.mu.Unlock()
		if len(bad.events) > 0 {
			t.Errorf("a consumer with another key delivered %d events", len(bad.events))
		}
		return nil
	})
}

// TestCluster: a cluster of three servers, the stream kept on all three;
// one killed, the frames keep coming through the other two.
func TestCluster(t *testing.T) {
	testenv.RequireRoot(t)
	var ports [3]int
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var srvs [3]*server.Server
	var urls []string
	started := make(chan *server.Server, 3)
	for i := range srvs {
		go func() {
			var routes []*url.URL
			for j, p := range ports {
				if j != i {
					routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
				}
			}
			opts := &server.Options{ServerName: fmt.Sprintf("n%d", i), Routes: routes,
				Cluster: server.ClusterOpts{Name: "fleet", Host: "127.0.0.1", Port: ports[i]}}
			s, err := server.NewServer(withDefaults(opts, t.TempDir()))
			if err != nil {
				t.Error(err)
				started <- nil
				return
			}
			s.Start()
			started <- s
		}()
	}
	for i := range srvs {
		srvs[i] = <-started
		if srvs[i] == nil {
			t.FailNow()
		}
		t.Cleanup(srvs[i].Shutdown)
	}
	for _, s := range srvs {
		if !s.ReadyForConnections(20 * time.Second) {
			t.Fatal("cluster: not ready in 20 s")
		}
		urls = append(urls, s.ClientURL())
	}
	conn := Conn{URL: strings.Join(urls, ",")}
	testenv.InNewNetNS(t, func() error {
		b := newBridge(t)
		waitFor(t, "JetStream's meta leader, and every server current", func() bool {
			leader := false
			for _, s := range srvs {
				if !s.JetStreamIsCurrent() {
					return false
				}
				leader = leader || s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == 3
			}
			return leader
		})
		// Ready for what the publisher does first: making a stream of
		// three replicas, stored in files as the publisher's is (a cluster
		// just formed may take longer than the publisher's 10 s for it
		// while its peers catch up; a stream in memory was made in time
		// where the publisher's in files was not, in a CI run).
		nc, err := conn.dial("cluster probe")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a stream of three replicas made", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PROBE", Subjects: []string{"probe"}, Replicas: 3, Storage: jetstream.FileStorage})
			return err == nil || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse)
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, "PROBE"); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s cluster ready", time.Now().Format("05.000"))
		p, stop := publisher(t, context.Background(), PublisherConfig{Conn: conn, Host: "a", Streams: []streams.Stream{link}, Replicas: 3})
		t.Logf("%s publisher ready", time.Now().Format("05.000"))
		defer stop()
		// The stream the publisher made elects its own leader: consumers
		// are made once it has one, with both replicas current.
		waitFor(t, "the stream's leader, and its two replicas current", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			st, err := p.js.Stream(ctx, DefaultStream)
			if err != nil {
				return false
			}
			info, err := st.Info(ctx)
			if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
				return false
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current {
					return false
				}
			}
			return true
		})
		t.Logf("%s stream ready", time.Now().Format("05.000"))
		l := listen(t, SourceConfig{Conn: conn, Host: "a", All: true})
		for range 10 {
			b.event(t, false)
		}
		// A cluster may store a frame late, after a failed publish is
		// retried: the consumer then says so, and every frame comes once.
		l.wait(t, "10 events", func(evs [][]byte, notes []string) bool { return sameSet(evs, b.sent) })
		t.Logf("%s 10 events", time.Now().Format("05.000"))
		// The publisher's server goes down.
		i := slices.Index(urls, p.nc.ConnectedUrl())
		if i < 0 {
			t.Fatalf("the publisher is connected to %s, none of %q", p.nc.ConnectedUrl(), urls)
		}
		srvs[i].Shutdown()
		for range 10 {
			b.event(t, false)
		}
		l.wait(t, "20 events, a server down", func(evs [][]byte, notes []string) bool { return sameSet(evs, b.sent) })
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, n := range l.notes {
			if !strings.HasPrefix(n, "gap") && !strings.Contains(n, "reordered") {
				t.Errorf("notice %q", n)
			}
		}
		if !samePayloads(l.events, b.sent) && len(l.notes) == 0 {
			t.Error("frames out of order, and no notice")
		}
		return nil
	})
}

// TestDurable: a durable consumer resumes where it stopped; a consumer
// from a time starts there.
func TestDurable(t *testing.T) {
	testenv.RequireRoot(t)
	srv := natsServer(t, 0, "")
	url := srv.ClientURL()
	testenv.InNewNetNS(t, func() error {
		b := newBridge(t)
		_, stop := publisher(t, context.Background(), PublisherConfig{Conn: Conn{URL: url}, Host: "a", Streams: []streams.Stream{link}})
		defer stop()
		first := listen(t, SourceConfig{Conn: Conn{URL: url}, Host: "a", Durable: "ops", All: true})
		for range 5 {
			b.event(t, false)
		}
		first.wait(t, "the first 5", func(evs [][]byte, notes []string) bool { return samePayloads(evs, b.sent) })
		first.close() // acknowledges what it read
		mid := time.Now()
		for range 5 {
			b.event(t, false)
		}
		again := listen(t, SourceConfig{Conn: Conn{URL: url}, Host: "a", Durable: "ops"})
		again.wait(t, "the next 5, where it stopped", func(evs [][]byte, notes []string) bool {
			return samePayloads(evs, b.sent[5:]) && len(notes) == 0
		})
		since := listen(t, SourceConfig{Conn: Conn{URL: url}, Host: "a", StartTime: mid})
		since.wait(t, "the 5 since the time", func(evs [][]byte, notes []string) bool {
			return samePayloads(evs, b.sent[5:]) && len(notes) == 0
		})
		return nil
	})
}

// TestDurableGoesOn: messages a durable consumer delivered that its
// reader never took (still queued when it closed, or when it was killed)
// go to the next reader at once and in order, not when the consumer's
// AckWait (30 s) ends, after newer ones.
func TestDurableGoesOn(t *testing.T) {
	testenv.RequireRoot(t)
	srv := natsServer(t, 0, "")
	url := srv.ClientURL()
	for _, killed := range []bool{false, true} {
		t.Run(fmt.Sprintf("killed=%v", killed), func(t *testing.T) {
			host := map[bool]string{false: "closed", true: "killed"}[killed]
			testenv.InNewNetNS(t, func() error {
				b := newBridge(t)
				_, stop := publisher(t, context.Background(), PublisherConfig{Conn: Conn{URL: url}, Host: host, Streams: []streams.Stream{link}})
				defer stop()
				open := func() *Source {
					src, err := NewSource(&SourceConfig{Conn: Conn{URL: url}, Host: host, Durable: "ops", All: true})
					if err != nil {
						t.Fatal(err)
					}
					if err := src.Join(streams.Map{}.Addr(link, streams.Raw)); err != nil {
						t.Fatal(err)
					}
					if err := src.Start(); err != nil {
						t.Fatal(err)
					}
					return src
				}
				// read returns the numbers of the events src passes on, up to
				// and including last, in order, for at most 10 s, and the
				// first of the last batch (not acknowledged while src is open).
				read := func(src *Source, last uint64) (got []uint64, unacked uint64) {
					ds := make([]mcast.Datagram, 2)
					end := time.Now().Add(10 * time.Second)
					for len(got) == 0 || got[len(got)-1] < last {
						k, err := src.ReadBatchUntil(ds, end)
						if err != nil {
							t.Fatalf("events %v, then %v", got, err)
						}
						for i, d := range ds[:k] {
							h, _, err := frame.Parse(d.Data)
							if err != nil {
								t.Fatal(err)
							}
							got = append(got, h.Seq)
							if i == 0 {
								unacked = h.Seq
							}
						}
					}
					return got, unacked
				}
				first := open()
				for range 5 {
					b.event(t, false)
				}
				got, unacked := read(first, 5)
				if !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
					t.Fatalf("events %v, want 1 to 5", got)
				}
				for range 5 {
					b.event(t, false)
				}
				waitFor(t, "the next 5 delivered, not taken", func() bool { return len(first.msgs) == 5 })
				if killed {
					first.nc.Close() // nothing acknowledged more
				}
				if err := first.Close(); err != nil {
					t.Fatal(err)
				}
				again := open()
				defer again.Close()
				got, _ = read(again, 10)
				var want []uint64
				if !killed {
					unacked = 6
				} // else the last batch taken, never acknowledged, comes again
				for n := unacked; n <= 10; n++ {
					want = append(want, n)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("events %v, want %v", got, want)
				}
				return nil
			})
		})
	}
}

// TestSealedFrames: a private stream's sealed frames, opened through NATS
// with the stream's key file; without it, a Sealed notice and nothing
// else.
func TestSealedFrames(t *testing.T) {
	testenv.RequireRoot(t)
	srv := natsServer(t, 0, "")
	url := srv.ClientURL()
	keyFile := filepath.Join(t.TempDir(), "private.key")
	ring, err := keys.Create(keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	testenv.InNewNetNS(t, func() error {
		b := newBridge(t)
		b.seal = frame.NewSealer(ring.Signing(time.Now()))
		_, stop := publisher(t, context.Background(), PublisherConfig{Conn: Conn{URL: url}, Host: "a", Streams: []streams.Stream{link}})
		defer stop()
		opened := listenWith(t, SourceConfig{Conn: Conn{URL: url}, Host: "a", All: true}, &receiver.Config{Private: map[string]string{"link": keyFile}})
		closed := listen(t, SourceConfig{Conn: Conn{URL: url}, Host: "a", All: true})
		for range 5 {
			b.event(t, false)
		}
		opened.wait(t, "the sealed events, opened", func(evs [][]byte, notes []string) bool { return samePayloads(evs, b.sent) && len(notes) == 0 })
		closed.wait(t, "a Sealed notice", func(evs [][]byte, notes []string) bool { return len(evs) == 0 && len(notes) == 1 })
		return nil
	})
}

// TestTLS: a server that speaks TLS only, its certificate signed by a CA
// given as Conn.CAFile; without the CA, refused.
func TestTLS(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	caFile, srvCert := testCA(t, dir)
	opts := &server.Options{TLS: true, TLSTimeout: 5, TLSConfig: &tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: tls.VersionTLS12}}
	srv := natsServerWith(t, opts)
	url := fmt.Sprintf("tls://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port)
	testenv.InNewNetNS(t, func() error {
		if _, err := NewSource(&SourceConfig{Conn: Conn{URL: url}, Host: "a"}); err == nil {
			t.Error("connected without the CA")
		}
		b := newBridge(t)
		_, stop := publisher(t, context.Background(), PublisherConfig{Conn: Conn{URL: url, CAFile: caFile}, Host: "a", Streams: []streams.Stream{link}})
		defer stop()
		l := listen(t, SourceConfig{Conn: Conn{URL: url, CAFile: caFile}, Host: "a", All: true})
		b.event(t, false)
		l.wait(t, "the event, over TLS", func(evs [][]byte, notes []string) bool { return samePayloads(evs, b.sent) })
		return nil
	})
}

// testCA writes a new CA's certificate in dir and returns its file and a
// server certificate for 127.0.0.1 it signed.
func testCA(t *testing.T, dir string) (string, tls.Certificate) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nlmcast test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestResyncRequests: a consumer's resync request reaches the host's
// publisher through NATS, which asks its bridge (a request frame on the
// control group) and says what it asked; a second request before the
// answer begins is folded into the first; a stream it does not carry, or
// one without a state, is refused by name while the others are asked;
// with no publisher, the error says to start one.
func TestResyncRequests(t *testing.T) {
	testenv.RequireRoot(t)
	srv := natsServer(t, 0, "")
	url := srv.ClientURL()
	uevent, _ := streams.Lookup("uevent")
	testenv.InNewNetNS(t, func() error {
		ctl, err := mcast.NewReceiver(&mcast.ReceiverConfig{AnySource: true})
		if err != nil {
			return err
		}
		defer ctl.Close()
		if err := ctl.Join(streams.Map{}.Control()); err != nil {
			return err
		}
		p, stop := publisher(t, context.Background(), PublisherConfig{Conn: Conn{URL: url}, Host: "a", Streams: []streams.Stream{link, uevent}})
		defer stop()
		src, err := NewSource(&SourceConfig{Conn: Conn{URL: url}, Host: "a"})
		if err != nil {
			return err
		}
		defer src.Close()
		if err := src.Join(streams.Map{}.Addr(link, streams.Raw)); err != nil {
			return err
		}
		if err := src.RequestResync(); err != nil {
			t.Fatalf("RequestResync: %v", err)
		}
		ds := make([]mcast.Datagram, 4)
		ctl.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := ctl.ReadBatch(ds)
		if err != nil {
			t.Fatalf("no request reached the bridge's control group: %v", err)
		}
		if h, _, err := frame.Parse(ds[0].Data); err != nil || h.Kind != frame.KindRequest || h.Group != link.Group || h.Family != link.Family {
			t.Errorf("%d datagrams, the first %+v, %v: want a request for link", n, h, err)
		}
		if err := src.RequestResync(link); err != nil { // no answer has begun: folded
			t.Fatalf("RequestResync: %v", err)
		}
		if st := p.Stats(); st.Asked != 2 || st.Coalesced != 1 || st.Requests != 1 {
			t.Errorf("publisher %+v: want 2 asked, 1 coalesced, 1 request", st)
		}
		if err := src.RequestResync(uevent); err != nil || p.Stats().Asked != 2 { // not joined, and no state: not asked
			t.Errorf("uevent: %v, %+v: want nothing asked", err, p.Stats())
		}
		// The publisher asks for what it can and names what it cannot.
		reply, err := src.nc.Request(RequestSubject("a"), []byte("uevent, ipv4-route,link"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if why := reply.Header.Get(HeaderError); string(reply.Data) != "link" || !strings.Contains(why, `"uevent" has no state`) || !strings.Contains(why, `"ipv4-route" is not published`) {
			t.Errorf("reply %q, %s %q: want link asked, uevent and ipv4-route refused by name", reply.Data, HeaderError, why)
		}
		nobody, err := NewSource(&SourceConfig{Conn: Conn{URL: url}, Host: "nobody"})
		if err != nil {
			return err
		}
		defer nobody.Close()
		if err := nobody.Join(streams.Map{}.Addr(link, streams.Raw)); err != nil {
			return err
		}
		if err := nobody.RequestResync(); err == nil || !strings.Contains(err.Error(), "nlmcast publish --host nobody") {
			t.Errorf("no publisher: %v, want one saying to start it", err)
		}
		return nil
	})
}

// TestDurableIsOneReaders: a durable consumer being read is refused to a
// second reader, at once and at every read after (not taken over, which
// would stop the first without a word); a reader whose consumer the
// server deletes is told so at its next read, instead of waiting for
// frames forever.
func TestDurableIsOneReaders(t *testing.T) {
	testenv.RequireRoot(t)
	srv := natsServer(t, 0, "")
	url := srv.ClientURL()
	testenv.InNewNetNS(t, func() error {
		b := newBridge(t)
		_, stop := publisher(t, context.Background(), PublisherConfig{Conn: Conn{URL: url}, Host: "a", Streams: []streams.Stream{link}})
		defer stop()
		open := func() (*Source, error) {
			src, err := NewSource(&SourceConfig{Conn: Conn{URL: url}, Host: "a", Durable: "ops", All: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := src.Join(streams.Map{}.Addr(link, streams.Raw)); err != nil {
				t.Fatal(err)
			}
			return src, src.Start()
		}
		first, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		b.event(t, false)
		ds := make([]mcast.Datagram, 4)
		if _, err := first.ReadBatchUntil(ds, time.Now().Add(10*time.Second)); err != nil {
			t.Fatal(err)
		}
		b.event(t, false) // delivered, not acknowledged: the consumer would be made anew
		waitFor(t, "the second frame delivered", func() bool { return len(first.msgs) == 1 })
		second, err := open()
		if err == nil || !strings.Contains(err.Error(), "is being read") {
			t.Errorf("a second reader of the durable consumer: %v, want a refusal", err)
		}
		defer second.Close() // made, though it cannot read
		if _, err := second.ReadBatchUntil(ds, time.Now().Add(time.Second)); err == nil || !strings.Contains(err.Error(), "is being read") {
			t.Errorf("its read: %v, want the refusal again", err)
		}
		if n, err := first.ReadBatchUntil(ds, time.Now().Add(10*time.Second)); n != 1 || err != nil {
			t.Errorf("the first reader after the refusal: %d frames, %v", n, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := first.js.DeleteConsumer(ctx, DefaultStream, "ops"); err != nil {
			t.Fatal(err)
		}
		_, err = first.ReadBatchUntil(ds, time.Now().Add(20*time.Second))
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "stopped") {
			t.Errorf("a read after the consumer was deleted: %v, want one saying it stopped", err)
		}
		return nil
	})
}
