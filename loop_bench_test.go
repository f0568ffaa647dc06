//go:build linux

package main

// Benchmarks of the loop's per-event work, with b.ReportAllocs: a beat, a
// beat read off the real socket, and a stall. make bench runs them and
// folds allocs/op into its table (the target is 0 after warm-up).

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// benchObserver builds an observer on a real socket and event file in a
// fresh directory, with the log going to /dev/null (a stall logs a line).
func benchObserver(b *testing.B, capacity int, thresholdMs int64) *observer {
	b.Helper()
	dir, err := os.MkdirTemp("", "vwb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { devnull.Close() })
	log := newLogger(false, devnull)
	cfg := defaultConfig()
	cfg.socket = filepath.Join(dir, "s.sock")
	cfg.exportFile = filepath.Join(dir, "events.tsv")
	cfg.thresholdMs = thresholdMs
	cfg.trackerCapacity = capacity
	o, err := newObserver(cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(o.closeAll)
	return o
}

// agentPid returns the i-th fake agent pid; pids above pid_max exist
// nowhere, so /proc lookups fail fast as for a vanished agent.
func agentPid(i int) uint32 { return uint32(5_000_000 + i) }

// BenchmarkLoopBeat: one accepted beat from one of 4096 tracked agents,
// decoded, authenticated, tracked and written to the event file buffer
// (flushed by the loop's deadline step, as in the daemon).
func BenchmarkLoopBeat(b *testing.B) {
	const agents = 4096
	o := benchObserver(b, agents, 60_000)
	nonces := make([]uint64, agents)
	beat := func(i int) {
		nonces[i]++
		pid := agentPid(i)
		EncodeFrame(o.sock.frame(), Frame{Pid: pid, Timestamp: 1, Nonce: nonces[i]})
		now := monoNow()
		o.handleDatagram(recvResult{n: FrameSize, credPid: int32(pid), hasCred: true}, now, 0)
		if i&255 == 0 {
			o.fireDeadlines(now)
		}
	}
	for i := 0; i < agents; i++ { // warm-up: every agent known
		beat(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		beat(i & (agents - 1))
	}
	b.StopTimer()
	if o.stats.beatsAccepted != uint64(agents+b.N) {
		b.Fatalf("accepted %d beats, want %d", o.stats.beatsAccepted, agents+b.N)
	}
}

// BenchmarkLoopRecvBeat: one beat through the kernel, sent from this
// process to the observer's socket and read by the loop's drain with its
// credentials. The time includes the sender's sendmsg(2).
func BenchmarkLoopRecvBeat(b *testing.B) {
	o := benchObserver(b, 16, 60_000)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: o.cfg.socket}); err != nil {
		b.Fatal(err)
	}
	var frame [FrameSize]byte
	pid := uint32(os.Getpid())
	for i := 0; i < b.N+100; i++ {
		if i == 100 {
			b.ReportAllocs()
			b.ResetTimer()
		}
		EncodeFrame(&frame, Frame{Pid: pid, Timestamp: 1, Nonce: uint64(i + 1)})
		if _, err := unix.Write(fd, frame[:]); err != nil {
			b.Fatal(err)
		}
		o.drainSocket()
		if i&255 == 0 {
			o.fireDeadlines(monoNow())
		}
	}
	b.StopTimer()
	if o.stats.beatsAccepted != uint64(b.N+100) {
		b.Fatalf("accepted %d beats, want %d", o.stats.beatsAccepted, b.N+100)
	}
}

// BenchmarkLoopStall: one stall surfaced by the deadline step (histogram,
// event line, log line), and the beat that re-arms it, among 4096 agents.
func BenchmarkLoopStall(b *testing.B) {
	const agents = 4096
	o := benchObserver(b, agents, 1000)
	nonces := make([]uint64, agents)
	for i := 0; i < agents; i++ {
		nonces[i] = 1
		pid := agentPid(i)
		EncodeFrame(o.sock.frame(), Frame{Pid: pid, Timestamp: 1, Nonce: 1})
		o.handleDatagram(recvResult{n: FrameSize, credPid: int32(pid), hasCred: true}, monoNow(), 0)
	}
	// Age every slot far past its deadline, then stall them all once.
	for s := range o.tr.slots {
		o.tr.slots[s].lastBeat -= 2 * o.threshold
	}
	for o.tr.active.head != noSlot {
		o.fireDeadlines(monoNow())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i & (agents - 1)
		s := o.tr.lookup(agentPid(k))
		nonces[k]++
		now := monoNow()
		f := Frame{Pid: agentPid(k), Timestamp: 1, Nonce: nonces[k]}
		o.accept(s, 0, &f, now-o.threshold, now) // a beat whose deadline is now
		before := o.tr.slots[s].stalls
		o.fireDeadlines(now)
		if o.tr.slots[s].stalls != before+1 {
			b.Fatalf("stall not surfaced")
		}
	}
}
