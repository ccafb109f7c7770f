// Package testmsg builds netlink messages for tests, as the kernel would
// send them (port id 0, host byte order): Nlmsg wraps a body in a netlink
// header, Ctrl makes an nlctrl announcement of a generic netlink family.
//
// Layer rule (ARCHITECTURE.md): it imports no other package of this
// module, and only tests import it.
package testmsg
