// Package examples holds example receivers of nlmcast streams, in C,
// Python, Go and shell, and the tests that check them; it has no Go code
// besides the tests.
//
// c/nlmcast_recv.c and python/nlmcast_recv.py receive from the bridge with
// nothing but the operating system's sockets, following PROTOCOL.md; the
// tests check that each decodes every test vector of
// ../frame/testdata/vectors.json to the line PROTOCOL.md gives, and that
// the Python one reassembles fragments. go/recv is the smallest Go
// receiver, built on package receiver; socat.sh prints a JSON stream with
// socat alone; demo.sh is make demo.
//
// Layer rule (ARCHITECTURE.md): this package imports no other package of
// this module outside its tests, and nothing imports it. examples/go/recv
// may import only receiver, frame, streams, mcast and internal/sys, and no
// netlink library, like any receiving program.
package examples
