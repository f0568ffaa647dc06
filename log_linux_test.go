//go:build linux

package main

import (
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLoggerNeverBlocksOnAStalledReader: with stderr a pipe that nobody
// reads, logging returns at once; lines beyond the bounded buffer are
// dropped and counted, and once the reader comes back it gets whole lines
// and one line saying how many were dropped.
func TestLoggerNeverBlocksOnAStalledReader(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 4096)
	l := newLogger(false, w)
	if !l.async {
		t.Fatal("a pipe is written synchronously")
	}
	const lines = 2000
	done := make(chan struct{})
	go func() {
		for i := 0; i < lines; i++ {
			l.warn("agent stalled", fInt("pid", int64(i)), fInt("silent_ms", 1500))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("logging blocks while stderr is not read")
	}
	// An exit must not wait forever for a reader that never comes.
	start := time.Now()
	l.flush(100 * time.Millisecond)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("flush with 100 ms to spare took %v", d)
	}
	got := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); got <- b }()
	l.flush(10 * time.Second)
	w.Close()
	out := string(<-got)
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("output ends in a partial line: %q", out[max(0, len(out)-80):])
	}
	seen, dropped := 0, 0
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		switch {
		case strings.Contains(line, `msg="agent stalled" pid=`) && strings.HasSuffix(line, " silent_ms=1500"):
			seen++
		case strings.Contains(line, `msg="log lines dropped: stderr was not being read" lines=`):
			n, err := strconv.Atoi(line[strings.LastIndex(line, "=")+1:])
			if err != nil {
				t.Fatalf("bad count in %q", line)
			}
			dropped += n
		default:
			t.Fatalf("torn or unknown line %q", line)
		}
	}
	if dropped == 0 || seen+dropped != lines {
		t.Fatalf("%d lines written, %d reported dropped: want a drop report and %d in all", seen, dropped, lines)
	}
}
