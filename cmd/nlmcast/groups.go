package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

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
}

func runGroups(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("groups", "[STREAM...] [flags]",
		"Prints every stream (or those named) with the multicast group and port of each encoding,\n"+
			"as computed from --base and --port (pass the bridge's values if it uses others).", stderr)
	asJSON := fs.Bool("json", false, "print a JSON array, one object per stream and encoding")
	getMap := mapFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	m, err := getMap()
	if err != nil {
		return err
	}
	ss, err := streams.Resolve(pos...)
	if err != nil {
		return err
	}
	var out []groupEntry
	for _, s := range ss {
		for _, e := range []streams.Encoding{streams.Raw, streams.JSON} {
			out = append(out, groupEntry{Name: s.Name, Encoding: e.String(), Address: m.Addr(s, e).String(),
				Family: s.Family, Group: s.Group, Doc: s.Doc, Resync: s.Resync})
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tENCODING\tADDRESS\tNETLINK GROUP\tRESYNC\tCARRIES")
	for _, g := range out {
		rs := "-"
		if g.Resync {
			rs = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", g.Name, g.Encoding, g.Address, g.Group, rs, g.Doc)
	}
	fmt.Fprintf(tw, "\naliases: %v\n", streams.AliasNames())
	fmt.Fprintf(tw, "resync requests (nlmcast listen --resync) go to %s\n", m.Control())
	return tw.Flush()
}
