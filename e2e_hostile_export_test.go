//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

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
		t.Skipf("cannot make a hard link: %v", err)
	}
	code, stderr := runHostileObserver(t, "--socket", filepath.Join(dir, "s.sock"), "--threshold-ms", "100",
		"--export-file", link, "--shutdown-after-secs", "1")
	if code != 1 || !strings.Contains(stderr, link) || !strings.Contains(stderr, "hard link") {
		t.Errorf("hard link at --export-file: exit %d, stderr %q; want 1 and a line naming the path and the link", code, stderr)
	}
	if data, err := os.ReadFile(victim); err != nil || string(data) != "precious\n" {
		t.Errorf("victim changed: %q, %v", data, err)
	}

	o := startObserver(t, "--threshold-ms", "5000")
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
	o := startObserver(t, "--threshold-ms", "5000", "--export-file", events,
		"--export-file-max-bytes", "2000", "--export-file-keep", "3")
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
