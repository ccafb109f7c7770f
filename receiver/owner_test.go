package receiver

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/mcast"
)

// The owner check follows the sockets that hold the bridge's address: a
// bridge's confirms, the same socket after its goodbye does not, and a
// restarted bridge's (another socket) does again, at once.
func TestOwnerFollowsTheBridgesSocket(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		src := netip.MustParseAddrPort("127.0.0.1:1021")
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
