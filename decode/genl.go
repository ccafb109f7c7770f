package decode

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Generic netlink's controller (nlctrl) announces families and groups as
// they register and unregister, on its own group.
const (
	genlCtrlGroup      = 0x10 // nlctrl's "notify" group, fixed (GENL_ID_CTRL)
	genlHdrLen         = 4    // struct genlmsghdr: cmd, version, reserved
	ctrlCmdNewFamily   = 1
	ctrlCmdDelFamily   = 2
	ctrlCmdNewMcastGrp = 7
	ctrlCmdDelMcastGrp = 8
	ctrlAttrFamilyID   = 1
	ctrlAttrFamilyName = 2
	ctrlAttrMcastGrps  = 7
	ctrlAttrMcastName  = 1
	ctrlAttrMcastID    = 2
)

// A CtrlNotice is one nlctrl announcement: a family or its multicast
// groups registered or unregistered.
type CtrlNotice struct {
	Cmd    uint8 // CtrlCmd*
	ID     uint16
	Name   string
	Groups []GenlGroup
}

// A GenlGroup is a generic netlink multicast group as nlctrl names it.
type GenlGroup struct {
	Name string
	ID   uint32
}

// nlctrl commands that announce changes.
const (
	CtrlCmdNewFamily   = ctrlCmdNewFamily
	CtrlCmdDelFamily   = ctrlCmdDelFamily
	CtrlCmdNewMcastGrp = ctrlCmdNewMcastGrp
	CtrlCmdDelMcastGrp = ctrlCmdDelMcastGrp
	// CtrlGroup is nlctrl's "notify" multicast group (fixed, GENL_ID_CTRL).
	CtrlGroup = genlCtrlGroup
)

// ParseCtrl reads an nlctrl message (netlink header, genlmsghdr,
// attributes). It reports false for any other message.
func ParseCtrl(msg []byte) (CtrlNotice, bool) {
	var n CtrlNotice
	if len(msg) < unix.SizeofNlMsghdr+genlHdrLen || binary.NativeEndian.Uint16(msg[4:]) != unix.GENL_ID_CTRL {
		return n, false
	}
	n.Cmd = msg[unix.SizeofNlMsghdr]
	ad, err := netlink.NewAttributeDecoder(msg[unix.SizeofNlMsghdr+genlHdrLen:])
	if err != nil {
		return n, false
	}
	for ad.Next() {
		switch ad.Type() {
		case ctrlAttrFamilyID:
			n.ID = ad.Uint16()
		case ctrlAttrFamilyName:
			n.Name = ad.String()
		case ctrlAttrMcastGrps:
			ad.Nested(func(arr *netlink.AttributeDecoder) error {
				for arr.Next() {
					var g GenlGroup
					arr.Nested(func(gd *netlink.AttributeDecoder) error {
						for gd.Next() {
							switch gd.Type() {
							case ctrlAttrMcastName:
								g.Name = gd.String()
							case ctrlAttrMcastID:
								g.ID = gd.Uint32()
							}
						}
						return nil
					})
					n.Groups = append(n.Groups, g)
				}
				return nil
			})
		}
	}
	return n, ad.Err() == nil && n.Name != ""
}

// GenlEvent is the JSON object of a generic netlink event.
type GenlEvent struct {
	Family   string `json:"family"` // family name, when known
	FamilyID uint16 `json:"family_id"`
	Cmd      uint8  `json:"cmd"`
	CmdName  string `json:"cmd_name,omitempty"`
	Version  uint8  `json:"version"`
	// Dev is the device an ethtool notification is about.
	Dev     string `json:"dev,omitempty"`
	DevIdx  uint32 `json:"ifindex,omitempty"`
	Control *struct {
		Name   string            `json:"name"`
		ID     uint16            `json:"id"`
		Groups map[string]uint32 `json:"groups,omitempty"`
	} `json:"nlctrl,omitempty"`
	Attrs []Attr `json:"attrs,omitempty"`
	Error string `json:"decode_error,omitempty"`
}

var ctrlCmdNames = map[uint8]string{ctrlCmdNewFamily: "new-family", ctrlCmdDelFamily: "del-family",
	ctrlCmdNewMcastGrp: "new-mcast-group", ctrlCmdDelMcastGrp: "del-mcast-group"}

// ethtool's notifications (ETHTOOL_MSG_*_NTF, kernel to user space).
var ethtoolNtf = map[uint8]string{3: "linkinfo-ntf", 5: "linkmodes-ntf", 8: "debug-ntf", 10: "wol-ntf", 13: "features-ntf",
	15: "privflags-ntf", 17: "rings-ntf", 19: "channels-ntf", 21: "coalesce-ntf", 23: "pause-ntf", 25: "eee-ntf",
	30: "fec-ntf", 33: "module-ntf", 37: "plca-ntf", 40: "mm-ntf"}

// Genl decodes one generic netlink message (netlink header
// included). names maps family ids to names. nlctrl announcements and the
// device of ethtool notifications are decoded; every top-level attribute
// is listed. It never fails.
func Genl(msg []byte, names map[uint16]string) Result {
	var ev GenlEvent
	if len(msg) >= unix.SizeofNlMsghdr {
		ev.FamilyID = binary.NativeEndian.Uint16(msg[4:])
		ev.Family = names[ev.FamilyID]
	}
	if len(msg) < unix.SizeofNlMsghdr+genlHdrLen {
		ev.Error = "shorter than netlink and generic netlink headers"
		return encodeAny(&ev, "malformed generic netlink message")
	}
	ev.FamilyID = binary.NativeEndian.Uint16(msg[4:])
	ev.Family = names[ev.FamilyID]
	if ev.FamilyID == unix.GENL_ID_CTRL {
		ev.Family = "nlctrl"
	}
	ev.Cmd, ev.Version = msg[unix.SizeofNlMsghdr], msg[unix.SizeofNlMsghdr+1]
	body := msg[unix.SizeofNlMsghdr+genlHdrLen:]
	if ad, err := netlink.NewAttributeDecoder(body); err == nil {
		for ad.Next() {
			v := ad.Bytes()
			a := Attr{Type: ad.Type(), Value: fmt.Sprintf("%x", v)}
			if len(v) == 4 {
				u := int64(binary.NativeEndian.Uint32(v))
				a.U32 = &u
			}
			ev.Attrs = append(ev.Attrs, a)
			if ev.Family == "ethtool" && a.Type == 1 { // ETHTOOL_A_*_HEADER
				ad.Nested(func(hd *netlink.AttributeDecoder) error {
					for hd.Next() {
						switch hd.Type() {
						case 1: // ETHTOOL_A_HEADER_DEV_INDEX
							ev.DevIdx = hd.Uint32()
						case 2: // ETHTOOL_A_HEADER_DEV_NAME
							ev.Dev = hd.String()
						}
					}
					return nil
				})
			}
		}
		if err := ad.Err(); err != nil {
			ev.Error = "attributes: " + err.Error()
		}
	} else {
		ev.Error = "attributes: " + err.Error()
	}
	summary := fmt.Sprintf("%s cmd %d", orID(ev.Family, ev.FamilyID), ev.Cmd)
	switch ev.Family {
	case "nlctrl":
		ev.CmdName = ctrlCmdNames[ev.Cmd]
		if n, ok := ParseCtrl(msg); ok {
			ev.Control = &struct {
				Name   string            `json:"name"`
				ID     uint16            `json:"id"`
				Groups map[string]uint32 `json:"groups,omitempty"`
			}{Name: n.Name, ID: n.ID}
			for _, g := range n.Groups {
				if ev.Control.Groups == nil {
					ev.Control.Groups = map[string]uint32{}
				}
				ev.Control.Groups[g.Name] = g.ID
			}
			summary = fmt.Sprintf("nlctrl %s %s (id %d)", ev.CmdName, n.Name, n.ID)
		}
	case "ethtool":
		ev.CmdName = ethtoolNtf[ev.Cmd]
		if ev.CmdName != "" {
			summary = "ethtool " + ev.CmdName
		}
		if ev.Dev != "" {
			summary += " dev " + ev.Dev
		}
	}
	return encodeAny(&ev, summary)
}

func orID(name string, id uint16) string {
	if name != "" {
		return name
	}
	return fmt.Sprintf("family-%d", id)
}
