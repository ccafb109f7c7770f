package streams

import (
	"fmt"
	"net/netip"
	"strings"
)

// Encoding is how a stream's events are written into datagrams.
type Encoding uint8

const (
	// Raw frames: the binary header, then the netlink message byte for byte.
	Raw Encoding = 0
	// JSON frames: one JSON object on one line per datagram.
	JSON Encoding = 1
)

func (e Encoding) String() string {
	if e == JSON {
		return "json"
	}
	return "raw"
}

// ParseEncoding parses "raw" or "json".
func ParseEncoding(s string) (Encoding, error) {
	switch strings.ToLower(s) {
	case "raw":
		return Raw, nil
	case "json":
		return JSON, nil
	}
	return 0, fmt.Errorf("unknown encoding %q: use raw or json", s)
}

// Defaults of the address map.
var (
	DefaultBase = netip.AddrFrom4([4]byte{239, 255, 78, 0})
	DefaultPort = uint16(17800)
)

// A Map assigns every stream and encoding its own group and port:
//
//	group = Base + 256*encoding + ID  (Base is a /24, x.y.z.0: raw groups
//	                                   are x.y.z.ID, JSON groups x.y.z+1.ID)
//	port  = Port + 2*ID + encoding    (raw 0, json 1)
//
// A group per encoding lets the bridge see from the host's memberships
// (/proc/net/igmp) which encodings someone wants, and skip encoding JSON
// nobody has joined. Distinct ports keep naive receivers, bound to
// INADDR_ANY, from seeing another stream's datagrams. The zero Map means
// DefaultBase and DefaultPort.
type Map struct {
	Base netip.Addr // zero: DefaultBase
	Port uint16     // zero: DefaultPort
}

// MaxID is the largest stream ID a Map must be able to address.
const MaxID = 255

// withDefaults fills zero fields.
func (m Map) withDefaults() Map {
	if !m.Base.IsValid() {
		m.Base = DefaultBase
	}
	if m.Port == 0 {
		m.Port = DefaultPort
	}
	return m
}

// Validate checks that every stream gets a usable address: Base must be an
// IPv4 multicast /24 outside the link-local control block 224.0.0.0/24, the
// /24 after it (JSON groups) must be multicast too, and every port must fit
// in 16 bits.
func (m Map) Validate() error {
	m = m.withDefaults()
	b := m.Base
	switch {
	case !b.Is4():
		return fmt.Errorf("base %s: must be an IPv4 multicast address such as %s", b, DefaultBase)
	case !b.IsMulticast():
		return fmt.Errorf("base %s: not a multicast address; use one in 239.0.0.0/8 such as %s", b, DefaultBase)
	case b.As4()[3] != 0:
		return fmt.Errorf("base %s: must end in .0 (streams take the whole /24 after it)", b)
	case b.As4()[2] == 255:
		return fmt.Errorf("base %s: JSON groups take the next /24, which would leave %d.%d.0.0/16; use a third byte below 255", b, b.As4()[0], b.As4()[1])
	case b.As4()[0] == 224 && b.As4()[1] == 0 && b.As4()[2] == 0:
		return fmt.Errorf("base %s: 224.0.0.0/24 is reserved for link-local protocols; use 239.0.0.0/8", b)
	case int(m.Port)+2*MaxID+1 > 65535:
		return fmt.Errorf("port %d: too high, streams need ports up to port+%d; use at most %d", m.Port, 2*MaxID+1, 65535-2*MaxID-1)
	case m.Port < 1024:
		return fmt.Errorf("port %d: must be 1024 or above, so unprivileged receivers can bind it", m.Port)
	}
	return nil
}

// Addr returns the group address and port of a stream in an encoding.
func (m Map) Addr(s Stream, e Encoding) netip.AddrPort {
	m = m.withDefaults()
	a := m.Base.As4()
	a[2] += byte(e)
	a[3] = s.ID
	return netip.AddrPortFrom(netip.AddrFrom4(a), m.Port+2*uint16(s.ID)+uint16(e))
}

// Control returns the address a bridge listens on for resync requests:
// Base+0 (ID 0 is no stream) and Port.
func (m Map) Control() netip.AddrPort {
	m = m.withDefaults()
	return netip.AddrPortFrom(m.Base, m.Port)
}

// Stream returns the catalog stream and encoding that own an address.
// Generic netlink groups outside the catalog are not found: use Index and
// compare with the streams you know.
func (m Map) Stream(ap netip.AddrPort) (Stream, Encoding, bool) {
	id, e, ok := m.Index(ap)
	if !ok {
		return Stream{}, 0, false
	}
	s, ok := ByID(id)
	return s, e, ok
}

// Index returns the stream ID and encoding that own an address: the
// inverse of Addr for any ID.
func (m Map) Index(ap netip.AddrPort) (uint8, Encoding, bool) {
	m = m.withDefaults()
	a := ap.Addr().Unmap()
	if !a.Is4() {
		return 0, 0, false
	}
	a4, b4 := a.As4(), m.Base.As4()
	if a4[0] != b4[0] || a4[1] != b4[1] || (a4[2] != b4[2] && a4[2] != b4[2]+1) || a4[3] == 0 {
		return 0, 0, false
	}
	id, e := a4[3], Encoding(a4[2]-b4[2])
	if ap.Port() != m.Port+2*uint16(id)+uint16(e) {
		return 0, 0, false
	}
	return id, e, true
}
