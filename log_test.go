package main

import (
	"math/rand"
	"os"
	"path/filepath"
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
