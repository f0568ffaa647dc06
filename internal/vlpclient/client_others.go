//go:build !unix

package vlpclient

import (
	"fmt"
	"os"
	"runtime"
)

// Client is not implemented on this system: VLP runs over Unix datagram
// sockets.
type Client struct{}

var errNotImplemented = fmt.Errorf("vlpclient: not implemented on %s: %w", runtime.GOOS, os.ErrNotExist)

// Dial returns an error wrapping os.ErrNotExist.
func Dial(path string) (*Client, error) { return nil, errNotImplemented }

// Send returns an error wrapping os.ErrNotExist.
func (c *Client) Send(b []byte) (sent bool, err error) { return false, errNotImplemented }

// SendAs returns an error wrapping os.ErrNotExist.
func (c *Client) SendAs(b []byte, pid uint32) (sent bool, err error) {
	return false, errNotImplemented
}

// Close returns an error wrapping os.ErrNotExist.
func (c *Client) Close() error { return errNotImplemented }
