package main

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// versionText prints what the build information says, commit and
// modified flag included, and says so when there is none.
func TestVersionText(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Path: "github.com/nlmcast/nlmcast", Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev},
				{Key: "vcs.time", Value: "2026-11-30T06:00:00Z"}, {Key: "vcs.modified", Value: modified}}}
	}
	platform := "platform: " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	for _, c := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"clean", vcs("380b429f", "false"), "nlmcast v1.2.3\ncommit:   380b429f\ntime:     2026-11-30T06:00:00Z\ngo:       go1.26.1\n" + platform},
		{"modified", vcs("380b429f", "true"), "nlmcast v1.2.3\ncommit:   380b429f (modified: uncommitted changes)\ntime:     2026-11-30T06:00:00Z\ngo:       go1.26.1\n" + platform},
		{"no vcs", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}},
			"nlmcast (devel)\ncommit:   unknown (built without VCS information)\ngo:       go1.26.1\n" + platform},
		{"no build info", nil, "nlmcast unknown\ncommit:   unknown (built without VCS information)\ngo:       " + runtime.Version() + "\n" + platform},
	} {
		if got := versionText(c.bi); got != c.want {
			t.Errorf("%s:\n%s\nwant\n%s", c.name, got, c.want)
		}
	}
}

// nlmcast version and nlmcast --version print this program's build
// information; extra arguments are refused.
func TestVersionCommand(t *testing.T) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("no build information in the test binary")
	}
	want := versionText(bi)
	if !strings.Contains(want, "go:       "+runtime.Version()+"\n") {
		t.Fatalf("the build information's Go version is not this one:\n%s", want)
	}
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 || stdout.String() != want || stderr.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 0 and %q", args, code, stdout.String(), stderr.String(), want)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"version", "extra"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), `unexpected argument "extra"`) {
		t.Errorf("version extra: exit %d, stderr %q", code, stderr.String())
	}
}
