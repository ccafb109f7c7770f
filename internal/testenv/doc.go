// Package testenv holds test helpers that decide whether a test can run
// here. Under CI=true a missing requirement fails the test instead of
// skipping it, so that CI never passes by running nothing.
//
// RequireRoot and RequireCommand skip (or fail, under CI) a test that
// lacks root or a program; Missing does so for anything else;
// SkipUnderRace skips allocation counts under -race; NoLeaks and OpenFDs
// check that a test leaves no goroutine or file descriptor behind;
// WaitInEpollWait waits until a reader's thread is blocked in epoll_wait;
// InNewNetNS runs a function in a network namespace of its own, where
// SetPortStart may set net.ipv4.ip_unprivileged_port_start.
//
// Layer rule (ARCHITECTURE.md): it imports no other package of this
// module, and only tests import it.
package testenv
