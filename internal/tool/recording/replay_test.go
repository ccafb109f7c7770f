package recording

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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
