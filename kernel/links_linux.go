package kernel

import (
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
