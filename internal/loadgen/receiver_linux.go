//go:build linux

package loadgen

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Receiver is the bare receiver: a bound datagram socket with SO_PASSCRED
// read by a plain blocking recvmsg(2) loop that only counts frames. It does
// what the observer must do at the least (take each datagram and its
// kernel credentials off the queue) and nothing else, so its rate is this
// machine's limit for one reader.
//
// recvmsg is issued with RawSyscall, as a C program would, bypassing the
// Go scheduler: through Syscall, a goroutine that only ever blocks in
// syscalls has its P retaken by sysmon at every call once it looks like a
// 10 ms hog, and each wakeup then costs futex wakes of other threads; the
// "limit" would measure the Go runtime instead of the kernel. Blocking in a
// raw syscall is safe here because the loop allocates nothing, SO_RCVTIMEO
// bounds each call, and the loop yields to the scheduler whenever a call
// returns without a datagram (timeout, or a preemption signal).
type Receiver struct {
	fd   int
	path string
	buf  [64]byte
	oob  [64]byte
	iov  unix.Iovec
	msg  unix.Msghdr
	pfd  [1]unix.PollFd
}

// ReceiverResult counts what a Receiver took off its socket.
type ReceiverResult struct {
	Frames    int64   `json:"frames"`     // 32-byte datagrams carrying credentials
	Other     int64   `json:"other"`      // any other datagram
	FirstMono int64   `json:"first_mono"` // CLOCK_MONOTONIC ns of the first frame
	LastMono  int64   `json:"last_mono"`  // … and of the last
	Rate      float64 `json:"frames_per_s"`
	// MaxGapUs is the longest time between two frames, and Gaps2ms how
	// many gaps exceeded 2 ms: at a steady rate, the moments the receiver
	// (or the sender) was not running.
	MaxGapUs float64 `json:"max_gap_us"`
	Gaps2ms  int64   `json:"gaps_over_2ms"`
}

// Listen binds a bare receiver at path (replacing a stale file there).
func Listen(path string) (*Receiver, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	os.Remove(path)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("loadgen: bind %s: %w", path, os.NewSyscallError("bind", err))
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("setsockopt SO_PASSCRED", err)
	}
	// A receive timeout lets the loop notice Stop without a poller.
	tv := unix.Timeval{Usec: 100_000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("setsockopt SO_RCVTIMEO", err)
	}
	r := &Receiver{fd: fd, path: path}
	r.iov.Base = &r.buf[0]
	r.iov.SetLen(len(r.buf))
	r.msg.Iov = &r.iov
	r.msg.SetIovlen(1)
	r.msg.Control = &r.oob[0]
	return r, nil
}

// Run receives until stop is closed and returns the counts.
func (r *Receiver) Run(stop <-chan struct{}) (ReceiverResult, error) {
	var res ReceiverResult
	for {
		r.msg.SetControllen(len(r.oob))
		n, _, e := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&r.msg)), unix.MSG_DONTWAIT)
		switch e {
		case 0:
		case unix.EINTR, unix.EAGAIN:
			// The runtime sees a raw syscall as running Go code, so a
			// stop-the-world (a GC) waits for this goroutine, and its
			// preemption signals interrupt recvmsg (EINTR; SO_RCVTIMEO
			// calls are never restarted). Yield here, or every retry
			// would start a fresh timeout before the world can stop.
			runtime.Gosched()
			if stopped(stop) {
				res.finish()
				return res, nil
			}
			// Wait for the next datagram instead of spinning: a spinning
			// receiver takes a whole core from the senders on a small
			// machine (the smoke test once took minutes that way). Under
			// a flood the queue is rarely empty, so this costs nothing there.
			r.pfd[0] = unix.PollFd{Fd: int32(r.fd), Events: unix.POLLIN}
			unix.Poll(r.pfd[:], 10)
			continue
		default:
			return res, os.NewSyscallError("recvmsg", e)
		}
		now := Mono()
		// The pid of the SCM_CREDENTIALS message follows its header.
		pid := binary.NativeEndian.Uint32(r.oob[unix.CmsgLen(0):])
		if n == FrameSize && r.msg.Controllen > 0 && pid != 0 {
			if res.Frames == 0 {
				res.FirstMono = now
			} else if gap := now - res.LastMono; gap > 2_000_000 {
				res.Gaps2ms++
				res.MaxGapUs = max(res.MaxGapUs, float64(gap)/1e3)
			}
			res.Frames++
			res.LastMono = now
		} else {
			res.Other++
		}
		if res.Frames&4095 == 0 && stopped(stop) {
			res.finish()
			return res, nil
		}
	}
}

func (res *ReceiverResult) finish() {
	if res.Frames > 1 && res.LastMono > res.FirstMono {
		res.Rate = float64(res.Frames-1) / (float64(res.LastMono-res.FirstMono) / 1e9)
	}
}

// Close closes the socket and removes its path.
func (r *Receiver) Close() error {
	err := unix.Close(r.fd)
	os.Remove(r.path)
	return os.NewSyscallError("close", err)
}

// batchSize is how many datagrams one recvmmsg of RunBatched takes: the
// observer's recvBatchSize.
const batchSize = 16

// mmsghdr is struct mmsghdr: a msghdr and the length received into it.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// RunBatched receives as the observer does at 4096 beats/s, and does
// nothing else: it sleeps period, then empties the queue with recvmmsg(2)
// 16 datagrams at a time, each with its SCM_CREDENTIALS and, with
// timestamps, its SO_TIMESTAMPNS arrival time, and counts the frames. Its
// CPU is what taking the beats off the queue costs any receiver that
// wakes every period: the floor under the observer's CPU. Sleeps and reads
// are raw syscalls, as the observer's held waits are.
func (r *Receiver) RunBatched(stop <-chan struct{}, period time.Duration, timestamps bool) (ReceiverResult, error) {
	var res ReceiverResult
	if timestamps {
		if err := unix.SetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return res, os.NewSyscallError("setsockopt SO_TIMESTAMPNS", err)
		}
	}
	var (
		bufs [batchSize][64]byte
		oobs [batchSize][256]byte
		iovs [batchSize]unix.Iovec
		hdrs [batchSize]mmsghdr
	)
	for i := range hdrs {
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(len(bufs[i]))
		hdrs[i].hdr.Iov = &iovs[i]
		hdrs[i].hdr.SetIovlen(1)
		hdrs[i].hdr.Control = &oobs[i][0]
	}
	next := Mono()
	for !stopped(stop) {
		// Through the scheduler once a turn, or sysmon takes the
		// goroutine that never leaves its raw syscalls for a hog.
		runtime.Gosched()
		next += int64(period)
		ts := unix.NsecToTimespec(next)
		for {
			_, _, e := unix.RawSyscall6(unix.SYS_CLOCK_NANOSLEEP, unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
			if e != unix.EINTR {
				break
			}
		}
		for {
			for i := range hdrs {
				hdrs[i].hdr.SetControllen(len(oobs[i]))
				hdrs[i].n = 0
			}
			n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&hdrs[0])), batchSize, unix.MSG_DONTWAIT, 0, 0)
			if e == unix.EINTR {
				continue
			}
			if e == unix.EAGAIN {
				break
			}
			if e != 0 {
				return res, os.NewSyscallError("recvmmsg", e)
			}
			now := Mono()
			for i := 0; i < int(n); i++ {
				if hdrs[i].n == FrameSize && hdrs[i].hdr.Controllen > 0 {
					if res.Frames == 0 {
						res.FirstMono = now
					}
					res.Frames++
					res.LastMono = now
				} else {
					res.Other++
				}
			}
			if int(n) < batchSize {
				break // the queue was empty when read
			}
		}
	}
	res.finish()
	return res, nil
}
