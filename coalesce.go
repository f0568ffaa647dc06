package main

// Wakeup coalescing. At 4096 agents × 1 Hz a beat arrives every 244 µs,
// and an observer that wakes for each one spends most of its CPU time going
// to sleep and waking up, not judging frames (on the benchmark VM a wake
// costs ~20 µs of CPU, a beat's own work ~1 µs). When beats arrive steadily,
// the loop may let a few of them queue up and read them in one wake (one
// recvmmsg), as a NIC moderates its interrupts.
//
// A full queue drops beats, so the pause is chosen for the measured arrival
// rate to let in only a quarter of the socket's queue on average, and
// never so much that less than coalesceRoom of the queue's time is left:
// what a queue absorbs is a stretch of the loop not running (a vCPU the
// hypervisor did not schedule, another task on the CPU), and each beat the
// pause lets in is that much less of it. It never outlasts the next
// deadline (a stall is surfaced on time), nor coalesceMax, nor 1% of the
// threshold (a beat is recorded at most that late where the kernel gives no
// arrival time), and there is none after a drain that found the queue
// filling faster than planned, nor below coalesceMinRate, where a pause
// would rarely find a second beat.
//
// With the queue the observer gives its socket (256 for 4096 agents, 62 ms
// of beats) the pause is coalesceMax from coalesceMinRate up to ~7000
// beats/s: at most ~110 wakes a second however many agents beat. With the
// machine's default queue of 10 it pauses below 1000 beats/s (at 800/s
// the queue holds 12.5 ms of beats, the pause is 2.5 ms) and not at all at
// 4096 beats/s, where the whole queue is 2.4 ms: side by side with the
// bare receiver on the same queue, the observer lost 40 % more beats than
// it in the median round with a pause of 2 beats there, 9 % more with none
// (BENCHMARKS.md, session 8).
//
// The pause is a wait of the poller with the VLP socket's interest turned
// off (observer.iterate): it ends at its timeout or for anything else the
// loop serves, a metrics connection, a signal, a recovery child, and the
// turn then reads what gathered. So a scrape does not wait behind a pause
// (behind 9-ms nanosleeps, a scrape of 4096 agents took 16 ms instead of
// 3), and a pause that runs its course costs one syscall, not two: while
// the loop goes on pausing, the interest stays off and no second wait
// reports the socket before the read.
//
// coalesceMax stays under 10 ms because of the Go runtime's sysmon: it
// retakes the P of a syscall (here the pause's epoll_pwait2) that lasts
// over 10 ms, and after each retake it polls every 20 µs for a millisecond
// and more: ~60 wakeups for one saved.

const (
	coalesceWindow  = 100_000_000 // ns over which the arrival rate is measured
	coalesceMax     = 9_000_000   // ns, the longest pause: under the 10 ms after which sysmon retakes the P of a syscall
	coalesceMinRate = 200         // datagrams/s below which the loop never pauses: under two per coalesceMax
	coalesceRoom    = 10_000_000  // ns of beats the queue must still hold after a pause, at the measured rate
	// heldMinRate: datagrams/s from which every wait of the loop is a held
	// one, at most heldWaitMax (observer.iterate, poll_linux.go): a wait
	// the runtime sees cost 6–7 context switches a beat at 40 beats/s
	// with one P (~60 with two), a held wait of 9 ms at most ~2 a turn,
	// the turns that find no beat included: about even at 40/s.
	heldMinRate = 50
)

type coalescer struct {
	qlen        int64 // the socket's queue, datagrams
	target      int64 // datagrams to let queue: a quarter of max_dgram_qlen; 0 disables
	maxPause    int64 // ns: coalesceMax, or 1% of the threshold if shorter
	windowStart int64
	windowCount int64
	interval    int64 // ns between datagrams over the last window, 0 unknown or too slow
	lastDrain   int64 // datagrams read in the last wake
	fast        bool  // the last window's rate was at least heldMinRate
}

func newCoalescer(qlen int, thresholdNs int64) coalescer {
	return coalescer{qlen: int64(qlen), target: int64(qlen / 4), maxPause: min(coalesceMax, thresholdNs/100)}
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
		c.fast = c.windowCount*1_000_000_000 >= heldMinRate*d
		c.interval = 0
		if c.windowCount*1_000_000_000 >= coalesceMinRate*d {
			c.interval = d / max(c.windowCount, 1)
		}
		c.windowStart, c.windowCount = now, 0
	}
}

// busy tells whether datagrams came at heldMinRate or faster over the last
// window: then the loop waits at most heldWaitMax, held (observer.iterate).
func (c *coalescer) busy() bool { return c.fast }

// pause returns how long to wait before the next wait for events, given
// the ns until the next deadline (-1 none).
func (c *coalescer) pause(untilDeadline int64) int64 {
	if c.target == 0 || c.interval == 0 || c.lastDrain == 0 || c.lastDrain > 2*c.target {
		return 0
	}
	p := min(c.target*c.interval, c.maxPause, c.qlen*c.interval-coalesceRoom)
	if untilDeadline >= 0 {
		p = min(p, untilDeadline)
	}
	return max(p, 0)
}
