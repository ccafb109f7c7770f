package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRun runs commands that end before they open anything: what a user
// sees on stdout and stderr, and the exit code.
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string // held by the output; "": nothing printed
	}{
		{nil, 2, "Usage:\n  nlmcast bridge [flags]", ""},
		{[]string{"--help"}, 0, "Run 'nlmcast COMMAND --help' for a command's flags.", ""},
		{[]string{"-h"}, 0, "nlmcast listen [STREAM...] [flags]", ""},
		{[]string{"help"}, 0, "nlmcast groups [STREAM...] [flags]", ""},
		{[]string{"frobnicate"}, 2, "", "nlmcast: unknown command \"frobnicate\"\n\nnlmcast: kernel netlink events"},
		{[]string{"bridge", "--help"}, 0, "", "Usage: nlmcast bridge [flags]\n"},
		{[]string{"listen", "-h"}, 0, "", "Usage: nlmcast listen [STREAM...] [flags]\n"},
		{[]string{"bridge", "--bogus"}, 2, "", "flag provided but not defined: -bogus\nUsage: nlmcast bridge"},
		{[]string{"bridge", "--ttl", "300"}, 1, "", "nlmcast bridge: --ttl 300: must be from 0 to 255\n"},
		{[]string{"bridge", "--heartbeat", "-1s"}, 1, "", "nlmcast bridge: --heartbeat -1s: must not be negative\n"},
		{[]string{"bridge", "--streams", "proc"}, 1, "", "nlmcast bridge: --streams: stream proc is private"},
		{[]string{"bridge", "link"}, 1, "", "nlmcast bridge: unexpected argument \"link\": streams are chosen with --streams\n"},
		{[]string{"listen", "--json", "--raw"}, 1, "", "nlmcast listen: --json and --raw exclude each other\n"},
		{[]string{"listen", "--silence", "-2s"}, 1, "", "nlmcast listen: --silence -2s: must not be negative\n"},
		{[]string{"compare", "--wait", "0"}, 1, "", "nlmcast compare: --wait 0s: must be positive\n"},
		{[]string{"groups", "nosuch"}, 1, "", "nlmcast groups: unknown stream \"nosuch\""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr %q", code, tc.code, stderr.String())
			}
			for _, o := range []struct {
				name      string
				got, want string
			}{{"stdout", stdout.String(), tc.stdout}, {"stderr", stderr.String(), tc.stderr}} {
				if o.want == "" && o.got != "" || !strings.Contains(o.got, o.want) {
					t.Errorf("%s %q\nwant it to hold %q", o.name, o.got, o.want)
				}
			}
		})
	}
}
