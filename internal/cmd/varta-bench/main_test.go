package main

import (
	"math"
	"testing"

	"varta-watch/internal/loadgen"
)

func lost(n ...int64) []liteResult {
	rs := make([]liteResult, len(n))
	for i, x := range n {
		rs[i].Load = loadgen.Result{Tally: loadgen.Tally{Lost: x}}
	}
	return rs
}

// TestPairedLoss: the verdict of the queue scenario is the median of the
// rounds' ratios, not a ratio of medians taken apart.
func TestPairedLoss(t *testing.T) {
	for _, tc := range []struct {
		name       string
		a, b       []liteResult
		ratio      float64
		more       int
		aSum, bSum int64
	}{
		// Apart, the medians are 100 and 90; round by round a lost less
		// in two of three.
		{"paired", lost(100, 40, 500), lost(120, 90, 50), 0.8333333333333334, 1, 640, 260},
		{"none lost", lost(0, 0, 0), lost(0, 0, 0), 1, 0, 0, 0},
		{"only a lost", lost(3, 3, 3), lost(0, 0, 0), math.Inf(1), 3, 9, 0},
		{"equal", lost(7, 8, 9), lost(7, 8, 9), 1, 0, 24, 24},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ratio, more, aSum, bSum := pairedLoss(tc.a, tc.b)
			if ratio != tc.ratio || more != tc.more || aSum != tc.aSum || bSum != tc.bSum {
				t.Fatalf("pairedLoss = %v, %d, %d, %d; want %v, %d, %d, %d", ratio, more, aSum, bSum, tc.ratio, tc.more, tc.aSum, tc.bSum)
			}
		})
	}
}
