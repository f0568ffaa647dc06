//go:build linux

package main

// Benchmarks of agents by name (contract §9): the beat and stall paths
// and the scrape with 256 agent sections and 4096 pids spread over them.

import (
	"path/filepath"
	"strconv"
	"testing"
)

// agentsBenchObserver is an observer with the 256 sections of
// agentSectionsText (four distinct thresholds, 100 to 250 ms, scaled by
// scale) and 4096 tracked pids, comm agent-k for k < 255 spread over the
// sections by their comm.
func agentsBenchObserver(b testing.TB, extra ...string) *observer {
	o := newConfObserver(b, agentSectionsText(256), append([]string{"--tracker-capacity", "4096",
		"--export-file", filepath.Join(shortTempDir(b), "e.tsv")}, extra...)...)
	now := monoNow()
	for i := 0; i < 4096; i++ {
		pid := agentPid(i)
		EncodeFrame(o.sock.frame(), Frame{Pid: pid, Timestamp: 1, Nonce: 1})
		o.handleDatagram(recvResult{n: FrameSize, credPid: int32(pid), hasCred: true}, now, 0)
		sl := &o.tr.slots[o.tr.lookup(pid)]
		sl.commLen = uint8(copy(sl.comm[:], "agent-"+strconv.Itoa(i%255)))
	}
	o.setAgents(o.agents) // match them again, now that they have a comm
	if o.tr.pids[7].beating != 17 || len(o.tr.thr) != 4 {
		b.Fatalf("section a7 has %d pids, %d threshold classes", o.tr.pids[7].beating, len(o.tr.thr))
	}
	return o
}

// BenchmarkLoopBeatAgents256: one accepted beat of one of 4096 pids
// spread over 256 agent sections.
func BenchmarkLoopBeatAgents256(b *testing.B) {
	o := agentsBenchObserver(b)
	nonces := make([]uint64, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i & 4095
		nonces[k]++
		pid := agentPid(k)
		EncodeFrame(o.sock.frame(), Frame{Pid: pid, Timestamp: 1, Nonce: nonces[k] + 1})
		o.handleDatagram(recvResult{n: FrameSize, credPid: int32(pid), hasCred: true}, monoNow(), 0)
		if i&255 == 0 {
			o.fireDeadlines(monoNow())
		}
	}
}

// BenchmarkLoopStallAgents256: one stall surfaced at its own section's
// threshold, and the beat that re-arms it, among 4096 pids over 256
// sections with four thresholds.
func BenchmarkLoopStallAgents256(b *testing.B) {
	o := agentsBenchObserver(b)
	nonces := make([]uint64, 4096)
	for s := range o.tr.slots {
		o.tr.slots[s].lastBeat -= 300_000_000 // past every threshold, not yet due for retirement
	}
	for {
		if s, _ := o.tr.nearestActive(); s == noSlot {
			break
		}
		o.fireDeadlines(monoNow())
	}
	// The pids are made up: a liveness check that came due would retire
	// them (and move slots). On a slow machine the setup can outlast the
	// first checks (0.7 s after the beats above), so put them off. In the
	// loop each slot stalls again every 4096 iterations, its next check
	// 0.9 s or more ahead: that holds while an iteration takes under
	// 220 µs (it takes ~2.5).
	for s := range o.tr.slots {
		o.tr.slots[s].nextCheck = monoNow() + 3600_000_000_000
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i & 4095
		s := o.tr.lookup(agentPid(k))
		nonces[k]++
		now := monoNow()
		f := Frame{Pid: agentPid(k), Timestamp: 1, Nonce: nonces[k] + 1}
		o.accept(s, 0, &f, now-o.tr.threshold(&o.tr.slots[s]), now) // a beat whose deadline is now
		before := o.tr.slots[s].stalls
		o.fireDeadlines(now)
		if s2 := o.tr.lookup(agentPid(k)); s2 != s || o.tr.slots[s].stalls != before+1 {
			b.Fatalf("stall not surfaced (slot %d, now %d; stalls %d, were %d)", s, s2, o.tr.slots[s].stalls, before)
		}
	}
}

// BenchmarkScrapeRender4096Agents256 is BenchmarkScrapeRender4096 with the
// per-agent series of 256 sections added.
func BenchmarkScrapeRender4096Agents256(b *testing.B) {
	benchScrapeRenderAgents(b, "on")
}

// BenchmarkScrapeRender4096Agents256PidSeriesOff is the same scrape with
// --prom-pid-series off: the agent and observer series only (what a fleet
// that knows its agents by name sends its Prometheus).
func BenchmarkScrapeRender4096Agents256PidSeriesOff(b *testing.B) {
	benchScrapeRenderAgents(b, "off")
}

func benchScrapeRenderAgents(b *testing.B, pidSeries string) {
	o := agentsBenchObserver(b, "--prom-addr", "127.0.0.1:0", "--prom-pid-series", pidSeries)
	series := len(seriesOf(renderAll(o.prom, monoNow(), 0)))
	benchRender(b, o.prom, monoNow())
	b.ReportMetric(float64(series), "series")
}
