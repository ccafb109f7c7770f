package netlinkbridge

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/genetlink"
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

// genlDriver resolves FAMILY:GROUP streams to the group numbers the kernel
// assigned, and keeps them resolved: it watches nlctrl, joins a group when
// its family registers (a module loaded) and reports one that goes away.
type genlDriver struct {
	names map[uint16]string // family id to name, for decoding
}

func newGenlDriver() *genlDriver { return &genlDriver{names: map[uint16]string{}} }

// joiner is a source whose group memberships change while it runs.
type joiner interface {
	Join(group uint32) error
	Leave(group uint32) error
}

func (d *genlDriver) open(b *Bridge, cfg *Config) (Source, error) {
	ctl, err := genetlink.Dial(&netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return nil, fmt.Errorf("generic netlink: %w", err)
	}
	fams, err := ctl.ListFamilies()
	ctl.Close()
	if err != nil {
		return nil, fmt.Errorf("generic netlink: list families: %w", err)
	}
	for _, f := range fams {
		d.names[f.ID] = f.Name
		for _, g := range f.Groups {
			d.bind(b, f.Name, g.Name, g.ID)
		}
	}
	for _, st := range b.streams {
		if st.stream.Group == 0 {
			b.log.Warn("generic netlink group not registered in this kernel now; it is joined when it appears",
				"stream", st.stream.Name)
		}
	}
	src, err := NewKernelSource(kernelConfig(b, cfg, unix.NETLINK_GENERIC))
	if err != nil {
		return nil, fmt.Errorf("generic netlink: %w", err)
	}
	return src, nil
}

// bind maps a registered group to the stream that wants it, if any and if
// not mapped yet, and reports whether it did.
func (d *genlDriver) bind(b *Bridge, family, group string, id uint32) bool {
	for _, st := range b.streams {
		s := &st.stream
		if s.GenlFamily != family || s.GenlGroup != group || s.Group == id {
			continue
		}
		if id == 0 || id >= uint32(len(b.byGroup)) {
			b.log.Error("generic netlink group number out of range; stream not bridged", "stream", s.Name, "group", id)
			return false
		}
		s.Group = id
		b.byGroup[id] = st
		return true
	}
	return false
}

// unbind forgets the groups of a family (all of them when group is "").
func (d *genlDriver) unbind(b *Bridge, family, group string) {
	for _, st := range b.streams {
		s := &st.stream
		if s.GenlFamily != family || (group != "" && s.GenlGroup != group) || s.Group == 0 {
			continue
		}
		if j, ok := b.src.(joiner); ok {
			_ = j.Leave(s.Group) // the kernel has dropped it already
		}
		b.byGroup[s.Group] = nil
		b.log.Warn("generic netlink group went away; its stream is silent until it registers again",
			"stream", s.Name, "group", s.Group)
		s.Group = 0
		b.genlGone.Add(1)
	}
}

func (d *genlDriver) watches(_ *Bridge, g uint32) bool { return g == genlCtrlGroup }

// observe follows nlctrl's announcements.
func (d *genlDriver) observe(b *Bridge, m *Message) {
	if m.Group != genlCtrlGroup {
		return
	}
	n, ok := parseCtrl(m.Data)
	if !ok {
		return
	}
	switch n.cmd {
	case ctrlCmdNewFamily, ctrlCmdNewMcastGrp:
		d.names[n.id] = n.name
		for _, g := range n.groups {
			if !d.bind(b, n.name, g.Name, g.ID) {
				continue
			}
			if j, ok := b.src.(joiner); ok {
				if err := j.Join(g.ID); err != nil {
					b.log.Error("cannot join generic netlink group that appeared", "stream", n.name+":"+g.Name, "err", err)
					continue
				}
			}
			b.genlJoined.Add(1)
			b.log.Info("generic netlink group appeared; joined", "stream", n.name+":"+g.Name, "group", g.ID)
		}
	case ctrlCmdDelFamily:
		delete(d.names, n.id)
		d.unbind(b, n.name, "")
	case ctrlCmdDelMcastGrp:
		for _, g := range n.groups {
			d.unbind(b, n.name, g.Name)
		}
	}
}

func (d *genlDriver) decode(_ *Bridge, m *Message) Decoded { return DecodeGenl(m.Data, d.names) }

// ctrlNotice is one nlctrl announcement.
type ctrlNotice struct {
	cmd    uint8
	id     uint16
	name   string
	groups []genetlink.MulticastGroup
}

// parseCtrl reads an nlctrl message: netlink header, genlmsghdr, attributes.
func parseCtrl(msg []byte) (ctrlNotice, bool) {
	var n ctrlNotice
	if len(msg) < unix.SizeofNlMsghdr+genlHdrLen || binary.NativeEndian.Uint16(msg[4:]) != unix.GENL_ID_CTRL {
		return n, false
	}
	n.cmd = msg[unix.SizeofNlMsghdr]
	ad, err := netlink.NewAttributeDecoder(msg[unix.SizeofNlMsghdr+genlHdrLen:])
	if err != nil {
		return n, false
	}
	for ad.Next() {
		switch ad.Type() {
		case ctrlAttrFamilyID:
			n.id = ad.Uint16()
		case ctrlAttrFamilyName:
			n.name = ad.String()
		case ctrlAttrMcastGrps:
			ad.Nested(func(arr *netlink.AttributeDecoder) error {
				for arr.Next() {
					var g genetlink.MulticastGroup
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
					n.groups = append(n.groups, g)
				}
				return nil
			})
		}
	}
	return n, ad.Err() == nil && n.name != ""
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

// DecodeGenl decodes one generic netlink message (netlink header
// included). names maps family ids to names. nlctrl announcements and the
// device of ethtool notifications are decoded; every top-level attribute
// is listed. It never fails.
func DecodeGenl(msg []byte, names map[uint16]string) Decoded {
	var ev GenlEvent
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
		if n, ok := parseCtrl(msg); ok {
			ev.Control = &struct {
				Name   string            `json:"name"`
				ID     uint16            `json:"id"`
				Groups map[string]uint32 `json:"groups,omitempty"`
			}{Name: n.name, ID: n.id}
			for _, g := range n.groups {
				if ev.Control.Groups == nil {
					ev.Control.Groups = map[string]uint32{}
				}
				ev.Control.Groups[g.Name] = g.ID
			}
			summary = fmt.Sprintf("nlctrl %s %s (id %d)", ev.CmdName, n.name, n.id)
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
