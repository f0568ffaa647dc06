package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestNonceNewer(t *testing.T) {
	const (
		max    = ^uint64(0) // the terminal nonce
		window = uint64(1) << 20
	)
	for _, tc := range []struct {
		last, next uint64
		want       bool
	}{
		{1, 2, true},
		{1, 1000, true},
		{2, 2, false}, // duplicate
		{2, 1, false}, // replay
		{0, 1, true},  // first beat after a wrap to 0
		{0, 0, false},
		{5, max - 1, true},   // greater is newer, however far
		{max - 1, 0, true},   // the wrap of vlp-v0.2.md
		{max - 1, 1, true},   // the wrap, a beat lost
		{max - 1, max, true}, // the terminal frame after the last ordinary nonce
		{max, max, false},    // a second terminal frame
		{max - 1, max - 1, false},
		{max - 1, max - 2, false},
		// The wrap window: last ≥ 2^64−2^20 and next ≤ 2^20.
		{max - window + 1, 0, true},
		{max - window, 0, false},
		{max - window + 1, window, true},
		{max - window + 1, window + 1, false},
		{max - 1, window, true},
		{max - 1, window + 1, false},
		{max - window, window + 1, false},
		{window, window + 1, true},
		{window + 1, window, false},
	} {
		if got := nonceNewer(tc.last, tc.next); got != tc.want {
			t.Errorf("nonceNewer(%d, %d) = %v, want %v", tc.last, tc.next, got, tc.want)
		}
	}
}

// newTestObserver creates an observer in this process, bound to a socket
// in a fresh directory, its log going to /dev/null. Extra args are flags.
func newTestObserver(t testing.TB, args ...string) *observer {
	t.Helper()
	dir := shortTempDir(t)
	cfg, err := parseArgs(append([]string{"--socket", filepath.Join(dir, "s.sock"), "--threshold-ms", "100"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { devnull.Close() })
	log := newLogger(false, devnull)
	o, err := newObserver(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.closeAll)
	skipRecoveryUnderQemuUser(t, o)
	return o
}

// skipRecoveryUnderQemuUser skips a test whose observer runs recovery
// commands when the unit tests run under qemu-user (make test-qemu sets
// VARTA_QEMU_USER=1). qemu-user (Debian's 7.2) can leave the child it
// forks for a multithreaded guest blocked for ever before its exec: seen
// once in about twenty runs of make test, the recoverer's child a copy of
// the test binary holding the observer's sockets, every thread of both on
// a futex. On real ARM and MIPS kernels the recovery children are not
// affected; the spawn code is the host's, tested in the main run.
func skipRecoveryUnderQemuUser(t testing.TB, o *observer) {
	t.Helper()
	if o.rec != nil && os.Getenv("VARTA_QEMU_USER") == "1" {
		t.Skip("recovery children are not spawned under qemu-user: it can deadlock a forked child before exec")
	}
}

// dialObserver returns a datagram socket connected to o's socket, so that
// sending is a plain write(2) that allocates nothing.
func dialObserver(t testing.TB, o *observer) int {
	t.Helper()
	fd, err := newSocket(unix.AF_UNIX, unix.SOCK_DGRAM)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: o.cfg.socket}); err != nil {
		t.Fatal(err)
	}
	return fd
}

// sendFrame writes one frame to the observer from this process.
func sendFrame(t testing.TB, fd int, f Frame) {
	var b [FrameSize]byte
	EncodeFrame(&b, f)
	if _, err := unix.Write(fd, b[:]); err != nil {
		t.Fatal(err)
	}
}

// TestTrackPidReuse drives the not-newer branch of track with a real pid:
// a stale or replayed nonce from the same process is dropped, the same
// nonce from a process with another start time resets the slot.
func TestTrackPidReuse(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("start times come from /proc")
	}
	o := newTestObserver(t)
	// A child, not this process: under qemu-user /proc/self/stat (and
	// /proc/<own pid>/stat) is synthesised by qemu, with the start time of
	// the calling thread, so it changes as the goroutine moves between
	// threads and every check would see a "reused" pid. Another process's
	// stat comes from the kernel, as it does for a real agent.
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Skipf("no child process to stand for an agent: %v", err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	pid := uint32(child.Process.Pid)
	now := monoNow()
	o.track(pid, 0, &Frame{Status: StatusOK, Pid: pid, Nonce: 10}, now, now)
	s := o.tr.lookup(pid)
	if s == noSlot || o.tr.slots[s].startTime == 0 || o.tr.slots[s].beats != 1 {
		t.Fatalf("new pid not tracked with its start time: slot %d %+v", s, o.tr.slots[max(s, 0)])
	}
	o.track(pid, 0, &Frame{Status: StatusOK, Pid: pid, Nonce: 10}, now+1, now+1)
	o.track(pid, 0, &Frame{Status: StatusOK, Pid: pid, Nonce: 3}, now+2, now+2)
	if sl := o.tr.slots[s]; sl.beats != 1 || sl.nonce != 10 || o.stats.outOfOrder != 2 {
		t.Fatalf("same process, old nonces: beats %d nonce %d outOfOrder %d", sl.beats, sl.nonce, o.stats.outOfOrder)
	}
	// The process that owned the slot had another start time: this pid is
	// a new process now, and its nonce 1 is a first beat.
	// (/proc is asked at most once per reuseCheckInterval per pid.)
	o.tr.slots[s].startTime--
	o.tr.slots[s].stalls = 4
	later := now + 1 + reuseCheckInterval
	o.track(pid, 0, &Frame{Status: StatusDegraded, Pid: pid, Nonce: 1}, later, later)
	sl := o.tr.slots[s]
	if sl.beats != 1 || sl.stalls != 0 || sl.nonce != 1 || sl.status != StatusDegraded || sl.lastBeat != later ||
		sl.startTime != o.proc.startTime(pid) || o.stats.outOfOrder != 2 || o.tr.lookup(pid) != s {
		t.Fatalf("reused pid not reset: %+v, outOfOrder %d", sl, o.stats.outOfOrder)
	}
	checkTracker(t, o.tr)
}

// TestTimeoutIsNearestDeadline: the loop sleeps exactly until the next
// thing it has to do, and forever when there is nothing.
func TestTimeoutIsNearestDeadline(t *testing.T) {
	o := newTestObserver(t, "--threshold-ms", "100", "--export-file", filepath.Join(shortTempDir(t), "e.tsv"))
	const ms = int64(1_000_000)
	now := monoNow()
	if got := o.timeout(now); got != -1 {
		t.Fatalf("idle observer: timeout %d, want -1 (no wake-up)", got)
	}
	pid := uint32(os.Getpid())
	o.track(pid, 0, &Frame{Status: StatusOK, Pid: pid, Nonce: 1}, now, now)
	// The beat is buffered for the event file: flush first (100 ms after it,
	// the same as the stall deadline here), then the stall.
	if got := o.timeout(now + 30*ms); got != 70*ms {
		t.Fatalf("one beat: timeout %d, want %d", got, 70*ms)
	}
	o.events.flushStep(now + 30*ms)
	if got := o.timeout(now + 40*ms); got != 60*ms {
		t.Fatalf("after the flush: timeout %d, want the stall deadline in %d", got, 60*ms)
	}
	if got := o.timeout(now + 150*ms); got != 0 {
		t.Fatalf("stall overdue: timeout %d, want 0", got)
	}
	o.fireDeadlines(now + 150*ms)
	s := o.tr.lookup(pid)
	if o.tr.slots[s].list != slotStalled || o.tr.slots[s].stalls != 1 {
		t.Fatalf("no stall fired: %+v", o.tr.slots[s])
	}
	o.events.flushStep(now + 150*ms)
	// Stalled: next is the liveness check at last beat + 10 × threshold.
	if got := o.timeout(now + 200*ms); got != 800*ms {
		t.Fatalf("stalled: timeout %d, want %d", got, 800*ms)
	}
	o.fireDeadlines(now + 1000*ms) // alive: checked again a retirement period later
	o.events.flushStep(now + 1000*ms)
	if o.tr.slots[s].list != slotStalledOld {
		t.Fatalf("live stalled pid not moved to stalledOld: list %d", o.tr.slots[s].list)
	}
	if got := o.timeout(now + 1000*ms); got != 1000*ms {
		t.Fatalf("checked: timeout %d, want %d", got, 1000*ms)
	}
	// The nearest of several wins, whichever kind it is.
	o.stopAt = now + 1500*ms
	if got := o.timeout(now + 1000*ms); got != 500*ms {
		t.Fatalf("with --shutdown-after-secs: timeout %d, want %d", got, 500*ms)
	}
	o.signals.Store(sigHup)
	if got := o.timeout(now + 1000*ms); got != 0 {
		t.Fatalf("signal pending: timeout %d, want 0", got)
	}
}

// TestLateLoopJudgesBeatsByArrival: the loop reaching a beat after its
// pid's deadline (descheduled, or a long step) judges it by when the
// kernel queued it. A beat queued before the deadline re-arms without a
// stall; one queued after it owes a stall, surfaced before the beat counts.
func TestLateLoopJudgesBeatsByArrival(t *testing.T) {
	o := newTestObserver(t, "--threshold-ms", "100")
	const ms = int64(1_000_000)
	pid := uint32(os.Getpid())
	t0 := monoNow()
	o.track(pid, 0, &Frame{Status: StatusOK, Pid: pid, Nonce: 1}, t0, t0)
	s := o.tr.lookup(pid)
	// No pid-reuse check on the beat after the silence: under qemu-user
	// /proc/self/stat has the calling thread's start time, which changes
	// as the goroutine moves between threads (see TestTrackPidReuse).
	o.tr.slots[s].startTime = 0

	// Queued at 90 ms, read at 150 ms: in time.
	o.track(pid, 0, &Frame{Status: StatusOK, Pid: pid, Nonce: 2}, t0+90*ms, t0+150*ms)
	if sl := o.tr.slots[s]; sl.stalls != 0 || sl.lastBeat != t0+90*ms || sl.list != slotActive {
		t.Fatalf("beat queued before its deadline: stalls %d lastBeat %+d list %d", sl.stalls, sl.lastBeat-t0, sl.list)
	}
	// Queued at 195 ms (105 ms of silence), read at 200 ms: a stall first.
	o.track(pid, 0, &Frame{Status: StatusOK, Pid: pid, Nonce: 3}, t0+195*ms, t0+200*ms)
	sl := o.tr.slots[s]
	if sl.stalls != 1 || sl.beats != 3 || sl.status != StatusOK || sl.list != slotActive || sl.lastBeat != t0+195*ms {
		t.Fatalf("beat after a silence past the threshold: %+v", sl)
	}
	if o.stats.stallDelay.count != 1 || o.stats.stallDelay.sumNs != 10*ms {
		t.Fatalf("stall delay: %d observed, sum %d ns; want 1, 10ms (read at 200 ms, due at 190 ms)",
			o.stats.stallDelay.count, o.stats.stallDelay.sumNs)
	}
	checkTracker(t, o.tr)
}

func TestArrivalTimeConversion(t *testing.T) {
	o := newTestObserver(t, "--threshold-ms", "100")
	now, wall := clocksNow()
	o.wallOffset = wall - now
	// However long a datagram waited (a frozen observer), it counts from
	// when the kernel queued it.
	if at := o.arrivalTime(wall-10_000_000_000, now); at != now-10_000_000_000 {
		t.Fatalf("queued 10 s ago: arrival %v before now", time.Duration(now-at))
	}
	if at := o.arrivalTime(wall-5_000_000, now); at != now-5_000_000 {
		t.Fatalf("queued 5 ms ago: arrival %v before now", time.Duration(now-at))
	}
	// Arrival times never go backwards, nor come from the future.
	if got := o.arrivalTime(wall-20_000_000, now+2); got != now-5_000_000 {
		t.Fatalf("arrival went backwards: %d", got-now)
	}
	if got := o.arrivalTime(wall+1_000_000, now+3); got != now+3 {
		t.Fatalf("timestamp from the future: %d, want now", got-now)
	}
	if at := o.arrivalTime(0, now+4); at != now+4 {
		t.Fatalf("no timestamp: %d, want now", at-now)
	}
	// Nor before an instant up to which the queue was read empty.
	o.drainedTo = now + 10
	if at := o.arrivalTime(wall+5, now+20); at != now+10 {
		t.Fatalf("arrival before the queue was last empty: %d, want %d", at-now, 10)
	}
}

// TestClockStepDistrustsQueuedStamps: after the wall clock is set, the
// stamps of datagrams still queued are of the old clock: they count from
// when they are read until the queue has been found empty once; then the
// new offset converts them.
func TestClockStepDistrustsQueuedStamps(t *testing.T) {
	o := newTestObserver(t, "--threshold-ms", "100")
	now, wall := clocksNow()
	o.wallOffset = wall - now
	o.checkClockStep(now, wall+50_000) // 50 µs: a thread descheduled between the two reads
	if o.clockStepped || o.wallOffset != wall-now {
		t.Fatalf("50 µs taken for a step: stepped %v, offset moved by %d", o.clockStepped, o.wallOffset-(wall-now))
	}
	const step = 3_600_000_000_000 // the wall clock set an hour ahead
	o.wallOffset -= step           // as if the clock had been an hour behind until now
	mono, w := clocksNow()
	o.checkClockStep(mono, w)
	if !o.clockStepped {
		t.Fatal("a step of an hour not detected")
	}
	if d := o.wallOffset - (w - mono); d < -clockStepTolerance || d > clockStepTolerance {
		t.Fatalf("offset after the step is %d ns off", d)
	}
	if at := o.arrivalTime(w-step-1_000_000, mono); at != mono {
		t.Fatalf("a stamp of the old clock counted from %d, want when read", at-mono)
	}
	o.drained(mono)
	mono2, w2 := clocksNow()
	// The offset was read from other clock readings than mono2 and w2: the
	// two agree within the time between a pair's reads (µs, more under
	// qemu-user), well within the step tolerance.
	want := max(mono2-2_000_000, mono)
	if at := o.arrivalTime(w2-2_000_000, mono2); at < want-clockStepTolerance || at > want+clockStepTolerance {
		t.Fatalf("after the queue was empty: arrival %d before now, want about %d", mono2-at, mono2-want)
	}
}

// TestClocksNowAgree: the pair read from one time.Now matches the separate
// monotonic and wall readings.
func TestClocksNowAgree(t *testing.T) {
	m0 := monoNow()
	mono, wall := clocksNow()
	m1, w1 := monoNow(), time.Now().UnixNano()
	if mono < m0 || mono > m1 {
		t.Fatalf("clocksNow mono %d outside [%d, %d]", mono, m0, m1)
	}
	if d := w1 - wall; d < 0 || d > int64(time.Second) {
		t.Fatalf("clocksNow wall is %v before time.Now", time.Duration(d))
	}
	// The offset to the raw clock is learnt at start to within the time
	// between its two readings: a few µs natively, over a millisecond seen
	// under qemu-user on a loaded machine.
	if raw := monoRaw(); raw < mono-int64(100*time.Millisecond) || raw-mono > int64(time.Second) {
		t.Fatalf("clocksNow mono %d vs CLOCK_MONOTONIC %d", mono, raw)
	}
}
