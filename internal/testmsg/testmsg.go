package testmsg

import (
	"encoding/binary"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Nlmsg returns a netlink message of type typ around body.
func Nlmsg(typ uint16, body []byte) []byte {
	b := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(b, uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	return append(b, body...)
}

// nlctrl commands and attributes (linux/genetlink.h).
const (
	CtrlCmdNewFamily = 1
	CtrlCmdDelFamily = 2
	ctrlAttrFamilyID = 1
	ctrlAttrFamName  = 2
	ctrlAttrGroups   = 7
	ctrlAttrGrpName  = 1
	ctrlAttrGrpID    = 2
)

// Ctrl returns an nlctrl announcement (cmd CtrlCmd*) of a family and its
// multicast groups.
func Ctrl(t testing.TB, cmd uint8, name string, id uint16, groups map[string]uint32) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.Uint16(ctrlAttrFamilyID, id)
	ae.String(ctrlAttrFamName, name)
	if len(groups) > 0 {
		ae.Nested(ctrlAttrGroups, func(arr *netlink.AttributeEncoder) error {
			i := uint16(1)
			for gname, gid := range groups {
				arr.Nested(i, func(g *netlink.AttributeEncoder) error {
					g.String(ctrlAttrGrpName, gname)
					g.Uint32(ctrlAttrGrpID, gid)
					return nil
				})
				i++
			}
			return nil
		})
	}
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return Nlmsg(unix.GENL_ID_CTRL, append([]byte{cmd, 2, 0, 0}, attrs...))
}
