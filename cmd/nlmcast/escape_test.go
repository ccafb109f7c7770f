package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/tool/compare"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// terminalSafe returns an error if b holds anything a terminal acts on:
// a C0 control but newline, DEL, a C1 control, or invalid UTF-8.
func terminalSafe(b []byte) error {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			return fmt.Errorf("invalid UTF-8 byte %#x at %d in %q", b[i], i, b)
		case r < 0x20 && r != '\n', r >= 0x7f && r <= 0x9f:
			return fmt.Errorf("control character %U at %d in %q", r, i, b)
		}
		i += n
	}
	return nil
}

func TestSafe(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"new link 3: eth0 <UP,LOWER_UP> mtu 1500", "new link 3: eth0 <UP,LOWER_UP> mtu 1500"},
		{"dev é日本 \u00a0 \ufffd ok", "dev é日本 \u00a0 \ufffd ok"}, // printable non-ASCII, a real U+FFFD
		{`back\slash "quotes"`, `back\slash "quotes"`},           // not controls: kept
		{"\x1b]0;pwned\x07", `\x1b]0;pwned\x07`},                 // ESC, BEL: sets a window title
		{"\x1b[2J", `\x1b[2J`},                                   // clears the screen
		{"a\rb", `a\rb`},
		{"line\nname", `line\nname`},
		{"tab\there", `tab\there`},
		{"del\x7f", `del\x7f`},
		{"\x00\x01\x1f", `\x00\x01\x1f`},
		{"c1 \u009b2J \u0080 \u009f", `c1 \u009b2J \u0080 \u009f`}, // C1 CSI, as UTF-8
		{"bad \xff\xfe utf8 \xc2", `bad \xff\xfe utf8 \xc2`},
		{"\xc2\x9b", `\u009b`},
		{"\xe2\x82", `\xe2\x82`}, // a truncated sequence: byte by byte
	} {
		got := safe(c.in)
		if got != c.want {
			t.Errorf("safe(%q) = %q, want %q", c.in, got, c.want)
		}
		if err := terminalSafe([]byte(got)); err != nil {
			t.Errorf("safe(%q): %v", c.in, err)
		}
	}
}

// Text with nothing to escape costs nothing: listen prints every event
// through safe.
func TestSafeAllocatesNothingForPlainText(t *testing.T) {
	s := strings.Repeat("new addr 10.9.0.1/24 dev va scope global permanent é ", 4)
	if n := testing.AllocsPerRun(100, func() { _ = safe(s) }); n != 0 {
		t.Errorf("safe of plain text: %v allocations, want 0", n)
	}
}

func TestAppendSafeJSON(t *testing.T) {
	for _, c := range []struct {
		in      string
		compact bool
		want    string
	}{
		// What the bridge sends passes unchanged.
		{`{"v":1,"kind":"event","summary":"new link 3: eth0 \u001b é"}` + "\n", true,
			`{"v":1,"kind":"event","summary":"new link 3: eth0 \u001b é"}` + "\n"},
		// Whitespace between tokens (a CR could rewrite the line) goes;
		// a missing newline is added.
		{" {\r\"a\" :\t1 ,\n\"b\":[ 1, 2 ]}\r\n\n", true, `{"a":1,"b":[1,2]}` + "\n"},
		{`{"a":"x"}`, true, `{"a":"x"}` + "\n"},
		// Inside strings: DEL, C1, invalid UTF-8, raw controls.
		{"{\"s\":\"del\x7f csi\u009b2J bad\xff\"}", true, `{"s":"del\u007f csi\u009b2J bad\ufffd"}` + "\n"},
		{"{\"s\":\"raw\x1b[2J\x07\"}", true, `{"s":"raw\u001b[2J\u0007"}` + "\n"},
		// Escapes are followed, so an escaped quote does not end a string.
		{`{"s":"a\"\u009b\\","t":1}`, true, `{"s":"a\"\u009b\\","t":1}` + "\n"},
		{"{\"s\":\"a\\\"\r\"}", true, `{"s":"a\"\u000d"}` + "\n"},
		// Indented output keeps its layout.
		{"[\n  {\n    \"name\": \"fam\u009b:grp\x7f\"\n  }\n]\n", false, "[\n  {\n    \"name\": \"fam\\u009b:grp\\u007f\"\n  }\n]\n"},
		// Not JSON: controls and non-ASCII outside strings are dropped.
		{"\x1b[2J{\xc2\x9b}", true, "[2J{}\n"},
	} {
		got := string(appendSafeJSON(nil, []byte(c.in), c.compact))
		if got != c.want {
			t.Errorf("appendSafeJSON(%q, %v)\n got %q\nwant %q", c.in, c.compact, got, c.want)
		}
		if err := terminalSafe([]byte(got)); err != nil {
			t.Errorf("appendSafeJSON(%q): %v", c.in, err)
		}
		// The value is the same, to a JSON reader.
		var a, b any
		if json.Unmarshal([]byte(c.in), &a) == nil {
			if err := json.Unmarshal([]byte(got), &b); err != nil {
				t.Errorf("appendSafeJSON(%q) = %q: not JSON: %v", c.in, got, err)
			} else if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("appendSafeJSON(%q): value %v, was %v", c.in, b, a)
			}
		}
	}
}

// forgedJSON is a JSON frame any local user could send: escapes that a
// JSON reader turns into ESC and BEL, raw DEL and C1 (valid in JSON
// strings), invalid UTF-8, and a CR between tokens.
const forgedJSON = `{"v":1,"kind":"event","stream":"link","family":0,"group":1,"epoch":"0123456789abcdef","seq":7,` + "\r" +
	`"time":"2026-01-02T03:04:05.000000006Z","summary":"new link 99: \u001b]0;pwned\u0007evil0\u001b[2J` + "\x7f\u009b2J\xff" + `",` +
	`"event":{"type":"RTM_NEWLINK","link":{"index":99,"name":"\u001b]0;pwned\u0007"}}}` + "\n"

func forgedEvent(t *testing.T) *receiver.Event {
	t.Helper()
	f, err := frame.ParseJSON([]byte(forgedJSON))
	if err != nil {
		t.Fatalf("the forged frame does not parse: %v", err)
	}
	h, _ := f.Header()
	link, _ := streams.Lookup("link")
	return &receiver.Event{Stream: link, Encoding: streams.JSON, Header: h, Payload: []byte(forgedJSON), JSON: f}
}

func TestListenEscapesForgedText(t *testing.T) {
	ev := forgedEvent(t)
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	printEvent(w, ev, false, nil)
	w.Flush()
	if err := terminalSafe(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	want := `#7 new link 99: \x1b]0;pwned\x07evil0\x1b[2J\x7f\u009b2J` + "\ufffd\n" // the reader made \xff U+FFFD
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("printed %q, want it to end in %q", out.String(), want)
	}
}

func TestListenJSONEscapesForgedFrame(t *testing.T) {
	ev := forgedEvent(t)
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	buf := printEvent(w, ev, true, nil)
	printEvent(w, ev, true, buf) // reused
	w.Flush()
	if err := terminalSafe(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("printed %d lines, want 2:\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		f, err := frame.ParseJSON([]byte(l))
		if err != nil {
			t.Fatalf("printed %q: %v", l, err)
		}
		if f.Summary != ev.JSON.Summary {
			t.Errorf("summary %q, want %q as received", f.Summary, ev.JSON.Summary)
		}
	}
}

func TestCompareEscapesSummaries(t *testing.T) {
	var out bytes.Buffer
	o := &sideBySide{w: bufio.NewWriter(&out)}
	link, _ := streams.Lookup("link")
	at := time.Now()
	o.report(compare.Report{Result: &compare.Result{Group: 1, At: [2]time.Time{{}, at}, Missed: true},
		Stream: link, Summary: "new link 99: \x1b]0;pwned\x07 \u009b2J"})
	o.report(compare.Report{Path: compare.Multicast, Stream: streams.Stream{Name: "fam\x1b:grp"}, Note: "gap\r\x7f"})
	o.report(compare.Report{Step: "ip link add \x1b[2J"})
	if err := terminalSafe(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`new link 99: \x1b]0;pwned\x07 \u009b2J`, `[fam\x1b:grp]: gap\r\x7f`, `ip link add \x1b[2J`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printed %q, want it to hold %q", out.String(), want)
		}
	}
}

func TestGroupsEscapesNames(t *testing.T) {
	entries := []groupEntry{{Name: "fam\x1b]0;x\x07:grp\u009b", Encoding: "raw", Address: "239.255.78.200:18200",
		Family: streams.FamilyGeneric, Note: "not \x7f here", Doc: "odd\tdoc\n"}}
	var out bytes.Buffer
	if err := printGroups(&out, entries, streams.Map{}); err != nil {
		t.Fatal(err)
	}
	if err := terminalSafe(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	if want := `fam\x1b]0;x\x07:grp\u009b`; !strings.Contains(out.String(), want) {
		t.Errorf("printed %q, want it to hold %q", out.String(), want)
	}
}
