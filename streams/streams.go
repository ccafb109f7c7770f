// Package streams is the catalog of nlmcast streams and the map from a
// stream to its loopback multicast addresses. Bridges and receivers both use
// it; it knows the names and numbers of kernel netlink groups but nothing of
// how to read them.
package streams

import (
	"fmt"
	"sort"
	"strings"
)

// Netlink families. Only NETLINK_ROUTE streams exist in this version.
const FamilyRoute uint16 = 0 // NETLINK_ROUTE

// A Stream is one kernel netlink multicast group re-emitted by the bridge.
type Stream struct {
	Name   string // e.g. "link"; follows the kernel constant RTNLGRP_LINK
	Family uint16 // netlink family, e.g. FamilyRoute
	Group  uint32 // netlink multicast group, e.g. 1 for RTNLGRP_LINK
	ID     uint8  // index in the address block: the group address is base+ID
	Doc    string // what the kernel sends on it
	// Resync is true when the bridge can dump the stream's current state
	// (after an overrun or on request; see PROTOCOL.md).
	Resync bool
}

// String returns the stream's name.
func (s Stream) String() string { return s.Name }

// catalog holds every stream, ordered by ID. The rtnetlink streams are the
// groups that `ip monitor all` joins; their ID is the kernel group number.
var catalog = []Stream{
	rt("link", 1, "links: created, deleted, up/down, renamed, carrier (RTNLGRP_LINK)").resync(),
	rt("neigh", 3, "neighbour (ARP/NDP) entries (RTNLGRP_NEIGH)").resync(),
	rt("ipv4-ifaddr", 5, "IPv4 addresses (RTNLGRP_IPV4_IFADDR)").resync(),
	rt("ipv4-mroute", 6, "IPv4 multicast routes (RTNLGRP_IPV4_MROUTE)").resync(),
	rt("ipv4-route", 7, "IPv4 routes (RTNLGRP_IPV4_ROUTE)").resync(),
	rt("ipv4-rule", 8, "IPv4 policy routing rules (RTNLGRP_IPV4_RULE)").resync(),
	rt("ipv6-ifaddr", 9, "IPv6 addresses (RTNLGRP_IPV6_IFADDR)").resync(),
	rt("ipv6-mroute", 10, "IPv6 multicast routes (RTNLGRP_IPV6_MROUTE)").resync(),
	rt("ipv6-route", 11, "IPv6 routes (RTNLGRP_IPV6_ROUTE)").resync(),
	rt("ipv6-prefix", 18, "IPv6 prefixes learnt from router advertisements (RTNLGRP_IPV6_PREFIX)"),
	rt("ipv6-rule", 19, "IPv6 policy routing rules (RTNLGRP_IPV6_RULE)").resync(),
	rt("ipv4-netconf", 24, "IPv4 per-device configuration (RTNLGRP_IPV4_NETCONF)").resync(),
	rt("ipv6-netconf", 25, "IPv6 per-device configuration (RTNLGRP_IPV6_NETCONF)").resync(),
	rt("mpls-route", 27, "MPLS routes (RTNLGRP_MPLS_ROUTE)"),
	rt("nsid", 28, "network namespace ids (RTNLGRP_NSID)").resync(),
	rt("mpls-netconf", 29, "MPLS per-device configuration (RTNLGRP_MPLS_NETCONF)"),
	rt("nexthop", 32, "nexthop objects (RTNLGRP_NEXTHOP)").resync(),
	rt("stats", 36, "offloaded statistics (RTNLGRP_STATS)"),
}

func rt(name string, group uint32, doc string) Stream {
	return Stream{Name: name, Family: FamilyRoute, Group: group, ID: uint8(group), Doc: doc}
}

func (s Stream) resync() Stream { s.Resync = true; return s }

// aliases expand to several streams. "all" is handled by Resolve.
var aliases = map[string][]string{
	"addr":    {"ipv4-ifaddr", "ipv6-ifaddr"},
	"route":   {"ipv4-route", "ipv6-route"},
	"rule":    {"ipv4-rule", "ipv6-rule"},
	"mroute":  {"ipv4-mroute", "ipv6-mroute"},
	"netconf": {"ipv4-netconf", "ipv6-netconf", "mpls-netconf"},
	"prefix":  {"ipv6-prefix"},
}

// All returns every stream, ordered by ID.
func All() []Stream { return append([]Stream(nil), catalog...) }

// Lookup returns the stream with the given name (not an alias).
func Lookup(name string) (Stream, bool) {
	for _, s := range catalog {
		if s.Name == name {
			return s, true
		}
	}
	return Stream{}, false
}

// ByGroup returns the stream of a netlink family and group.
func ByGroup(family uint16, group uint32) (Stream, bool) {
	for _, s := range catalog {
		if s.Family == family && s.Group == group {
			return s, true
		}
	}
	return Stream{}, false
}

// ByID returns the stream with the given address index.
func ByID(id uint8) (Stream, bool) {
	for _, s := range catalog {
		if s.ID == id {
			return s, true
		}
	}
	return Stream{}, false
}

// UnknownError reports names that are neither a stream nor an alias.
type UnknownError struct {
	Names []string
}

func (e *UnknownError) Error() string {
	return fmt.Sprintf("unknown stream %s; valid streams: %s; aliases: %s",
		strings.Join(quote(e.Names), ", "), strings.Join(Names(), ", "), strings.Join(AliasNames(), ", "))
}

func quote(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// Names returns the name of every stream, ordered by ID.
func Names() []string {
	out := make([]string, len(catalog))
	for i, s := range catalog {
		out[i] = s.Name
	}
	return out
}

// AliasNames returns every alias, "all" included, sorted.
func AliasNames() []string {
	out := []string{"all"}
	for a, members := range aliases {
		out = append(out, a+"="+strings.Join(members, "+"))
	}
	sort.Strings(out[1:])
	return out
}

// Resolve turns stream names and aliases into streams, without duplicates,
// ordered by ID. Names may be separated by commas. No names means all.
// Unknown names produce an *UnknownError that lists the valid ones.
func Resolve(names ...string) ([]Stream, error) {
	want := make(map[string]bool)
	var unknown []string
	var add func(string)
	add = func(n string) {
		n = strings.ToLower(strings.TrimSpace(n))
		switch {
		case n == "":
		case n == "all":
			for _, s := range catalog {
				want[s.Name] = true
			}
		case aliases[n] != nil:
			for _, m := range aliases[n] {
				add(m)
			}
		default:
			if _, ok := Lookup(n); !ok {
				unknown = append(unknown, n)
				return
			}
			want[n] = true
		}
	}
	for _, arg := range names {
		for _, n := range strings.Split(arg, ",") {
			add(n)
		}
	}
	if len(unknown) > 0 {
		return nil, &UnknownError{Names: unknown}
	}
	if len(want) == 0 {
		add("all")
	}
	var out []Stream
	for _, s := range catalog {
		if want[s.Name] {
			out = append(out, s)
		}
	}
	return out, nil
}
