package main

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSdNotifyCredentials checks what NotifyAccess=main relies on: a
// receiver with SO_PASSCRED, as systemd's notify socket has, learns our pid
// from the kernel although send attaches no SCM_CREDENTIALS itself.
func TestSdNotifyCredentials(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notify")
	rfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	if err := unix.SetsockoptInt(rfd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(rfd, &unix.SockaddrUnix{Name: name}); err != nil {
		t.Fatal(err)
	}
	setNotifyEnv(t, name, "", "")
	n := newTestNotifier(t)
	if err := n.send("READY=1"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	nr, noob, _, _, err := unix.Recvmsg(rfd, buf, oob, 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:nr]) != "READY=1" {
		t.Fatalf("received %q", buf[:nr])
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:noob])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages: %v, %v", msgs, err)
	}
	cred, err := unix.ParseUnixCredentials(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if int(cred.Pid) != os.Getpid() {
		t.Fatalf("kernel says the sender is pid %d, want %d", cred.Pid, os.Getpid())
	}
}
