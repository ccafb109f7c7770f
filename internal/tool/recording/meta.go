package recording

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nlmcast/nlmcast/frame"
)

// Meta is what a recording keeps of a frame or a receiver's notice beside
// the netlink message: the comment of its packet (PROTOCOL.md,
// Recordings), one line of space-separated KEY=VALUE words after the word
// "nlmcast".
type Meta struct {
	// Stream is the stream's name; empty: none (a packet of another
	// program's capture).
	Stream string
	// Kind is the frame's kind; zero for a notice.
	Kind frame.Kind
	// Flags, Group, Epoch, Seq, Time and NSID are the frame's header
	// fields (Time: when the bridge read the event, ns since the Unix
	// epoch).
	Flags frame.Flags
	Group uint32
	Epoch uint64
	Seq   uint64
	Time  int64
	NSID  int32
	// Notice is the name of a receiver notice ("gap", "restart", ...: see
	// receiver.NoticeKind); empty for a frame.
	Notice string
	// Count, From and PrevEpoch are the notice's fields.
	Count, From, PrevEpoch uint64
}

// metaPrefix starts every comment nlmcast writes.
const metaPrefix = "nlmcast"

// Comment returns m as a packet comment.
func (m Meta) Comment() string {
	var b strings.Builder
	b.WriteString(metaPrefix)
	if m.Stream != "" {
		fmt.Fprintf(&b, " stream=%s", m.Stream)
	}
	if m.Notice != "" {
		fmt.Fprintf(&b, " notice=%s epoch=%016x count=%d from=%d", m.Notice, m.Epoch, m.Count, m.From)
		if m.PrevEpoch != 0 {
			fmt.Fprintf(&b, " prev-epoch=%016x", m.PrevEpoch)
		}
		return b.String()
	}
	fmt.Fprintf(&b, " kind=%s group=%d epoch=%016x seq=%d time=%d flags=0x%04x", m.Kind, m.Group, m.Epoch, m.Seq, m.Time, uint16(m.Flags))
	if m.Flags&frame.FlagNSID != 0 {
		fmt.Fprintf(&b, " nsid=%d", m.NSID)
	}
	return b.String()
}

// kinds maps a kind's name back to it.
var kinds = map[string]frame.Kind{}

func init() {
	for k := frame.KindEvent; k <= frame.KindRequest; k++ {
		kinds[k.String()] = k
	}
}

// ParseMeta reads a packet comment written by Comment. ok is false for a
// comment nlmcast did not write (none, or another program's), and for one
// whose words do not parse.
func ParseMeta(comment string) (m Meta, ok bool) {
	words := strings.Fields(comment)
	if len(words) == 0 || words[0] != metaPrefix {
		return Meta{}, false
	}
	for _, w := range words[1:] {
		k, v, found := strings.Cut(w, "=")
		if !found {
			return Meta{}, false
		}
		var err error
		switch k {
		case "stream":
			m.Stream = v
		case "notice":
			m.Notice = v
		case "kind":
			var known bool
			if m.Kind, known = kinds[v]; !known {
				return Meta{}, false
			}
		case "group":
			var g uint64
			g, err = strconv.ParseUint(v, 10, 32)
			m.Group = uint32(g)
		case "epoch":
			m.Epoch, err = strconv.ParseUint(v, 16, 64)
		case "prev-epoch":
			m.PrevEpoch, err = strconv.ParseUint(v, 16, 64)
		case "seq":
			m.Seq, err = strconv.ParseUint(v, 10, 64)
		case "count":
			m.Count, err = strconv.ParseUint(v, 10, 64)
		case "from":
			m.From, err = strconv.ParseUint(v, 10, 64)
		case "time":
			m.Time, err = strconv.ParseInt(v, 10, 64)
		case "flags":
			var f uint64
			f, err = strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 16)
			m.Flags = frame.Flags(f)
		case "nsid":
			var n int64
			n, err = strconv.ParseInt(v, 10, 32)
			m.NSID = int32(n)
		default:
			// A word of a later version: ignored.
		}
		if err != nil {
			return Meta{}, false
		}
	}
	if (m.Kind == 0) == (m.Notice == "") {
		return Meta{}, false // a frame or a notice, not both or neither
	}
	return m, true
}
