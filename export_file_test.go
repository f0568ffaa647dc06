package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// newFileTestObserver returns an observer good enough for an eventFile: a
// config and a logger writing to a file the test can read.
func newFileTestObserver(t *testing.T, maxBytes int64, keep int) (*observer, string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })
	log := newLogger(false, lf)
	cfg := defaultConfig()
	cfg.exportMaxBytes, cfg.exportKeep = maxBytes, keep
	return &observer{cfg: cfg, log: log}, logPath
}

func TestEventLinesGolden(t *testing.T) {
	cases := []struct {
		e    event
		want string
	}{
		{event{ns: 1234567890, kind: evBeat, pid: 4242, hasNonce: true, nonce: 7, status: "ok", hasPayloadNum: true, payloadNum: 0},
			"1234567890\tbeat\t4242\t7\tok\t0\n"},
		{event{ns: 1, kind: evBeat, pid: 2, hasNonce: true, nonce: 18446744073709551615, status: "critical", hasPayloadNum: true, payloadNum: 4294967295},
			"1\tbeat\t2\t18446744073709551615\tcritical\t4294967295\n"},
		{event{ns: 99, kind: evBeat, pid: 3, hasNonce: true, nonce: 1, status: "degraded", hasPayloadNum: true, payloadNum: 12},
			"99\tbeat\t3\t1\tdegraded\t12\n"},
		{event{ns: 5000000000, kind: evStall, pid: 4242, hasNonce: true, nonce: 9, status: "stall"},
			"5000000000\tstall\t4242\t9\tstall\t-\n"},
		{event{ns: 10, kind: evDecode, payload: "BadCrc"},
			"10\tdecode\t-\t-\t-\tBadCrc\n"},
		{event{ns: 11, kind: evMismatch, pid: 77, payload: "auth_failure"},
			"11\tmismatch\t77\t-\t-\tauth_failure\n"},
		{event{ns: 12, kind: evEviction, pid: 78, hasNonce: true, nonce: 0, payload: "capacity"},
			"12\teviction\t78\t0\t-\tcapacity\n"},
		{event{ns: 13, kind: evEviction, pid: 79, hasNonce: true, nonce: 100, payload: "retired"},
			"13\teviction\t79\t100\t-\tretired\n"},
		{event{ns: 14, kind: evRecovery, pid: 80, payload: "spawned"},
			"14\trecovery\t80\t-\t-\tspawned\n"},
		{event{ns: 15, kind: evRecovery, pid: 80, payload: "exit_3"},
			"15\trecovery\t80\t-\t-\texit_3\n"},
		{event{ns: 16, kind: evIO, payload: "recvmsg: bad\tthing\nhappened \\ here\r"},
			"16\tio\t-\t-\t-\trecvmsg: bad\\tthing\\nhappened \\\\ here\\r\n"},
	}
	for _, c := range cases {
		if got := string(appendEvent(nil, &c.e)); got != c.want {
			t.Errorf("appendEvent(%+v)\n got %q\nwant %q", c.e, got, c.want)
		}
		if n := strings.Count(c.want, "\t"); n != 5 {
			t.Fatalf("golden line %q has %d tabs", c.want, n)
		}
	}
	if got := string(appendDropMarker(nil, 42, 17)); got != "42\tio\t-\t-\t-\tevent file buffer full: 17 events dropped\n" {
		t.Errorf("drop marker %q", got)
	}
}

func beatEvent(i int) event {
	return event{ns: int64(1_000_000 + i), kind: evBeat, pid: uint32(100 + i%7), hasNonce: true, nonce: uint64(i),
		status: "ok", hasPayloadNum: true, payloadNum: uint32(i * 31)}
}

// readGenerations concatenates PATH.keep … PATH.1, PATH (oldest first).
func readGenerations(t *testing.T, path string, keep int, maxBytes int64) (all string, files int) {
	t.Helper()
	var b strings.Builder
	for i := keep + 1; i >= 0; i-- {
		p := path
		if i > 0 {
			p = fmt.Sprintf("%s.%d", path, i)
		}
		data, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if i == keep+1 {
			t.Errorf("%s exists: more than --export-file-keep=%d generations", p, keep)
		}
		if maxBytes > 0 && int64(len(data)) > maxBytes {
			t.Errorf("%s holds %d bytes, limit %d", p, len(data), maxBytes)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			t.Errorf("%s ends inside a line", p)
		}
		files++
		b.Write(data)
	}
	return b.String(), files
}

func TestEventFileRotationKeepsEveryLine(t *testing.T) {
	const maxBytes, keep, n = 1000, 200, 3000
	o, _ := newFileTestObserver(t, maxBytes, keep)
	path := filepath.Join(t.TempDir(), "events.tsv")
	f, err := openTestEventFile(o, path)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := 0; i < n; i++ {
		e := beatEvent(i)
		want.Write(appendEvent(nil, &e))
		f.add(&e, int64(i+1))
		if i%37 == 0 {
			f.flushAll()
		}
	}
	f.close()
	got, files := readGenerations(t, path, keep, maxBytes)
	if got != want.String() {
		t.Fatalf("rotated files do not hold every line in order: got %d bytes, want %d", len(got), want.Len())
	}
	if files < 50 {
		t.Fatalf("only %d generations for %d bytes at %d per file", files, want.Len(), maxBytes)
	}
	if o.stats.exportWriteErrors != 0 {
		t.Fatalf("write errors: %d", o.stats.exportWriteErrors)
	}
}

func TestEventFileRotationDropsOldestGenerations(t *testing.T) {
	for _, keep := range []int{0, 1, 3} {
		t.Run(fmt.Sprint("keep", keep), func(t *testing.T) {
			o, _ := newFileTestObserver(t, 500, keep)
			path := filepath.Join(t.TempDir(), "events.tsv")
			f, err := openTestEventFile(o, path)
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for i := 0; i < 400; i++ {
				e := beatEvent(i)
				lines = append(lines, string(appendEvent(nil, &e)))
				f.add(&e, int64(i+1))
				f.flushAll()
			}
			f.close()
			got, files := readGenerations(t, path, keep, 500)
			if files != keep+1 {
				t.Fatalf("%d files, want %d", files, keep+1)
			}
			// What is kept is the newest lines, contiguous and whole.
			all := strings.Join(lines, "")
			if !strings.HasSuffix(all, got) || !strings.HasPrefix(got, strings.SplitAfter(got, "\n")[0]) {
				t.Fatalf("kept lines are not the newest contiguous lines:\n%s", got)
			}
			if len(got) < 500*keep/2 {
				t.Fatalf("kept only %d bytes", len(got))
			}
		})
	}
}

func TestEventFileLineLongerThanLimitIsNotSplit(t *testing.T) {
	o, _ := newFileTestObserver(t, 10, 5)
	path := filepath.Join(t.TempDir(), "events.tsv")
	f, err := openTestEventFile(o, path)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := 0; i < 3; i++ {
		e := beatEvent(i)
		want.Write(appendEvent(nil, &e))
		f.add(&e, 1)
	}
	f.close()
	got, files := readGenerations(t, path, 5, 0)
	if got != want.String() || files != 3 {
		t.Fatalf("%d files:\n%q\nwant one line each of\n%q", files, got, want.String())
	}
}

func TestEventFileReopen(t *testing.T) {
	o, _ := newFileTestObserver(t, 0, 5)
	dir := t.TempDir()
	path := filepath.Join(dir, "events.tsv")
	f, err := openTestEventFile(o, path)
	if err != nil {
		t.Fatal(err)
	}
	e0, e1 := beatEvent(0), beatEvent(1)
	f.add(&e0, 1)
	f.flushAll()
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	f.add(&e1, 2)
	if !f.reopen(monoNow()) {
		t.Fatal("reopen failed")
	}
	e2 := beatEvent(2)
	f.add(&e2, 3)
	f.close()
	old, _ := os.ReadFile(path + ".old")
	cur, _ := os.ReadFile(path)
	if string(old) != string(appendEvent(appendEvent(nil, &e0), &e1)) {
		t.Fatalf("old file %q", old)
	}
	if string(cur) != string(appendEvent(nil, &e2)) {
		t.Fatalf("new file %q", cur)
	}
}

func TestEventFileRefusesSymlinkAndBadPath(t *testing.T) {
	o, _ := newFileTestObserver(t, 0, 5)
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, nil, 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	_, err := openTestEventFile(o, link)
	if err == nil || !strings.Contains(err.Error(), link) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("symlink: %v", err)
	}
	bad := filepath.Join(dir, "no", "such", "dir", "events.tsv")
	_, err = openTestEventFile(o, bad)
	if err == nil || !strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("bad path: %v", err)
	}
	_, err = openTestEventFile(o, dir)
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("directory: %v", err)
	}
}

// TestEventFileDevFull: every write fails (ENOSPC). Errors are counted,
// logged once, the buffer stays bounded and the overflow is counted.
func TestEventFileDevFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	o, logPath := newFileTestObserver(t, 0, 5)
	f, err := openTestEventFile(o, "/dev/full")
	if err != nil {
		t.Fatal(err)
	}
	now := int64(1)
	const n = 60000 // ~2 MB of lines: more than the buffer keeps
	for i := 0; i < n; i++ {
		e := beatEvent(i)
		f.add(&e, now)
		if f.due(now) {
			f.flushStep(now)
		}
		now += 1_000_000 // 1 ms
	}
	if o.stats.exportWriteErrors == 0 {
		t.Fatal("no write errors counted")
	}
	if cap(f.buf) > eventBufMax+eventLineRoom || len(f.buf) > eventBufMax+eventLineRoom {
		t.Fatalf("buffer grew to len %d cap %d", len(f.buf), cap(f.buf))
	}
	if o.stats.exportDropped == 0 {
		t.Fatal("no dropped lines counted")
	}
	f.close()
	logText, _ := os.ReadFile(logPath)
	if c := strings.Count(string(logText), "event file write failed"); c != 1 {
		t.Fatalf("write failure logged %d times, want once per episode:\n%s", c, logText)
	}
}

// TestEventFileDiskFullTmpfs fills a small tmpfs: the file only ever holds
// whole lines, and once space is freed every buffered line is written.
func TestEventFileDiskFullTmpfs(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 40<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	o, logPath := newFileTestObserver(t, 0, 5)
	path := filepath.Join(dir, "events.tsv")
	f, err := openTestEventFile(o, path)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	now := int64(1)
	for i := 0; i < 1500; i++ { // ~60 KB of lines: more than the free space
		e := beatEvent(i)
		want.Write(appendEvent(nil, &e))
		f.add(&e, now)
		now += 1_000_000
		if f.due(now) {
			f.flushStep(now)
		}
		if i%100 == 0 {
			data, _ := os.ReadFile(path)
			if len(data) > 0 && data[len(data)-1] != '\n' {
				t.Fatalf("after %d lines the file ends inside a line", i)
			}
		}
	}
	if o.stats.exportWriteErrors == 0 {
		t.Fatal("the disk never filled up")
	}
	data, _ := os.ReadFile(path)
	if len(data) == 0 || data[len(data)-1] != '\n' || !bytes.HasPrefix(want.Bytes(), data) {
		t.Fatalf("file on a full disk is not a whole-line prefix of the events (%d bytes)", len(data))
	}
	os.Remove(filler)
	now += eventRetryInterval
	f.close()
	data, _ = os.ReadFile(path)
	if !bytes.Equal(data, want.Bytes()) {
		t.Fatalf("after freeing space the file holds %d bytes, want all %d", len(data), want.Len())
	}
	logText, _ := os.ReadFile(logPath)
	if c := strings.Count(string(logText), "event file write failed"); c != 1 {
		t.Fatalf("write failure logged %d times, want once:\n%s", c, logText)
	}
	if !strings.Contains(string(logText), "event file writable again") {
		t.Fatalf("recovery not logged:\n%s", logText)
	}
}

// openTestEventFile opens path as newObserver would for o's configuration.
func openTestEventFile(o *observer, path string) (*eventFile, error) {
	return openEventFile(path, o.cfg.exportMaxBytes, o.cfg.exportKeep, o.log, &o.stats)
}
