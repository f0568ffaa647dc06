//go:build linux

package main

import (
	"encoding/binary"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseControl(t *testing.T) {
	many := make([]int32, maxRightsFds+8)
	for i := range many {
		many[i] = int32(100 + i)
	}
	creds := cmsg(unix.SOL_SOCKET, unix.SCM_CREDENTIALS, credData(4321))
	for _, tc := range []struct {
		name    string
		oob     []byte
		pid     int32
		hasCred bool
		fds     []int32
	}{
		{"empty", nil, 0, false, nil},
		{"credentials", creds, 4321, true, nil},
		{"credentials as unix builds them", unix.UnixCredentials(&unix.Ucred{Pid: 77, Uid: 1, Gid: 2}), 77, true, nil},
		{"rights only", unix.UnixRights(7, 8, 9), 0, false, []int32{7, 8, 9}},
		{"credentials then rights", cat(creds, cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, rightsData(11))), 4321, true, []int32{11}},
		{"rights then credentials", cat(cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, rightsData(12, 13)), creds), 4321, true, []int32{12, 13}},
		{"odd fd count, padded", cat(cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, rightsData(1, 2, 3)), creds), 4321, true, []int32{1, 2, 3}},
		{"many rights", cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, rightsData(many...)), 0, false, many},
		{"other level ignored", cat(cmsg(unix.SOL_IP, unix.SCM_CREDENTIALS, credData(5)), creds), 4321, true, nil},
		{"other type ignored", cmsg(unix.SOL_SOCKET, 99, credData(5)), 0, false, nil},
		{"short credentials ignored", cmsg(unix.SOL_SOCKET, unix.SCM_CREDENTIALS, credData(5)[:8]), 0, false, nil},
		{"truncated header", creds[:unix.SizeofCmsghdr-1], 0, false, nil},
		{"length past the buffer", creds[:unix.SizeofCmsghdr+4], 0, false, nil},
		{"length below the header", func() []byte {
			b := append([]byte{}, creds...)
			binary.NativeEndian.PutUint32(b[0:4], 3)
			return b
		}(), 0, false, nil},
		{"zero length does not loop", make([]byte, 64), 0, false, nil},
		{"huge length", func() []byte {
			b := append([]byte{}, creds...)
			for i := 0; i < cmsgLenSize; i++ {
				b[i] = 0xff
			}
			return b
		}(), 0, false, nil},
		{"garbage after a good message", cat(creds, []byte{1, 2, 3}), 4321, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fds [maxRightsFds]int32
			pid, ok, n := parseControl(tc.oob, &fds)
			if pid != tc.pid || ok != tc.hasCred {
				t.Fatalf("pid %d %v, want %d %v", pid, ok, tc.pid, tc.hasCred)
			}
			want := tc.fds
			if len(want) > len(fds) {
				// The array bounds what one datagram can carry; a longer
				// list would be cut, which recv must never let happen.
				want = want[:len(fds)]
			}
			if n != len(want) {
				t.Fatalf("%d fds, want %d", n, len(want))
			}
			for i := range want {
				if fds[i] != want[i] {
					t.Fatalf("fd[%d] = %d, want %d", i, fds[i], want[i])
				}
			}
		})
	}
}

// TestParseControlRandomNeverPanics: whatever bytes the control buffer
// holds, parseControl stays inside it and returns.
func TestParseControlRandomNeverPanics(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var fds [maxRightsFds]int32
	base := cat(unix.UnixCredentials(&unix.Ucred{Pid: 9}), unix.UnixRights(1, 2, 3))
	for i := 0; i < 20000; i++ {
		b := make([]byte, rng.IntN(300))
		for j := range b {
			b[j] = byte(rng.IntN(256))
		}
		if rng.IntN(2) == 0 && len(b) > 0 {
			// Start from a valid buffer and damage a few bytes, so deeper
			// paths are reached than random bytes alone would.
			b = append(append([]byte{}, base...), b[:rng.IntN(len(b))]...)
			for k := rng.IntN(4); k >= 0; k-- {
				b[rng.IntN(len(b))] = byte(rng.IntN(256))
			}
		}
		parseControl(b, &fds)
	}
}

// TestRecvArrivalTimestamp: Linux stamps each datagram with the time it
// was queued (SO_TIMESTAMPNS), and recv reports it even after the datagram
// waited in the queue.
func TestRecvArrivalTimestamp(t *testing.T) {
	s, err := bindVLPSocket(filepath.Join(shortTempDir(t), "s.sock"), 0o600, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	client, err := newSocket(unix.AF_UNIX, unix.SOCK_DGRAM)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(client)
	sent := time.Now().UnixNano()
	if err := unix.Sendto(client, make([]byte, FrameSize), 0, &unix.SockaddrUnix{Name: s.path}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	res, errno := recvNext(s)
	if errno != 0 {
		t.Fatal(errno)
	}
	if res.arrival == 0 && runtime.GOARCH != "amd64" {
		// qemu-user passes SCM_CREDENTIALS through but drops
		// SCM_TIMESTAMPNS; the observer then falls back to read times.
		t.Skip("no SCM_TIMESTAMPNS delivered (qemu-user drops it)")
	}
	if res.arrival < sent-int64(time.Millisecond) || res.arrival > sent+int64(25*time.Millisecond) {
		t.Fatalf("arrival %d ns after send, want about 0 (the datagram then waited 30 ms)", res.arrival-sent)
	}
	if parseTimestamp(nil) != 0 || parseTimestamp(make([]byte, 7)) != 0 {
		t.Fatal("timestamp from an empty control buffer")
	}
}
