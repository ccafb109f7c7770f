package decode

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
)

// nftDSCP names the DSCP values nft knows.
var nftDSCP = map[byte]string{0: "cs0", 8: "cs1", 10: "af11", 12: "af12", 14: "af13", 16: "cs2", 18: "af21", 20: "af22",
	22: "af23", 24: "cs3", 26: "af31", 28: "af32", 30: "af33", 32: "cs4", 34: "af41", 36: "af42", 38: "af43", 40: "cs5",
	46: "ef", 48: "cs6", 56: "cs7"}

var nftICMPTypes = map[byte]string{0: "echo-reply", 3: "destination-unreachable", 5: "redirect", 8: "echo-request", 11: "time-exceeded"}

// nftTracePacket renders a traced packet's headers as nft monitor trace's
// "packet:" line does, for Ethernet, IPv4/IPv6 and TCP/UDP/ICMP; bytes it
// does not decode print as @base,offset,length 0xhex.
func nftTracePacket(tr *NftTrace, ll, nh, th []byte) string {
	var f []string
	add := func(format string, a ...any) { f = append(f, fmt.Sprintf(format, a...)) }
	if tr.IIF != nil {
		add("iif %d", *tr.IIF)
	}
	if tr.OIF != nil {
		add("oif %d", *tr.OIF)
	}
	raw := func(base string, off int, b []byte) {
		if len(b) > 0 {
			add("@%s,%d,%d 0x%s", base, off*8, len(b)*8, hex.EncodeToString(b))
		}
	}
	if len(ll) >= 14 {
		add("ether saddr %s ether daddr %s", macString(ll[6:12]), macString(ll[0:6]))
		if t := binary.BigEndian.Uint16(ll[12:]); t != 0x0800 && t != 0x86dd || len(nh) == 0 {
			add("ether type 0x%04x", t)
		}
		raw("ll", 14, ll[14:])
	} else {
		raw("ll", 0, ll)
	}
	l4 := -1
	switch {
	case len(nh) >= 20 && nh[0]>>4 == 4:
		hl := int(nh[0]&15) * 4
		s, _ := netip.AddrFromSlice(nh[12:16])
		d, _ := netip.AddrFromSlice(nh[16:20])
		add("ip saddr %s ip daddr %s ip dscp %s ip ecn %s ip ttl %d ip id %d ip protocol %s ip length %d",
			s, d, dscpName(nh[1]>>2), ecnName(nh[1]), nh[8], binary.BigEndian.Uint16(nh[4:]), nftValue("proto", nh[9:10]),
			binary.BigEndian.Uint16(nh[2:]))
		l4 = int(nh[9])
		if hl > 20 && hl <= len(nh) {
			raw("nh", 20, nh[20:hl])
		}
	case len(nh) >= 40 && nh[0]>>4 == 6:
		s, _ := netip.AddrFromSlice(nh[8:24])
		d, _ := netip.AddrFromSlice(nh[24:40])
		tc := byte(binary.BigEndian.Uint16(nh) >> 4)
		add("ip6 saddr %s ip6 daddr %s ip6 dscp %s ip6 ecn %s ip6 flowlabel %d ip6 length %d ip6 nexthdr %s ip6 hoplimit %d",
			s, d, dscpName(tc>>2), ecnName(tc), binary.BigEndian.Uint32(nh)&0xfffff, binary.BigEndian.Uint16(nh[4:]),
			nftValue("proto", nh[6:7]), nh[7])
		l4 = int(nh[6])
		raw("nh", 40, nh[40:])
	default:
		raw("nh", 0, nh)
	}
	switch {
	case (l4 == 17 || l4 == 136) && len(th) >= 8:
		p := ipProtoNames[byte(l4)]
		add("%s sport %d %s dport %d %s length %d", p, binary.BigEndian.Uint16(th), p, binary.BigEndian.Uint16(th[2:]), p, binary.BigEndian.Uint16(th[4:]))
		raw("th", 8, th[8:])
	case l4 == 6 && len(th) >= 20:
		add("tcp sport %d tcp dport %d tcp sequence %d tcp ackseq %d tcp flags 0x%02x tcp window %d",
			binary.BigEndian.Uint16(th), binary.BigEndian.Uint16(th[2:]), binary.BigEndian.Uint32(th[4:]),
			binary.BigEndian.Uint32(th[8:]), th[13], binary.BigEndian.Uint16(th[14:]))
		raw("th", 20, th[20:])
	case l4 == 1 && len(th) >= 8:
		t, ok := nftICMPTypes[th[0]]
		if !ok {
			t = fmt.Sprint(th[0])
		}
		add("icmp type %s icmp code %d", t, th[1])
		if th[0] == 0 || th[0] == 8 {
			add("icmp id %d icmp sequence %d", binary.BigEndian.Uint16(th[4:]), binary.BigEndian.Uint16(th[6:]))
		} else {
			raw("th", 4, th[4:8])
		}
		raw("th", 8, th[8:])
	default:
		raw("th", 0, th)
	}
	return "packet: " + strings.Join(f, " ")
}

func dscpName(d byte) string {
	if n, ok := nftDSCP[d]; ok {
		return n
	}
	return fmt.Sprintf("0x%02x", d)
}

func ecnName(tos byte) string { return []string{"not-ect", "ect1", "ect0", "ce"}[tos&3] }
