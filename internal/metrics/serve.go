package metrics

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"
)

// SocketMode is the mode a Unix socket of Listen gets: its owner and group
// may connect.
const SocketMode = 0o660

// Addr is where metrics are served: a loopback TCP address or a Unix
// socket path. The zero Addr is none.
type Addr struct {
	// Network is "tcp" or "unix"; "" for the zero Addr.
	Network string
	// Address is host:port for "tcp", the socket's path for "unix".
	Address string
}

// AddrError says why an address was refused, and what to give instead;
// ParseAddr and Listen return it.
type AddrError struct {
	Addr   string // as given
	Reason string
}

// Error says which address was refused and what to give instead.
func (e *AddrError) Error() string { return fmt.Sprintf("%q: %s", e.Addr, e.Reason) }

// ParseAddr parses an address for Listen: a path starting with / or ./ is
// a Unix socket; anything else must be host:port with a loopback host
// (127.0.0.0/8, ::1, or localhost). Metrics tell of the host's network
// activity and cost the bridge a scrape each: they are not served beyond
// the host. "" is the zero Addr.
func ParseAddr(s string) (Addr, error) {
	if s == "" {
		return Addr{}, nil
	}
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") {
		if len(s) > len(unix.RawSockaddrUnix{}.Path)-1 {
			return Addr{}, &AddrError{s, fmt.Sprintf("a Unix socket path of at most %d bytes, please: choose a shorter one", len(unix.RawSockaddrUnix{}.Path)-1)}
		}
		return Addr{"unix", s}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Addr{}, &AddrError{s, "neither host:port (such as 127.0.0.1:9178) nor a Unix socket path (starting with / or ./)"}
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "0" {
		return Addr{}, &AddrError{s, "not a TCP port; give one, such as 127.0.0.1:9178"}
	}
	if host == "localhost" {
		return Addr{"tcp", s}, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return Addr{}, &AddrError{s, "metrics are served on loopback only: use 127.0.0.1:" + port + ", [::1]:" + port +
			" or a Unix socket path (starting with / or ./), and let a local Prometheus or a proxy with access control reach it"}
	}
	return Addr{"tcp", s}, nil
}

// Listen opens a's listening socket. A Unix socket is created with
// SocketMode; a socket file already at its path is replaced when nobody
// listens on it (left by a process that died), refused otherwise, and any
// other file there is refused, never removed. Closing the listener
// removes the socket file.
func Listen(a Addr) (net.Listener, error) {
	switch a.Network {
	case "tcp":
		ln, err := net.Listen("tcp", a.Address)
		if err != nil {
			return nil, err
		}
		// A name (localhost) may resolve to anything: check what was bound.
		if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
			ln.Close()
			return nil, &AddrError{a.Address, fmt.Sprintf("resolves to %v, not a loopback address: give 127.0.0.1 or [::1]", ln.Addr())}
		}
		return ln, nil
	case "unix":
		return listenUnix(a.Address)
	}
	return nil, fmt.Errorf("metrics: no address to listen on")
}

func listenUnix(path string) (net.Listener, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	case fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("%s exists and is not a socket (%s): remove it or choose another path", path, fi.Mode().Type())
	default:
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process is serving on this socket: stop it or choose another path", path)
		}
		if err := os.Remove(path); err != nil { // left by a process that died
			return nil, err
		}
	}
	// The socket is created with the umask's mode: make it SocketMode from
	// the start, so that nobody else connects before the chmod. The
	// umask is the process's, and is put back at once; the command
	// calls Listen before it starts anything that creates files.
	old := unix.Umask(0o777 &^ SocketMode)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil // *net.UnixListener removes path on Close
}

// Server serves a registry's metrics at /metrics on a listener. Create it
// with Serve and stop it with Close.
type Server struct {
	srv  *http.Server
	done chan struct{}
	err  error
}

// Serve serves reg at /metrics on ln, in a goroutine of its own, until
// Close. Errors of the scrape itself go to the scraper (HTTP 500), not to
// the caller.
func Serve(ln net.Listener, reg *prometheus.Registry) *Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "nlmcast: metrics at /metrics")
	})
	s := &Server{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s
}

// Close stops serving: it closes the listener (removing a Unix socket's
// file) and every connection, waits for the serving goroutine, and
// returns the error that stopped it early, if any.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.done
	return s.err
}
