package decode

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
)

// UeventEvent is the JSON object of a hotplug uevent.
type UeventEvent struct {
	Source    string `json:"source"` // "kernel" (group 1) or "udev" (udevd's group 2)
	Action    string `json:"action"` // add, remove, change, move, online, offline, bind, unbind
	Devpath   string `json:"devpath"`
	Subsystem string `json:"subsystem,omitempty"`
	// Seqnum is the kernel's SEQNUM, increasing across all uevents of
	// the host; absent when the message has none.
	Seqnum *uint64 `json:"seqnum,omitempty"`
	// Properties holds every KEY=VALUE pair (a value may contain '=').
	Properties map[string]string `json:"properties"`
	Raw        string            `json:"data_hex,omitempty"`
	Error      string            `json:"decode_error,omitempty"`
}

// libudev's message header: "libudev\0", magic 0xfeedcafe (big-endian),
// then header size, properties offset and length in host order.
const (
	udevPrefix = "libudev\x00"
	udevMagic  = 0xfeedcafe
)

// Uevent decodes one NETLINK_KOBJECT_UEVENT datagram: the kernel's
// "ACTION@DEVPATH" line followed by NUL-separated KEY=VALUE pairs, or
// udevd's libudev header followed by the pairs. It never fails.
func Uevent(msg []byte) Result {
	ev := UeventEvent{Source: "kernel", Properties: map[string]string{}}
	props := msg
	if bytes.HasPrefix(msg, []byte(udevPrefix)) {
		ev.Source = "udev"
		ne := binary.NativeEndian
		if len(msg) < 24 || binary.BigEndian.Uint32(msg[8:]) != udevMagic {
			ev.Error = "libudev message with a bad header"
			ev.Raw = hex.EncodeToString(msg)
			return encodeAny(&ev, "udev: malformed message")
		}
		off, n := int(ne.Uint32(msg[16:])), int(ne.Uint32(msg[20:]))
		if off < 24 || off > len(msg) || n > len(msg)-off {
			ev.Error = "libudev properties outside the message"
			ev.Raw = hex.EncodeToString(msg)
			return encodeAny(&ev, "udev: malformed message")
		}
		props = msg[off : off+n]
	} else if i := bytes.IndexByte(msg, 0); i >= 0 && bytes.IndexByte(msg[:i], '@') >= 0 {
		// The kernel's first line repeats ACTION and DEVPATH.
		props = msg[i+1:]
	}
	for _, kv := range bytes.Split(props, []byte{0}) {
		if len(kv) == 0 {
			continue
		}
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		ev.Properties[k] = v
	}
	ev.Action, ev.Devpath, ev.Subsystem = ev.Properties["ACTION"], ev.Properties["DEVPATH"], ev.Properties["SUBSYSTEM"]
	if ev.Action == "" || ev.Devpath == "" {
		// The header line alone still says what happened.
		if i := bytes.IndexByte(msg, 0); i >= 0 {
			if a, p, ok := strings.Cut(string(msg[:i]), "@"); ok {
				ev.Action, ev.Devpath = a, p
			}
		}
	}
	if s, ok := ev.Properties["SEQNUM"]; ok {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			ev.Seqnum = &n
		}
	}
	summary := ev.Source + " " + ev.Action + " " + ev.Devpath
	if ev.Subsystem != "" {
		summary += " (" + ev.Subsystem + ")"
	}
	if ev.Seqnum != nil {
		summary += " seqnum " + strconv.FormatUint(*ev.Seqnum, 10)
	}
	return encodeAny(&ev, summary)
}
