package receiver

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/nlmcast/nlmcast/internal/sys/sockdiag"
)

// owner is the kernel's word on who holds the bridge's source address, a
// second factor beside the source port (PROTOCOL.md, Trusting a frame):
// sock_diag tells any user the uid of every socket bound to an address,
// which no datagram can forge. A frame is delivered only while the last
// look found that address held by sockets of the bridge's uid alone.
//
// Looks are made before a batch is decoded: every ownerEvery while
// confirmed; while not, for every batch if no socket of another uid held
// the address at the last look, else at most every ownerRetry. A goodbye
// says that the bridge's sockets seen holding the address are closing:
// from then on they confirm nothing, so a user who binds the port once the
// bridge has stopped sends nothing that is delivered, however soon after.
// Another socket of the bridge's uid confirms (a restarted bridge). So
// does a marked one, through restarted, once a frame of a new epoch comes
// after its stream's goodbye: the look that marked it may have been made
// after the bridge that said goodbye had closed its socket and a new one
// had bound the address. (A sender that binds the port after a bridge died
// without a goodbye is seen at the next look, within ownerEvery.)
//
// A goodbye with frame.FlagDropped (a stream a reload dropped) marks
// nothing: the bridge goes on, its socket open, and a mark would refuse
// it until it is replaced. Such a goodbye is taken only as any other
// frame is, from an address the bridge's uid alone holds (or under the
// closing exception), so only the bridge, which is trusted, can say it;
// another user's is refused, and a stopping bridge's goodbye, which
// marks, never has the flag.
type owner struct {
	diag      *sockdiag.Conn // nil: no check
	src       netip.AddrPort
	uid       uint32
	next      time.Time
	at        time.Time // when the last look the kernel answered was made
	confirmed bool
	foreign   bool     // the last look found a socket of another uid
	seen      []uint64 // cookies of the bridge's uid's sockets holding the address at the last look
	gone      []uint64 // cookies of the bridge's uid's sockets a goodbye said are closing
}

const (
	ownerEvery = time.Second
	ownerRetry = 10 * time.Millisecond
)

// openOwner opens the sock_diag socket in the calling thread's network
// namespace, where the receiver's sockets are, and looks once. It returns
// no check, and a warning, if sock_diag is not available.
func openOwner(src netip.AddrPort, uid uint32, now time.Time) (*owner, string) {
	c, err := sockdiag.Open()
	if err != nil {
		return nil, fmt.Sprintf("cannot ask the kernel who holds the bridge's address %v (sock_diag: %v): trusting the source port alone", src, err)
	}
	o := &owner{diag: c, src: src, uid: uid}
	o.look(now)
	return o, ""
}

// look asks the kernel who holds the source address now.
func (o *owner) look(now time.Time) {
	ss, err := o.diag.List(sockdiag.Filter{LocalPort: o.src.Port()})
	if err != nil {
		// sock_diag worked at New; a failure now says nothing of the
		// port's holder. Keep what was known and look again soon.
		o.next = now.Add(ownerRetry)
		return
	}
	o.seen, o.at = o.seen[:0], now
	foreign, closing := false, false
	for _, s := range ss {
		if a := s.Local.Addr(); !a.IsUnspecified() && a != o.src.Addr() {
			continue // another address: it cannot send from ours
		}
		if s.UID != o.uid {
			// Never marked closing: a goodbye sent from another
			// user's socket must not make it pass for the bridge's.
			foreign = true
			continue
		}
		o.seen = append(o.seen, s.Cookie)
		closing = closing || slices.Contains(o.gone, s.Cookie)
	}
	o.confirmed = len(o.seen) > 0 && !foreign && !closing
	o.foreign = foreign
	switch {
	case o.confirmed:
		o.next = now.Add(ownerEvery)
	case !foreign:
		// Nobody holds the address, or only the bridge that said
		// goodbye: whatever comes from it next was sent by a socket
		// bound since, and the next batch looks again.
		o.next = time.Time{}
	default:
		// Another user's socket holds it: look again soon, but not
		// for every datagram of a flood.
		o.next = now.Add(ownerRetry)
	}
}

// due looks again if it is time; it is called before a batch is decoded,
// so that a look after a quiet spell is made after its datagrams arrived.
func (o *owner) due(now time.Time) {
	if o != nil && !now.Before(o.next) {
		o.look(now)
	}
}

// goodbye notes the bridge's goodbye (not a dropped stream's, which says
// the socket goes on: frame.FlagDropped): its socket is about to close, and
// what comes after from its address must wait for a look to confirm it.
//
// It looks again at once: frames after the goodbye in the same batch were
// sent before the look, so a socket that sent them still shows (a
// restarted bridge's, which confirms, or another user's, which does not).
func (o *owner) goodbye(now time.Time) {
	if o != nil {
		o.gone = append(o.gone[:0], o.seen...)
		// Unconfirmed until a look says otherwise: a look that fails
		// keeps what was known, and the bridge is closing.
		o.confirmed = false
		o.look(now)
	}
}

// restarted reports whether a frame read after its stream's goodbye, of
// another epoch than that goodbye's, is the bridge's although the marks
// refuse it; if so, it drops the marks and confirms. It is when this
// batch's look, made after the frame was read, found the address held by
// the bridge's uid alone. The frame was sent after the goodbye (a group's
// datagrams keep their order), so by the goodbye's socket if that still
// holds the address (no other can share it while it does: the bridge's
// own restart), or else by a socket bound once it closed: one the look
// shows, of the bridge's uid, or one closed before the look, which no look
// can tell from the bridge's. A look that found nobody proves nothing.
func (o *owner) restarted(now time.Time) bool {
	if o == nil || !o.closing() || len(o.seen) == 0 || !o.at.Equal(now) {
		return false
	}
	o.gone, o.confirmed, o.next = o.gone[:0], true, now.Add(ownerEvery)
	return true
}

// ok reports whether frames are delivered now.
func (o *owner) ok() bool { return o == nil || o.confirmed }

// closing reports whether frames are held back only because the bridge
// said goodbye: the address is held by the sockets marked closing, or by
// none, and by no other user's. Then a frame of a stream whose own goodbye
// has not come yet is still the bridge's: its goodbye went out after every
// frame of that stream, and a socket bound once the bridge's closed sends
// only after it, on each group (the receiver's socket of a group keeps the
// order). A receiver of several streams reads their sockets in any order,
// so one stream's goodbye may be read before another's last events.
func (o *owner) closing() bool { return o != nil && !o.confirmed && !o.foreign && len(o.gone) > 0 }

func (o *owner) Close() error {
	if o == nil {
		return nil
	}
	return o.diag.Close()
}
