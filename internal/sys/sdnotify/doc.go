// Package sdnotify speaks the service manager notification protocol
// (sd_notify(3)): a daemon tells its supervisor, systemd or a test, that it
// is ready (READY=1), still alive (WATCHDOG=1) or stopping, by sending a
// datagram to the Unix socket named in $NOTIFY_SOCKET.
//
// Notify is the daemon's side: nlmcast bridge and nlmcast listen send
// READY=1 once they are ready; WatchdogInterval reads the watchdog's
// interval ($WATCHDOG_USEC), and nlmcast bridge sends WATCHDOG=1 at half
// of it while its event loops come round. Listener is the supervisor's side: the tests
// and nlmcast bench make one, start a process with its Env, and Wait for
// READY=1 instead of reading a log or sleeping.
//
// Layer rule (ARCHITECTURE.md): like every package under internal/sys, it
// is a system call primitive and may import only other packages under
// internal/sys.
package sdnotify
