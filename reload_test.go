package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// reloadObserver starts an observer in this process from a --config file
// holding text (no --socket flag, so the file's socket option counts), its
// log going to /dev/null; rewrite the file and call o.reload.
func reloadObserver(t *testing.T, text string, args ...string) (o *observer, conf string) {
	t.Helper()
	conf = filepath.Join(shortTempDir(t), "varta-watch.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--config", conf}, args...)
	cfg, err := loadConfig(args)
	if err != nil {
		t.Fatal(err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { devnull.Close() })
	if o, err = newObserver(cfg, newLogger(false, devnull)); err != nil {
		t.Fatal(err)
	}
	o.args = args
	t.Cleanup(o.closeAll)
	return o, conf
}

func rewrite(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sendTo sends one frame of this process to the socket at path.
func sendTo(t *testing.T, path string, nonce uint64) {
	t.Helper()
	fd, err := newSocket(unix.AF_UNIX, unix.SOCK_DGRAM)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var b [FrameSize]byte
	EncodeFrame(&b, Frame{Status: StatusOK, Pid: uint32(os.Getpid()), Nonce: nonce})
	if err := unix.Sendto(fd, b[:], 0, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
}

func beatsOf(o *observer, pid int) uint64 {
	if s := o.tr.lookup(uint32(pid)); s != noSlot {
		return o.tr.slots[s].beats
	}
	return 0
}

// Contract §9 reload, §3: a reload that changes the socket path binds the
// new socket, judges the beats still queued on the old one (the loop has
// not read them), removes the old path, and takes beats on the new one;
// the pid keeps its count. A changed socket_mode alone is a chmod.
func TestReloadMovesTheSocket(t *testing.T) {
	dir := shortTempDir(t)
	first, second := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	main := "config varta-watch 'main'\n\toption threshold_ms '5000'\n\toption socket '"
	o, conf := reloadObserver(t, main+first+"'\n")
	for n := uint64(1); n <= 3; n++ {
		sendTo(t, first, n)
	}
	rewrite(t, conf, main+second+"'\n\toption socket_mode '0660'\n")
	o.reload(monoNow())
	if !o.am.reloadOK || o.cfg.socket != second || o.sock.path != second {
		t.Fatalf("reload: ok %v, socket %s (%s), want %s", o.am.reloadOK, o.cfg.socket, o.sock.path, second)
	}
	if n := beatsOf(o, os.Getpid()); n != 3 {
		t.Fatalf("%d beats judged from the old socket, want the 3 queued before the reload", n)
	}
	if _, err := os.Lstat(first); !os.IsNotExist(err) {
		t.Errorf("old socket path still there: %v", err)
	}
	if fi, err := os.Lstat(second); err != nil || fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("new socket %v, %v; want a socket with mode 0660", fi, err)
	}
	sendTo(t, second, 4)
	o.drainSocket()
	if n := beatsOf(o, os.Getpid()); n != 4 {
		t.Fatalf("%d beats after one on the new socket, want 4", n)
	}
	rewrite(t, conf, main+second+"'\n\toption socket_mode '0600'\n")
	fd := o.sock.fd
	o.reload(monoNow())
	if fi, err := os.Lstat(second); err != nil || fi.Mode().Perm() != 0o600 || o.sock.fd != fd {
		t.Errorf("after a mode change: %v, %v, fd %d (was %d); want mode 0600 on the same socket", fi, err, o.sock.fd, fd)
	}
	// A new path that is taken by a file fails the reload, the socket
	// stays.
	taken := filepath.Join(dir, "file")
	rewrite(t, taken, "")
	rewrite(t, conf, main+taken+"'\n")
	o.reload(monoNow())
	if o.am.reloadOK || o.sock.path != second || o.sock.fd != fd {
		t.Errorf("reload onto a regular file: ok %v, socket %s", o.am.reloadOK, o.sock.path)
	}
	if b, _ := os.ReadFile(taken); b == nil {
		t.Errorf("the regular file was removed")
	}
}

// Contract §9 reload, §3: a new socket_queue needs a new socket at the same
// path; the beats queued on the old one are judged. Raising the queue past
// the machine's net.unix.max_dgram_qlen takes CAP_SYS_ADMIN.
func TestReloadRequeuesTheSocket(t *testing.T) {
	sys, err := maxDgramQlen()
	if err != nil {
		t.Skipf("no net.unix.max_dgram_qlen: %v", err)
	}
	main := "config varta-watch 'main'\n\toption threshold_ms '5000'\n\toption socket_queue '"
	o, conf := reloadObserver(t, main+"0'\n", "--socket", filepath.Join(shortTempDir(t), "s.sock"))
	for n := uint64(1); n <= 3; n++ {
		sendTo(t, o.cfg.socket, n)
	}
	fd, ino := o.sock.fd, o.sock.ino
	rewrite(t, conf, main+"0'\n")
	o.reload(monoNow())
	if o.sock.fd != fd || beatsOf(o, os.Getpid()) != 0 {
		t.Fatalf("an unchanged queue made a new socket")
	}
	want := sys + 7
	rewrite(t, conf, main+strconv.Itoa(want)+"'\n")
	o.reload(monoNow())
	if !o.am.reloadOK {
		t.Fatal("reload failed")
	}
	if o.sock.queue.qlen != want {
		if o.sock.fd == fd && o.sock.queue.qlen == sys {
			t.Skipf("no socket queue of its own here (it takes CAP_SYS_ADMIN and network namespaces): kept the machine's %d", sys)
		}
		t.Fatalf("queue %d, want %d", o.sock.queue.qlen, want)
	}
	if o.sock.fd == fd || o.sock.ino == ino || o.sock.path != o.cfg.socket || !o.sock.holdsPath() {
		t.Fatalf("new socket: fd %d (was %d), ino %d (was %d), path %s", o.sock.fd, fd, o.sock.ino, ino, o.sock.path)
	}
	if n := beatsOf(o, os.Getpid()); n != 3 {
		t.Fatalf("%d beats judged from the old socket, want 3", n)
	}
	if _, err := os.Lstat(o.cfg.socket + ".reload"); !os.IsNotExist(err) {
		t.Errorf("the socket bound beside the path is still there: %v", err)
	}
	sendTo(t, o.cfg.socket, 4)
	o.drainSocket()
	if n := beatsOf(o, os.Getpid()); n != 4 {
		t.Fatalf("%d beats after one on the new socket, want 4", n)
	}
}

// Contract §9 reload: tracker_capacity grows and shrinks in place, every
// pid keeping its slot state; below the tracked pids the reload fails.
func TestReloadResizesTheTracker(t *testing.T) {
	o, conf := reloadObserver(t, "config varta-watch 'main'\n\toption tracker_capacity '64'\n",
		"--socket", filepath.Join(shortTempDir(t), "s.sock"), "--threshold-ms", "100")
	rng := rand.New(rand.NewPCG(3, 4))
	type state struct {
		beats, nonce uint64
		list         uint8
	}
	want := map[uint32]state{}
	for i := 0; i < 50; i++ {
		pid := uint32(1000 + rng.IntN(1<<20))
		if o.tr.lookup(pid) != noSlot {
			continue
		}
		s := o.tr.insert(pid, int64(rng.IntN(1000)))
		sl := &o.tr.slots[s]
		sl.beats, sl.nonce = uint64(i+1), uint64(rng.IntN(99))
		if i%3 == 0 {
			o.tr.moveTo(s, slotStalled+uint8(i%2))
		}
	}
	for s := range o.tr.slots {
		if sl := &o.tr.slots[s]; sl.list != slotFree {
			want[sl.pid] = state{sl.beats, sl.nonce, sl.list}
		}
	}
	o.setAgents(nil) // the lists in the order the loop keeps
	check := func(capacity int) {
		t.Helper()
		checkTracker(t, o.tr)
		if o.tr.capacity() != capacity || o.tr.n != len(want) {
			t.Fatalf("capacity %d with %d pids, want %d with %d", o.tr.capacity(), o.tr.n, capacity, len(want))
		}
		for pid, w := range want {
			s := o.tr.lookup(pid)
			if s == noSlot {
				t.Fatalf("pid %d lost", pid)
			}
			if sl := o.tr.slots[s]; (state{sl.beats, sl.nonce, sl.list}) != w {
				t.Fatalf("pid %d: %+v, want %+v", pid, sl, w)
			}
		}
	}
	for _, c := range []int{len(want), 4096, 64, len(want) + 1} {
		rewrite(t, conf, "config varta-watch 'main'\n\toption tracker_capacity '"+strconv.Itoa(c)+"'\n")
		o.reload(monoNow())
		if !o.am.reloadOK {
			t.Fatalf("reload to capacity %d failed", c)
		}
		check(c)
	}
	rewrite(t, conf, "config varta-watch 'main'\n\toption tracker_capacity '"+strconv.Itoa(len(want)-1)+"'\n")
	o.reload(monoNow())
	if o.am.reloadOK {
		t.Fatalf("a capacity below the %d tracked pids was taken", len(want))
	}
	check(len(want) + 1)
}

// The coalescer's longest pause is 1% of the smallest threshold: a reload
// that lowers a threshold shortens it (coalesce.go).
func TestReloadUpdatesTheCoalescer(t *testing.T) {
	if !coalesceEnabled {
		t.Skip("no coalescing on this system")
	}
	o, conf := reloadObserver(t, "config varta-watch 'main'\n\toption threshold_ms '500'\n",
		"--socket", filepath.Join(shortTempDir(t), "s.sock"))
	if o.sock.queue.qlen == 0 {
		t.Skip("socket queue unknown: no coalescing")
	}
	if o.coal.maxPause != 5_000_000 {
		t.Fatalf("maxPause %d at 500 ms, want 5 ms", o.coal.maxPause)
	}
	rewrite(t, conf, "config varta-watch 'main'\n\toption threshold_ms '500'\n\nconfig agent 'fast'\n\toption comm 'x'\n\toption threshold_ms '20'\n")
	o.reload(monoNow())
	if o.coal.maxPause != 200_000 {
		t.Fatalf("maxPause %d after a section with 20 ms, want 200 µs", o.coal.maxPause)
	}
}

// Contract §9 reload, §2 --prom-rate-limit-per-sec/burst: a reload sets the
// new limit on the running metrics server, which keeps its listener.
func TestReloadSetsTheRateLimit(t *testing.T) {
	main := "config varta-watch 'main'\n\toption threshold_ms '5000'\n\toption prom_addr '127.0.0.1:0'\n"
	o, conf := reloadObserver(t, main, "--socket", filepath.Join(shortTempDir(t), "s.sock"))
	lfd := o.prom.lfd
	if o.prom.limiter.interval != 0 {
		t.Fatalf("a rate limit at start: %+v", o.prom.limiter)
	}
	rewrite(t, conf, main+"\toption prom_rate_limit_per_sec '5'\n\toption prom_rate_limit_burst '2'\n")
	o.reload(monoNow())
	if l := o.prom.limiter; l.interval != 200_000_000 || l.burst != 2 || len(l.table) == 0 || o.prom.lfd != lfd {
		t.Fatalf("after the reload: limiter %d ns, burst %d, listener %d (was %d)", l.interval, l.burst, o.prom.lfd, lfd)
	}
	rewrite(t, conf, main)
	o.reload(monoNow())
	if o.prom.limiter.interval != 0 {
		t.Fatalf("the limit stayed after it was removed")
	}
}

// A scrape under way when a reload shrinks the tracker and removes agent
// sections ends: its cursor may point past the new slots and sections.
// (Before the cursor allowed for that, renderStep never returned: the
// test then fails at go test's timeout, in renderStep.)
func TestScrapeAcrossAShrinkingReloadEnds(t *testing.T) {
	var sections strings.Builder
	for i := 0; i < 256; i++ {
		sections.WriteString("config agent 'a" + strconv.Itoa(i) + "'\n\toption comm 'c" + strconv.Itoa(i) + "'\n")
	}
	main := "config varta-watch 'main'\n\toption threshold_ms '5000'\n\toption prom_addr '127.0.0.1:0'\n\toption tracker_capacity '"
	o, conf := reloadObserver(t, main+"4096'\n"+sections.String(), "--socket", filepath.Join(shortTempDir(t), "s.sock"))
	for i := 0; i < 4000; i++ {
		o.tr.insert(uint32(100000+i), 1)
	}
	for i := 0; i < 2000; i++ {
		o.tr.remove(o.tr.lookup(uint32(100000 + i))) // the rest sit in slots 2000…3999
	}
	// scrape renders up to the point where at says to reload with text,
	// then to its end.
	scrape := func(at func(c *renderCursor) bool, text string) {
		t.Helper()
		var c renderCursor
		o.prom.startRender(&c, 2)
		buf := make([]byte, 0, 2*promOutChunk)
		for !at(&c) {
			if c.done() {
				t.Fatal("the scrape ended before the reload")
			}
			buf = o.prom.renderStep(buf[:0], &c, 2)
		}
		rewrite(t, conf, text)
		o.reload(3)
		if !o.am.reloadOK {
			t.Fatal("reload failed")
		}
		for i := 0; !c.done(); i++ {
			if i > 1000 {
				t.Fatalf("the scrape does not end: stage %d slot %d", c.stage, c.slot)
			}
			buf = o.prom.renderStep(buf[:0], &c, 2)
		}
	}
	scrape(func(c *renderCursor) bool { return c.stage == stageAgents && c.slot&511 > 2 },
		main+"4096'\nconfig agent 'a0'\n\toption comm 'c0'\n")
	scrape(func(c *renderCursor) bool { return c.stage == stageBeats && c.slot > 2100 }, main+"2048'\n")
	if o.tr.capacity() != 2048 || o.tr.n != 2000 {
		t.Fatalf("capacity %d with %d pids, want 2048 with 2000", o.tr.capacity(), o.tr.n)
	}
}
