package netlinkbridge

import (
	"encoding/binary"
	"sync"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ifNames caches interface names by index, so that address, route and
// neighbour events can name their interface in JSON. It is filled by a link
// dump at start and kept current from link events.
type ifNames struct {
	mu    sync.RWMutex
	names map[uint32]string
	netns int  // namespace to ask on a miss
	live  bool // whether to ask the kernel on a miss (not in tests)
}

func newIfNames() *ifNames { return &ifNames{names: make(map[uint32]string)} }

// lookup returns the name of an interface. On a miss (the kernel sends some
// events, netconf for one, before the link event that names the interface)
// it asks the kernel for that one link, and remembers the answer.
func (n *ifNames) lookup(index uint32) string {
	n.mu.RLock()
	name, ok := n.names[index]
	n.mu.RUnlock()
	if ok || !n.live || index == 0 || int32(index) < 0 {
		return name
	}
	c, err := rtnetlink.Dial(&netlink.Config{NetNS: n.netns})
	if err != nil {
		return ""
	}
	defer c.Close()
	l, err := c.Link.Get(index)
	if err == nil && l.Attributes != nil {
		name = l.Attributes.Name
	}
	n.mu.Lock()
	n.names[index] = name // "" too: do not ask again for a gone link
	n.mu.Unlock()
	return name
}

// load dumps the links of a network namespace (0: the caller's).
func (n *ifNames) load(netns int) error {
	n.netns, n.live = netns, true
	c, err := rtnetlink.Dial(&netlink.Config{NetNS: netns})
	if err != nil {
		return err
	}
	defer c.Close()
	links, err := c.Link.List()
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range links {
		if l.Attributes != nil {
			n.names[l.Index] = l.Attributes.Name
		}
	}
	return nil
}

// update applies one RTM_NEWLINK or RTM_DELLINK message. A deleted link's
// name is kept: events that follow its deletion may still name its index,
// and the kernel reuses indexes only after the counter wraps.
func (n *ifNames) update(msg []byte) {
	if len(msg) < unix.SizeofNlMsghdr+unix.SizeofIfInfomsg {
		return
	}
	if typ := binary.NativeEndian.Uint16(msg[4:]); typ != unix.RTM_NEWLINK {
		return
	}
	body := msg[unix.SizeofNlMsghdr:]
	index := binary.NativeEndian.Uint32(body[4:])
	ad, err := netlink.NewAttributeDecoder(body[unix.SizeofIfInfomsg:])
	if err != nil {
		return
	}
	for ad.Next() {
		if ad.Type() == unix.IFLA_IFNAME {
			name := ad.String()
			n.mu.Lock()
			if n.names[index] != name {
				n.names[index] = name
			}
			n.mu.Unlock()
			return
		}
	}
}

// InterfaceNames names interfaces for Decode outside a Bridge (the compare
// command does): it starts from a link dump and follows link events.
type InterfaceNames struct{ n *ifNames }

// LoadInterfaceNames dumps the links of a network namespace (0: the
// caller's). On a miss, Lookup asks the kernel for that one link.
func LoadInterfaceNames(netns int) (*InterfaceNames, error) {
	n := newIfNames()
	return &InterfaceNames{n}, n.load(netns)
}

// Update applies a link event (other messages are ignored).
func (n *InterfaceNames) Update(msg []byte) { n.n.update(msg) }

// Lookup returns an interface's name, or "".
func (n *InterfaceNames) Lookup(index uint32) string { return n.n.lookup(index) }
