package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/sys/privdrop"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/netlinkbridge"
)

// account is the user of --user.
type account struct {
	name     string
	uid, gid int
	groups   []int
}

// lookupAccount finds a user by name, or by uid when name is a number.
func lookupAccount(name string) (*account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		return nil, err
	}
	a := &account{name: u.Username}
	if a.uid, err = strconv.Atoi(u.Uid); err != nil {
		return nil, fmt.Errorf("user %s: uid %q", name, u.Uid)
	}
	if a.gid, err = strconv.Atoi(u.Gid); err != nil {
		return nil, fmt.Errorf("user %s: gid %q", name, u.Gid)
	}
	if a.uid == 0 {
		return nil, fmt.Errorf("user %s is root: name an unprivileged user", name)
	}
	ids, err := u.GroupIds()
	if err != nil {
		ids = []string{u.Gid} // no group database: its own group alone
	}
	for _, id := range ids {
		if g, err := strconv.Atoi(id); err == nil && g != a.gid {
			a.groups = append(a.groups, g)
		}
	}
	return a, nil
}

// capabilityHints says which flag turns a need off, by the start of its
// reason.
var capabilityHints = map[string]string{
	"sending from the privileged source port": "or --source-port 1024 or above",
	"opening netlink sockets in another":      "for --netns",
	"joining privileged netlink groups":       "for --expose",
	"detaching other users' sockets":          "or --max-sockets-per-uid 0",
	"switching to another user":               "for --user",
}

// checkCapabilities fails, naming every capability missing and what for,
// when the process (not root, as a systemd unit with AmbientCapabilities
// may be) lacks one that the configuration needs to start. Root is not
// checked: the kernel's own errors tell what its bounding set forbids.
func checkCapabilities(cfg *netlinkbridge.Config, switchUser bool) error {
	if os.Geteuid() == 0 {
		return nil
	}
	start, err := mcast.UnprivilegedPortStart()
	if err != nil {
		start = -1
	}
	needs := cfg.Needs(start).Start
	if switchUser {
		needs = append(needs, netlinkbridge.Need{Caps: netlinkbridge.CapSetuid | netlinkbridge.CapSetgid, Why: "switching to another user"})
	}
	has, err := privdrop.Effective()
	if err != nil {
		return err
	}
	return missingError(netlinkbridge.Missing(needs, has))
}

// missingError says what is missing, or nil when nothing is.
func missingError(missing []netlinkbridge.Need) error {
	if len(missing) == 0 {
		return nil
	}
	var all netlinkbridge.Capabilities
	var lines []string
	for _, m := range missing {
		all |= m.Caps
		line := fmt.Sprintf("%v: %s", m.Caps, m.Why)
		for prefix, hint := range capabilityHints {
			if strings.HasPrefix(m.Why, prefix) {
				line += " (" + hint + ")"
			}
		}
		lines = append(lines, line)
	}
	return fmt.Errorf("missing capabilities %v; run as root, or grant them (systemd: AmbientCapabilities=%s):\n  %s",
		all, strings.ReplaceAll(all.String(), ",", " "), strings.Join(lines, "\n  "))
}

// dropPrivileges switches to who on every thread keeping what the running
// set needs, then checks that the files the bridge still writes and reads
// are within the new user's reach.
func dropPrivileges(set *netlinkbridge.Set, who *account, stats *statsFile, keyFile string, log *slog.Logger) error {
	kept, err := set.DropPrivileges(who.uid, who.gid, who.groups)
	if errors.Is(err, privdrop.ErrCgo) {
		return fmt.Errorf("--user: this nlmcast was built with cgo, where Go cannot change every thread's privileges: build it with CGO_ENABLED=0 (as make build does)")
	}
	if err != nil {
		return fmt.Errorf("--user %s: %w", who.name, err)
	}
	var why []string
	for _, n := range set.Needs() {
		why = append(why, n.Why)
	}
	attrs := []any{"user", who.name, "uid", who.uid, "gid", who.gid, "kept", kept.String()}
	if len(why) > 0 {
		attrs = append(attrs, "for", strings.Join(why, "; "))
	}
	log.Info("privileges dropped", attrs...)
	if stats != nil {
		if err := unix.Faccessat(stats.dir, ".", unix.W_OK|unix.X_OK, 0); err != nil {
			return fmt.Errorf("--stats %s: user %s cannot write in its directory (%v): give it one it can write to, such as a RuntimeDirectory",
				stats.path, who.name, err)
		}
	}
	if keyFile != "" {
		if err := unix.Access(keyFile, unix.R_OK); err != nil {
			log.Warn("user cannot read the key file: its rotations are not seen until a restart; make it readable by a group of the user (mode 0640)",
				"file", keyFile, "user", who.name, "err", err)
		}
	}
	return nil
}

// trimCapabilities keeps, in a bridge started without root, only the
// capabilities the running set needs.
func trimCapabilities(set *netlinkbridge.Set, log *slog.Logger) error {
	kept, err := set.TrimCapabilities()
	if errors.Is(err, privdrop.ErrCgo) {
		log.Warn("built with cgo: keeping every capability the bridge started with (build with CGO_ENABLED=0 to drop those it no longer needs)")
		return nil
	}
	if err != nil {
		return fmt.Errorf("dropping capabilities: %w", err)
	}
	log.Info("capabilities dropped", "kept", kept.String())
	return nil
}
