package mcast

import (
	"testing"
	"time"
)

// TestAttachReadsUnicastAnswers: a Sender's socket, attached, is read with
// the groups: what is sent to its address arrives with Group set to it,
// after the same sender check, and Detach leaves the socket to its owner.
func TestAttachReadsUnicastAnswers(t *testing.T) {
	own, err := NewSender(&SenderConfig{EphemeralPort: true})
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	peer, err := NewSender(&SenderConfig{EphemeralPort: true})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	for _, anySource := range []bool{true, false} {
		r, err := NewReceiver(&ReceiverConfig{AnySource: anySource})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Attach(own); err != nil {
			t.Fatal(err)
		}
		if err := r.Attach(own); err != nil { // a no-op
			t.Fatal(err)
		}
		if g := r.Groups(); len(g) != 0 {
			t.Errorf("attached socket listed as a group: %v", g)
		}
		if err := peer.Send([]byte("answer"), own.Source()); err != nil {
			t.Fatal(err)
		}
		ds := make([]Datagram, 4)
		n, err := r.ReadBatchUntil(ds, time.Now().Add(300*time.Millisecond))
		switch {
		case anySource && (err != nil || n != 1 || ds[0].Group != own.Source() || ds[0].Source != peer.Source() || string(ds[0].Data) != "answer"):
			t.Errorf("any source: n=%d err=%v %+v", n, err, ds[0])
		case !anySource && (n != 0 || r.Stats().WrongSource != 1):
			t.Errorf("an unprivileged sender passed: n=%d err=%v stats %+v", n, err, r.Stats())
		}
		if err := r.Detach(own); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// The socket is still its owner's, and open.
	if err := own.Send([]byte("x"), peer.Source()); err != nil {
		t.Fatalf("attached socket closed by the receiver: %v", err)
	}
}
