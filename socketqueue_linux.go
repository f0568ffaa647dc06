//go:build linux

package main

import (
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// Linux lets a Unix datagram socket queue only net.unix.max_dgram_qlen
// datagrams (10 by default; a sender gets EAGAIN or blocks beyond one
// more). The kernel copies the value into each socket when the socket is
// created (unix_create1 sets sk_max_ack_backlog), and the value belongs to
// the network namespace of the thread that creates the socket.
//
// So the observer does not need the machine's setting changed to get the
// queue its tracker capacity needs: it creates its socket on a thread that
// has moved into a network namespace of its own, sets that namespace's
// max_dgram_qlen, and moves the thread back. The socket keeps the
// namespace (and its queue limit) alive; everything else about it is as
// before: a path socket is found through the file system, so agents in any
// network namespace reach it, and credentials are translated by pid and
// user namespace, which do not change. The machine's setting and every
// other socket stay as they were. Only the listing in the machine's
// /proc/net/unix (ss -x) no longer shows the socket.
//
// This needs CAP_SYS_ADMIN (unshare(CLONE_NEWNET)) and a kernel with network
// namespaces (CONFIG_NET_NS); without them the socket is created as usual
// and the start-up log says why the queue is short.

// openQueuedSocket creates the observer's datagram socket (non-blocking,
// close-on-exec) with room for at least want queued datagrams when it can;
// want 0 takes the machine's net.unix.max_dgram_qlen as it is.
func openQueuedSocket(want int) (int, socketQueue, error) {
	var q socketQueue
	if sys, err := maxDgramQlen(); err == nil {
		q.system, q.qlen = sys, sys
	}
	if want > 0 && q.system < want {
		fd, err := socketInOwnNetns(want)
		if err == nil {
			q.qlen, q.private = want, true
			return fd, q, nil
		}
		q.why = err.Error()
	}
	fd, err := newSocket(unix.AF_UNIX, unix.SOCK_DGRAM)
	return fd, q, err
}

// socketInOwnNetns creates a datagram socket in a new network namespace
// whose max_dgram_qlen is qlen. unshare(2) and setns(2) move only the
// calling thread, so the goroutine stays locked to it until it is back. A
// thread that cannot be moved back is a state no start may go on from: the
// error says so and the observer exits.
func socketInOwnNetns(qlen int) (int, error) {
	runtime.LockOSThread()
	// The thread's own namespace: /proc/self/ns/net is the main thread's.
	orig, err := unix.Open("/proc/self/task/"+strconv.Itoa(unix.Gettid())+"/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return -1, os.NewSyscallError("open own network namespace", err)
	}
	defer unix.Close(orig)
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return -1, os.NewSyscallError("unshare(CLONE_NEWNET)", err)
	}
	fd, err := socketWithQlen(qlen)
	if serr := unix.Setns(orig, unix.CLONE_NEWNET); serr != nil {
		// Still locked: nothing else runs on this thread before the exit.
		os.Stderr.WriteString(sprintf("varta-watch: socket queue: cannot return to the observer's network namespace: %v\n", os.NewSyscallError("setns", serr)))
		os.Exit(1)
	}
	runtime.UnlockOSThread()
	return fd, err
}

// socketWithQlen sets the calling thread's network namespace's
// max_dgram_qlen (/proc/sys/net resolves against the calling thread) and
// creates the socket, which copies it.
func socketWithQlen(qlen int) (int, error) {
	if err := writeMaxDgramQlen(qlen); err != nil {
		return -1, err
	}
	if got, err := maxDgramQlen(); err != nil || got != qlen {
		return -1, errorf("%s reads %d after writing %d (%v)", maxDgramQlenPath, got, qlen, err)
	}
	fd, err := newSocket(unix.AF_UNIX, unix.SOCK_DGRAM)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	return fd, nil
}

func writeMaxDgramQlen(n int) error {
	fd, err := unix.Open(maxDgramQlenPath, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("open "+maxDgramQlenPath, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(strconv.Itoa(n))); err != nil {
		return os.NewSyscallError("write "+maxDgramQlenPath, err)
	}
	return nil
}
