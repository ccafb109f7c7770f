//go:build !amd64

package testenv

import "runtime"

// Elsewhere x/sys waits with epoll_pwait (arm64, riscv64, loong64); on
// other architectures WaitInEpollWait does not look.
const epollWait, epollKnown = -1, runtime.GOARCH == "arm64" || runtime.GOARCH == "riscv64" || runtime.GOARCH == "loong64"
