package decode

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Each decoder test compares the whole Result, the summary and the full
// JSON event, with a golden file: testdata/golden/NAME.json. The golden
// files are the decoders' specification; review every change to them.
//
//	go test ./decode -update   # rewrite them from the decoders' output

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

const goldenDir = "testdata/golden"

// goldenUsed records the golden files compared in this run.
var goldenUsed sync.Map

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if code == 0 && everyTestRan() {
		if stale := unusedGolden(); len(stale) > 0 {
			fmt.Fprintf(os.Stderr, "golden files no test compares (delete them): %s\n", strings.Join(stale, " "))
			code = 1
		}
	}
	os.Exit(code)
}

// everyTestRan reports whether every test ran (no -run, -skip or -list),
// so that a golden file nobody compared is really unused.
func everyTestRan() bool {
	for _, name := range []string{"test.run", "test.skip", "test.list"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return false
		}
	}
	return true
}

func unusedGolden() []string {
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*.json"))
	var stale []string
	for _, f := range files {
		if _, ok := goldenUsed.Load(filepath.Base(f)); !ok {
			stale = append(stale, f)
		}
	}
	return stale
}

// goldenDoc is the content of a golden file.
type goldenDoc struct {
	Summary string          `json:"summary"`
	Event   json.RawMessage `json:"event"`
}

// render pretty-prints a Result as a golden file holds it. Object keys
// keep the decoder's order.
func render(t *testing.T, r Result) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(goldenDoc{Summary: r.Summary, Event: r.Event}); err != nil {
		t.Fatalf("event is not JSON: %v: %s", err, r.Event)
	}
	return b.Bytes()
}

// checkGolden compares r with testdata/golden/name.json, and checks that
// the event decodes into T, the event's exported Go type, with no field
// left over and nothing changed when encoded again.
func checkGolden[T any](t *testing.T, name string, r Result) {
	t.Helper()
	name += ".json"
	if by, _ := goldenUsed.LoadOrStore(name, t.Name()); by != t.Name() {
		t.Fatalf("golden file %s is %s's too", name, by)
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the golden files hold little-endian netlink messages")
	}
	checkType[T](t, r.Event)
	got := render(t, r)
	path := filepath.Join(goldenDir, name)
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./decode -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./decode -update rewrites it)\n%s", path, lineDiff(want, got))
	}
}

// checkType decodes event into a T, strictly, and encodes it again: the
// exported type must describe the whole event.
func checkType[T any](t *testing.T, event []byte) {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(event))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("event does not decode into %T: %v: %s", v, err, event)
	}
	again, err := json.Marshal(&v)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, event) {
		t.Errorf("event changed through %T:\n got %s\nwant %s", v, again, event)
	}
}

// lineDiff shows the lines that differ between want and got, between
// their common first and last lines.
func lineDiff(want, got []byte) string {
	w := strings.Split(string(want), "\n")
	g := strings.Split(string(got), "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	j := 0
	for j < len(w)-i && j < len(g)-i && w[len(w)-1-j] == g[len(g)-1-j] {
		j++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "at line %d:\n", i+1)
	for _, l := range w[i : len(w)-j] {
		b.WriteString("- " + l + "\n")
	}
	for _, l := range g[i : len(g)-j] {
		b.WriteString("+ " + l + "\n")
	}
	return b.String()
}

// TestGoldenRender pins the golden files' format.
func TestGoldenRender(t *testing.T) {
	got := string(render(t, Result{Summary: "new link 1: lo <UP>", Event: []byte(`{"b":1,"a":[]}`)}))
	want := "{\n  \"summary\": \"new link 1: lo <UP>\",\n  \"event\": {\n    \"b\": 1,\n    \"a\": []\n  }\n}\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if d, want := lineDiff([]byte("a\nb\nc\n"), []byte("a\nx\ny\nc\n")), "at line 2:\n- b\n+ x\n+ y\n"; d != want {
		t.Errorf("lineDiff:\n%s\nwant\n%s", d, want)
	}
}
