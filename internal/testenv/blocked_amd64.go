package testenv

import "golang.org/x/sys/unix"

const epollWait, epollKnown = unix.SYS_EPOLL_WAIT, true
