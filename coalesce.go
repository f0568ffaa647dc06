package main

// Wakeup coalescing. At 4096 agents × 1 Hz a beat arrives every 244 µs,
// and an observer that wakes for each one spends most of its CPU time going
// to sleep and waking up, not judging frames. When beats arrive steadily
// and fast, the loop may let a few of them queue up and read them in one
// wake (one recvmmsg), as a NIC moderates its interrupts.
//
// The queue is small (net.unix.max_dgram_qlen, 10 by default), and a full
// queue drops beats, so the pause is chosen for the measured arrival rate
// to let in only a quarter of the queue on average; it never outlasts the
// next deadline (a stall is surfaced on time), nor coalesceMax, nor 1% of
// the threshold (a beat is recorded at most that late, so a stall is never
// surfaced later than 1% of the threshold after the agent's true silence),
// and there is none after a drain that found the queue filling faster than
// planned, nor at low rates, where waking per beat is cheap anyway.
//
// With the default queue this lets ~2 beats in per wake; with the queue
// the observer recommends at start for its tracker capacity (256 for 4096
// agents), up to coalesceMax's worth (measured in BENCHMARKS.md).

const (
	coalesceWindow  = 100_000_000 // ns over which the arrival rate is measured
	coalesceMax     = 5_000_000   // ns, the longest pause: under the 10 ms after which sysmon retakes the P of a syscall
	coalesceMinRate = 1000        // datagrams/s below which the loop never pauses
)

type coalescer struct {
	target      int64 // datagrams to let queue: a quarter of max_dgram_qlen; 0 disables
	maxPause    int64 // ns: coalesceMax, or 1% of the threshold if shorter
	windowStart int64
	windowCount int64
	interval    int64 // ns between datagrams over the last window, 0 unknown or too slow
	lastDrain   int64 // datagrams read in the last wake
}

func newCoalescer(qlen int, thresholdNs int64) coalescer {
	return coalescer{target: int64(qlen / 4), maxPause: min(coalesceMax, thresholdNs/100)}
}

// note records that a wake read n datagrams.
func (c *coalescer) note(n int64, now int64) {
	if c.target == 0 {
		return
	}
	c.lastDrain = n
	c.windowCount += n
	if c.windowStart == 0 {
		c.windowStart = now
		return
	}
	if d := now - c.windowStart; d >= coalesceWindow {
		c.interval = 0
		if c.windowCount*1_000_000_000 >= coalesceMinRate*d {
			c.interval = d / max(c.windowCount, 1)
		}
		c.windowStart, c.windowCount = now, 0
	}
}

// pause returns how long to wait before the next wait for events, given
// the ns until the next deadline (-1 none).
func (c *coalescer) pause(untilDeadline int64) int64 {
	if c.target == 0 || c.interval == 0 || c.lastDrain == 0 || c.lastDrain > 2*c.target {
		return 0
	}
	p := min(c.target*c.interval, c.maxPause)
	if untilDeadline >= 0 {
		p = min(p, untilDeadline)
	}
	return p
}
