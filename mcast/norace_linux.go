//go:build !race

package mcast

import "golang.org/x/net/ipv4"

// raceReadBuffers is race_linux.go's, which only a race build needs.
func raceReadBuffers([]ipv4.Message) {}
