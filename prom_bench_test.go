package main

import (
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"varta-watch/internal/vlpclient"
)

// BenchmarkScrapeRender4096 renders the /metrics body for 4096 tracked
// agents, slice by slice as the loop does; body-bytes is its size.
func BenchmarkScrapeRender4096(b *testing.B) {
	p := newRenderServer(b, 4096)
	p.self.init()
	now := monoNow()
	for i := 0; i < 4096; i++ {
		addAgent(p, uint32(100_000+i), uint64(1000+i), Status(i%4), now, "agent-name-xyz")
	}
	steps := benchRender(b, p, now)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(steps)/1000, "µs/slice")
}

// benchRender renders whole scrapes of p, b.N times, reports the body
// size and the number of slices, and returns the latter.
func benchRender(b *testing.B, p *promServer, now int64) int {
	buf := make([]byte, 0, 2*promOutChunk)
	var size, steps int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var c renderCursor
		p.startRender(&c, now)
		size, steps = 0, 0
		for !c.done() {
			buf = p.renderStep(buf[:0], &c, now)
			size += len(buf)
			steps++
		}
	}
	b.ReportMetric(float64(size), "body-bytes")
	b.ReportMetric(float64(steps), "slices")
	return steps
}

// BenchmarkScrapeHTTP4096 serves whole scrapes of 4096 agents over a real
// loopback connection (accept, parse, render, send, close).
func BenchmarkScrapeHTTP4096(b *testing.B) {
	o := newLoopObserver(b, 4096, 10_000)
	c := newScrapeClient(b, o, "GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
	var size int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		size = c.scrape(b, o, nil)
	}
	b.ReportMetric(float64(size), "response-bytes")
}

// BenchmarkStallDuringScrape4096 runs the real event loop (o.iterate) with
// 4096 tracked agents while a scrape of all of them is served, and one
// agent's stall deadline falls 1 ms into the scrape. Meanwhile a sender
// beats into the VLP socket at 4000 frames/s (4096 agents at 1 s).
//
//   - p50/p99/max-stall-delay-ms: lateness of that stall (bound: 2 ms);
//   - max-loop-step-µs: the longest loop iteration during the scrapes, wall
//     clock (includes time the OS gave the CPU to other processes);
//   - max-loop-step-cpu-µs: the same in this thread's CPU time: the work
//     the loop itself did in its longest step;
//   - steps-over-1ms: iterations whose wall time exceeded 1 ms;
//   - queue-full-sends: sends refused because the socket queue
//     (net.unix.max_dgram_qlen) was full: each is a lost beat.
func BenchmarkStallDuringScrape4096(b *testing.B) {
	o := newLoopObserver(b, 4096, 1000)
	tr := o.tr
	far := monoNow() + int64(time.Hour)
	var d int32 = noSlot
	for i := range tr.slots {
		if d == noSlot {
			d = int32(i)
			continue
		}
		tr.slots[i].lastBeat, tr.slots[i].status = far, StatusStall
		tr.moveTo(int32(i), slotStalled)
	}
	c := newScrapeClient(b, o, "GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")

	cl, err := vlpclient.Dial(o.cfg.socket)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var stop atomic.Bool
	var full, sent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var f [FrameSize]byte
		pid := uint32(os.Getpid())
		for nonce := uint64(1); !stop.Load(); {
			for k := 0; k < 4; k++ {
				EncodeFrame(&f, Frame{Status: StatusOK, Pid: pid, Timestamp: uint64(monoNow()), Nonce: nonce})
				nonce++
				if ok, _ := cl.Send(f[:]); ok {
					sent.Add(1)
				} else {
					full.Add(1)
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var maxDelay, maxStep, maxCPU, over1ms int64
	delays := make([]int64, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := monoNow()
		tr.slots[d].lastBeat = now - o.threshold + 1_000_000
		tr.slots[d].status = StatusOK
		tr.moveTo(d, slotActive)
		before := o.stats.stallDelay.sumNs
		stalls := o.stats.stallDelay.count

		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := unix.Connect(fd, &c.sa); err != nil {
			b.Fatal(err)
		}
		unix.Write(fd, c.req)
		unix.SetNonblock(fd, true)
		eof := false
		for !eof || o.stats.stallDelay.count == stalls || o.prom.nconns > 0 {
			t0, c0 := monoNow(), threadCPU()
			if err := o.iterate(); err != nil {
				b.Fatal(err)
			}
			step := monoNow() - t0
			maxStep = max(maxStep, step)
			maxCPU = max(maxCPU, threadCPU()-c0)
			if step > 1_000_000 {
				over1ms++
			}
			for !eof {
				n, err := unix.Read(fd, c.buf[:])
				if n > 0 {
					continue
				}
				if err == nil {
					eof = true
					unix.Close(fd)
				}
				break
			}
		}
		maxDelay = max(maxDelay, o.stats.stallDelay.sumNs-before)
		delays = append(delays, o.stats.stallDelay.sumNs-before)
	}
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
	slices.Sort(delays)
	b.ReportMetric(float64(delays[len(delays)/2])/1e6, "p50-stall-delay-ms")
	b.ReportMetric(float64(delays[len(delays)*99/100])/1e6, "p99-stall-delay-ms")
	b.ReportMetric(float64(maxDelay)/1e6, "max-stall-delay-ms")
	b.ReportMetric(float64(maxStep)/1e3, "max-loop-step-µs")
	b.ReportMetric(float64(maxCPU)/1e3, "max-loop-step-cpu-µs")
	b.ReportMetric(float64(over1ms), "steps-over-1ms")
	b.ReportMetric(float64(full.Load()), "queue-full-sends")
	b.ReportMetric(float64(sent.Load()), "frames-sent")
}

// threadCPU is this thread's CPU time in ns (CLOCK_THREAD_CPUTIME_ID).
func threadCPU() int64 {
	var ts unix.Timespec
	unix.ClockGettime(clockThreadCPUTime, &ts)
	return ts.Nano()
}
