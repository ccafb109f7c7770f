package kernel

import (
	"net"
	"sync"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
)

// LinkNames dumps the links of a network namespace (a file descriptor; 0:
// the caller's) and returns their names by index.
func LinkNames(netns int) (map[uint32]string, error) {
	c, err := rtnetlink.Dial(&netlink.Config{NetNS: netns})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	links, err := c.Link.List()
	if err != nil {
		return nil, err
	}
	names := make(map[uint32]string, len(links))
	for _, l := range links {
		if l.Attributes != nil {
			names[l.Index] = l.Attributes.Name
		}
	}
	return names, nil
}

// LinkName asks the kernel for one link of a network namespace (0: the
// caller's) and returns its name, or "" when it does not exist.
func LinkName(netns int, index uint32) string {
	c, err := rtnetlink.Dial(&netlink.Config{NetNS: netns})
	if err != nil {
		return ""
	}
	defer c.Close()
	l, err := c.Link.Get(index)
	if err != nil || l.Attributes == nil {
		return ""
	}
	return l.Attributes.Name
}

// Links looks interface names up over one rtnetlink socket, opened in a
// network namespace once: later look-ups need no privilege, where opening
// a socket in another namespace needs CAP_SYS_ADMIN. Its methods may be
// called from any goroutine.
type Links struct {
	mu sync.Mutex
	c  *rtnetlink.Conn // nil once closed
}

// OpenLinks opens the socket of Links in a network namespace (a file
// descriptor; 0: the caller's).
func OpenLinks(netns int) (*Links, error) {
	c, err := rtnetlink.Dial(&netlink.Config{NetNS: netns})
	if err != nil {
		return nil, err
	}
	return &Links{c: c}, nil
}

// Names dumps the namespace's links and returns their names by index.
func (l *Links) Names() (map[uint32]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		return nil, net.ErrClosed
	}
	links, err := l.c.Link.List()
	if err != nil {
		return nil, err
	}
	names := make(map[uint32]string, len(links))
	for _, k := range links {
		if k.Attributes != nil {
			names[k.Index] = k.Attributes.Name
		}
	}
	return names, nil
}

// Name returns the name of one link, or "" when it does not exist (or
// the socket is closed).
func (l *Links) Name(index uint32) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		return ""
	}
	k, err := l.c.Link.Get(index)
	if err != nil || k.Attributes == nil {
		return ""
	}
	return k.Attributes.Name
}

// Close closes the socket. It is safe to call more than once: later calls
// return nil.
func (l *Links) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		return nil
	}
	err := l.c.Close()
	l.c = nil
	return err
}
