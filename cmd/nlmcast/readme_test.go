package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

// readmeSections maps each command to the heading of the README section
// that documents its flags (a "##" or "###" heading, up to the next one of
// the same level or higher).
var readmeSections = map[string]string{
	"bridge":  "### `nlmcast bridge`",
	"listen":  "### `nlmcast listen`",
	"publish": "## Many hosts",
	"relay":   "## Many hosts",
	"groups":  "### `nlmcast groups`",
	"compare": "### `nlmcast compare`",
	"bench":   "### `nlmcast bench`",
	"record":  "### `nlmcast record`",
	"replay":  "### `nlmcast record`",
	"keygen":  "### `nlmcast keygen",
	"version": "### `nlmcast version`",
}

// TestREADMEDocumentsEveryFlag checks that README.md names every flag of
// every command (as --flag, or -o for a one-letter flag) in that command's
// section, so that a new flag cannot go undocumented.
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	flagLine := regexp.MustCompile(`(?m)^  -([a-z0-9][a-z0-9-]*)`)
	for _, c := range commands {
		if c.summary == "" {
			continue // a process of bench, not for users
		}
		t.Run(c.name, func(t *testing.T) {
			heading, ok := readmeSections[c.name]
			if !ok {
				t.Fatalf("no README section known for command %q: add it to readmeSections", c.name)
			}
			section := readmeSection(readme, heading)
			if section == "" {
				t.Fatalf("README.md has no section %q", heading)
			}
			var stdout, stderr bytes.Buffer
			if code := run([]string{c.name, "--help"}, &stdout, &stderr); code != 0 {
				t.Fatalf("%s --help: exit code %d", c.name, code)
			}
			flags := flagLine.FindAllStringSubmatch(stderr.String()+stdout.String(), -1)
			if len(flags) == 0 && c.name != "version" {
				t.Fatalf("%s --help listed no flags:\n%s", c.name, stderr.String())
			}
			for _, f := range flags {
				name := "--" + f[1]
				if len(f[1]) == 1 {
					name = "-" + f[1]
				}
				if !regexp.MustCompile(regexp.QuoteMeta(name) + `([^a-z0-9-]|$)`).MatchString(section) {
					t.Errorf("README.md section %q does not mention %s %s", heading, c.name, name)
				}
			}
		})
	}
}

// readmeSection returns the text from the line that starts with heading to
// the next heading of the same level or higher, outside code blocks, or ""
// if there is none.
func readmeSection(readme, heading string) string {
	level := strings.Index(heading, " ") // the number of '#'
	var out []string
	in, fenced := false, false
	for line := range strings.Lines(readme) {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if !fenced && strings.HasPrefix(line, "#") {
			n := len(line) - len(strings.TrimLeft(line, "#"))
			switch {
			case strings.HasPrefix(line, heading):
				in = true
			case in && n <= level && strings.HasPrefix(line[n:], " "):
				return strings.Join(out, "")
			}
		}
		if in {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
