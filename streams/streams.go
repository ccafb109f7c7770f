package streams

import (
	"fmt"
	"sort"
	"strings"
)

// Netlink families of the streams (the protocol argument of socket(2) for
// AF_NETLINK), carried in every frame's header.
const (
	FamilyRoute     uint16 = 0  // NETLINK_ROUTE: links, addresses, routes, ...
	FamilyXfrm      uint16 = 6  // NETLINK_XFRM: IPsec security associations and policies
	FamilySELinux   uint16 = 7  // NETLINK_SELINUX: SELinux enforcing mode and policy loads
	FamilyAudit     uint16 = 9  // NETLINK_AUDIT: the audit log's records
	FamilyRDMA      uint16 = 20 // NETLINK_RDMA: RDMA devices
	FamilyConnector uint16 = 11 // NETLINK_CONNECTOR: process events (cn_proc)
	FamilyNetfilter uint16 = 12 // NETLINK_NETFILTER: conntrack, nftables, nfacct events
	FamilyUevent    uint16 = 15 // NETLINK_KOBJECT_UEVENT: hotplug uevents
	FamilyGeneric   uint16 = 16 // NETLINK_GENERIC: named families and groups
)

// FamilyName returns a short name for a netlink family.
func FamilyName(f uint16) string {
	switch f {
	case FamilyRoute:
		return "route"
	case FamilyXfrm:
		return "xfrm"
	case FamilyAudit:
		return "audit"
	case FamilySELinux:
		return "selinux"
	case FamilyRDMA:
		return "rdma"
	case FamilyConnector:
		return "connector"
	case FamilyNetfilter:
		return "netfilter"
	case FamilyUevent:
		return "uevent"
	case FamilyGeneric:
		return "generic"
	}
	return fmt.Sprintf("family-%d", f)
}

// A Stream is one kernel netlink multicast group re-emitted by the bridge.
type Stream struct {
	Name   string // e.g. "link"; follows the kernel constant RTNLGRP_LINK
	Family uint16 // netlink family, e.g. FamilyRoute
	// Group is the netlink multicast group, e.g. 1 for RTNLGRP_LINK. Zero
	// for generic netlink streams, whose group number the kernel assigns
	// when the family registers: the bridge resolves GenlFamily and
	// GenlGroup by name, and frames carry the number it found.
	Group uint32
	ID    uint8  // index in the address block: the group address is base+ID
	Doc   string // what the kernel sends on it
	// Resync is true when the bridge can dump the stream's current state
	// (after an overrun or on request; see PROTOCOL.md).
	Resync bool
	// Privileged is true when the kernel lets only CAP_NET_ADMIN read the
	// group: bridging it hands its events to every local user, so bridges
	// do so only when the operator says so (netlinkbridge.Config.Expose).
	// For generic netlink groups this is the catalog's mark; bridges also
	// treat as privileged a group the kernel refuses to a socket without
	// capabilities (netlinkbridge.Config.GenlProbe).
	Privileged bool
	// GenlFamily and GenlGroup name a generic netlink group
	// (FamilyGeneric only), as the kernel spells them.
	GenlFamily, GenlGroup string
}

// String returns the stream's name.
func (s Stream) String() string { return s.Name }

// ID ranges of the address block. IDs below 128 are the catalog's; a
// generic netlink group outside the catalog gets GenlID of its name.
const (
	genlHashFirst = 128
	genlHashCount = 127 // IDs 128..254
)

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

	{Name: "uevent", Family: FamilyUevent, Group: 1, ID: 40,
		Doc: "hotplug uevents as the kernel sends them: devices added, removed, changed, bound (NETLINK_KOBJECT_UEVENT group 1)"},
	{Name: "udev", Family: FamilyUevent, Group: 2, ID: 41,
		Doc: "uevents after udevd processed them, in libudev's format (NETLINK_KOBJECT_UEVENT group 2; needs a running udevd)"},
	{Name: "audit", Family: FamilyAudit, Group: 1, ID: 42, Privileged: true,
		Doc: "the audit log's records, read-only beside auditd: syscalls, logins, AVCs, user messages (AUDIT_NLGRP_READLOG; initial network namespace only; needs CAP_AUDIT_READ)"},
	{Name: "selinux", Family: FamilySELinux, Group: 1, ID: 43,
		Doc: "SELinux enforcing mode changes (setenforce) and policy loads (SELNLGRP_AVC; initial network namespace only)"},
	{Name: "proc", Family: FamilyConnector, Group: 1, ID: 44, Privileged: true,
		Doc: "every process's fork, exec, exit, uid/gid/sid changes, comm, ptrace, coredump (cn_proc; initial network namespace only)"},
	{Name: "rdma", Family: FamilyRDMA, Group: 4, ID: 45,
		Doc: "RDMA devices registered, unregistered, renamed, network devices attached and detached, as rdma monitor shows them (RDMA_NL_GROUP_NOTIFY, Linux 6.13+)"},
	{Name: "acct-quota", Family: FamilyNetfilter, Group: 8, ID: 46, Privileged: true,
		Doc: "nfacct accounting objects that went over their quota (NFNLGRP_ACCT_QUOTA)"},
	{Name: "conntrack-new", Family: FamilyNetfilter, Group: 1, ID: 48, Privileged: true,
		Doc: "connections the kernel starts tracking: addresses, ports, protocol state (NFNLGRP_CONNTRACK_NEW)"},
	{Name: "conntrack-update", Family: FamilyNetfilter, Group: 2, ID: 49, Privileged: true,
		Doc: "tracked connections changing state (NFNLGRP_CONNTRACK_UPDATE)"},
	{Name: "conntrack-destroy", Family: FamilyNetfilter, Group: 3, ID: 50, Privileged: true,
		Doc: "tracked connections ending or timing out (NFNLGRP_CONNTRACK_DESTROY)"},

	{Name: "conntrack-exp-new", Family: FamilyNetfilter, Group: 4, ID: 51, Privileged: true,
		Doc: "connections a conntrack helper (FTP, SIP, ...) or user space expects (NFNLGRP_CONNTRACK_EXP_NEW)"},
	{Name: "conntrack-exp-update", Family: FamilyNetfilter, Group: 5, ID: 52, Privileged: true,
		Doc: "conntrack expectations changed (NFNLGRP_CONNTRACK_EXP_UPDATE; kernels up to 6.18 send none)"},
	{Name: "conntrack-exp-destroy", Family: FamilyNetfilter, Group: 6, ID: 53, Privileged: true,
		Doc: "conntrack expectations met, replaced, timed out or deleted (NFNLGRP_CONNTRACK_EXP_DESTROY)"},
	// IDs 37-39 are kept for rtnetlink groups (RTNLGRP_IPV4_MCADDR, ...).
	{Name: "nftables", Family: FamilyNetfilter, Group: 7, ID: 54, Privileged: true,
		Doc: "nftables ruleset changes: tables, chains, rules, sets, elements, objects, flowtables, each transaction's new generation, as nft monitor shows them (NFNLGRP_NFTABLES)"},
	{Name: "nftables-trace", Family: FamilyNetfilter, Group: 9, ID: 55, Privileged: true,
		Doc: "nftables packet traces of packets a rule marked with meta nftrace set 1, as nft monitor trace shows them (NFNLGRP_NFTRACE)"},
	xfrm("xfrm-acquire", 1, 56, "IPsec key manager requests: traffic matched a policy with no SA (XFRMNLGRP_ACQUIRE)"),
	xfrm("xfrm-expire", 2, 57, "IPsec SAs and policies reaching a soft or hard lifetime limit (XFRMNLGRP_EXPIRE)"),
	xfrm("xfrm-sa", 3, 58, "IPsec security associations added, updated, deleted, flushed; key material redacted unless sealed with --xfrm-keys (XFRMNLGRP_SA)"),
	xfrm("xfrm-policy", 4, 59, "IPsec policies added, updated, deleted, flushed (XFRMNLGRP_POLICY)"),
	xfrm("xfrm-aevents", 5, 60, "IPsec SA replay and lifetime counters (XFRMNLGRP_AEVENTS)"),
	xfrm("xfrm-report", 6, 61, "IPsec reports, such as mobile IPv6 ones (XFRMNLGRP_REPORT)"),
	xfrm("xfrm-migrate", 7, 62, "IPsec SAs and policies migrated to new addresses (XFRMNLGRP_MIGRATE)"),
	xfrm("xfrm-mapping", 8, 63, "IPsec NAT-T port or address mappings that changed (XFRMNLGRP_MAPPING)"),

	genl("nlctrl", "notify", 64, false, "generic netlink families and groups registered and unregistered"),
	genl("ethtool", "monitor", 65, false, "ethtool settings changed: features, link modes, rings, channels, ..."),
	genl("devlink", "config", 66, false, "devlink devices, ports, parameters, health reports"),
	genl("thermal", "event", 67, false, "thermal zones: trip points crossed, cooling devices, governors"),
	genl("thermal", "sampling", 68, false, "thermal zone temperature samples"),
	genl("netdev", "mgmt", 69, false, "netdev features and queues of network devices"),
	genl("netdev", "page-pool", 70, false, "page pools created, changed, destroyed"),
	genl("acpi_event", "acpi_mc_group", 71, false, "ACPI events: buttons, lid, AC adapter, battery"),
	genl("VFS_DQUOT", "events", 72, false, "disk quota warnings"),
	genl("mptcp_pm", "mptcp_pm_events", 73, true, "MPTCP connections and subflows created and closed"),
	genl("IOAM6", "ioam6_events", 74, true, "IPv6 in-situ OAM trace events"),
	genl("nl80211", "config", 75, false, "wireless devices and interfaces configured"),
	genl("nl80211", "mlme", 76, false, "wireless association, authentication, disconnection"),
	genl("dpll", "monitor", 77, true, "DPLL devices and pins changed"),
}

func rt(name string, group uint32, doc string) Stream {
	return Stream{Name: name, Family: FamilyRoute, Group: group, ID: uint8(group), Doc: doc}
}

func xfrm(name string, group uint32, id uint8, doc string) Stream {
	return Stream{Name: name, Family: FamilyXfrm, Group: group, ID: id, Privileged: true, Doc: doc}
}

func genl(family, group string, id uint8, privileged bool, doc string) Stream {
	return Stream{Name: family + ":" + group, Family: FamilyGeneric, ID: id, Privileged: privileged,
		GenlFamily: family, GenlGroup: group, Doc: doc + " (generic netlink " + family + ", group " + group + ")"}
}

func (s Stream) resync() Stream { s.Resync = true; return s }

// aliases expand to several streams.
var aliases = map[string][]string{
	"addr":          {"ipv4-ifaddr", "ipv6-ifaddr"},
	"route":         {"ipv4-route", "ipv6-route"},
	"rule":          {"ipv4-rule", "ipv6-rule"},
	"mroute":        {"ipv4-mroute", "ipv6-mroute"},
	"netconf":       {"ipv4-netconf", "ipv6-netconf", "mpls-netconf"},
	"prefix":        {"ipv6-prefix"},
	"uevents":       {"uevent", "udev"},
	"conntrack":     {"conntrack-new", "conntrack-update", "conntrack-destroy"},
	"nft":           {"nftables", "nftables-trace"},
	"conntrack-exp": {"conntrack-exp-new", "conntrack-exp-update", "conntrack-exp-destroy"},
	"xfrm": {"xfrm-acquire", "xfrm-expire", "xfrm-sa", "xfrm-policy", "xfrm-aevents", "xfrm-report",
		"xfrm-migrate", "xfrm-mapping"},
}

// GenlID returns the address index of a generic netlink group outside the
// catalog: 128 + FNV-1a-32("FAMILY:GROUP") mod 127, in 128..254. Two names
// may share an index; Resolve refuses to select both.
func GenlID(family, group string) uint8 {
	h := uint32(2166136261)
	for _, c := range []byte(family + ":" + group) {
		h ^= uint32(c)
		h *= 16777619
	}
	return uint8(genlHashFirst + h%genlHashCount)
}

// Genl returns the stream of a generic netlink group: the catalog's, or
// else one with ID GenlID, which counts as privileged because nlmcast
// cannot know what it carries or who may read it.
func Genl(family, group string) Stream {
	for _, s := range catalog {
		if s.Family == FamilyGeneric && s.GenlFamily == family && s.GenlGroup == group {
			return s
		}
	}
	return Stream{Name: family + ":" + group, Family: FamilyGeneric, ID: GenlID(family, group), Privileged: true,
		GenlFamily: family, GenlGroup: group,
		Doc: "generic netlink " + family + ", group " + group + " (not in nlmcast's catalog: treated as privileged)"}
}

// parseGenl splits "FAMILY:GROUP" as the kernel spells both (case
// matters). Generic netlink names are at most 15 bytes.
func parseGenl(n string) (Stream, bool) {
	fam, grp, ok := strings.Cut(n, ":")
	if !ok || fam == "" || grp == "" || len(fam) > 15 || len(grp) > 15 || strings.ContainsAny(n[len(fam)+1:], ":, ") {
		return Stream{}, false
	}
	// The catalog's names match whatever the case; others are exact.
	for _, s := range catalog {
		if s.Family == FamilyGeneric && strings.EqualFold(s.Name, n) {
			return s, true
		}
	}
	return Genl(fam, grp), true
}

// All returns every stream of the catalog, of every family, ordered by ID.
// Generic netlink groups outside it can still be named (see Resolve).
func All() []Stream { return append([]Stream(nil), catalog...) }

// Default returns the streams bridged and received when none are named:
// every rtnetlink stream, what `ip monitor all` shows (the alias "all").
func Default() []Stream {
	var out []Stream
	for _, s := range catalog {
		if s.Family == FamilyRoute {
			out = append(out, s)
		}
	}
	return out
}

// Lookup returns the stream with the given name (not an alias): a catalog
// name, or any generic netlink group as "FAMILY:GROUP".
func Lookup(name string) (Stream, bool) {
	for _, s := range catalog {
		if s.Name == name {
			return s, true
		}
	}
	return parseGenl(name)
}

// ByGroup returns the catalog stream of a netlink family and group.
// Generic netlink groups have no fixed number and are not found here.
func ByGroup(family uint16, group uint32) (Stream, bool) {
	for _, s := range catalog {
		if s.Family == family && s.Group == group && s.Family != FamilyGeneric {
			return s, true
		}
	}
	return Stream{}, false
}

// ByID returns the catalog stream with the given address index.
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
	return fmt.Sprintf("unknown stream %s; valid streams: %s, or any generic netlink group as FAMILY:GROUP; aliases: %s",
		strings.Join(quote(e.Names), ", "), strings.Join(Names(), ", "), strings.Join(AliasNames(), ", "))
}

// CollisionError reports two selected streams that share an address: two
// generic netlink groups outside the catalog whose names hash alike.
type CollisionError struct {
	A, B Stream
}

func (e *CollisionError) Error() string {
	return fmt.Sprintf("streams %s and %s share address index %d; bridge them from two bridges with different --base",
		e.A.Name, e.B.Name, e.A.ID)
}

func quote(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// Names returns the name of every catalog stream, ordered by ID.
func Names() []string {
	out := make([]string, len(catalog))
	for i, s := range catalog {
		out[i] = s.Name
	}
	return out
}

// AliasNames returns every alias, "all" included, sorted.
func AliasNames() []string {
	out := []string{"all=every rtnetlink stream"}
	for a, members := range aliases {
		out = append(out, a+"="+strings.Join(members, "+"))
	}
	sort.Strings(out[1:])
	return out
}

// Resolve turns stream names and aliases into streams, without duplicates,
// ordered by ID. Names may be separated by commas; they are matched without
// regard to case, except generic netlink groups outside the catalog
// ("FAMILY:GROUP", as the kernel spells them). No names means Default.
// Unknown names produce an *UnknownError that lists the valid ones; two
// streams sharing an address, a *CollisionError.
func Resolve(names ...string) ([]Stream, error) {
	want := make(map[uint8]Stream)
	var unknown []string
	var collision error
	put := func(s Stream) {
		if o, ok := want[s.ID]; ok && o.Name != s.Name && collision == nil {
			collision = &CollisionError{A: o, B: s}
		}
		want[s.ID] = s
	}
	var add func(string)
	add = func(raw string) {
		raw = strings.TrimSpace(raw)
		n := strings.ToLower(raw)
		switch {
		case n == "":
		case n == "all":
			for _, s := range Default() {
				put(s)
			}
		case aliases[n] != nil:
			for _, m := range aliases[n] {
				add(m)
			}
		default:
			s, ok := Lookup(n)
			if !ok || (s.Family == FamilyGeneric && s.ID >= genlHashFirst) {
				s, ok = Lookup(raw)
			}
			if !ok {
				unknown = append(unknown, raw)
				return
			}
			put(s)
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
	if collision != nil {
		return nil, collision
	}
	if len(want) == 0 {
		add("all")
	}
	out := make([]Stream, 0, len(want))
	for _, s := range want {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
