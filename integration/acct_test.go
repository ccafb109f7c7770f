package integration

import (
	"encoding/binary"
	"fmt"
	"net"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/streams"
)

// NFNLGRP_ACCT_QUOTA.
const nfnlgrpAcctQuota = 8

// nfnlRequest builds one nfnetlink request of subsystem subsys, message
// msg, for nfgenmsg family fam (res_id: resID), with attributes ae.
func nfnlRequest(t *testing.T, typ uint16, flags uint16, fam uint8, resID uint16, ae *netlink.AttributeEncoder, seq uint32) []byte {
	t.Helper()
	var attrs []byte
	if ae != nil {
		var err error
		if attrs, err = ae.Encode(); err != nil {
			t.Fatal(err)
		}
	}
	m := make([]byte, unix.SizeofNlMsghdr+4, unix.SizeofNlMsghdr+4+len(attrs))
	binary.NativeEndian.PutUint16(m[4:], typ)
	binary.NativeEndian.PutUint16(m[6:], flags)
	binary.NativeEndian.PutUint32(m[8:], seq)
	m[16] = fam
	binary.BigEndian.PutUint16(m[18:], resID)
	m = append(m, attrs...)
	binary.NativeEndian.PutUint32(m, uint32(len(m)))
	return m
}

// nfnlSend sends msgs in one datagram on a NETLINK_NETFILTER socket of
// the calling thread's namespace and waits for the acknowledgement of
// each sequence number in acks.
func nfnlSend(fd int, msgs [][]byte, acks int) error {
	var b []byte
	for _, m := range msgs {
		b = append(b, m...)
	}
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 1<<16)
	for acks > 0 {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		for d := buf[:n]; len(d) >= unix.SizeofNlMsghdr+4; {
			l := int(binary.NativeEndian.Uint32(d))
			if l < unix.SizeofNlMsghdr || l > len(d) {
				break
			}
			if binary.NativeEndian.Uint16(d[4:]) == unix.NLMSG_ERROR {
				if e := int32(binary.NativeEndian.Uint32(d[unix.SizeofNlMsghdr:])); e != 0 {
					return fmt.Errorf("request %d: %v", binary.NativeEndian.Uint32(d[8:]), unix.Errno(-e))
				}
				acks--
			}
			d = d[(l+3)&^3:]
		}
	}
	return nil
}

// TestAcctQuotaStream: an nfacct object with a quota of one packet, which
// an nf_tables rule (the xt nfacct match, by nft_compat: the nft tool has
// no nfacct statement, so the test sends the ruleset itself) counts UDP
// packets to 127.0.0.1:9998 with; the second packet sends it over quota.
// The kernel's notice comes through the bridge byte for byte as it sent it
// to a plain netlink socket, and in JSON field by field. (The kernel sends
// it without a group in NETLINK_PKTINFO and with the message type of
// "new": the bridge and the decoder know.)
func TestAcctQuotaStream(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--cleartext-to-all-users", "acct-quota", "--json-always")
	raw, js := ns.receivers(t, streams.Map{}, "acct-quota")
	direct := ns.subscribeFamily(t, unix.NETLINK_NETFILTER, []uint32{nfnlgrpAcctQuota}, false, nil)

	const req = unix.NLM_F_REQUEST | unix.NLM_F_ACK
	ns.do(t, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		acct := netlink.NewAttributeEncoder()
		acct.ByteOrder = binary.BigEndian
		acct.String(1, "nlmq") // NFACCT_NAME
		acct.Uint32(5, 1)      // NFACCT_FLAGS: NFACCT_F_QUOTA_PKTS
		acct.Uint64(6, 1)      // NFACCT_QUOTA: one packet
		if err := nfnlSend(fd, [][]byte{nfnlRequest(t, 7<<8 /* NFNL_MSG_ACCT_NEW */, req|unix.NLM_F_CREATE, unix.AF_UNSPEC, 0, acct, 1)}, 1); err != nil {
			return fmt.Errorf("nfacct add: %w", err)
		}
		table := netlink.NewAttributeEncoder()
		table.String(1, "nlmq") // NFTA_TABLE_NAME
		chain := netlink.NewAttributeEncoder()
		chain.ByteOrder = binary.BigEndian
		chain.String(1, "nlmq")                                   // NFTA_CHAIN_TABLE
		chain.String(3, "out")                                    // NFTA_CHAIN_NAME
		chain.Nested(4, func(h *netlink.AttributeEncoder) error { // NFTA_CHAIN_HOOK
			h.ByteOrder = binary.BigEndian
			h.Uint32(1, unix.NF_INET_LOCAL_OUT) // NFTA_HOOK_HOOKNUM
			h.Uint32(2, 0)                      // NFTA_HOOK_PRIORITY
			return nil
		})
		chain.String(7, "filter") // NFTA_CHAIN_TYPE
		info := make([]byte, 40)  // struct xt_nfacct_match_info: name[32], then the kernel's pointer
		copy(info, "nlmq")
		rule := netlink.NewAttributeEncoder()
		rule.ByteOrder = binary.BigEndian
		rule.String(1, "nlmq")                                   // NFTA_RULE_TABLE
		rule.String(2, "out")                                    // NFTA_RULE_CHAIN
		rule.Nested(4, func(l *netlink.AttributeEncoder) error { // NFTA_RULE_EXPRESSIONS
			l.Nested(1, func(e *netlink.AttributeEncoder) error { // NFTA_LIST_ELEM
				e.String(1, "match")                                  // NFTA_EXPR_NAME
				e.Nested(2, func(m *netlink.AttributeEncoder) error { // NFTA_EXPR_DATA
					m.ByteOrder = binary.BigEndian
					m.String(1, "nfacct") // NFTA_MATCH_NAME
					m.Uint32(2, 0)        // NFTA_MATCH_REV
					m.Bytes(3, info)      // NFTA_MATCH_INFO
					return nil
				})
				return nil
			})
			return nil
		})
		batch := [][]byte{
			nfnlRequest(t, unix.NFNL_MSG_BATCH_BEGIN, unix.NLM_F_REQUEST, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES, nil, 2),
			nfnlRequest(t, 10<<8 /* NFT_MSG_NEWTABLE */, req|unix.NLM_F_CREATE, unix.NFPROTO_IPV4, 0, table, 3),
			nfnlRequest(t, 10<<8|3 /* NFT_MSG_NEWCHAIN */, req|unix.NLM_F_CREATE, unix.NFPROTO_IPV4, 0, chain, 4),
			nfnlRequest(t, 10<<8|6 /* NFT_MSG_NEWRULE */, req|unix.NLM_F_CREATE|unix.NLM_F_APPEND, unix.NFPROTO_IPV4, 0, rule, 5),
			nfnlRequest(t, unix.NFNL_MSG_BATCH_END, unix.NLM_F_REQUEST, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES, nil, 6),
		}
		if err := nfnlSend(fd, batch, 3); err != nil {
			return fmt.Errorf("nf_tables rule with the nfacct match: %w", err)
		}
		l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9998}) // no ICMP refusals
		if err != nil {
			return err
		}
		defer l.Close()
		c, err := net.Dial("udp4", "127.0.0.1:9998")
		if err != nil {
			return err
		}
		defer c.Close()
		for range 2 {
			if _, err := c.Write([]byte("x")); err != nil {
				return err
			}
		}
		return nil
	})
	waitFor(t, &direct.changed, "the over-quota notice", func() bool { return len(direct.messages(nfnlgrpAcctQuota)) > 0 })
	direct.stop()
	run := bridged(t, "acct-quota raw", direct.messages(nfnlgrpAcctQuota)[:1], raw, "acct-quota")
	evs, _ := decodedEvents[decode.NfAcctEvent](t, "acct-quota", jsonOf(t, js, "acct-quota", run))
	ev := evs[0]
	if ev.Event != "overquota" || ev.Name != "nlmq" || ev.Quota == nil || *ev.Quota != 1 || ev.Packets == nil || ev.Bytes == nil ||
		ev.Flags == nil || *ev.Flags != 1|4 { // NFACCT_F_QUOTA_PKTS, NFACCT_F_OVERQUOTA
		t.Errorf("JSON notice: %+v", ev)
	}
}
