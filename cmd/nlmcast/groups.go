package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// groupEntry is one line of 'nlmcast groups --json'.
type groupEntry struct {
	Name     string `json:"name"`
	Encoding string `json:"encoding"`
	Address  string `json:"address"` // GROUP:PORT
	Family   uint16 `json:"family"`
	Group    uint32 `json:"group"`
	Doc      string `json:"doc"`
	Resync   bool   `json:"resync"` // the bridge can dump its state
	// Privileged streams are private: bridged sealed under a key file
	// (--expose STREAMS=KEYFILE) or by name in the clear: those nlmcast's
	// catalog marks so, and generic netlink groups that Probe says the
	// kernel keeps to privileged sockets.
	Privileged bool `json:"privileged"`
	// Probe is what the kernel answered when a socket without
	// capabilities tried to join the generic netlink group: "open",
	// "privileged", or "unknown" (not probed: another family, or a group
	// not registered now).
	Probe string `json:"probe"`
	// Available says whether this kernel can provide the stream now, as
	// seen from this network namespace; Note says why not, or on what
	// condition.
	Available bool   `json:"available"`
	Note      string `json:"note,omitempty"`
}

func runGroups(_ context.Context, args []string, stdout, stderr io.Writer) error {
	setup, err := groupsConfig(args, stderr)
	if err != nil {
		return err
	}
	out := groupEntries(setup.m, setup.streams, kernel.Available())
	if setup.json {
		// Family and group names are the kernel's: whatever a module
		// registered.
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		_, err = stdout.Write(appendSafeJSON(nil, append(b, '\n'), false))
		return err
	}
	return printGroups(stdout, out, setup.m)
}

// groupEntries lists the streams ss (nil: every stream of avail) with
// what avail says of each: a stream is privileged when the catalog says so
// or when the kernel refused its group to a socket without capabilities.
func groupEntries(m streams.Map, ss []streams.Stream, avail []kernel.Availability) []groupEntry {
	if ss == nil {
		for _, a := range avail {
			ss = append(ss, a.Stream)
		}
	}
	var out []groupEntry
	for _, s := range ss {
		ok, note, group, access := false, "not registered in this kernel now", s.Group, kernel.AccessUnknown
		for _, a := range avail {
			if a.Stream.Name == s.Name {
				ok, note, access = a.OK, a.Note, a.Access
				if a.Group != 0 {
					group = a.Group
				}
			}
		}
		for _, e := range []streams.Encoding{streams.Raw, streams.JSON} {
			out = append(out, groupEntry{Name: s.Name, Encoding: e.String(), Address: m.Addr(s, e).String(),
				Family: s.Family, Group: group, Doc: s.Doc, Resync: s.Resync,
				Privileged: s.Privileged || access == kernel.AccessPrivileged, Probe: access.String(),
				Available: ok, Note: note})
		}
	}
	return out
}

// printGroups prints the groups as a table, names escaped (generic netlink
// ones are the kernel's, registered by any module).
func printGroups(stdout io.Writer, out []groupEntry, m streams.Map) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tENCODING\tADDRESS\tFAMILY\tGROUP\tRESYNC\tPRIVILEGED\tAVAILABLE\tCARRIES")
	privileged := func(g groupEntry) string {
		switch {
		case g.Probe == kernel.AccessPrivileged.String():
			return "yes (kernel)" // refused to a socket without capabilities
		case g.Privileged && g.Probe == kernel.AccessOpen.String():
			return "yes (catalog)" // though the kernel lets anyone join
		case g.Privileged:
			return "yes"
		case g.Probe == kernel.AccessOpen.String():
			return "- (probed)"
		}
		return "-"
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "-"
	}
	for _, g := range out {
		av := yes(g.Available)
		if g.Note != "" {
			av += " (" + g.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", safe(g.Name), g.Encoding, g.Address, streams.FamilyName(g.Family),
			g.Group, yes(g.Resync), privileged(g), safe(av), safe(g.Doc))
	}
	fmt.Fprintf(tw, "\nprivileged: \"yes (kernel)\": this kernel refused to let a socket without capabilities join the group;\n"+
		"\"yes (catalog)\": the kernel let it, but nlmcast's catalog keeps the stream privileged (every group outside it is);\n"+
		"\"- (probed)\": the kernel let it; \"yes\", \"-\": not probed (not generic netlink, or not registered now), the catalog decides\n")
	fmt.Fprintf(tw, "aliases: %v\n", streams.AliasNames())
	fmt.Fprintf(tw, "resync requests (nlmcast listen --resync) go to %s\n", m.Control())
	return tw.Flush()
}

// groupsSetup is what nlmcast groups' arguments ask for.
type groupsSetup struct {
	m       streams.Map
	streams []streams.Stream // nil: every stream this kernel has
	json    bool             // --json
}

// groupsConfig parses nlmcast groups' arguments. It reads nothing of the
// kernel.
func groupsConfig(args []string, stderr io.Writer) (*groupsSetup, error) {
	fs := newFlags("groups", "[STREAM...] [flags]",
		"Prints every stream of every netlink family (or those named) with the multicast group and\n"+
			"port of each encoding, as computed from --base and --port (pass the bridge's values if it\n"+
			"uses others), whether it is privileged (private: bridged only sealed with 'bridge --expose STREAM=KEYFILE'; for generic\n"+
			"netlink groups, also when this kernel refuses to let a socket without capabilities join\n"+
			"them, which 'groups' tries for every registered group), and whether\n"+
			"this kernel can provide it now. Generic netlink groups registered in the kernel but not in\n"+
			"nlmcast's catalog are listed too, as FAMILY:GROUP.", stderr)
	setup := &groupsSetup{}
	fs.BoolVar(&setup.json, "json", false, "print a JSON array, one object per stream and encoding")
	getMap := mapFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	if setup.m, err = getMap(); err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		if setup.streams, err = streams.Resolve(pos...); err != nil {
			return nil, err
		}
	}
	return setup, nil
}
