//go:build linux

package main

import (
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

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
// namespaces (CONFIG_NET_NS). Without CAP_SYS_ADMIN the observer asks a
// helper in a user namespace of its own (socketFromUserns); where that
// fails too, the socket is created as usual and the start-up log says why
// the queue is short.

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
		fd, uerr := socketFromUserns(want)
		if uerr == nil {
			q.qlen, q.private, q.userns = want, true, true
			return fd, q, nil
		}
		q.why = err.Error() + "; " + uerr.Error()
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

// Without CAP_SYS_ADMIN an observer cannot unshare a network namespace.
// But where the kernel lets any user create a user namespace (Debian's
// and Ubuntu's kernels do by default), a process that is
// root in a new user namespace may create a network namespace owned by it
// and set that namespace's max_dgram_qlen. A threaded process such as the
// observer may not unshare a user namespace (unshare(2): EINVAL), so a
// helper does it: the observer's own binary, started with CLONE_NEWUSER |
// CLONE_NEWNET and the observer's uid and gid mapped to root, creates the
// socket there, passes it back over a socketpair with SCM_RIGHTS and
// exits. The socket keeps both namespaces alive. Credentials are
// translated for the reader (the observer, in the machine's user and pid
// namespaces), so every pid and uid reads as before. User namespaces can
// be switched off: user.max_user_namespaces = 0,
// kernel.unprivileged_userns_clone = 0, an AppArmor or seccomp policy, or
// systemd's RestrictNamespaces=. A read-only /proc/sys stops it too
// (systemd's ProtectKernelTunables=). Then the helper fails, and the
// observer goes on with the machine's queue and says why.

// socketHelperEnv makes the binary socketFromUserns's helper instead of an
// observer (socketHelper); its value is the queue limit wanted.
const socketHelperEnv = "VARTA_WATCH_SOCKET_HELPER"

// socketHelperTimeout bounds the wait for the helper's answer.
const socketHelperTimeout = 5000 // ms

// socketFromUserns creates a datagram socket whose queue limit is qlen
// through a helper process in a new user and network namespace.
func socketFromUserns(qlen int) (int, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socketpair", err)
	}
	defer unix.Close(pair[0])
	closed := ^uintptr(0) // the helper's stdin, stdout and stderr: none
	attr := &syscall.ProcAttr{
		Env:   []string{socketHelperEnv + "=" + strconv.Itoa(qlen)},
		Files: []uintptr{closed, closed, closed, uintptr(pair[1])},
		Sys: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
			Pdeathsig:   syscall.SIGKILL,
		},
	}
	pid, _, err := syscall.StartProcess("/proc/self/exe", []string{"varta-watch (socket helper)"}, attr)
	unix.Close(pair[1])
	if err != nil {
		return -1, errorf("a user namespace of its own: %v", os.NewSyscallError("clone(CLONE_NEWUSER|CLONE_NEWNET)", err))
	}
	fd, err := receiveHelperSocket(pair[0])
	if err != nil {
		unix.Kill(pid, unix.SIGKILL)
	}
	var ws unix.WaitStatus
	for {
		if _, werr := unix.Wait4(pid, &ws, 0, nil); werr != unix.EINTR {
			break
		}
	}
	if err != nil {
		return -1, errorf("a user namespace of its own: %v", err)
	}
	return fd, nil
}

// receiveHelperSocket reads the helper's answer: one byte and the socket,
// or the text of its error.
func receiveHelperSocket(fd int) (int, error) {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, socketHelperTimeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, os.NewSyscallError("poll", err)
		}
		if n == 0 {
			return -1, errorf("the socket helper did not answer within %d ms", socketHelperTimeout)
		}
		break
	}
	var buf [512]byte
	var oob [64]byte
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	msg := unix.Msghdr{Iov: &iov, Control: &oob[0]}
	msg.SetIovlen(1)
	msg.SetControllen(len(oob))
	r, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_CMSG_CLOEXEC)
	if errno != 0 {
		return -1, os.NewSyscallError("recvmsg", errno)
	}
	n := int(r)
	var fds [maxRightsFds]int32
	_, _, nfds := parseControl(oob[:msg.Controllen], &fds)
	if nfds == 1 && n == 1 {
		return int(fds[0]), nil
	}
	for _, f := range fds[:nfds] {
		unix.Close(int(f))
	}
	if n == 0 {
		return -1, errorf("the socket helper exited without an answer")
	}
	return -1, errorf("%s", buf[:n])
}

// socketHelper makes this process socketFromUserns's helper when the
// environment asks for it, and never returns then: it is root in a new user
// namespace that owns its new network namespace, sets that namespace's
// max_dgram_qlen, creates the socket and sends it to fd 3.
func socketHelper() {
	v := os.Getenv(socketHelperEnv)
	if v == "" {
		return
	}
	const parent = 3
	if typ, err := unix.GetsockoptInt(parent, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_SEQPACKET {
		// Not started by socketFromUserns: the variable leaked into an
		// observer's environment.
		os.Stderr.WriteString("varta-watch: " + socketHelperEnv + " is set in the environment; it is for varta-watch's own socket helper: unset it\n")
		os.Exit(2)
	}
	qlen, err := strconv.Atoi(v)
	if err != nil || qlen <= 0 {
		unix.Write(parent, []byte("socket helper: bad queue limit "+v))
		os.Exit(2)
	}
	fd, err := socketWithQlen(qlen)
	if err != nil {
		unix.Write(parent, []byte(err.Error()))
		os.Exit(1)
	}
	one := [1]byte{'k'}
	rights := unix.UnixRights(fd)
	iov := unix.Iovec{Base: &one[0]}
	iov.SetLen(1)
	msg := unix.Msghdr{Iov: &iov, Control: &rights[0]}
	msg.SetIovlen(1)
	msg.SetControllen(len(rights))
	if _, _, errno := unix.Syscall(unix.SYS_SENDMSG, parent, uintptr(unsafe.Pointer(&msg)), 0); errno != 0 {
		os.Exit(1)
	}
	os.Exit(0)
}
