package decode

import (
	"encoding/binary"
	"testing"

	"github.com/mdlayher/netlink"

	"github.com/nlmcast/nlmcast/internal/testmsg"
)

// This kernel sends neither family's notices (SELinux is not enabled, and
// it has no RDMA), so their messages are built as the kernel builds them:
// SELinux's selnl_notify (a netlink header whose type is the notice, then
// struct selnl_msg_setenforce or _policyload), RDMA's
// rdma_nl_notify_event (type RDMA_NL_GET_TYPE(RDMA_NL_NLDEV,
// RDMA_NLDEV_CMD_MONITOR), then nldev attributes).

func selinuxMsg(typ uint16, v uint32) []byte {
	return testmsg.Nlmsg(typ, binary.NativeEndian.AppendUint32(nil, v))
}

// TestSELinux compares SELinux's whole Result for each notice with
// testdata/golden/selinux-NAME.json.
func TestSELinux(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"setenforce-enforcing", selinuxMsg(selnlMsgSetenforce, 1)},
		{"setenforce-permissive", selinuxMsg(selnlMsgSetenforce, 0)},
		{"policyload", selinuxMsg(selnlMsgPolicyload, 7)},
		{"short", testmsg.Nlmsg(selnlMsgPolicyload, []byte{1, 2})},
		{"unknown", testmsg.Nlmsg(0x30, []byte{1, 2, 3, 4})},
		{"malformed", []byte{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGolden[SELinuxEvent](t, "selinux-"+tc.name, SELinux(tc.msg))
		})
	}
}

// rdmaMsg builds an nldev monitor notice of event e.
func rdmaMsg(t testing.TB, e uint8, netdev bool) []byte {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(rdmaAttrDevIndex, 3)
	ae.String(rdmaAttrDevName, "rxe0")
	if netdev {
		ae.Uint32(rdmaAttrPortIndex, 1)
		ae.Uint32(rdmaAttrNdevIndex, 7)
		ae.String(rdmaAttrNdevName, "eth0")
	}
	ae.Uint8(rdmaAttrEventType, e)
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return testmsg.Nlmsg(rdmaClientNldev<<10|rdmaCmdMonitor, b)
}

// TestRDMA compares RDMA's whole Result for each notice with
// testdata/golden/rdma-NAME.json.
func TestRDMA(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"register", rdmaMsg(t, 0, false)},
		{"unregister", rdmaMsg(t, 1, false)},
		{"netdev-attach", rdmaMsg(t, 2, true)},
		{"netdev-detach", rdmaMsg(t, 3, true)},
		{"unknown-event", rdmaMsg(t, 77, false)},
		{"bad-attributes", testmsg.Nlmsg(rdmaClientNldev<<10|rdmaCmdMonitor, []byte{9, 0, 1, 0, 1})},
		{"malformed", []byte{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGolden[RDMAEvent](t, "rdma-"+tc.name, RDMA(tc.msg))
		})
	}
}
