package mcast

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// IGMPPath is where the kernel lists the IPv4 multicast memberships of
// the calling thread's network namespace, per interface: /proc/net/igmp
// of the thread itself (/proc/net is the main thread's), so that a
// thread locked into another namespace, as a Sender may be made on,
// reads that namespace's.
const IGMPPath = "/proc/thread-self/net/igmp"

// Members returns the groups joined on interface ifname (DefaultInterface
// if empty) by any socket of the calling thread's network namespace, read
// from IGMPPath, each with how many memberships it has (the Users column:
// one per socket joined). A sender uses it to skip work for groups nobody
// listens to, and to greet those who just joined (netlinkbridge does). A
// watch that looks again and again keeps a MembersFile open instead.
func Members(ifname string) (map[netip.Addr]int, error) {
	f, err := OpenMembers()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Read(ifname)
}

// A MembersFile is IGMPPath of one network namespace, kept open for a
// watch that reads it again and again (a bridge, ten times a second): each
// Read is pread(2) from the file's start (the kernel hands it out a page
// at a time), with no open or close, and once its buffer has grown to the
// file's size, allocates nothing.
//
// The file is read with plain system calls: an os.File would be added to
// the runtime's poller, waking its thread, on the CPUs that events wait
// for.
type MembersFile struct {
	fd     int
	buf    []byte
	groups map[netip.Addr]int
}

// OpenMembers opens IGMPPath for the calling thread's network namespace.
func OpenMembers() (*MembersFile, error) {
	fd, err := unix.Open(IGMPPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mcast: memberships: %w", &os.PathError{Op: "open", Path: IGMPPath, Err: err})
	}
	return &MembersFile{fd: fd, buf: make([]byte, 4096), groups: map[netip.Addr]int{}}, nil
}

// Read returns the groups joined on ifname (DefaultInterface if empty) and
// their users, as Members does, in the namespace f was opened in. The map
// is f's: it is valid until the next Read. A MembersFile is for one
// goroutine at a time.
func (f *MembersFile) Read(ifname string) (map[netip.Addr]int, error) {
	n := 0
	for {
		if n == len(f.buf) {
			f.buf = append(f.buf, make([]byte, len(f.buf))...)
		}
		m, err := unix.Pread(f.fd, f.buf[n:], int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("mcast: memberships: %w", &os.PathError{Op: "read", Path: IGMPPath, Err: err})
		}
		if m == 0 {
			break
		}
		n += m
	}
	clear(f.groups)
	if err := parseIGMP(f.buf[:n], ifname, f.groups); err != nil {
		return nil, err
	}
	return f.groups, nil
}

// Close closes the file. A second Close does nothing.
func (f *MembersFile) Close() error {
	if f.fd < 0 {
		return nil
	}
	fd := f.fd
	f.fd = -1
	return unix.Close(fd)
}

// ParseIGMP parses the format of /proc/net/igmp and returns the groups
// joined on ifname (DefaultInterface if empty). An interface line is
//
//	Idx<TAB>Device    : Count Querier
//
// and each group line under it starts with a tab, the group as eight hex
// digits (the address's four bytes read as one host-order integer), and
// its users, in decimal.
func ParseIGMP(r io.Reader, ifname string) (map[netip.Addr]int, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("mcast: %s: %w", IGMPPath, err)
	}
	groups := map[netip.Addr]int{}
	if err := parseIGMP(b, ifname, groups); err != nil {
		return nil, err
	}
	return groups, nil
}

// parseIGMP is ParseIGMP of the whole file, into groups, allocating
// nothing but for an error.
func parseIGMP(b []byte, ifname string, groups map[netip.Addr]int) error {
	if ifname == "" {
		ifname = DefaultInterface
	}
	mine := false
	for line := 1; len(b) > 0; line++ {
		text := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			text, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if line == 1 || len(bytes.TrimSpace(text)) == 0 {
			continue // the column titles
		}
		first, rest := field(text)
		second, _ := field(rest)
		if text[0] != '\t' {
			// An interface: "1 lo : 1 V3" or "1 lo: 1 V3".
			if second == nil {
				return fmt.Errorf("mcast: %s line %d: cannot parse %q", IGMPPath, line, text)
			}
			mine = string(bytes.TrimSuffix(second, []byte(":"))) == ifname
			continue
		}
		if !mine {
			continue
		}
		v, ok := parseHex32(first)
		if !ok {
			return fmt.Errorf("mcast: %s line %d: bad group %q", IGMPPath, line, first)
		}
		if second == nil {
			return fmt.Errorf("mcast: %s line %d: no users for group %q", IGMPPath, line, first)
		}
		users, ok := parseCount(second)
		if !ok {
			return fmt.Errorf("mcast: %s line %d: bad users %q", IGMPPath, line, second)
		}
		var a [4]byte
		binary.NativeEndian.PutUint32(a[:], v)
		groups[netip.AddrFrom4(a)] = users
	}
	return nil
}

// field splits off the first field of b, at ASCII white space (the file
// has spaces and tabs): nil when there is none.
func field(b []byte) (f, rest []byte) {
	b = bytes.TrimLeft(b, " \t\r\v\f")
	if len(b) == 0 {
		return nil, nil
	}
	i := bytes.IndexAny(b, " \t\r\v\f")
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i:]
}

// parseHex32 parses exactly eight hex digits.
func parseHex32(b []byte) (uint32, bool) {
	if len(b) != 8 {
		return 0, false
	}
	var v uint32
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(c)
	}
	return v, true
}

// parseCount parses a decimal count, as the Users column has it.
func parseCount(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
