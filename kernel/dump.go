package kernel

import "golang.org/x/sys/unix"

// A DumpRequest asks the kernel for the whole of one table, whose answer is
// a stream's current state.
type DumpRequest struct {
	Type   uint16 // an RTM_GET* message type
	Family uint8  // address family in the request's family header
	HdrLen int    // length of the family header (ifinfomsg, rtmsg, ...)
}

// Family header lengths.
const (
	sizeofIfinfomsg  = unix.SizeofIfInfomsg // 16
	sizeofIfaddrmsg  = unix.SizeofIfAddrmsg // 8
	sizeofRtmsg      = unix.SizeofRtMsg     // 12, fib_rule_hdr too
	sizeofNdmsg      = unix.SizeofNdMsg     // 12
	sizeofNetconfmsg = 4                    // netconfmsg: one byte, aligned
	sizeofRtgenmsg   = 4                    // rtgenmsg: one byte, aligned
	sizeofNhmsg      = 8
	rtnlFamilyIPMR   = 128
	rtnlFamilyIP6MR  = 129
)

// dumps maps an rtnetlink group to the dump that is its stream's state.
// Streams whose group is missing here cannot be resynced (streams.Stream's
// Resync field says so; a test keeps the two in step).
var dumps = map[uint32]DumpRequest{
	unix.RTNLGRP_LINK:         {unix.RTM_GETLINK, unix.AF_UNSPEC, sizeofIfinfomsg},
	unix.RTNLGRP_NEIGH:        {unix.RTM_GETNEIGH, unix.AF_UNSPEC, sizeofNdmsg},
	unix.RTNLGRP_IPV4_IFADDR:  {unix.RTM_GETADDR, unix.AF_INET, sizeofIfaddrmsg},
	unix.RTNLGRP_IPV4_MROUTE:  {unix.RTM_GETROUTE, rtnlFamilyIPMR, sizeofRtmsg},
	unix.RTNLGRP_IPV4_ROUTE:   {unix.RTM_GETROUTE, unix.AF_INET, sizeofRtmsg},
	unix.RTNLGRP_IPV4_RULE:    {unix.RTM_GETRULE, unix.AF_INET, sizeofRtmsg},
	unix.RTNLGRP_IPV6_IFADDR:  {unix.RTM_GETADDR, unix.AF_INET6, sizeofIfaddrmsg},
	unix.RTNLGRP_IPV6_MROUTE:  {unix.RTM_GETROUTE, rtnlFamilyIP6MR, sizeofRtmsg},
	unix.RTNLGRP_IPV6_ROUTE:   {unix.RTM_GETROUTE, unix.AF_INET6, sizeofRtmsg},
	unix.RTNLGRP_IPV6_RULE:    {unix.RTM_GETRULE, unix.AF_INET6, sizeofRtmsg},
	unix.RTNLGRP_IPV4_NETCONF: {unix.RTM_GETNETCONF, unix.AF_INET, sizeofNetconfmsg},
	unix.RTNLGRP_IPV6_NETCONF: {unix.RTM_GETNETCONF, unix.AF_INET6, sizeofNetconfmsg},
	unix.RTNLGRP_NSID:         {unix.RTM_GETNSID, unix.AF_UNSPEC, sizeofRtgenmsg},
	unix.RTNLGRP_NEXTHOP:      {unix.RTM_GETNEXTHOP, unix.AF_UNSPEC, sizeofNhmsg},
}

// DumpFor returns the dump that resyncs a group's stream, if there is one.
func DumpFor(group uint32) (DumpRequest, bool) {
	r, ok := dumps[group]
	return r, ok
}
