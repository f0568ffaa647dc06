//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// statLine builds a /proc/PID/stat line: pid, (comm), state, then fields 4
// to 21 as "0", field 22 the start time, then the rest.
func statLine(comm string, state byte, start string) string {
	f := []string{"1234", "(" + comm + ")", string(state)}
	for i := 4; i <= 21; i++ {
		f = append(f, strconv.Itoa(i*11))
	}
	f = append(f, start, "8425472", "270", "18446744073709551615")
	return strings.Join(f, " ") + "\n"
}

func TestStatFields(t *testing.T) {
	for _, tc := range []struct {
		name      string
		line      string
		state     byte
		start     uint64
		ok        bool
		wantState bool
	}{
		{"plain", statLine("agent", 'S', "987654"), 'S', 987654, true, true},
		{"comm with spaces", statLine("my agent 2", 'R', "42"), 'R', 42, true, true},
		{"comm with parens", statLine("a) (b", 'D', "77"), 'D', 77, true, true},
		{"comm ending in paren", statLine("x)", 'S', "5"), 'S', 5, true, true},
		{"comm faking fields", statLine(") S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 999", 'S', "31"), 'S', 31, true, true},
		{"empty comm", statLine("", 'Z', "9"), 'Z', 9, true, true},
		{"zombie", statLine("agent", 'Z', "100"), 'Z', 100, true, true},
		{"max start", statLine("a", 'S', "18446744073709551615"), 'S', ^uint64(0), true, true},
		{"no paren", "1234 agent S 1 2 3\n", 0, 0, false, false},
		{"nothing after paren", "1234 (agent)", 0, 0, false, false},
		{"state only", "1234 (agent) S", 0, 0, false, false},
		{"short", "1234 (agent) S 1 2 3 4 5\n", 'S', 0, false, true},
		{"empty", "", 0, 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, start, ok := statFields([]byte(tc.line))
			if ok != tc.ok || start != tc.start || (tc.wantState && state != tc.state) {
				t.Fatalf("statFields(%q) = %q, %d, %v; want %q, %d, %v", tc.line, state, start, ok, tc.state, tc.start, tc.ok)
			}
		})
	}
}

// TestStatUint reads the fields selfProc needs (utime, stime, starttime,
// vsize, rss) by their proc(5) numbers, past a comm that fakes fields.
func TestStatUint(t *testing.T) {
	line := []byte(statLine(") S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15", 'S', "987654"))
	for n, want := range map[int]uint64{4: 44, 14: 154, 15: 165, 21: 231, 22: 987654, 23: 8425472, 24: 270, 25: ^uint64(0)} {
		if got, ok := statUint(line, n); !ok || got != want {
			t.Errorf("statUint(field %d) = %d, %v; want %d", n, got, ok, want)
		}
	}
	if _, ok := statUint(line, 26); ok {
		t.Error("statUint past the last field: ok")
	}
}

// TestProcPath: pid 0 stands for /proc/self; the longest pid fits with a
// name, and the path ends in the NUL openat(2) needs.
func TestProcPath(t *testing.T) {
	var dst [procPathMax]byte
	for _, tc := range []struct {
		pid  uint32
		name string
		want string
	}{
		{0, "stat", "/proc/self/stat\x00"},
		{1, "comm", "/proc/1/comm\x00"},
		{4294967295, "status", "/proc/4294967295/status\x00"},
	} {
		if got := string(procPath(&dst, tc.pid, tc.name)); got != tc.want {
			t.Errorf("procPath(%d, %q) = %q, want %q", tc.pid, tc.name, got, tc.want)
		}
	}
}

// TestProcDirListsEveryEntry: walking /proc/self/fd through a buffer that
// holds only a few entries at a time (so getdents64 is called many times)
// yields exactly the names os.ReadDir lists, without . and ..
func TestProcDirListsEveryEntry(t *testing.T) {
	for i := 0; i < 40; i++ {
		fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
	}
	// At an odd address: a caller's buffer need not be aligned (MIPS
	// faults on an unaligned load; make test-qemu runs this there).
	var raw [97]byte
	odd := 1 - int(uintptr(unsafe.Pointer(&raw[0]))&1)
	d, e := openProcDir(0, "fd", raw[odd:odd+96])
	if e != 0 {
		t.Skip("no /proc/self/fd:", e)
	}
	got := map[string]bool{}
	for {
		name, ok, err := d.next()
		if !ok {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		got[string(name)] = true
	}
	d.close()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, e := range ents {
		want[e.Name()] = true
	}
	// Each listing sees its own directory descriptor, which the other does not.
	if len(got) < 43 || len(got) != len(want) {
		t.Fatalf("procDir listed %d entries %v, os.ReadDir %d %v", len(got), got, len(want), want)
	}
	for name := range got {
		if name == "." || name == ".." {
			t.Fatalf("procDir listed %q", name)
		}
	}
}

// TestStatFieldsNeverPanics feeds every prefix of a real line.
func TestStatFieldsNeverPanics(t *testing.T) {
	line := statLine("a) b", 'S', "123")
	for i := 0; i <= len(line); i++ {
		statFields([]byte(line[:i]))
	}
}

// TestProcReaderOwnProcess reads a child's start time and comm and this
// process's liveness, and compares them with an independent parse. The
// start time is a child's: qemu-user makes up /proc/self/stat from the
// calling thread, whose start time changes as goroutines move between
// threads, while a child's comes from the kernel, as a real agent's does.
func TestProcReaderOwnProcess(t *testing.T) {
	var p procReader
	pid := uint32(os.Getpid())
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Skip("cannot start sleep:", err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	data, err := os.ReadFile("/proc/" + strconv.Itoa(child.Process.Pid) + "/stat")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	want, err := strconv.ParseUint(fields[22-3], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.startTime(uint32(child.Process.Pid)); got != want || got == 0 {
		t.Fatalf("startTime(child) = %d, want %d", got, want)
	}
	if !p.alive(pid) {
		t.Fatal("alive(self) = false")
	}
	var comm [16]byte
	st, n := p.startAndComm(uint32(child.Process.Pid), &comm)
	if st != want || string(comm[:n]) != "sleep" {
		t.Fatalf("startAndComm(child) = %d, %q; want %d, \"sleep\"", st, comm[:n], want)
	}
	if got := p.startTime(1); got == 0 {
		t.Fatal("startTime(1) = 0")
	}
}

// TestStatComm: field 2 of a stat line, from the first '(' to the last ')'.
func TestStatComm(t *testing.T) {
	for _, comm := range []string{"agent", "my agent 2", "a) (b", "x)", "(", "", ") S 1 2 3"} {
		got, ok := statComm([]byte(statLine(comm, 'S', "5")))
		if !ok || string(got) != comm {
			t.Errorf("statComm(%q) = %q, %v", statLine(comm, 'S', "5"), got, ok)
		}
	}
	for _, line := range []string{"", "1234 agent S 1", "1234 )agent( S"} {
		if got, ok := statComm([]byte(line)); ok {
			t.Errorf("statComm(%q) = %q, want none", line, got)
		}
	}
}

// TestStartAndCommMatchesCommFile: the comm read from /proc/PID/stat is
// /proc/PID/comm without its newline, for a process whose name holds what
// stat could garble: a space, parentheses, a backslash, a newline. The
// kernel names a process after the file it executed, here a symlink.
func TestStartAndCommMatchesCommFile(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep:", err)
	}
	for _, name := range []string{"sleep", "a) (b\\c\nd e", "fifteen-chars-and-more"} {
		link := filepath.Join(t.TempDir(), name)
		if err := os.Symlink(sleep, link); err != nil {
			t.Fatal(err)
		}
		child := exec.Command(link, "60")
		if err := child.Start(); err != nil {
			t.Skip("cannot start sleep:", err)
		}
		pid := child.Process.Pid
		file, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		var p procReader
		var comm [16]byte
		_, n := p.startAndComm(uint32(pid), &comm)
		child.Process.Kill()
		child.Wait()
		if err != nil {
			t.Skip("no /proc:", err)
		}
		want := strings.TrimSuffix(string(file), "\n")
		if string(comm[:n]) != want || n == 0 {
			t.Errorf("%q: startAndComm comm = %q, /proc/PID/comm %q", name, comm[:n], want)
		}
	}
}

// TestProcReaderChildLifecycle: a running child is alive with its own start
// time; once it exits it is dead while still a zombie and after the reap.
func TestProcReaderChildLifecycle(t *testing.T) {
	var p procReader
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("cannot run sleep:", err)
	}
	defer cmd.Process.Kill()
	pid := uint32(cmd.Process.Pid)
	if !p.alive(pid) {
		t.Fatal("running child not alive")
	}
	st := p.startTime(pid)
	if st == 0 || st < p.startTime(uint32(os.Getpid())) {
		t.Fatalf("child start time %d, parent %d", st, p.startTime(uint32(os.Getpid())))
	}
	cmd.Process.Signal(syscall.SIGKILL)
	// Not reaped yet: a zombie counts as dead.
	deadline := time.Now().Add(5 * time.Second)
	for p.alive(pid) {
		if time.Now().After(deadline) {
			t.Fatal("killed child still alive (zombie not recognised)")
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Wait()
	if p.alive(pid) {
		t.Fatal("reaped child alive")
	}
	if got := p.startTime(pid); got != 0 {
		t.Fatalf("startTime of a reaped pid = %d, want 0", got)
	}
	var comm [16]byte
	if st, n := p.startAndComm(pid, &comm); st != 0 || n != 0 {
		t.Fatalf("startAndComm of a reaped pid = %d, %q", st, comm[:n])
	}
}

// TestProcReaderAliveWhenProcUnreadable: when /proc/PID/stat cannot be
// opened although the process exists (here: out of descriptors; also
// /proc not mounted, or hidepid), liveness falls back to kill(pid, 0), and
// a process that exists is alive whether or not we may signal it.
func TestProcReaderAliveWhenProcUnreadable(t *testing.T) {
	var p procReader
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("cannot run sleep:", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := uint32(cmd.Process.Pid)

	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// The next descriptor would be the lowest free one: a soft limit at
	// that number makes every open fail with EMFILE.
	next, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(next)
	low := lim
	low.Cur = uint64(next)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Skip("cannot lower RLIMIT_NOFILE:", err)
	}
	n := p.read(pid, "stat")
	alive := p.alive(pid)
	unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	if n > 0 {
		t.Skip("/proc/PID/stat still readable; cannot test the fallback")
	}
	if !alive {
		t.Fatal("a running process whose /proc entry could not be read is reported dead")
	}
}

// BenchmarkProcIdentify: what /proc costs for a new agent, a live process
// (one read of /proc/PID/stat for its start time and comm).
func BenchmarkProcIdentify(b *testing.B) {
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		b.Skip("cannot start sleep:", err)
	}
	b.Cleanup(func() { child.Process.Kill(); child.Wait() })
	var p procReader
	var comm [16]byte
	pid := uint32(child.Process.Pid)
	b.ReportAllocs()
	for b.Loop() {
		if st, _ := p.startAndComm(pid, &comm); st == 0 {
			b.Fatal("no start time")
		}
	}
}
