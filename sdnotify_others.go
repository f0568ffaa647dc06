//go:build !unix

package main

import (
	"os"
	"time"
)

// sdNotifier is a placeholder where AF_UNIX datagram sockets do not exist.
type sdNotifier struct{}

// newSdNotifier returns (nil, nil) when NOTIFY_SOCKET is unset, and
// otherwise an error wrapping os.ErrNotExist.
func newSdNotifier() (*sdNotifier, error) {
	if name := os.Getenv("NOTIFY_SOCKET"); name != "" {
		return nil, wrapf(os.ErrNotExist, "NOTIFY_SOCKET %s: systemd notify is not supported on this system", name)
	}
	return nil, nil
}

func (n *sdNotifier) send(msg string) error           { return nil }
func (n *sdNotifier) watchdogInterval() time.Duration { return 0 }
func (n *sdNotifier) close()                          {}
