package decode

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// SELinuxEvent is the JSON object of a SELinux notice (NETLINK_SELINUX,
// SELNLGRP_AVC): the enforcing mode changed, or a policy was loaded.
type SELinuxEvent struct {
	Event string `json:"event"` // setenforce, policyload, or msg-N
	// Enforcing is setenforce's new mode (its val: 1 enforcing, 0
	// permissive); Seqno policyload's policy sequence number.
	Enforcing *int32  `json:"enforcing,omitempty"`
	Seqno     *uint32 `json:"seqno,omitempty"`
	Error     string  `json:"decode_error,omitempty"`
	Raw       string  `json:"data_hex,omitempty"`
}

// SELinux message types (linux/selinux_netlink.h).
const (
	selnlMsgSetenforce = 0x10
	selnlMsgPolicyload = 0x11
)

// SELinux decodes one SELinux notice (netlink header included). It never
// fails.
func SELinux(msg []byte) Result {
	var ev SELinuxEvent
	if len(msg) < unix.SizeofNlMsghdr {
		ev.Event, ev.Error, ev.Raw = "malformed", "shorter than a netlink header", hex.EncodeToString(msg)
		return encodeAny(&ev, "malformed SELinux notice")
	}
	typ := binary.NativeEndian.Uint16(msg[4:])
	body := xfrmBody(msg)
	var sum string
	switch {
	case typ == selnlMsgSetenforce && len(body) >= 4:
		v := int32(binary.NativeEndian.Uint32(body))
		ev.Event, ev.Enforcing = "setenforce", &v
		sum = "setenforce " + map[bool]string{true: "enforcing", false: "permissive"}[v != 0]
	case typ == selnlMsgPolicyload && len(body) >= 4:
		v := binary.NativeEndian.Uint32(body)
		ev.Event, ev.Seqno = "policyload", &v
		sum = fmt.Sprintf("policyload seqno %d", v)
	case typ == selnlMsgSetenforce || typ == selnlMsgPolicyload:
		ev.Event = map[bool]string{true: "setenforce", false: "policyload"}[typ == selnlMsgSetenforce]
		ev.Error, ev.Raw = fmt.Sprintf("%d bytes, shorter than its 4", len(body)), hex.EncodeToString(body)
		sum = ev.Event + " (" + ev.Error + ")"
	default:
		ev.Event, ev.Raw = fmt.Sprintf("msg-%d", typ), hex.EncodeToString(body)
		sum = ev.Event
	}
	return encodeAny(&ev, sum)
}

// RDMAEvent is the JSON object of an RDMA device notice (NETLINK_RDMA,
// RDMA_NL_GROUP_NOTIFY), as `rdma monitor` shows it.
type RDMAEvent struct {
	// Event is register, unregister, netdev-attach, netdev-detach,
	// rename, netdev-rename, or event-N; Op the nldev command (28,
	// RDMA_NLDEV_CMD_MONITOR) and Client the netlink client (5, nldev).
	Event  string  `json:"event"`
	Client uint16  `json:"client"`
	Op     uint16  `json:"op"`
	Dev    *uint32 `json:"dev_index,omitempty"`
	Name   string  `json:"dev_name,omitempty"`
	Port   *uint32 `json:"port,omitempty"`
	// NetdevIndex and Netdev are the network device attached or detached.
	NetdevIndex *uint32  `json:"netdev_index,omitempty"`
	Netdev      string   `json:"netdev,omitempty"`
	Attrs       []uint16 `json:"attrs,omitempty"`
	Error       string   `json:"decode_error,omitempty"`
	Raw         string   `json:"data_hex,omitempty"`
}

// rdma_netlink.h: nldev client 5, RDMA_NLDEV_CMD_MONITOR 28, attributes.
const (
	rdmaClientNldev   = 5
	rdmaCmdMonitor    = 28
	rdmaAttrDevIndex  = 1
	rdmaAttrDevName   = 2
	rdmaAttrPortIndex = 3
	rdmaAttrNdevIndex = 50
	rdmaAttrNdevName  = 51
	rdmaAttrEventType = 105
)

var rdmaEvents = []string{"register", "unregister", "netdev-attach", "netdev-detach", "rename", "netdev-rename"}

// RDMA decodes one RDMA netlink notice (netlink header included). It
// never fails.
func RDMA(msg []byte) Result {
	var ev RDMAEvent
	if len(msg) < unix.SizeofNlMsghdr {
		ev.Event, ev.Error, ev.Raw = "malformed", "shorter than a netlink header", hex.EncodeToString(msg)
		return encodeAny(&ev, "malformed RDMA notice")
	}
	typ := binary.NativeEndian.Uint16(msg[4:])
	ev.Client, ev.Op = typ>>10, typ&(1<<10-1)
	ev.Event = fmt.Sprintf("client-%d-op-%d", ev.Client, ev.Op)
	if ev.Client == rdmaClientNldev && ev.Op == rdmaCmdMonitor {
		ev.Event = "monitor"
	}
	body := xfrmBody(msg)
	err := func() error {
		if len(body) == 0 {
			return nil
		}
		ad, err := netlink.NewAttributeDecoder(body)
		if err != nil {
			return err
		}
		for ad.Next() {
			switch t := ad.Type(); t {
			case rdmaAttrDevIndex:
				v := ad.Uint32()
				ev.Dev = &v
			case rdmaAttrDevName:
				ev.Name = ad.String()
			case rdmaAttrPortIndex:
				v := ad.Uint32()
				ev.Port = &v
			case rdmaAttrNdevIndex:
				v := ad.Uint32()
				ev.NetdevIndex = &v
			case rdmaAttrNdevName:
				ev.Netdev = ad.String()
			case rdmaAttrEventType:
				if e := int(ad.Uint8()); e < len(rdmaEvents) {
					ev.Event = rdmaEvents[e]
				} else {
					ev.Event = fmt.Sprintf("event-%d", e)
				}
			default:
				ev.Attrs = append(ev.Attrs, t)
			}
		}
		return ad.Err()
	}()
	if err != nil {
		ev.Error, ev.Raw = err.Error(), hex.EncodeToString(body)
	}
	sum := "[" + ev.Event + "]"
	if ev.Dev != nil {
		sum += fmt.Sprintf(" dev %d %s", *ev.Dev, ev.Name)
	}
	if ev.Port != nil {
		sum += fmt.Sprintf(" port %d", *ev.Port)
	}
	if ev.NetdevIndex != nil {
		sum += fmt.Sprintf(" netdev %d %s", *ev.NetdevIndex, ev.Netdev)
	}
	if ev.Error != "" {
		sum += " (" + ev.Error + ")"
	}
	return encodeAny(&ev, sum)
}
