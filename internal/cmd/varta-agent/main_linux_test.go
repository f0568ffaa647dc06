package main

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"varta-watch/internal/vlpclient"
)

// TestAgent builds the real binary and runs it against a real bound socket
// with SO_PASSCRED, as the observer would see it.
func TestAgent(t *testing.T) {
	if testing.Short() || os.Getenv("VARTA_E2E") == "0" {
		t.Skip("builds and runs the agent binary (off with -short or VARTA_E2E=0)")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build the agent: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "varta-agent")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("beats and terminal frame", func(t *testing.T) {
		r := newReceiver(t)
		// Both --flag value and --flag=value, and a single dash.
		a := start(t, bin, "--socket", r.path, "--count=3", "-interval-ms", "10", "--start-nonce", "5",
			"--nonce-step=2", "--status", "degraded", "--payload", "0xDEADBEEF", "--terminal")
		var last uint64
		for i, wantNonce := range []uint64{5, 7, 9} {
			f, kpid := r.recvFrame()
			want := frame{vlpclient.StatusDegraded, a.pid(), f.ts, wantNonce, 0xDEADBEEF}
			if f != want || kpid != a.pid() {
				t.Fatalf("beat %d: %+v from kernel pid %d, want %+v from %d", i, f, kpid, want, a.pid())
			}
			if f.ts == 0 || f.ts < last {
				t.Errorf("beat %d: timestamp %d after %d, want monotonic", i, f.ts, last)
			}
			last = f.ts
		}
		f, _ := r.recvFrame()
		if want := (frame{vlpclient.StatusCritical, a.pid(), f.ts, vlpclient.NonceTerminal, 0xDEADBEEF}); f != want {
			t.Errorf("terminal frame %+v, want %+v", f, want)
		}
		a.wait(0)
		r.expectNothing()
	})

	t.Run("defaults", func(t *testing.T) {
		r := newReceiver(t)
		a := start(t, bin, "--socket", r.path, "--count", "3")
		var ts []uint64
		for _, n := range []uint64{1, 2, 3} {
			f, _ := r.recvFrame()
			if want := (frame{vlpclient.StatusOK, a.pid(), f.ts, n, 0}); f != want {
				t.Errorf("%+v, want %+v", f, want)
			}
			ts = append(ts, f.ts)
		}
		// Two default intervals of 100 ms; a ticker never fires early, so
		// only a much shorter default can go below this bound.
		if d := time.Duration(ts[2] - ts[0]); d < 100*time.Millisecond {
			t.Errorf("3 beats within %v, want 2 intervals of 100ms", d)
		}
		a.wait(0)
		r.expectNothing()
	})

	t.Run("interval 0", func(t *testing.T) {
		r := newReceiver(t)
		a := start(t, bin, "--socket", r.path, "--count", "5", "--interval-ms", "0")
		for _, n := range []uint64{1, 2, 3, 4, 5} {
			if f, _ := r.recvFrame(); f.nonce != n {
				t.Errorf("nonce %d, want %d", f.nonce, n)
			}
		}
		a.wait(0)
	})

	t.Run("nonce wraps past 2^64-2 to 0", func(t *testing.T) {
		r := newReceiver(t)
		a := start(t, bin, "--socket", r.path, "--count", "4", "--interval-ms", "5", "--start-nonce", "0xFFFFFFFFFFFFFFFD")
		for _, n := range []uint64{0xFFFFFFFFFFFFFFFD, 0xFFFFFFFFFFFFFFFE, 0, 1} {
			if f, _ := r.recvFrame(); f.nonce != n {
				t.Errorf("nonce %#x, want %#x", f.nonce, n)
			}
		}
		a.wait(0)
	})

	t.Run("spoofed pid and repeated frames", func(t *testing.T) {
		r := newReceiver(t)
		a := start(t, bin, "--socket", r.path, "--count", "2", "--interval-ms", "10", "--pid", "4242", "--repeat", "2", "--status", "critical")
		for _, n := range []uint64{1, 1, 2, 2} {
			f, kpid := r.recvFrame()
			if want := (frame{vlpclient.StatusCritical, 4242, f.ts, n, 0}); f != want || kpid != a.pid() {
				t.Errorf("%+v from kernel pid %d, want %+v from %d", f, kpid, want, a.pid())
			}
		}
		a.wait(0)
		r.expectNothing()
	})

	t.Run("pid 0 is sent as given", func(t *testing.T) {
		r := newReceiver(t)
		a := start(t, bin, "--socket", r.path, "--count", "1", "--pid=0")
		if f, kpid := r.recvFrame(); f.pid != 0 || kpid != a.pid() {
			t.Errorf("frame pid %d from kernel pid %d, want 0 from %d", f.pid, kpid, a.pid())
		}
		a.wait(0)
	})

	t.Run("raw hex datagrams", func(t *testing.T) {
		r := newReceiver(t)
		big := bytes.Repeat([]byte{0x5A}, 65535)
		worked := "56410200020000000000000000000000010000000000000000000000e4116baa"
		a := start(t, bin, "--socket", r.path, "--hex", "", "--hex=5641", "--hex", worked, "--hex", hex.EncodeToString(big), "--hex", "FF")
		for i, want := range [][]byte{{}, {0x56, 0x41}, mustHex(t, worked), big, {0xFF}} {
			got, kpid := r.recv()
			if !bytes.Equal(got, want) || kpid != a.pid() {
				t.Errorf("datagram %d: %d bytes from pid %d, want %d bytes from %d", i, len(got), kpid, len(want), a.pid())
			}
		}
		a.wait(0)
		r.expectNothing()
	})

	t.Run("SIGTERM stops a long --repeat", func(t *testing.T) {
		r := newReceiver(t)
		// Two billion copies would take the better part of an hour: the
		// stop must come between two copies.
		a := start(t, bin, "--socket", r.path, "--count", "1", "--repeat", "2000000000")
		r.recvFrame()
		a.cmd.Process.Signal(syscall.SIGTERM)
		a.wait(0)
	})

	t.Run("hang after N beats until SIGTERM", func(t *testing.T) {
		r := newReceiver(t)
		// --hang-after wins over a --count that would end the beats too.
		a := start(t, bin, "--socket", r.path, "--hang-after", "2", "--count", "2", "--interval-ms", "10", "--terminal")
		r.recvFrame()
		r.recvFrame()
		r.expectNothing()
		if err := a.cmd.Process.Signal(syscall.Signal(0)); err != nil {
			t.Fatalf("hung agent is gone: %v", err)
		}
		a.cmd.Process.Signal(syscall.SIGTERM)
		a.wait(0)
		r.expectNothing() // hung: no terminal frame either
	})

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run("beats until "+sig.String(), func(t *testing.T) {
			r := newReceiver(t)
			a := start(t, bin, "--socket", r.path, "--interval-ms", "5", "--terminal")
			for range 3 {
				r.recvFrame()
			}
			a.cmd.Process.Signal(sig)
			a.wait(0)
			for {
				f, _ := r.recvFrame()
				if f.nonce == vlpclient.NonceTerminal {
					break
				}
			}
			r.expectNothing()
		})
	}

	t.Run("missing observer is not fatal for beats", func(t *testing.T) {
		a := start(t, bin, "--socket", filepath.Join(t.TempDir(), "none.sock"), "--count", "2", "--interval-ms", "1")
		a.wait(0)
	})

	for _, args := range [][]string{
		{},
		{"--count", "1"},
		{"--socket"},
		{"--socket", "/x", "--status", "stall"},
		{"--socket", "/x", "--payload", "0x100000000"},
		{"--socket", "/x", "--pid", "-1"},
		{"--socket", "/x", "--repeat", "0"},
		{"--socket", "/x", "--interval-ms", "-1"},
		{"--socket", "/x", "--count", "x"},
		{"--socket", "/x", "--hex", "zz"},
		{"--socket", "/x", "--nope"},
		{"--socket", "/x", "extra"},
		{"--socket", filepath.Join(t.TempDir(), "none.sock"), "--hex", "00"},
		{"--socket", "/" + strings.Repeat("x", 200), "--count", "1"},
	} {
		name := strings.Join(args, " ")
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run("error "+name, func(t *testing.T) {
			a := start(t, bin, args...)
			a.wait(1)
			if got := a.stderr.String(); strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "varta-agent: ") {
				t.Errorf("stderr %q, want one line starting varta-agent: ", got)
			}
		})
	}
}

// TestParseHexLimit runs in-process: 65536 bytes of hex do not fit in one
// argv string (MAX_ARG_STRLEN is 131072 bytes with the NUL).
func TestParseHexLimit(t *testing.T) {
	cfg, _, err := parseArgs([]string{"--socket", "/x", "--hex", strings.Repeat("ab", 65535)})
	if err != nil || len(cfg.hex) != 1 || len(cfg.hex[0]) != 65535 {
		t.Errorf("65535 bytes: err %v", err)
	}
	if _, _, err := parseArgs([]string{"--socket", "/x", "--hex", strings.Repeat("ab", 65536)}); err == nil {
		t.Error("65536 bytes accepted")
	}
}

type frame struct {
	status  uint8
	pid     uint32
	ts      uint64
	nonce   uint64
	payload uint32
}

type agentProc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
}

func start(t *testing.T, bin string, args ...string) *agentProc {
	t.Helper()
	a := &agentProc{t: t, cmd: exec.Command(bin, args...)}
	a.cmd.Stdout, a.cmd.Stderr = &a.stdout, &a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			a.cmd.Process.Kill()
			a.cmd.Wait()
		}
	})
	return a
}

func (a *agentProc) pid() uint32 { return uint32(a.cmd.Process.Pid) }

// wait expects the agent to exit with code within 10 seconds; on success
// it must have printed nothing at all.
func (a *agentProc) wait(code int) {
	a.t.Helper()
	done := make(chan error, 1)
	go func() { done <- a.cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			a.t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		<-done
		a.t.Fatalf("agent did not exit; stderr %q", a.stderr.String())
	}
	if got := a.cmd.ProcessState.ExitCode(); got != code {
		a.t.Fatalf("exit code %d, want %d; stderr %q", got, code, a.stderr.String())
	}
	if a.stdout.Len() > 0 {
		a.t.Errorf("agent wrote to stdout: %q", a.stdout.String())
	}
	if code == 0 && a.stderr.Len() > 0 {
		a.t.Errorf("agent wrote to stderr: %q", a.stderr.String())
	}
}

type receiver struct {
	t    *testing.T
	fd   int
	path string
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	path := filepath.Join(t.TempDir(), "obs.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, fd: fd, path: path}
	r.timeout(5 * time.Second)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatalf("bind %s: %v", path, err)
	}
	return r
}

func (r *receiver) timeout(d time.Duration) {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	if err := unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		r.t.Fatal(err)
	}
}

// recv returns the next datagram and the pid the kernel attached to it.
func (r *receiver) recv() ([]byte, uint32) {
	r.t.Helper()
	buf := make([]byte, 65536)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, flags, err := recvmsg(r.fd, buf, oob)
	if err != nil {
		r.t.Fatalf("recvmsg: %v", err)
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		r.t.Fatalf("recvmsg truncated: flags %#x", flags)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		r.t.Fatalf("control messages %v, %v", msgs, err)
	}
	cred, err := unix.ParseUnixCredentials(&msgs[0])
	if err != nil {
		r.t.Fatal(err)
	}
	return buf[:n], uint32(cred.Pid)
}

// recvFrame receives one datagram, which must be a well-formed 32-byte
// frame with a correct CRC.
func (r *receiver) recvFrame() (frame, uint32) {
	r.t.Helper()
	b, kpid := r.recv()
	if len(b) != vlpclient.FrameSize {
		r.t.Fatalf("datagram of %d bytes, want a frame", len(b))
	}
	le := binary.LittleEndian
	f := frame{b[3], le.Uint32(b[4:]), le.Uint64(b[8:]), le.Uint64(b[16:]), le.Uint32(b[24:])}
	var want [vlpclient.FrameSize]byte
	vlpclient.Encode(&want, f.status, f.pid, f.ts, f.nonce, f.payload)
	if !bytes.Equal(b, want[:]) {
		r.t.Fatalf("malformed frame\n% x\nwant\n% x", b, want)
	}
	return f, kpid
}

// expectNothing checks that no datagram arrives for a while.
func (r *receiver) expectNothing() {
	r.t.Helper()
	r.timeout(200 * time.Millisecond)
	defer r.timeout(5 * time.Second)
	buf := make([]byte, 65536)
	n, _, _, err := recvmsg(r.fd, buf, nil)
	if err == nil {
		r.t.Fatalf("unexpected datagram % x", buf[:min(n, 64)])
	}
	if err != unix.EAGAIN {
		r.t.Fatalf("recvmsg: %v", err)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recvmsg retries EINTR: the runtime's signals (preemption, SIGCHLD from
// the agents this test starts) interrupt a blocking recvmsg.
func recvmsg(fd int, buf, oob []byte) (n, oobn, flags int, err error) {
	for {
		n, oobn, flags, _, err = unix.Recvmsg(fd, buf, oob, 0)
		if err != unix.EINTR {
			return n, oobn, flags, err
		}
	}
}
