package decode

import (
	"fmt"
	"math/bits"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"
)

// Words for the numbers in rtnetlink messages, as ip(8) prints them.

var rtmTypeNames = map[uint16]string{
	unix.RTM_NEWLINK: "RTM_NEWLINK", unix.RTM_DELLINK: "RTM_DELLINK",
	unix.RTM_NEWADDR: "RTM_NEWADDR", unix.RTM_DELADDR: "RTM_DELADDR",
	unix.RTM_NEWROUTE: "RTM_NEWROUTE", unix.RTM_DELROUTE: "RTM_DELROUTE",
	unix.RTM_NEWNEIGH: "RTM_NEWNEIGH", unix.RTM_DELNEIGH: "RTM_DELNEIGH",
	unix.RTM_NEWRULE: "RTM_NEWRULE", unix.RTM_DELRULE: "RTM_DELRULE",
	unix.RTM_NEWPREFIX:  "RTM_NEWPREFIX",
	unix.RTM_NEWNETCONF: "RTM_NEWNETCONF", unix.RTM_DELNETCONF: "RTM_DELNETCONF",
	unix.RTM_NEWNSID: "RTM_NEWNSID", unix.RTM_DELNSID: "RTM_DELNSID",
	unix.RTM_NEWNEXTHOP: "RTM_NEWNEXTHOP", unix.RTM_DELNEXTHOP: "RTM_DELNEXTHOP",
	unix.RTM_NEWSTATS: "RTM_NEWSTATS",
}

func typeName(t uint16) string {
	if s, ok := rtmTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("RTM_%d", t)
}

// familyHeaderLen is the size of the fixed header after nlmsghdr for a
// message type, before its attributes.
func familyHeaderLen(t uint16) int {
	switch t &^ 3 {
	case unix.RTM_BASE + 0: // link
		return unix.SizeofIfInfomsg
	case unix.RTM_NEWADDR:
		return unix.SizeofIfAddrmsg
	case unix.RTM_NEWROUTE, unix.RTM_NEWRULE, unix.RTM_NEWNEIGH, unix.RTM_NEWPREFIX:
		return 12 // rtmsg, fib_rule_hdr, ndmsg, prefixmsg
	case unix.RTM_NEWNETCONF, unix.RTM_NEWNSID:
		return 4 // netconfmsg, rtgenmsg (padded)
	case unix.RTM_NEWNEXTHOP:
		return 8 // nhmsg
	case unix.RTM_NEWSTATS:
		return 12 // if_stats_msg
	}
	return 0
}

// attrNames names the attributes of types decoded generically.
func attrNames(t uint16) []string {
	switch t &^ 3 {
	case unix.RTM_NEWNETCONF:
		return []string{"", "ifindex", "forwarding", "rp_filter", "mc_forwarding", "proxy_neigh",
			"ignore_routes_with_linkdown", "input", "bc_forwarding"}
	case unix.RTM_NEWNSID:
		return []string{"", "nsid", "pid", "fd", "target_nsid", "current_nsid"}
	case unix.RTM_NEWNEXTHOP:
		return []string{"", "id", "group", "group_type", "blackhole", "oif", "gateway", "encap_type",
			"encap", "groups", "master", "fdb", "res_group", "res_bucket", "op_flags", "group_stats", "hw_stats_enable"}
	case unix.RTM_NEWPREFIX:
		return []string{"", "address", "cacheinfo"}
	case unix.RTM_NEWROUTE:
		return []string{"", "dst", "src", "iif", "oif", "gateway", "priority", "prefsrc", "metrics",
			"multipath", "protoinfo", "flow", "cacheinfo", "session", "mp_algo", "table", "mark",
			"mfc_stats", "via", "newdst", "pref", "encap_type", "encap", "expires"}
	}
	return nil
}

func familyName(f uint8) string {
	switch f {
	case unix.AF_INET:
		return "inet"
	case unix.AF_INET6:
		return "inet6"
	case unix.AF_UNSPEC:
		return "unspec"
	case unix.AF_BRIDGE:
		return "bridge"
	case unix.AF_MPLS:
		return "mpls"
	}
	return fmt.Sprintf("family-%d", f)
}

func scopeName(s uint8) string {
	switch s {
	case unix.RT_SCOPE_UNIVERSE:
		return "global"
	case unix.RT_SCOPE_SITE:
		return "site"
	case unix.RT_SCOPE_LINK:
		return "link"
	case unix.RT_SCOPE_HOST:
		return "host"
	case unix.RT_SCOPE_NOWHERE:
		return "nowhere"
	}
	return fmt.Sprintf("%d", s)
}

var protoNames = map[uint8]string{
	unix.RTPROT_UNSPEC: "unspec", unix.RTPROT_REDIRECT: "redirect", unix.RTPROT_KERNEL: "kernel",
	unix.RTPROT_BOOT: "boot", unix.RTPROT_STATIC: "static", unix.RTPROT_RA: "ra",
	unix.RTPROT_DHCP: "dhcp", unix.RTPROT_BGP: "bgp", unix.RTPROT_OSPF: "ospf",
	unix.RTPROT_ISIS: "isis", unix.RTPROT_BIRD: "bird", unix.RTPROT_ZEBRA: "zebra",
}

func protoName(p uint8) string {
	if s, ok := protoNames[p]; ok {
		return s
	}
	return fmt.Sprintf("%d", p)
}

var routeTypeNames = [...]string{
	unix.RTN_UNSPEC: "none", unix.RTN_UNICAST: "unicast", unix.RTN_LOCAL: "local",
	unix.RTN_BROADCAST: "broadcast", unix.RTN_ANYCAST: "anycast", unix.RTN_MULTICAST: "multicast",
	unix.RTN_BLACKHOLE: "blackhole", unix.RTN_UNREACHABLE: "unreachable", unix.RTN_PROHIBIT: "prohibit",
	unix.RTN_THROW: "throw", unix.RTN_NAT: "nat", unix.RTN_XRESOLVE: "xresolve",
}

func routeTypeName(t uint8) string {
	if int(t) < len(routeTypeNames) {
		return routeTypeNames[t]
	}
	return fmt.Sprintf("%d", t)
}

func tableName(t uint32) string {
	switch t {
	case unix.RT_TABLE_MAIN:
		return "main"
	case unix.RT_TABLE_LOCAL:
		return "local"
	case unix.RT_TABLE_DEFAULT:
		return "default"
	}
	return fmt.Sprintf("%d", t)
}

func ruleActionName(a uint8) string {
	switch a {
	case unix.FR_ACT_TO_TBL:
		return "to_tbl"
	case unix.FR_ACT_GOTO:
		return "goto"
	case unix.FR_ACT_NOP:
		return "nop"
	case unix.FR_ACT_BLACKHOLE:
		return "blackhole"
	case unix.FR_ACT_UNREACHABLE:
		return "unreachable"
	case unix.FR_ACT_PROHIBIT:
		return "prohibit"
	}
	return fmt.Sprintf("%d", a)
}

// operStateNames are the operational states by number (IF_OPER_*).
var operStateNames = [...]string{"unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"}

func operStateName(s rtnetlink.OperationalState) string {
	if int(s) < len(operStateNames) {
		return operStateNames[s]
	}
	return fmt.Sprintf("%d", s)
}

func arphrdName(t uint16) string {
	if w := arphrdWord(t); w != "" {
		return w
	}
	return fmt.Sprintf("%d", t)
}

// arphrdWord is arphrdName's word for t, or "" for a type without one.
func arphrdWord(t uint16) string {
	switch t {
	case unix.ARPHRD_ETHER:
		return "ether"
	case unix.ARPHRD_LOOPBACK:
		return "loopback"
	case unix.ARPHRD_NONE:
		return "none"
	case unix.ARPHRD_IPGRE:
		return "gre"
	case unix.ARPHRD_TUNNEL:
		return "ipip"
	case unix.ARPHRD_SIT:
		return "sit"
	}
	return ""
}

// Bit names, lowest bit first; "" for unnamed bits.
var (
	ifFlagNames = []string{"UP", "BROADCAST", "DEBUG", "LOOPBACK", "POINTOPOINT", "NOTRAILERS",
		"RUNNING", "NOARP", "PROMISC", "ALLMULTI", "MASTER", "SLAVE", "MULTICAST", "PORTSEL",
		"AUTOMEDIA", "DYNAMIC", "LOWER_UP", "DORMANT", "ECHO"}
	ifaFlagNames = []string{"secondary", "nodad", "optimistic", "dadfailed", "home", "deprecated",
		"tentative", "permanent", "managetempaddr", "noprefixroute", "mcautojoin", "stable-privacy"}
	nudStateNames = []string{"INCOMPLETE", "REACHABLE", "STALE", "DELAY", "PROBE", "FAILED",
		"NOARP", "PERMANENT"}
	ntfFlagNames = []string{"use", "self", "master", "proxy", "extern_learn", "offload", "sticky", "router"}
)

// flagWords names every set bit of v; unnamed bits become "0x...".
func flagWords(v uint32, names []string) []string {
	out := []string{}
	for v != 0 {
		i := bits.TrailingZeros32(v)
		v &^= 1 << i
		if i < len(names) && names[i] != "" {
			out = append(out, names[i])
		} else {
			out = append(out, fmt.Sprintf("%#x", uint32(1)<<i))
		}
	}
	return out
}
