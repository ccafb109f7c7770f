package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/sys/procstat"
)

// ipMonitor is `ip -o monitor address` counting the lines it prints.
//
// It says nothing when it has subscribed, nor when it has printed all it
// will: to know, sync adds and deletes a marker address on lo until ip
// monitor prints it. It prints events in order, so a marker seen after
// the burst means every line of the burst is in (or lost). The marker
// lines are not counted.
type ipMonitor struct {
	c *child

	mu    sync.Mutex
	lines int    // lines of events, markers aside
	last  int64  // when the last of them was read (procstat.Monotonic)
	want  []byte // the marker sync waits for
	seen  chan struct{}
}

// markerNet holds the marker addresses, 198.18.0.0/15 being for
// benchmarks and no run using it; markers[i] is sync i's.
var (
	markerNet = []byte("inet 198.18.0.")
	markers   = []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")}
)

func (b *bench) startIPMonitor(ctx context.Context, g *group) (*ipMonitor, error) {
	m := &ipMonitor{seen: make(chan struct{}, 1)}
	var err error
	m.c, err = g.start(ctx, spec{name: "ip monitor", argv: []string{"ip", "-o", "monitor", "address"}, lines: m.line})
	return m, err
}

func (m *ipMonitor) line(l []byte) {
	now := procstat.Monotonic()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !bytes.Contains(l, markerNet) {
		m.lines++
		m.last = now
		return
	}
	if m.want != nil && bytes.Contains(l, m.want) {
		m.want = nil
		m.seen <- struct{}{}
	}
}

// counts returns the lines counted and when the last was read.
func (m *ipMonitor) counts() (lines int, last int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lines, m.last
}

// sync adds and deletes marker addr on lo, a step apart, until ip monitor
// prints it, and leaves it deleted. It fails after timeout.
func (m *ipMonitor) sync(ctx context.Context, addr netip.Addr, step, timeout time.Duration) error {
	m.mu.Lock()
	m.want = []byte("inet " + addr.String() + "/")
	m.mu.Unlock()
	select {
	case <-m.seen: // an earlier marker's
	default:
	}
	c, err := rtnetlink.Dial(nil)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer c.Close()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	msg := &rtnetlink.AddressMessage{Family: unix.AF_INET, PrefixLength: 32, Index: uint32(lo.Index),
		Attributes: &rtnetlink.AddressAttributes{Local: addr.AsSlice(), Address: addr.AsSlice()}}
	present := false
	toggle := func() error {
		var err error
		if present {
			err = c.Address.Delete(msg)
		} else {
			err = c.Address.New(msg)
		}
		if err != nil {
			return fmt.Errorf("bench: marker address %s: %w", addr, err)
		}
		present = !present
		return nil
	}
	defer func() {
		if present {
			toggle()
		}
	}()
	tick := time.NewTicker(step)
	defer tick.Stop()
	deadline := time.Now().Add(timeout)
	for {
		if err := toggle(); err != nil {
			return err
		}
		select {
		case <-m.seen:
			return nil
		case <-m.c.done:
			return fmt.Errorf("bench: ip monitor exited: %s", strings.TrimSpace(m.c.Stderr()))
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if time.Now().After(deadline) {
				return fmt.Errorf("bench: ip monitor printed no marker in %v", timeout)
			}
		}
	}
}
