//go:build unix && !race

package main

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSdNotifySendAllocs(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notify")
	rfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	if err := unix.Bind(rfd, &unix.SockaddrUnix{Name: name}); err != nil {
		t.Fatal(err)
	}
	setNotifyEnv(t, name, "", "")
	n := newTestNotifier(t)
	buf := make([]byte, 64)
	var sendErr, recvErr error
	allocs := testing.AllocsPerRun(1000, func() {
		// Drain each datagram so the receive queue (max_dgram_qlen) never fills.
		if err := n.send("WATCHDOG=1"); err != nil && sendErr == nil {
			sendErr = err
		}
		if _, err := unix.Read(rfd, buf); err != nil && recvErr == nil {
			recvErr = err
		}
	})
	if sendErr != nil || recvErr != nil {
		t.Fatalf("send: %v, receive: %v", sendErr, recvErr)
	}
	if allocs != 0 {
		t.Fatalf("send allocates %v times per call, want 0", allocs)
	}
}
