package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "", "Prints the module version, the VCS commit the program was built from\n"+
		"(and whether the tree had uncommitted changes), and the Go version.", stderr)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	bi, _ := debug.ReadBuildInfo()
	_, err = io.WriteString(stdout, versionText(bi))
	return err
}

// versionText says what bi says of the build: the main module's version,
// the VCS commit, its time and whether the tree was modified, and the Go
// version and platform. bi nil (no build information): what is known.
func versionText(bi *debug.BuildInfo) string {
	version, goVersion := "unknown", runtime.Version()
	settings := map[string]string{}
	if bi != nil {
		version = bi.Main.Version
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "nlmcast %s\n", version)
	switch rev := settings["vcs.revision"]; {
	case rev == "":
		b.WriteString("commit:   unknown (built without VCS information)\n")
	case settings["vcs.modified"] == "true":
		fmt.Fprintf(&b, "commit:   %s (modified: uncommitted changes)\n", rev)
	default:
		fmt.Fprintf(&b, "commit:   %s\n", rev)
	}
	if t := settings["vcs.time"]; t != "" {
		fmt.Fprintf(&b, "time:     %s\n", t)
	}
	fmt.Fprintf(&b, "go:       %s\n", goVersion)
	fmt.Fprintf(&b, "platform: %s/%s\n", runtime.GOOS, runtime.GOARCH)
	return b.String()
}
