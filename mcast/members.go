package mcast

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// IGMPPath is where the kernel lists the host's IPv4 multicast memberships,
// per interface, for the reading process's network namespace.
const IGMPPath = "/proc/net/igmp"

// Members returns the groups joined on interface ifname (DefaultInterface
// if empty) by any socket of this network namespace, read from IGMPPath,
// each with how many memberships it has (the Users column: one per socket
// joined). A Sender uses it to skip work for groups nobody listens to, and
// to greet those who just joined.
//
// The file is read with plain system calls: an os.File would be added to
// the runtime's poller and taken out again, waking its thread, at every
// look (ten a second in a bridge), on the CPUs that events wait for.
func Members(ifname string) (map[netip.Addr]int, error) {
	fd, err := unix.Open(IGMPPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mcast: memberships: %w", &os.PathError{Op: "open", Path: IGMPPath, Err: err})
	}
	defer unix.Close(fd)
	return ParseIGMP(fdReader(fd), ifname)
}

// fdReader reads a file descriptor with read(2), outside the runtime's
// poller.
type fdReader int

func (fd fdReader) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(int(fd), b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, &os.PathError{Op: "read", Path: IGMPPath, Err: err}
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
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
	if ifname == "" {
		ifname = DefaultInterface
	}
	groups := map[netip.Addr]int{}
	sc := bufio.NewScanner(r)
	mine := false
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if line == 1 || strings.TrimSpace(text) == "" {
			continue // the column titles
		}
		fields := strings.Fields(text)
		if !strings.HasPrefix(text, "\t") {
			// An interface: "1 lo : 1 V3" or "1 lo: 1 V3".
			if len(fields) < 2 {
				return nil, fmt.Errorf("mcast: %s line %d: cannot parse %q", IGMPPath, line, text)
			}
			mine = strings.TrimSuffix(fields[1], ":") == ifname
			continue
		}
		if !mine {
			continue
		}
		v, err := strconv.ParseUint(fields[0], 16, 32)
		if err != nil || len(fields[0]) != 8 {
			return nil, fmt.Errorf("mcast: %s line %d: bad group %q", IGMPPath, line, fields[0])
		}
		if len(fields) < 2 {
			return nil, fmt.Errorf("mcast: %s line %d: no users for group %q", IGMPPath, line, fields[0])
		}
		users, err := strconv.Atoi(fields[1])
		if err != nil || users < 0 {
			return nil, fmt.Errorf("mcast: %s line %d: bad users %q", IGMPPath, line, fields[1])
		}
		var a [4]byte
		binary.NativeEndian.PutUint32(a[:], uint32(v))
		groups[netip.AddrFrom4(a)] = users
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mcast: %s: %w", IGMPPath, err)
	}
	return groups, nil
}
