package privdrop

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Status is what /proc/PID/status (or /proc/PID/task/TID/status) says of
// a thread's privileges.
type Status struct {
	// UID and GID hold when the real, effective, saved and file-system
	// ids all equal them; otherwise they are -1.
	UID, GID   int
	Effective  Caps // CapEff
	Permitted  Caps // CapPrm
	Inherit    Caps // CapInh
	Ambient    Caps // CapAmb
	NoNewPrivs bool
	// Groups are the supplementary groups.
	Groups []int
}

// ReadStatus reads a status file of /proc.
func ReadStatus(path string) (Status, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Status{}, err
	}
	st, err := ParseStatus(data)
	if err != nil {
		return Status{}, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// ParseStatus parses the text of a /proc status file.
func ParseStatus(data []byte) (Status, error) {
	st := Status{UID: -1, GID: -1}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		var err error
		switch key {
		case "Uid":
			st.UID, err = sameID(fields)
		case "Gid":
			st.GID, err = sameID(fields)
		case "CapEff":
			st.Effective, err = parseCaps(fields)
		case "CapPrm":
			st.Permitted, err = parseCaps(fields)
		case "CapInh":
			st.Inherit, err = parseCaps(fields)
		case "CapAmb":
			st.Ambient, err = parseCaps(fields)
		case "NoNewPrivs":
			var n int
			if len(fields) == 1 {
				n, err = strconv.Atoi(fields[0])
			}
			st.NoNewPrivs = n == 1
		case "Groups":
			for _, f := range fields {
				g, gerr := strconv.Atoi(f)
				if gerr != nil {
					err = gerr
				}
				st.Groups = append(st.Groups, g)
			}
		default:
			continue
		}
		if err != nil {
			return Status{}, fmt.Errorf("%s: %q: %w", key, val, err)
		}
		seen++
	}
	if seen < 8 {
		return Status{}, fmt.Errorf("not a /proc status file (%d of 8 privilege lines)", seen)
	}
	return st, nil
}

// sameID returns the id when all four (real, effective, saved, fs) agree,
// else -1.
func sameID(fields []string) (int, error) {
	if len(fields) != 4 {
		return 0, fmt.Errorf("want 4 ids")
	}
	id := -1
	for i, f := range fields {
		n, err := strconv.Atoi(f)
		if err != nil {
			return 0, err
		}
		if i == 0 {
			id = n
		} else if n != id {
			return -1, nil
		}
	}
	return id, nil
}

func parseCaps(fields []string) (Caps, error) {
	if len(fields) != 1 {
		return 0, fmt.Errorf("want one hexadecimal mask")
	}
	n, err := strconv.ParseUint(fields[0], 16, 64)
	return Caps(n), err
}

// Diff describes how s differs from want in user, group, effective and
// permitted capabilities and no_new_privs (not in groups, inheritable or
// ambient capabilities unless want sets them); "" when it does not.
func (s Status) Diff(want Status) string {
	var d []string
	if s.UID != want.UID {
		d = append(d, fmt.Sprintf("uid %d, want %d", s.UID, want.UID))
	}
	if s.GID != want.GID {
		d = append(d, fmt.Sprintf("gid %d, want %d", s.GID, want.GID))
	}
	if s.Effective != want.Effective {
		d = append(d, fmt.Sprintf("effective capabilities %v, want %v", s.Effective, want.Effective))
	}
	if s.Permitted != want.Permitted {
		d = append(d, fmt.Sprintf("permitted capabilities %v, want %v", s.Permitted, want.Permitted))
	}
	if s.Inherit&^want.Inherit != 0 || s.Ambient&^want.Ambient != 0 {
		d = append(d, fmt.Sprintf("inheritable %v and ambient %v capabilities, want %v and %v", s.Inherit, s.Ambient, want.Inherit, want.Ambient))
	}
	if s.NoNewPrivs != want.NoNewPrivs {
		d = append(d, fmt.Sprintf("no_new_privs %v, want %v", s.NoNewPrivs, want.NoNewPrivs))
	}
	return strings.Join(d, "; ")
}
