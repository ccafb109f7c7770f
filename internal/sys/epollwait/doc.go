// Package epollwait blocks the calling thread in epoll_wait(2) until one of
// a set of sockets is readable, instead of parking a goroutine in the Go
// runtime's network poller. The multicast receivers (package mcast) and
// the netlink sockets of families that cannot be woken otherwise (package
// kernel) wait with it.
//
// On the per-event path that saves a hand-off: the kernel wakes the very
// thread that will read, where the poller wakes its own thread, which then
// makes the reading goroutine runnable and, often, wakes another thread to
// run it. On a loopback hop that is most of the latency (about 7 us to a
// blocking reader against about 29 us through the poller, p50). The price is
// a thread per blocked reader, which a reader on the hot path has anyway.
//
// A Waiter also has what a poller-managed socket would have given: a
// deadline, and a way to interrupt a blocked Wait (Wake), for closing.
//
// A goroutine that only ever reads and blocks in system calls never passes
// through the Go scheduler, so the runtime takes it for one that has run
// its 10 ms time slice without yielding. From then on the runtime's
// monitor thread (sysmon) takes the P away at every blocking call and
// hands it to another thread, polling every 20 us to do so: measured with
// 32 busy receivers, a quarter of their CPU time. Wait therefore yields
// (runtime.Gosched) before it blocks when the goroutine has not yielded
// for YieldEvery, unless its last wait began twice that ago (Yielder).
// Yielding at every Wait would cost more than it saves: Gosched wakes
// another thread to look for work.
//
// Layer rule (ARCHITECTURE.md): like every package under internal/sys, it
// is a system call primitive and may import only other packages under
// internal/sys.
package epollwait
