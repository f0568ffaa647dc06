//go:build !race

package main

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The hot paths of the loop allocate nothing after start-up (design.md).
// Each test drives a real observer on a real socket, sending from this
// process through a connected socket (write(2) allocates nothing either),
// and checks that the work was really done.

func TestAllocsReceiveAndRecordBeat(t *testing.T) {
	o := newTestObserver(t, "--export-file", filepath.Join(shortTempDir(t), "e.tsv"))
	fd := dialObserver(t, o)
	pid := uint32(os.Getpid())
	var frame [FrameSize]byte
	nonce := uint64(1)
	beat := func() {
		EncodeFrame(&frame, Frame{Status: StatusDegraded, Pid: pid, Timestamp: uint64(nonce), Nonce: nonce, Payload: 7})
		nonce++
		unix.Write(fd, frame[:])
		o.drainSocket()
	}
	beat() // a new pid: slot, /proc reads
	before := o.stats.beatsAccepted
	if allocs := testing.AllocsPerRun(500, beat); allocs != 0 {
		t.Errorf("receiving and recording a beat: %v allocations", allocs)
	}
	if got := o.stats.beatsAccepted - before; got != 501 {
		t.Fatalf("%d beats accepted, want 501", got)
	}
	if o.events.dirtySince == 0 || len(o.events.buf) < 501*20 {
		t.Fatalf("beats not recorded in the event buffer (%d bytes)", len(o.events.buf))
	}
}

func TestAllocsRejectedDatagrams(t *testing.T) {
	o := newTestObserver(t, "--export-file", filepath.Join(shortTempDir(t), "e.tsv"))
	fd := dialObserver(t, o)
	var bad, spoof [FrameSize]byte
	EncodeFrame(&bad, Frame{Status: StatusOK, Pid: 4, Nonce: 1})
	bad[20] ^= 1 // BadCrc
	EncodeFrame(&spoof, Frame{Status: StatusOK, Pid: 4, Nonce: 1})
	short := make([]byte, 7)
	run := func() {
		unix.Write(fd, bad[:])
		unix.Write(fd, spoof[:])
		unix.Write(fd, short)
		o.drainSocket()
	}
	if allocs := testing.AllocsPerRun(500, run); allocs != 0 {
		t.Errorf("decode error, mismatch and truncated datagram: %v allocations", allocs)
	}
	if o.stats.decodeErrors[ErrBadCrc] != 501 || o.stats.authFailures != 501 || o.stats.truncated != 501 {
		t.Fatalf("stats %+v", o.stats)
	}
}

func TestAllocsSurfaceStall(t *testing.T) {
	o := newTestObserver(t, "--export-file", filepath.Join(shortTempDir(t), "e.tsv"))
	fd := dialObserver(t, o)
	pid := uint32(os.Getpid())
	nonce := uint64(1)
	sendFrame(t, fd, Frame{Status: StatusOK, Pid: pid, Nonce: nonce})
	o.drainSocket()
	// The agent is this process: under qemu-user its /proc/self/stat start
	// time is the calling thread's and changes, which would look like a
	// reused pid when it beats again after its stall. Unknown start time:
	// no reuse check.
	o.tr.slots[o.tr.lookup(pid)].startTime = 0
	var b [FrameSize]byte // outside the closure: write(2)'s buffer escapes
	stallAndRearm := func() {
		// The deadline has passed: one stall. Then a beat re-arms it.
		o.fireDeadlines(o.tr.slots[o.tr.active.head].lastBeat + o.threshold + 1)
		nonce++
		EncodeFrame(&b, Frame{Status: StatusOK, Pid: pid, Nonce: nonce})
		unix.Write(fd, b[:])
		o.drainSocket()
	}
	if allocs := testing.AllocsPerRun(300, stallAndRearm); allocs != 0 {
		t.Errorf("surfacing a stall: %v allocations", allocs)
	}
	s := o.tr.lookup(pid)
	if s == noSlot || o.tr.slots[s].stalls != 301 || o.stats.stallDelay.count != 301 {
		t.Fatalf("stalls %d, delay observations %d; want 301", o.tr.slots[max(s, 0)].stalls, o.stats.stallDelay.count)
	}
}

func TestAllocsEventFileFlush(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "e.tsv")
	o := newTestObserver(t, "--export-file", path)
	e := event{kind: evBeat, pid: 4242, hasNonce: true, status: "ok", hasPayloadNum: true}
	var emitted int
	record := func() {
		// Enough lines to pass the soft limit, then the loop's flush. Line
		// length follows the clock's digits, so count bytes, not lines: at
		// a small uptime 1000 lines stay under the limit.
		for len(o.events.buf) < eventBufSoftLimit {
			e.ns = monoNow()
			e.nonce++
			o.emit(&e, e.ns)
			emitted++
		}
		now := monoNow()
		if !o.events.due(now) {
			t.Fatal("a full buffer is not due")
		}
		for !o.events.flushStep(now) {
		}
	}
	if allocs := testing.AllocsPerRun(20, record); allocs != 0 {
		t.Errorf("recording to the event file: %v allocations", allocs)
	}
	o.events.close()
	o.events = nil
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if evs := parseEvents(t, data); len(evs) != emitted {
		t.Fatalf("%d lines in the event file, want %d", len(evs), emitted)
	}
}

// beatTurn returns one turn of o's loop with a beat of this process
// waiting, each beat with the next nonce.
func beatTurn(t *testing.T, o *observer) func() {
	fd := dialObserver(t, o)
	pid := uint32(os.Getpid())
	var frame [FrameSize]byte
	nonce := uint64(1)
	return func() {
		EncodeFrame(&frame, Frame{Status: StatusOK, Pid: pid, Nonce: nonce})
		nonce++
		unix.Write(fd, frame[:])
		if err := o.iterate(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAllocsLoopIteration: a whole turn of the loop (epoll_wait, drain,
// deadlines, timeout computation) with a beat waiting allocates nothing.
func TestAllocsLoopIteration(t *testing.T) {
	o := newTestObserver(t, "--export-file", filepath.Join(shortTempDir(t), "e.tsv"))
	turn := beatTurn(t, o)
	turn()
	before := o.stats.beatsAccepted
	if allocs := testing.AllocsPerRun(200, turn); allocs != 0 {
		t.Errorf("one loop iteration with a beat: %v allocations", allocs)
	}
	if got := o.stats.beatsAccepted - before; got != 201 {
		t.Fatalf("%d beats accepted, want 201", got)
	}
}

// TestAllocsLoopIterationPausing: a turn that pauses to let beats gather
// (its wait without the socket's interest, then the drain) allocates
// nothing either.
func TestAllocsLoopIterationPausing(t *testing.T) {
	o := newTestObserver(t, "--export-file", filepath.Join(shortTempDir(t), "e.tsv"), "--threshold-ms", "1500")
	if !o.poll.fine {
		t.Skip("no epoll_pwait2 here: a pause under 1 ms is none")
	}
	o.coal = newCoalescer(256, o.threshold)
	o.coal.maxPause = 100_000 // 0.1 ms a turn
	o.coal.interval = 244_140
	o.coal.lastDrain = 1
	o.coal.windowStart = 1 << 62 // no new rate measured: the interval stays
	turn := beatTurn(t, o)
	turn()
	before := o.stats.beatsAccepted
	if allocs := testing.AllocsPerRun(200, turn); allocs != 0 {
		t.Errorf("one pausing loop iteration with a beat: %v allocations", allocs)
	}
	if got := o.stats.beatsAccepted - before; got != 201 || o.sockArmed {
		t.Fatalf("%d beats accepted, socket armed %v; want 201 read after pauses", got, o.sockArmed)
	}
}
