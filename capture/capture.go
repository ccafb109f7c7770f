package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Link types of the interfaces of a capture.
const (
	// LinkTypeNetlink is LINKTYPE_NETLINK: a cooked header, then a netlink
	// message (an nlmon capture's).
	LinkTypeNetlink = 253
	// LinkTypeUser0 is LINKTYPE_USER0, the interface of packets with no
	// netlink message (Writer.WriteNote).
	LinkTypeUser0 = 147
	// CookedLen is the length of the cooked header before each netlink
	// message.
	CookedLen = 16
	// ARPHRDNetlink is the hardware type of the cooked header, as nlmon
	// has it.
	ARPHRDNetlink = 824
	// PacketOutgoing is the packet type of the cooked header of every
	// message a Writer writes: the kernel sent it (tcpdump shows "Out").
	PacketOutgoing = 4
)

// MaxBlock is the largest block a Reader accepts, in bytes: larger ones
// are taken for a damaged file. A netlink message is at most 1 MiB and a
// bit in practice.
const MaxBlock = 16 << 20

// pcapng block types and magic numbers.
const (
	blockSHB      = 0x0A0D0D0A
	blockIDB      = 1
	blockSPB      = 3
	blockEPB      = 6
	byteOrderMagc = 0x1A2B3C4D

	optEnd     = 0
	optComment = 1
	optIfName  = 2
	optTSResol = 9
	optShbApp  = 4
)

// ErrTruncated is wrapped by the error a Reader returns when the file ends
// inside a block: the file was cut short (a recorder killed, a disk full),
// and every whole block before was returned.
var ErrTruncated = errors.New("capture: file cut short inside a block (the recorder was killed?): every whole packet before it was read")

// A FormatError reports a file that is not a capture this package reads,
// or is damaged: Offset is where, in bytes from the start.
type FormatError struct {
	Offset int64
	Reason string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("capture: at byte %d: %s", e.Offset, e.Reason)
}

// A Packet is one packet of a capture.
type Packet struct {
	// Time is when the packet was captured, in nanoseconds since the Unix
	// epoch.
	Time int64
	// LinkType is its interface's link type: LinkTypeNetlink for a netlink
	// message, LinkTypeUser0 for a note, or any other a foreign file has.
	LinkType uint16
	// Interface is its interface's name (pcapng if_name), empty if none.
	Interface string
	// Family is the netlink family of the cooked header (LinkTypeNetlink
	// only; zero otherwise, which is also NETLINK_ROUTE's number).
	Family uint16
	// PktType is the cooked header's packet type (LinkTypeNetlink only).
	PktType uint16
	// Data is the netlink message (after the cooked header), or the whole
	// packet for other link types. It is valid until the next Next.
	Data []byte
	// Comment is the packet's comment (the first opt_comment), empty if
	// none.
	Comment string
	// Truncated reports that the capture kept less than the packet's
	// length (a snap length): Data is not the whole message.
	Truncated bool
}

// A Writer writes a pcapng capture. Its methods may not be called
// concurrently. The zero Writer is not usable: make one with NewWriter.
type Writer struct {
	w       io.Writer
	ifaces  map[uint16]uint32 // netlink family -> interface id
	note    int64             // the notes' interface id; -1: none yet
	next    uint32            // the next interface id
	buf     []byte
	written int64
}

// NewWriter writes a section header block to w and returns a Writer that
// writes blocks to it, each with one Write call. app names the writing
// program (shb_userappl); empty: none.
func NewWriter(w io.Writer, app string) (*Writer, error) {
	cw := &Writer{w: w, ifaces: map[uint16]uint32{}, note: -1}
	b := cw.begin(blockSHB)
	b = binary.LittleEndian.AppendUint32(b, byteOrderMagc)
	b = binary.LittleEndian.AppendUint16(b, 1) // major
	b = binary.LittleEndian.AppendUint16(b, 0) // minor
	b = binary.LittleEndian.AppendUint64(b, math.MaxUint64)
	if app != "" {
		b = appendOpt(b, optShbApp, []byte(app))
	}
	b = appendOpt(b, optEnd, nil)
	return cw, cw.end(b)
}

// Written returns how many bytes the Writer has written.
func (cw *Writer) Written() int64 { return cw.written }

func (cw *Writer) begin(typ uint32) []byte {
	b := binary.LittleEndian.AppendUint32(cw.buf[:0], typ)
	return binary.LittleEndian.AppendUint32(b, 0) // length, set by end
}

func (cw *Writer) end(b []byte) error {
	n := len(b) + 4
	binary.LittleEndian.PutUint32(b[4:], uint32(n))
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	cw.buf = b
	k, err := cw.w.Write(b)
	cw.written += int64(k)
	return err
}

func appendOpt(b []byte, code uint16, v []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, code)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	return appendPad(b, len(v))
}

func appendPad(b []byte, n int) []byte {
	for ; n%4 != 0; n++ {
		b = append(b, 0)
	}
	return b
}

func (cw *Writer) iface(link uint16, name string) (uint32, error) {
	id := cw.next
	b := cw.begin(blockIDB)
	b = binary.LittleEndian.AppendUint16(b, link)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 0) // snap length: none
	b = appendOpt(b, optIfName, []byte(name))
	b = appendOpt(b, optTSResol, []byte{9}) // nanoseconds
	b = appendOpt(b, optEnd, nil)
	if err := cw.end(b); err != nil {
		return 0, err
	}
	cw.next++
	return id, nil
}

// familyNames names the interface of each netlink family.
var familyNames = map[uint16]string{0: "nlmon-route", 11: "nlmon-connector", 12: "nlmon-netfilter",
	15: "nlmon-kobject-uevent", 16: "nlmon-generic"}

// WriteMessage writes one netlink message of the given family, captured
// at t (nanoseconds since the Unix epoch), with a comment (empty: none).
// The first message of a family adds its interface block.
func (cw *Writer) WriteMessage(family uint16, t int64, msg []byte, comment string) error {
	id, ok := cw.ifaces[family]
	if !ok {
		name := familyNames[family]
		if name == "" {
			name = fmt.Sprintf("nlmon-family-%d", family)
		}
		var err error
		if id, err = cw.iface(LinkTypeNetlink, name); err != nil {
			return err
		}
		cw.ifaces[family] = id
	}
	var cooked [CookedLen]byte
	binary.BigEndian.PutUint16(cooked[0:], PacketOutgoing)
	binary.BigEndian.PutUint16(cooked[2:], ARPHRDNetlink)
	binary.BigEndian.PutUint16(cooked[14:], family)
	return cw.packet(id, t, cooked[:], msg, comment)
}

// WriteNote writes a packet with no data and a comment, captured at t, on
// an interface of link type LinkTypeUser0 named "nlmcast-notes".
func (cw *Writer) WriteNote(t int64, comment string) error {
	if cw.note < 0 {
		id, err := cw.iface(LinkTypeUser0, "nlmcast-notes")
		if err != nil {
			return err
		}
		cw.note = int64(id)
	}
	return cw.packet(uint32(cw.note), t, nil, nil, comment)
}

func (cw *Writer) packet(id uint32, t int64, head, data []byte, comment string) error {
	n := len(head) + len(data)
	if n+len(comment)+64 > MaxBlock {
		return fmt.Errorf("capture: a packet of %d bytes is larger than a block may be (%d)", n, MaxBlock)
	}
	if len(comment) > math.MaxUint16 {
		comment = comment[:math.MaxUint16]
	}
	b := cw.begin(blockEPB)
	b = binary.LittleEndian.AppendUint32(b, id)
	ts := uint64(t)
	b = binary.LittleEndian.AppendUint32(b, uint32(ts>>32))
	b = binary.LittleEndian.AppendUint32(b, uint32(ts))
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = append(b, head...)
	b = append(b, data...)
	b = appendPad(b, n)
	if comment != "" {
		b = appendOpt(b, optComment, []byte(comment))
		b = appendOpt(b, optEnd, nil)
	}
	return cw.end(b)
}

// A Reader reads packets from a pcapng or pcap capture. Make one with
// NewReader.
type Reader struct {
	r      *bufio.Reader
	off    int64
	pcap   bool             // the old pcap format
	order  binary.ByteOrder // of the current section (or pcap file)
	ifaces []ifaceInfo
	buf    []byte
	// pcap only: the file's link type and time resolution
	pcapLink uint16
	pcapNano bool
}

type ifaceInfo struct {
	link   uint16
	name   string
	tsDiv  uint64 // units per second when a power of ten
	tsPow2 int    // when a power of two: units per second = 2^tsPow2; -1: not
}

// NewReader reads the file header of a pcapng or pcap capture from r.
func NewReader(r io.Reader) (*Reader, error) {
	cr := &Reader{r: bufio.NewReaderSize(r, 64<<10)}
	head, err := cr.r.Peek(4)
	if err != nil {
		if len(head) == 0 {
			return nil, &FormatError{0, "the file is empty: not a capture"}
		}
		return nil, ErrTruncated
	}
	le := binary.LittleEndian.Uint32(head)
	switch le {
	case blockSHB:
		return cr, nil
	case 0xa1b2c3d4, 0xa1b23c4d:
		cr.order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		cr.order = binary.BigEndian
	default:
		return nil, &FormatError{0, fmt.Sprintf("magic %08x: not a pcapng or pcap file", le)}
	}
	cr.pcap = true
	cr.pcapNano = le == 0xa1b23c4d || le == 0x4d3cb2a1
	var h [24]byte
	if _, err := io.ReadFull(cr.r, h[:]); err != nil {
		return nil, ErrTruncated
	}
	cr.off = 24
	cr.pcapLink = uint16(cr.order.Uint32(h[20:]))
	return cr, nil
}

// Next returns the next packet. It returns io.EOF at the end of the file,
// an error wrapping ErrTruncated when the file ends inside a block, and a
// *FormatError for a damaged one; after an error, Next returns it again.
// Blocks other than packets (and interface and section blocks, which it
// reads) are skipped.
func (cr *Reader) Next() (Packet, error) {
	if cr.pcap {
		return cr.nextPcap()
	}
	for {
		p, ok, err := cr.block()
		if err != nil || ok {
			return p, err
		}
	}
}

func (cr *Reader) readFull(b []byte) error {
	n, err := io.ReadFull(cr.r, b)
	cr.off += int64(n)
	switch {
	case err == io.EOF:
		return io.EOF
	case err == io.ErrUnexpectedEOF:
		return ErrTruncated
	}
	return err
}

func (cr *Reader) nextPcap() (Packet, error) {
	var h [16]byte
	start := cr.off
	if err := cr.readFull(h[:]); err != nil {
		return Packet{}, err
	}
	incl, orig := cr.order.Uint32(h[8:]), cr.order.Uint32(h[12:])
	if incl > MaxBlock {
		return Packet{}, &FormatError{start, fmt.Sprintf("a packet of %d bytes: larger than %d, the file is damaged", incl, MaxBlock)}
	}
	data, err := cr.grow(int(incl))
	if err != nil {
		return Packet{}, err
	}
	if err := cr.readFull(data); err != nil {
		if err == io.EOF {
			err = ErrTruncated
		}
		return Packet{}, err
	}
	sec, frac := int64(cr.order.Uint32(h[0:])), int64(cr.order.Uint32(h[4:]))
	if !cr.pcapNano {
		frac *= 1000
	}
	p := Packet{Time: sec*1e9 + frac, LinkType: cr.pcapLink, Truncated: orig > incl}
	return cookPacket(p, data), nil
}

func (cr *Reader) grow(n int) ([]byte, error) {
	if cap(cr.buf) < n {
		cr.buf = make([]byte, n)
	}
	return cr.buf[:n], nil
}

// cookPacket splits a netlink packet's cooked header from its message.
func cookPacket(p Packet, data []byte) Packet {
	p.Data = data
	if p.LinkType == LinkTypeNetlink && len(data) >= CookedLen {
		p.PktType = binary.BigEndian.Uint16(data[0:])
		p.Family = binary.BigEndian.Uint16(data[14:])
		p.Data = data[CookedLen:]
	}
	return p
}

// block reads one block; ok reports a packet.
func (cr *Reader) block() (p Packet, ok bool, err error) {
	start := cr.off
	var h [8]byte
	if err := cr.readFull(h[:]); err != nil {
		return p, false, err
	}
	typ := binary.LittleEndian.Uint32(h[:])
	if typ == blockSHB {
		// The byte order comes with the section: peek at its magic.
		var m [4]byte
		if err := cr.readFull(m[:]); err != nil {
			if err == io.EOF {
				err = ErrTruncated
			}
			return p, false, err
		}
		switch binary.LittleEndian.Uint32(m[:]) {
		case byteOrderMagc:
			cr.order = binary.LittleEndian
		case 0x4D3C2B1A:
			cr.order = binary.BigEndian
		default:
			return p, false, &FormatError{start, "section header with a bad byte-order magic: not a pcapng file"}
		}
		cr.ifaces = cr.ifaces[:0]
		n := cr.order.Uint32(h[4:])
		if n < 28 || n%4 != 0 || n > MaxBlock {
			return p, false, &FormatError{start, fmt.Sprintf("section header of length %d: the file is damaged", n)}
		}
		body, err := cr.body(int(n) - 12)
		if err != nil {
			return p, false, err
		}
		if cr.order.Uint32(body[len(body)-4:]) != n {
			return p, false, &FormatError{start, "section header lengths differ: the file is damaged"}
		}
		return p, false, nil
	}
	if cr.order == nil {
		return p, false, &FormatError{start, "no section header block first: not a pcapng file"}
	}
	typ = cr.order.Uint32(h[:])
	n := cr.order.Uint32(h[4:])
	if n < 12 || n%4 != 0 || n > MaxBlock {
		return p, false, &FormatError{start, fmt.Sprintf("block of length %d: the file is damaged", n)}
	}
	body, err := cr.body(int(n) - 8)
	if err != nil {
		return p, false, err
	}
	if cr.order.Uint32(body[len(body)-4:]) != n {
		return p, false, &FormatError{start, "a block's two lengths differ: the file is damaged"}
	}
	body = body[:len(body)-4]
	bad := func(why string) (Packet, bool, error) {
		return Packet{}, false, &FormatError{start, why + ": the file is damaged"}
	}
	switch typ {
	case blockIDB:
		if len(body) < 8 {
			return bad("interface block too short")
		}
		in := ifaceInfo{link: cr.order.Uint16(body), tsDiv: 1e6, tsPow2: -1}
		for code, v := range cr.options(body[8:]) {
			switch code {
			case optIfName:
				in.name = string(v)
			case optTSResol:
				if len(v) < 1 {
					continue
				}
				r := v[0]
				switch {
				case r&0x80 != 0 && r&0x7f <= 63:
					in.tsPow2 = int(r & 0x7f)
				case r <= 19:
					in.tsDiv = 1
					for range r {
						in.tsDiv *= 10
					}
				default:
					return bad(fmt.Sprintf("interface timestamp resolution %#x", r))
				}
			}
		}
		cr.ifaces = append(cr.ifaces, in)
	case blockEPB:
		if len(body) < 20 {
			return bad("packet block too short")
		}
		id := cr.order.Uint32(body)
		if int(id) >= len(cr.ifaces) || id > math.MaxInt32 {
			return bad(fmt.Sprintf("packet of interface %d, which has no interface block", id))
		}
		in := cr.ifaces[id]
		ts := uint64(cr.order.Uint32(body[4:]))<<32 | uint64(cr.order.Uint32(body[8:]))
		incl, orig := cr.order.Uint32(body[12:]), cr.order.Uint32(body[16:])
		padded := (uint64(incl) + 3) &^ 3
		if padded > uint64(len(body)-20) {
			return bad(fmt.Sprintf("packet of %d bytes in a block of %d", incl, n))
		}
		data := body[20 : 20+incl]
		p = Packet{Time: in.nanos(ts), LinkType: in.link, Interface: in.name, Truncated: orig > incl}
		for code, v := range cr.options(body[20+padded:]) {
			if code == optComment {
				p.Comment = string(v)
				break
			}
		}
		return cookPacket(p, data), true, nil
	case blockSPB:
		if len(body) < 4 || len(cr.ifaces) == 0 {
			return bad("simple packet block without an interface")
		}
		in := cr.ifaces[0]
		orig := cr.order.Uint32(body)
		data := body[4:]
		if uint64(orig) < uint64(len(data)) {
			data = data[:orig]
		}
		p = Packet{LinkType: in.link, Interface: in.name, Truncated: uint64(orig) > uint64(len(data))}
		return cookPacket(p, data), true, nil
	}
	return p, false, nil
}

// body reads the rest of a block of n more bytes into the buffer.
func (cr *Reader) body(n int) ([]byte, error) {
	b, _ := cr.grow(n)
	if err := cr.readFull(b); err != nil {
		if err == io.EOF {
			err = ErrTruncated
		}
		return nil, err
	}
	return b, nil
}

// options yields the options of a block's option area, stopping at the end
// option or where they no longer fit.
func (cr *Reader) options(b []byte) func(func(uint16, []byte) bool) {
	return func(yield func(uint16, []byte) bool) {
		for len(b) >= 4 {
			code, n := cr.order.Uint16(b), int(cr.order.Uint16(b[2:]))
			if code == optEnd || 4+n > len(b) {
				return
			}
			if !yield(code, b[4:4+n]) {
				return
			}
			b = b[min(len(b), 4+(n+3)&^3):]
		}
	}
}

// nanos converts a timestamp in the interface's units to nanoseconds.
func (in ifaceInfo) nanos(ts uint64) int64 {
	if in.tsPow2 >= 0 {
		per := uint64(1) << in.tsPow2
		sec, frac := ts/per, ts%per
		return int64(sec)*1e9 + int64(float64(frac)*1e9/float64(per))
	}
	sec, frac := ts/in.tsDiv, ts%in.tsDiv
	ns := int64(sec) * 1e9
	switch {
	case in.tsDiv <= 1e9:
		ns += int64(frac * (1e9 / in.tsDiv))
	default:
		ns += int64(frac / (in.tsDiv / 1e9))
	}
	return ns
}
