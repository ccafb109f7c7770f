package recording

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/capture"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// linkMsg is an RTM_NEWLINK of interface index i.
func linkMsg(i byte) []byte {
	body := make([]byte, 16) // ifinfomsg
	body[4] = i
	return testmsg.Nlmsg(16, body)
}

// TestReplayGenl replays a generic netlink stream, whose group number the
// recording gives.
func TestReplayGenl(t *testing.T) {
	testenv.RequireRoot(t)
	var file bytes.Buffer
	w, err := capture.NewWriter(&file, App)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := streams.Lookup("nlctrl:notify")
	if !ok {
		t.Fatal("no nlctrl:notify stream")
	}
	msg := testmsg.Nlmsg(0x10, []byte{1, 2, 0, 0}) // GENL_ID_CTRL, CTRL_CMD_NEWFAMILY
	meta := Meta{Stream: s.Name, Kind: frame.KindEvent, Group: 16, Epoch: 7, Seq: 1, Time: 1}
	if err := w.WriteMessage(streams.FamilyGeneric, 1, msg, meta.Comment()); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "g.pcapng")
	if err := os.WriteFile(name, file.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.InNewNetNS(t, func() error {
		r, err := receiver.New(&receiver.Config{Streams: []streams.Stream{s}})
		if err != nil {
			return err
		}
		defer r.Close()
		r.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []byte
		read := make(chan struct{})
		go func() {
			defer close(read)
			evs := make([]receiver.Event, 16)
			for got == nil {
				n, err := r.ReadBatch(evs)
				if err != nil {
					t.Errorf("%v (%+v)", err, r.Stats())
					return
				}
				for _, ev := range evs[:n] {
					if !ev.IsNotice() && ev.Header.Kind == frame.KindEvent {
						got = bytes.Clone(ev.Payload)
						if ev.Header.Group != 16 || ev.Header.Family != streams.FamilyGeneric {
							t.Errorf("header %+v", ev.Header)
						}
					}
				}
			}
		}()
		_, err = Replay(context.Background(), &ReplayConfig{Files: []string{name}, NoPacing: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		<-read
		if !bytes.Equal(got, msg) {
			t.Errorf("got %x, want %x", got, msg)
		}
		return err
	})
}

// TestReplayLibrary replays a recording in a network namespace of its own
// to a receiver there: every message arrives, in order, under a fresh
// epoch numbered from 1, paced at --rate; Replay leaves no goroutine or
// descriptor behind.
func TestReplayLibrary(t *testing.T) {
	testenv.RequireRoot(t)
	var file bytes.Buffer
	w, err := capture.NewWriter(&file, App)
	if err != nil {
		t.Fatal(err)
	}
	var msgs [][]byte
	for i := range byte(5) {
		m := linkMsg(i + 1)
		msgs = append(msgs, m)
		meta := Meta{Stream: "link", Kind: frame.KindEvent, Group: 1, Epoch: 7, Seq: uint64(i) + 40, Time: int64(i) * 1e9}
		if err := w.WriteMessage(0, meta.Time, m, meta.Comment()); err != nil {
			t.Fatal(err)
		}
	}
	name := filepath.Join(t.TempDir(), "r.pcapng")
	if err := os.WriteFile(name, file.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	link, _ := streams.Lookup("link")
	check := testenv.NoLeaks(t)
	testenv.InNewNetNS(t, func() error {
		r, err := receiver.New(&receiver.Config{Streams: []streams.Stream{link}})
		if err != nil {
			return err
		}
		defer r.Close()
		// Read while the replay runs: a receiver takes frames only while
		// the kernel shows their sender's socket open.
		r.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got [][]byte
		read := make(chan struct{})
		go func() {
			defer close(read)
			evs := make([]receiver.Event, 16)
			for len(got) < len(msgs) {
				n, err := r.ReadBatch(evs)
				if err != nil {
					t.Errorf("after %d events: %v (%+v)", len(got), err, r.Stats())
					return
				}
				for _, ev := range evs[:n] {
					if ev.IsNotice() || ev.Header.Kind != frame.KindEvent {
						continue
					}
					if ev.Header.Epoch == 7 || ev.Header.Seq != uint64(len(got))+1 {
						t.Errorf("event %d: epoch %x seq %d; want a fresh epoch, numbered from 1", len(got), ev.Header.Epoch, ev.Header.Seq)
					}
					got = append(got, bytes.Clone(ev.Payload))
				}
			}
		}()
		start := time.Now()
		st, err := Replay(context.Background(), &ReplayConfig{Files: []string{name}, Rate: 50, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			return err
		}
		if took := time.Since(start); took < 80*time.Millisecond {
			t.Errorf("5 events at 50 a second took %v", took)
		}
		if st.Events != 5 || st.Rounds != 1 {
			t.Errorf("stats %+v", st)
		}
		<-read
		for i := range got {
			if !bytes.Equal(got[i], msgs[i]) {
				t.Errorf("event %d differs", i)
			}
		}
		return nil
	})
	check()
}

// writeLinks writes a recording of n link messages, the i-th recorded at
// i*step, and returns its name and the messages.
func writeLinks(t *testing.T, n int, step time.Duration) (string, [][]byte) {
	t.Helper()
	var file bytes.Buffer
	w, err := capture.NewWriter(&file, App)
	if err != nil {
		t.Fatal(err)
	}
	var msgs [][]byte
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for i := range n {
		m := linkMsg(byte(i + 1))
		msgs = append(msgs, m)
		meta := Meta{Stream: "link", Kind: frame.KindEvent, Group: 1, Epoch: 7, Seq: uint64(i) + 1, Time: base + int64(i)*int64(step)}
		if err := w.WriteMessage(0, meta.Time, m, meta.Comment()); err != nil {
			t.Fatal(err)
		}
	}
	name := filepath.Join(t.TempDir(), "links.pcapng")
	if err := os.WriteFile(name, file.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return name, msgs
}

// TestReplaySpeed: events recorded over 400 ms replay in about 200 ms at
// Speed 2, in less than half that with no pacing at all.
func TestReplaySpeed(t *testing.T) {
	testenv.RequireRoot(t)
	name, _ := writeLinks(t, 5, 100*time.Millisecond) // 0 to 400 ms
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// took times a replay from its first event to its return; a short
	// Linger keeps the wait for receivers out of it.
	took := func(cfg ReplayConfig) time.Duration {
		var start time.Time
		cfg.Files, cfg.Logger, cfg.Linger = []string{name}, quiet, time.Millisecond
		cfg.Ready = func() { start = time.Now() }
		var d time.Duration
		testenv.InNewNetNS(t, func() error {
			st, err := Replay(context.Background(), &cfg)
			d = time.Since(start)
			if err == nil && st.Events != 5 {
				t.Errorf("%+v: replayed %d events, want 5", cfg, st.Events)
			}
			return err
		})
		return d
	}
	span := 400 * time.Millisecond
	fast := took(ReplayConfig{Speed: 2})
	if fast < span/2-50*time.Millisecond || fast >= span {
		t.Errorf("a span of %v at speed 2 took %v, want about %v", span, fast, span/2)
	}
	flat := took(ReplayConfig{NoPacing: true})
	if flat >= span/4 || flat >= fast {
		t.Errorf("a span of %v with no pacing took %v (at speed 2: %v), want far less", span, flat, fast)
	}
	t.Logf("speed 2: %v; no pacing: %v", fast, flat)
}

// TestReplayLoop: a looped replay goes round until its context ends,
// under one epoch, numbering on from one round to the next.
func TestReplayLoop(t *testing.T) {
	testenv.RequireRoot(t)
	name, msgs := writeLinks(t, 5, time.Second)
	link, _ := streams.Lookup("link")
	testenv.InNewNetNS(t, func() error {
		r, err := receiver.New(&receiver.Config{Streams: []streams.Stream{link}})
		if err != nil {
			return err
		}
		defer r.Close()
		r.SetReadDeadline(time.Now().Add(10 * time.Second))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Past two rounds, the third begun: enough.
		want := 2*len(msgs) + 1
		var got []receiver.Event
		read := make(chan struct{})
		go func() {
			defer close(read)
			defer cancel()
			evs := make([]receiver.Event, 16)
			for len(got) < want {
				n, err := r.ReadBatch(evs)
				if err != nil {
					t.Errorf("after %d events: %v (%+v)", len(got), err, r.Stats())
					return
				}
				for _, ev := range evs[:n] {
					if ev.IsNotice() {
						t.Errorf("a notice: %v", ev.Notice)
						continue
					}
					if ev.Header.Kind == frame.KindEvent {
						ev.Payload = bytes.Clone(ev.Payload)
						got = append(got, ev)
					}
				}
			}
		}()
		st, err := Replay(ctx, &ReplayConfig{Files: []string{name}, Rate: 200, Loop: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		<-read
		if err != nil {
			return err
		}
		if st.Rounds < 2 || st.Events < uint64(want) || len(st.Epochs) != 1 {
			t.Errorf("stats %+v; want 2 rounds or more, %d events or more, one bridge", st, want)
		}
		for i, ev := range got {
			if ev.Header.Epoch != st.Epochs[streams.FamilyRoute] || ev.Header.Seq != uint64(i)+1 {
				t.Errorf("event %d: epoch %x seq %d; want epoch %x throughout, numbered on from 1", i, ev.Header.Epoch, ev.Header.Seq, st.Epochs[streams.FamilyRoute])
			}
			if !bytes.Equal(ev.Payload, msgs[i%len(msgs)]) {
				t.Errorf("event %d: %x, want message %d of the recording", i, ev.Payload, i%len(msgs))
			}
		}
		return nil
	})
}

// TestInjectedGoodbyeLingers: an injected goodbye, as the last one, comes
// Linger after the frames the bridge sent before it, from the socket that
// sent them, which stays open meanwhile: a receiver reads them while the
// kernel shows it held by the bridge's uid. (It came within a millisecond,
// and the socket was closed: a listener that read those frames only then
// dropped every one of them as not the bridge's, TestRecordReplay in CI.)
func TestInjectedGoodbyeLingers(t *testing.T) {
	testenv.RequireRoot(t)
	name, _ := writeLinks(t, 4, time.Millisecond)
	link, _ := streams.Lookup("link")
	const linger = 300 * time.Millisecond
	testenv.InNewNetNS(t, func() error {
		r, err := receiver.New(&receiver.Config{Streams: []streams.Stream{link}, NoSilentNotices: true})
		if err != nil {
			return err
		}
		defer r.Close()
		r.SetReadDeadline(time.Now().Add(10 * time.Second))
		var got []frame.Header
		read := make(chan struct{})
		go func() {
			defer close(read)
			evs := make([]receiver.Event, 16)
			for goodbyes := 0; goodbyes < 2; {
				n, err := r.ReadBatch(evs)
				if err != nil {
					t.Errorf("after %d frames: %v (%+v)", len(got), err, r.Stats())
					return
				}
				for _, ev := range evs[:n] {
					if ev.IsNotice() || ev.Header.Kind == frame.KindHeartbeat {
						continue
					}
					got = append(got, ev.Header)
					if ev.Header.Kind == frame.KindGoodbye {
						goodbyes++
					}
				}
			}
		}()
		in := []Injection{{Kind: InjectGoodbye, Stream: "link", After: 2}}
		_, err = Replay(context.Background(), &ReplayConfig{Files: []string{name}, NoPacing: true, Linger: linger, Inject: in,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		<-read
		if err != nil {
			return err
		}
		// Two events, the goodbye; two events of the new bridge, its goodbye.
		var kinds []frame.Kind
		for _, h := range got {
			kinds = append(kinds, h.Kind)
		}
		e, g := frame.KindEvent, frame.KindGoodbye
		if want := []frame.Kind{e, e, g, e, e, g}; !slices.Equal(kinds, want) {
			t.Fatalf("frames %v, want %v (%+v)", kinds, want, r.Stats())
		}
		if got[2].Epoch != got[1].Epoch || got[3].Epoch <= got[2].Epoch {
			t.Errorf("epochs %x, %x, %x: want the goodbye in the first bridge's, the events after in a larger one", got[1].Epoch, got[2].Epoch, got[3].Epoch)
		}
		if d := time.Duration(got[2].Time - got[1].Time); d < linger {
			t.Errorf("the injected goodbye came %v after the event before it, want Linger (%v) or more", d, linger)
		}
		return nil
	})
}
