package main

import "testing"

// feed simulates wakes that each read n datagrams, every gap ns.
func feed(c *coalescer, wakes int, n, gap int64) int64 {
	now := int64(1_000_000_000)
	for i := 0; i < wakes; i++ {
		now += gap
		c.note(n, now)
	}
	return now
}

func TestCoalescerPausesForAQuarterOfTheQueue(t *testing.T) {
	c := newCoalescer(10, 1_500_000_000) // target: 2 datagrams
	feed(&c, 1000, 1, 2_500_000)
	// 400 datagrams/s: one every 2.5 ms, two of them 5 ms; the queue's
	// 25 ms leave 20 ms of room.
	if p := c.pause(-1); p < 4_900_000 || p > 5_100_000 {
		t.Fatalf("pause at 400/s with max_dgram_qlen 10 = %d ns, want ~5 ms", p)
	}
	if p := c.pause(100_000); p != 100_000 {
		t.Fatalf("pause with a deadline in 100 µs = %d ns: must not outlast it", p)
	}
	if p := c.pause(0); p != 0 {
		t.Fatalf("pause with a deadline due = %d ns", p)
	}
}

// TestCoalescerLeavesRoom: a pause never leaves the queue less than
// coalesceRoom of beats at the measured rate: none at all where the whole
// queue holds less (10 at 4096/s: 2.4 ms), a shorter one where a quarter
// of the queue would leave too little.
func TestCoalescerLeavesRoom(t *testing.T) {
	for _, tc := range []struct {
		name     string
		qlen     int
		gap      int64 // ns between datagrams
		min, max int64 // ns, the pause expected
	}{
		{"queue 10 at 4096/s: 2.4 ms in all", 10, 244_140, 0, 0},
		{"queue 10 at 1000/s: 10 ms in all", 10, 1_000_000, 0, 0},
		{"queue 10 at 900/s: 11.1 ms, 1.1 ms to spare", 10, 1_111_111, 1_100_000, 1_120_000},
		{"queue 64 at 4096/s: a quarter, 3.9 ms, leaves 11.7 ms", 64, 244_140, 3_890_000, 3_920_000},
		{"queue 48 at 4096/s: 11.7 ms, 1.7 ms to spare", 48, 244_140, 1_700_000, 1_730_000},
	} {
		c := newCoalescer(tc.qlen, 60_000_000_000)
		feed(&c, 1000, 1, tc.gap)
		if p := c.pause(-1); p < tc.min || p > tc.max {
			t.Errorf("%s: pause = %d ns, want %d–%d", tc.name, p, tc.min, tc.max)
		}
		if p := c.pause(-1); p > 0 && (int64(tc.qlen)*tc.gap-p) < coalesceRoom-tc.gap {
			t.Errorf("%s: a pause of %d ns leaves %d ns of the queue", tc.name, p, int64(tc.qlen)*tc.gap-p)
		}
	}
}

func TestCoalescerCapped(t *testing.T) {
	c := newCoalescer(1024, 60_000_000_000) // target 256: at 4096/s that would be 62 ms
	feed(&c, 1000, 1, 244_140)
	if p := c.pause(-1); p != coalesceMax {
		t.Fatalf("pause = %d ns, want the cap %d", p, coalesceMax)
	}
	c = newCoalescer(1024, 200_000_000) // threshold 200 ms: at most 2 ms
	feed(&c, 1000, 1, 244_140)
	if p := c.pause(-1); p != 2_000_000 {
		t.Fatalf("pause with a 200 ms threshold = %d ns, want 1%% of it", p)
	}
}

func TestCoalescerDoesNotPause(t *testing.T) {
	for _, tc := range []struct {
		name   string
		qlen   int
		n, gap int64
		wakes  int
	}{
		{"slow arrivals (100/s)", 256, 1, 10_000_000, 200},
		{"no rate measured yet", 10, 1, 2_500_000, 3},
		{"queue filling faster than planned", 10, 5, 12_500_000, 200},
		{"queue too short to plan a pause", 3, 1, 244_140, 1000},
	} {
		c := newCoalescer(tc.qlen, 1_500_000_000)
		feed(&c, tc.wakes, tc.n, tc.gap)
		if p := c.pause(-1); p != 0 {
			t.Errorf("%s: pause = %d ns, want none", tc.name, p)
		}
	}
}

// TestNoCoalescingPauseWhileAScrapeIsWritten: the loop lets beats gather
// only when it has nothing else to do; a scrape is written a step per loop
// turn, and a pause per step would stretch a 4096-agent scrape from ~20 ms
// to a quarter of a second.
func TestNoCoalescingPauseWhileAScrapeIsWritten(t *testing.T) {
	o := newTestObserver(t, "--threshold-ms", "1500", "--prom-addr", "127.0.0.1:0")
	o.coal = newCoalescer(256, o.threshold)
	feed(&o.coal, 1000, 2, 488_280)
	if p := o.coalescePause(-1); p <= 0 {
		t.Fatalf("no pause at 4096 beats/s with a queue of 256 (pause %d)", p)
	}
	c := &promConn{fd: -1, state: connWriting}
	o.prom.conns = append(o.prom.conns, c)
	defer func() { o.prom.conns = o.prom.conns[:len(o.prom.conns)-1] }()
	if p := o.coalescePause(-1); p != 0 {
		t.Fatalf("pause of %d ns while a response is written", p)
	}
	c.state = connLinger
	if p := o.coalescePause(-1); p <= 0 {
		t.Fatalf("no pause once the response is sent (pause %d)", p)
	}
}

// TestCoalescerBusy: from heldMinRate datagrams/s the loop's waits are held
// ones (observer.iterate); below it, and once the datagrams stop, they are
// not, so a quiet observer goes back to waits that let the P go.
func TestCoalescerBusy(t *testing.T) {
	c := newCoalescer(256, 1_500_000_000)
	if c.busy() {
		t.Fatal("busy before any rate was measured")
	}
	now := feed(&c, 100, 1, 10_000_000) // 100/s, under coalesceMinRate: no pause
	if !c.busy() || c.pause(-1) != 0 {
		t.Fatalf("at 100 datagrams/s: busy %v, pause %d; want busy, no pause", c.busy(), c.pause(-1))
	}
	for i := 0; i < 30; i++ { // the datagrams stop; the loop turns every heldWaitMax
		now += heldWaitMax
		c.note(0, now)
	}
	if c.busy() {
		t.Fatal("still busy 270 ms after the last datagram")
	}
	c = newCoalescer(256, 1_500_000_000)
	feed(&c, 100, 1, 1_000_000_000/(heldMinRate/2))
	if c.busy() {
		t.Fatalf("busy at %d datagrams/s", heldMinRate/2)
	}
}
