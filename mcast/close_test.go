package mcast

import (
	"errors"
	"testing"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

// A Sender and a Receiver opened and closed (twice) leave no descriptor
// and no goroutine; a closed Receiver joins nothing more.
func TestCloseLeavesNothing(t *testing.T) {
	check := testenv.NoLeaks(t)
	before := len(testenv.OpenFDs(t))
	s, err := NewSender(&SenderConfig{EphemeralPort: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReceiver(&ReceiverConfig{AnySource: true})
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	gs := randomGroups(2)
	if err := r.Join(gs[0]); err != nil {
		t.Error(err)
	}
	if n := len(testenv.OpenFDs(t)); n <= before {
		t.Fatalf("%d descriptors open, %d before: nothing opened?", n, before)
	}
	for _, c := range []struct {
		name  string
		close func() error
	}{{"Sender", s.Close}, {"Receiver", r.Close}} {
		if err := c.close(); err != nil {
			t.Errorf("%s: Close: %v", c.name, err)
		}
		if err := c.close(); err != nil {
			t.Errorf("%s: second Close: %v", c.name, err)
		}
	}
	if err := r.Join(gs[1]); !errors.Is(err, ErrClosed) {
		t.Errorf("Join after Close: %v, want ErrClosed", err)
	}
	if err := s.Send([]byte("x"), gs[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	check()
}
