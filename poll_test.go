package main

import "testing"

// TestKqueueTimeoutCapped: kevent(2) is never asked to wait more than 1e6 s
// (Darwin answers EINVAL), whatever --shutdown-after-secs asks; shorter
// timeouts pass unchanged, to the nanosecond.
func TestKqueueTimeoutCapped(t *testing.T) {
	const s = int64(1e9)
	for _, tc := range []struct{ ns, want int64 }{
		{0, 0},
		{1, 1},
		{1500 * s, 1500 * s},
		{1e6*s - 1, 1e6*s - 1},
		{1e6 * s, 1e6 * s},
		{1e6*s + 1, 1e6 * s},
		{100 * 365 * 86400 * s, 1e6 * s}, // --shutdown-after-secs at its maximum
		{1<<63 - 1, 1e6 * s},
	} {
		if got := kqueueTimeoutNs(tc.ns); got != tc.want {
			t.Errorf("kqueueTimeoutNs(%d) = %d, want %d", tc.ns, got, tc.want)
		}
	}
}
