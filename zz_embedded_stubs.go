package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// Temporary stand-ins until the embedded branch lands.

type sdNotifier struct{}

func newSdNotifier() (*sdNotifier, error)             { return nil, nil }
func (n *sdNotifier) send(msg string) error           { return nil }
func (n *sdNotifier) watchdogInterval() time.Duration { return 0 }
func (n *sdNotifier) close()                          {}

type hwWatchdog struct{}

func openHWWatchdog(path string) (*hwWatchdog, error) { return nil, errors.New("not built") }
func (w *hwWatchdog) feed() error                     { return nil }
func (w *hwWatchdog) interval() time.Duration         { return time.Second }
func (w *hwWatchdog) close(clean bool) error          { return nil }

func maxDgramQlen() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/unix/max_dgram_qlen")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
