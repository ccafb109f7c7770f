// Command nlmcast bridges kernel netlink multicast events to loopback IP
// multicast groups, and reads them back.
//
//	nlmcast bridge [flags]               run the bridge (root)
//	nlmcast listen [STREAM...] [flags]   print events, like ip monitor
//	nlmcast groups [STREAM...] [flags]   print the streams and their addresses
//	nlmcast compare [STREAM...] [flags]  netlink and multicast side by side
//	nlmcast bench [flags]                measure against direct netlink (root)
//	nlmcast record [STREAM...] -o FILE   record the streams to a pcapng file
//	nlmcast replay FILE... [-- CMD...]   replay a recording as a bridge would
//
// Every command has --help; README.md describes each flag.
//
// The command maps its flags onto the libraries' configurations
// (netlinkbridge for bridge, receiver for listen, internal/tool/compare,
// internal/tool/bench and internal/tool/recording for the tools), prints
// what they return, and tells its supervisor when bridge, listen, record
// or replay is ready, with sd_notify READY=1
// (internal/sys/sdnotify). Layer rule (ARCHITECTURE.md): it may import
// any package of this module but the test helpers, and none imports it.
package main
