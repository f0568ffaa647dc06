package main

// observerStats are the observer-wide counters behind /metrics. They are
// written only by the event loop.
type observerStats struct {
	decodeErrors      [decodeErrorCount]uint64
	truncated         uint64
	authFailures      uint64
	outOfOrder        uint64
	capacityExceeded  uint64
	evictedCapacity   uint64
	evictedRetired    uint64
	ioErrors          uint64
	exportWriteErrors uint64
	exportDropped     uint64 // event lines dropped because the buffer was full
	recovery          [recoveryOutcomeCount]uint64
	stallDelay        histogram
	framesReceived    uint64
	beatsAccepted     uint64
}

// recoveryOutcome is the label of varta_recovery_total and the payload of a
// recovery event. exit_N for N>0 is counted as exit_nonzero in the metric.
type recoveryOutcome uint8

const (
	recSpawned recoveryOutcome = iota
	recDebounced
	recExit0
	recExitNonzero
	recKilled
	recSpawnFailed
	recRefused
	recGaveUp // an agent section gave up (contract §9)
	recoveryOutcomeCount
)

var recoveryOutcomeNames = [recoveryOutcomeCount]string{
	"spawned", "debounced", "exit_0", "exit_nonzero", "killed", "spawn_failed", "refused", "gave_up",
}

// stallDelayBucketsNs are the upper bounds, in nanoseconds, of
// varta_stall_detection_delay_seconds: how late after its deadline a stall
// was surfaced. The interesting range is sub-millisecond to a few ms.
// Integers keep observing free of floating point (soft-float on MIPS) and
// the le labels free of float formatting.
var stallDelayBucketsNs = [...]int64{
	100_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
	25_000_000, 50_000_000, 100_000_000, 500_000_000, 1_000_000_000,
}

// histogram is a fixed-bucket Prometheus histogram of seconds, kept in
// nanoseconds so observing is integer-only.
type histogram struct {
	counts [len(stallDelayBucketsNs)]uint64 // non-cumulative
	count  uint64
	sumNs  int64
}

func (h *histogram) observe(ns int64) {
	if ns < 0 {
		ns = 0
	}
	h.count++
	h.sumNs += ns
	for i, ub := range stallDelayBucketsNs {
		if ns <= ub {
			h.counts[i]++
			return
		}
	}
}
