package main

import "runtime"

// Stamped by the build (Makefile, cross):
// -ldflags "-X main.version=… -X main.revision=… -X main.goarm=…".
// runtime/debug.ReadBuildInfo would find the revision by itself, but it
// links in fmt: with it, 0.2 MB of a router's flash (linux/armv7).
var (
	version  = "dev"
	revision = ""
	goarm    = "" // GOARM of an arm build, for the release arch name
)

// buildRevision is the stamped revision, or "unknown".
func buildRevision() string {
	if revision != "" {
		return revision
	}
	return "unknown"
}

// buildArch is GOARCH with its variant, as release names spell it (armv7).
func buildArch() string {
	if runtime.GOARCH == "arm" && goarm != "" {
		return "armv" + goarm[:1]
	}
	return runtime.GOARCH
}

func versionLine() string {
	return "varta-watch " + version + " (" + buildRevision() + ", " + runtime.Version() + ", " + runtime.GOOS + "/" + buildArch() + ")"
}
