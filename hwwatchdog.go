//go:build unix

package main

import (
	"errors"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// hwWatchdog feeds a watchdog device such as /dev/watchdog.
//
// Linux watchdog API (Documentation/watchdog/watchdog-api.rst): opening the
// device starts the timer, every write restarts it, and closing it stops the
// timer only if the last write contained the magic character 'V' (and the
// driver was not built with nowayout). Drivers clear the magic flag on every
// write before looking for 'V', so the feed byte must not be 'V': a crash
// after a feed then leaves the timer running and the board reboots, which is
// the point.
type hwWatchdog struct {
	fd      int
	path    string
	timeout time.Duration // the device's timeout, 0 when unknown
	feedBuf [1]byte
}

const (
	hwWatchdogFeedByte  = 0
	hwWatchdogMagicByte = 'V'

	// hwWatchdogDefaultInterval is used when the device does not say its
	// timeout. Linux drivers default to timeouts of tens of seconds; 1s
	// leaves room even for the shortest ones in common use.
	hwWatchdogDefaultInterval = time.Second
	hwWatchdogMinInterval     = 100 * time.Millisecond
)

// openHWWatchdog opens the watchdog device write-only and close-on-exec.
// On Linux this arms the watchdog: from here on the loop must feed it.
// The error names the path (an *os.PathError).
func openHWWatchdog(path string) (*hwWatchdog, error) {
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	w := &hwWatchdog{fd: fd, path: path, timeout: hwWatchdogTimeout(fd)}
	w.feedBuf[0] = hwWatchdogFeedByte
	return w, nil
}

// feed restarts the device's timer by writing one byte with write(2), the
// feed every driver understands. It allocates nothing unless it fails.
// A nil watchdog does nothing.
func (w *hwWatchdog) feed() error {
	if w == nil {
		return nil
	}
	return w.write(w.feedBuf[:])
}

func (w *hwWatchdog) write(b []byte) error {
	if w.fd < 0 {
		return os.ErrClosed
	}
	for {
		n, err := unix.Write(w.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "write", Path: w.path, Err: err}
		}
		if n != len(b) {
			return &os.PathError{Op: "write", Path: w.path, Err: io.ErrShortWrite}
		}
		return nil
	}
}

// interval returns how often the loop should feed: half the device timeout
// when the device reports it (WDIOC_GETTIMEOUT on Linux), else 1s; never
// below 100ms. A nil watchdog returns 0.
func (w *hwWatchdog) interval() time.Duration {
	if w == nil {
		return 0
	}
	return hwWatchdogFeedInterval(w.timeout)
}

func hwWatchdogFeedInterval(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		return hwWatchdogDefaultInterval
	}
	return max(timeout/2, hwWatchdogMinInterval)
}

// close writes the magic byte 'V' when clean, so that the driver disarms the
// watchdog, and then closes the device. After an unclean close the timer
// keeps running and, unless something else feeds it, the board resets.
// Calling close again, or on nil, does nothing.
func (w *hwWatchdog) close(clean bool) error {
	if w == nil || w.fd < 0 {
		return nil
	}
	var magicErr error
	if clean {
		magicErr = w.write([]byte{hwWatchdogMagicByte})
	}
	closeErr := unix.Close(w.fd)
	w.fd = -1
	if closeErr != nil {
		closeErr = &os.PathError{Op: "close", Path: w.path, Err: closeErr}
	}
	return errors.Join(magicErr, closeErr)
}
