package recording

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nlmcast/nlmcast/capture"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/streams"
)

// An Item is one thing of a recording to replay: a kernel message of a
// stream, or an overrun of a netlink family.
type Item struct {
	Stream  streams.Stream
	Time    int64       // when the bridge (or capture) read it, ns since the Unix epoch
	Data    []byte      // the netlink message; nil for an overrun
	Overrun bool        // the family's bridge reported an overrun here
	Flags   frame.Flags // FlagNSID when NSID is valid
	NSID    int32

	restart bool // an injected restart: the source fails
}

// Skipped counts what reading a recording left out, by reason.
type Skipped struct {
	NotNetlink  uint64 // packets of other link types
	NoStream    uint64 // messages of no known stream (a request, a dump reply, a family or group without one)
	Cut         uint64 // messages the capture kept only part of (a snap length)
	Notes       uint64 // control frames and notices (other than overruns), which a replay makes afresh
	DumpEntries uint64 // events of state dumps (FlagDump), which the replay's own resyncs make
}

// Read calls fn with every item of the files, in order. It returns nil at
// the end of the last file, and an error wrapping capture.ErrTruncated for
// a file cut short, after every whole block of it; fn's error stops it.
func Read(files []string, skipped *Skipped, fn func(*Item) error) error {
	for _, name := range files {
		if err := readFile(name, skipped, fn); err != nil {
			return err
		}
	}
	return nil
}

func readFile(name string, skipped *Skipped, fn func(*Item) error) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	defer f.Close()
	r, err := capture.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var lastOverrun struct {
		family uint16
		time   int64
		ok     bool
	}
	n := 0
	for {
		p, err := r.Next()
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, capture.ErrTruncated):
			return &TruncatedError{File: name, Packets: n, Err: err}
		case err != nil:
			return fmt.Errorf("%s: %w", name, err)
		}
		n++
		m, hasMeta := ParseMeta(p.Comment)
		if p.LinkType != capture.LinkTypeNetlink {
			switch {
			case hasMeta && m.Kind == frame.KindOverrun:
				s, ok := streams.Lookup(m.Stream)
				if !ok {
					skipped.NoStream++
					continue
				}
				// The bridge sends one on every stream of the family:
				// one overrun of the family is replayed.
				if lastOverrun.ok && lastOverrun.family == s.Family && lastOverrun.time == m.Time {
					continue
				}
				lastOverrun.family, lastOverrun.time, lastOverrun.ok = s.Family, m.Time, true
				if err := fn(&Item{Stream: s, Time: m.Time, Overrun: true}); err != nil {
					return err
				}
			case hasMeta || p.LinkType == capture.LinkTypeUser0:
				skipped.Notes++
			default:
				skipped.NotNetlink++
			}
			continue
		}
		if p.Truncated {
			skipped.Cut++
			continue
		}
		if hasMeta && m.Kind == frame.KindEvent {
			s, ok := streams.ByGroup(p.Family, m.Group)
			if !ok {
				if s, ok = streams.Lookup(m.Stream); !ok || s.Family != p.Family {
					skipped.NoStream++
					continue
				}
				if s.Family == streams.FamilyGeneric {
					// The kernel numbers generic netlink groups as
					// families register: the recording says which.
					s.Group = m.Group
				}
			}
			if m.Flags&frame.FlagDump != 0 {
				skipped.DumpEntries++
				continue
			}
			it := Item{Stream: s, Time: p.Time, Data: p.Data, NSID: m.NSID, Flags: m.Flags & frame.FlagNSID}
			if err := fn(&it); err != nil {
				return err
			}
			continue
		}
		// Another program's capture (tcpdump -i nlmon0): one skb may hold
		// several messages, and the group is not recorded.
		if err := splitForeign(p, skipped, fn); err != nil {
			return err
		}
	}
}

// A TruncatedError reports a file cut short: every packet before the cut
// was read.
type TruncatedError struct {
	File    string
	Packets int // whole packets read from it
	Err     error
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("%s is cut short after %d whole packets (its recorder was killed, or the disk filled): every one of them was used; the rest is lost", e.File, e.Packets)
}

func (e *TruncatedError) Unwrap() error { return e.Err }

// splitForeign yields the messages of a packet of another program's
// netlink capture that are multicast notifications of a known stream.
func splitForeign(p capture.Packet, skipped *Skipped, fn func(*Item) error) error {
	if p.Family == streams.FamilyUevent {
		g := uint32(1)
		if len(p.Data) >= 8 && string(p.Data[:8]) == "libudev\x00" {
			g = 2
		}
		s, ok := streams.ByGroup(p.Family, g)
		if !ok {
			skipped.NoStream++
			return nil
		}
		return fn(&Item{Stream: s, Time: p.Time, Data: p.Data})
	}
	b := p.Data
	for len(b) >= 16 {
		n := int(binary.NativeEndian.Uint32(b))
		if n < 16 || n > len(b) {
			break
		}
		msg := b[:n]
		b = b[min(len(b), (n+3)&^3):]
		g, ok := foreignGroup(p.Family, msg)
		if !ok {
			skipped.NoStream++
			continue
		}
		s, ok := streams.ByGroup(p.Family, g)
		if !ok {
			skipped.NoStream++
			continue
		}
		if err := fn(&Item{Stream: s, Time: p.Time, Data: msg}); err != nil {
			return err
		}
	}
	return nil
}

// foreignGroup guesses the multicast group of a notification from its
// type, as the kernel chooses it; requests (NLM_F_REQUEST) and parts of
// dumps (NLM_F_MULTI) are no notifications.
func foreignGroup(family uint16, msg []byte) (uint32, bool) {
	typ, flags := binary.NativeEndian.Uint16(msg[4:]), binary.NativeEndian.Uint16(msg[6:])
	if flags&(0x1|0x2) != 0 { // NLM_F_REQUEST, NLM_F_MULTI
		return 0, false
	}
	var af byte
	if len(msg) > 16 {
		af = msg[16]
	}
	const inet, inet6, mpls = 2, 10, 28
	switch family {
	case streams.FamilyRoute:
		switch typ {
		case 16, 17: // RTM_NEWLINK, RTM_DELLINK
			return 1, true
		case 20, 21: // RTM_NEWADDR, RTM_DELADDR
			return map[byte]uint32{inet: 5, inet6: 9}[af], af == inet || af == inet6
		case 24, 25: // RTM_NEWROUTE, RTM_DELROUTE
			g, ok := map[byte]uint32{inet: 7, inet6: 11, mpls: 27}[af]
			return g, ok
		case 28, 29: // RTM_NEWNEIGH, RTM_DELNEIGH
			return 3, true
		case 32, 33: // RTM_NEWRULE, RTM_DELRULE
			g, ok := map[byte]uint32{inet: 8, inet6: 19}[af]
			return g, ok
		case 52: // RTM_NEWPREFIX
			return 18, true
		case 80, 81: // RTM_NEWNETCONF, RTM_DELNETCONF
			g, ok := map[byte]uint32{inet: 24, inet6: 25, mpls: 29}[af]
			return g, ok
		case 88, 89: // RTM_NEWNSID, RTM_DELNSID
			return 28, true
		case 92: // RTM_NEWSTATS
			return 36, true
		case 104, 105: // RTM_NEWNEXTHOP, RTM_DELNEXTHOP
			return 32, true
		}
	case streams.FamilyNetfilter:
		if typ>>8 != 1 { // NFNL_SUBSYS_CTNETLINK
			return 0, false
		}
		switch typ & 0xff {
		case 0: // IPCTNL_MSG_CT_NEW
			if flags&0x400 != 0 { // NLM_F_CREATE
				return 1, true
			}
			return 2, true
		case 2: // IPCTNL_MSG_CT_DELETE
			return 3, true
		}
	}
	return 0, false
}
