package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/fleet"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// TestFleetMirror: a state Mirror reading a host's frames through NATS,
// from the stream's first message, asks the host's publisher for
// resyncs; the host's bridge answers the publisher, whose answer reaches
// the Mirror through JetStream, and the Mirror's tables equal the host's
// kernel's, after changes made before it started and after. The
// publisher runs in this process, its sockets in the host's namespace;
// NATS (a server in this process on 127.0.0.1) is reached from this
// process's namespace, as package fleet does.
func TestFleetMirror(t *testing.T) {
	nlmcast, _ := binaries(t)
	h := newNetNS(t)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(patience) {
		t.Fatal("nats-server: not ready")
	}
	conn := fleet.Conn{URL: srv.ClientURL()}
	var names []string
	var ss []streams.Stream
	for _, m := range mirrored {
		names = append(names, m.stream)
		ss = append(ss, mustStream(m.stream))
	}
	h.start(t, notified, nlmcast, "bridge", "--streams", strings.Join(names, ","), "--encodings", "raw")
	var pub *fleet.Publisher
	h.do(t, func() (err error) {
		pub, err = fleet.NewPublisher(&fleet.PublisherConfig{Conn: conn, Host: "a", Streams: ss})
		return err
	})
	defer pub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pub.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	nl := h.rtnl(t)
	va := h.veth(t) // state before the Mirror starts, some of it in the stream
	for i := range 20 {
		nl.burst([]netlink.Message{addrReq(unix.RTM_NEWADDR, va, i)})
	}

	t0 := time.Now()
	mir, stop := startMirrorFrom(t, h, func() (receiver.Source, error) {
		return fleet.NewSource(&fleet.SourceConfig{Conn: conn, Host: "a", StartSeq: 1})
	})
	defer stop()
	wctx, wcancel := context.WithTimeout(ctx, patience)
	defer wcancel()
	if err := mir.WaitSynced(wctx); err != nil {
		t.Fatalf("the Mirror through NATS is not in sync: %v; %+v; publisher %+v", err, mir.Stats(), pub.Stats())
	}
	mirrorMatches(t, mir, nl)
	t.Logf("in sync %v after the Mirror started", time.Since(t0))

	// Live changes after it is in sync, through the same path.
	linkChanges(t, h, "m", 5)
	for i := range 10 {
		nl.burst([]netlink.Message{addrReq(unix.RTM_DELADDR, va, 2*i)})
	}
	mirrorMatches(t, mir, nl)
	st, ps := mir.Stats(), pub.Stats()
	if st.Resyncs == 0 || st.Receiver.Answers == 0 || ps.Asked == 0 || ps.Answers == 0 {
		t.Errorf("no resync through NATS: mirror %+v, publisher %+v", st, ps)
	}
	t.Logf("mirror: %d resyncs, %d answer frames, %d applied; publisher: %d asked, %d answer frames", st.Resyncs, st.Receiver.Answers, st.Applied, ps.Asked, ps.Answers)
}
