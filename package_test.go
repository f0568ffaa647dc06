//go:build linux

package main

// Tests of ./package (make package): the .deb is inspected with dpkg-deb and
// installed, upgraded, removed and purged for real by dpkg in a throw-away
// root; the .ipk is taken apart the way opkg does it. Only the host's
// packages are built, to stay fast.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// pkgHostTarget is the cross target of the host and its package
// architectures, so that the packages the tests install run here.
func pkgHostTarget(t *testing.T) (target, debArch, ipkArch string) {
	t.Helper()
	switch runtime.GOARCH {
	case "amd64":
		return "linux/amd64", "amd64", "x86_64"
	case "arm64":
		return "linux/arm64", "arm64", "aarch64_generic"
	case "386":
		return "linux/386", "i386", "i386_pentium4"
	case "riscv64":
		return "linux/riscv64", "riscv64", "riscv64_riscv64"
	}
	t.Skipf("no package architecture set up for a %s host", runtime.GOARCH)
	return
}

func pkgSkipUnlessE2E(t *testing.T) {
	t.Helper()
	if testing.Short() || os.Getenv("VARTA_E2E") == "0" {
		t.Skip("builds packages")
	}
	for _, tool := range []string{"dpkg-deb", "tar", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: ./package needs it", tool)
		}
	}
}

var pkgBuildMu sync.Mutex // one ./package at a time: they share the Go build cache and the CPU

// buildPackages runs ./package for targets with VERSION version into a
// fresh directory and returns it.
func buildPackages(t *testing.T, version string, targets ...string) string {
	t.Helper()
	pkgBuildMu.Lock()
	defer pkgBuildMu.Unlock()
	dist := t.TempDir()
	cmd := exec.Command("./package", targets...)
	cmd.Env = append(os.Environ(), "DIST="+dist, "VERSION="+version, "REVISION=test", "SOURCE_DATE_EPOCH=1700000000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("./package %s: %v\n%s", strings.Join(targets, " "), err, out)
	}
	return dist
}

// readSums reads SHA256SUMS into name -> digest.
func readSums(t *testing.T, dist string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", line)
		}
		sums[name] = sum
	}
	return sums
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

func TestPackageVersionMapping(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg not installed: it judges the versions")
	}
	for _, c := range []struct{ in, want string }{
		{"v1.2.0", "1.2.0"},
		{"1.2.0", "1.2.0"},
		{"v1.2.0-rc1", "1.2.0~rc1"},
		{"v1.2.0-5-gabc1234", "1.2.0+5.gabc1234"},
		{"v1.2.0-5-gabc1234-dirty", "1.2.0+5.gabc1234.dirty"},
		{"v2.0.0-rc.1-3-gdeadbee", "2.0.0~rc.1+3.gdeadbee"},
	} {
		out, err := exec.Command("./package", "--print-version", c.in).CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != c.want {
			t.Errorf("package version of %q = %q (%v), want %q", c.in, got, err, c.want)
		}
	}
	// No tag yet: a bare hash still gives a version dpkg accepts, ordered by
	// the number of commits.
	// A hash that starts with digits, or is all digits, is a hash too: taken
	// for a version, 282c66d would sort above every later 0.0.0+git one.
	for _, hash := range []string{"abc1234", "282c66d", "1234567"} {
		out, err := exec.Command("./package", "--print-version", hash+"-dirty").CombinedOutput()
		got := strings.TrimSpace(string(out))
		if err != nil || !strings.HasPrefix(got, "0.0.0+git") || !strings.HasSuffix(got, ".g"+hash+".dirty") {
			t.Errorf("package version of the bare hash %s = %q (%v), want 0.0.0+git<N>.g%s.dirty", hash, got, err, hash)
		}
	}
	// What the mapping is for: upgrades in the order of the releases.
	order := []string{"0.0.0+git180.gabc1234", "1.2.0~rc1", "1.2.0", "1.2.0+5.gabc1234", "1.2.0+5.gabc1234.dirty", "1.2.0+12.g0000000", "1.2.1"}
	for i := 1; i < len(order); i++ {
		if err := exec.Command("dpkg", "--compare-versions", order[i-1], "lt", order[i]).Run(); err != nil {
			t.Errorf("dpkg does not order %s before %s", order[i-1], order[i])
		}
	}
}

// TestPackageSysctlMatchesObserver: the shipped sysctl snippet sets the
// queue the observer itself recommends for the default tracker capacity.
func TestPackageSysctlMatchesObserver(t *testing.T) {
	data, err := os.ReadFile("contrib/package/sysctl.conf")
	if err != nil {
		t.Fatal(err)
	}
	var settings []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			settings = append(settings, line)
		}
	}
	want := fmt.Sprintf("net.unix.max_dgram_qlen = %d", recommendedQlen(defaultConfig().trackerCapacity))
	if len(settings) != 1 || settings[0] != want {
		t.Fatalf("sysctl snippet sets %q, want exactly %q", settings, want)
	}
	unit, err := os.ReadFile("contrib/systemd/varta-watch.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "/usr/lib/sysctl.d/60-varta-watch.conf") {
		t.Error("the systemd unit does not say why the package ships /usr/lib/sysctl.d/60-varta-watch.conf")
	}
	// The start-up warning about a short queue names the files to edit:
	// the ones the packages install.
	script, err := os.ReadFile("package")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{sysctlDropIn, sysctlDropInVendor} {
		if !strings.Contains(string(script), "put contrib/package/sysctl.conf "+path+" ") {
			t.Errorf("./package does not install the sysctl snippet as %s, the file the queue warning names", path)
		}
	}
}

// uciSection is one `config TYPE 'NAME'` section of a UCI file.
type uciSection struct {
	typ, name string
	options   map[string]string
}

// parseUCI reads the UCI syntax of contract §9 strictly enough to catch a
// broken example: every line is blank, a comment, or a config, option or
// list line with quoted or bare words.
func parseUCI(t *testing.T, path string) []uciSection {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var secs []uciSection
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var words []string
		for rest := line; rest != ""; rest = strings.TrimLeft(rest, " \t") {
			switch q := rest[0]; {
			case q == '#':
				rest = ""
				continue
			case q == '\'' || q == '"':
				end := strings.IndexByte(rest[1:], q)
				if end < 0 {
					t.Fatalf("%s:%d: unterminated quote", path, n)
				}
				words = append(words, rest[1:1+end])
				rest = rest[2+end:]
			default:
				end := strings.IndexAny(rest, " \t")
				if end < 0 {
					end = len(rest)
				}
				words = append(words, rest[:end])
				rest = rest[end:]
			}
		}
		switch {
		case words[0] == "config" && (len(words) == 2 || len(words) == 3):
			s := uciSection{typ: words[1], options: map[string]string{}}
			if len(words) == 3 {
				s.name = words[2]
			}
			secs = append(secs, s)
		case (words[0] == "option" || words[0] == "list") && len(words) == 3 && len(secs) > 0:
			secs[len(secs)-1].options[words[1]] = words[2]
		default:
			t.Fatalf("%s:%d: not UCI: %q", path, n, line)
		}
	}
	return secs
}

// TestPackageConfigExamples: the configuration files the packages install
// are valid UCI, and every option of their `config varta-watch` section is
// a flag of the observer with a value it accepts.
func TestPackageConfigExamples(t *testing.T) {
	for _, path := range []string{"contrib/package/varta-watch.conf", "contrib/package/openwrt.config"} {
		secs := parseUCI(t, path)
		if len(secs) != 1 || secs[0].typ != "varta-watch" || secs[0].name != "main" {
			t.Fatalf("%s: want one section config varta-watch 'main' (the agent examples commented out), got %+v", path, secs)
		}
		if _, err := loadConfig([]string{"--socket", "/run/varta/varta.sock", "--threshold-ms", "2000", "--config", path}); err != nil {
			t.Errorf("%s: the observer refuses it: %v", path, err)
		}
	}
}

// debContents lists a .deb's files as "mode owner path" lines, as
// dpkg-deb -c shows them.
func debContents(t *testing.T, deb string) map[string]string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", "-c", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -c: %v\n%s", err, out)
	}
	files := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c line %q", line)
		}
		files[strings.TrimPrefix(f[5], ".")] = f[0] + " " + f[1]
	}
	return files
}

func TestPackages(t *testing.T) {
	pkgSkipUnlessE2E(t)
	target, debArch, ipkArch := pkgHostTarget(t)
	dist := buildPackages(t, "1.0.0", target)
	bin := filepath.Join(dist, "varta-watch_1.0.0_linux_"+strings.TrimPrefix(target, "linux/"))
	deb := filepath.Join(dist, "varta-watch_1.0.0_"+debArch+".deb")
	ipk := filepath.Join(dist, "varta-watch_1.0.0_"+ipkArch+".ipk")

	t.Run("SHA256SUMS", func(t *testing.T) {
		sums := readSums(t, dist)
		for _, p := range []string{bin, deb, ipk} {
			name := filepath.Base(p)
			if sums[name] == "" {
				t.Errorf("SHA256SUMS lacks %s", name)
			} else if got := fileSHA256(t, p); got != sums[name] {
				t.Errorf("%s: SHA256SUMS says %s, the file is %s", name, sums[name], got)
			}
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		again := buildPackages(t, "1.0.0", target)
		for _, p := range []string{deb, ipk} {
			if a, b := fileSHA256(t, p), fileSHA256(t, filepath.Join(again, filepath.Base(p))); a != b {
				t.Errorf("%s differs between two builds of the same commit", filepath.Base(p))
			}
		}
	})

	t.Run("deb", func(t *testing.T) {
		for field, want := range map[string]string{
			"Package": "varta-watch", "Version": "1.0.0", "Architecture": debArch,
			"Section": "admin", "Priority": "optional",
		} {
			out, err := exec.Command("dpkg-deb", "-f", deb, field).Output()
			if got := strings.TrimSpace(string(out)); err != nil || got != want {
				t.Errorf("control field %s = %q (%v), want %q", field, got, err, want)
			}
		}
		if out, err := exec.Command("dpkg-deb", "-I", deb).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb -I: %v\n%s", err, out)
		} else {
			for _, s := range []string{"postinst", "prerm", "postrm", "conffiles"} {
				if !strings.Contains(string(out), " "+s) {
					t.Errorf("dpkg-deb -I lists no %s:\n%s", s, out)
				}
			}
		}
		want := map[string]string{
			"/usr/bin/varta-watch":                    "-rwxr-xr-x root/root",
			"/lib/systemd/system/varta-watch.service": "-rw-r--r-- root/root",
			"/usr/lib/sysusers.d/varta-watch.conf":    "-rw-r--r-- root/root",
			"/usr/lib/sysctl.d/60-varta-watch.conf":   "-rw-r--r-- root/root",
			"/etc/init.d/varta-watch":                 "-rwxr-xr-x root/root",
			"/etc/varta-watch.conf":                   "-rw-r--r-- root/root",
		}
		for path, mode := range debContents(t, deb) {
			if strings.HasSuffix(path, "/") {
				if mode != "drwxr-xr-x root/root" {
					t.Errorf("%s: %s, want drwxr-xr-x root/root", path, mode)
				}
				continue
			}
			if want[path] == "" {
				t.Errorf("unexpected file %s in the .deb", path)
			} else if mode != want[path] {
				t.Errorf("%s: %s, want %s", path, mode, want[path])
			}
			delete(want, path)
		}
		for path := range want {
			t.Errorf("the .deb lacks %s", path)
		}
		if lintian, err := exec.LookPath("lintian"); err == nil {
			// Advice, not a gate: errors are reported, warnings are not.
			out, _ := exec.Command(lintian, "--no-tag-display-limit", deb).CombinedOutput()
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "E: ") {
					t.Log("lintian: " + line)
				}
			}
		}
	})

	t.Run("dpkg", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("dpkg --root installs files owned by root: run as root (CI does)")
		}
		if _, err := exec.LookPath("dpkg"); err != nil {
			t.Skip("dpkg not installed")
		}
		dist2 := buildPackages(t, "1.0.1", target)
		deb2 := filepath.Join(dist2, "varta-watch_1.0.1_"+debArch+".deb")
		testDebLifecycle(t, bin, deb, deb2)
	})

	t.Run("ipk", func(t *testing.T) {
		testIpk(t, ipk, ipkArch, bin)
	})
}

// testDebLifecycle installs deb into a throw-away root with dpkg, edits the
// configuration, upgrades to deb2, then removes and purges, checking what
// each step leaves. The maintainer scripts run outside a chroot with
// DPKG_ROOT set (--force-script-chrootless), as when an image is built:
// they must act on the root, and start nothing.
func testDebLifecycle(t *testing.T, bin, deb, deb2 string) {
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dpkg := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--force-script-chrootless",
			"--force-confdef", "--force-confold", "--log=/dev/null"}, args...)...)
		cmd.Stdin = nil
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	exists := func(p string) bool {
		_, err := os.Lstat(filepath.Join(root, p))
		return err == nil
	}
	status := func() string {
		out, _ := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"),
			"-W", "-f=${Version} ${db:Status-Abbrev}", "varta-watch").CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	const (
		conf     = "/etc/varta-watch.conf"
		initLink = "/etc/rc2.d/S01varta-watch"
		wants    = "/etc/systemd/system/multi-user.target.wants/varta-watch.service"
	)

	dpkg("-i", deb)
	if s := status(); s != "1.0.0 ii" {
		t.Fatalf("after dpkg -i: status %q, want 1.0.0 ii", s)
	}
	if fileSHA256(t, filepath.Join(root, "usr/bin/varta-watch")) != fileSHA256(t, bin) {
		t.Error("/usr/bin/varta-watch is not the cross binary")
	}
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/varta-watch.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "exec /usr/bin/varta-watch ") || strings.Contains(string(unit), "/usr/local/bin") {
		t.Error("the packaged unit does not start /usr/bin/varta-watch")
	}
	// postinst ran, against the root: boot links for sysvinit and systemd,
	// and the static user of the sysusers file where systemd-sysusers exists.
	for _, p := range []string{initLink, "/etc/rc0.d/K01varta-watch", wants} {
		if !exists(p) {
			t.Errorf("postinst did not create %s", p)
		}
	}
	if _, err := exec.LookPath("systemd-sysusers"); err == nil {
		passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
		if !strings.Contains(string(passwd), "\nvarta:") && !strings.HasPrefix(string(passwd), "varta:") {
			t.Errorf("postinst did not create user varta in the root; /etc/passwd:\n%s", passwd)
		}
	}
	edited := "# edited by the admin\nconfig varta-watch 'main'\n\toption threshold_ms '5000'\n"
	if err := os.WriteFile(filepath.Join(root, conf), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}

	// Upgrade: the edited conffile stays as the admin left it.
	dpkg("-i", deb2)
	if s := status(); s != "1.0.1 ii" {
		t.Fatalf("after the upgrade: status %q, want 1.0.1 ii", s)
	}
	if got, _ := os.ReadFile(filepath.Join(root, conf)); string(got) != edited {
		t.Errorf("the upgrade replaced the edited %s:\n%s", conf, got)
	}
	if exists(conf+".dpkg-new") || exists(conf+".dpkg-dist") {
		t.Errorf("the upgrade left a %s.dpkg-* behind for an unchanged shipped file", conf)
	}
	if !exists(wants) {
		t.Error("the upgrade dropped the systemd enablement")
	}

	// Remove: the program goes, the configuration stays (Debian policy).
	dpkg("-r", "varta-watch")
	if exists("/usr/bin/varta-watch") || exists("/lib/systemd/system/varta-watch.service") {
		t.Error("dpkg -r left the program or the unit behind")
	}
	if got, _ := os.ReadFile(filepath.Join(root, conf)); string(got) != edited {
		t.Errorf("dpkg -r did not keep the edited %s", conf)
	}
	if s := status(); s != "1.0.1 rc" {
		t.Errorf("after dpkg -r: status %q, want 1.0.1 rc (config files remain)", s)
	}

	// Purge: everything goes, boot links included.
	dpkg("--purge", "varta-watch")
	for _, p := range []string{conf, "/etc/init.d/varta-watch", initLink, wants} {
		if exists(p) {
			t.Errorf("dpkg --purge left %s behind", p)
		}
	}
}

// ipkMember is one file of an opkg archive.
type ipkMember struct {
	hdr  *tar.Header
	data []byte
}

// readTarGz reads a gzipped tar, keeping the order of its members.
func readTarGz(t *testing.T, what string, data []byte) []ipkMember {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: not gzip: %v", what, err)
	}
	tr := tar.NewReader(zr)
	var ms []ipkMember
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return ms
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %s: %v", what, h.Name, err)
		}
		ms = append(ms, ipkMember{h, b})
	}
}

// testIpk takes the .ipk apart as opkg does (an outer gzipped tar holding
// debian-binary, data.tar.gz and control.tar.gz) and checks the control
// fields, the conffiles and every file's mode and owner, then runs the
// maintainer scripts as an image build would (IPKG_INSTROOT set).
func testIpk(t *testing.T, ipk, arch, bin string) {
	raw, err := os.ReadFile(ipk)
	if err != nil {
		t.Fatal(err)
	}
	outer := readTarGz(t, "outer archive", raw)
	var names []string
	parts := map[string][]byte{}
	for _, m := range outer {
		names = append(names, m.hdr.Name)
		parts[strings.TrimPrefix(m.hdr.Name, "./")] = m.data
		if m.hdr.Uid != 0 || m.hdr.Gid != 0 || m.hdr.Mode&0o7777 != 0o644 {
			t.Errorf("outer member %s: uid %d gid %d mode %o, want 0 0 644", m.hdr.Name, m.hdr.Uid, m.hdr.Gid, m.hdr.Mode)
		}
	}
	if strings.Join(names, " ") != "./debian-binary ./data.tar.gz ./control.tar.gz" {
		t.Fatalf("outer archive holds %q, want ./debian-binary ./data.tar.gz ./control.tar.gz (ipkg-build's order)", names)
	}
	if string(parts["debian-binary"]) != "2.0\n" {
		t.Errorf("debian-binary = %q", parts["debian-binary"])
	}

	ctl := map[string]ipkMember{}
	for _, m := range readTarGz(t, "control.tar.gz", parts["control.tar.gz"]) {
		ctl[strings.TrimPrefix(m.hdr.Name, "./")] = m
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(ctl["control"].data), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
			fields[k] = v
		}
	}
	for k, want := range map[string]string{"Package": "varta-watch", "Version": "1.0.0", "Architecture": arch} {
		if fields[k] != want {
			t.Errorf("control %s = %q, want %q", k, fields[k], want)
		}
	}
	for _, k := range []string{"Maintainer", "Description", "Installed-Size", "Section"} {
		if fields[k] == "" {
			t.Errorf("control has no %s", k)
		}
	}
	if _, ok := fields["Depends"]; ok {
		t.Errorf("control depends on %q: the binary is static", fields["Depends"])
	}
	conffiles := strings.Fields(string(ctl["conffiles"].data))
	if strings.Join(conffiles, " ") != "/etc/config/varta-watch /etc/sysctl.d/60-varta-watch.conf" {
		t.Errorf("conffiles = %q", conffiles)
	}
	for _, s := range []string{"postinst", "prerm"} {
		m, ok := ctl[s]
		if !ok {
			t.Errorf("control.tar.gz has no %s", s)
			continue
		}
		if m.hdr.Mode&0o777 != 0o755 || !bytes.HasPrefix(m.data, []byte("#!/bin/sh\n")) {
			t.Errorf("%s: mode %o, want an executable /bin/sh script", s, m.hdr.Mode)
		}
	}

	want := map[string]int64{
		"usr/bin/varta-watch":              0o755,
		"etc/init.d/varta-watch":           0o755,
		"etc/config/varta-watch":           0o644,
		"etc/sysctl.d/60-varta-watch.conf": 0o644,
	}
	instroot := t.TempDir()
	for _, m := range readTarGz(t, "data.tar.gz", parts["data.tar.gz"]) {
		name := strings.TrimSuffix(strings.TrimPrefix(m.hdr.Name, "./"), "/")
		if m.hdr.Uid != 0 || m.hdr.Gid != 0 {
			t.Errorf("%s: owner %d:%d, want root", name, m.hdr.Uid, m.hdr.Gid)
		}
		if m.hdr.Typeflag == tar.TypeDir {
			if m.hdr.Mode&0o7777 != 0o755 {
				t.Errorf("directory %s: mode %o", name, m.hdr.Mode)
			}
			os.MkdirAll(filepath.Join(instroot, name), 0o755)
			continue
		}
		mode, ok := want[name]
		if !ok {
			t.Errorf("unexpected file %s in data.tar.gz", name)
			continue
		}
		delete(want, name)
		if m.hdr.Mode&0o7777 != mode {
			t.Errorf("%s: mode %o, want %o", name, m.hdr.Mode&0o7777, mode)
		}
		if err := os.WriteFile(filepath.Join(instroot, name), m.data, os.FileMode(mode)); err != nil {
			t.Fatal(err)
		}
	}
	for name := range want {
		t.Errorf("data.tar.gz lacks %s", name)
	}
	if fileSHA256(t, filepath.Join(instroot, "usr/bin/varta-watch")) != fileSHA256(t, bin) {
		t.Error("/usr/bin/varta-watch is not the cross binary")
	}
	if size, _ := strconv.Atoi(fields["Installed-Size"]); size < len(raw) {
		t.Errorf("Installed-Size %d is below the package size %d", size, len(raw))
	}

	// An image build (IPKG_INSTROOT): postinst only enables, inside the
	// root, through the root's rc.common; prerm does nothing.
	rcCommon := filepath.Join(instroot, "etc/rc.common")
	record := filepath.Join(t.TempDir(), "rc.common.calls")
	stub := "#!/bin/sh\necho \"$IPKG_INSTROOT $*\" >>" + record + "\n"
	if err := os.WriteFile(rcCommon, []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"postinst", "prerm"} {
		script := filepath.Join(t.TempDir(), s)
		if err := os.WriteFile(script, ctl[s].data, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/bin/sh", script)
		cmd.Env = []string{"PATH=/nonexistent", "IPKG_INSTROOT=" + instroot}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s with IPKG_INSTROOT: %v\n%s", s, err, out)
		}
	}
	calls, _ := os.ReadFile(record)
	if want := instroot + " " + instroot + "/etc/init.d/varta-watch enable\n"; string(calls) != want {
		t.Errorf("with IPKG_INSTROOT the scripts called rc.common as %q, want only %q", calls, want)
	}
}
