//go:build unix && !linux

package vlpclient

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

func openSocket() (int, error) {
	// Not every system here has SOCK_NONBLOCK|SOCK_CLOEXEC (macOS lacks
	// both), so do what the Go runtime does: hold ForkLock until the fd is
	// close-on-exec so no concurrent fork/exec inherits it.
	syscall.ForkLock.RLock()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("fcntl", err)
	}
	return fd, nil
}

// SendAs needs Linux's SCM_CREDENTIALS; elsewhere it returns an error
// wrapping os.ErrNotExist.
func (c *Client) SendAs(b []byte, pid uint32) (sent bool, err error) {
	return false, fmt.Errorf("vlpclient: SendAs is not implemented on %s: %w", runtime.GOOS, os.ErrNotExist)
}
