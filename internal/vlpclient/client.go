//go:build unix

package vlpclient

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Client sends datagrams from an unbound AF_UNIX/SOCK_DGRAM socket to one
// observer path. It is not safe for concurrent use.
type Client struct {
	fd   int
	addr unix.SockaddrUnix
}

// maxPathLen is the room in sockaddr_un.sun_path less its terminating NUL.
const maxPathLen = len(unix.RawSockaddrUnix{}.Path) - 1

// Dial opens a non-blocking, close-on-exec datagram socket that sends to
// the observer socket at path. Nothing is sent and path need not exist yet:
// like an agent, the client finds out at each Send.
func Dial(path string) (*Client, error) {
	if path == "" {
		return nil, errors.New("vlpclient: empty socket path")
	}
	if len(path) > maxPathLen {
		return nil, fmt.Errorf("vlpclient: socket path %q is %d bytes, longer than the %d sockaddr_un allows", path, len(path), maxPathLen)
	}
	fd, err := openSocket()
	if err != nil {
		return nil, err
	}
	return &Client{fd: fd, addr: unix.SockaddrUnix{Name: path}}, nil
}

// Send sends b as one datagram with sendto(2). When the observer's receive
// queue is full (EAGAIN, ENOBUFS) the datagram is dropped, as agents drop
// beats: Send returns false and a nil error. EINTR is retried.
func (c *Client) Send(b []byte) (sent bool, err error) {
	for {
		err := unix.Sendto(c.fd, b, 0, &c.addr)
		if err == unix.EINTR {
			continue
		}
		return sendResult("sendto", err)
	}
}

func sendResult(syscall string, err error) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case isQueueFull(err):
		return false, nil
	default:
		return false, os.NewSyscallError(syscall, err)
	}
}

// isQueueFull reports whether a send failed only because the datagram did
// not fit: on Linux a non-blocking sender gets EAGAIN once the receiver
// holds net.unix.max_dgram_qlen datagrams or its own send buffer is full;
// ENOBUFS is the BSD equivalent.
func isQueueFull(err error) bool {
	return err == unix.EAGAIN || err == unix.EWOULDBLOCK || err == unix.ENOBUFS
}

// Close closes the socket. Closing twice returns an error.
func (c *Client) Close() error {
	if c.fd < 0 {
		return os.NewSyscallError("close", unix.EBADF)
	}
	fd := c.fd
	c.fd = -1
	return os.NewSyscallError("close", unix.Close(fd))
}
