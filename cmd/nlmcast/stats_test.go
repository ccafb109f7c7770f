package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The bridge writes --stats as root: it replaces FILE with a new file of
// its own, never writing through a link someone put there.
func TestStatsFileReplacesLinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(shared, "stats.json")
	for _, l := range []string{file, filepath.Join(shared, ".stats.json.tmp")} {
		if err := os.Symlink(victim, l); err != nil {
			t.Fatal(err)
		}
	}
	f, err := openStatsFile(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	for _, data := range []string{"{\"snap\":1}\n", "{\"snap\":2}\n"} {
		if err := f.write([]byte(data)); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(file); err != nil || string(b) != data {
			t.Errorf("%s holds %q (%v), want %q", file, b, err, data)
		}
	}
	if fi, err := os.Lstat(file); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&^0o644 != 0 {
		t.Errorf("%s: %v %v, want a regular file, mode 0644 at most", file, fi.Mode(), err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("victim written: %q", b)
	}
	ents, _ := os.ReadDir(shared)
	if len(ents) != 2 { // stats.json and the planted .stats.json.tmp
		t.Errorf("left in the directory: %v", ents)
	}
}

func TestStatsFileRefused(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	sticky := filepath.Join(dir, "sticky")
	for d, mode := range map[string]os.FileMode{open: 0o777, sticky: 0o777 | os.ModeSticky} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ file, err string }{
		{filepath.Join(open, "stats.json"), "writable by every user and not sticky"},
		{filepath.Join(dir, "missing", "stats.json"), "no such file"},
		{dir + "/", "not a file name"},
		{filepath.Join(sticky, "stats.json"), ""}, // as /tmp: safe
		{filepath.Join(dir, "stats.json"), ""},
	} {
		f, err := openStatsFile(c.file)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.file, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one saying %q", c.file, err, c.err)
		}
		if f != nil {
			f.close()
		}
	}
}
