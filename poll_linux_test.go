//go:build linux

package main

import (
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestEpollMsec(t *testing.T) {
	const day = int64(24 * time.Hour)
	for _, tc := range []struct {
		ns   int64
		want int
	}{
		{-1, -1},
		{-1 << 62, -1},
		{0, 0},
		{1, 1}, // rounded up: never early
		{999_999, 1},
		{1_000_000, 1},
		{1_000_001, 2},
		{100 * 1_000_000, 100},
		{24 * day, 2_073_600_000},
		{(1<<31 - 1) * 1_000_000, 1<<31 - 1},
		// Past what the kernel's int holds: capped, never wrapped to a
		// negative (forever) or a small value.
		{(1<<31-1)*1_000_000 + 1, 1<<31 - 1},
		{30 * day, 1<<31 - 1},
		{100 * 365 * day, 1<<31 - 1},
		{1<<63 - 1, 1<<31 - 1},
	} {
		if got := epollMsec(tc.ns); got != tc.want {
			t.Errorf("epollMsec(%d) = %d, want %d", tc.ns, got, tc.want)
		}
	}
}

// TestPollerWaitTimeout: a real epoll_wait with nothing ready returns
// after its timeout, not before, and a wake ends an endless wait.
func TestPollerWaitTimeout(t *testing.T) {
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	out := make([]pollEvent, 4)
	// A wait also ends early with nothing for a signal (EINTR: SIGCHLD of
	// another test's child, the runtime's preemption signals): then it is
	// waited again, as the loop does.
	start, n, errno := time.Now(), 0, unix.EINTR
	for try := 0; errno == unix.EINTR && try < 100; try++ {
		start = time.Now()
		n, errno = p.waitRaw(len(out), int64(20*time.Millisecond), false)
	}
	if errno != 0 || n != 0 {
		t.Fatalf("wait = %d, %v", n, errno)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("wait of 20ms returned after %v", d)
	}
	woke := make(chan struct{})
	go func() { defer close(woke); time.Sleep(10 * time.Millisecond); p.wake() }()
	defer func() { <-woke }() // before p.close: the fd must not be another test's by then
	n = 0
	for try := 0; n == 0 && err == nil && try < 100; try++ {
		n, err = p.wait(out, -1, false)
	}
	if err != nil || n != 1 || !p.isWake(out[0].fd) {
		t.Fatalf("wake: wait = %d %+v, %v", n, out[0], err)
	}
	p.drainWake()
	if n, _ := p.wait(out, 0, false); n != 0 {
		t.Fatalf("wake fd still ready after drainWake")
	}
}

// pollerWithPair returns a poller with fds[0], one end of a datagram
// socketpair, registered for reading; all are closed when t ends.
func pollerWithPair(t *testing.T) (*poller, [2]int) {
	t.Helper()
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	if err := p.add(fds[0], true, false); err != nil {
		t.Fatal(err)
	}
	return p, fds
}

// TestPollerArm: with its read interest off, a registered fd that is
// readable does not end a wait (a coalescing pause lets beats queue so);
// turned on again, level-triggered, it is reported at once.
func TestPollerArm(t *testing.T) {
	p, fds := pollerWithPair(t)
	if _, err := unix.Write(fds[1], []byte("beat")); err != nil {
		t.Fatal(err)
	}
	out := make([]pollEvent, 4)
	for _, step := range []struct {
		arm  bool
		want int
	}{{true, 1}, {false, 0}, {true, 1}} {
		if err := p.arm(fds[0], step.arm); err != nil {
			t.Fatal(err)
		}
		n, err := p.wait(out, 0, false)
		if err != nil || n != step.want || (n == 1 && (out[0].fd != fds[0] || !out[0].readable)) {
			t.Fatalf("armed %v, a datagram queued: wait = %d %+v, %v; want %d", step.arm, n, out[:n], err, step.want)
		}
	}
}

// TestPollerSubMillisecondWait: a wait under 1 ms (a coalescing pause at a
// short queue) is neither cut to nothing nor ended early, whether the
// kernel takes its nanoseconds (epoll_pwait2, Linux 5.11) or whole ms
// (epoll_wait, rounded up).
func TestPollerSubMillisecondWait(t *testing.T) {
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if !p.fine {
		t.Log("no epoll_pwait2 here (Linux before 5.11, or a seccomp filter): only epoll_wait is tried")
	}
	out := make([]pollEvent, 4)
	for _, fine := range []bool{p.fine, false} {
		for _, held := range []bool{false, true} {
			p.fine = fine
			start, n, errno := time.Now(), 0, unix.EINTR
			for try := 0; errno == unix.EINTR && try < 100; try++ { // a held wait: the runtime's preemption signals
				start = time.Now()
				n, errno = p.waitRaw(len(out), 300_000, held)
			}
			if errno != 0 || n != 0 {
				t.Fatalf("fine %v, held %v: wait = %d, %v", fine, held, n, errno)
			}
			if d := time.Since(start); d < 300*time.Microsecond {
				t.Fatalf("fine %v, held %v: a wait of 300 µs returned after %v", fine, held, d)
			}
		}
	}
}

// TestPollerHeldWait: a held wait (a raw syscall, the loop keeps its P)
// behaves as any other: it reports a ready fd, keeps its timeout with
// either syscall, and reports a wake from another goroutine.
func TestPollerHeldWait(t *testing.T) {
	p, fds := pollerWithPair(t)
	out := make([]pollEvent, 4)
	fine := p.fine
	for _, p.fine = range []bool{fine, false} {
		start, n, errno := time.Now(), 0, unix.EINTR
		for try := 0; errno == unix.EINTR && try < 100; try++ { // the runtime's preemption signals
			start = time.Now()
			n, errno = p.waitRaw(len(out), 4_000_000, true)
		}
		if errno != 0 || n != 0 {
			t.Fatalf("fine %v: held wait, nothing ready = %d, %v", p.fine, n, errno)
		}
		if d := time.Since(start); d < 4*time.Millisecond {
			t.Fatalf("fine %v: a held wait of 4 ms returned after %v", p.fine, d)
		}
		if _, err := unix.Write(fds[1], []byte("beat")); err != nil {
			t.Fatal(err)
		}
		if n, err := p.wait(out, heldWaitMax, true); err != nil || n != 1 || out[0].fd != fds[0] || !out[0].readable {
			t.Fatalf("fine %v: held wait, a datagram queued = %d %+v, %v", p.fine, n, out[:n], err)
		}
		var b [8]byte
		unix.Read(fds[0], b[:])
		woke := make(chan struct{})
		go func() { defer close(woke); time.Sleep(time.Millisecond); p.wake() }()
		// A wait may also end early with nothing (EINTR: a signal): then
		// the loop waits again, as here.
		n = 0
		var err error
		for until := time.Now().Add(5 * time.Second); n == 0 && err == nil && time.Now().Before(until); {
			n, err = p.wait(out, heldWaitMax, true)
		}
		<-woke // before p.close, or a Fatalf's return: the fd must not be another test's by then
		if err != nil || n != 1 || !p.isWake(out[0].fd) {
			t.Fatalf("fine %v: held wait, woken = %d %+v, %v", p.fine, n, out[:n], err)
		}
		p.drainWake()
	}
}

// TestHeldWaitKeepsTheP: with one P, a goroutine made runnable just before
// a held wait does not run during it (the runtime does not know the loop
// is in a syscall, so sysmon does not hand the P to it), while during a
// wait through the runtime it does (the P is handed off). This is the
// difference the held waits exist for (poll_linux.go).
func TestHeldWaitKeepsTheP(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS set in the environment")
	}
	if os.Getenv("VARTA_QEMU_USER") == "1" {
		// qemu-user delivers a signal when the syscall has returned, so a
		// preemption meant for the wait lands just after it.
		t.Skip("qemu-user: signals are delivered after the syscall, not during it")
	}
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var ranAt atomic.Int64
	conclusive := 0
	for try := 0; try < 40 && conclusive < 5; try++ {
		ranAt.Store(0)
		runtime.Gosched() // schedtick moves: sysmon has no reason to preempt for 10 ms
		go func() { ranAt.Store(monoNow()) }()
		before := monoNow()
		_, errno := p.waitRaw(1, 4_000_000, true)
		after := monoNow()
		if errno == unix.EINTR || after-before > 8_000_000 {
			continue // a signal, or a machine too busy to tell: again
		}
		r := ranAt.Load()
		if r != 0 && r < before {
			continue // a preemption before the wait let it run: again
		}
		// A preemption signal just after the wait may let it run then,
		// microseconds before after was read; during the wait is earlier.
		if r != 0 && r < after-1_000_000 {
			t.Fatalf("a goroutine ran %v into a held wait of 4 ms", time.Duration(r-before))
		}
		conclusive++
		for ranAt.Load() == 0 { // let it run before the next try
			runtime.Gosched()
		}
	}
	if conclusive == 0 {
		t.Skip("no held wait of 4 ms ended within 8 ms without a signal in 40 tries: the machine is too busy to tell")
	}
	ranAt.Store(0)
	runtime.Gosched()
	go func() { ranAt.Store(monoNow()) }()
	for until := time.Now().Add(10 * time.Second); ranAt.Load() == 0 && time.Now().Before(until); {
		p.waitRaw(1, 50_000_000, false)
	}
	if ranAt.Load() == 0 {
		t.Fatal("a goroutine did not run during 10 s of waits through the runtime")
	}
}
