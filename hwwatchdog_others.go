//go:build !unix

package main

import (
	"os"
	"time"
)

// hwWatchdog is a placeholder where watchdog devices do not exist.
type hwWatchdog struct{}

// openHWWatchdog returns an error wrapping os.ErrNotExist.
func openHWWatchdog(path string) (*hwWatchdog, error) {
	return nil, &os.PathError{Op: "open", Path: path, Err: os.ErrNotExist}
}

func (w *hwWatchdog) feed() error             { return nil }
func (w *hwWatchdog) interval() time.Duration { return 0 }
func (w *hwWatchdog) close(clean bool) error  { return nil }
