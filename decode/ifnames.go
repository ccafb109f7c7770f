package decode

import (
	"encoding/binary"
	"sync"

	"golang.org/x/sys/unix"
)

// Names caches interface names by index, so that address, route and
// neighbour events can name their interface. It is filled from a link dump
// (Set) and kept current from link events (Update). Its Lookup method is
// an IfNames. It is safe for concurrent use.
type Names struct {
	// Miss, if set, is asked for an index not in the cache (the kernel
	// sends some events, netconf for one, before the link event that names
	// the interface); its answer is remembered, "" included, so a gone
	// link is not asked for again. Set it before the first Lookup.
	Miss func(index uint32) string

	mu    sync.RWMutex
	names map[uint32]string
}

// Set records the names of links, as a dump returns them.
func (n *Names) Set(names map[uint32]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.names == nil {
		n.names = make(map[uint32]string, len(names))
	}
	for i, name := range names {
		n.names[i] = name
	}
}

// Lookup returns the name of an interface, or "".
func (n *Names) Lookup(index uint32) string {
	n.mu.RLock()
	name, ok := n.names[index]
	n.mu.RUnlock()
	if ok || n.Miss == nil || index == 0 || int32(index) < 0 {
		return name
	}
	name = n.Miss(index)
	n.Set(map[uint32]string{index: name})
	return name
}

// Update applies one RTM_NEWLINK message; other messages are ignored. A
// deleted link's name is kept: events that follow its deletion may still
// name its index, and the kernel reuses indexes only after the counter
// wraps. A link event whose name is already known costs no allocation:
// the bridge sees every link event.
func (n *Names) Update(msg []byte) {
	if len(msg) < unix.SizeofNlMsghdr+unix.SizeofIfInfomsg {
		return
	}
	if typ := binary.NativeEndian.Uint16(msg[4:]); typ != unix.RTM_NEWLINK {
		return
	}
	body := msg[unix.SizeofNlMsghdr:]
	index := binary.NativeEndian.Uint32(body[4:])
	w := attrWalk{b: body[unix.SizeofIfInfomsg:]}
	for w.next() {
		if w.typ != unix.IFLA_IFNAME {
			continue
		}
		name := trimNUL(w.data)
		n.mu.RLock()
		same := n.names[index] == string(name) // no copy: a comparison
		n.mu.RUnlock()
		if !same {
			n.mu.Lock()
			if n.names == nil {
				n.names = map[uint32]string{}
			}
			n.names[index] = string(name)
			n.mu.Unlock()
		}
		return
	}
}
