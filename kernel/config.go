package kernel

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// maxLinks is the number of netlink families (MAX_LINKS).
const maxLinks = 32

// A ConfigError reports a Config field that breaks a rule. Find it with
// errors.As.
type ConfigError struct {
	Field  string // the field's name, such as "Batch"
	Value  any    // the value refused
	Reason string // what is wrong, such as "must not be negative"
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("kernel: Config.%s %v: %s", e.Field, e.Value, e.Reason)
}

// Validate reports the first rule c breaks, as a *ConfigError. A nil c is
// valid. Open calls it first.
func (c *Config) Validate() error {
	if c == nil {
		return nil
	}
	bad := func(field string, v any, reason string) error {
		return &ConfigError{Field: field, Value: v, Reason: reason}
	}
	switch {
	case c.Family < 0 || c.Family >= maxLinks:
		return bad("Family", c.Family, fmt.Sprintf("must be a netlink family, 0 to %d", maxLinks-1))
	case c.NetNS < 0:
		return bad("NetNS", c.NetNS, "must be a file descriptor, or 0 for the calling thread's namespace")
	case c.ReadBuffer < 0:
		return bad("ReadBuffer", c.ReadBuffer, "must not be negative")
	case c.Batch < 0:
		return bad("Batch", c.Batch, "must not be negative")
	case c.AllNSID && c.Family != 0 && c.Family != unix.NETLINK_ROUTE:
		return bad("AllNSID", c.AllNSID, "applies to NETLINK_ROUTE only")
	}
	for _, g := range c.Groups {
		if g == 0 {
			return bad("Groups", g, "group numbers start at 1")
		}
	}
	return nil
}
