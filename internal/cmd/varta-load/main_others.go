//go:build !linux

// Command varta-load needs Linux: only there may a sender attach another
// pid's credentials (SCM_CREDENTIALS) to a datagram.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "varta-load: Linux only (kernel-attested senders need SCM_CREDENTIALS)")
	os.Exit(1)
}
