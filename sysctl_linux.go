package main

import (
	"strconv"
	"strings"
)

const maxDgramQlenPath = "/proc/sys/net/unix/max_dgram_qlen"

// maxDgramQlen returns net.unix.max_dgram_qlen: how many datagrams the
// kernel queues on a Unix datagram socket before senders block or get
// EAGAIN (default 10). The kernel copies the value into each socket when the
// socket is created (unix_create1 sets sk_max_ack_backlog), so raising it
// helps only sockets created afterwards: restart the observer after
// `sysctl -w net.unix.max_dgram_qlen=N`. The value is per network namespace.
func maxDgramQlen() (int, error) {
	return readMaxDgramQlen(maxDgramQlenPath)
}

func readMaxDgramQlen(path string) (int, error) {
	b, err := readFile(path, 64)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 0, errorf("%s: %q is not a queue length", path, strings.TrimSpace(string(b)))
	}
	return n, nil
}
