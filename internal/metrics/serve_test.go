package metrics

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

func TestParseAddr(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Addr
	}{
		{"", Addr{}},
		{"127.0.0.1:9178", Addr{"tcp", "127.0.0.1:9178"}},
		{"127.1.2.3:9178", Addr{"tcp", "127.1.2.3:9178"}},
		{"[::1]:9178", Addr{"tcp", "[::1]:9178"}},
		{"localhost:9178", Addr{"tcp", "localhost:9178"}},
		{"/run/nlmcast/metrics.sock", Addr{"unix", "/run/nlmcast/metrics.sock"}},
		{"./metrics.sock", Addr{"unix", "./metrics.sock"}},
	} {
		if got, err := ParseAddr(c.in); err != nil || got != c.want {
			t.Errorf("ParseAddr(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"0.0.0.0:9178", "loopback only: use 127.0.0.1:9178, [::1]:9178 or a Unix socket path"},
		{":9178", "loopback only"},
		{"192.0.2.1:9178", "loopback only"},
		{"[::]:9178", "loopback only"},
		{"example.com:9178", "loopback only"},
		{"9178", "neither host:port"},
		{"metrics.sock", "neither host:port"},
		{"127.0.0.1:http-nope", "not a TCP port"},
		{"127.0.0.1:0", "not a TCP port"},
		{"/" + strings.Repeat("x", 200), "at most 107 bytes"},
	} {
		_, err := ParseAddr(c.in)
		var ae *AddrError
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseAddr(%q): %v; want an *AddrError saying %q", c.in, err, c.want)
		}
	}
}

func TestUnixSocket(t *testing.T) {
	defer testenv.NoLeaks(t)()
	path := filepath.Join(t.TempDir(), "m.sock")
	a := Addr{"unix", path}
	ln, err := Listen(a)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != SocketMode {
		t.Fatalf("socket %v, %v; want a socket of mode %o", fi.Mode(), err, SocketMode)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewBuildInfoCollector())
	srv := Serve(ln, reg)
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	resp, err := c.Get("http://nlmcast/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /metrics: %s", resp.Status)
	}
	c.CloseIdleConnections()

	// Someone serves there: refused, and the socket stays.
	if _, err := Listen(a); err == nil || !strings.Contains(err.Error(), "another process is serving") {
		t.Errorf("Listen on a live socket: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}

	// A socket left by a process that died is replaced.
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd) // bound, never listened: nobody answers
	ln, err = Listen(a)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()

	// Any other file is refused and left alone.
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(a); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != "precious" {
		t.Errorf("the file was touched: %q, %v", data, err)
	}
}

func TestTCP(t *testing.T) {
	defer testenv.NoLeaks(t)()
	ln, err := Listen(Addr{"tcp", "localhost:0"})
	if err != nil {
		t.Fatal(err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		t.Fatalf("listening on %v", ip)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewBuildInfoCollector())
	srv := Serve(ln, reg)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for path, want := range map[string]int{"/metrics": http.StatusOK, "/": http.StatusOK, "/other": http.StatusNotFound} {
		resp, err := c.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %s, want %d", path, resp.Status, want)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("still listening after Close")
	}
}
