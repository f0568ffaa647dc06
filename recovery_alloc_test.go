//go:build linux && !race

package main

import (
	"testing"
)

// A stall whose recovery is debounced (a flapping agent) or refused stays
// on the allocation-free path: only a spawn allocates.
func TestRecoveryDebouncedStallAllocatesNothing(t *testing.T) {
	o := newRecoveryObserver(t, func(c *config) {
		c.recoveryExec = "/bin/true"
		c.recoveryDebounceMs = 3_600_000
	})
	s := &slot{pid: 8001, lastRecov: monoNow()}
	if n := testing.AllocsPerRun(200, func() { o.rec.onStall(s, monoNow()) }); n != 0 {
		t.Fatalf("a debounced stall allocates %v times", n)
	}
	if o.stats.recovery[recDebounced] == 0 || o.stats.recovery[recSpawned] != 0 {
		t.Fatalf("debounced %d spawned %d", o.stats.recovery[recDebounced], o.stats.recovery[recSpawned])
	}
	o.rec.trusted = false // refused, as on BSD and macOS
	if n := testing.AllocsPerRun(200, func() { o.rec.onStall(s, monoNow()) }); n != 0 {
		t.Fatalf("a refused stall allocates %v times", n)
	}
	// Reaping checks on SIGCHLD with nothing to reap, and the deadline
	// queries every loop turn makes, allocate nothing either.
	if n := testing.AllocsPerRun(200, func() {
		o.rec.onSIGCHLD(monoNow())
		o.startRecoveries()
		o.rec.fire(monoNow())
		_ = o.rec.nextDeadline()
	}); n != 0 {
		t.Fatalf("idle recovery hooks allocate %v times", n)
	}
}
