//go:build linux

package main

import (
	"bufio"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCrossArtifacts runs ./cross (make cross) and checks every release
// binary: listed in SHA256SUMS with the right digest, ELF ones static (no
// interpreter, no dynamic section) and stripped (no symbol table), and the
// linux/armv7 build within its 2.0 MB budget.
func TestCrossArtifacts(t *testing.T) {
	if testing.Short() || os.Getenv("VARTA_E2E") == "0" {
		t.Skip("builds every release target")
	}
	// A directory of its own: a second make test beside this one (or a
	// release in dist/) must not see half-written files.
	dist := t.TempDir()
	cmd := exec.Command("./cross")
	cmd.Env = append(os.Environ(), "VERSION=0.0.0-test", "DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("./cross: %v\n%s", err, out)
	}
	sums, err := os.Open(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer sums.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(sums)
	for sc.Scan() {
		want, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", sc.Text())
		}
		data, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != want {
			t.Errorf("%s does not match SHA256SUMS", name)
		}
		seen[name] = true
		if !strings.HasPrefix(name, "varta-watch_0.0.0-test_") {
			t.Errorf("release name %q", name)
		}
		if strings.Contains(name, "_darwin_") {
			continue // Mach-O, linked against libSystem by necessity
		}
		f, err := elf.Open(filepath.Join(dist, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has an ELF interpreter: not static", name)
			}
		}
		if f.Section(".dynamic") != nil {
			t.Errorf("%s has a .dynamic section: not static", name)
		}
		if f.Section(".symtab") != nil {
			t.Errorf("%s has a symbol table: not stripped", name)
		}
		f.Close()
		if strings.HasSuffix(name, "_linux_armv7") && len(data) > 2_000_000 {
			t.Errorf("%s is %d bytes, over the 2.0 MB budget", name, len(data))
		}
	}
	for _, want := range []string{"linux_amd64", "linux_386", "linux_arm64", "linux_armv5", "linux_armv6", "linux_armv7",
		"linux_mips", "linux_mipsle", "linux_mips64", "linux_mips64le", "linux_riscv64", "freebsd_amd64", "darwin_arm64", "darwin_amd64"} {
		if !seen["varta-watch_0.0.0-test_"+want] {
			t.Errorf("no %s artifact in SHA256SUMS", want)
		}
	}
}

// TestOtherSystemsVet: the observer and its tests compile, and pass go vet
// (with the printf check of make test), on every kqueue system, 32- and
// 64-bit (kqueue's Kevent_t differs between them; NetBSD and OpenBSD have
// no EVFILT_USER, NetBSD's x/sys/unix no CLOCK_MONOTONIC). The release
// builds for darwin and freebsd are TestCrossArtifacts'.
func TestOtherSystemsVet(t *testing.T) {
	if testing.Short() || os.Getenv("VARTA_E2E") == "0" {
		t.Skip("type-checks the package for five other systems")
	}
	for _, target := range []string{"darwin/arm64", "dragonfly/amd64", "freebsd/386", "netbsd/amd64", "openbsd/arm"} {
		goos, goarch, _ := strings.Cut(target, "/")
		cmd := exec.Command("go", "vet", "-printf.funcs=sprintf,errorf,wrapf,flagErrorf", ".")
		cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("GOOS=%s GOARCH=%s go vet: %v\n%s", goos, goarch, err, out)
		}
	}
}
