package vlpclient

import (
	"os"

	"golang.org/x/sys/unix"
)

func openSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	return fd, nil
}

// SendAs sends b like Send, with sendmsg(2) and an SCM_CREDENTIALS message
// naming pid and this process's uid and gid, so an observer with
// SO_PASSCRED sees the datagram as coming from pid. unix(7): the kernel
// accepts a pid other than the caller's own only with CAP_SYS_ADMIN, and
// only for a process that exists (EPERM, ESRCH otherwise). Load generators
// and spoof tests use it to stand in for many agents.
func (c *Client) SendAs(b []byte, pid uint32) (sent bool, err error) {
	oob := unix.UnixCredentials(&unix.Ucred{
		Pid: int32(pid),
		Uid: uint32(os.Getuid()),
		Gid: uint32(os.Getgid()),
	})
	for {
		err := unix.Sendmsg(c.fd, b, oob, &c.addr, 0)
		if err == unix.EINTR {
			continue
		}
		return sendResult("sendmsg", err)
	}
}
