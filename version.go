package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Stamped by the build: -ldflags "-X main.version=… -X main.revision=…".
var (
	version  = "dev"
	revision = ""
)

// buildRevision is the stamped revision, else the VCS revision Go recorded,
// else "unknown".
func buildRevision() string {
	if revision != "" {
		return revision
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return rev
		}
	}
	return "unknown"
}

// buildArch is GOARCH with its variant, as release names spell it
// (armv7, mipsle-softfloat is just mipsle: the float ABI is in the name of
// the release only when it matters).
func buildArch() string {
	arch := runtime.GOARCH
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOARM" && arch == "arm" {
				v := s.Value
				if len(v) > 0 {
					v = v[:1]
				}
				arch = "armv" + v
			}
		}
	}
	return arch
}

func versionLine() string {
	return fmt.Sprintf("varta-watch %s (%s, %s, %s/%s)", version, buildRevision(), runtime.Version(), runtime.GOOS, buildArch())
}
