//go:build linux

package main

// Nothing accepted is lost when the event file's path misbehaves: the live
// file moved or removed behind a rotating observer, a rotation whose new
// file cannot be created (no inode left), and a SIGHUP reopen that fails
// (the directory is gone). In each case the beat rows over every file
// equal the beats the observer accepted.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lossRig drives one observer with short-lived agents and keeps count of
// the beats the kernel queued for it.
type lossRig struct {
	t    *testing.T
	o    *observerProc
	sent int // beats the kernel queued for the observer (agents' --report)
	gone int // of those, rows the test itself removed with a file
}

// batch runs an agent sending n beats and waits until the observer has
// accepted all that the kernel queued.
func (r *lossRig) batch(n int) {
	r.t.Helper()
	out := &lockedBuffer{}
	a := startAgentOut(r.t, out, r.o.socket, "--count", fmt.Sprint(n), "--interval-ms", "1", "--report")
	a.waitExit(r.t, 30*time.Second)
	var sent, dropped int
	if _, err := fmt.Sscanf(out.String(), "sent %d dropped %d", &sent, &dropped); err != nil {
		r.t.Fatalf("agent report %q: %v", out.String(), err)
	}
	r.sent += sent
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := samples(r.t, scrape(r.t, r.o, nil))["varta_beats_accepted_total"]
		if int(got) == r.sent {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("observer accepted %v beats, the kernel queued %d", got, r.sent)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// beatRows counts the beat rows in files (absent ones count 0), failing on
// a torn line.
func beatRows(t *testing.T, files ...string) int {
	t.Helper()
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			t.Fatalf("%s ends inside a line: ...%q", f, data[max(0, len(data)-60):])
		}
		n += countEvents(parseEvents(t, data), "beat", "")
	}
	return n
}

// listing describes the files of dir, for failure messages.
func listing(dir string) string {
	ents, _ := os.ReadDir(dir)
	var b strings.Builder
	for _, e := range ents {
		fi, err := e.Info()
		if err == nil {
			fmt.Fprintf(&b, " %s(%d)", e.Name(), fi.Size())
		}
	}
	return b.String()
}

// want is the number of beat rows the files must hold.
func (r *lossRig) want() int { return r.sent - r.gone }

// waitRows polls until the beat rows over files are r.want().
func (r *lossRig) waitRows(what string, files ...string) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := beatRows(r.t, files...)
		if n == r.want() {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: %d beat rows over %v, want %d (%d beats accepted, %d removed with a file); files:%s\nstderr:\n%s",
				what, n, files, r.want(), r.sent, r.gone, listing(filepath.Dir(files[0])), r.o.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// generations returns PATH, PATH.1 … PATH.keep.
func generations(path string, keep int) []string {
	out := []string{path}
	for i := 1; i <= keep; i++ {
		out = append(out, fmt.Sprintf("%s.%d", path, i))
	}
	return out
}

// TestRotationLiveFileGone: with rotation on, the live file is moved away
// (mv e.tsv archived.tsv) or removed (rm e.tsv) without a SIGHUP, and the
// agents go on beating. The observer must create the path again rather
// than shift the generations (which would push them off the end), the
// moved file must not grow past the limit, no line may go into the removed
// file, and rotation must go on as before: every accepted beat is in
// exactly one file.
func TestRotationLiveFileGone(t *testing.T) {
	const maxBytes = 2000
	for _, how := range []string{"moved", "removed"} {
		t.Run(how, func(t *testing.T) {
			logDir := filepath.Join(shortTempDir(t), "log")
			if err := os.Mkdir(logDir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(logDir, "e.tsv")
			archived := filepath.Join(logDir, "archived.tsv")
			gens := generations(path, 3)
			all := append([]string{archived}, gens...)
			o := startObserver(t, observerOpts{args: []string{"--threshold-ms", "60000", "--export-file", path,
				"--export-file-max-bytes", fmt.Sprint(maxBytes), "--export-file-keep", "3", "--prom-addr", "127.0.0.1:0"}})
			r := &lossRig{t: t, o: o}
			for i := 0; !exists(gens[2]); i++ {
				if i == 200 {
					t.Fatalf("no second generation after %d beats; files:%s", r.sent, listing(logDir))
				}
				r.batch(10)
				r.waitRows("filling three generations", all...)
			}
			if how == "moved" {
				if err := os.Rename(path, archived); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			}
			if how == "removed" {
				// What was in the file when it was removed is the remover's
				// to lose; nothing written after it.
				r.gone = r.sent - beatRows(t, all...)
			}
			deadline := time.Now().Add(10 * time.Second)
			for !exists(path) {
				if time.Now().After(deadline) {
					t.Fatalf("%s is not created again after it was %s; files:%s\nstderr:\n%s", path, how, listing(logDir), o.stderr.String())
				}
				r.batch(3)
				time.Sleep(50 * time.Millisecond)
			}
			r.waitRows("after the live file was "+how, all...)
			// Rotation goes on: the recreated file fills and is rotated,
			// the generations shift once, and none is lost.
			for i := 0; !exists(gens[3]); i++ {
				if i == 200 {
					t.Fatalf("no rotation after the file was recreated; files:%s", listing(logDir))
				}
				r.batch(10)
				r.waitRows("rotating after the file was "+how, all...)
			}
			if code := o.stop(); code != 0 {
				t.Fatalf("exit status %d\n%s", code, o.stderr.String())
			}
			if n := beatRows(t, all...); n != r.want() {
				t.Errorf("%d beat rows over all files, %d beats accepted, %d of them in the removed file; files:%s", n, r.sent, r.gone, listing(logDir))
			}
			for _, f := range all {
				if exists(f) && fileSize(t, f) > maxBytes {
					t.Errorf("%s holds %d bytes, past the limit %d", f, fileSize(t, f), maxBytes)
				}
			}
			if how == "moved" && !exists(archived) {
				t.Errorf("the moved file %s is gone: rotation renamed or removed it", archived)
			}
			ents, _ := os.ReadDir(logDir)
			for _, e := range ents {
				if !slices.Contains(all, filepath.Join(logDir, e.Name())) {
					t.Errorf("unexpected file %s left in the log directory", e.Name())
				}
			}
		})
	}
}

// mountTmpfsOpts mounts a tmpfs with the given options in a fresh
// directory (root only; skips with the reason otherwise).
func mountTmpfsOpts(t *testing.T, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		fmt.Printf("SKIP %s: mounting a tmpfs (%s) needs root\n", t.Name(), opts)
		skipBecause(t, "mounting a tmpfs needs root")
	}
	mnt := filepath.Join(shortTempDir(t), "m")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		fmt.Printf("SKIP %s: cannot mount a tmpfs (%s): %v\n", t.Name(), opts, err)
		skipBecause(t, "cannot mount a tmpfs (%s): %v", opts, err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// TestRotationCreateFails: the event file lives on a tmpfs with five
// inodes, one taken by a filler file, so that after two rotations the new
// file cannot be created. The failed rotation must leave every file as it
// was (the observer writes on past the limit, logs it once and retries);
// once the filler is removed, rotation completes. And with all five inodes
// in use by the root and four files, rotation goes on for ever. Every
// accepted beat is in exactly one file, but for the oldest generation that
// each rotation discards by design.
func TestRotationCreateFails(t *testing.T) {
	const maxBytes = 2000
	mnt := mountTmpfsOpts(t, "size=1m,nr_inodes=5")
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(mnt, "e.tsv")
	gens := generations(path, 3)
	o := startObserver(t, observerOpts{args: []string{"--threshold-ms", "60000", "--export-file", path,
		"--export-file-max-bytes", fmt.Sprint(maxBytes), "--export-file-keep", "3", "--prom-addr", "127.0.0.1:0"}})
	r := &lossRig{t: t, o: o}
	for i := 0; !strings.Contains(o.stderr.String(), "rotation failed"); i++ {
		if i == 200 {
			t.Fatalf("no failed rotation after %d beats; files:%s\nstderr:\n%s", r.sent, listing(mnt), o.stderr.String())
		}
		r.batch(10)
		r.waitRows("filling the tmpfs", gens...)
	}
	if exists(gens[3]) {
		t.Fatalf("a third generation exists with no inode left: files:%s", listing(mnt))
	}
	// Past the limit while the rotation fails, over more than one retry.
	for start := time.Now(); time.Since(start) < 2500*time.Millisecond; time.Sleep(300 * time.Millisecond) {
		r.batch(5)
		r.waitRows("while rotation fails", gens...)
	}
	if n := strings.Count(o.stderr.String(), "rotation failed"); n != 1 {
		t.Errorf("the failed rotation is logged %d times, want once per episode", n)
	}
	if m := samples(t, scrape(t, o, nil)); m["varta_export_write_errors_total"] < 2 {
		t.Errorf("varta_export_write_errors_total %v: each failed rotation is counted", m["varta_export_write_errors_total"])
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !exists(gens[3]) {
		if time.Now().After(deadline) {
			t.Fatalf("rotation did not complete once an inode was free; files:%s\nstderr:\n%s", listing(mnt), o.stderr.String())
		}
		r.batch(3)
		r.waitRows("after the filler was removed", gens...)
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(o.stderr.String(), "rotated again") {
		t.Errorf("no log line says rotation works again")
	}
	// Now the root and four files hold every inode: the next rotation
	// must still complete, discarding only the oldest generation.
	oldest, err := os.ReadFile(gens[3])
	if err != nil {
		t.Fatal(err)
	}
	discarded := countEvents(parseEvents(t, oldest), "beat", "")
	for i := 0; ; i++ {
		cur, _ := os.ReadFile(gens[3])
		if !strings.HasPrefix(string(cur), string(oldest)) {
			break // the oldest generation was replaced: a rotation
		}
		if i == 200 {
			t.Fatalf("no rotation with every inode in use; files:%s\nstderr:\n%s", listing(mnt), o.stderr.String())
		}
		r.batch(10)
		deadline := time.Now().Add(10 * time.Second)
		for n := beatRows(t, gens...); n != r.sent && n != r.sent-discarded; n = beatRows(t, gens...) {
			if time.Now().After(deadline) {
				t.Fatalf("%d beat rows, %d accepted (%d in the oldest generation); files:%s\nstderr:\n%s", n, r.sent, discarded, listing(mnt), o.stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	r.gone = discarded
	if code := o.stop(); code != 0 {
		t.Fatalf("exit status %d\n%s", code, o.stderr.String())
	}
	if n := beatRows(t, gens...); n != r.want() {
		t.Errorf("%d beat rows over all files, %d accepted less %d in the discarded generation; files:%s", n, r.sent, discarded, listing(mnt))
	}
	ents, _ := os.ReadDir(mnt)
	for _, e := range ents {
		if !slices.Contains(gens, filepath.Join(mnt, e.Name())) {
			t.Errorf("unexpected file %s left on the tmpfs", e.Name())
		}
	}
}

// TestReopenFailureRetried: the event file's directory is removed and
// SIGHUP asks for a reopen, which fails. The failure must be counted in
// varta_export_write_errors_total and logged once, nothing may go into the
// deleted file, the reopen is retried, and once the directory is back the
// observer goes on in the new file with every beat accepted since.
func TestReopenFailureRetried(t *testing.T) {
	logDir := filepath.Join(shortTempDir(t), "log")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(logDir, "e.tsv")
	o := startObserver(t, observerOpts{args: []string{"--threshold-ms", "60000", "--export-file", path, "--prom-addr", "127.0.0.1:0"}})
	r := &lossRig{t: t, o: o}
	r.batch(10)
	r.waitRows("before the directory is removed", path)
	before := r.sent
	if err := os.RemoveAll(logDir); err != nil {
		t.Fatal(err)
	}
	o.signal(unix.SIGHUP)
	r.batch(10)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Each failed attempt counts: two or more means it was retried.
		if m := samples(t, scrape(t, o, nil)); m["varta_export_write_errors_total"] >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("varta_export_write_errors_total stays below 3 with the directory gone\nstderr:\n%s", o.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.batch(10)
	if err := os.Mkdir(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.gone = before // the rows before the removal went with the directory
	r.waitRows("the new file after the directory came back", path)
	r.batch(10)
	r.waitRows("beats after the reopen", path)
	if code := o.stop(); code != 0 {
		t.Fatalf("exit status %d\n%s", code, o.stderr.String())
	}
	if n := beatRows(t, path); n != r.want() {
		t.Errorf("%d beat rows in the new file, %d beats accepted since the directory was removed", n, r.want())
	}
	stderr := o.stderr.String()
	if n := strings.Count(stderr, "level=ERROR"); n != 1 {
		t.Errorf("%d error lines for one episode of a failing path, want 1:\n%s", n, stderr)
	}
	if !strings.Contains(stderr, "event file reopened") {
		t.Errorf("no log line says the event file was reopened:\n%s", stderr)
	}
}
