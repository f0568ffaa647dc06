//go:build unix && !race

package main

import (
	"os"
	"testing"
)

func TestHWWatchdogFeedAllocs(t *testing.T) {
	w, err := openHWWatchdog(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close(false)
	var feedErr error
	allocs := testing.AllocsPerRun(1000, func() {
		if err := w.feed(); err != nil && feedErr == nil {
			feedErr = err
		}
	})
	if feedErr != nil {
		t.Fatal(feedErr)
	}
	if allocs != 0 {
		t.Fatalf("feed allocates %v times per call, want 0", allocs)
	}
}
