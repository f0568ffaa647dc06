package main

import "testing"

func TestNonceNewer(t *testing.T) {
	const (
		max    = ^uint64(0) // the terminal nonce
		window = uint64(1) << 20
	)
	for _, tc := range []struct {
		last, next uint64
		want       bool
	}{
		{1, 2, true},
		{1, 1000, true},
		{2, 2, false}, // duplicate
		{2, 1, false}, // replay
		{0, 1, true},  // first beat after a wrap to 0
		{0, 0, false},
		{5, max - 1, true},   // greater is newer, however far
		{max - 1, 0, true},   // the wrap of vlp-v0.2.md
		{max - 1, 1, true},   // the wrap, a beat lost
		{max - 1, max, true}, // the terminal frame after the last ordinary nonce
		{max, max, false},    // a second terminal frame
		{max - 1, max - 1, false},
		{max - 1, max - 2, false},
		// The wrap window: last ≥ 2^64−2^20 and next ≤ 2^20.
		{max - window + 1, 0, true},
		{max - window, 0, false},
		{max - window + 1, window, true},
		{max - window + 1, window + 1, false},
		{max - 1, window, true},
		{max - 1, window + 1, false},
		{max - window, window + 1, false},
		{window, window + 1, true},
		{window + 1, window, false},
	} {
		if got := nonceNewer(tc.last, tc.next); got != tc.want {
			t.Errorf("nonceNewer(%d, %d) = %v, want %v", tc.last, tc.next, got, tc.want)
		}
	}
}
