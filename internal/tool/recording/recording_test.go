package recording

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/capture"
	"github.com/nlmcast/nlmcast/frame"
)

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Meta{
		{Stream: "link", Kind: frame.KindEvent, Group: 1, Epoch: 0x1a22b3542d61d83b, Seq: 7, Time: 1796021246854291595},
		{Stream: "link", Kind: frame.KindEvent, Flags: frame.FlagNSID | frame.FlagDump, Group: 1, Epoch: 1, Seq: 2, Time: -1, NSID: -3},
		{Stream: "neigh", Kind: frame.KindOverrun, Group: 3, Epoch: 9, Seq: 10, Time: 11},
		{Stream: "link", Notice: "gap", Epoch: 5, Count: 3, From: 10},
		{Stream: "link", Notice: "restart", Epoch: 6, PrevEpoch: 5},
	} {
		got, ok := ParseMeta(m.Comment())
		if !ok || got != m {
			t.Errorf("%q: got %+v, %v; want %+v", m.Comment(), got, ok, m)
		}
	}
}

func TestParseMetaRefuses(t *testing.T) {
	for _, c := range []string{
		"", "a comment", "nlmcast", "nlmcast kind=event notice=gap", "nlmcast kind=bogus", "nlmcast kind=event seq=x",
		"nlmcast kind=event flags=0x10000", "nlmcast kind=event word", "nlmcast kind=event nsid=99999999999",
	} {
		if m, ok := ParseMeta(c); ok {
			t.Errorf("%q: parsed as %+v", c, m)
		}
	}
	// A word of a later version is ignored.
	if _, ok := ParseMeta("nlmcast stream=link kind=event later=1"); !ok {
		t.Error("an unknown word refused")
	}
}

func TestParseInjection(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Injection
		bad  bool
	}{
		{in: "gap,stream=link,after=10,count=3", want: Injection{Kind: InjectGap, Stream: "link", After: 10, Count: 3}},
		{in: "overrun,stream=neigh", want: Injection{Kind: InjectOverrun, Stream: "neigh"}},
		{in: "restart, stream=link, after=2", want: Injection{Kind: InjectRestart, Stream: "link", After: 2}},
		{in: "goodbye,stream=ipv4-route,after=5", want: Injection{Kind: InjectGoodbye, Stream: "ipv4-route", After: 5}},
		{in: "fragment,stream=uevent,after=1", want: Injection{Kind: InjectFragment, Stream: "uevent", After: 1}},
		{in: "gap", bad: true},
		{in: "flood,stream=link", bad: true},
		{in: "gap,stream=nosuch", bad: true},
		{in: "gap,stream=link,after=-1", bad: true},
		{in: "overrun,stream=link,count=2", bad: true},
		{in: "gap,stream=link,colour=red", bad: true},
		{in: "gap,stream", bad: true},
	} {
		got, err := ParseInjection(tc.in)
		switch {
		case tc.bad && err == nil:
			t.Errorf("%q: accepted as %+v", tc.in, got)
		case !tc.bad && (err != nil || got != tc.want):
			t.Errorf("%q: got %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseScript(t *testing.T) {
	got, err := ParseScript("# a gap, then a restart\ngap,stream=link,after=3\n\n  restart,stream=link,after=5  \n")
	if err != nil || len(got) != 2 || got[0].Kind != InjectGap || got[1].After != 5 {
		t.Errorf("got %+v, %v", got, err)
	}
	if _, err := ParseScript("gap,stream=link\nflood,stream=link\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a bad line: %v, want an error naming line 2", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rec   *RecordConfig
		rep   *ReplayConfig
		field string
	}{
		{name: "no output", rec: &RecordConfig{}, field: "Output"},
		{name: "negative bytes", rec: &RecordConfig{Output: "x", MaxBytes: -1}, field: "MaxBytes"},
		{name: "files without bytes", rec: &RecordConfig{Output: "x", MaxFiles: 2}, field: "MaxFiles"},
		{name: "negative age", rec: &RecordConfig{Output: "x", MaxAge: -1}, field: "MaxAge"},
		{name: "files by age", rec: &RecordConfig{Output: "x", MaxAge: time.Hour, MaxFiles: 24}},
		{name: "negative count", rec: &RecordConfig{Output: "x", Count: -1}, field: "Count"},
		{name: "record ok", rec: &RecordConfig{Output: "x", MaxBytes: 1 << 20, MaxFiles: 3}},
		{name: "no files", rep: &ReplayConfig{}, field: "Files"},
		{name: "negative speed", rep: &ReplayConfig{Files: []string{"x"}, Speed: -1}, field: "Speed"},
		{name: "speed and rate", rep: &ReplayConfig{Files: []string{"x"}, Speed: 2, Rate: 5}, field: "Rate"},
		{name: "no pacing and rate", rep: &ReplayConfig{Files: []string{"x"}, NoPacing: true, Rate: 5}, field: "NoPacing"},
		{name: "negative linger", rep: &ReplayConfig{Files: []string{"x"}, Linger: -1}, field: "Linger"},
		{name: "bad injection", rep: &ReplayConfig{Files: []string{"x"}, Inject: []Injection{{Kind: InjectGap}}}, field: "Inject[0]"},
		{name: "replay ok", rep: &ReplayConfig{Files: []string{"x"}, Rate: 100, Loop: true}},
	} {
		var err error
		if tc.rec != nil {
			err = tc.rec.Validate()
		} else {
			err = tc.rep.Validate()
		}
		var ce *ConfigError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.field != "" && (!errors.As(err, &ce) || ce.Field != tc.field):
			t.Errorf("%s: got %v, want an error of %s", tc.name, err, tc.field)
		}
	}
}

// nlmsg makes a netlink message of a type, flags and first payload byte
// (the address family of most rtnetlink messages).
func nlmsg(typ, flags uint16, af byte) []byte {
	b := make([]byte, 20)
	binary.NativeEndian.PutUint32(b, 20)
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	b[16] = af
	return b
}

// TestReadForeign reads a capture of another program (tcpdump -i nlmon0):
// no comments, several messages in a packet, requests and dump replies
// among the notifications.
func TestReadForeign(t *testing.T) {
	var file bytes.Buffer
	w, err := capture.NewWriter(&file, "tcpdump")
	if err != nil {
		t.Fatal(err)
	}
	two := append(nlmsg(16, 0, 0), nlmsg(20, 0, 2)...) // a new link, a new IPv4 address
	for _, p := range []struct {
		family uint16
		msg    []byte
	}{
		{0, two},
		{0, nlmsg(24, 0, 10)},        // a new IPv6 route
		{0, nlmsg(18, 0x1, 0)},       // RTM_GETLINK, a request
		{0, nlmsg(16, 0x2, 0)},       // a link of a dump
		{0, nlmsg(28, 0, 2)},         // a new neighbour
		{12, nlmsg(0x100, 0x400, 2)}, // a new conntrack entry
		{12, nlmsg(0x102, 0, 2)},     // a conntrack entry destroyed
		{15, []byte("add@/devices/virtual/net/x\x00ACTION=add\x00")},
		{16, nlmsg(0x20, 0, 0)}, // generic netlink: no group known
	} {
		if err := w.WriteMessage(p.family, 1, p.msg, ""); err != nil {
			t.Fatal(err)
		}
	}
	name := filepath.Join(t.TempDir(), "nlmon.pcapng")
	if err := os.WriteFile(name, file.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	var sk Skipped
	if err := Read([]string{name}, &sk, func(it *Item) error { got = append(got, it.Stream.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []string{"link", "ipv4-ifaddr", "ipv6-route", "neigh", "conntrack-new", "conntrack-destroy", "uevent"}
	if !equal(got, want) || sk.NoStream != 3 {
		t.Errorf("got %v, skipped %+v; want %v and 3 without a stream", got, sk, want)
	}
	// Cut short: every whole packet, then a *TruncatedError.
	if err := os.WriteFile(name, file.Bytes()[:file.Len()-3], 0o600); err != nil {
		t.Fatal(err)
	}
	got = nil
	err = Read([]string{name}, &sk, func(it *Item) error { got = append(got, it.Stream.Name); return nil })
	var te *TruncatedError
	if !errors.As(err, &te) || !errors.Is(err, capture.ErrTruncated) || te.Packets != 8 || len(got) != len(want) {
		t.Errorf("cut: %v (%d packets), %v", err, te.Packets, got)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRotateByAge starts a file when the current one is old enough.
func TestRotateByAge(t *testing.T) {
	dir := t.TempDir()
	clock := time.Unix(1000, 0)
	cfg := &RecordConfig{Output: filepath.Join(dir, "a.pcapng"), MaxAge: time.Minute}
	var st RecordStats
	o := &output{cfg: cfg, stats: &st, now: func() time.Time { return clock }}
	if err := o.open(); err != nil {
		t.Fatal(err)
	}
	for _, step := range []time.Duration{0, 30 * time.Second, 30 * time.Second, 59 * time.Second, time.Second} {
		clock = clock.Add(step)
		if err := o.rotate(); err != nil {
			t.Fatal(err)
		}
	}
	o.close()
	// At 60 s and at 120 s.
	if st.Files != 3 {
		t.Errorf("%d files, want 3", st.Files)
	}
}

// TestRotate writes files by size and keeps the newest.
func TestRotate(t *testing.T) {
	dir := t.TempDir()
	cfg := &RecordConfig{Output: filepath.Join(dir, "r.pcapng"), MaxBytes: 600, MaxFiles: 2}
	var st RecordStats
	o := &output{cfg: cfg, stats: &st}
	if err := o.open(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := o.rotate(); err != nil {
			t.Fatal(err)
		}
		if err := o.w.WriteMessage(0, int64(i), make([]byte, 100), "nlmcast stream=link kind=event"); err != nil {
			t.Fatal(err)
		}
		if err := o.flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.close(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	// Packets of 184 bytes after headers of 92: a file holds three, four
	// files made, the last two kept.
	if st.Files != 4 || !equal(names, []string{"r.pcapng.2", "r.pcapng.3"}) {
		t.Errorf("%d files, left %v", st.Files, names)
	}
}
