//go:build linux

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
		more, less int
		aSum, bSum int64
	}{
		// Apart, the medians are 100 and 90; round by round a lost less
		// in two of three.
		{"paired", lost(100, 40, 500), lost(120, 90, 50), 0.8333333333333334, 1, 2, 640, 260},
		{"none lost", lost(0, 0, 0), lost(0, 0, 0), 1, 0, 0, 0, 0},
		{"only a lost", lost(3, 3, 3), lost(0, 0, 0), math.Inf(1), 3, 0, 9, 0},
		{"equal", lost(7, 8, 9), lost(7, 8, 9), 1, 0, 0, 24, 24},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ratio, more, less, aSum, bSum := pairedLoss(tc.a, tc.b)
			if ratio != tc.ratio || more != tc.more || less != tc.less || aSum != tc.aSum || bSum != tc.bSum {
				t.Fatalf("pairedLoss = %v, %d, %d, %d, %d; want %v, %d, %d, %d, %d", ratio, more, less, aSum, bSum, tc.ratio, tc.more, tc.less, tc.aSum, tc.bSum)
			}
		})
	}
}

// TestSignTail: the one-sided sign test against the binomial tail.
func TestSignTail(t *testing.T) {
	for _, tc := range []struct {
		k, n int
		want float64
	}{
		{0, 0, 1}, {0, 5, 1}, {5, 5, 1.0 / 32}, {3, 5, 0.5},
		{12, 15, 576.0 / 32768}, // session 8's pause of 2 beats: 12 of 15
		{16, 24, 1271626.0 / (1 << 24)},
		{15, 20, 21700.0 / (1 << 20)},
		{11, 20, 431910.0 / (1 << 20)},
	} {
		if got := signTail(tc.k, tc.n); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("signTail(%d, %d) = %v, want %v", tc.k, tc.n, got, tc.want)
		}
	}
}

// TestQueueVerdict: the queue-10 row can miss on loss and on CPU, and is
// not judged where it could not miss.
func TestQueueVerdict(t *testing.T) {
	for _, tc := range []struct {
		more, less int
		cpuBelow   bool
		want       string
	}{
		{7, 8, true, "met"},
		{11, 4, true, "met"},         // p = 0.059
		{12, 3, true, "**missed**"},  // p = 0.018
		{5, 0, true, "**missed**"},   // p = 0.031
		{0, 15, false, "**missed**"}, // CPU
		{4, 0, true, "not judged: 4 rounds decided, the sign test needs 5"},
		{0, 0, true, "not judged: 0 rounds decided, the sign test needs 5"},
	} {
		if got := queueVerdict(tc.more, tc.less, tc.cpuBelow); got != tc.want {
			t.Errorf("queueVerdict(%d, %d, %v) = %q, want %q", tc.more, tc.less, tc.cpuBelow, got, tc.want)
		}
	}
}
