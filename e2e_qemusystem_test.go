//go:build linux

package main

// The ARM and MIPS packages on real Linux kernels: Debian's own kernels
// boot under qemu-system with a BusyBox userland that holds the contents of
// that architecture's .deb; the packaged sysvinit script starts the
// observer, and the host checks what it did. qemu-user cannot show this:
// it fakes SO_TIMESTAMPNS (ENOPROTOOPT under qemu 7.2), network namespaces,
// SO_PASSCRED and the socket queue are the host's.
//
// The kernel and busybox-static packages are fetched by .ci/run into
// $VARTA_QEMU_SYSTEM_DIR (default run/qemu-system); nothing is downloaded
// here.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type qsysArch struct {
	name       string // Debian architecture
	target     string // cross target of its .deb
	goarch     string
	goenv      []string
	qemu       string
	kernelGlob string   // the linux-image package in the cache
	modules    []string // NIC drivers under lib/modules/<version>/, in load order
	console    string
	machine    []string // machine and NIC arguments
}

var qsysArches = []qsysArch{
	{
		name: "mipsel", target: "linux/mipsle", goarch: "mipsle", goenv: []string{"GOMIPS=softfloat"},
		qemu: "qemu-system-mipsel", kernelGlob: "linux-image-*-4kc-malta_*_mipsel.deb",
		modules: []string{"kernel/drivers/net/mii.ko", "kernel/drivers/net/ethernet/amd/pcnet32.ko"},
		console: "ttyS0",
		machine: []string{"-M", "malta", "-vga", "none", "-device", "pcnet,netdev=n0,romfile="},
	},
	{
		// The armhf .deb carries the ARMv6 build (Raspberry Pi OS); a
		// Cortex-A15 runs it.
		name: "armhf", target: "linux/armv6", goarch: "arm", goenv: []string{"GOARM=6"},
		qemu: "qemu-system-arm", kernelGlob: "linux-image-*-armmp_*_armhf.deb",
		modules: []string{"kernel/drivers/virtio/virtio_mmio.ko", "kernel/net/core/failover.ko",
			"kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko"},
		console: "ttyAMA0",
		machine: []string{"-M", "virt,highmem=off", "-cpu", "cortex-a15", "-device", "virtio-net-device,netdev=n0"},
	},
}

// qsysSkip skips with a message that shows even without -v.
func qsysSkip(t *testing.T, format string, a ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, a...)
	fmt.Fprintln(os.Stderr, "SKIP: "+t.Name()+": "+msg)
	t.Skip(msg)
}

func qsysCacheDir() string {
	if d := os.Getenv("VARTA_QEMU_SYSTEM_DIR"); d != "" {
		return d
	}
	return filepath.Join("run", "qemu-system")
}

// cpioNewc writes an initramfs in the kernel's "newc" cpio format
// (Documentation/driver-api/early-userspace/buffer-format.rst): a 110-byte
// ASCII header per entry, name and data each padded to 4 bytes, parents
// before their contents, a TRAILER!!! entry at the end.
type cpioNewc struct {
	buf  bytes.Buffer
	ino  int
	dirs map[string]bool
}

const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	cpioLink = 0o120000
	cpioChr  = 0o020000
)

func (c *cpioNewc) entry(name string, mode uint32, rdevMajor, rdevMinor int, data []byte) {
	c.ino++
	nlink := 1
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	fmt.Fprintf(&c.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.buf.WriteString(name)
	c.buf.WriteByte(0)
	c.pad()
	c.buf.Write(data)
	c.pad()
}

func (c *cpioNewc) pad() {
	for c.buf.Len()%4 != 0 {
		c.buf.WriteByte(0)
	}
}

// dir adds name and its parents, once each.
func (c *cpioNewc) dir(name string) {
	name = strings.Trim(path.Clean(name), "/")
	if name == "" || name == "." || c.dirs[name] {
		return
	}
	c.dir(path.Dir(name))
	if c.dirs == nil {
		c.dirs = map[string]bool{}
	}
	c.dirs[name] = true
	c.entry(name, cpioDir|0o755, 0, 0, nil)
}

func (c *cpioNewc) file(name string, perm uint32, data []byte) {
	name = strings.Trim(path.Clean(name), "/")
	c.dir(path.Dir(name))
	c.entry(name, cpioReg|perm, 0, 0, data)
}

func (c *cpioNewc) symlink(name, target string) {
	name = strings.Trim(path.Clean(name), "/")
	c.dir(path.Dir(name))
	c.entry(name, cpioLink|0o777, 0, 0, []byte(target))
}

func (c *cpioNewc) bytes() []byte {
	c.entry("TRAILER!!!", 0, 0, 0, nil)
	return c.buf.Bytes()
}

// debFiles streams the file system of a .deb (dpkg-deb --fsys-tarfile) and
// calls fn for each entry, with the path made relative ("usr/bin/x").
func debFiles(t *testing.T, deb string, fn func(h *tar.Header, name string, r io.Reader)) {
	t.Helper()
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", deb, err)
		}
		fn(h, strings.Trim(path.Clean(h.Name), "/"), tr)
	}
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dpkg-deb --fsys-tarfile %s: %v\n%s", deb, err, stderr.Bytes())
	}
}

// qsysInit is /init of the guest: BusyBox, the NIC driver, the observer
// started by the package's own sysvinit script, then the scenario. Lines
// starting "VARTA-" are for the host. The host scrapes /metrics after
// VARTA-READY and then sends a line on the console; the guest stops the
// observer with the init script and prints the event file and the log.
const qsysInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /var/run /var/log /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
fail() { echo "VARTA-FAIL $*"; cat /var/log/varta-watch.log 2>/dev/null; reboot -f; }
for m in @MODULES@; do insmod /lib/modules/@KVER@/$m || fail "insmod $m"; done
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up || fail "no eth0"
echo "VARTA-KERNEL $(uname -r) $(uname -m)"

mkdir -p /etc/default
# The recovery command: a fork and exec by the observer on this kernel.
printf '#!/bin/sh\necho "$1 $VARTA_PID" >>/tmp/recovered\n' >/usr/bin/recover
chmod 755 /usr/bin/recover
cat >/etc/default/varta-watch <<EOF
VARTA_THRESHOLD_MS=500
VARTA_PROM_ADDR=0.0.0.0:9100
VARTA_RECOVERY_EXEC="/usr/bin/recover {pid}"
EOF
/etc/init.d/varta-watch start || fail "init script start"
OBS=$(cat /var/run/varta-watch.pid)
S=/var/run/varta/varta.sock
echo "VARTA-OBSERVER $OBS"

# Beats every 100 ms (4 s) while the observer is frozen for 1.5 s of them,
# then a real silence: the agent ends.
varta-agent --socket $S --interval-ms 100 --count 40 &
A=$!
echo "VARTA-AGENT $A"
sleep 1
kill -STOP $OBS
echo "VARTA-FROZEN $(grep '^State:' /proc/$OBS/status)"
sleep 1.5
kill -CONT $OBS
wait $A || fail "agent"
# A frame claiming another pid.
varta-agent --socket $S --pid 4242 --count 1 || fail "spoofing agent"
# The stall of the silent agent is due 500 ms after its last beat.
sleep 1
echo VARTA-READY
read -r go
/etc/init.d/varta-watch stop
echo "VARTA-RECOVERED $(cat /tmp/recovered 2>/dev/null)"
echo VARTA-EVENTS
cat /var/log/varta/events.tsv
echo VARTA-LOG
cat /var/log/varta-watch.log
echo VARTA-END
reboot -f
`

// qsysGuest is a running qemu-system with its console read line by line.
type qsysGuest struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	lines []string
	done  chan struct{} // closed when the console ends
}

func (g *qsysGuest) read(r io.Reader) {
	defer close(g.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		g.mu.Lock()
		g.lines = append(g.lines, strings.TrimRight(sc.Text(), "\r"))
		g.mu.Unlock()
	}
}

func (g *qsysGuest) console() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.lines, "\n")
}

// waitLine waits for a console line starting with prefix and returns it.
// A VARTA-FAIL line, the end of the console or the timeout fails the test.
func (g *qsysGuest) waitLine(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		g.mu.Lock()
		for _, l := range g.lines {
			if strings.HasPrefix(l, prefix) {
				g.mu.Unlock()
				return l
			}
			if strings.HasPrefix(l, "VARTA-FAIL") {
				g.mu.Unlock()
				t.Fatalf("guest: %s\nconsole:\n%s", l, g.console())
			}
		}
		g.mu.Unlock()
		select {
		case <-g.done:
			if l := g.find(prefix); l != "" {
				return l
			}
			t.Fatalf("the guest ended before %q; console:\n%s", prefix, g.console())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q from the guest within %v; console:\n%s", prefix, timeout, g.console())
		}
	}
}

func (g *qsysGuest) find(prefix string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range g.lines {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// between returns the console lines after the line start and before end.
func (g *qsysGuest) between(start, end string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	in := false
	for _, l := range g.lines {
		switch {
		case l == start:
			in = true
		case l == end:
			return out
		case in:
			out = append(out, l)
		}
	}
	return out
}

func freeLocalPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestQemuSystemPackage(t *testing.T) {
	if testing.Short() || os.Getenv("VARTA_E2E") == "0" {
		t.Skip("boots qemu-system guests")
	}
	for _, a := range qsysArches {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			testQemuSystem(t, a)
		})
	}
}

func testQemuSystem(t *testing.T, a qsysArch) {
	qemu, err := exec.LookPath(a.qemu)
	if err != nil {
		qsysSkip(t, "%s not installed (apt-get install qemu-system-mips qemu-system-arm; .ci/run does): the %s boot is not run", a.qemu, a.name)
	}
	cache := qsysCacheDir()
	kernels, _ := filepath.Glob(filepath.Join(cache, a.kernelGlob))
	busyboxes, _ := filepath.Glob(filepath.Join(cache, "busybox-static_*_"+a.name+".deb"))
	if len(kernels) == 0 || len(busyboxes) == 0 {
		qsysSkip(t, "no %s and busybox-static:%s packages in %s (.ci/run downloads them; or set VARTA_QEMU_SYSTEM_DIR)", a.kernelGlob, a.name, cache)
	}
	pkgSkipUnlessE2E(t)

	dist := buildPackages(t, "1.0.0", a.target)
	debs, _ := filepath.Glob(filepath.Join(dist, "varta-watch_1.0.0_"+a.name+".deb"))
	if len(debs) != 1 {
		t.Fatalf("./package %s made no %s .deb", a.target, a.name)
	}
	agent := filepath.Join(t.TempDir(), "varta-agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", agent, "./internal/cmd/varta-agent")
	build.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+a.goarch), a.goenv...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cross build of varta-agent: %v\n%s", err, out)
	}

	// The initramfs: the .deb as dpkg would unpack it, busybox, the NIC
	// modules, the agent and /init.
	var rd cpioNewc
	rd.dir("dev")
	rd.entry("dev/console", cpioChr|0o600, 5, 1, nil) // init's stdin, stdout and stderr
	debFiles(t, debs[0], func(h *tar.Header, name string, r io.Reader) {
		switch h.Typeflag {
		case tar.TypeDir:
			rd.dir(name)
		case tar.TypeSymlink:
			rd.symlink(name, h.Linkname)
		case tar.TypeReg:
			data, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			rd.file(name, uint32(h.Mode)&0o7777, data)
		}
	})
	gotBusybox := false
	debFiles(t, busyboxes[0], func(h *tar.Header, name string, r io.Reader) {
		if name == "bin/busybox" {
			data, _ := io.ReadAll(r)
			rd.file(name, 0o755, data)
			gotBusybox = true
		}
	})
	if !gotBusybox {
		t.Fatalf("%s holds no bin/busybox", busyboxes[0])
	}
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	var kver string
	mods := map[string][]byte{}
	debFiles(t, kernels[0], func(h *tar.Header, name string, r io.Reader) {
		if v, ok := strings.CutPrefix(name, "boot/vmlinuz-"); ok {
			kver = v
			data, _ := io.ReadAll(r)
			if err := os.WriteFile(kernel, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		for _, m := range a.modules {
			if strings.HasPrefix(name, "lib/modules/") && strings.HasSuffix(name, "/"+m) {
				mods[m], _ = io.ReadAll(r)
			}
		}
	})
	if kver == "" {
		t.Fatalf("%s holds no boot/vmlinuz-*", kernels[0])
	}
	for _, m := range a.modules {
		if mods[m] == nil {
			t.Fatalf("%s holds no %s", kernels[0], m)
		}
		rd.file("lib/modules/"+kver+"/"+m, 0o644, mods[m])
	}
	agentData, err := os.ReadFile(agent)
	if err != nil {
		t.Fatal(err)
	}
	rd.file("usr/bin/varta-agent", 0o755, agentData)
	rd.dir("sbin")
	rd.dir("usr/sbin")
	init := strings.NewReplacer("@MODULES@", strings.Join(a.modules, " "), "@KVER@", kver).Replace(qsysInit)
	rd.file("init", 0o755, []byte(init))
	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	if err := os.WriteFile(initrd, rd.bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	// restrict=on: the guest reaches nothing; only the host's forward in.
	port := freeLocalPort(t)
	args := append([]string{"-m", "256", "-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=" + a.console + " quiet loglevel=1 panic=-1",
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:9100", port)},
		a.machine...)
	g := &qsysGuest{cmd: exec.Command(qemu, args...), done: make(chan struct{})}
	g.stdin, err = g.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := g.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	g.cmd.Stderr = g.cmd.Stdout
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go g.read(stdout)
	t.Cleanup(func() {
		g.cmd.Process.Kill()
		<-g.done
		g.cmd.Wait()
	})

	// Generous: TCG emulation on a loaded 2-core machine.
	kline := g.waitLine(t, "VARTA-KERNEL ", 3*time.Minute)
	t.Logf("%s: %s", a.name, kline)
	agentPid := strings.TrimPrefix(g.waitLine(t, "VARTA-AGENT ", time.Minute), "VARTA-AGENT ")
	if frozen := g.waitLine(t, "VARTA-FROZEN ", time.Minute); !strings.Contains(frozen, "T (stopped)") {
		t.Errorf("the observer was not frozen: %s", frozen)
	}
	g.waitLine(t, "VARTA-READY", 2*time.Minute)

	// /metrics from the host, through the forward.
	var body []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /metrics through the host forward: %v\nconsole:\n%s", err, g.console())
		}
		time.Sleep(200 * time.Millisecond)
	}
	text := string(body)
	for _, want := range []string{
		`varta_beats_total{pid="` + agentPid + `"} 40`,
		`varta_stalls_total{pid="` + agentPid + `"} 1`,
		`varta_status{pid="` + agentPid + `"} 3`,
		`varta_frame_auth_failures_total 1`,
		`varta_socket_queue_datagrams 256`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if !regexp.MustCompile(`varta_build_info\{[^}]*goarch="` + a.goarch + `"[^}]*\} 1`).MatchString(text) {
		t.Errorf("varta_build_info does not say goarch=%q", a.goarch)
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		check := exec.Command(promtool, "check", "metrics")
		check.Stdin = bytes.NewReader(body)
		if out, err := check.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed: the scrape is not checked by it")
	}

	if _, err := io.WriteString(g.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	g.waitLine(t, "VARTA-END", 2*time.Minute)
	events := g.between("VARTA-EVENTS", "VARTA-LOG")
	log := strings.Join(g.between("VARTA-LOG", "VARTA-END"), "\n")

	// The observer's own queue, which needs the real kernel's network
	// namespaces (it runs as root under the init script).
	if !regexp.MustCompile(`msg="socket queue limit".*own network namespace.*datagrams=256`).MatchString(log) {
		t.Errorf("no start-up line for the own socket queue of 256; log:\n%s", log)
	}
	if !strings.Contains(log, "varta-watch stopped") {
		t.Errorf("the init script's stop did not stop the observer cleanly; log:\n%s", log)
	}

	type row struct {
		ns                  int64
		kind, pid, nonce, p string
	}
	var beats, stalls []row
	var recoveries []string
	mismatches := 0
	for _, l := range events {
		f := strings.Split(l, "\t")
		if len(f) != 6 {
			continue // a stray console line
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		r := row{ns, f[1], f[2], f[3], f[5]}
		switch {
		case r.kind == "beat" && r.pid == agentPid:
			beats = append(beats, r)
		case r.kind == "stall" && r.pid == agentPid:
			stalls = append(stalls, r)
		case r.kind == "mismatch" && r.pid == "4242" && r.p == "auth_failure":
			mismatches++
		case r.kind == "recovery" && r.pid == agentPid:
			recoveries = append(recoveries, r.p)
		case r.kind == "beat" || r.kind == "stall":
			t.Errorf("event for an unexpected pid: %q", l)
		}
	}
	// Kernel credentials: every beat under the agent's real pid, the
	// spoofed one refused.
	if len(beats) != 40 {
		t.Fatalf("%d beat rows for the agent, want 40; events:\n%s", len(beats), strings.Join(events, "\n"))
	}
	for i, b := range beats {
		if b.nonce != strconv.Itoa(i+1) {
			t.Fatalf("beat %d has nonce %s", i, b.nonce)
		}
	}
	if mismatches != 1 {
		t.Errorf("%d mismatch rows for the spoofed pid 4242, want 1", mismatches)
	}
	// Kernel timestamps: the beats queued while the observer was stopped
	// count from when the kernel queued them, so their rows keep the 100 ms
	// spacing and the 1.5 s freeze is no stall. Read when the observer woke,
	// about 15 rows would be bunched within microseconds of each other.
	bunched := 0
	for i := 1; i < len(beats); i++ {
		if beats[i].ns-beats[i-1].ns < 30e6 {
			bunched++
		}
	}
	if bunched > 2 {
		t.Errorf("%d of 39 beat spacings under 30 ms: the beats queued during the freeze were timed when read, not by the kernel", bunched)
	}
	// A real silence: exactly one stall, after the last beat.
	if len(stalls) != 1 {
		t.Fatalf("%d stall rows for the agent, want 1 (after its last beat, none during the freeze); events:\n%s", len(stalls), strings.Join(events, "\n"))
	}
	if late := stalls[0].ns - beats[39].ns; late < 500e6 {
		t.Errorf("stall %v after the last beat, before the 500 ms threshold", time.Duration(late))
	} else if late > 900e6 {
		// Nothing else wakes the loop by then: the stall comes from a
		// wait that ends at its timeout (a 32-bit struct timespec once
		// made such waits endless on these 32-bit kernels).
		t.Errorf("stall %v after the last beat, over 400 ms past its 500 ms deadline", time.Duration(late))
	}
	// The stall's recovery command, forked, exec'd and reaped by the
	// observer on this kernel (qemu-user can deadlock such a child, so the
	// unit tests do not spawn recovery children there).
	if got := strings.Join(recoveries, " "); got != "spawned exit_0" {
		t.Errorf("recovery rows for the agent %q, want spawned exit_0; events:\n%s", got, strings.Join(events, "\n"))
	}
	if want := "VARTA-RECOVERED " + agentPid + " " + agentPid; !strings.Contains(g.console(), want) {
		t.Errorf("the recovery command did not run with the agent's pid as {pid} and VARTA_PID (want %q on the console)", want)
	}
}
