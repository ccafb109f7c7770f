package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/user"

	"github.com/nlmcast/nlmcast/keys"
)

// keygenSetup is what nlmcast keygen's flags ask for.
type keygenSetup struct {
	path     string
	group    string // "" : the creator's group
	rotate   bool
	groupSet bool // --group was given: a missing group is an error
}

// keygenConfig parses nlmcast keygen's arguments. It opens nothing.
func keygenConfig(args []string, stderr io.Writer) (*keygenSetup, error) {
	fs := newFlags("keygen", "FILE [flags]",
		"Makes a key file for authenticated frames (PROTOCOL.md, Authenticated frames): give it to\n"+
			"the bridge and to every receiver with --key FILE; or for private streams (Sealed frames):\n"+
			"bridge --expose STREAMS=FILE, receivers --private STREAMS=FILE (one file, and group, per set\n"+
			"of readers: --group nlmcast-priv). Whoever can read it can forge frames, so\n"+
			"it is created mode 0640, group "+keys.DefaultGroup+" when that group exists (or --group):\n"+
			"add the users whose receivers you trust to that group. An existing file is never\n"+
			"overwritten; --rotate adds a new key to it and keeps the one in use, and the bridge\n"+
			"moves to the new key "+keys.Grace.String()+" later, once every receiver has reloaded the file\n"+
			"(they check it every "+keys.ReloadEvery.String()+"): no restart, no frame refused.", stderr)
	setup := &keygenSetup{}
	fs.StringVar(&setup.group, "group", keys.DefaultGroup, "group that may read the file (its members' receivers can verify, and forge, frames)")
	fs.BoolVar(&setup.rotate, "rotate", false, "add a new key to the existing FILE, keeping the key in use")
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "group" {
			setup.groupSet = true
		}
	})
	if len(pos) != 1 {
		return nil, errors.New("give exactly one FILE, e.g. nlmcast keygen /etc/nlmcast/keys")
	}
	if setup.rotate && setup.groupSet {
		return nil, errors.New("--rotate keeps the file's group; change it with chgrp")
	}
	setup.path = pos[0]
	return setup, nil
}

func runKeygen(_ context.Context, args []string, stdout, stderr io.Writer) error {
	setup, err := keygenConfig(args, stderr)
	if err != nil {
		return err
	}
	if setup.rotate {
		r, err := keys.RotateFile(setup.path)
		if err != nil {
			return err
		}
		last := r.Entries[len(r.Entries)-1]
		fmt.Fprintf(stdout, "%s: added key %08x; the bridge signs with it from %s, after every receiver has loaded it\n",
			setup.path, last.ID, last.Created.Add(keys.Grace).Local().Format("15:04:05"))
		return nil
	}
	group := setup.group
	if !setup.groupSet {
		if _, err := user.LookupGroup(group); err != nil {
			group = ""
		}
	}
	r, err := keys.Create(setup.path, group)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: key %08x, mode 0640", setup.path, r.Entries[0].ID)
	if group != "" {
		fmt.Fprintf(stdout, ", group %s\n", group)
	} else {
		fmt.Fprintf(stdout, "\n(no group %q here: only the file's owner and group can read it; to share it with\n"+
			"trusted receivers: groupadd %s; chgrp %s %s; usermod -aG %s USER)\n",
			keys.DefaultGroup, keys.DefaultGroup, keys.DefaultGroup, setup.path, keys.DefaultGroup)
	}
	fmt.Fprintf(stdout, "use it with: nlmcast bridge --key %s, and nlmcast listen --key %s\n", setup.path, setup.path)
	return nil
}
