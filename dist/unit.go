package dist

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Unit is a parsed systemd unit file: each key's values in order (a key
// may repeat). Sections are not told apart.
type Unit map[string][]string

// ParseUnit reads the unit file at path: comments, blank lines and
// section headers are skipped, continuation lines (a trailing backslash)
// joined.
func ParseUnit(path string) (Unit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	u := Unit{}
	sc := bufio.NewScanner(f)
	var cont string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cont != "" {
			line, cont = cont+" "+line, ""
		}
		if l, ok := strings.CutSuffix(line, "\\"); ok {
			cont = l
			continue
		}
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: not KEY=VALUE: %q", path, line)
		}
		k = strings.TrimSpace(k)
		u[k] = append(u[k], strings.TrimSpace(v))
	}
	return u, sc.Err()
}

// Get returns the last value of key ("" when unset).
func (u Unit) Get(key string) string {
	if v := u[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}
