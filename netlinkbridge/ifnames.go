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
}

func newIfNames() *ifNames { return &ifNames{names: make(map[uint32]string)} }

func (n *ifNames) lookup(index uint32) string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.names[index]
}

// load dumps the links of a network namespace (0: the caller's).
func (n *ifNames) load(netns int) error {
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
