//go:build linux

package main

import (
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// lockSocketPath serialises observers starting on the same socket path.
// Without it, two observers that start at the same instant on a stale
// socket can both find it stale; the second then unlinks the first one's
// fresh socket and binds its own, and the first runs on, deaf.
//
// The lock is a listening stream socket bound to an abstract name
// (Linux): the kernel releases it when the process dies, however it dies,
// so a crash never leaves a stale lock, and no file is created. The name
// is made of the device and inode of the socket's directory and the
// socket's file name, so every spelling of the path (relative, through a
// symlinked directory) takes the same lock. Abstract names belong to a
// network namespace: observers in different ones are not serialised (the
// connect test on the path still tells a live observer).
//
// An abstract name has no permissions: any local user may bind it first.
// So a name already taken is trusted only when its holder is root or this
// observer's own user (SO_PEERCRED of a connection to it; the kernel
// queues a connection without the holder's help, so a stopped observer
// answers too, lockBacklog starts at the most). Held by anyone else, or by
// something that does not listen, it is a squatter's: the start goes on
// without a lock, on the connect test of the path alone, and note says so
// for the log.
//
// It returns the lock's descriptor (close-on-exec: a recovery child must
// not hold it after the observer is gone), or busy with the holder's pid
// when another observer holds it. When no lock can be taken for another
// reason, fd is -1 and the start goes on without one.
func lockSocketPath(path string) (fd int, holder lockHolder) {
	dirPath, name := ".", path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		dirPath, name = path[:i+1], path[i+1:] // "/x" keeps "/", "a/b" "a/"
	}
	var dir unix.Stat_t
	if unix.Stat(dirPath, &dir) != nil {
		return -1, holder // bind will say what is wrong with the directory
	}
	prefix := "varta-watch/" + strconv.FormatUint(uint64(dir.Dev), 16) + "/" + strconv.FormatUint(uint64(dir.Ino), 16) + "/"
	if len(prefix)+len(name) > maxSocketPath {
		name = "#" + strconv.FormatUint(fnv64a(name), 16)
	}
	addr := &unix.SockaddrUnix{Name: "@" + prefix + name}
	fd, err := newSocket(unix.AF_UNIX, unix.SOCK_STREAM)
	if err != nil {
		return -1, holder
	}
	switch err := unix.Bind(fd, addr); err {
	case nil:
		if unix.Listen(fd, lockBacklog) != nil {
			unix.Close(fd)
			return -1, holder
		}
		return fd, holder
	case unix.EADDRINUSE:
		unix.Close(fd)
		return -1, lockHolderOf(addr)
	default:
		unix.Close(fd)
		return -1, holder
	}
}

// lockBacklog is how many connections of starting observers the lock
// queues unaccepted (the kernel takes one more, and caps it at
// net.core.somaxconn): each learns the holder's credentials at connect.
// Past it a connect fails (EAGAIN), and the start goes on without the lock
// until the loop has answered them (answerLock).
const lockBacklog = 64

// lockListenWait is how long a start waits for the holder of the lock's
// name to listen: an observer binds the name, then listens, and a start
// between the two is refused (ECONNREFUSED) by the observer that holds
// the lock. Only a name bound by something else stays refused.
const (
	lockListenWait = 50 * time.Millisecond
	lockListenStep = 2 * time.Millisecond
)

// lockHolderOf asks the holder of the lock's name who it is: busy when it
// is an observer of root or of this user, else a note on what holds it.
func lockHolderOf(addr *unix.SockaddrUnix) lockHolder {
	var h lockHolder
	var err error
	for waited := time.Duration(0); ; waited += lockListenStep {
		if h, err = askLock(addr); err != unix.ECONNREFUSED || waited >= lockListenWait {
			break
		}
		time.Sleep(lockListenStep)
	}
	switch err {
	case nil:
		return h
	case unix.ECONNREFUSED:
		return lockHolder{note: "the path's lock name is taken by a socket that does not listen, not an observer's lock"}
	case unix.EAGAIN:
		return lockHolder{note: "the queue of the path's lock is full: its holder does not answer (stopped, or flooded with connections)"}
	}
	return lockHolder{note: "cannot ask who holds the path's lock: " + err.Error()}
}

// askLock connects to the lock's name and reads who listens there.
func askLock(addr *unix.SockaddrUnix) (lockHolder, error) {
	fd, err := newSocket(unix.AF_UNIX, unix.SOCK_STREAM)
	if err != nil {
		return lockHolder{}, err
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, addr); err != nil {
		return lockHolder{}, err
	}
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return lockHolder{}, err
	}
	if cred.Uid == 0 || int(cred.Uid) == unix.Geteuid() {
		return lockHolder{busy: true, pid: cred.Pid}, nil
	}
	return lockHolder{note: "the path's lock name is taken by pid " + strconv.Itoa(int(cred.Pid)) +
		" of uid " + strconv.Itoa(int(cred.Uid)) + ", neither root nor this observer's user"}, nil
}

// watchLock has the loop answer the path's lock (answerLock), when there
// is one.
func (s *vlpSocket) watchLock(p *poller) error {
	if s.lock < 0 {
		return nil
	}
	return p.add(s.lock, true, false)
}

// unwatchLock takes the lock out of the poller before the socket is closed
// while the loop goes on (a reload): a recovery child between fork and exec
// still holds the lock's file for a moment, and until it is gone the
// poller would report the closed number, which a new descriptor may take.
func (s *vlpSocket) unwatchLock(p *poller) {
	if s.lock >= 0 {
		p.remove(s.lock)
	}
}

// answerLock takes the connections of observers that started on this path
// off the lock's queue and closes them: each learnt at connect who holds
// the lock (lockSocketPath). Unanswered, lockBacklog of them would fill
// the queue, and later starts would find the lock mute. It reports false
// when accept(2) fails for want of a resource (EMFILE, ENOBUFS…): the
// connection stays queued, and the loop stops watching the lock for a
// while instead of being woken by it at once, again and again.
func (s *vlpSocket) answerLock() bool {
	for i := 0; i < lockBacklog; i++ {
		fd, _, err := unix.Accept4(s.lock, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
			unix.Close(fd)
		case unix.EAGAIN, unix.EINTR, unix.ECONNABORTED:
			return true
		default:
			return false
		}
	}
	return true
}

// fnv64a is the 64-bit FNV-1a hash of s (hash/fnv costs the binary more).
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
