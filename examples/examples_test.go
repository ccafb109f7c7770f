// Package examples tests the example receivers against the protocol's test
// vectors: each must decode every vector to the line PROTOCOL.md gives.
package examples

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

type vector struct {
	Name     string `json:"name"`
	Datagram string `json:"datagram_hex"`
	Expect   string `json:"expect"`
}

func vectors(t *testing.T) ([]vector, string) {
	b, err := os.ReadFile("../frame/testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	for _, v := range vs {
		in.WriteString(v.Datagram + "\n")
	}
	return vs, in.String()
}

func checkDecoder(t *testing.T, name string, cmd *exec.Cmd) {
	vs, in := vectors(t)
	cmd.Stdin = strings.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s --decode: %v", name, err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(vs) {
		t.Fatalf("%s printed %d lines for %d vectors:\n%s", name, len(lines), len(vs), out)
	}
	for i, v := range vs {
		if lines[i] != v.Expect {
			t.Errorf("%s, vector %s:\n got  %s\n want %s", name, v.Name, lines[i], v.Expect)
		}
	}
}

func TestCDecoder(t *testing.T) {
	cc := testenv.RequireCommand(t, "gcc")
	bin := filepath.Join(t.TempDir(), "nlmcast_recv")
	if out, err := exec.Command(cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", bin, "c/nlmcast_recv.c").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	checkDecoder(t, "C", exec.Command(bin, "--decode"))
}

func TestPythonDecoder(t *testing.T) {
	py := testenv.RequireCommand(t, "python3")
	checkDecoder(t, "Python", exec.Command(py, "python/nlmcast_recv.py", "--decode"))
}

func TestGoExampleBuilds(t *testing.T) {
	out, err := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "recv"), "./go/recv").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// The Python example reassembles the fragment vector, in order and not,
// and ignores a duplicate and a fragment of nothing.
func TestPythonReassembles(t *testing.T) {
	py := testenv.RequireCommand(t, "python3")
	b, err := os.ReadFile("../frame/testdata/fragments.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Datagrams []string `json:"datagrams_hex"`
		Message   string   `json:"message_hex"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	d := v.Datagrams
	for _, order := range [][]string{{d[0], d[1]}, {d[1], d[0]}, {d[0], d[0], d[1]}, {d[1][:100], d[0], d[1]}} {
		cmd := exec.Command(py, "python/nlmcast_recv.py", "--reassemble")
		cmd.Stdin = strings.NewReader(strings.Join(order, "\n") + "\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("--reassemble: %v", err)
		}
		if got := strings.TrimSpace(string(out)); got != "message "+v.Message {
			t.Errorf("fragments reassembled to %q, want message %s", got, v.Message)
		}
	}
}
