// Package examples tests the example receivers against the protocol's test
// vectors: each must decode every vector to the line PROTOCOL.md gives.
package examples

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// Both examples refuse to start where any user may bind the source port
// they accept, saying why and what to do, unless --insecure: then they
// warn and start. Port 65535 is such a port wherever
// net.ipv4.ip_unprivileged_port_start is at most 65535, as Linux requires;
// the integration tests try the default port in a namespace where the
// setting is 0.
func TestExamplesRefuseAnUntrustedPort(t *testing.T) {
	c := buildC(t)
	py := testenv.RequireCommand(t, "python3")
	group := fmt.Sprintf("239.254.%d.%d:%d", 1+rand.IntN(250), 1+rand.IntN(250), 30000+rand.IntN(20000))
	for _, argv := range [][]string{{c}, {py, "python/nlmcast_recv.py"}} {
		name := filepath.Base(argv[len(argv)-1])
		run := func(args ...string) (int, string) {
			var stderr strings.Builder
			cmd := exec.Command(argv[0], append(argv[1:], args...)...)
			cmd.Stderr = &stderr
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); ok {
				return ee.ExitCode(), stderr.String()
			} else if err != nil {
				t.Fatalf("%s %v: %v", name, args, err)
			}
			return 0, stderr.String()
		}
		for _, bad := range [][]string{{"--source-port", "0", group}, {"--source-port", "65536", group}, {"--source-port"}, {"--insecure"}} {
			if code, _ := run(bad...); code != 2 {
				t.Errorf("%s %v: exit code %d, want 2 (usage)", name, bad, code)
			}
		}
		code, stderr := run("--source-port", "65535", group)
		if code != 1 || !strings.Contains(stderr, "so any user can send from port 65535: the source check proves nothing. "+
			"Give the receiver the bridge's key (frames are then authenticated) or, knowing the risk, use --insecure") {
			t.Errorf("%s --source-port 65535: exit code %d, stderr %q; want a refusal that says why", name, code, stderr)
		}
		// With --insecure it warns, starts, and stops on SIGTERM.
		cmd := exec.Command(argv[0], append(argv[1:], "--insecure", "--source-port", "65535", group)...)
		errPipe, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var lines []string
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			if lines = append(lines, sc.Text()); sc.Text() == "ready" {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGTERM)
		go io.Copy(io.Discard, errPipe)
		cmd.Wait()
		if len(lines) != 2 || !strings.Contains(lines[0], "warning: ") || !strings.Contains(lines[0], "port 65535: the source check proves nothing") ||
			lines[1] != "ready" {
			t.Errorf("%s --insecure: stderr %q, want a warning, then ready", name, lines)
		}
	}
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

// sealVectors reads frame/testdata/seal_vectors.json and writes its key
// file, mode 0600.
func sealVectors(t *testing.T) (keyFile, dest string, raw []vector) {
	b, err := os.ReadFile("../frame/testdata/seal_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var sv struct {
		Keys string `json:"keys"`
		Dest string `json:"dest"`
		Raw  []vector
	}
	if err := json.Unmarshal(b, &sv); err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(t.TempDir(), "private.key")
	if err := os.WriteFile(keyFile, []byte(sv.Keys), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile, sv.Dest, sv.Raw
}

// The Python example opens every sealed vector, and refuses every bad
// one, as the Go Opener does: a second implementation of PROTOCOL.md's
// Sealed frames.
func TestPythonOpensSealedFrames(t *testing.T) {
	py := testenv.RequireCommand(t, "python3")
	if out, err := exec.Command(py, "-c", "import cryptography.hazmat.primitives.ciphers.aead").CombinedOutput(); err != nil {
		testenv.Missing(t, fmt.Sprintf("the Python cryptography package (Debian: python3-cryptography; make deps installs it): %v: %s", err, out))
	}
	key, dest, raw := sealVectors(t)
	checkLines(t, "Python", exec.Command(py, "python/nlmcast_recv.py", "--decode", "--private", key, "--dest", dest), raw, "\n")
}

// The C example does not open sealed frames: it prints their headers as
// "sealed" lines, and says on stderr how to read the stream.
func TestCSkipsSealedFrames(t *testing.T) {
	_, _, raw := sealVectors(t)
	cmd := exec.Command(buildC(t), "--decode")
	cmd.Stdin = strings.NewReader(raw[0].Datagram + "\n")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "sealed kind=1 flags=32 ") || strings.Contains(string(out), "payload") {
		t.Errorf("C on a sealed frame printed %q", out)
	}
	if !strings.Contains(stderr.String(), "--private") {
		t.Errorf("C did not say how to read a private stream: %q", stderr.String())
	}
}
