package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)

func TestParseRefusesWhatItCannotRead(t *testing.T) {
	good := "00000001 2026-11-30T03:00:00Z " + strings.Repeat("ab", 32)
	for _, tc := range []struct{ text, want string }{
		{"", "no key"},
		{"# only a comment\n", "no key"},
		{"00000001 2026-11-30T03:00:00Z", "three fields"},
		{"0001 2026-11-30T03:00:00Z " + strings.Repeat("ab", 32), "8 hexadecimal"},
		{"00000001 yesterday " + strings.Repeat("ab", 32), "RFC 3339"},
		{"00000001 2026-11-30T03:00:00Z abcd", "64 hexadecimal"},
		{good + "\n" + good, "twice"},
	} {
		_, err := Parse([]byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error saying %q", tc.text, err, tc.want)
		}
	}
	r, err := Parse([]byte("# c\n\n" + good + "\n"))
	if err != nil || len(r.Entries) != 1 || r.Entries[0].ID != 1 || r.Entries[0].Secret[0] != 0xab {
		t.Fatalf("%+v %v", r, err)
	}
	back, err := Parse(r.Format())
	if err != nil || back.Entries[0] != r.Entries[0] {
		t.Fatalf("Format does not round-trip: %v", err)
	}
}

func TestSigningWaitsForGrace(t *testing.T) {
	r := &Ring{}
	a, _ := New(r, t0)
	r.Entries = append(r.Entries, a)
	if got := r.Signing(t0); got.ID != a.ID {
		t.Fatalf("a lone new key must sign at once, got %d", got.ID)
	}
	r2, err := Rotate(r, t0.Add(time.Hour))
	if err != nil || len(r2.Entries) != 2 || r2.Entries[1].ID != 2 {
		t.Fatalf("%+v %v", r2, err)
	}
	if got := r2.Signing(t0.Add(time.Hour + Grace - time.Second)); got.ID != 1 {
		t.Errorf("within the grace the old key signs, got %d", got.ID)
	}
	if got := r2.Signing(t0.Add(time.Hour + Grace)); got.ID != 2 {
		t.Errorf("after the grace the new key signs, got %d", got.ID)
	}
	r3, _ := Rotate(r2, t0.Add(2*time.Hour))
	if len(r3.Entries) != 2 || r3.Entries[0].ID != 2 || r3.Entries[1].ID != 3 {
		t.Errorf("a second rotation keeps the key in use and the new one: %+v", r3.Entries)
	}
}

func TestCreateLoadAndPermissions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	if _, err := Create(path, ""); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v %v, want 0640", fi.Mode(), err)
	}
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(path, ""); err == nil || !strings.Contains(err.Error(), "--rotate") {
		t.Errorf("Create over an existing file: %v", err)
	}
	// A planted link is never followed, for writing or reading.
	target := filepath.Join(dir, "victim")
	os.WriteFile(target, []byte("precious"), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	if _, err := Create(link, ""); err == nil {
		t.Error("Create wrote through a symbolic link")
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Error("the link's target changed")
	}
	if _, err := Load(link); err == nil {
		t.Error("Load followed a symbolic link")
	}
	for _, mode := range []os.FileMode{0o644, 0o660, 0o642, 0o606} {
		os.Chmod(path, mode)
		var pe *PermissionError
		if _, err := Load(path); !errors.As(err, &pe) || !strings.Contains(err.Error(), "chmod 0640") {
			t.Errorf("mode %04o: %v, want a PermissionError saying chmod 0640", mode, err)
		}
	}
	os.Chmod(path, 0o600)
	if _, err := Load(path); err != nil {
		t.Errorf("mode 0600: %v", err)
	}
	if _, err := Create(filepath.Join(dir, "k2"), "no-such-group-here"); err == nil || !strings.Contains(err.Error(), "groupadd") {
		t.Errorf("unknown group: %v", err)
	}
}

func TestStoreReloadsAndRotatesWithoutGap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	if _, err := Create(path, ""); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	s, err := open(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	v0 := s.View()
	if len(v0.Keys) != 1 || v0.Signing != v0.Keys[0] {
		t.Fatalf("%+v", v0)
	}
	if changed, err := s.Check(); changed || err != nil {
		t.Fatalf("Check before ReloadEvery: %v %v", changed, err)
	}
	if _, err := RotateFile(path); err != nil {
		t.Fatal(err)
	}
	now = now.Add(ReloadEvery)
	if changed, err := s.Check(); !changed || err != nil {
		t.Fatalf("Check after a rotation: %v %v", changed, err)
	}
	v1 := s.View()
	if len(v1.Keys) != 2 || v1.Signing != v0.Signing {
		t.Fatalf("after the rotation both keys are accepted and the old one still signs: %+v", v1)
	}
	now = now.Add(Grace)
	if changed, _ := s.Check(); !changed || s.View().Signing != v1.Keys[1] {
		t.Fatalf("after the grace the new key signs: %+v", s.View())
	}
	// A broken file keeps the keys in force and says why.
	os.WriteFile(path, []byte("garbage\n"), 0o640)
	now = now.Add(ReloadEvery)
	if _, err := s.Check(); err == nil || len(s.View().Keys) != 2 {
		t.Errorf("broken file: %v, keys %d", err, len(s.View().Keys))
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("rotation changed the mode to %v", fi.Mode())
	}
}

func TestFormatSaysWhatItIs(t *testing.T) {
	e, _ := New(nil, t0)
	b := (&Ring{Entries: []Entry{e}}).Format()
	if !bytes.Contains(b, []byte("forge")) || !bytes.Contains(b, []byte("00000001 2026-11-30T03:00:00Z")) {
		t.Errorf("%s", b)
	}
}
