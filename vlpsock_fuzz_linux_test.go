//go:build linux

package main

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzParseControl feeds parseControl two kinds of control buffers:
//
//   - oob, arbitrary bytes: parseControl must not panic, must report no
//     more descriptors than the buffer can hold, and must agree with
//     x/sys/unix's own parser on every buffer that parser accepts;
//   - a well-formed buffer as the kernel builds it for the observer's
//     recvmsg (SCM_CREDENTIALS naming pid, then SCM_RIGHTS with nfds
//     descriptors, cut to the ones that fit in oobSize), in both orders:
//     the pid and every descriptor must come back.
//
// Its seed corpus lives in testdata/fuzz/FuzzParseControl.
func FuzzParseControl(f *testing.F) {
	creds := unix.UnixCredentials(&unix.Ucred{Pid: 4242, Uid: 1, Gid: 2})
	f.Add([]byte{}, int32(2), uint8(0))
	f.Add(creds, int32(4242), uint8(1))
	f.Add(append(append([]byte{}, creds...), unix.UnixRights(7, 8, 9)...), int32(-1), uint8(253))
	f.Fuzz(func(t *testing.T, oob []byte, pid int32, nfds uint8) {
		checkParseControlRaw(t, oob)
		checkParseControlKernel(t, pid, int(nfds))
	})
}

func checkParseControlRaw(t *testing.T, in []byte) {
	// Zeros after the input keep x/sys/unix's parser, which reads a whole
	// header even when fewer bytes remain, inside the allocation.
	padded := make([]byte, len(in), len(in)+unix.SizeofCmsghdr)
	copy(padded, in)
	var fds [maxRightsFds]int32
	pid, hasCred, nfds := parseControl(padded, &fds)
	if nfds < 0 || nfds > maxRightsFds {
		t.Fatalf("nfds = %d, outside 0..%d", nfds, maxRightsFds)
	}
	if fit := (len(in) - unix.SizeofCmsghdr) / 4; nfds > 0 && nfds > fit {
		t.Fatalf("%d descriptors reported from %d bytes, which hold at most %d", nfds, len(in), fit)
	}
	msgs, err := unix.ParseSocketControlMessage(padded)
	if err != nil {
		return
	}
	var wantPid int32
	var wantCred bool
	var wantFds []int32
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET {
			continue
		}
		switch m.Header.Type {
		case unix.SCM_CREDENTIALS:
			if len(m.Data) >= unix.SizeofUcred {
				wantPid, wantCred = int32(binary.NativeEndian.Uint32(m.Data)), true
			}
		case unix.SCM_RIGHTS:
			for d := m.Data; len(d) >= 4; d = d[4:] {
				wantFds = append(wantFds, int32(binary.NativeEndian.Uint32(d)))
			}
		}
	}
	if hasCred != wantCred || pid != wantPid {
		t.Fatalf("parseControl(% x) = pid %d (%v), x/sys/unix finds pid %d (%v)", in, pid, hasCred, wantPid, wantCred)
	}
	if len(wantFds) > maxRightsFds {
		wantFds = wantFds[:maxRightsFds]
	}
	if nfds != len(wantFds) {
		t.Fatalf("parseControl(% x) reported %d descriptors, x/sys/unix finds %d", in, nfds, len(wantFds))
	}
	for i, fd := range wantFds {
		if fds[i] != fd {
			t.Fatalf("descriptor %d = %d, want %d", i, fds[i], fd)
		}
	}
}

// checkParseControlKernel builds the control buffer Linux hands the
// observer: scm_recv puts SCM_CREDENTIALS first, then scm_detach_fds
// installs as many of the passed descriptors as fit in what is left.
func checkParseControlKernel(t *testing.T, pid int32, n int) {
	creds := unix.UnixCredentials(&unix.Ucred{Pid: pid, Uid: 1000, Gid: 1000})
	fit := (oobSize - len(creds) - unix.SizeofCmsghdr) / 4
	sent := make([]int, min(n, fit))
	for i := range sent {
		sent[i] = 3 + i*7 + int(pid&0xff)
	}
	var rights []byte
	if len(sent) > 0 {
		rights = unix.UnixRights(sent...)
	}
	for _, order := range [][2][]byte{{creds, rights}, {rights, creds}} {
		oob := append(append([]byte{}, order[0]...), order[1]...)
		if len(oob) > oobSize {
			t.Fatalf("test built %d control bytes, more than the %d the observer reads", len(oob), oobSize)
		}
		var fds [maxRightsFds]int32
		gotPid, hasCred, nfds := parseControl(oob, &fds)
		if !hasCred || gotPid != pid {
			t.Fatalf("credentials for pid %d came back as %d (%v) from % x", pid, gotPid, hasCred, oob)
		}
		if nfds != len(sent) {
			t.Fatalf("%d descriptors passed, %d reported: the rest would leak", len(sent), nfds)
		}
		for i, fd := range sent {
			if fds[i] != int32(fd) {
				t.Fatalf("descriptor %d = %d, want %d", i, fds[i], fd)
			}
		}
	}
}
