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

// TestLogWriterNeverSleepsInWrite: the writer goroutine does not block in
// write(2) on a full stderr pipe. With one P (setLoopProcs) a goroutine
// blocked in a syscall holds the P until sysmon retakes it, up to ~20 ms
// in which the loop cannot run. It waits for room by sleeping instead, and
// writes the lines once the reader reads.
func TestLogWriterNeverSleepsInWrite(t *testing.T) {
	r, w, wfd := fullPipe(t)
	l := newLogger(false, w)
	if !l.async {
		t.Fatal("a pipe did not make the logger asynchronous")
	}
	for i := 0; i < 3; i++ {
		l.info("line", fInt("n", int64(i)))
	}
	for i := 0; i < 20; i++ { // 200 ms for the writer to have tried
		time.Sleep(10 * time.Millisecond)
		if tid := blockedInWrite(wfd); tid != "" {
			t.Fatalf("thread %s sleeps in write(2) on the full stderr pipe", tid)
		}
	}
	got := make(chan string, 1)
	go func() {
		var all []byte
		buf := make([]byte, 64<<10)
		for !strings.Contains(string(all), "n=2") {
			n, err := r.Read(buf)
			if err != nil {
				break
			}
			all = append(all, buf[:n]...)
		}
		got <- string(all)
	}()
	select {
	case s := <-got:
		for i := 0; i < 3; i++ {
			if !strings.Contains(s, `msg=line n=`+strconv.Itoa(i)) {
				t.Errorf("line %d not written once the reader read", i)
			}
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the lines were not written within 20 s of the reader reading")
	}
}

// fullPipe returns a pipe whose write end is blocking, as a stderr or
// stdout is, and full, after skipping where /proc cannot show which
// thread sleeps in which syscall.
func fullPipe(t *testing.T) (r, w *os.File, wfd int) {
	t.Helper()
	if os.Getenv("VARTA_QEMU_USER") == "1" {
		t.Skip("qemu-user: /proc/self/task/*/syscall shows the emulator's host syscalls")
	}
	if b, err := os.ReadFile("/proc/self/syscall"); err != nil || len(b) == 0 {
		t.Skipf("no /proc/self/syscall here (%v): a thread asleep in write(2) cannot be seen", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	wfd = int(w.Fd()) // blocking from here
	unix.SetNonblock(wfd, true)
	page := make([]byte, 4096)
	for {
		if _, err := unix.Write(wfd, page); err != nil {
			break // EAGAIN: the pipe is full
		}
	}
	unix.SetNonblock(wfd, false)
	return r, w, wfd
}

// blockedInWrite names a thread of this process asleep in write(2) on fd,
// "" when there is none.
func blockedInWrite(fd int) string {
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		b, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/syscall")
		f := strings.Fields(string(b))
		if len(f) > 1 && f[0] == strconv.Itoa(unix.SYS_WRITE) && f[1] == "0x"+strconv.FormatInt(int64(fd), 16) {
			return task.Name()
		}
	}
	return ""
}

// TestAddrLineNeverSleepsInWrite: the metrics address line that a reload
// prints from a goroutine beside the loop does not block in write(2) on a
// full stdout pipe (it would hold the loop's only P, as the log writer
// would; TestLogWriterNeverSleepsInWrite), and it is written whole once
// the reader reads.
func TestAddrLineNeverSleepsInWrite(t *testing.T) {
	r, w, wfd := fullPipe(t)
	log := devNullLogger(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		printAddr(w, "127.0.0.1:9464", log)
	}()
	for i := 0; i < 20; i++ { // 200 ms for the goroutine to have tried
		time.Sleep(10 * time.Millisecond)
		if tid := blockedInWrite(wfd); tid != "" {
			t.Fatalf("thread %s sleeps in write(2) on the full stdout pipe", tid)
		}
	}
	var all []byte
	buf := make([]byte, 64<<10)
	for !strings.Contains(string(all), "127.0.0.1:9464\n") {
		r.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := r.Read(buf)
		if err != nil {
			t.Fatalf("the address line was not written once the reader read: %v", err)
		}
		all = append(all, buf[:n]...)
	}
	<-done
	if n := log.droppedLines(); n != 0 {
		t.Errorf("%d lines counted lost, want none", n)
	}
}

// TestWritePolledGivesUp: with a limit, a write to a full pipe that
// nobody reads stops after about that long (errWriteStuck), and a closed
// file is an error at once, not a wait: the address line is then counted
// as lost.
func TestWritePolledGivesUp(t *testing.T) {
	_, _, wfd := fullPipe(t)
	var pfd [1]unix.PollFd
	t0 := time.Now()
	n, err := writePolled(wfd, &pfd, []byte("127.0.0.1:9464\n"), 50*time.Millisecond)
	if err != errWriteStuck || n != 0 {
		t.Fatalf("writePolled on a full pipe: %d bytes, %v; want 0, errWriteStuck", n, err)
	}
	if d := time.Since(t0); d < 50*time.Millisecond {
		t.Errorf("gave up after %v, before its 50 ms", d)
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	log := devNullLogger(t)
	done := make(chan struct{})
	go func() { defer close(done); printAddr(f, "127.0.0.1:9464", log) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("printAddr on a closed file did not return within 5 s")
	}
	if n := log.droppedLines(); n != 1 {
		t.Errorf("printAddr on a closed file: %d lines counted lost, want 1", n)
	}
}

// devNullLogger is a logger that writes to /dev/null, for its counts.
func devNullLogger(t *testing.T) *logger {
	t.Helper()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { devnull.Close() })
	return newLogger(false, devnull)
}
