package main

import (
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAppendUTCMillis checks the hand-written RFC 3339 timestamp against
// the time package across leap years, century rules, month ends and
// millisecond rounding (truncation, as time.Format does).
func TestAppendUTCMillis(t *testing.T) {
	const layout = "2006-01-02T15:04:05.000Z07:00"
	cases := []int64{
		0, 1, 999_999, 1_000_000, 86_399_999_999_999, 86_400_000_000_000,
		time.Date(2000, 2, 29, 23, 59, 59, 999_999_999, time.UTC).UnixNano(),
		time.Date(2100, 2, 28, 12, 0, 0, 0, time.UTC).UnixNano(),
		time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano(),
		time.Date(2026, 11, 25, 22, 4, 53, 343_000_000, time.UTC).UnixNano(),
		time.Date(1969, 12, 31, 23, 59, 59, 500_000_000, time.UTC).UnixNano(),
		time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(),
		time.Date(2262, 4, 11, 23, 47, 16, 0, time.UTC).UnixNano(),
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 100_000; i++ {
		cases = append(cases, r.Int63()-r.Int63())
	}
	for _, ns := range cases {
		want := time.Unix(0, ns).UTC().Format(layout)
		if got := string(appendUTCMillis(nil, ns)); got != want {
			t.Fatalf("appendUTCMillis(%d) = %s, want %s", ns, got, want)
		}
	}
}

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
	shrinkPipe(w.Fd())
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

// TestLoggerWritesAFileAtOnce: a regular file is written synchronously, so
// a line is in the file when log returns.
func TestLoggerWritesAFileAtOnce(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l := newLogger(true, f)
	l.info("hello", fStr("k", "v"))
	b, err := os.ReadFile(f.Name())
	if err != nil || !strings.Contains(string(b), `"msg":"hello","k":"v"}`) {
		t.Fatalf("file holds %q (%v) right after the call", b, err)
	}
}
