//go:build linux

package main

// End-to-end tests of the event file (contract §5): reopen on SIGHUP,
// rotation, a full disk, and links, FIFOs and other files planted at its
// path.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Contract §5: SIGHUP reopens the event file (logrotate); the old and the
// new file together hold every beat, without a gap.
func TestE2ESIGHUPReopensEventFile(t *testing.T) {
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "1000"}})
	a := startAgent(t, p.socket, "--interval-ms", "10")
	p.waitEvents(5*time.Second, "beats", func(evs []tsvEvent) bool { return countEvents(evs, "beat", a.pid) >= 3 })
	if err := os.Rename(p.events, p.events+".1"); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	p.waitEvents(5*time.Second, "beats in the new file", func(evs []tsvEvent) bool { return countEvents(evs, "beat", a.pid) >= 3 })
	a.kill()
	p.stop()
	old, _ := os.ReadFile(p.events + ".1")
	cur, _ := os.ReadFile(p.events)
	oldBeats := filterEvents(parseEvents(t, old), "beat", a.pid)
	newBeats := filterEvents(parseEvents(t, cur), "beat", a.pid)
	// The two files together hold a gap-free run of nonces.
	all := append(oldBeats, newBeats...)
	for i := 1; i < len(all); i++ {
		x, _ := strconv.ParseUint(all[i-1].nonce, 10, 64)
		y, _ := strconv.ParseUint(all[i].nonce, 10, 64)
		if y != x+1 {
			t.Fatalf("nonce %d follows %d across the reopen", y, x)
		}
	}
}

// Contract §2 --export-file-max-bytes and §5: rotation keeps every file
// under the limit, ends each on a whole line, and puts every accepted beat
// in exactly one generation, in order.
func TestE2ERotationKeepsEveryLine(t *testing.T) {
	const maxBytes = 4000
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "5000", "--prom-addr", "127.0.0.1:0",
		"--export-file-max-bytes", strconv.Itoa(maxBytes), "--export-file-keep", "1000"}})
	a := runAgent(t, p.socket, "--interval-ms", "1", "--count", "600")
	body := scrape(t, p, nil)
	accepted, _ := strconv.Atoi(sampleValue(body, `varta_beats_total{pid="`+a.pid+`"}`))
	if accepted < 100 {
		t.Fatalf("only %d beats accepted", accepted)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var all []byte
	files := 0
	for i := 1000; i >= 0; i-- {
		path := p.events
		if i > 0 {
			path = fmt.Sprintf("%s.%d", p.events, i)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		files++
		if len(data) > maxBytes {
			t.Errorf("%s: %d bytes, limit %d", path, len(data), maxBytes)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			t.Errorf("%s ends inside a line", path)
		}
		all = append(all, data...)
	}
	evs := parseEvents(t, all)
	beats := filterEvents(evs, "beat", a.pid)
	if len(beats) != accepted {
		t.Fatalf("%d beat lines in %d files, %d beats accepted", len(beats), files, accepted)
	}
	var last uint64
	for _, b := range beats {
		n, _ := strconv.ParseUint(b.nonce, 10, 64)
		if n <= last {
			t.Fatalf("nonce %d after %d: generations out of order", n, last)
		}
		last = n
	}
	if files < 5 {
		t.Fatalf("only %d files: rotation did not happen", files)
	}
}

// Contract §5, rotation: links planted at the rotated names never redirect
// a write.
//
// TestRotationIgnoresPlantedLinks: the rotated names PATH.1 … PATH.3 are
// planted before start as symlinks (to a victim file and to a path that
// does not exist) and as a hard link to a victim. Rotation renames over
// them (rename(2) replaces a link, never what it points at) and opens the
// new PATH with O_NOFOLLOW: the victims stay as they were, nothing is
// created at the dangling target, and every generation ends up a regular
// file of whole lines.
func TestRotationIgnoresPlantedLinks(t *testing.T) {
	binaries(t)
	dir := shortTempDir(t)
	events := filepath.Join(dir, "events.tsv")
	victim := filepath.Join(dir, "victim")
	hardVictim := filepath.Join(dir, "hard-victim")
	for _, v := range []string{victim, hardVictim} {
		if err := os.WriteFile(v, []byte("precious\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	absent := filepath.Join(dir, "absent")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(victim, events+".1"))
	must(os.Link(hardVictim, events+".2"))
	must(os.Symlink(absent, events+".3"))
	o := startObserver(t, observerOpts{args: []string{"--threshold-ms", "5000", "--export-file", events,
		"--export-file-max-bytes", "2000", "--export-file-keep", "3"}})
	a := runAgent(t, o.socket, "--count", "400", "--interval-ms", "1")
	// Rotation happens between flushes: wait until the newest generation
	// shows the last beat.
	o.waitEvents(10*time.Second, "the last beat", func(evs []tsvEvent) bool {
		for _, e := range filterEvents(evs, "beat", a.pid) {
			if e.nonce == "400" {
				return true
			}
		}
		return false
	})
	if code := o.stop(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	for _, v := range []string{victim, hardVictim} {
		if data, err := os.ReadFile(v); err != nil || string(data) != "precious\n" {
			t.Errorf("victim %s changed: %q, %v", v, data, err)
		}
	}
	if _, err := os.Lstat(absent); err == nil {
		t.Errorf("rotation wrote through the dangling link at %s.3", events)
	}
	for i := 1; i <= 3; i++ {
		gen := events + "." + strconv.Itoa(i)
		fi, err := os.Lstat(gen)
		if err != nil {
			t.Errorf("generation %s: %v (400 beats should fill it)", gen, err)
			continue
		}
		if !fi.Mode().IsRegular() {
			t.Errorf("generation %s is %v, want a regular file", gen, fi.Mode())
			continue
		}
		data, err := os.ReadFile(gen)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) == 0 || data[len(data)-1] != '\n' || strings.Contains(string(data), "precious") {
			t.Errorf("generation %s does not hold whole event lines: ...%q", gen, data[max(0, len(data)-60):])
		}
		parseEvents(t, data)
	}
}

// Contract §2 (a failure at start) and §5: the event file is never written
// through a symlink.
//
// TestSymlinkAtExportFile: a symlink at --export-file, pointing at a
// victim file or at a path that does not exist yet. The observer must not
// write through it (O_NOFOLLOW): start fails with exit 1 and a message
// saying why, the victim is untouched, nothing is created, and the socket
// it had already bound is removed.
func TestSymlinkAtExportFile(t *testing.T) {
	binaries(t)
	dir := shortTempDir(t)
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	for _, target := range []string{victim, filepath.Join(dir, "absent")} {
		link := filepath.Join(dir, "events.tsv")
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runObserverToExit(t, "--socket", sock, "--threshold-ms", "100",
			"--export-file", link, "--shutdown-after-secs", "1")
		if code != 1 || !strings.Contains(stderr, link) || !strings.Contains(stderr, "symbolic link; refusing") {
			t.Errorf("symlink to %s at --export-file: exit %d, stderr %q; want 1 and a line naming the path and the symlink", target, code, stderr)
		}
		if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("start failure took more than one line: %q", stderr)
		}
		if data, err := os.ReadFile(victim); err != nil || string(data) != "precious\n" {
			t.Errorf("victim changed: %q, %v", data, err)
		}
		if _, err := os.Lstat(filepath.Join(dir, "absent")); err == nil {
			t.Errorf("the observer created the dangling link's target")
		}
		if _, err := os.Lstat(sock); err == nil {
			t.Errorf("socket %s left behind by the failed start", sock)
		}
	}
}

// Contract §5: the event file is never appended to through a hard link, at
// start or on a SIGHUP reopen.
//
// TestHardLinkAtExportFile: a hard link to a victim file at --export-file
// (as anyone who can write the directory may make where
// fs.protected_hardlinks is off). O_NOFOLLOW does not see it; the observer
// must still refuse to append, at start and on a SIGHUP reopen.
func TestHardLinkAtExportFile(t *testing.T) {
	binaries(t)
	dir := shortTempDir(t)
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "events.tsv")
	if err := os.Link(victim, link); err != nil {
		skipBecause(t, "cannot make a hard link: %v", err)
	}
	code, _, stderr := runObserverToExit(t, "--socket", filepath.Join(dir, "s.sock"), "--threshold-ms", "100",
		"--export-file", link, "--shutdown-after-secs", "1")
	if code != 1 || !strings.Contains(stderr, link) || !strings.Contains(stderr, "hard link") {
		t.Errorf("hard link at --export-file: exit %d, stderr %q; want 1 and a line naming the path and the link", code, stderr)
	}
	if data, err := os.ReadFile(victim); err != nil || string(data) != "precious\n" {
		t.Errorf("victim changed: %q, %v", data, err)
	}

	o := startObserver(t, observerOpts{args: []string{"--threshold-ms", "5000"}})
	runAgent(t, o.socket, "--count", "1", "--interval-ms", "0")
	o.waitEvents(5*time.Second, "a beat", func(evs []tsvEvent) bool { return countEvents(evs, "beat", "") == 1 })
	if err := os.Rename(o.events, o.events+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(victim, o.events); err != nil {
		t.Fatal(err)
	}
	o.signal(unix.SIGHUP)
	runAgent(t, o.socket, "--count", "1", "--interval-ms", "0")
	o.events += ".old"
	o.waitEvents(5*time.Second, "the refused reopen", func(evs []tsvEvent) bool { return countEvents(evs, "io", "") == 1 })
	if code := o.stop(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if data, err := os.ReadFile(victim); err != nil || string(data) != "precious\n" {
		t.Errorf("victim changed after a SIGHUP reopen: %q, %v", data, err)
	}
}

// Contract §5: a SIGHUP reopen refuses a symlink, says why in an io event,
// and keeps writing to the file it has.
//
// TestSymlinkSwappedAtExportFileOnSIGHUP: the event file is rotated away
// and a symlink to a victim put at its path before SIGHUP asks the
// observer to reopen it. The reopen must refuse the link, record why (an
// io event), keep writing to the file it has and leave the victim alone.
func TestSymlinkSwappedAtExportFileOnSIGHUP(t *testing.T) {
	o := startObserver(t, observerOpts{args: []string{"--threshold-ms", "5000"}})
	victim := filepath.Join(o.dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runAgent(t, o.socket, "--count", "1", "--interval-ms", "0")
	o.waitEvents(5*time.Second, "a beat", func(evs []tsvEvent) bool { return countEvents(evs, "beat", "") == 1 })
	rotated := o.events + ".old"
	if err := os.Rename(o.events, rotated); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, o.events); err != nil {
		t.Fatal(err)
	}
	o.signal(unix.SIGHUP)
	a := runAgent(t, o.socket, "--count", "1", "--interval-ms", "0")
	o.events = rotated
	evs := o.waitEvents(5*time.Second, "the refused reopen and a second beat in the rotated file", func(evs []tsvEvent) bool {
		return countEvents(evs, "io", "") == 1 && countEvents(evs, "beat", a.pid) == 1
	})
	if io := filterEvents(evs, "io", ""); !strings.Contains(io[0].payload, "symbolic link") {
		t.Errorf("io event %q does not say the path is a symbolic link", strings.TrimSpace(io[0].line))
	}
	if data, err := os.ReadFile(victim); err != nil || string(data) != "precious\n" {
		t.Errorf("victim changed: %q, %v", data, err)
	}
	if code := o.stop(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if data, err := os.ReadFile(victim); err != nil || string(data) != "precious\n" {
		t.Errorf("victim changed at exit: %q, %v", data, err)
	}
}

// Contract §5 and §4 (stalls on time): a FIFO at the event file's path
// never blocks the loop.
//
// TestFIFOAtExportFile: a FIFO with no reader planted at the event file
// path. Opening it for writing must not block the observer: at start it
// either fails at once or runs; and when the FIFO is swapped in before a
// SIGHUP reopen, the loop must go on detecting stalls on time.
func TestFIFOAtExportFile(t *testing.T) {
	binaries(t)
	t.Run("at_start", func(t *testing.T) {
		dir := shortTempDir(t)
		fifo := filepath.Join(dir, "events.tsv")
		if err := unix.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		code, _, stderr := runObserverToExit(t, "--socket", filepath.Join(dir, "s.sock"), "--threshold-ms", "100",
			"--export-file", fifo, "--shutdown-after-secs", "1")
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("observer took %v with a FIFO at --export-file", took)
		}
		if code != 0 && (code != 1 || !strings.Contains(stderr, fifo)) {
			t.Errorf("exit %d, stderr %q: want a clean run or exit 1 naming the path", code, stderr)
		}
	})
	t.Run("on_reopen", func(t *testing.T) {
		const threshold = 200 * time.Millisecond
		o := startObserver(t, observerOpts{args: []string{"--threshold-ms", "200"}})
		if err := os.Rename(o.events, o.events+".old"); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mkfifo(o.events, 0o600); err != nil {
			t.Fatal(err)
		}
		o.signal(unix.SIGHUP)
		time.Sleep(50 * time.Millisecond)
		a := startAgent(t, o.socket, "--interval-ms", "5", "--hang-after", "5")
		deadline := time.Now().Add(5 * time.Second)
		for len(stallLogs(o.stderr.String())[a.pid]) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("agent %s never stalled after a FIFO was reopened as the event file: the loop is stuck\n%s", a.pid, o.stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, ms := range stallLogs(o.stderr.String())[a.pid] {
			if late := time.Duration(ms)*time.Millisecond - threshold; late < 0 || late > stallSlack {
				t.Errorf("pid %s stalled after %d ms of silence (threshold %v)", a.pid, ms, threshold)
			}
		}
		if code := o.stop(); code != 0 {
			t.Errorf("exit status %d, want 0", code)
		}
	})
}

// TestEventFileFullDisk proves contract §5's "a write error is logged
// once and counted, never fatal and never silent" on a full disk, and
// §4's stalls surfaced on time whatever becomes of the file, for both ways
// a disk is full: every write failing from the start (/dev/full, no root
// needed), and a disk that fills up and then has space again (a tmpfs, as
// root).
func TestEventFileFullDisk(t *testing.T) {
	t.Run("every_write_fails", testFullDiskEveryWriteFails)
	t.Run("fills_then_space_returns", testFullDiskFillsThenSpaceReturns)
}

// testFullDiskEveryWriteFails: every write to the event file (/dev/full)
// fails; the observer counts, logs once, goes on surfacing stalls (seen in
// the metrics, the file being unwritable), and still exits cleanly with
// lines it cannot flush.
func testFullDiskEveryWriteFails(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		skipBecause(t, "no /dev/full here")
	}
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "50", "--prom-addr", "127.0.0.1:0", "--export-file", "/dev/full"}})
	a := startAgent(t, p.socket, "--interval-ms", "5", "--hang-after", "20")
	body := waitScrape(t, p, 5*time.Second, "a stall and write errors", func(b string) bool {
		n, _ := strconv.Atoi(sampleValue(b, "varta_export_write_errors_total"))
		return sampleValue(b, `varta_status{pid="`+a.pid+`"}`) == "3" && n >= 2
	})
	if v := sampleValue(body, `varta_stalls_total{pid="`+a.pid+`"}`); v != "1" {
		t.Errorf("stalls %q", v)
	}
	time.Sleep(300 * time.Millisecond)
	if code := p.stop(); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr.String())
	}
	if c := strings.Count(p.stderr.String(), "event file write failed"); c != 1 {
		t.Errorf("write failure logged %d times, want once:\n%s", c, p.stderr.String())
	}
}

// testFullDiskFillsThenSpaceReturns puts the event file on a 64 KiB
// tmpfs, fills the rest of it, and keeps agents beating and stalling: the
// failed writes are logged once and counted, stalls are still detected on
// time while the disk is full, and once a filler file is deleted, writing
// resumes with whole lines only.
func testFullDiskFillsThenSpaceReturns(t *testing.T) {
	const threshold = 200 * time.Millisecond
	mnt := mountTinyTmpfs(t, "64k")
	events := filepath.Join(mnt, "events.tsv")
	o := startObserver(t, observerOpts{args: []string{"--threshold-ms", "200", "--export-file", events, "--prom-addr", "127.0.0.1:0"}})
	filler := filepath.Join(mnt, "filler")
	fillDisk(t, filler)
	healthy := startAgent(t, o.socket, "--interval-ms", "5")
	hungWhileFull := startAgent(t, o.socket, "--interval-ms", "5", "--hang-after", "20")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(o.stderr.String(), "event file write failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no write failure logged with the disk full:\n%s", o.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Stalls go on while nothing can be written.
	for len(stallLogs(o.stderr.String())[hungWhileFull.pid]) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("hung agent %s never stalled while the disk was full:\n%s", hungWhileFull.pid, o.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // more failed flushes
	if m := samples(t, scrape(t, o, nil)); m["varta_export_write_errors_total"] == 0 {
		t.Errorf("varta_export_write_errors_total is 0 with the disk full")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	hungAfter := startAgent(t, o.socket, "--interval-ms", "5", "--hang-after", "5")
	evs := o.waitEvents(10*time.Second, "writing to resume: the late hung agent's stall", func(evs []tsvEvent) bool {
		return countEvents(evs, "stall", hungAfter.pid) == 1
	})
	if n := checkStallsOnTime(t, evs, hungAfter.pid, threshold, stallSlack); n != 1 {
		t.Errorf("agent %s hung after space returned: %d stalls, want 1", hungAfter.pid, n)
	}
	for pid, silent := range stallLogs(o.stderr.String()) {
		for _, ms := range silent {
			if late := time.Duration(ms)*time.Millisecond - threshold; late < 0 || late > stallSlack {
				t.Errorf("pid %s stalled after %d ms of silence (threshold %v)", pid, ms, threshold)
			}
		}
	}
	if n := len(stallLogs(o.stderr.String())[hungWhileFull.pid]); n != 1 {
		t.Errorf("agent %s hung while the disk was full: %d stalls logged, want 1", hungWhileFull.pid, n)
	}
	if n := countEvents(evs, "beat", healthy.pid); n == 0 {
		t.Errorf("no beat of agent %s in the file after space returned", healthy.pid)
	}
	stderr := o.stderr.String()
	if n := strings.Count(stderr, "event file write failed"); n != 1 {
		t.Errorf("write failure logged %d times in one episode, want once", n)
	}
	if !strings.Contains(stderr, "writable again") {
		t.Errorf("no log line says the event file is writable again")
	}
	if code := o.stop(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	data, err := os.ReadFile(events)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("event file ends inside a line: ...%q", data[max(0, len(data)-80):])
	}
	parseEvents(t, data) // fails on a torn line
}

// mountTinyTmpfs mounts a tmpfs of size bytes in a fresh directory and
// unmounts it at the end of the test; it skips without root or tmpfs.
func mountTinyTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		skipBecause(t, "mounting a tmpfs needs root")
	}
	mnt := filepath.Join(shortTempDir(t), "m")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size); err != nil {
		skipBecause(t, "cannot mount a tmpfs (%v): the full-disk test needs one", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// fillDisk writes a file at path until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 512)
	for {
		if _, err := f.Write(chunk); err != nil {
			return
		}
	}
}

// stallLogs returns, per pid, the silent_ms of each "agent stalled" line
// of the observer's log.
func stallLogs(stderr string) map[string][]int {
	m := map[string][]int{}
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.Contains(line, `msg="agent stalled"`) {
			continue
		}
		var pid string
		ms := -1
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "pid="); ok {
				pid = v
			}
			if v, ok := strings.CutPrefix(f, "silent_ms="); ok {
				ms, _ = strconv.Atoi(v)
			}
		}
		m[pid] = append(m[pid], ms)
	}
	return m
}
