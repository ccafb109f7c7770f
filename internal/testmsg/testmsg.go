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

// XfrmNewSA returns an xfrm XFRM_MSG_NEWSA message as a 64-bit kernel
// sends it (struct xfrm_usersa_info, 224 bytes, then attributes): ESP in
// tunnel mode from 10.0.0.1 to 10.0.0.2, SPI 0x100, with encKey as the
// key of cbc(aes) (XFRMA_ALG_CRYPT) and authKey as that of hmac(sha256)
// truncated to 128 bits (XFRMA_ALG_AUTH_TRUNC).
func XfrmNewSA(t testing.TB, encKey, authKey []byte) []byte {
	t.Helper()
	sa := make([]byte, 224)
	ne := binary.NativeEndian
	copy(sa[56:], []byte{10, 0, 0, 2}) // id.daddr
	binary.BigEndian.PutUint32(sa[72:], 0x100)
	sa[76] = unix.IPPROTO_ESP
	copy(sa[80:], []byte{10, 0, 0, 1}) // saddr
	ne.PutUint16(sa[212:], unix.AF_INET)
	sa[214] = 1 // tunnel
	algo := func(name string, key []byte, trunc bool) []byte {
		b := make([]byte, 64, 72+len(key))
		copy(b, name)
		b = ne.AppendUint32(b, uint32(8*len(key)))
		if trunc {
			b = ne.AppendUint32(b, 128)
		}
		return append(b, key...)
	}
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(20, algo("hmac(sha256)", authKey, true)) // XFRMA_ALG_AUTH_TRUNC
	ae.Bytes(2, algo("cbc(aes)", encKey, false))      // XFRMA_ALG_CRYPT
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return Nlmsg(0x10, append(sa, attrs...))
}
