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
	vs, _ := vectors(t)
	checkLines(t, name, cmd, vs, "\n")
}

// checkLines feeds each vector's datagram to cmd, one per line, and checks
// that it prints each one's expected line.
func checkLines(t *testing.T, name string, cmd *exec.Cmd, vs []vector, sep string) {
	t.Helper()
	var in strings.Builder
	for _, v := range vs {
		in.WriteString(v.Datagram + sep)
	}
	cmd.Stdin = strings.NewReader(in.String())
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

func buildC(t *testing.T) string {
	cc := testenv.RequireCommand(t, "gcc")
	bin := filepath.Join(t.TempDir(), "nlmcast_recv")
	if out, err := exec.Command(cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", bin, "c/nlmcast_recv.c", "-lcrypto").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func TestCDecoder(t *testing.T) {
	checkDecoder(t, "C", exec.Command(buildC(t), "--decode"))
}

func TestPythonDecoder(t *testing.T) {
	py := testenv.RequireCommand(t, "python3")
	checkDecoder(t, "Python", exec.Command(py, "python/nlmcast_recv.py", "--decode"))
}

// authVectors reads frame/testdata/auth_vectors.json and writes its key
// file, mode 0600 as the decoders demand.
func authVectors(t *testing.T) (keyFile, dest, jsonDest string, raw, js []vector) {
	b, err := os.ReadFile("../frame/testdata/auth_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var av struct {
		Keys     string `json:"keys"`
		Dest     string `json:"dest"`
		JSONDest string `json:"json_dest"`
		Raw      []vector
		JSON     []struct {
			Name     string `json:"name"`
			Datagram string `json:"datagram"`
			Expect   string `json:"expect"`
		}
	}
	if err := json.Unmarshal(b, &av); err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte(av.Keys), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, j := range av.JSON {
		js = append(js, vector{Name: j.Name, Datagram: j.Datagram, Expect: j.Expect})
	}
	return keyFile, av.Dest, av.JSONDest, av.Raw, js
}

func TestCVerifies(t *testing.T) {
	key, dest, _, raw, _ := authVectors(t)
	checkLines(t, "C", exec.Command(buildC(t), "--decode", "--key", key, "--dest", dest), raw, "\n")
}

func TestPythonVerifies(t *testing.T) {
	py := testenv.RequireCommand(t, "python3")
	key, dest, jsonDest, raw, js := authVectors(t)
	checkLines(t, "Python", exec.Command(py, "python/nlmcast_recv.py", "--decode", "--key", key, "--dest", dest), raw, "\n")
	// The JSON datagrams end in their own newline.
	checkLines(t, "Python JSON", exec.Command(py, "python/nlmcast_recv.py", "--decode-json", "--key", key, "--dest", jsonDest), js, "")
}

// Both refuse a key file others can read, saying how to fix it.
func TestExamplesRefuseAnOpenKeyFile(t *testing.T) {
	py := testenv.RequireCommand(t, "python3")
	key, dest, _, _, _ := authVectors(t)
	os.Chmod(key, 0o644)
	for name, cmd := range map[string]*exec.Cmd{
		"C":      exec.Command(buildC(t), "--decode", "--key", key, "--dest", dest),
		"Python": exec.Command(py, "python/nlmcast_recv.py", "--decode", "--key", key, "--dest", dest),
	} {
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "chmod 0640") {
			t.Errorf("%s with a world-readable key file: %v\n%s", name, err, out)
		}
	}
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
