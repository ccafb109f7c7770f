package kernel

// A GroupSet is a set of netlink multicast groups below 256.
type GroupSet [4]uint64

// Add puts g in the set.
func (s *GroupSet) Add(g uint32) { s[g/64] |= 1 << (g % 64) }

// Has reports whether g is in the set.
func (s *GroupSet) Has(g uint32) bool { return s[g/64]&(1<<(g%64)) != 0 }

// Empty reports whether the set has no group.
func (s *GroupSet) Empty() bool { return s[0]|s[1]|s[2]|s[3] == 0 }

// Union adds every group of o.
func (s *GroupSet) Union(o GroupSet) {
	s[0], s[1], s[2], s[3] = s[0]|o[0], s[1]|o[1], s[2]|o[2], s[3]|o[3]
}
