package kernel

import (
	"fmt"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// GenlFamilies lists the generic netlink families registered in a network
// namespace (0: the caller's), with their multicast groups.
func GenlFamilies(netns int) ([]genetlink.Family, error) {
	c, err := genetlink.Dial(&netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("generic netlink: %w", err)
	}
	defer c.Close()
	fams, err := c.ListFamilies()
	if err != nil {
		return nil, fmt.Errorf("generic netlink: list families: %w", err)
	}
	return fams, nil
}
